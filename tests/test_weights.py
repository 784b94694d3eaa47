"""Scores -> weights -> u16: properties (hypothesis), examples, and agreement with bittensor 11's own
normalisation, so the chain accepts what we produce."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitagent_plugins.subnet.weights import RULES, U16_MAX, clip_to_limit, quantize_u16, scores_to_weights

EPS = 1e-9


@st.composite
def weight_inputs(draw):
    n_uids = draw(st.integers(1, 64))
    score = st.one_of(st.floats(-1, 1, allow_nan=False), st.sampled_from([0.0, 0.5, 1.0, 1e-6, -0.5]))
    scores = draw(st.dictionaries(st.integers(0, n_uids - 1), score, max_size=n_uids))
    kwargs = {
        "n_uids": n_uids,
        "min_allowed_weights": draw(st.integers(0, 72)),
        "max_weight_limit": draw(st.one_of(st.just(1.0), st.floats(0.005, 1.0))),
        "rule": draw(st.sampled_from(RULES)),
        "temperature": draw(st.floats(0.01, 10)),
        "burn_uid": draw(st.one_of(st.none(), st.integers(0, n_uids - 1))),
    }
    return scores, kwargs


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(weight_inputs())
def test_weight_properties(inputs):
    scores, kw = inputs
    weights = scores_to_weights(scores, **kw)
    n_uids, limit, min_allowed = kw["n_uids"], kw["max_weight_limit"], kw["min_allowed_weights"]

    assert set(weights) <= set(range(n_uids))
    assert all(w > 0 for w in weights.values())
    assert math.isclose(math.fsum(weights.values()), 1.0, abs_tol=1e-9)
    if n_uids * limit >= 1:  # feasible
        assert max(weights.values()) <= limit + EPS

    uids, values = quantize_u16(weights)
    assert max(values) == U16_MAX and min(values) >= 1 and uids == sorted(uids)
    assert len(uids) >= min(min_allowed, n_uids)  # what the chain counts: non-zero u16 values

    clean = {uid: max(scores.get(uid, 0.0), 0.0) for uid in range(n_uids)}
    for i in range(n_uids):  # monotonic: a higher score never gets a lower weight
        for j in range(n_uids):
            if clean[i] > clean[j]:
                assert weights.get(i, 0.0) >= weights.get(j, 0.0) - EPS, (i, j)

    assert scores_to_weights(scores, **kw) == weights  # deterministic
    assert scores_to_weights(dict(reversed(list(scores.items()))), **kw) == weights  # order-free


@settings(max_examples=200, deadline=None)
@given(weight_inputs())
def test_bittensor_accepts_our_weights(inputs):
    """bittensor 11's SetWeights pipeline (clip to the limit, then normalize to u16) leaves them unchanged."""
    from bittensor.intents.weights import clip_to_max_weight, normalize

    scores, kw = inputs
    weights = scores_to_weights(scores, **kw)
    uids = sorted(weights)
    floats = [weights[u] for u in uids]
    if kw["n_uids"] * kw["max_weight_limit"] >= 1 and len(uids) * kw["max_weight_limit"] > 1:
        clipped = clip_to_max_weight(floats, kw["max_weight_limit"])
        assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9) for a, b in zip(clipped, floats, strict=True))
    assert normalize(uids, floats) == quantize_u16(weights)


def test_cubic_linear_softmax():
    assert scores_to_weights({0: 1.0, 1: 0.5}, n_uids=3) == pytest.approx({0: 1 / 1.125, 1: 0.125 / 1.125})
    assert scores_to_weights({0: 1.0, 1: 0.5}, n_uids=3, rule="linear") == pytest.approx({0: 2 / 3, 1: 1 / 3})
    soft = scores_to_weights({0: 1.0, 1: 0.5}, n_uids=3, rule="softmax", temperature=0.5)
    total = math.exp(0) + math.exp(-1) + math.exp(-2)
    assert soft == pytest.approx({0: 1 / total, 1: math.exp(-1) / total, 2: math.exp(-2) / total})
    hot = scores_to_weights({0: 1.0}, n_uids=4, rule="softmax", temperature=1e6)
    assert hot == pytest.approx({u: 0.25 for u in range(4)})


