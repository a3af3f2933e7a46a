"""Validated protocol configurations and the threat-model parameter finder.

``choose_params`` follows Bell et al. 2020 (§4, Theorem 3.6/4.x) and the way
Google FCP's ``graph_parameter_finder`` derives SecAgg+ parameters: pick the
smallest neighbour degree k, and a threshold t, such that with n clients, a
fraction ``corrupt_rate`` of them colluding with the server and a fraction
``dropout_rate`` dropping out,

* security fails with probability at most 2^-security_bits: no honest client has
  t or more corrupt neighbours (they could rebuild both of its secrets), no two
  disjoint quorums exist in one neighbourhood (t > k/2), and the graph of honest
  survivors stays connected (else partial sums leak);
* correctness fails with probability at most 2^-correctness_bits: no survivor
  loses more than k - t neighbours.

Neighbourhoods are treated as k independent draws (the binomial model of Bell
et al.); the disconnection bound uses the Harary ring structure: a cut needs two
runs of k/2 consecutive bad clients, probability at most n^2 · p_bad^k.
"""

from __future__ import annotations

import math
import os

import numpy as np
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from secagg.errors import ConfigError, ThresholdError

from .graph import complete_graph, harary_graph

__all__ = ["SecAggParams", "choose_params", "SecAggConfig", "binomial_tail"]

SESSION_ID_BYTES = 16
GRAPH_SEED_BYTES = 32


