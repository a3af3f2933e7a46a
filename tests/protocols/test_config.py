"""choose_params meets its failure bounds; configs are validated up front."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.config import SecAggConfig, binomial_tail, choose_params
from protocols.graph import complete_graph, harary_graph
from secagg.encoding import FixedPointEncoder
from secagg.errors import ConfigError, OverflowRiskError, ThresholdError


def test_binomial_tail_matches_direct_sum():
    n, p = 30, 0.2
    for k in range(0, 32):
        direct = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert binomial_tail(n, p, k) == pytest.approx(direct, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("n", [100, 300, 1000])
def test_choose_params_meets_both_bounds(n):
    p = choose_params(n, dropout_rate=0.1, corrupt_rate=0.05)
    assert p.security_failure <= 2.0**-40 and p.correctness_failure <= 2.0**-20
    assert 2 * p.threshold > p.neighbors + 1  # a majority of the k neighbours plus the client
    assert p.threshold <= p.min_survivors <= n
    assert p.neighbors <= 80  # the N=1000 scale target assumes neighbourhoods of k <= 80
    # per neighbourhood, more than t corrupt neighbours is negligible
    assert n * binomial_tail(p.neighbors, 0.05, p.threshold) <= 2.0**-40


def test_choose_params_degree_grows_slowly_with_n():
    ks = [choose_params(n, dropout_rate=0.1, corrupt_rate=0.05).neighbors for n in (100, 1000, 10000)]
    assert ks == sorted(ks) and ks[-1] < 2 * ks[0]  # logarithmic, not linear


def test_choose_params_refuses_impossible_threat_models():
    with pytest.raises(ConfigError):
        choose_params(10, dropout_rate=0.45, corrupt_rate=0.45)
    with pytest.raises(ConfigError):
        choose_params(100, dropout_rate=0.6, corrupt_rate=0.5)


def _config(**overrides):
    base = dict(client_ids=tuple(range(10)), threshold=6, dim=4, encoder=FixedPointEncoder(1.0, 32, 10))
    base.update(overrides)
    return SecAggConfig(**base)


@pytest.mark.parametrize("t", [0, 11, -1])
def test_threshold_out_of_range_is_a_threshold_error(t):
    with pytest.raises(ThresholdError):
        _config(threshold=t)


def test_threshold_at_or_below_half_the_neighbourhood_is_insecure():
    with pytest.raises(ConfigError):
        _config(threshold=5)  # 9 neighbours + itself: 5 + 5 <= 10, two disjoint quorums
    with pytest.raises(ConfigError):
        _config(neighbors=6, threshold=3)


def test_encoder_planned_for_fewer_clients_is_an_overflow_risk():
    with pytest.raises(OverflowRiskError):
        _config(encoder=FixedPointEncoder(1.0, 32, 5))


def test_active_security_needs_identities():
    with pytest.raises(ConfigError):
        _config(active_security=True)


@settings(max_examples=100)
@given(st.integers(3, 200), st.integers(2, 40), st.binary(min_size=16, max_size=16))
def test_harary_graph_is_regular_symmetric_and_seeded(n, k, seed):
    ids = list(range(n))
    g = harary_graph(ids, k, seed)
    assert g == harary_graph(ids, k, seed)
    degrees = {len(vs) for vs in g.values()}
    expected = n - 1 if k >= n - 1 or (k % 2 and n % 2 and k + 1 >= n - 1) else k + (k % 2 and n % 2)
    assert degrees == {expected}
    assert all(u in g[v] and u not in g[u] for u in g for v in g[u])


def test_complete_graph():
    g = complete_graph([3, 5, 9])
    assert g == {3: frozenset({5, 9}), 5: frozenset({3, 9}), 9: frozenset({3, 5})}
