"""SecAgg and SecAgg+ under the generic fuzz harness (protocols.fuzz): the
complete graph and a Harary graph, passive and active, and SecAgg+ under a
distributed-DP encoder (protocols.dp), on both sides. Random, mutated,
truncated, oversized, out-of-order, duplicate and cross-protocol messages
may only raise SecAggError subclasses, leave the state unchanged, drop their
named sender or abort the round, within the harness's memory bound; the
server always ends DONE or ABORTED through close_stage()."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import fuzz, sim
from protocols.config import SecAggConfig
from protocols.dp import DistributedDP
from protocols.secagg import SecAggClient, SecAggServer
from secagg import kex

DIM = 4  # a power of two: the DP encoder's rotation pads to one anyway
FUZZ_SETTINGS: dict[str, Any] = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def round_factory(n: int, threshold: int, *, neighbors: int | None = None, active: bool = False,
                  max_corrupt: int | None = None, min_survivors: int | None = None, encoder: Any = None,
                  dim: int = DIM) -> Any:
    """``make_round(session_id)`` for one SecAgg configuration: identities and
    updates are fixed once; every round gets fresh keys and seeds."""
    identities = {u: kex.generate_identity() for u in range(n)} if active else {}
    updates = [np.random.default_rng(u).uniform(-1, 1, dim) for u in range(n)]
    encoder = encoder if encoder is not None else sim.default_encoder(updates)
    public = {u: key.public_bytes for u, key in identities.items()} or None

    def make_round(session_id: bytes) -> tuple[SecAggServer, dict[int, SecAggClient]]:
        config = SecAggConfig(tuple(range(n)), threshold, dim, encoder, neighbors=neighbors, active_security=active,
                              identities=public, session_id=session_id, graph_seed=bytes(16),
                              max_corrupt=max_corrupt, min_survivors=min_survivors)
        clients = {u: SecAggClient(config, u, updates[u], identity=identities.get(u)) for u in range(n)}
        return SecAggServer(config), clients

    return make_round


def dp_round_factory() -> Any:
    """SecAgg+ (n=7, k=4) carrying a distributed-DP encoder, as protocols.dp.run_dp sets it up."""
    dp = DistributedDP(dim=DIM, n_clients=7, min_survivors=5, l2_clip=1.0, noise_multiplier=1.0, bits=20)
    return round_factory(7, 3, neighbors=4, min_survivors=dp.protocol_min_survivors,
                         encoder=dp.round_encoder(bytes(16)), dim=dp.padded_dim)


# Withhold few honest replies (SecAgg+ neighbourhoods tolerate few dropouts) and
# fuzz clients one stage at a time, so every stage is reached often.
TARGET_OPTIONS: dict[str, Any] = dict(client_focus=True)
TARGETS = {
    "secagg": fuzz.FuzzTarget("secagg", round_factory(4, 3), max_withheld=1, **TARGET_OPTIONS),
    "secagg-active": fuzz.FuzzTarget("secagg, active", round_factory(4, 3, active=True, max_corrupt=1),
                                     max_withheld=1, **TARGET_OPTIONS),
    "secagg+": fuzz.FuzzTarget("secagg+ (Harary, k=4)", round_factory(7, 3, neighbors=4), max_withheld=2,
                               **TARGET_OPTIONS),
    "secagg+-active": fuzz.FuzzTarget("secagg+ (Harary, k=4), active",
                                      round_factory(7, 4, neighbors=4, active=True, max_corrupt=1, min_survivors=5),
                                      max_withheld=1, **TARGET_OPTIONS),
    "secagg+-dp": fuzz.FuzzTarget("secagg+ (Harary, k=4) under a DP encoder", dp_round_factory(), max_withheld=2,
                                  **TARGET_OPTIONS),
}


def test_the_targets_cover_both_graphs_and_both_modes():
    server, _ = TARGETS["secagg+"].make_round(bytes(16))
    assert all(len(nbrs) == 4 for nbrs in server.graph.values())  # a Harary graph, not the complete one
    server, _ = TARGETS["secagg"].make_round(bytes(16))
    assert all(len(nbrs) == 3 for nbrs in server.graph.values())
    assert TARGETS["secagg-active"].make_round(bytes(16))[0].config.active_security
    assert TARGETS["secagg+-active"].make_round(bytes(16))[0].config.active_security
    transcript = fuzz.record_transcript(TARGETS["secagg+-dp"], bytes(16))
    assert len({stage for stage, _, _ in transcript.up}) == 4  # the honest DP round runs to the end


# ---------------------------------------------------------------- the fuzz harness
@pytest.mark.parametrize("target", sorted(TARGETS))
@settings(max_examples=100, **FUZZ_SETTINGS)
@given(data=st.data())
def test_server_survives_fuzzing(target, data):
    fuzz.check_server(TARGETS[target], data)


@pytest.mark.parametrize("target", sorted(TARGETS))
@settings(max_examples=100, **FUZZ_SETTINGS)
@given(data=st.data())
def test_client_survives_fuzzing(target, data):
    fuzz.check_client(TARGETS[target], data)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
@settings(max_examples=1000, **FUZZ_SETTINGS)
@given(data=st.data())
def test_server_survives_long_fuzzing(target, data):
    fuzz.check_server(TARGETS[target], data)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
@settings(max_examples=1000, **FUZZ_SETTINGS)
@given(data=st.data())
def test_client_survives_long_fuzzing(target, data):
    fuzz.check_client(TARGETS[target], data)
