"""Integer noise for distributed DP: exact discrete Gaussian and Skellam samplers.

Discrete Gaussian (Canonne, Kamath, Steinke 2020, arXiv 2004.00010, Algs. 1-3)
-------------------------------------------------------------------------------
``N_Z(0, sigma^2)`` puts mass proportional to ``exp(-x^2 / (2 sigma^2))`` on
each integer ``x``. CKS20 sample it with three nested rejection steps, all of
which reduce to coins ``Bernoulli(x)`` with a rational ``x`` in ``[0, 1]``:

* Alg. 1, ``Bernoulli(exp(-gamma))``: for ``gamma <= 1`` flip
  ``Bernoulli(gamma / K)`` for ``K = 1, 2, ...`` until one fails; output
  ``K`` odd. For ``gamma > 1`` we use ``m = ceil(gamma)`` independent pieces
  ``Bernoulli(exp(-gamma/m))`` and output their AND (any integer ``m >= gamma``
  is correct, so ``m`` need not be computed exactly).
* Alg. 2, discrete Laplace with scale ``t``: ``U`` uniform in ``{0..t-1}``,
  accept with ``Bernoulli(exp(-U/t))``, add ``t * V`` with ``V`` geometric
  (successes of ``Bernoulli(exp(-1))``), random sign, reject ``-0``.
* Alg. 3: ``t = floor(sigma) + 1``, draw ``Y`` from the discrete Laplace,
  accept with ``Bernoulli(exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)))``.

How exactness and speed are both kept. The algorithms run on whole arrays
(numpy), each coin ``Bernoulli(x)`` being "is ``U < x``" for a uniform real
``U``. We read the first 53 bits of ``U`` from the random stream, so ``U`` lies
in ``[u, u + 2^-53)``, and compute ``x`` in float64. Every ``x`` here is a
rational function of integers evaluated with at most ten roundings, so the
float value is within ``2^-48`` of the exact ``x`` (for the discrete Gaussian
acceptance with cancellation in ``|Y| - sigma^2/t``, the absolute error of
``gamma/m`` is at most about ``3 * 2^-51`` because ``t > sigma`` and
``m >= max(1, gamma)``). We trust the float comparison only when ``U``'s whole
interval is at least ``_AMBIGUITY = 2^-40`` away from the float ``x``: then the
float answer *is* the exact answer. Otherwise (probability about ``2^-39`` per
coin) that one coin is settled in pure Python: ``x`` is recomputed as a
:class:`fractions.Fraction` from the exact inputs (``sigma`` is taken as the
exact rational value of the float given) and compared with further random
bits of ``U``, 64 at a time, until they differ. The output distribution is
therefore exactly ``N_Z(0, sigma^2)``; floats only decide *when* the exact
comparison is needed. ``tests/secagg/dp/test_samplers.py`` widens the
ambiguity zone so that the exact path runs on most coins and checks the same
statistics.

Skellam (Agarwal, Kairouz, Liu 2021)
------------------------------------
``Poisson(v/2) - Poisson(v/2)``. Poisson is sampled by Hörmann's PTRS
(transformed rejection with squeeze, the algorithm numpy uses for
``lam >= 10``) and by multiplying uniforms below that. These are
floating-point algorithms: the pmf is right up to float rounding, not exactly
(the authors' and TF Privacy's samplers are the same in this respect). Prefer
the discrete Gaussian where floating-point attacks (Mironov 2012) matter.

Randomness and timing. Both samplers draw only from :class:`RandomWords`: a
fresh ChaCha20 key from :func:`os.urandom` per call by default, or an
explicitly seeded ``np.random.Generator`` passed as ``rng`` for simulation.
The samplers are *not* constant-time (JMRO22 timing attacks on CKS20); clients
should draw their noise before the data-dependent steps are observable, as
:class:`~secagg.dp.encoder.DistributedDPEncoder` does (noise is drawn in bulk
for the whole vector).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from .randomness import RandomWords, as_random_words

__all__ = ["discrete_gaussian", "skellam", "discrete_laplace", "MAX_SIGMA"]

# Width of the zone around a float threshold where the float comparison is not
# trusted and the exact rational comparison runs. It exceeds the proven float
# error bound (2^-48) by a factor 256.
_AMBIGUITY = 2.0**-40
_TWO_M53 = 2.0**-53
# Largest sigma accepted: keeps |Y| (a few hundred sigma at most) far below
# 2^53, so integers are exact in float64 and the error bound above holds.
MAX_SIGMA = 2.0**40
# Poisson: PTRS needs lam >= 10 (Hörmann 1993); below, multiply uniforms.
_PTRS_MIN_LAMBDA = 10.0
# Largest Skellam variance accepted (Poisson means up to 2^52 stay exact ints).
_MAX_SKELLAM_VARIANCE = 2.0**50


def _exact_less(prefix: int, x: Fraction, src: RandomWords) -> bool:
    """Exactly decide ``U < x`` where ``U = (prefix + V) / 2^53`` and ``V`` is fresh uniform."""
    r = x * (1 << 53) - prefix  # V < r ?
    while True:
        if r <= 0:
            return False
        if r >= 1:
            return True
        scaled = r * (1 << 64)
        floor = scaled.numerator // scaled.denominator
        word = int(src.words(1)[0])
        if word != floor:
            return word < floor
        r = scaled - floor  # V's next 64 bits tie with x's: look further


def _coins(x: NDArray[np.float64], exact: Callable[[int], Fraction], src: RandomWords) -> NDArray[np.bool_]:
    """Exact ``Bernoulli(x_i)`` for ``x_i`` in ``[0, 1]`` given in float (see module docstring).

    ``exact(i)`` returns the exact rational ``x_i``; it is called only for the
    rare coins whose float comparison is ambiguous.
    """
    u = src.uniform53(x.size)
    lo = u.astype(np.float64) * _TWO_M53
    hi = lo + _TWO_M53
    yes = hi <= x - _AMBIGUITY
    no = lo >= x + _AMBIGUITY
    ambiguous = np.flatnonzero(~(yes | no))
    for i in ambiguous:
        yes[i] = _exact_less(int(u[i]), exact(int(i)), src)
    return yes


def _bernoulli_exp_at_most_one(
    gamma: NDArray[np.float64], exact_gamma: Callable[[int], Fraction], src: RandomWords
) -> NDArray[np.bool_]:
    """CKS20 Alg. 1 for ``gamma_i`` in ``[0, 1]``: flip ``Bernoulli(gamma/K)``, K = 1, 2, ...

    until a coin fails; output ``K`` odd. All live elements share the same
    ``K`` in each pass, so one vectorised coin call per ``K``.
    """
    result = np.zeros(gamma.size, dtype=bool)
    live = np.arange(gamma.size)
    g = gamma
    k = 1
    while live.size:

        def exact(j: int, live: NDArray[np.int64] = live, k: int = k) -> Fraction:
            return exact_gamma(int(live[j])) / k

        a = _coins(g / k if k > 1 else g, exact, src)
        result[live[~a]] = k % 2 == 1
        live, g = live[a], g[a]
        k += 1
    return result


def _bernoulli_exp(
    gamma: NDArray[np.float64],
    exact_gamma: Callable[[int], Fraction],
    src: RandomWords,
    *,
    at_most_one: bool = False,
) -> NDArray[np.bool_]:
    """Exact ``Bernoulli(exp(-gamma_i))`` for ``gamma_i >= 0`` (CKS20 Alg. 1, vectorised).

    ``gamma`` is a float approximation (relative error far below 1e-9);
    ``exact_gamma(i)`` is the exact rational value. ``at_most_one`` says the
    caller knows every exact ``gamma_i <= 1`` (one piece suffices). Otherwise
    ``exp(-gamma) = exp(-gamma/m)^m`` with ``m >= gamma`` pieces, ANDed.
    """
    if at_most_one:
        return _bernoulli_exp_at_most_one(gamma, exact_gamma, src)
    n = gamma.size
    # Any integer m >= gamma is correct; the generous margin makes m > the exact gamma.
    pieces = (np.floor(gamma * (1 + 1e-9) + 1e-9) + 1).astype(np.int64)
    base = gamma / pieces
    result = np.ones(n, dtype=bool)
    left = pieces.copy()
    live = np.arange(n)
    while live.size:

        def exact(j: int, live: NDArray[np.int64] = live) -> Fraction:
            i = int(live[j])
            return exact_gamma(i) / int(pieces[i])

        ok = _bernoulli_exp_at_most_one(base[live], exact, src)
        result[live[~ok]] = False  # one failed piece fails the product
        left[live] -= 1
        live = live[ok & (left[live] > 0)]
    return result


def _geometric_exp1(n: int, src: RandomWords) -> NDArray[np.int64]:
    """Number of successes of ``Bernoulli(exp(-1))`` before the first failure."""
    v = np.zeros(n, dtype=np.int64)
    live = np.arange(n)
    one = Fraction(1)
    while live.size:
        c = _bernoulli_exp(np.ones(live.size), lambda _i: one, src, at_most_one=True)
        live = live[c]
        v[live] += 1
    return v


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ConfigError("size must be a non-negative integer", size=size)
    return int(size)


def discrete_laplace(scale: int, size: int, *, rng: np.random.Generator | RandomWords | None = None) -> NDArray[np.int64]:
    """Exact discrete Laplace samples, ``P(x) ∝ exp(-|x| / scale)`` (CKS20 Alg. 2).

    ``scale`` is a positive integer. Raises :class:`ConfigError` otherwise.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale < 2**52:
        raise ConfigError("discrete Laplace scale must be an integer in [1, 2**52)", scale=scale)
    n, t = _check_size(size), int(scale)
    src = as_random_words(rng)
    out = np.empty(n, dtype=np.int64)
    filled = 0
    while filled < n:
        batch = int((n - filled) * 1.7) + 16  # acceptance is about 1 - 1/e, times 1 - 1/(2t)
        u = src.below(t, batch)
        d = _bernoulli_exp(u / t, lambda i, u=u: Fraction(int(u[i]), t), src, at_most_one=True)  # U/t < 1
        u = u[d]
        x = u + t * _geometric_exp1(u.size, src)
        negative = (src.words(x.size) & np.uint64(1)).astype(bool)
        keep = ~(negative & (x == 0))
        y = np.where(negative, -x, x)[keep]
        take = min(y.size, n - filled)
        out[filled : filled + take] = y[:take]
        filled += take
    return out


