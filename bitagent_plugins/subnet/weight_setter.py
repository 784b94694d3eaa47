"""Weight setting: scores per hotkey -> u16 weights per current uid -> ``SetWeights`` on chain.

Every ``epoch_length`` blocks (sooner after a failure). Weights go only to uids with a scored submission,
never to the validator's own uid (``weights.subnet_weights``; the chain's ``min_allowed_weights`` /
``max_weight_limit`` may force a fallback, logged with the uids it names). With no positive score yet,
nothing is set and the last weights stay in force. ``--dry-run`` records the vector without submitting it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs

from bitagent_plugins.subnet.chain import (
    Chain,
    ChainUnavailable,
    MetagraphView,
    WeightLimits,
    fit_to_max_weight_limit,
    version_key,
)
from bitagent_plugins.subnet.state import ValidatorState

log = logging.getLogger("bitagent.subnet.validator")


@attrs.frozen
class WeightsOutcome:
    #: True: submitted (or recorded, with --dry-run); False with ``failed``: the chain refused or was away
    set: bool
    failed: bool
    result: str


class WeightSetter:
    def __init__(
        self,
        state: ValidatorState,
        chain: Chain,
        *,
        scores: Callable[[], dict[str, float]],
        competition_version: str,
        weight_rule: str,
        epoch_length: int,
        retry_blocks: int,
        dry_run: bool,
        weights_version_key: int | None = None,
    ) -> None:
        self.state = state
        #: the key sent with the weights: ``--weights-version-key``, else upstream's formula on our version
        self.version_key = weights_version_key if weights_version_key is not None else version_key()
        self.chain = chain
        self.scores = scores
        self.competition_version = competition_version
        self.weight_rule = weight_rule
        self.epoch_length = epoch_length
        self.retry_blocks = retry_blocks
        self.dry_run = dry_run
        self._last_try: int | None = None
        self._nothing = False  # the last try found nothing to set: wait a tenth of an epoch, say it once

    def due(self, head: int) -> bool:
        wait = max(self.retry_blocks, self.epoch_length // 10) if self._nothing else self.retry_blocks
        if self._last_try is not None and head - self._last_try < wait:
            return False
        history = self.state.weights_history(1)
        if not history:
            return True
        last = history[0]
        wait = self.epoch_length if last.submitted or self.dry_run else max(1, self.epoch_length // 10)
        return head - last.block >= wait

    def compute(
        self, mg: MetagraphView, limits: WeightLimits, own_hotkey: str | None
    ) -> tuple[list[int], list[int], list[int]] | None:
        """``(uids, u16 weights, uids forced by the chain's rules)``; None when no uid has a positive score."""
        from bitagent_plugins.subnet.weights import quantize_u16, subnet_weights

        scores = self.scores()
        by_uid = {n.uid: scores[n.hotkey] for n in mg.neurons if n.hotkey in scores}
        own = mg.by_hotkey(own_hotkey) if own_hotkey else None
        computed = subnet_weights(
            by_uid,
            n_uids=len(mg),
            own_uid=own.uid if own else None,
            min_allowed_weights=limits.min_allowed_weights,
            max_weight_limit=limits.max_weight_limit,
            rule=self.weight_rule,
        )
        if computed is None:
            return None
        weights, forced = computed
        uids, values = quantize_u16(weights)
        return uids, fit_to_max_weight_limit(uids, values, limits.max_weight_limit_u16), forced

    async def set_weights(self, head: int | None = None) -> WeightsOutcome:
        """Set weights now from the scores in the state."""
        started = time.monotonic()
        if head is not None:
            self._last_try = head
        try:
            mg = await self.chain.metagraph()
            limits = await self.chain.weight_limits()
        except ChainUnavailable as exc:
            log.error("cannot set weights: the chain is unreachable (%s); the last weights stay in force", exc)
            return WeightsOutcome(False, True, str(exc))
        computed = self.compute(mg, limits, self.chain.hotkey if self.chain.wallet is not None else None)
        if computed is None:
            (log.debug if self._nothing else log.info)(
                "weights: no uid has a positive score yet; nothing set (the last weights stay in force)"
            )
            self._nothing = True
            return WeightsOutcome(False, False, "nothing scored")
        self._nothing = False
        uids, values, forced = computed
        if forced:
            log.warning(
                "weights: the chain's min_allowed_weights=%d / max_weight_limit=%.3f cannot be met by the "
                "%d scored uid(s): the floor weight also goes to unscored uid(s) %s",
                limits.min_allowed_weights,
                limits.max_weight_limit,
                len(uids) - len(forced),
                forced,
            )
        ours = self.version_key
        if self.dry_run:
            result, submitted = "dry run: not submitted", False
        elif limits.version_key > ours:
            result, submitted = (
                (
                    f"not submitted: the subnet requires weights version {limits.version_key}, "
                    f"this bitagent has {ours}; upgrade, or set --weights-version-key "
                    f"{limits.version_key} if the subnet's owner accepts this release"
                ),
                False,
            )
        else:
            try:
                tx = await self.chain.set_weights(uids, values, version_key=ours)
            except ChainUnavailable as exc:
                log.error("cannot set weights: %s; the last weights stay in force", exc)
                return WeightsOutcome(False, True, str(exc))
            result, submitted = (
                (
                    f"{'ok' if tx.success else 'failed'}: {tx.message}"
                    + (f" ({tx.extrinsic_id})" if tx.extrinsic_id else "")
                ),
                tx.success,
            )
            uids, values = tx.data.get("uids", uids), tx.data.get("weights", values)  # exactly what was sent
        self.state.record_weights(
            block=mg.block,
            competition_version=self.competition_version,
            uids=uids,
            weights=[float(v) for v in values],
            submitted=submitted,
            result=result,
        )
        ok = submitted or self.dry_run
        (log.info if ok else log.error)(
            "weights for %d uid(s) %s: %s (%.1f s)",
            len(uids),
            list(zip(uids, values)),
            result,
            time.monotonic() - started,
        )
        return WeightsOutcome(ok, not ok, result)
