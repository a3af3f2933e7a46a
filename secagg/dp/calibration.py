"""Choose the noise multiplier that meets a target ε even when clients drop out.

Dropouts remove noise shares: noise calibrated for 100 clients, z=1, q=0.01,
T=1000, leaves a sum with 20 % dropouts at ε ≈ 2.35 (PLD; 3.25 with this
package's DDGauss RDP) instead of 1.83. So every share is calibrated so that
``min_survivors`` shares, the fewest the server will ever unmask, already meet
the target. More survivors only add noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from ..errors import ConfigError
from .accountant import gaussian_epsilon, plan_epsilon
from .planning import DEFAULT_BETA, DEFAULT_K, plan_ddp
from .subsampling import Sampling

__all__ = ["calibrate_noise_multiplier"]

# Bisection stops when the bracket is this tight relative to z: far below the
# precision anyone states a noise multiplier with.
_RELATIVE_TOLERANCE = 1e-4
_MAX_NOISE_MULTIPLIER = 1e4  # beyond this the target is unreachable in practice
CALIBRATION_MARGIN = 1e-6  # relative: aim this far below the target (see the module docstring)


def _bisect(eps_of: Callable[[float], float], target: float, start: float) -> float:
    """Smallest z (to the tolerance) with eps_of(z) <= target, assuming eps_of decreases in z."""
    hi = start
    while eps_of(hi) > target:
        hi *= 2.0
        if hi > _MAX_NOISE_MULTIPLIER:
            raise ConfigError("target epsilon unreachable with any sane noise multiplier", target_epsilon=target)
    lo = hi / 2.0
    while lo > 1e-6 and eps_of(lo) <= target:
        hi, lo = lo, lo / 2.0
    while hi - lo > _RELATIVE_TOLERANCE * hi:
        mid = 0.5 * (lo + hi)
        if eps_of(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    *,
    steps: int,
    sampling_rate: float,
    min_survivors: int,
    mechanism: Literal["ddgauss", "skellam", "gaussian"] = "ddgauss",
    n_clients: int | None = None,
    dim: int | None = None,
    l2_clip: float = 1.0,
    bits: int | None = None,
    beta: float = DEFAULT_BETA,
    k: float = DEFAULT_K,
    rho: float = 1.0,
    sampling: Sampling = "poisson",
    max_inputs: int | None = None,
    max_corrupt: int = 0,
    accountant: str = "pld",
) -> float:
    """Return the smallest noise multiplier z whose ``min_survivors``-share sum meets the target.

    z is the central noise over ``l2_clip`` when exactly ``min_survivors``
    shares are summed; each client's share has std ``z * l2_clip /
    sqrt(min_survivors)`` (pass the same ``min_survivors`` to
    :class:`~secagg.dp.encoder.DistributedDPEncoder`). ``mechanism='gaussian'``
    calibrates the continuous Gaussian with dp-accounting's PLD and ignores
    ``dim``, ``bits``, ``beta`` and ``k``; the distributed mechanisms need
    ``dim`` and ``bits`` (``n_clients`` defaults to ``min_survivors``).
    ``sampling`` is ``"poisson"`` or ``"fixed"`` (:mod:`secagg.dp.subsampling`);
    ``max_inputs`` is :func:`~secagg.dp.planning.plan_ddp`'s (record-level DP);
    ``max_corrupt`` colluders' shares are not counted (z is then the central
    noise of the ``min_survivors - max_corrupt`` honest shares);
    ``accountant`` is ``"pld"`` (tight, default) or ``"rdp"``. The
    result is checked with the PLD floor of :func:`plan_epsilon`, so
    ``ε(z) <= target_epsilon`` exactly as the accountant reports it. Raises
    :class:`ConfigError` for bad arguments or an unreachable target.
    """
    if not (target_epsilon > 0 and math.isfinite(target_epsilon)):
        raise ConfigError("target_epsilon must be positive and finite", target_epsilon=target_epsilon)
    if isinstance(min_survivors, bool) or not isinstance(min_survivors, int) or min_survivors < 1:
        raise ConfigError("min_survivors must be a positive integer", min_survivors=min_survivors)
    target_epsilon = target_epsilon * (1 - CALIBRATION_MARGIN)
    if mechanism == "gaussian":
        if sampling == "fixed":  # dp-accounting: RDP only; z relative to the replace-one sensitivity
            return _bisect(
                lambda z: gaussian_epsilon(
                    noise_multiplier=z,
                    sampling_rate=sampling_rate,
                    steps=steps,
                    delta=delta,
                    accountant="rdp",
                    sampling="fixed",
                ),
                target_epsilon,
                1.0,
            )
        return _bisect(
            lambda z: gaussian_epsilon(noise_multiplier=z, sampling_rate=sampling_rate, steps=steps, delta=delta),
            target_epsilon,
            1.0,
        )
    if mechanism not in ("ddgauss", "skellam"):
        raise ConfigError("mechanism must be 'ddgauss', 'skellam' or 'gaussian'", mechanism=mechanism)
    if dim is None or bits is None:
        raise ConfigError("the distributed mechanisms need dim and bits", dim=dim, bits=bits)
    n_total = min_survivors if n_clients is None else n_clients

    def eps_of(z: float, pld_floor: bool) -> float:
        try:
            plan = plan_ddp(
                mechanism=mechanism,
                n_clients=n_total,
                min_survivors=min_survivors,
                dim=dim,
                l2_clip=l2_clip,
                noise_multiplier=z,
                bits=bits,
                beta=beta,
                k=k,
                rho=rho,
                max_inputs=max_inputs,
            )
        except ConfigError as exc:
            if any(
                getattr(exc, f) is not None
                for f in ("noise_multiplier", "n_clients", "min_survivors", "max_inputs", "max_corrupt")
            ):
                raise  # a real configuration mistake, not "too little noise"
            return math.inf  # guards (scaled sigma, tau * d) fail only for too little noise
        return plan_epsilon(
            plan,
            sampling_rate=sampling_rate,
            steps=steps,
            delta=delta,
            n_shares=min_survivors,
            pld_floor=pld_floor,
            sampling=sampling,
            accountant=accountant,
        )

    z = _bisect(lambda z: eps_of(z, False), target_epsilon, 1.0)
    if eps_of(z, True) > target_epsilon:  # the PLD floor binds (rare): bisect on the full report
        z = _bisect(lambda z: eps_of(z, True), target_epsilon, z)
    return z
