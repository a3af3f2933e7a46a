"""Neighbour graphs: complete (SecAgg) and random Harary (SecAgg+).

SecAgg+ (Bell et al. 2020, §3) replaces the complete graph with a random
k-regular graph. Like Google FCP and Flower we use a Harary graph H(k, n) over a
*random relabelling* of the clients: sort the ids, shuffle them with a
Fisher–Yates permutation driven by ChaCha20 on a public seed, place them on a
ring, and join each client to the k/2 nearest ring positions on each side (and,
for odd k, to the opposite position). Everyone who knows the public seed and the
id list derives the same graph, so the server cannot choose neighbourhoods.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from secagg.errors import ConfigError
from secagg.prg import expand

__all__ = ["Graph", "complete_graph", "harary_graph", "effective_degree"]

Graph = Mapping[int, frozenset[int]]


def complete_graph(ids: Sequence[int]) -> dict[int, frozenset[int]]:
    """Every client is every other client's neighbour (SecAgg)."""
    members = frozenset(ids)
    if len(members) != len(ids):
        raise ConfigError("client ids must be distinct")
    return {u: members - {u} for u in ids}


def _permutation(n: int, seed: bytes) -> list[int]:
    """A uniform permutation of range(n) from a public seed (Fisher–Yates with
    rejection sampling on 64-bit ChaCha20 words: no modulo bias)."""
    order = list(range(n))
    batch = 4 * n + 64  # rejection rarely needs more than n draws
    words = expand(seed, batch, bits=64)
    base, pos = 0, 0
    for i in range(n - 1, 0, -1):
        bound = i + 1
        limit = (1 << 64) - ((1 << 64) % bound)
        while True:
            if pos == len(words):  # extremely unlikely: continue along the same stream
                base += len(words)
                words = expand(seed, batch, bits=64, offset=base)
                pos = 0
            w = int(words[pos])
            pos += 1
            if w < limit:
                break
        j = w % bound
        order[i], order[j] = order[j], order[i]
    return order


def effective_degree(n: int, neighbors: int | None) -> int:
    """The neighbourhood size k a round of n clients really uses: n - 1 for the
    complete graph (``neighbors`` None or >= n - 1), else ``neighbors`` rounded
    up to even when both it and n are odd (no odd-degree regular graph exists
    on an odd number of vertices)."""
    if neighbors is None or neighbors >= n - 1:
        return n - 1
    return min(neighbors + (neighbors % 2 and n % 2), n - 1)


def harary_graph(ids: Sequence[int], degree: int, seed: bytes) -> dict[int, frozenset[int]]:
    """A k-regular Harary graph on a seeded random relabelling of ``ids``.

    ``degree`` (k) must be at least 2 (and is rounded up to even when both k
    and n are odd, since no k-regular graph exists then); ``degree >= n - 1``
    gives the complete graph. ``seed`` is public, 16 or 32 bytes.
    """
    n = len(ids)
    if len(set(ids)) != n:
        raise ConfigError("client ids must be distinct")
    if degree < 2 and n > 2:
        raise ConfigError("SecAgg+ needs a neighbour degree of at least 2", degree=degree)
    degree = effective_degree(n, degree)
    if degree >= n - 1:
        return complete_graph(ids)
    ring = [sorted(ids)[i] for i in _permutation(n, seed)]
    half = degree // 2
    neighbours: dict[int, set[int]] = {u: set() for u in ids}
    for pos, u in enumerate(ring):
        for step in range(1, half + 1):
            v = ring[(pos + step) % n]
            neighbours[u].add(v)
            neighbours[v].add(u)
        if degree % 2:  # odd k, even n: join the opposite position
            v = ring[(pos + n // 2) % n]
            neighbours[u].add(v)
            neighbours[v].add(u)
    return {u: frozenset(vs) for u, vs in neighbours.items()}


def degree_of(graph: Graph) -> int:
    """The smallest neighbourhood size in ``graph``."""
    return min((len(vs) for vs in graph.values()), default=0)


__all__ += ["degree_of"]
