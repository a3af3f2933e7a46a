"""Rényi-DP accounting for the distributed discrete Gaussian and Skellam mechanisms.

Per round, the server sees the modular sum of ``n_shares`` clients' scaled,
rounded updates plus ``n_shares`` noise shares. The RDP of one round:

* DDGauss (Kairouz, Liu, Steinke 2021, Prop. 14 / Eq. 17), with
  ``L2 = Δ₂/(sqrt(n) σ)``, ``L1 = Δ₁/(sqrt(n) σ)`` and the inflation
  ``τ = 10 Σ_{j<n} exp(-2π²σ² j/(j+1))``::

      ε(α) = min{ α L2²/2 + τ d,  α/2 (L2² + 2 L1 τ + τ² d),  α/2 (L2 + τ sqrt d)² }

* Skellam (Agarwal, Kairouz, Liu 2021), central variance ``μ`` (scaled)::

      ε(α) = α Δ₂²/(2μ) + min{ ((2α-1) Δ₂² + 6 Δ₁)/(4 μ²), 3 Δ₁/(2μ) }

Clients are Poisson-subsampled with rate ``q`` (Zhu & Wang 2019, Thm. 5, as
the authors) or sampled at a fixed size (Wang, Balle, Kasiviswanathan 2019,
Thm. 9, replace-one, sensitivity doubled); see :mod:`secagg.dp.subsampling`.
Rounds compose by adding RDP; (ε, δ) comes from Canonne, Kamath, Steinke 2020
Prop. 12. This reproduces the authors'
``distributed_dp/accounting_utils.py`` (e.g. config A: 2.6827 at 12 bits,
2.4515 at 16 bits; ``tests/vectors/dp_known_answers.json``).

Tight route (default, ``accountant="pld"``, Poisson sampling): the PLD of
the Poisson-subsampled Gaussian twin plus a total-variation coupling term,
:mod:`secagg.dp.pld`; the reported ε is the smaller of that and the RDP
bound above (both valid), so RDP stays as the cross-check and takes over
where the coupling term is too large (few bits, tiny noise, huge ``d``).

Colluders: ``plan.max_corrupt`` clients know their own shares, so every
bound here counts only ``n_shares - max_corrupt`` honest shares.

Floor. Both RDP curves dominate, order by order, the RDP of the Poisson-
subsampled *continuous* Gaussian with the same central noise and the inflated
sensitivity, so the ε here is never below that Gaussian's true ε. The public
``*_epsilon`` functions also compute dp-accounting's PLD ε for that Gaussian
and return the larger (``pld_floor=True``), so the report is never below it
even by PLD discretisation slack. (For fixed-size sampling dp-accounting's
PLD has no model, so the floor is its Gaussian-specific RDP bound.)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ConfigError, require_extra
from .planning import MAX_TAU_DIM, DDPPlan, Mechanism, plan_ddp
from .pld import composed_pld, pld_epsilon, release_tv
from .subsampling import Sampling, subsampled_rdp

__all__ = [
    "RDP_ORDERS",
    "OPACUS_RDP_ORDERS",
    "subsampled_rdp",
    "Sampling",
    "rdp_to_epsilon",
    "round_rdp",
    "gaussian_epsilon",
    "ddgauss_epsilon",
    "skellam_epsilon",
    "plan_epsilon",
    "continuous_noise_multiplier",
    "ACCOUNTANTS",
    "rounds_epsilon",
]

ACCOUNTANTS: tuple[str, ...] = ("pld", "rdp")  # pld: tight, min'd with rdp; rdp: the cross-check alone

# Integer orders (Zhu-Wang's bound needs them), as in the authors' accounting_utils.
RDP_ORDERS: tuple[int, ...] = tuple(range(2, 129)) + (256,)
# Opacus' RDPAccountant.DEFAULT_ALPHAS, for its known answers.
OPACUS_RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


def _check_rate(q: float) -> float:
    if not 0 < q <= 1:
        raise ConfigError("sampling_rate must be in (0, 1]", sampling_rate=q)
    return float(q)


def rdp_to_epsilon(orders: ArrayLike, rdp: ArrayLike, delta: float) -> tuple[float, float]:
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


def round_rdp(
    plan: DDPPlan,
    *,
    n_shares: int,
    sampling_rate: float,
    sampling: Sampling = "poisson",
    orders: Sequence[int] = RDP_ORDERS,
) -> NDArray[np.float64]:
    """RDP of one round of ``plan``'s mechanism when ``n_shares`` noise shares are in the sum.

    ``sampling="fixed"`` (exactly ``q N`` clients, replace-one neighbours)
    doubles the sensitivity and uses WBK19 (see :mod:`secagg.dp.subsampling`).
    Only the ``n_shares - plan.max_corrupt`` honest shares count as noise.
    Results are cached per (plan, n_shares, rate, scheme, orders): a budget
    checked every round recomputes nothing.
    """
    honest = _honest(plan, n_shares)
    return _round_rdp(plan, honest, float(sampling_rate), sampling, tuple(orders)).copy()


def _honest(plan: DDPPlan, n_shares: int) -> int:
    if isinstance(n_shares, bool) or not isinstance(n_shares, (int, np.integer)) or n_shares < 1:
        raise ConfigError("n_shares must be a positive integer", n_shares=n_shares)
    honest = plan.honest_shares(int(n_shares))
    if honest < 1:
        raise ConfigError(
            "the sum holds no honest noise share (n_shares <= max_corrupt)",
            n_shares=n_shares,
            max_corrupt=plan.max_corrupt,
        )
    return honest


@functools.lru_cache(maxsize=1024)
def _round_rdp(
    plan: DDPPlan, n: int, sampling_rate: float, sampling: Sampling, orders: tuple[int, ...]
) -> NDArray[np.float64]:
    # Replace-one (fixed-size sampling) moves the sum by up to twice the clip.
    factor = 2.0 if sampling == "fixed" else 1.0
    d = plan.dim
    if plan.mechanism == "ddgauss":
        tau = plan.tau(n)
        if tau * d > MAX_TAU_DIM:  # plan_ddp checked n_clients shares; a larger sum is checked here
            raise ConfigError("tau * d too large for this sum", tau_dim=tau * d, n_shares=n)
        sd = math.sqrt(n) * plan.scaled_stddev
        l2, l1 = factor * plan.rounded_l2 / sd, factor * plan.rounded_l1 / sd

        def eps(a: NDArray[np.int64]) -> NDArray[np.float64]:
            a = a.astype(np.float64)
            t1 = a * l2**2 / 2 + tau * d
            t2 = a / 2 * (l2**2 + 2 * l1 * tau + tau**2 * d)
            t3 = a / 2 * (l2 + math.sqrt(d) * tau) ** 2
            return np.minimum(np.minimum(t1, t2), t3)

    else:
        mu = n * plan.scaled_variance
        l2, l1 = factor * plan.rounded_l2, factor * plan.rounded_l1

        def eps(a: NDArray[np.int64]) -> NDArray[np.float64]:
            a = a.astype(np.float64)
            return a * l2**2 / (2 * mu) + np.minimum(((2 * a - 1) * l2**2 + 6 * l1) / (4 * mu**2), 3 * l1 / (2 * mu))

    return subsampled_rdp(eps, sampling_rate, orders, sampling)


# dp-accounting describes fixed-size sampling by population and sample sizes;
# its RDP bound depends only on their ratio, so a large population encodes q.
_WOR_POPULATION = 1 << 40


@functools.lru_cache(maxsize=256)
def _gaussian_epsilon(
    z: float, q: float, steps: int, delta: float, accountant: str, orders: tuple[float, ...] | None, sampling: str
) -> float:
    dp = require_extra("dp_accounting", "dp")
    if sampling == "poisson":
        sampled = dp.PoissonSampledDpEvent(q, dp.GaussianDpEvent(z))
        relation = dp.NeighboringRelation.ADD_OR_REMOVE_ONE
    else:
        sampled = dp.SampledWithoutReplacementDpEvent(
            _WOR_POPULATION, max(1, round(q * _WOR_POPULATION)), dp.GaussianDpEvent(z)
        )
        relation = dp.NeighboringRelation.REPLACE_ONE
    event = dp.SelfComposedDpEvent(sampled, steps)
    if accountant == "pld":
        acc = dp.pld.PLDAccountant(neighboring_relation=relation)
    else:
        acc = dp.rdp.RdpAccountant(list(orders) if orders else None, neighboring_relation=relation)
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
    sampling: Sampling = "poisson",
) -> float:
    """ε of the subsampled continuous Gaussian, from dp-accounting (``dp`` extra).

    ``accountant`` is ``"pld"`` (tight) or ``"rdp"`` (``orders`` default to
    dp-accounting's; pass :data:`OPACUS_RDP_ORDERS` to compare with Opacus).
    ``sampling="fixed"`` is sampling without replacement under replace-one
    (``noise_multiplier`` relative to the replace-one sensitivity); dp-accounting
    supports it only with ``accountant="rdp"``.
    """
    if accountant not in ("pld", "rdp"):
        raise ConfigError("accountant must be 'pld' or 'rdp'", accountant=accountant)
    if sampling not in ("poisson", "fixed") or (sampling == "fixed" and accountant == "pld"):
        raise ConfigError("sampling must be 'poisson', or 'fixed' with accountant='rdp'", sampling=sampling)
    if not noise_multiplier > 0:
        raise ConfigError("noise_multiplier must be positive", noise_multiplier=noise_multiplier)
    _check_steps(steps)
    return _gaussian_epsilon(
        float(noise_multiplier),
        _check_rate(sampling_rate),
        int(steps),
        float(delta),
        accountant,
        tuple(orders) if orders is not None else None,
        sampling,
    )


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ConfigError("steps must be a non-negative integer", steps=steps)


def plan_epsilon(
    plan: DDPPlan,
    *,
    sampling_rate: float,
    steps: int,
    delta: float,
    n_shares: int | None = None,
    pld_floor: bool = True,
    sampling: Sampling = "poisson",
    accountant: str = "pld",
) -> float:
    """ε after ``steps`` identical rounds of ``plan`` with ``n_shares`` shares summed (default ``n_clients``).

    ``accountant="pld"`` (Poisson sampling only) reports the smaller of the
    tight bound of :mod:`secagg.dp.pld` and the RDP bound; ``"rdp"`` the RDP
    bound alone (the cross-check).

    ``pld_floor`` returns at least dp-accounting's ε for the continuous
    Gaussian with the same central noise and inflated sensitivity: PLD for
    Poisson sampling; for fixed-size sampling (PLD unsupported there) its
    tighter Gaussian-specific RDP bound, at half the noise multiplier
    (replace-one sensitivity).
    """
    _check_steps(steps)
    if steps == 0:
        return 0.0
    if accountant not in ACCOUNTANTS:
        raise ConfigError("accountant must be 'pld' or 'rdp'", accountant=accountant)
    n = plan.n_clients if n_shares is None else n_shares
    rdp = round_rdp(plan, n_shares=n, sampling_rate=sampling_rate, sampling=sampling) * steps
    eps, _ = rdp_to_epsilon(RDP_ORDERS, rdp, delta)
    if accountant == "pld" and sampling == "poisson":
        tight = pld_epsilon(
            composed_pld(plan, {int(n): int(steps)}, sampling_rate), steps * release_tv(plan, int(n)), delta, eps
        )
        eps = min(eps, tight)
    if pld_floor:
        z = continuous_noise_multiplier(plan, n)
        if sampling == "poisson":
            floor = gaussian_epsilon(noise_multiplier=z, sampling_rate=sampling_rate, steps=steps, delta=delta)
        else:
            floor = gaussian_epsilon(
                noise_multiplier=z / 2,
                sampling_rate=sampling_rate,
                steps=steps,
                delta=delta,
                accountant="rdp",
                sampling="fixed",
            )
        eps = max(eps, floor)
    return eps


def rounds_epsilon(
    plan: DDPPlan,
    rounds: Mapping[int, int],
    *,
    sampling_rate: float,
    delta: float,
    sampling: Sampling = "poisson",
    accountant: str = "pld",
) -> float:
    """ε of the rounds ``{n_shares: count}`` of ``plan`` composed (a per-client ledger).

    The smaller of the tight bound (``accountant="pld"``, Poisson sampling)
    and the RDP bound, as :func:`plan_epsilon` without the floor.
    """
    if accountant not in ACCOUNTANTS:
        raise ConfigError("accountant must be 'pld' or 'rdp'", accountant=accountant)
    live = {int(n): int(c) for n, c in rounds.items() if c > 0}
    if not live:
        return 0.0
    rdp = sum(round_rdp(plan, n_shares=n, sampling_rate=sampling_rate, sampling=sampling) * c for n, c in live.items())
    eps, _ = rdp_to_epsilon(RDP_ORDERS, rdp, delta)
    if accountant == "pld" and sampling == "poisson":
        tv = sum(c * release_tv(plan, n) for n, c in live.items())
        eps = min(eps, pld_epsilon(composed_pld(plan, live, sampling_rate), tv, delta, eps))
    return eps


def continuous_noise_multiplier(plan: DDPPlan, n_shares: int) -> float:
    """Central noise std of the honest shares among ``n_shares`` over the inflated (rounded) sensitivity."""
    return math.sqrt(_honest(plan, n_shares)) * plan.scaled_stddev / plan.rounded_l2


def _mechanism_epsilon(mechanism: Mechanism, **kw: Any) -> float:
    steps, q, delta = kw.pop("steps"), kw.pop("sampling_rate"), kw.pop("delta")
    n_shares, pld_floor, sampling = kw.pop("n_shares"), kw.pop("pld_floor"), kw.pop("sampling")
    accountant = kw.pop("accountant")
    plan = plan_ddp(mechanism=mechanism, **kw)
    return plan_epsilon(
        plan,
        sampling_rate=q,
        steps=steps,
        delta=delta,
        n_shares=n_shares,
        pld_floor=pld_floor,
        sampling=sampling,
        accountant=accountant,
    )


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
    sampling: Sampling = "poisson",
    accountant: str = "pld",
    max_corrupt: int = 0,
    max_inputs: int | None = None,
) -> float:
    """ε of ``steps`` rounds of the distributed discrete Gaussian, for the *sum*.

    Each client's noise share has std ``noise_multiplier * l2_clip /
    sqrt(min_survivors)`` (``min_survivors`` defaults to ``n_clients``: the
    authors' convention); ``n_shares`` (default ``n_clients``) is the number
    of shares actually in each sum. The scale comes from ``bits`` and ``k``
    as in :func:`~secagg.dp.planning.plan_ddp`, which also raises the
    :class:`ConfigError` guards. ``pld_floor`` returns at least dp-accounting's
    ε for the continuous Gaussian with the same noise (:func:`plan_epsilon`).
    ``sampling`` is ``"poisson"`` (rate ``sampling_rate``, add/remove-one) or
    ``"fixed"`` (exactly ``sampling_rate * N`` clients, replace-one).
    ``accountant`` as :func:`plan_epsilon`; ``max_corrupt`` and ``max_inputs``
    as :func:`~secagg.dp.planning.plan_ddp`.
    """
    return _mechanism_epsilon(
        "ddgauss",
        accountant=accountant,
        max_corrupt=max_corrupt,
        max_inputs=max_inputs,
        n_clients=n_clients,
        sampling_rate=sampling_rate,
        steps=steps,
        delta=delta,
        dim=dim,
        l2_clip=l2_clip,
        noise_multiplier=noise_multiplier,
        bits=bits,
        beta=beta,
        k=k,
        min_survivors=min_survivors,
        n_shares=n_shares,
        rho=rho,
        pld_floor=pld_floor,
        sampling=sampling,
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
    sampling: Sampling = "poisson",
    accountant: str = "pld",
    max_corrupt: int = 0,
    max_inputs: int | None = None,
) -> float:
    """ε of ``steps`` rounds of the distributed Skellam mechanism; keywords as :func:`ddgauss_epsilon`."""
    return _mechanism_epsilon(
        "skellam",
        accountant=accountant,
        max_corrupt=max_corrupt,
        max_inputs=max_inputs,
        n_clients=n_clients,
        sampling_rate=sampling_rate,
        steps=steps,
        delta=delta,
        dim=dim,
        l2_clip=l2_clip,
        noise_multiplier=noise_multiplier,
        bits=bits,
        beta=beta,
        k=k,
        min_survivors=min_survivors,
        n_shares=n_shares,
        rho=rho,
        pld_floor=pld_floor,
        sampling=sampling,
    )
