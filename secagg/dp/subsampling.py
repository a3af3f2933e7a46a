"""Privacy amplification by client sampling, for any RDP curve on integer orders.

Two sampling schemes, each with the neighbouring relation its bound is proved for:

* ``"poisson"``: each client joins a round independently with probability
  ``q``; add/remove-one neighbours. Zhu & Wang (ICML 2019), Thm. 5, the
  generic upper bound the DDGauss/Skellam authors use.
* ``"fixed"``: exactly ``m = q N`` of ``N`` clients, uniformly without
  replacement; replace-one neighbours. Wang, Balle, Kasiviswanathan
  (AISTATS 2019), Thm. 9, with ``ε(∞) = ∞`` (true for both mechanisms here).
  Replace-one changes a sum by up to *twice* the clip, so callers pass the
  curve for doubled sensitivity (the accountant does).

Both are min'd with the unamplified curve, which is always valid. These are
the generic bounds; for the continuous Gaussian dp-accounting has tighter
mechanism-specific ones, which is why the accountant's floor compares with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError

__all__ = ["subsampled_rdp", "Sampling", "SAMPLING_SCHEMES"]

Sampling = Literal["poisson", "fixed"]
SAMPLING_SCHEMES: tuple[str, ...] = ("poisson", "fixed")

Curve = Callable[[NDArray[np.int64]], NDArray[np.float64]]


def _log_sum(terms: NDArray[np.float64], weights: NDArray[np.float64]) -> float:
    """log(Σ weights · exp(terms)) for non-negative weights, without overflow."""
    top = float(terms.max())
    return top + math.log(float(np.sum(weights * np.exp(terms - top))))


def _poisson(a: int, q: float, eps_l: NDArray[np.float64], lgam: NDArray[np.float64]) -> float:
    # Zhu & Wang 2019, Thm. 5: terms l = 0, 1 (folded with 2) and 3..a.
    terms: list[float] | NDArray[np.float64] = [0.0, float(eps_l[0])]
    weights: list[float] | NDArray[np.float64] = [
        (1 - q) ** (a - 1) * (a * q - q + 1),
        math.comb(a, 2) * q**2 * (1 - q) ** (a - 2),
    ]
    if a >= 3:
        ell = np.arange(3, a + 1)
        log_comb = lgam[a] - lgam[ell] - lgam[a - ell]
        rest = (ell - 1) * eps_l[ell - 2] + log_comb + (a - ell) * math.log1p(-q) + ell * math.log(q)
        terms = np.concatenate([terms, rest])
        weights = np.concatenate([weights, np.full(rest.size, 3.0)])
    return _log_sum(np.asarray(terms, dtype=np.float64), np.asarray(weights, dtype=np.float64)) / (a - 1)


def _fixed(a: int, q: float, eps_l: NDArray[np.float64], lgam: NDArray[np.float64]) -> float:
    # WBK19 Thm. 9 with eps(inf) = inf: 1 + q^2 C(a,2) min{4(e^eps2 - 1), 2 e^eps2}
    #                                     + sum_{j>=3} 2 q^j C(a,j) e^{(j-1) eps(j)}.
    e2 = float(eps_l[0])
    log_second = min(math.log(4.0) + e2 + math.log(-math.expm1(-e2)) if e2 > 0 else -math.inf, math.log(2.0) + e2)
    terms: list[float] | NDArray[np.float64] = [0.0, 2 * math.log(q) + lgam[a] - lgam[2] - lgam[a - 2] + log_second]
    if a >= 3:
        j = np.arange(3, a + 1)
        rest = math.log(2.0) + (j - 1) * eps_l[j - 2] + j * math.log(q) + lgam[a] - lgam[j] - lgam[a - j]
        terms = np.concatenate([terms, rest])
    t = np.asarray(terms, dtype=np.float64)
    return _log_sum(t, np.ones_like(t)) / (a - 1)


def subsampled_rdp(eps: Curve, q: float, orders: Sequence[int], sampling: Sampling = "poisson") -> NDArray[np.float64]:
    """RDP at integer ``orders`` (>= 2) of a mechanism with curve ``eps`` under client sampling.

    ``eps`` maps an int array of orders to RDP values (for the neighbouring
    relation of ``sampling``, see the module docstring); ``q`` in ``(0, 1]``.
    Raises :class:`ConfigError` for a bad rate, scheme or order.
    """
    if not 0 < q <= 1:
        raise ConfigError("sampling_rate must be in (0, 1]", sampling_rate=q)
    if sampling not in SAMPLING_SCHEMES:
        raise ConfigError("sampling must be 'poisson' or 'fixed'", sampling=sampling)
    ints = np.asarray([int(a) for a in orders], dtype=np.int64)
    if np.any(ints < 2) or np.any(ints != np.asarray(orders, dtype=np.float64)):
        raise ConfigError("subsampled RDP needs integer orders >= 2", orders=list(orders))
    plain = np.asarray(eps(ints), dtype=np.float64)
    if q == 1:
        return plain
    top = int(ints.max())
    eps_l = np.asarray(eps(np.arange(2, top + 1)), dtype=np.float64)  # eps_l[l - 2] = eps(l)
    lgam = np.array([math.lgamma(v + 1) for v in range(top + 1)])
    bound = _poisson if sampling == "poisson" else _fixed
    out = np.array([bound(int(a), float(q), eps_l, lgam) for a in ints])
    return np.minimum(out, plain)