def binomial_tail(n: int, p: float, k: int) -> float:
    """P[Bin(n, p) >= k], computed in log space (exact up to float rounding)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return math.exp(top) * sum(math.exp(t - top) for t in terms)


def _max_dropped(n: int, p: float, target: float) -> int:
    """Smallest q with P[Bin(n, p) > q] <= target (one pass over the pmf)."""
    if p <= 0.0:
        return 0
    i = np.arange(n + 1)
    log_pmf = (
        _lgamma(n + 1) - _lgamma(i + 1) - _lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
    )
    tail = np.cumsum(np.exp(log_pmf)[::-1])[::-1]  # tail[q] = P[Bin >= q]
    above = np.nonzero(tail[1:] <= target)[0]
    return int(above[0]) if above.size else n


def _lgamma(x: np.ndarray | int) -> np.ndarray:
    return np.vectorize(math.lgamma, otypes=[float])(x)


@dataclass(frozen=True)
class SecAggParams:
    """What :func:`choose_params` found: neighbour degree, threshold, bit width
    and the fewest survivors a round will unmask, with the failure bounds met."""

    n: int
    neighbors: int
    threshold: int
    bits: int
    min_survivors: int
    security_failure: float
    correctness_failure: float

    @property
    def complete(self) -> bool:
        return self.neighbors >= self.n - 1


def _security_failure(n: int, k: int, t: int, corrupt: float, dropout: float) -> float:
    if 2 * t <= k + 1:
        return 1.0  # two disjoint quorums could each unmask a different view
    per_client = binomial_tail(k, corrupt, t)
    if k >= n - 1:
        disconnect = 0.0  # the complete graph stays connected
    else:
        disconnect = min(1.0, n * n * (corrupt + dropout) ** k)
    return min(1.0, n * per_client + disconnect)


def _correctness_failure(n: int, k: int, t: int, dropout: float) -> float:
    # a survivor's secrets are held by itself and its k neighbours: more than
    # k + 1 - t dropped neighbours leave fewer than t holders
    return min(1.0, n * binomial_tail(k, dropout, k - t + 2))


def choose_params(
    n: int,
    *,
    dropout_rate: float,
    corrupt_rate: float,
    security_bits: int = 40,
    correctness_bits: int = 20,
    clip: float = 1.0,
    precision: float = 1e-4,
    max_weight: int = 1,
) -> SecAggParams:
    """Smallest SecAgg+ neighbour degree k and a threshold t for the threat model.

    Returns :class:`SecAggParams` with ``bits`` from
    :func:`secagg.encoding.plan_bits` for (n, clip, precision, max_weight) and
    ``min_survivors``: the number of survivors that, with probability
    1 - 2^-correctness_bits, at least remain at ``dropout_rate``. Raises
    :class:`ConfigError` when even the complete graph cannot meet both bounds.
    """
    from secagg.encoding import plan_bits

    if not isinstance(n, int) or n < 2:
        raise ConfigError("need at least 2 clients", n=n)
    for name, rate in (("dropout_rate", dropout_rate), ("corrupt_rate", corrupt_rate)):
        if not 0.0 <= rate < 1.0 or math.isnan(rate):
            raise ConfigError(f"{name} must be in [0, 1)", **{name: rate})
    if dropout_rate + corrupt_rate >= 1.0:
        raise ConfigError("dropout_rate + corrupt_rate must be below 1")
    sec_target = 2.0 ** -security_bits
    cor_target = 2.0 ** -correctness_bits
    best: tuple[int, int, float, float] | None = None
    for k in range(2, n):
        if k < n - 1 and k % 2 and n % 2:
            continue  # no odd-degree regular graph on an odd number of clients
        # the largest t that is still correct; security prefers t as large as possible
        feasible = [
            t
            for t in range((k + 1) // 2 + 1, k + 2)
            if _correctness_failure(n, k, t, dropout_rate) <= cor_target
        ]
        if not feasible:
            continue
        t = max(feasible)
        sec = _security_failure(n, k, t, corrupt_rate, dropout_rate)
        if sec <= sec_target:
            best = (k, t, sec, _correctness_failure(n, k, t, dropout_rate))
            break
    if best is None:
        raise ConfigError(
            "no neighbour degree meets the security and correctness bounds for this threat model",
            n=n,
            dropout_rate=dropout_rate,
            corrupt_rate=corrupt_rate,
        )
    k, t, sec, cor = best
    min_survivors = max(t, n - _max_dropped(n, dropout_rate, cor_target))
    bits = plan_bits(n, clip, precision, max_weight=max_weight)
    return SecAggParams(n, k, t, bits, min_survivors, sec, cor)


@dataclass(frozen=True)
class SecAggConfig:
    """Everything both sides of a SecAgg / SecAgg+ round agree on before it starts.

    ``neighbors=None`` (or >= n-1) means the complete graph (SecAgg);
    ``threshold`` is per neighbourhood and counts the client itself: each
    client's secrets are shared among its k neighbours and itself, so t must be
    in ((k+1)/2, k+1]; ``min_survivors`` (default: threshold)
    is the fewest masked inputs the server will ever unmask (DESIGN
    clarification 3). ``identities`` maps client id to an Ed25519 public key and
    is required for ``active_security``. ``encoder`` maps floats to Z_{2^bits}
    (``secagg.encoding.FixedPointEncoder`` or a DP encoder with its interface).
    ``dim`` is the update length, without the weight slot.
    """

    client_ids: tuple[int, ...]
    threshold: int
    dim: int
    encoder: Any
    neighbors: int | None = None
    min_survivors: int | None = None
    active_security: bool = False
    identities: Mapping[int, bytes] | None = None
    session_id: bytes = field(default_factory=lambda: os.urandom(SESSION_ID_BYTES))
    graph_seed: bytes = field(default_factory=lambda: os.urandom(GRAPH_SEED_BYTES))
    round: int = 0
    weighted: bool = False
    max_message_bytes: int | None = None

    def __post_init__(self) -> None:
        ids = tuple(int(i) for i in self.client_ids)
        object.__setattr__(self, "client_ids", ids)
        n = len(ids)
        if n < 2 or len(set(ids)) != n or min(ids) < 0 or max(ids) >= 0xFFFFFFFF:
            raise ConfigError("client_ids must be >= 2 distinct ids in [0, 2**32-1)", n=n)
        if self.dim < 1:
            raise ConfigError("dim must be positive", dim=self.dim)
        if len(self.session_id) != SESSION_ID_BYTES:
            raise ConfigError("session_id must be 16 bytes")
        if len(self.graph_seed) not in (16, 32):
            raise ConfigError("graph_seed must be 16 or 32 bytes")
        if self.neighbors is not None and (
            isinstance(self.neighbors, bool) or not isinstance(self.neighbors, int) or self.neighbors < 2
        ):
            raise ConfigError("neighbors must be an integer >= 2 (or None for SecAgg)", neighbors=self.neighbors)
        k = self.degree
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int) or t < 1 or t > k + 1:
            raise ThresholdError(
                f"threshold must be in [1, {k + 1}] (the k={k} neighbours plus the client itself)",
                threshold=t,
                neighbors=k,
            )
        if 2 * t <= k + 1:
            raise ConfigError(
                "threshold must exceed half of the share holders (neighbours plus self), or two "
                "disjoint quorums could unmask different views (Bonawitz et al. 2017, §6)",
                threshold=t,
                neighbors=k,
            )
        m = self.min_survivors if self.min_survivors is not None else t
        if not 1 <= m <= n:
            raise ConfigError("min_survivors must be in [1, n]", min_survivors=m, n=n)
        object.__setattr__(self, "min_survivors", m)
        if self.active_security and not self.identities:
            raise ConfigError("active_security needs Ed25519 identities for every client")
        if self.identities is not None and set(self.identities) != set(ids):
            raise ConfigError("identities must name exactly the configured clients")
        bits = getattr(self.encoder, "bits", None)
        if not isinstance(bits, int) or not 1 <= bits <= 64:
            raise ConfigError("encoder must expose an integer .bits in [1, 64]", bits=bits)
        max_clients = getattr(self.encoder, "max_clients", n)
        if max_clients is not None and max_clients < n:
            from secagg.errors import OverflowRiskError

            raise OverflowRiskError(
                "the encoder is planned for fewer clients than the round has: the sum could wrap",
                max_clients=max_clients,
                n=n,
            )

    @property
    def n(self) -> int:
        return len(self.client_ids)

    @property
    def complete(self) -> bool:
        return self.neighbors is None or self.neighbors >= self.n - 1

    @property
    def degree(self) -> int:
        """Neighbourhood size k (n - 1 for the complete graph)."""
        if self.complete:
            return self.n - 1
        k = self.neighbors
        if k % 2 and self.n % 2:
            k += 1  # see graph.harary_graph
        return min(k, self.n - 1)

    @property
    def protocol(self) -> str:
        return "secagg" if self.complete else "secagg+"

    @property
    def bits(self) -> int:
        return int(self.encoder.bits)

    def graph(self) -> dict[int, frozenset[int]]:
        """The public neighbour graph both sides derive (computed once per config)."""
        cached = self.__dict__.get("_graph")
        if cached is None:
            if self.complete:
                cached = complete_graph(self.client_ids)
            else:
                cached = harary_graph(self.client_ids, int(self.neighbors), self.graph_seed)
            object.__setattr__(self, "_graph", cached)
        return cached
