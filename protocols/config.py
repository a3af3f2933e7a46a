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
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from secagg.encoding import Encoder, plan_bits
from secagg.errors import ConfigError, OverflowRiskError, ThresholdError

from .graph import complete_graph, effective_degree, harary_graph

__all__ = [
    "SecAggParams",
    "choose_params",
    "SecAggConfig",
    "binomial_tail",
    "hypergeometric_tail",
    "colluder_quota",
    "neighbourhood_break_probability",
    "smallest_secure_threshold",
    "resists",
    "effective_degree",
    "default_threshold",
]

SESSION_ID_BYTES = 16
GRAPH_SEED_BYTES = 32
DEFAULT_SECURITY_BITS = 40  # failure probability 2^-40 per graph, as Bell et al. 2020 and Google FCP use


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


def hypergeometric_tail(population: int, marked: int, draws: int, k: int) -> float:
    """P[X >= k] for X ~ Hypergeometric: ``draws`` without replacement from
    ``population`` items of which ``marked`` are marked (exact, log space)."""
    lo, hi = max(k, 0, draws - (population - marked)), min(draws, marked)
    if lo > hi:
        return 0.0
    total = math.lgamma(population + 1) - math.lgamma(draws + 1) - math.lgamma(population - draws + 1)

    def log_choose(a: int, b: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)

    terms = [log_choose(marked, i) + log_choose(population - marked, draws - i) - total for i in range(lo, hi + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(x - top) for x in terms))


def colluder_quota(k: int, t: int, *, active: bool) -> int:
    """The fewest colluding holders in one neighbourhood (k neighbours and the
    client: k + 1 holders) that break a client's privacy at threshold t.

    Semi-honest server: t colluders rebuild both secrets. Malicious server: the
    server shows two views to the honest holders; colluders reveal in both, so
    2t - (k+1) colluders let both quorums reach t (Bonawitz et al. 2017, §6).
    """
    return 2 * t - (k + 1) if active else t


def neighbourhood_break_probability(n: int, k: int, t: int, corrupt: int, *, active: bool) -> float:
    """Union bound, over the n clients, of P[a neighbourhood of a uniformly
    random k-subset of the other n - 1 clients holds :func:`colluder_quota`
    colluders], when ``corrupt`` clients collude (fixed before the graph is
    drawn). In a Harary graph on a uniformly random relabelling each client's
    neighbourhood is such a subset."""
    quota = colluder_quota(k, t, active=active)
    if quota <= 0:
        return 1.0
    return min(1.0, n * hypergeometric_tail(n - 1, corrupt, k, quota))


def smallest_secure_threshold(
    n: int, k: int, corrupt: int, *, active: bool, complete: bool, security_bits: int = 40
) -> int | None:
    """The smallest t in (the majority of k + 1 holders, k + 1] that resists
    ``corrupt`` colluders (see :meth:`SecAggConfig._check_threat_model`), or
    None.

    Against a malicious server the bound must hold in *every* neighbourhood,
    whatever the graph: the SecAgg+ graph seed is public and fixed before the
    round by whoever configures it, so a server could try seeds until its
    colluders surround one client, and a per-graph probability would bound
    nothing. Semi-honest rounds use the per-graph probability.
    """
    # resists() is monotone in t (a larger t needs more colluders), so bisect
    lo, hi = (k + 1) // 2 + 1, k + 1
    if not resists(n, k, hi, corrupt, active=active, complete=complete, security_bits=security_bits):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if resists(n, k, mid, corrupt, active=active, complete=complete, security_bits=security_bits):
            hi = mid
        else:
            lo = mid + 1
    return lo


def resists(n: int, k: int, t: int, corrupt: int, *, active: bool, complete: bool, security_bits: int = 40) -> bool:
    """Whether threshold t resists ``corrupt`` colluders: every neighbourhood,
    whatever the graph, on the complete graph or against a malicious server
    (2t - (k+1) > c, or t > c semi-honest); else except with probability
    2^-security_bits over the graph (:func:`neighbourhood_break_probability`)."""
    if complete or active:
        return colluder_quota(k, t, active=active) > corrupt
    return neighbourhood_break_probability(n, k, t, corrupt, active=active) <= 2.0**-security_bits


