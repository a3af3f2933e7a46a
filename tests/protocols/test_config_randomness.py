"""SecAggConfig's default session id and graph seed are fresh per round: a
semi-honest round's per-graph security bound assumes the graph is drawn after
the colluders are fixed, so no two rounds may share a predictable graph."""

from __future__ import annotations

from protocols.config import SecAggConfig
from secagg.encoding import FixedPointEncoder

N, K = 30, 6


def _config(**kw) -> SecAggConfig:
    return SecAggConfig(tuple(range(N)), K, 4, FixedPointEncoder(1.0, 32, N), neighbors=K, **kw)


def test_default_graph_seeds_are_fresh_and_not_constant() -> None:
    seeds = [_config().graph_seed for _ in range(8)]
    assert len(set(seeds)) == len(seeds), "two rounds drew the same graph seed"
    assert all(len(s) >= 16 and len(set(s)) > 1 for s in seeds)


def test_default_graphs_differ_between_rounds() -> None:
    graphs = {tuple(sorted((u, tuple(sorted(vs))) for u, vs in _config().graph().items())) for _ in range(4)}
    assert len(graphs) == 4


def test_the_graph_is_a_function_of_the_public_seed() -> None:
    seed = bytes(range(32))
    assert _config(graph_seed=seed).graph() == _config(graph_seed=seed).graph()


def test_default_session_ids_are_fresh() -> None:
    ids = {_config().session_id for _ in range(8)}
    assert len(ids) == 8
