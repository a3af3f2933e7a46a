"""A malicious server with up to max_corrupt colluding clients learns no honest
client's update: the attacks of protocols.adversary, run end to end, and the
view they leave checked by reconstruction."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.adversary import EquivocatingServer, SelectiveDeliveryServer, exposure, grind_graph_seed
from protocols.config import SecAggConfig, colluder_quota
from protocols.secagg import SecAggClient, SecAggServer
from protocols.sim import drive
from protocols.testing import check_active_security
from secagg import kex
from secagg.encoding import FixedPointEncoder
from secagg.errors import ConfigError, SecAggError


def _round(n: int, t: int, *, max_corrupt: int | None, neighbors: int | None = None, min_survivors=None, dim=6):
    keys = {i: kex.generate_identity() for i in range(n)}
    kwargs = {} if max_corrupt is None else {"max_corrupt": max_corrupt}
    config = SecAggConfig(
        client_ids=tuple(range(n)), threshold=t, dim=dim, encoder=FixedPointEncoder(1.0, 32, n),
        neighbors=neighbors, min_survivors=min_survivors, active_security=True,
        identities={i: k.public_bytes for i, k in keys.items()}, **kwargs,
    )
    rng = np.random.default_rng(7)
    updates = {i: rng.uniform(-1, 1, dim) for i in range(n)}
    clients = {i: SecAggClient(config, i, updates[i], identity=keys[i], rng=np.random.default_rng(i)) for i in range(n)}
    return config, clients, updates


@pytest.mark.parametrize("n, t, colluders", [(5, 3, {4}), (10, 6, {8, 9})])
def test_selective_delivery_with_fake_dropouts_recovers_nothing(n, t, colluders):
    """The published attack: at (n=5, t=3, 1 colluder) and (n=10, t=6, 2
    colluders) the server isolated the target's exact update. The threat model
    now refuses these thresholds, and at the smallest threshold it accepts the
    same attack unmasks no sum of fewer than min_survivors - max_corrupt honest
    inputs."""
    c = len(colluders)
    with pytest.raises(ConfigError, match="2t - n > max_corrupt"):
        _round(n, t, max_corrupt=c)
    t_ok = (n + c) // 2 + 1
    for fake in range(0, n - c):
        config, clients, updates = _round(n, t_ok, max_corrupt=c)
        honest_others = [u for u in range(1, n) if u not in colluders]
        server = SelectiveDeliveryServer(SecAggServer(config), target=0, colluders=colluders,
                                         fake_dropped=honest_others[:fake])
        try:
            drive(server, clients)
        except SecAggError:
            pass
        seen = exposure(config, server.log, clients, colluders, updates)
        assert not seen.both_secrets
        if seen.smallest_sum is not None:
            assert seen.smallest_sum >= config.min_survivors - c


def test_equivocation_between_two_halves_recovers_nothing():
    n, c = 5, 1
    colluders = {4}
    t = (n + c) // 2 + 1
    config, clients, updates = _round(n, t, max_corrupt=c)
    server = EquivocatingServer(SecAggServer(config), target=0, half={1, 2})
    try:
        drive(server, clients)
    except SecAggError:
        pass
    seen = exposure(config, server.log, clients, colluders, updates)
    assert not seen.both_secrets
    assert seen.smallest_sum is None or seen.smallest_sum >= config.min_survivors - c


def test_active_mode_requires_max_corrupt():
    with pytest.raises(ConfigError, match="max_corrupt"):
        _round(5, 4, max_corrupt=None)


# ---------------------------------------------------------------- the property


def test_no_accepted_config_lets_max_corrupt_colluders_expose_an_honest_input():
    """For any config the library accepts and any of the attacks controlling at
    most max_corrupt clients, the adversary's view, reconstructed, never holds
    both secrets of an honest client and never unmasks a sum of fewer than
    min_survivors - max_corrupt honest inputs (200 accepted examples)."""
    check_active_security(SecAggServer, SecAggClient, max_examples=200)


def test_equivocation_exposes_a_client_when_the_threshold_ignores_colluders():
    """The attack is real: at t = 3 of n = 5, a semi-honest-sized threshold, one
    colluder signing both views lets the two halves reveal both secrets."""
    n = 5
    keys = {i: kex.generate_identity() for i in range(n)}
    config = SecAggConfig(client_ids=tuple(range(n)), threshold=3, dim=3, encoder=FixedPointEncoder(1.0, 32, n),
                          active_security=True, identities={i: k.public_bytes for i, k in keys.items()},
                          max_corrupt=0)
    updates = {i: np.full(3, 0.1 * i) for i in range(n)}
    clients = {i: SecAggClient(config, i, updates[i], identity=keys[i]) for i in range(n)}
    server = EquivocatingServer(SecAggServer(config), target=0, half={1, 2}, colluder_keys={4: keys[4]})
    try:
        drive(server, clients)
    except SecAggError:
        pass
    seen = exposure(config, server.log, clients, {4}, updates)
    assert seen.both_secrets == {0}


def test_grinding_the_graph_seed_surrounds_a_client_unless_the_bound_holds_in_every_graph():
    """The server chose the SecAgg+ graph seed: at n=32, k=10 it finds, within a
    few thousand tries, a graph where 6 colluders surround an honest client
    (both of its secrets at t=6). Active mode therefore refuses that config, and
    in every config it accepts no seed can reach the quota."""
    n, k, t, c = 32, 10, 6, 6
    colluders = set(range(26, 32))
    found = grind_graph_seed(range(n), k, colluders, quota=colluder_quota(k, t, active=False), tries=5000)
    assert found is not None
    with pytest.raises(ConfigError):
        _round(n, t, max_corrupt=c, neighbors=k, min_survivors=n)
    t_ok = 9  # 2*9 - 11 = 7 > 6, and 6 colluders + 0 dropouts < 10
    config, _, _ = _round(n, t_ok, max_corrupt=c, neighbors=k, min_survivors=n)
    assert grind_graph_seed(range(n), k, colluders, quota=colluder_quota(config.degree, t_ok, active=True),
                            tries=300) is None