def default_threshold(
    n: int,
    neighbors: int | None,
    *,
    max_corrupt: int | None = None,
    active: bool = False,
    security_bits: int = DEFAULT_SECURITY_BITS,
) -> int:
    """The threshold a round uses when none is given: a majority of the k + 1
    holders, raised to :func:`smallest_secure_threshold` when ``max_corrupt``
    is given. Raises :class:`ConfigError` when no threshold resists it."""
    k = effective_degree(n, neighbors)
    t = (k + 1) // 2 + 1
    if max_corrupt is None:
        return t
    need = smallest_secure_threshold(n, k, max_corrupt, active=active, complete=k >= n - 1, security_bits=security_bits)
    if need is None:
        raise ConfigError(
            "no threshold resists max_corrupt colluders at this degree", n=n, neighbors=k, max_corrupt=max_corrupt
        )
    return max(t, need)


def _max_dropped(n: int, p: float, target: float) -> int:
    """Smallest q with P[Bin(n, p) > q] <= target (one pass over the pmf)."""
    if p <= 0.0:
        return 0
    i = np.arange(n + 1)
    log_pmf = _lgamma(n + 1) - _lgamma(i + 1) - _lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
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
    max_corrupt: int = 0
    active: bool = False

    @property
    def complete(self) -> bool:
        return self.neighbors >= self.n - 1


def _security_failure(n: int, k: int, t: int, corrupt: float, dropout: float, *, active: bool = False) -> float:
    quota = colluder_quota(k, t, active=active)
    if 2 * t <= k + 1 or quota <= 0:
        return 1.0  # two disjoint quorums could each unmask a different view
    per_client = binomial_tail(k, corrupt, quota)
    if k >= n - 1:
        disconnect = 0.0  # the complete graph stays connected
    else:
        disconnect = min(1.0, n * n * (corrupt + dropout) ** k)
    return min(1.0, n * per_client + disconnect)


def _correctness_failure(n: int, k: int, t: int, dropout: float) -> float:
    # A dropped client's secret s_v is held by its k neighbours only (its own
    # share left with it), so k - t + 1 dropped neighbours leave fewer than t
    # holders. A survivor keeps its own share, so it fails later (k - t + 2); the
    # bound n * P[Bin(k, p) >= k - t + 1] covers both.
    return min(1.0, n * binomial_tail(k, dropout, k - t + 1))