def discrete_gaussian(
    sigma: float, size: int, *, rng: np.random.Generator | RandomWords | None = None
) -> NDArray[np.int64]:
    """Return ``size`` exact samples of the discrete Gaussian ``N_Z(0, sigma^2)`` as int64.

    ``sigma`` is the scale parameter (for ``sigma >= 1`` the variance is
    ``sigma^2`` to within ``1e-8`` relative); it is taken as the exact rational
    value of the float passed. ``rng=None`` draws from a fresh OS-keyed
    ChaCha20 stream; pass a seeded ``np.random.Generator`` only for
    simulation. Raises :class:`ConfigError` for ``sigma`` not in
    ``(0, MAX_SIGMA]`` or a negative size. See the module docstring for the
    exactness argument.
    """
    if not isinstance(sigma, (int, float, np.floating, np.integer)) or not 0 < float(sigma) <= MAX_SIGMA:
        raise ConfigError(f"sigma must be a finite number in (0, {MAX_SIGMA:g}]", sigma=sigma)
    n = _check_size(size)
    sigma = float(sigma)
    src = as_random_words(rng)
    t = math.floor(sigma) + 1
    s2 = sigma * sigma
    s2_exact = Fraction(sigma) ** 2
    centre_exact = s2_exact / t
    out = np.empty(n, dtype=np.int64)
    filled = 0
    while filled < n:
        batch = int((n - filled) * 1.3) + 16  # Alg. 3 accepts with probability about 0.8
        y = discrete_laplace(t, batch, rng=src)
        diff = np.abs(y).astype(np.float64) - s2 / t
        gamma = diff * diff / (2.0 * s2)

        def exact(i: int, y=y) -> Fraction:
            return (abs(int(y[i])) - centre_exact) ** 2 / (2 * s2_exact)

        y = y[_bernoulli_exp(gamma, exact, src)]
        take = min(y.size, n - filled)
        out[filled : filled + take] = y[:take]
        filled += take
    return out


