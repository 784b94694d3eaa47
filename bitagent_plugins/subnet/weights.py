"""Scores per uid -> the weights a validator sets on chain.

``scores_to_weights`` turns scores into an L1-normalised weight vector that respects the subnet's
hyperparameters, and ``quantize_u16`` turns that into the ``(uids, u16 values)`` pair the chain stores.

The chain's two rules (as bittensor 11's ``SetWeights`` enforces them before submitting):

* ``max_weight_limit``: no single weight may exceed this fraction of the total (the chain's check is
  ``max / sum <= limit``). We clip and redistribute the excess proportionally to the others ("water
  filling"), so the sum stays 1 and the order of the weights is kept. If even a uniform vector over every uid
  cannot satisfy it (``n_uids * limit < 1``) the uniform vector is the closest we can get and is returned.
* ``min_allowed_weights``: at least this many non-zero u16 values must be submitted. When fewer weights
  survive quantization (or too few for ``max_weight_limit`` to be met among them), every uid gets a floor of
  ``2/65535`` of the largest weight (quantized: 2), so the count reaches ``n_uids``; applying the floor as
  ``max(w, floor)`` keeps the ranking (a higher score never gets less).

Missing uids have score 0; negative and NaN scores count as 0. When no uid has a positive score the weights
are uniform over all uids, or all on ``burn_uid`` if one is given (then floor and clip as above).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

U16_MAX = 65535
RULES = ("cubic", "linear", "softmax")
#: The floor, relative to the largest weight, given to every uid when too few weights are non-zero.
FLOOR_RATIO = 2 / U16_MAX


def scores_to_weights(
    scores: Mapping[int, float],
    *,
    n_uids: int,
    min_allowed_weights: int = 0,
    max_weight_limit: float = 1.0,
    rule: str = "cubic",
    temperature: float = 1.0,
    burn_uid: int | None = None,
) -> dict[int, float]:
    """Weights over ``range(n_uids)`` (zero entries left out), summing to 1.

    ``rule``: ``"cubic"`` ((s/max)^3, the upstream subnet's last era), ``"linear"`` (s/max) or ``"softmax"``
    (exp(s/temperature) over every uid, missing ones at score 0). ``max_weight_limit`` is a fraction (chain
    value / 65535). Deterministic: the same input always gives the same output.
    """
    if n_uids < 1:
        raise ValueError(f"n_uids must be >= 1, got {n_uids}")
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if not max_weight_limit > 0:
        raise ValueError(f"max_weight_limit must be > 0, got {max_weight_limit}")
    if rule == "softmax" and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if burn_uid is not None and not 0 <= burn_uid < n_uids:
        raise ValueError(f"burn_uid {burn_uid} is outside 0..{n_uids - 1}")
    clean = [0.0] * n_uids
    for uid, score in scores.items():
        if not 0 <= uid < n_uids:
            raise ValueError(f"uid {uid} is outside 0..{n_uids - 1}")
        s = float(score)
        clean[uid] = 0.0 if math.isnan(s) or s <= 0 else s
    if math.inf in clean:  # +inf scores: those uids share the top, the others get nothing
        clean = [1.0 if s == math.inf else 0.0 for s in clean]

    top = max(clean)
    if top <= 0:
        raw = [0.0] * n_uids
        if burn_uid is not None:
            raw[burn_uid] = 1.0
        else:
            raw = [1.0] * n_uids
    elif rule == "cubic":
        raw = [(s / top) ** 3 for s in clean]
    elif rule == "linear":
        raw = [s / top for s in clean]
    else:
        raw = [math.exp((s - top) / temperature) for s in clean]

    weights = _normalise(raw)
    nonzero = _quantized_nonzero(weights)
    if nonzero < min(min_allowed_weights, n_uids) or (nonzero * max_weight_limit < 1 <= n_uids * max_weight_limit):
        floor = max(weights) * FLOOR_RATIO
        weights = _normalise([max(w, floor) for w in weights])
    if max_weight_limit < 1.0:
        weights = clip_to_limit(weights, max_weight_limit)
    return {uid: w for uid, w in enumerate(weights) if w > 0}


def clip_to_limit(weights: list[float], limit: float) -> list[float]:
    """L1-normalise with no weight above ``limit``, moving the excess proportionally onto the others.

    Order-preserving (the result is ``min(w, cutoff)`` rescaled). Zero weights stay zero, so when fewer than
    ``1/limit`` weights are non-zero every non-zero weight ends up equal; when ``len(weights) * limit < 1``
    the uniform vector (the closest feasible point) is returned.
    """
    n = len(weights)
    total = sum(weights)
    if n == 0 or total <= 0:
        raise ValueError("cannot clip an all-zero weight vector")
    if n * limit < 1:
        return [1.0 / n] * n
    w = [x / total for x in weights]
    nonzero = sum(1 for x in w if x > 0)
    if nonzero * limit <= 1:  # infeasible among the non-zero ones: the best is to make them equal
        return [1.0 / nonzero if x > 0 else 0.0 for x in w]
    clipped: set[int] = set()
    for _ in range(n):
        free = [i for i in range(n) if i not in clipped]
        free_mass = sum(w[i] for i in free)
        scale = (1.0 - limit * len(clipped)) / free_mass
        over = [i for i in free if w[i] * scale > limit]
        if not over:
            return [limit if i in clipped else w[i] * scale for i in range(n)]
        clipped.update(over)
    raise AssertionError("unreachable: each pass clips at least one more weight")


def quantize_u16(weights: Mapping[int, float]) -> tuple[list[int], list[int]]:
    """``(uids, values)`` sorted by uid: each weight scaled so the largest is exactly 65535, then rounded.

    Entries that round to 0 are dropped (the chain ignores them, and ``min_allowed_weights`` counts only
    non-zero values). Raises ``ValueError`` for negative/non-finite weights or when every weight is 0.
    """
    items = sorted(weights.items())
    if any(not math.isfinite(w) or w < 0 for _, w in items):
        raise ValueError("weights must be finite and non-negative")
    if any(not 0 <= uid <= U16_MAX for uid, _ in items):
        raise ValueError("uids must be in 0..65535")
    top = max((w for _, w in items), default=0.0)
    if top <= 0:
        raise ValueError("all weights are zero; nothing to set")
    uids: list[int] = []
    values: list[int] = []
    for uid, w in items:
        value = U16_MAX if w == top else min(U16_MAX, round(w / top * U16_MAX))
        if value:
            uids.append(uid)
            values.append(value)
    return uids, values


def _quantized_nonzero(weights: list[float]) -> int:
    """How many weights survive u16 quantization (``quantize_u16`` drops those that round to 0)."""
    top = max(weights)
    return sum(1 for w in weights if w > 0 and round(w / top * U16_MAX) >= 1)


def _normalise(raw: list[float]) -> list[float]:
    total = math.fsum(raw)
    return [x / total for x in raw]


def subnet_weights(
    scores: Mapping[int, float],
    *,
    n_uids: int,
    own_uid: int | None = None,
    min_allowed_weights: int = 0,
    max_weight_limit: float = 1.0,
    rule: str = "cubic",
) -> tuple[dict[int, float], list[int]] | None:
    """The weights a validator sets: only on uids with a scored submission (``scores``), never on its own
    uid (``own_uid``); None when no such uid has a positive score (the last weights stay in force: a vector
    over zeros would reward copies and vetted-out models while the good ones wait for their evaluation).

    When the chain's rules cannot be met among the scored uids -- fewer of them than ``min_allowed_weights``,
    or too few for ``max_weight_limit`` (``k * limit < 1``) -- the chain forces a fallback: the fewest
    unscored uids (lowest uid first, never ``own_uid``) get the floor weight. Returns ``(weights, forced)``
    where ``forced`` lists those uids (empty when none was needed).
    """
    eligible = sorted(uid for uid in scores if uid != own_uid and 0 <= uid < n_uids)
    if not any(scores[uid] > 0 for uid in eligible):  # NaN compares False: not positive
        return None
    needed = max(min_allowed_weights, math.ceil(1 / max_weight_limit - 1e-9) if max_weight_limit < 1 else 1)
    forced: list[int] = []
    if len(eligible) < needed:
        spare = [uid for uid in range(n_uids) if uid not in scores and uid != own_uid]
        forced = spare[: needed - len(eligible)]
    uids = sorted(eligible + forced)
    local = scores_to_weights(
        {i: scores.get(uid, 0.0) for i, uid in enumerate(uids)},
        n_uids=len(uids),
        min_allowed_weights=min(min_allowed_weights, len(uids)),
        max_weight_limit=max_weight_limit,
        rule=rule,
    )
    return {uids[i]: w for i, w in local.items()}, forced