def choose_params(
    n: int,
    *,
    dropout_rate: float,
    corrupt_rate: float,
    security_bits: int = DEFAULT_SECURITY_BITS,
    correctness_bits: int = 20,
    clip: float = 1.0,
    precision: float = 1e-4,
    max_weight: int = 1,
    active: bool = False,
) -> SecAggParams:
    """Smallest SecAgg+ neighbour degree k and a threshold t for the threat model.

    ``active=False`` sizes for a semi-honest server (colluders need t shares of
    one secret), ``active=True`` for a malicious one (2t - (k+1) colluders in a
    neighbourhood break it; Bonawitz et al. 2017, §6; the semi-malicious class of
    Google FCP). Returns :class:`SecAggParams` with ``bits`` from
    :func:`secagg.encoding.plan_bits` for (n, clip, precision, max_weight),
    ``min_survivors`` (the number of survivors that, with probability
    1 - 2^-correctness_bits, at least remain at ``dropout_rate``) and
    ``max_corrupt`` (ceil(corrupt_rate * n), the count a config is checked
    against; the chosen (k, t) passes that check too). Raises
    :class:`ConfigError` when even the complete graph cannot meet the bounds.
    """
    if not isinstance(n, int) or n < 2:
        raise ConfigError("need at least 2 clients", n=n)
    for name, rate in (("dropout_rate", dropout_rate), ("corrupt_rate", corrupt_rate)):
        if not 0.0 <= rate < 1.0 or math.isnan(rate):
            raise ConfigError(f"{name} must be in [0, 1)", **{name: rate})
    if dropout_rate + corrupt_rate >= 1.0:
        raise ConfigError("dropout_rate + corrupt_rate must be below 1")
    sec_target = 2.0**-security_bits
    cor_target = 2.0**-correctness_bits
    max_corrupt = math.ceil(corrupt_rate * n - 1e-9)
    best: tuple[int, int, float, float] | None = None
    for k in range(2, n):
        if k < n - 1 and k % 2 and n % 2:
            continue  # no odd-degree regular graph on an odd number of clients
        # the largest t that is still correct (security prefers t as large as possible);
        # the correctness failure grows with t, so bisect
        lo, hi = (k + 1) // 2 + 1, k + 1
        if _correctness_failure(n, k, lo, dropout_rate) > cor_target:
            continue
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _correctness_failure(n, k, mid, dropout_rate) <= cor_target:
                lo = mid
            else:
                hi = mid - 1
        t = lo
        sec = _security_failure(n, k, t, corrupt_rate, dropout_rate, active=active)
        if sec <= sec_target and resists(
            n, k, t, max_corrupt, active=active, complete=k >= n - 1, security_bits=security_bits
        ):
            best = (k, t, sec, _correctness_failure(n, k, t, dropout_rate))
            break
    if best is None:
        raise ConfigError(
            "no neighbour degree meets the security and correctness bounds for this threat model",
            n=n,
            dropout_rate=dropout_rate,
            corrupt_rate=corrupt_rate,
            active=active,
        )
    k, t, sec, cor = best
    min_survivors = max(t, n - _max_dropped(n, dropout_rate, cor_target), max_corrupt + 2)
    if min_survivors > n:
        raise ConfigError(
            "too many colluders: min_survivors - max_corrupt >= 2 cannot hold", n=n, max_corrupt=max_corrupt
        )
    bits = plan_bits(n, clip, precision, max_weight=max_weight)
    return SecAggParams(n, k, t, bits, min_survivors, sec, cor, max_corrupt, active)


