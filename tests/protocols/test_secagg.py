"""SecAgg / SecAgg+ end to end: the aggregate equals the plaintext sum of the
survivors' encoded inputs for every dropout schedule the threshold allows, and
the round aborts with AbortError exactly when it does not."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import Stage, sim
from protocols.config import SecAggConfig, effective_degree
from protocols.secagg import SecAggClient, SecAggServer
from secagg.encoding import FixedPointEncoder
from secagg.errors import AbortError

from .schedules import predict

STAGES = list(Stage)


@st.composite
def rounds(draw, max_n: int = 40):
    n = draw(st.integers(3, max_n))
    complete = draw(st.booleans())
    k = n - 1 if complete else draw(st.integers(2, n - 1))
    k_eff = effective_degree(n, None if complete else k)
    active = draw(st.booleans())
    # an active round needs max_corrupt < 2t - (k+1) and min_survivors >= max_corrupt + 2
    t = draw(st.integers((k_eff + 1) // 2 + 1, k_eff + 1))
    if active:  # the threat model an active config must meet (see SecAggConfig._check_threat_model)
        max_corrupt = draw(st.integers(0, max(0, min(2 * t - (k_eff + 1) - 1, n - 2, n if complete else k_eff - 1))))
        low = max_corrupt + 2 if complete else max(max_corrupt + 2, n - k_eff + max_corrupt + 1)
        min_survivors = draw(st.integers(min(low, n), n))
    else:
        max_corrupt = None
        min_survivors = draw(st.integers(1, n))
    n_drop = draw(st.integers(0, n))
    dropped = draw(st.lists(st.integers(0, n - 1), min_size=n_drop, max_size=n_drop, unique=True))
    schedule = {i: draw(st.sampled_from(STAGES)) for i in dropped}
    bits = draw(st.sampled_from([16, 24, 32, 40, 64]))
    dim = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31))
    return n, (None if complete else k), t, min_survivors, schedule, bits, dim, active, seed, max_corrupt


def _run_and_check(n, k, t, min_survivors, schedule, bits, dim, active, seed, max_corrupt=None):
    rng = np.random.default_rng(seed)
    updates = rng.uniform(-1, 1, size=(n, dim))
    weights = [int(w) for w in rng.integers(1, 5, size=n)]
    encoder = FixedPointEncoder(1.0, bits, n, max_weight=4)
    protocol = "secagg" if k is None else "secagg+"
    kwargs = dict(weights=weights, dropouts=schedule, threshold=t, neighbors=k, seed=seed,
                  active_security=active, encoder=encoder, min_survivors=min_survivors, max_corrupt=max_corrupt)
    # Predict from the same public graph the protocol derives.
    config = sim._spec(protocol).build_config(
        tuple(range(n)), dim, encoder=encoder, weighted=True, threshold=t, neighbors=k,
        min_survivors=min_survivors, active_security=False, identities=None,
        graph_seed=sim.hashlib.sha256(b"secagg/sim/graph|%d" % seed).digest(),
    )
    expected = predict(config.graph(), t, min_survivors, schedule, active)
    if expected.abort_stage is not None:
        with pytest.raises(AbortError) as info:
            sim.run(protocol, updates, **kwargs)
        assert info.value.stage == expected.abort_stage
        return
    result = sim.run(protocol, updates, **kwargs)
    assert tuple(result.survivors) == expected.survivors
    not_summed = {i: Stage.MASKED_INPUT for i in range(n) if i not in expected.survivors}
    plain = sim.run_plaintext(updates, weights=weights, dropouts=not_summed, seed=seed, encoder=encoder)
    assert plain.survivors == result.survivors
    np.testing.assert_array_equal(result.raw_sum, plain.raw_sum)
    np.testing.assert_array_equal(result.aggregate, plain.aggregate)
    # and the decoded weighted mean is the true weighted mean within quantisation error
    w = np.array(weights, dtype=float)[list(result.survivors)]
    true_mean = (w[:, None] * updates[list(result.survivors)]).sum(0) / w.sum()
    assert np.allclose(result.aggregate, true_mean, atol=2 * encoder.precision * 4)


@settings(max_examples=200)
@given(rounds())
def test_aggregate_equals_plaintext_sum_or_aborts_exactly_when_threshold_violated(case):
    _run_and_check(*case)


@pytest.mark.slow
@settings(max_examples=2000)
@given(rounds())
def test_aggregate_equals_plaintext_sum_slow(case):
    _run_and_check(*case)


def test_dropout_at_every_stage_is_recovered():
    """Flower halts on a dropout in its first two stages; we must not."""
    rng = np.random.default_rng(1)
    updates = rng.uniform(-1, 1, size=(20, 50))
    schedule = {0: "advertise_keys", 1: Stage.SHARE_KEYS, 2: "masked_input", 3: Stage.CONSISTENCY, 4: "unmask"}
    for protocol, k, t in (("secagg", None, 11), ("secagg+", 12, 7)):
        result = sim.run(protocol, updates, dropouts=schedule, neighbors=k, threshold=t, seed=3)
        assert result.survivors == list(range(3, 20))
        assert result.dropped == [0, 1, 2]
        np.testing.assert_allclose(result.aggregate, updates[3:].sum(0), atol=1e-5)


def test_active_security_round_with_dropouts():
    rng = np.random.default_rng(2)
    updates = rng.uniform(-1, 1, size=(12, 30))
    result = sim.run("secagg+", updates, neighbors=8, threshold=6, active_security=True, seed=5, max_corrupt=2,
                     min_survivors=9,
                     dropouts={0: Stage.MASKED_INPUT, 1: Stage.CONSISTENCY, 2: Stage.UNMASK})
    assert result.survivors == list(range(1, 12))
    np.testing.assert_allclose(result.aggregate, updates[1:].sum(0), atol=1e-5)


def test_too_few_survivors_aborts_and_names_who_dropped():
    updates = np.zeros((6, 4))
    with pytest.raises(AbortError) as info:
        sim.run("secagg", updates, threshold=4, min_survivors=4, dropouts={0: "masked_input", 1: "masked_input", 2: "masked_input"})
    err = info.value
    assert err.stage is Stage.MASKED_INPUT and err.needed == 4 and err.got == 3
    assert err.dropped == {"masked_input": (0, 1, 2)}


def test_weighted_mean_hides_individual_weights_in_the_masked_slot():
    rng = np.random.default_rng(4)
    updates = rng.uniform(-1, 1, size=(5, 8))
    weights = [1, 10, 100, 3, 7]
    result = sim.run("secagg", updates, weights=weights, seed=1)
    expected = (np.array(weights)[:, None] * updates).sum(0) / sum(weights)
    np.testing.assert_allclose(result.aggregate, expected, atol=1e-5)
    assert result.weight_sum == sum(weights)


@pytest.mark.parametrize("protocol, k", [("secagg", None), ("secagg+", 6)])
def test_exactly_threshold_survivors_still_unmask(protocol, k):
    """Each client holds a share of its own secrets (Bonawitz et al. share among
    all of U1), so t survivors are enough: min_survivors = t is reachable."""
    n = 8
    t = (7 if k is None else 6) // 2 + 2  # smallest majority of the k + 1 holders
    updates = np.random.default_rng(9).uniform(-1, 1, size=(n, 5))
    survivors = list(range(n - t, n)) if k is None else None
    if k is None:
        dropouts = {i: Stage.MASKED_INPUT for i in range(n - t)}
        result = sim.run(protocol, updates, threshold=t, dropouts=dropouts, seed=2)
        assert result.survivors == survivors
        np.testing.assert_allclose(result.aggregate, updates[survivors].sum(0), atol=1e-5)
    else:
        result = sim.run(protocol, updates, neighbors=k, threshold=t, dropouts={0: Stage.MASKED_INPUT}, seed=2)
        assert result.survivors == list(range(1, n))


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_small_secagg_plus_cohorts_use_the_complete_graph(n):
    """The default SecAgg+ degree reaches n - 1 for small cohorts; the driver then
    runs the complete graph instead of refusing the round."""
    updates = np.random.default_rng(n).uniform(-1, 1, size=(n, 6))
    result = sim.run("secagg+", updates, seed=1)
    assert result.survivors == list(range(n))
    np.testing.assert_allclose(result.aggregate, updates.sum(0), atol=n * 1e-6)