def test_all_zero_scores_are_uniform_or_burned():
    assert scores_to_weights({}, n_uids=4) == {0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}
    assert scores_to_weights({1: 0.0, 2: -0.3, 3: float("nan")}, n_uids=4) == {u: 0.25 for u in range(4)}
    assert scores_to_weights({1: 0.0}, n_uids=4, burn_uid=0) == {0: 1.0}
    burned = scores_to_weights({}, n_uids=4, burn_uid=0, min_allowed_weights=3)
    assert set(burned) == {0, 1, 2, 3} and burned[0] > 0.99
    assert quantize_u16(burned) == ([0, 1, 2, 3], [65535, 2, 2, 2])


def test_min_allowed_weights_floor_and_limit_redistribution():
    w = scores_to_weights({0: 1.0, 1: 0.5}, n_uids=5, min_allowed_weights=4)
    assert len(w) == 5 and w[0] > w[1] > w[2] == w[3] == w[4]
    assert quantize_u16(w)[1][2:] == [2, 2, 2]
    w = scores_to_weights({0: 1.0, 1: 0.5}, n_uids=5, max_weight_limit=0.3)
    assert w == pytest.approx({0: 0.3, 1: 0.3, 2: 0.4 / 3, 3: 0.4 / 3, 4: 0.4 / 3})
    w = scores_to_weights({0: 1.0}, n_uids=4, max_weight_limit=0.1)  # infeasible: the uniform vector
    assert w == {u: 0.25 for u in range(4)}
    w = scores_to_weights({0: 1.0, 1: 1e-6}, n_uids=3, min_allowed_weights=2)  # 1e-18 would quantize to 0
    assert len(quantize_u16(w)[0]) >= 2


def test_clip_to_limit():
    assert clip_to_limit([8, 1, 1], 0.5) == pytest.approx([0.5, 0.25, 0.25])
    assert clip_to_limit([4, 3, 2, 1], 0.3) == pytest.approx([0.3, 0.3, 0.4 * 2 / 3, 0.4 / 3])
    assert clip_to_limit([1, 0, 0], 0.5) == [1.0, 0.0, 0.0]  # zeros stay zero; best effort
    assert clip_to_limit([1, 1], 0.2) == [0.5, 0.5]
    with pytest.raises(ValueError):
        clip_to_limit([0, 0], 0.5)


def test_quantize_u16():
    assert quantize_u16({3: 0.25, 0: 0.5, 7: 0.0, 9: 1e-9}) == ([0, 3], [65535, 32768])
    assert quantize_u16({5: 1e-30}) == ([5], [65535])
    for bad in ({}, {0: 0.0}, {0: -1.0}, {0: float("inf")}, {70000: 1.0}):
        with pytest.raises(ValueError):
            quantize_u16(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_uids": 0},
        {"n_uids": 3, "rule": "winner"},
        {"n_uids": 3, "max_weight_limit": 0},
        {"n_uids": 3, "rule": "softmax", "temperature": 0},
        {"n_uids": 3, "burn_uid": 3},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        scores_to_weights({}, **kwargs)
    with pytest.raises(ValueError, match="outside"):
        scores_to_weights({5: 1.0}, n_uids=3)


def test_subnet_weights_only_on_scored_uids_never_the_validators_own():
    from bitagent_plugins.subnet.weights import subnet_weights

    assert subnet_weights({}, n_uids=5, own_uid=0) is None
    assert subnet_weights({1: 0.0, 2: float("nan")}, n_uids=5, own_uid=0) is None  # nothing positive: no weights
    assert subnet_weights({0: 1.0}, n_uids=5, own_uid=0) is None  # its own score does not count
    weights, forced = subnet_weights({0: 1.0, 1: 1.0, 2: 0.5, 3: 0.0}, n_uids=6, own_uid=0)
    assert forced == [] and set(weights) == {1, 2} and weights[1] > weights[2]
    # the chain's min_allowed_weights forces a fallback onto the fewest unscored uids, never the validator's
    weights, forced = subnet_weights({2: 1.0}, n_uids=6, own_uid=0, min_allowed_weights=3)
    assert forced == [1, 3] and set(weights) == {1, 2, 3} and weights[1] == weights[3] < weights[2]
    uids, values = quantize_u16(weights)
    assert sum(v > 0 for v in values) >= 3 and 0 not in uids
    # so does max_weight_limit when too few scored uids could carry the total
    weights, forced = subnet_weights({1: 1.0, 2: 1.0}, n_uids=6, own_uid=0, max_weight_limit=0.3)
    assert forced == [3, 4] and max(weights.values()) <= 0.3 + 1e-12
