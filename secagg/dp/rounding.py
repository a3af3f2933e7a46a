"""Conditional randomised rounding to integers with a bounded L2 norm.

Unbiased randomised rounding maps a real ``x`` to ``floor(x)`` or
``floor(x) + 1`` with the probabilities that keep the mean. It can increase
the L2 norm, and the DP sensitivity is the norm *after* rounding, so Kairouz,
Liu, Steinke (ICML 2021, Thm. 1 / Prop. 22) re-round until the norm is at most
an inflated bound::

    Δ₂ = min( c + sqrt(d),
              sqrt(c² + d/4 + sqrt(2 ln(1/β)) · (c + sqrt(d)/2)) )

for an input of norm at most ``c`` in ``d`` dimensions (here already scaled,
so the grid step is 1). With ``β > 0`` one try succeeds with probability at
least ``1 - β``; with ``β = 0`` only the first, deterministic bound is used and
the first try always succeeds. The recommended ``β`` is ``e^-0.5``.

The randomness comes from :class:`~secagg.dp.randomness.RandomWords` (OS
ChaCha20 by default). Rounding leaks nothing beyond the rounded vector; the
bound, not the coins, is what the accountant relies on.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from .randomness import RandomWords, as_random_words

__all__ = ["rounded_l2_norm_bound", "rounded_l1_norm_bound", "conditional_randomized_round", "MAX_ROUNDING_TRIES"]

# With beta = e^-0.5 a try fails with probability at most 0.61; 200 failures in a
# row happen with probability below 1e-42, so hitting the limit means the input
# broke the contract (norm above the bound), not bad luck.
MAX_ROUNDING_TRIES = 200


def rounded_l2_norm_bound(l2_norm: float, beta: float, dim: int) -> float:
    """The inflated L2 bound Δ₂ after conditional randomised rounding (Kairouz et al. 2021, Thm. 1).

    ``l2_norm`` > 0 is the (scaled) input norm bound, ``beta`` in ``[0, 1)``,
    ``dim`` >= 1. Raises :class:`ConfigError` otherwise.
    """
    if not l2_norm > 0 or not math.isfinite(l2_norm):
        raise ConfigError("l2_norm must be positive and finite", l2_norm=l2_norm)
    if not 0 <= beta < 1:
        raise ConfigError("beta must be in [0, 1)", beta=beta)
    if isinstance(dim, bool) or int(dim) != dim or dim < 1:
        raise ConfigError("dim must be a positive integer", dim=dim)
    bound_1 = l2_norm + math.sqrt(dim)
    if beta == 0:
        return bound_1
    squared = l2_norm**2 + 0.25 * dim + math.sqrt(2.0 * math.log(1.0 / beta)) * (l2_norm + 0.5 * math.sqrt(dim))
    return min(bound_1, math.sqrt(squared))


def rounded_l1_norm_bound(rounded_l2: float, dim: int) -> float:
    """L1 bound of an integer vector with L2 norm ``rounded_l2``: ``Δ₂ · min(sqrt(d), Δ₂)``.

    ``||v||₁ <= sqrt(d) ||v||₂`` always, and ``||v||₁ <= ||v||₂²`` for integer vectors.
    """
    return rounded_l2 * min(math.sqrt(dim), rounded_l2)


def conditional_randomized_round(
    x: NDArray[np.floating],
    *,
    l2_norm: float,
    beta: float,
    rng: np.random.Generator | RandomWords | None = None,
) -> NDArray[np.int64]:
    """Round ``x`` (``||x|| <= l2_norm``) unbiasedly to integers with norm <= Δ₂.

    ``x`` is one vector (1-D) or a batch of row vectors (2-D, one record per
    row: every row is bounded and rounded on its own). Re-rounds a vector
    until ``||round(x)||₂ <= rounded_l2_norm_bound(l2_norm, beta, d)``.
    Raises :class:`ConfigError` if ``x`` is not finite and 1-D or 2-D with
    non-empty rows, if a norm exceeds ``l2_norm`` (the caller must clip
    first), or if :data:`MAX_ROUNDING_TRIES` tries all fail (``failed_tries``,
    ``bound``, ``last_norm`` fields).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[-1] == 0 or not np.all(np.isfinite(x)):
        raise ConfigError("x must be a finite 1-D vector or 2-D batch of non-empty rows", shape=x.shape)
    rows = x.reshape(-1, x.shape[-1])
    norms = np.sqrt(np.sum(rows * rows, axis=1))  # plain numpy, not BLAS (threads spin on a busy machine)
    # A relative slack of 1e-9 absorbs the float rounding of the caller's clip.
    if rows.shape[0] and float(norms.max()) > l2_norm * (1 + 1e-9):
        raise ConfigError("x exceeds the L2 bound; clip before rounding", norm=float(norms.max()), l2_norm=l2_norm)
    d = rows.shape[1]
    bound = rounded_l2_norm_bound(l2_norm, beta, d)
    src = as_random_words(rng)
    floor = np.floor(rows)
    frac = rows - floor
    out = floor.astype(np.int64)
    pending = np.arange(rows.shape[0])
    last = math.inf
    for _ in range(MAX_ROUNDING_TRIES):
        if pending.size == 0:
            break
        # Round up with probability frac (53-bit uniforms; unbiased up to 2^-53).
        coins = src.uniform53(pending.size * d).astype(np.float64).reshape(pending.size, d) * 2.0**-53
        rounded = floor[pending].astype(np.int64) + (coins < frac[pending])
        sq = np.sum(rounded.astype(np.float64) ** 2, axis=1)
        ok = np.sqrt(sq) <= bound
        out[pending[ok]] = rounded[ok]
        if not ok.all():
            last = float(np.sqrt(sq[~ok].max()))
        pending = pending[~ok]
    if pending.size:
        raise ConfigError(
            "conditional randomised rounding failed repeatedly; the input breaks the norm bound",
            failed_tries=MAX_ROUNDING_TRIES,
            bound=bound,
            last_norm=last,
        )
    return out.reshape(x.shape)
