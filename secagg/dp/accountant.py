"""Rényi-DP accounting for the distributed discrete Gaussian and Skellam mechanisms.

Per round, the server sees the modular sum of ``n_shares`` clients' scaled,
rounded updates plus ``n_shares`` noise shares. The RDP of one round:

* DDGauss (Kairouz, Liu, Steinke 2021, Prop. 14 / Eq. 17), with
  ``L2 = Δ₂/(sqrt(n) σ)``, ``L1 = Δ₁/(sqrt(n) σ)`` and the inflation
  ``τ = 10 Σ_{j<n} exp(-2π²σ² j/(j+1))``::

      ε(α) = min{ α L2²/2 + τ d,  α/2 (L2² + 2 L1 τ + τ² d),  α/2 (L2 + τ sqrt d)² }

* Skellam (Agarwal, Kairouz, Liu 2021), central variance ``μ`` (scaled)::

      ε(α) = α Δ₂²/(2μ) + min{ ((2α-1) Δ₂² + 6 Δ₁)/(4 μ²), 3 Δ₁/(2μ) }

Clients are Poisson-subsampled with rate ``q``; amplification uses the generic
bound of Zhu & Wang (ICML 2019, Thm. 5) on integer orders, min'd with the
unamplified curve. Rounds compose by adding RDP; (ε, δ) comes from Canonne,
Kamath, Steinke 2020 Prop. 12. This reproduces the authors'
``distributed_dp/accounting_utils.py`` (e.g. config A: 2.6827 at 12 bits,
2.4515 at 16 bits; ``tests/vectors/dp_known_answers.json``).

Floor. Both RDP curves dominate, order by order, the RDP of the Poisson-
subsampled *continuous* Gaussian with the same central noise and the inflated
sensitivity, so the ε here is never below that Gaussian's true ε. The public
``*_epsilon`` functions also compute dp-accounting's PLD ε for that Gaussian
and return the larger (``pld_floor=True``), so the report is never below it
even by PLD discretisation slack. Fixed-size (without-replacement) sampling
is not modelled: a ``ConfigError`` says so rather than guessing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, require_extra
from .planning import MAX_TAU_DIM, DDPPlan, Mechanism, plan_ddp

__all__ = [
    "RDP_ORDERS",
    "OPACUS_RDP_ORDERS",
    "subsampled_rdp",
    "rdp_to_epsilon",
    "round_rdp",
    "gaussian_epsilon",
    "ddgauss_epsilon",
    "skellam_epsilon",
    "plan_epsilon",
    "continuous_noise_multiplier",
]

# Integer orders (Zhu-Wang's bound needs them), as in the authors' accounting_utils.
RDP_ORDERS: tuple[int, ...] = tuple(range(2, 129)) + (256,)
# Opacus' RDPAccountant.DEFAULT_ALPHAS, for its known answers.
OPACUS_RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


def _check_rate(q: float) -> float:
    if not 0 < q <= 1:
        raise ConfigError("sampling_rate must be in (0, 1]", sampling_rate=q)
    return float(q)


def subsampled_rdp(eps: Callable[[NDArray[np.int64]], NDArray[np.float64]], q: float, orders: Sequence[int]) -> NDArray[np.float64]:
    """RDP at ``orders`` of a mechanism with curve ``eps`` under Poisson sampling at rate ``q``.

    Zhu & Wang 2019, Thm. 5 (upper bound), min'd with the unamplified
    ``eps``. ``eps`` maps an int array of orders to RDP values.
    """
    q = _check_rate(q)
    ints = np.asarray([int(a) for a in orders], dtype=np.int64)
    if np.any(ints < 2) or np.any(ints != np.asarray(orders, dtype=np.float64)):
        raise ConfigError("subsampled RDP needs integer orders >= 2", orders=list(orders))
    plain = np.asarray(eps(ints), dtype=np.float64)
    if q == 1:
        return plain
    top = int(ints.max())
    ls = np.arange(2, top + 1)
    eps_l = np.asarray(eps(ls), dtype=np.float64)  # eps_l[l - 2] = eps(l)
    lgam = np.array([math.lgamma(v + 1) for v in range(top + 1)])
    log_q, log_1q = math.log(q), math.log1p(-q)
    out = np.empty(ints.size)
    for j, a in enumerate(ints):
        a = int(a)
        terms = [0.0, float(eps_l[0])]
        weights = [(1 - q) ** (a - 1) * (a * q - q + 1), math.comb(a, 2) * q**2 * (1 - q) ** (a - 2)]
        if a >= 3:
            l = np.arange(3, a + 1)
            log_comb = lgam[a] - lgam[l] - lgam[a - l]
            rest = (l - 1) * eps_l[l - 2] + log_comb + (a - l) * log_1q + l * log_q
            terms = np.concatenate([terms, rest])
            weights = np.concatenate([weights, np.full(rest.size, 3.0)])
        terms, weights = np.asarray(terms), np.asarray(weights)
        top_term = terms.max()
        lse = top_term + math.log(float(np.sum(weights * np.exp(terms - top_term))))
        out[j] = min(lse / (a - 1), plain[j])
    return out


def rdp_to_epsilon(orders: Sequence[float], rdp: Sequence[float], delta: float) -> tuple[float, float]:
    """Convert an RDP curve to ``(epsilon, best_order)`` at ``delta`` (CKS20 Prop. 12)."""
    if not 0 < delta < 1:
        raise ConfigError("delta must be in (0, 1)", delta=delta)
    a = np.asarray(orders, dtype=np.float64)
    r = np.asarray(rdp, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = r + np.log1p(-1.0 / a) - np.log(delta * a) / (a - 1)
    eps = np.where(a > 1.01, eps, np.inf)
    eps = np.where(delta**2 + np.expm1(-r) > 0, 0.0, eps)  # KL bound already gives this delta
    best = int(np.argmin(eps))
    return max(0.0, float(eps[best])), float(a[best])


def round_rdp(plan: DDPPlan, *, n_shares: int, sampling_rate: float, orders: Sequence[int] = RDP_ORDERS) -> NDArray[np.float64]:
    """RDP of one round of ``plan``'s mechanism when ``n_shares`` noise shares are in the sum.

    Results are cached per (plan, n_shares, rate, orders): a budget checked
    every round recomputes nothing.
    """
    if isinstance(n_shares, bool) or not isinstance(n_shares, (int, np.integer)) or n_shares < 1:
        raise ConfigError("n_shares must be a positive integer", n_shares=n_shares)
    return _round_rdp(plan, int(n_shares), float(sampling_rate), tuple(orders)).copy()


@functools.lru_cache(maxsize=1024)
def _round_rdp(plan: DDPPlan, n: int, sampling_rate: float, orders: tuple[int, ...]) -> NDArray[np.float64]:
    d = plan.dim
    if plan.mechanism == "ddgauss":
        tau = plan.tau(n)
        if tau * d > MAX_TAU_DIM:  # plan_ddp checked n_clients shares; a larger sum is checked here
            raise ConfigError("tau * d too large for this sum", tau_dim=tau * d, n_shares=n)
        sd = math.sqrt(n) * plan.scaled_stddev
        l2, l1 = plan.rounded_l2 / sd, plan.rounded_l1 / sd

        def eps(a: NDArray[np.int64]) -> NDArray[np.float64]:
            a = a.astype(np.float64)
            t1 = a * l2**2 / 2 + tau * d
            t2 = a / 2 * (l2**2 + 2 * l1 * tau + tau**2 * d)
            t3 = a / 2 * (l2 + math.sqrt(d) * tau) ** 2
            return np.minimum(np.minimum(t1, t2), t3)

    else:
        mu = n * plan.scaled_variance
        l2, l1 = plan.rounded_l2, plan.rounded_l1

        def eps(a: NDArray[np.int64]) -> NDArray[np.float64]:
            a = a.astype(np.float64)
            return a * l2**2 / (2 * mu) + np.minimum(((2 * a - 1) * l2**2 + 6 * l1) / (4 * mu**2), 3 * l1 / (2 * mu))

    return subsampled_rdp(eps, sampling_rate, orders)


@functools.lru_cache(maxsize=256)
def _gaussian_epsilon(z: float, q: float, steps: int, delta: float, accountant: str, orders: tuple[float, ...] | None) -> float:
    dp = require_extra("dp_accounting", "dp")
    event = dp.SelfComposedDpEvent(dp.PoissonSampledDpEvent(q, dp.GaussianDpEvent(z)), steps)
    if accountant == "pld":
        acc = dp.pld.PLDAccountant()
    else:
        acc = dp.rdp.RdpAccountant(list(orders) if orders else None)
    acc.compose(event)
    return float(acc.get_epsilon(delta))


def gaussian_epsilon(
    *,
    noise_multiplier: float,
    sampling_rate: float,
    steps: int,
    delta: float,
    accountant: str = "pld",
    orders: Sequence[float] | None = None,
) -> float:
    """ε of the Poisson-subsampled continuous Gaussian, from dp-accounting (``dp`` extra).

    ``accountant`` is ``"pld"`` (tight) or ``"rdp"`` (``orders`` default to
    dp-accounting's; pass :data:`OPACUS_RDP_ORDERS` to compare with Opacus).
    """
    if accountant not in ("pld", "rdp"):
        raise ConfigError("accountant must be 'pld' or 'rdp'", accountant=accountant)
    if not noise_multiplier > 0:
        raise ConfigError("noise_multiplier must be positive", noise_multiplier=noise_multiplier)
    _check_steps(steps)
    return _gaussian_epsilon(
        float(noise_multiplier), _check_rate(sampling_rate), int(steps), float(delta), accountant,
        tuple(orders) if orders is not None else None,
    )


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ConfigError("steps must be a non-negative integer", steps=steps)


def plan_epsilon(
    plan: DDPPlan, *, sampling_rate: float, steps: int, delta: float, n_shares: int | None = None, pld_floor: bool = True
) -> float:
    """ε after ``steps`` identical rounds of ``plan`` with ``n_shares`` shares summed (default ``n_clients``)."""
    _check_steps(steps)
    if steps == 0:
        return 0.0
    n = plan.n_clients if n_shares is None else n_shares
    rdp = round_rdp(plan, n_shares=n, sampling_rate=sampling_rate) * steps
    eps, _ = rdp_to_epsilon(RDP_ORDERS, rdp, delta)
    if pld_floor:
        eps = max(eps, gaussian_epsilon(
            noise_multiplier=continuous_noise_multiplier(plan, n),
            sampling_rate=sampling_rate, steps=steps, delta=delta, accountant="pld",
        ))
    return eps


def continuous_noise_multiplier(plan: DDPPlan, n_shares: int) -> float:
    """Central noise std of ``n_shares`` shares over the inflated (rounded) sensitivity."""
    return math.sqrt(n_shares) * plan.scaled_stddev / plan.rounded_l2


def _mechanism_epsilon(mechanism: Mechanism, **kw: object) -> float:
    steps, q, delta = kw.pop("steps"), kw.pop("sampling_rate"), kw.pop("delta")
    n_shares, pld_floor = kw.pop("n_shares"), kw.pop("pld_floor")
    plan = plan_ddp(mechanism=mechanism, **kw)  # type: ignore[arg-type]
    return plan_epsilon(plan, sampling_rate=q, steps=steps, delta=delta, n_shares=n_shares, pld_floor=pld_floor)  # type: ignore[arg-type]


def ddgauss_epsilon(
    *,
    n_clients: int,
    sampling_rate: float,
    steps: int,
    delta: float,
    dim: int,
    l2_clip: float,
    noise_multiplier: float,
    bits: int,
    beta: float,
    k: float,
    min_survivors: int | None = None,
    n_shares: int | None = None,
    rho: float = 1.0,
    pld_floor: bool = True,
) -> float:
    """ε of ``steps`` rounds of the distributed discrete Gaussian, for the *sum*.

    Each client's noise share has std ``noise_multiplier * l2_clip /
    sqrt(min_survivors)`` (``min_survivors`` defaults to ``n_clients``: the
    authors' convention); ``n_shares`` (default ``n_clients``) is the number
    of shares actually in each sum. The scale comes from ``bits`` and ``k``
    as in :func:`~secagg.dp.planning.plan_ddp`, which also raises the
    :class:`ConfigError` guards. ``pld_floor`` returns at least dp-accounting's
    PLD ε for the continuous Gaussian with the same noise.
    """
    return _mechanism_epsilon(
        "ddgauss", n_clients=n_clients, sampling_rate=sampling_rate, steps=steps, delta=delta, dim=dim,
        l2_clip=l2_clip, noise_multiplier=noise_multiplier, bits=bits, beta=beta, k=k,
        min_survivors=min_survivors, n_shares=n_shares, rho=rho, pld_floor=pld_floor,
    )


def skellam_epsilon(
    *,
    n_clients: int,
    sampling_rate: float,
    steps: int,
    delta: float,
    dim: int,
    l2_clip: float,
    noise_multiplier: float,
    bits: int,
    beta: float,
    k: float,
    min_survivors: int | None = None,
    n_shares: int | None = None,
    rho: float = 1.0,
    pld_floor: bool = True,
) -> float:
    """ε of ``steps`` rounds of the distributed Skellam mechanism; keywords as :func:`ddgauss_epsilon`."""
    return _mechanism_epsilon(
        "skellam", n_clients=n_clients, sampling_rate=sampling_rate, steps=steps, delta=delta, dim=dim,
        l2_clip=l2_clip, noise_multiplier=noise_multiplier, bits=bits, beta=beta, k=k,
        min_survivors=min_survivors, n_shares=n_shares, rho=rho, pld_floor=pld_floor,
    )
