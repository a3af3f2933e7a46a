"""A reference model of who survives a SecAgg / SecAgg+ round.

Given the graph, threshold, min_survivors and a dropout schedule, it predicts
(independently of the state machines, from the rules in Bonawitz et al. 2017
plus ours: ``min_survivors`` live clients at every stage, at least ``t`` live
holders of each client's shares, and no unmasking of fewer than
``max(t, min_survivors)`` survivors) either the survivor set U3 or the stage at
which the round must abort. The property tests compare the real protocol against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols import Stage


@dataclass(frozen=True)
class Outcome:
    survivors: tuple[int, ...] | None  # U3 when the round completes
    abort_stage: Stage | None


def predict(graph, t: int, min_survivors: int, drop_at: dict[int, Stage], active: bool) -> Outcome:
    ids = sorted(graph)

    def alive(u: int, stage: Stage) -> bool:
        s = drop_at.get(u)
        return s is None or s.index > stage.index

    u1 = {u for u in ids if alive(u, Stage.ADVERTISE_KEYS)}
    if len(u1) < min_survivors:
        return Outcome(None, Stage.ADVERTISE_KEYS)
    # a client's secrets are held by its live neighbours and itself; with fewer
    # than t holders it aborts instead of sharing
    own = 1
    u2 = {u for u in u1 if alive(u, Stage.SHARE_KEYS) and len(graph[u] & u1) + own >= t}
    if len(u2) < min_survivors:
        return Outcome(None, Stage.SHARE_KEYS)
    u3 = {u for u in u2 if alive(u, Stage.MASKED_INPUT) and len(graph[u] & u2) + own >= t}
    if len(u3) < min_survivors:
        return Outcome(None, Stage.MASKED_INPUT)
    # every client refuses to help unmask a survivor set below max(t, min_survivors)
    if len(u3) < max(t, min_survivors):
        return Outcome(None, Stage.CONSISTENCY if active else Stage.UNMASK)
    if active:
        u4 = {u for u in u3 if alive(u, Stage.CONSISTENCY)}
        if len(u4) < t:
            return Outcome(None, Stage.CONSISTENCY)
        u5 = {u for u in u4 if alive(u, Stage.UNMASK) and len(graph[u] & u4) + 1 >= t}
    else:
        u5 = {u for u in u3 if alive(u, Stage.CONSISTENCY) and alive(u, Stage.UNMASK)}
    for u in u3:  # b_u: held by u's neighbours and u itself
        if len((graph[u] | {u}) & u5) < t:
            return Outcome(None, Stage.UNMASK)
    for v in u2 - u3:
        if graph[v] & u3 and len(graph[v] & u5) < t:
            return Outcome(None, Stage.UNMASK)
    return Outcome(tuple(sorted(u3)), None)