def _uniform01(n: int, src: RandomWords) -> NDArray[np.float64]:
    return src.uniform53(n).astype(np.float64) * _TWO_M53


def _poisson_small(lam: float, n: int, src: RandomWords) -> NDArray[np.int64]:
    """Poisson by multiplying uniforms until the product drops to ``exp(-lam)``."""
    limit = math.exp(-lam)
    k = np.zeros(n, dtype=np.int64)
    prod = _uniform01(n, src)
    live = np.flatnonzero(prod > limit)
    while live.size:
        k[live] += 1
        prod[live] *= _uniform01(live.size, src)
        live = live[prod[live] > limit]
    return k


_lgamma = np.frompyfunc(math.lgamma, 1, 1)


def _poisson_ptrs(lam: float, n: int, src: RandomWords) -> NDArray[np.int64]:
    """Poisson by PTRS (Hörmann 1993, "The transformed rejection method ..."), vectorised."""
    slam, loglam = math.sqrt(lam), math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_invalpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2)
    out = np.empty(n, dtype=np.int64)
    filled = 0
    while filled < n:
        m = int((n - filled) * 1.15) + 16
        u = _uniform01(m, src) - 0.5
        v = _uniform01(m, src)
        us = 0.5 - np.abs(u)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.floor((2 * a / us + b) * u + lam + 0.43)
            quick = (us >= 0.07) & (v <= vr)
            possible = ~quick & (k >= 0) & ~((us < 0.013) & (v > us))
            idx = np.flatnonzero(possible)
            lhs = np.log(v[idx]) + log_invalpha - np.log(a / (us[idx] * us[idx]) + b)
            rhs = -lam + k[idx] * loglam - _lgamma(k[idx] + 1).astype(np.float64)
        accept = quick.copy()
        accept[idx[lhs <= rhs]] = True
        got = k[accept].astype(np.int64)
        take = min(got.size, n - filled)
        out[filled : filled + take] = got[:take]
        filled += take
    return out


def _poisson(lam: float, n: int, src: RandomWords) -> NDArray[np.int64]:
    if lam < _PTRS_MIN_LAMBDA:
        return _poisson_small(lam, n, src)
    return _poisson_ptrs(lam, n, src)


def skellam(variance: float, size: int, *, rng: np.random.Generator | RandomWords | None = None) -> NDArray[np.int64]:
    """Return ``size`` samples of the symmetric Skellam distribution with the given variance.

    ``Poisson(variance/2) - Poisson(variance/2)``; a sum of independent
    Skellam shares is Skellam with the summed variance. Randomness as in
    :func:`discrete_gaussian`. Floating-point (not exact) Poisson sampling;
    see the module docstring. Raises :class:`ConfigError` for a variance not
    in ``(0, 2**50]`` or a negative size.
    """
    if not isinstance(variance, (int, float, np.floating, np.integer)) or not 0 < float(variance) <= _MAX_SKELLAM_VARIANCE:
        raise ConfigError("variance must be a finite number in (0, 2**50]", variance=variance)
    n = _check_size(size)
    src = as_random_words(rng)
    lam = float(variance) / 2.0
    return _poisson(lam, n, src) - _poisson(lam, n, src)
