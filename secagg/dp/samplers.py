"""Integer noise for distributed DP: exact discrete Gaussian and Skellam samplers.

Discrete Gaussian (Canonne, Kamath, Steinke 2020, arXiv 2004.00010, Algs. 2-3)
-------------------------------------------------------------------------------
``N_Z(0, sigma^2)`` puts mass proportional to ``exp(-x^2 / (2 sigma^2))`` on
each integer ``x``. CKS20 sample it by rejection:

* Alg. 2, discrete Laplace with scale ``t``: ``U`` uniform in ``{0..t-1}``,
  accept with probability ``exp(-U/t)``, add ``t * V`` with ``V`` geometric,
  ``P(V >= v) = exp(-v)``, random sign, reject ``-0``;
* Alg. 3: ``t = floor(sigma) + 1``, draw ``Y`` from the discrete Laplace,
  accept with probability ``exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2))``.

Every random decision is a comparison of a uniform real ``W`` in ``[0, 1)``
with ``exp(-gamma)`` for an exact rational ``gamma``: "accept with probability
``exp(-gamma)``" is ``W < exp(-gamma)``, and ``V = max{v : W < exp(-v)}``.
(CKS20's Alg. 1 builds the same Bernoulli from rational coins; we compare
with the real number directly, which needs one uniform per decision.)

How exactness and speed are both kept. Decisions run on whole arrays (numpy).
The first 53 bits of ``W`` come from the random stream, so ``W`` lies in
``[w, w + 2^-53)``, and ``exp(-gamma)`` is computed in float64. The float
value is within ``2^-49`` of the exact one: ``gamma`` is a rational function
of integers and of ``sigma`` evaluated with a handful of roundings (absolute
error at most ``2^-50 (sqrt(2 gamma) + 2 gamma)`` in the discrete Gaussian
step, where ``t > sigma`` bounds the cancellation in ``|Y| - sigma^2/t``), and
``e^-gamma (sqrt(2 gamma) + 2 gamma) < 1.7``; numpy's ``exp`` adds a few ulp.
A float comparison is trusted only when ``W``'s interval is at least
``_AMBIGUITY = 2^-40`` (512 times that bound) away from the float value: then
it *is* the exact answer. Otherwise (probability about ``2^-39`` per decision)
that decision is settled in pure Python by :class:`_LazyUniform`: ``gamma``
is recomputed as a :class:`fractions.Fraction` from the exact inputs
(``sigma`` is the exact rational value of the float given), ``exp(-gamma)``
is enclosed in a rigorous interval with :mod:`decimal` (correctly rounded
division and ``exp``, error bounded in :func:`_exp_neg_interval`), and more
random bits of ``W`` are drawn, 64 at a time, and more digits computed, until
``W``'s interval and the enclosure separate. ``exp(-gamma)`` is irrational
for rational ``gamma > 0``, so this ends with probability 1. The output is
therefore exactly ``N_Z(0, sigma^2)``; floats only decide *when* the exact
comparison is needed. ``tests/secagg/dp/test_samplers.py`` widens the
ambiguity zone so that the exact path runs on every decision and checks the
same statistics.

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

import decimal
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from .randomness import RandomWords, as_random_words

__all__ = ["discrete_gaussian", "skellam", "discrete_laplace", "MAX_SIGMA"]

# Width of the zone around a float threshold where the float comparison is not
# trusted and the exact comparison runs. It exceeds the proven float error
# bound (2^-49) by a factor 512.
_AMBIGUITY = 2.0**-40
_TWO_M53 = 2.0**-53
# Largest sigma accepted: keeps |Y| (a few hundred sigma at most) far below
# 2^53, so integers are exact in float64 and the error bound above holds.
MAX_SIGMA = 2.0**40
# Poisson: PTRS needs lam >= 10 (Hörmann 1993); below, multiply uniforms.
_PTRS_MIN_LAMBDA = 10.0
# Largest Skellam variance accepted (Poisson means up to 2^52 stay exact ints).
_MAX_SKELLAM_VARIANCE = 2.0**50
# Decimal digits of the first exact enclosure of exp(-gamma); doubled on demand.
_FIRST_DIGITS = 40


def _exp_neg_interval(gamma: Fraction, digits: int) -> tuple[Fraction, Fraction]:
    """Rigorous enclosure ``lo <= exp(-gamma) <= hi`` for rational ``gamma >= 0``.

    With precision ``p = digits`` the decimal module rounds ``g = gamma`` and
    ``e = exp(-g)`` correctly, each with relative error at most
    ``rho = 10^(1-p)/2``. Then ``|e - exp(-gamma)| <= exp(-gamma) ((1+rho)
    e^(gamma rho) - 1) <= e * 3 rho (gamma + 1)`` whenever
    ``3 rho (gamma + 1) <= 1/2``, which the digit count below guarantees.
    """
    if gamma == 0:
        return Fraction(1), Fraction(1)
    digits = max(digits, _FIRST_DIGITS + len(str(gamma.numerator // gamma.denominator)))
    with decimal.localcontext() as ctx:
        ctx.prec = digits
        ctx.rounding = decimal.ROUND_HALF_EVEN
        ctx.Emin = -(10**9)
        g = decimal.Decimal(gamma.numerator) / decimal.Decimal(gamma.denominator)
        e = Fraction((-g).exp())
    rho = Fraction(1, 2 * 10 ** (digits - 1))
    err = e * 3 * rho * (gamma + 1)
    return e - err, e + err


class _LazyUniform:
    """A uniform real ``W`` in ``[0, 1)`` whose bits are drawn only as far as needed."""

    def __init__(self, prefix: int, bits: int, src: RandomWords) -> None:
        self._m, self._k, self._src = prefix, bits, src  # W in [m/2^k, (m+1)/2^k)

    def _extend(self) -> None:
        self._m = (self._m << 64) | int(self._src.words(1)[0])
        self._k += 64

    def less_than_exp(self, gamma: Fraction) -> bool:
        """Exactly decide ``W < exp(-gamma)``."""
        digits = _FIRST_DIGITS
        while True:
            lo, hi = _exp_neg_interval(gamma, digits)
            while True:
                w_lo = Fraction(self._m, 1 << self._k)
                w_hi = Fraction(self._m + 1, 1 << self._k)
                if w_hi <= lo:
                    return True
                if w_lo >= hi:
                    return False
                if w_hi - w_lo <= hi - lo:
                    break  # W is known more finely than exp(-gamma): compute more digits
                self._extend()
            digits *= 2


def _exp_coins(
    gamma: NDArray[np.float64], exact_gamma: Callable[[int], Fraction], src: RandomWords
) -> NDArray[np.bool_]:
    """Exact ``Bernoulli(exp(-gamma_i))``: ``W_i < exp(-gamma_i)`` (see the module docstring).

    ``gamma`` is the float value (error as in the module docstring);
    ``exact_gamma(i)`` returns the exact rational, used only for the rare
    ambiguous comparisons.
    """
    x = np.exp(-gamma)
    w = src.uniform53(gamma.size)
    lo = w.astype(np.float64) * _TWO_M53
    yes = lo + _TWO_M53 <= x - _AMBIGUITY
    no = lo >= x + _AMBIGUITY
    for i in np.flatnonzero(~(yes | no)):
        yes[i] = _LazyUniform(int(w[i]), 53, src).less_than_exp(exact_gamma(int(i)))
    return yes


def _geometric_exp1(n: int, src: RandomWords) -> NDArray[np.int64]:
    """``V`` with ``P(V >= v) = exp(-v)``: ``V = max{v >= 0 : W < exp(-v)}`` for one uniform ``W``."""
    w = src.uniform53(n)
    lo = w.astype(np.float64) * _TWO_M53
    hi = lo + _TWO_M53
    with np.errstate(divide="ignore"):
        v = np.floor(-np.log(lo + 0.5 * _TWO_M53))  # candidate from W's midpoint
    # Accept the candidate when both boundaries are clear: W < e^-v and W >= e^-(v+1).
    ok = (hi <= np.exp(-v) - _AMBIGUITY) & (lo >= np.exp(-(v + 1)) + _AMBIGUITY)
    out = v.astype(np.int64)
    for i in np.flatnonzero(~ok):
        lazy = _LazyUniform(int(w[i]), 53, src)
        k = 0
        while lazy.less_than_exp(Fraction(k + 1)):
            k += 1
        out[i] = k
    return out


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ConfigError("size must be a non-negative integer", size=size)
    return int(size)


def discrete_laplace(
    scale: int, size: int, *, rng: np.random.Generator | RandomWords | None = None
) -> NDArray[np.int64]:
    """Exact discrete Laplace samples, ``P(x) ∝ exp(-|x| / scale)`` (CKS20 Alg. 2).

    ``scale`` is a positive integer. Raises :class:`ConfigError` otherwise.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale < 2**52:
        raise ConfigError("discrete Laplace scale must be an integer in [1, 2**52)", scale=scale)
    n, t = _check_size(size), int(scale)
    src = as_random_words(rng)
    out = np.empty(n, dtype=np.int64)
    filled = 0
    rate = (1 - math.exp(-1)) * (1 - 0.5 / t)  # about: accept exp(-U/t), then reject -0
    while filled < n:
        batch = int((n - filled) / rate * 1.05) + 16
        u = src.below(t, batch)

        def exact(i: int, u: NDArray[Any] = u) -> Fraction:
            return Fraction(int(u[i]), t)

        u = u[_exp_coins(u / t, exact, src)]
        x = u + t * _geometric_exp1(u.size, src)
        negative = (src.words(x.size) & np.uint64(1)).astype(bool)
        keep = ~(negative & (x == 0))
        y = np.where(negative, -x, x)[keep]
        rate = max(y.size / batch, 0.05)
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
    rate = 0.8  # Alg. 3's acceptance is about 0.8 for sigma >= 1, lower below; learnt per batch
    while filled < n:
        batch = int((n - filled) / rate * 1.05) + 16
        y = discrete_laplace(t, batch, rng=src)
        diff = np.abs(y).astype(np.float64) - s2 / t
        gamma = diff * diff / (2.0 * s2)

        def exact(i: int, y=y) -> Fraction:
            return (abs(int(y[i])) - centre_exact) ** 2 / (2 * s2_exact)

        y = y[_exp_coins(gamma, exact, src)]
        rate = max(y.size / batch, 0.05)
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
    if (
        not isinstance(variance, (int, float, np.floating, np.integer))
        or not 0 < float(variance) <= _MAX_SKELLAM_VARIANCE
    ):
        raise ConfigError("variance must be a finite number in (0, 2**50]", variance=variance)
    n = _check_size(size)
    src = as_random_words(rng)
    lam = float(variance) / 2.0
    return _poisson(lam, n, src) - _poisson(lam, n, src)
