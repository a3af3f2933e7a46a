"""The threat model is configuration: SecAggConfig(max_corrupt=...) refuses
every threshold that max_corrupt colluders could defeat, and states the bound
and the smallest threshold that meets it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.config import (
    SecAggConfig,
    choose_params,
    colluder_quota,
    effective_degree,
    hypergeometric_tail,
    neighbourhood_break_probability,
    smallest_secure_threshold,
)
from secagg.encoding import FixedPointEncoder
from secagg.errors import ConfigError


def _config(n, t, *, neighbors=None, active=True, max_corrupt=None, min_survivors=None):
    return SecAggConfig(
        client_ids=tuple(range(n)), threshold=t, dim=2, encoder=FixedPointEncoder(1.0, 32, n),
        neighbors=neighbors, min_survivors=min_survivors, active_security=active,
        identities={i: bytes(32) for i in range(n)} if active else None, max_corrupt=max_corrupt,
    )


@settings(max_examples=300, deadline=None)
@given(n=st.integers(3, 40), data=st.data())
def test_complete_graph_active_accepts_exactly_2t_minus_n_above_max_corrupt(n, data):
    t = data.draw(st.integers(n // 2 + 1, n))
    c = data.draw(st.integers(0, n - 2))
    m = data.draw(st.integers(min(c + 2, n), n))
    try:
        _config(n, t, max_corrupt=c, min_survivors=m)
    except ConfigError as exc:
        assert 2 * t - n <= c or m - c < 2
        if 2 * t - n <= c and m - c >= 2:
            need = (n + c) // 2 + 1
            assert f"smallest threshold that meets it is {need}" in str(exc) or need > n
        return
    assert 2 * t - n > c and m - c >= 2


@settings(max_examples=300, deadline=None)
@given(n=st.integers(4, 40), data=st.data())
def test_active_secagg_plus_holds_in_every_neighbourhood_of_every_graph(n, data):
    """Against a malicious server the SecAgg+ bound is graph-independent
    (2t - (k+1) > c, and colluders plus dropouts below the Harary graph's
    connectivity k), so grinding the public graph seed gains nothing."""
    neighbors = data.draw(st.integers(2, n - 2))
    k = effective_degree(n, neighbors)
    if k >= n - 1:
        return
    t = data.draw(st.integers((k + 1) // 2 + 1, k + 1))
    c = data.draw(st.integers(0, n - 2))
    m = data.draw(st.integers(min(c + 2, n), n))
    try:
        _config(n, t, neighbors=neighbors, max_corrupt=c, min_survivors=m)
    except ConfigError:
        assert 2 * t - (k + 1) <= c or c + (n - m) >= k or m - c < 2
        return
    assert 2 * t - (k + 1) > c and c + (n - m) < k and m - c >= 2


def test_the_published_attacks_are_refused_with_the_bound_and_the_fix():
    # n=32, k=10, t=6: the graph-grinding attack surrounded one client with 6 colluders
    with pytest.raises(ConfigError, match=r"2t - \(k\+1\) > max_corrupt"):
        _config(32, 6, neighbors=10, max_corrupt=6, min_survivors=32)
    # n=10, t=6 (the default majority) with 2 colluders: 2*6 - 10 = 2 is not above 2
    with pytest.raises(ConfigError, match="smallest threshold that meets it is 7"):
        _config(10, 6, max_corrupt=2)
    _config(10, 7, max_corrupt=2)


def test_semi_honest_secagg_plus_uses_the_hypergeometric_union_bound():
    n, neighbors, c = 60, 10, 3
    k = effective_degree(n, neighbors)
    need = smallest_secure_threshold(n, k, c, active=False, complete=False)
    assert need is not None
    assert neighbourhood_break_probability(n, k, need, c, active=False) <= 2.0**-40
    assert need == (k + 1) // 2 + 1 or neighbourhood_break_probability(n, k, need - 1, c, active=False) > 2.0**-40
    _config(n, need, neighbors=neighbors, active=False, max_corrupt=c)


def test_hypergeometric_tail_matches_a_direct_sum():
    for population, marked, draws, k in [(49, 5, 8, 2), (30, 10, 10, 4), (99, 0, 20, 1), (20, 20, 5, 5)]:
        total = math.comb(population, draws)
        direct = sum(math.comb(marked, i) * math.comb(population - marked, draws - i)
                     for i in range(k, min(marked, draws) + 1)) / total
        assert hypergeometric_tail(population, marked, draws, k) == pytest.approx(direct, rel=1e-9, abs=1e-300)


def test_colluder_quota_counts_both_views_in_active_mode():
    assert colluder_quota(9, 6, active=True) == 2  # two views of 6 holders each among 10
    assert colluder_quota(9, 6, active=False) == 6


@pytest.mark.parametrize("n", [100, 300, 1000])
def test_active_choose_params_gives_a_config_the_library_accepts(n):
    p = choose_params(n, dropout_rate=0.05, corrupt_rate=0.05, active=True)
    assert p.active and p.max_corrupt == math.ceil(0.05 * n)
    assert 2 * p.threshold - (p.neighbors + 1) > p.max_corrupt
    SecAggConfig(
        client_ids=tuple(range(n)), threshold=p.threshold, dim=1, encoder=FixedPointEncoder(1.0, 32, n),
        neighbors=p.neighbors, min_survivors=max(p.min_survivors, n - p.neighbors + p.max_corrupt + 1),
        active_security=True, identities={i: bytes(32) for i in range(n)}, max_corrupt=p.max_corrupt,
    )


def test_min_survivors_must_leave_two_honest_inputs():
    with pytest.raises(ConfigError, match="min_survivors - max_corrupt"):
        _config(9, 8, max_corrupt=3, min_survivors=4)
