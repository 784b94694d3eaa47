"""Submission collection: who submits what, locked to a commit.

Each sync: every other neuron's submission -- its on-chain commitment (plain, or hashed and opened over a signed
request), else its signed endpoint, else the upstream ``GetHFModelName`` synapse -- is parsed
and resolved to ``org/name@sha`` (:class:`~bitagent_plugins.subnet.keys.ModelKey`). A hotkey's **first
accepted submission is final**: a later, different one is logged once and ignored (a new model means a new
hotkey, as upstream says); re-committing the same one keeps the earliest block. A submission that cannot be
accepted (invalid text, unknown repo) is not locked: the hotkey may still fix it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

from bitagent_plugins.subnet import vetting
from bitagent_plugins.subnet.chain import MetagraphView
from bitagent_plugins.subnet.state import SubmissionRow, ValidatorState

log = logging.getLogger("bitagent.subnet.validator")

#: ``(wallet, {hotkey: axon}, netuid, timeout_s, allow_private) -> {hotkey: text | failure}``
Querier = Callable[..., object]


class SubmissionCollector:
    """Collects and locks submissions into the state. ``hub`` resolves names to commits."""

    def __init__(
        self,
        state: ValidatorState,
        *,
        hub: vetting.HubClient,
        wallet: object,
        own_hotkey: str,
        netuid: int,
        query_timeout_s: float,
        allow_private: bool,
        retry_blocks: int,
    ) -> None:
        self.state = state
        self.hub = hub
        self.wallet = wallet
        self.own_hotkey = own_hotkey
        self.netuid = netuid
        self.query_timeout_s = query_timeout_s
        self.allow_private = allow_private
        self.retry_blocks = retry_blocks
        self._unresolved: dict[str, tuple[str, int | None, str]] = {}  # hotkey -> (text, retry block, reason)
        self.collections_done = 0
        self._last_counts: tuple[int, int, int] | None = None
        #: the last collection's miners without a submission: ``{hotkey: why}``
        self.not_collected: dict[str, str] = {}

    @property
    def rejected(self) -> dict[str, str]:
        """Submissions that could not be locked this run: ``{hotkey: reason}``."""
        return {hotkey: reason for hotkey, (_text, _retry, reason) in self._unresolved.items()}

    async def run(self, mg: MetagraphView) -> None:
        """Collect every submission of ``mg`` and lock the new ones (at most 8 Hub lookups at a time)."""
        started = time.monotonic()
        submissions = await self.collect(mg)
        current = {row.hotkey: row for row in self.state.submissions()}
        limiter = asyncio.Semaphore(8)

        async def one(hotkey: str, text: str, block: int) -> None:
            async with limiter:
                await self.lock(mg, hotkey, text, block, current.get(hotkey))

        await asyncio.gather(*(one(h, text, block) for h, (text, block) in submissions.items()))
        self.collections_done += 1
        counts = (len(submissions), len(self.state.submissions()), len(self._unresolved))
        (log.info if counts != self._last_counts else log.debug)(
            "submissions: %d found, %d locked, %d rejected (%.1f s)", *counts, time.monotonic() - started
        )
        self._last_counts = counts

    async def collect(self, mg: MetagraphView) -> dict[str, tuple[str, int]]:
        """``{hotkey: (submission text, block)}`` from every channel (:func:`protocol.collect_submissions`:
        on-chain commitment, hashed commitment opened over a signed request, signed endpoint, upstream synapse)."""
        from bitagent_plugins.subnet.protocol import collect_submissions

        found, missing = await collect_submissions(
            self.wallet,
            mg,
            netuid=self.netuid,
            me=self.own_hotkey,
            timeout_s=self.query_timeout_s,
            allow_private=self.allow_private,
        )
        for hotkey, reason in missing.items():
            log.debug("no submission from %s: %s", hotkey, reason)
        silent = {
            n.hotkey: "published nothing (no commitment, no endpoint)"
            for n in mg.neurons
            if n.hotkey not in found and n.hotkey not in missing and n.hotkey != self.own_hotkey
        }
        self.not_collected = {**silent, **missing}
        for hotkey, item in found.items():
            log.debug("submission of %s via %s", hotkey, item.channel)
        return {
            hotkey: (item.text, submission_block(mg, hotkey, item.channel, item.block))
            for hotkey, item in found.items()
        }

    async def lock(
        self, mg: MetagraphView, hotkey: str, text: str, block: int, current: SubmissionRow | None = None
    ) -> None:
        """Lock ``hotkey``'s submission (``current``: its state row, if any) to a commit sha -- only if it
        has none yet: the first accepted submission is final."""
        neuron = mg.by_hotkey(hotkey)
        if neuron is None:
            return
        if current is not None:
            if not _same_submission(text, current):
                if self.state.note_ignored(hotkey, text):
                    log.warning(
                        "uid %d (%s) changed its submission to %r: ignored, %s stays locked (the first "
                        "accepted submission is final; a new model needs a new hotkey)",
                        neuron.uid,
                        hotkey,
                        text[:120],
                        current.model_key,
                    )
                return
            self.state.upsert_submission(hotkey, neuron.uid, current.repo_id, current.revision, current.sha, block)
            return
        try:
            sub = vetting.parse_submission(text)
        except vetting.InvalidSubmission as exc:
            self._note_rejected(hotkey, text, f"invalid submission: {exc.reason}", retry_after=None)
            return
        pending = self._unresolved.get(hotkey)
        if pending is not None and pending[0] == text and (pending[1] is None or mg.block < pending[1]):
            return
        try:
            locked = await asyncio.to_thread(vetting.resolve, sub, api=self.hub)
        except vetting.VettingFailed as exc:
            retry = mg.block + self.retry_blocks if exc.transient else None
            self._note_rejected(hotkey, text, f"cannot lock {sub}: {exc.reason}", retry_after=retry)
            return
        self._unresolved.pop(hotkey, None)
        if self.state.upsert_submission(hotkey, neuron.uid, locked.repo_id, sub.revision, locked.sha, block):
            log.info("uid %d (%s) submits %s (locked)", neuron.uid, hotkey, locked.key)

    def not_collected_summary(self) -> str:
        """One line: how many miners were not collected and why, most frequent reasons first."""
        reasons = collections.Counter(self.not_collected.values())
        listed = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common(5))
        more = len(reasons) - 5
        return (
            f"{len(self.not_collected)} miner(s) not collected"
            + (f": {listed}" if listed else "")
            + (f", and {more} other reason(s) (--logging.debug lists each)" if more > 0 else "")
        )

    def _note_rejected(self, hotkey: str, text: str, reason: str, retry_after: int | None) -> None:
        previous = self._unresolved.get(hotkey)
        if previous is None or previous[0] != text:
            log.warning("%s: %r rejected: %s", hotkey, text[:120], reason)
        self._unresolved[hotkey] = (text, retry_after, reason)


def submission_block(mg: MetagraphView, hotkey: str, channel: str, block: int) -> int:
    """The block a submission is dated at, the same for every validator whenever it started: its on-chain
    commitment's block; without a commitment (upstream miners: endpoint or synapse only), the hotkey's
    registration block (docs/subnet.md, "Submission dates")."""
    if "commitment" in channel:
        return block
    neuron = mg.by_hotkey(hotkey)
    if neuron is None or neuron.registration_block is None:
        return block
    return min(block, neuron.registration_block)


def _same_submission(text: str, current: SubmissionRow) -> bool:
    """Whether ``text`` names the locked submission again (the same repo, at the same revision or sha)."""
    try:
        sub = vetting.parse_submission(text)
    except vetting.InvalidSubmission:
        return False
    return sub.repo_id == current.repo_id and sub.revision in (current.revision, current.sha)