@dataclass(frozen=True)
class SecAggConfig:
    """Everything both sides of a SecAgg / SecAgg+ round agree on before it starts.

    ``neighbors=None`` (or >= n-1) means the complete graph (SecAgg);
    ``threshold`` is per neighbourhood and counts the client itself: each
    client's secrets are shared among its k neighbours and itself, so t must be
    in ((k+1)/2, k+1]; ``min_survivors`` (default: threshold)
    is the fewest masked inputs the server will ever unmask (distributed DP
    calibrates each client's noise share so that this many shares alone meet
    the privacy target). ``identities`` maps client id to an Ed25519 public key and
    is required for ``active_security``. ``encoder`` maps floats to Z_{2^bits}
    (``secagg.encoding.FixedPointEncoder`` or a DP encoder with its interface).
    ``dim`` is the update length, without the weight slot.
    """

    client_ids: tuple[int, ...]
    threshold: int
    dim: int
    encoder: Encoder
    neighbors: int | None = None
    min_survivors: int | None = None
    active_security: bool = False
    identities: Mapping[int, bytes] | None = None
    session_id: bytes = field(default_factory=lambda: os.urandom(SESSION_ID_BYTES))
    graph_seed: bytes = field(default_factory=lambda: os.urandom(GRAPH_SEED_BYTES))
    round: int = 0
    weighted: bool = False
    max_message_bytes: int | None = None
    max_corrupt: int | None = None
    security_bits: int = DEFAULT_SECURITY_BITS

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
        self._check_threat_model()
        if self.identities is not None and set(self.identities) != set(ids):
            raise ConfigError("identities must name exactly the configured clients")
        if not isinstance(self.encoder, Encoder):
            raise ConfigError(
                "encoder must implement secagg.encoding.Encoder (bits, modulus, dtype, max_clients, max_weight, "
                "encode, decode_sum, decode_mean)",
                local=True,
                encoder=type(self.encoder).__name__,
            )
        bits = self.encoder.bits
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 64:
            raise ConfigError("encoder.bits must be an integer in [1, 64]", bits=bits)
        max_clients = self.encoder.max_clients
        if max_clients is not None and max_clients < n:
            raise OverflowRiskError(
                "the encoder is planned for fewer clients than the round has: the sum could wrap",
                max_clients=max_clients,
                n=n,
            )

    def _check_threat_model(self) -> None:
        """Refuse a threshold that ``max_corrupt`` colluders could defeat.

        Complete graph, n = k + 1 holders per secret, any c colluders:
        semi-honest server: t > c (the colluders alone cannot rebuild a secret);
        malicious server: 2t - n > c, so the honest holders that reveal a
        self-mask share and those that reveal a mask-key share of one client
        cannot both reach t together with the colluders (Bonawitz et al. 2017,
        §6). SecAgg+: against a semi-honest server (static corruption, the
        graph drawn after the colluders are fixed) the count per neighbourhood
        must hold for every client except with probability 2^-security_bits
        (hypergeometric union bound); against a malicious server, which could
        grind the public graph seed, it must hold in every neighbourhood of
        every graph: 2t - (k+1) > c.
        """
        c, n, k, t = self.max_corrupt, self.n, self.degree, self.threshold
        if self.active_security and c is None:
            raise ConfigError(
                "active_security needs max_corrupt: the number of clients that may collude with the server"
            )
        if (
            isinstance(self.security_bits, bool)
            or not isinstance(self.security_bits, int)
            or not 1 <= self.security_bits <= 128
        ):
            raise ConfigError("security_bits must be an integer in [1, 128]", security_bits=self.security_bits)
        if c is None:
            return
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n:
            raise ConfigError("max_corrupt must be an integer in [0, n)", max_corrupt=c, n=n)
        if self.min_survivors - c < 2:  # type: ignore[operator]
            raise ConfigError(
                "min_survivors - max_corrupt must be at least 2: the round promises a sum of that many honest "
                "inputs, and one would be that client's update",
                min_survivors=self.min_survivors,
                max_corrupt=c,
            )
        active = self.active_security
        if active and not self.complete and c + (n - self.min_survivors) >= k:  # type: ignore[operator]
            # A Harary graph H(k, n) is k-connected: while fewer than k clients collude or
            # drop, the honest survivors' masks join them into one sum. At k or more the
            # server could unmask the sum of one cut-off group of honest clients.
            raise ConfigError(
                "active SecAgg+ needs max_corrupt + (n - min_survivors) < k, or colluders and dropouts "
                f"could cut the honest survivors into groups whose sums the server unmasks alone; "
                f"raise neighbors above {c + n - self.min_survivors} or min_survivors",  # type: ignore[operator]
                max_corrupt=c,
                min_survivors=self.min_survivors,
                neighbors=k,
                n=n,
            )
        if resists(n, k, t, c, active=active, complete=self.complete, security_bits=self.security_bits):
            return
        # only a refused config pays for the search that names the fix
        need = smallest_secure_threshold(
            n, k, c, active=active, complete=self.complete, security_bits=self.security_bits
        )
        if self.complete:
            rule = "2t - n > max_corrupt" if active else "t > max_corrupt"
        elif active:
            rule = (
                "2t - (k+1) > max_corrupt in every neighbourhood (the server could grind the public graph "
                "seed, so no per-graph probability is accepted)"
            )
        else:
            rule = (
                "P[some neighbourhood holds 2t - (k+1) or more colluders] <= 2^-security_bits"
                if active
                else "P[some neighbourhood holds t or more colluders] <= 2^-security_bits"
            )
        hint = (
            f"the smallest threshold that meets it is {need}"
            if need is not None
            else ("no threshold meets it at this degree: raise neighbors or lower max_corrupt")
        )
        raise ConfigError(
            f"threshold {t} is too low for max_corrupt={c}: the threat model needs {rule}; {hint}",
            threshold=t,
            max_corrupt=c,
            neighbors=k,
            smallest_threshold=need,
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
        return effective_degree(self.n, self.neighbors)

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
                assert self.neighbors is not None  # a graph that is not complete has a degree
                cached = harary_graph(self.client_ids, self.neighbors, self.graph_seed)
            object.__setattr__(self, "_graph", cached)
        return cached
