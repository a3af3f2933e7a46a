"""t-of-n Shamir secret sharing of 1- to 32-byte secrets over GF(p), p = 2**256 + 297.

Field: :data:`PRIME` is the smallest prime above ``2**256``, so every secret of
up to 32 bytes (an integer below ``2**256``) is a field element, and a share's
``y`` needs 33 bytes. A Mersenne prime such as ``2**521 - 1`` would also work
but doubles the share size for no gain here (``tests/secagg/test_shamir.py``
checks primality with ``gmpy2.is_prime``).

Sharing (Shamir 1979): ``f(X) = s + a_1 X + ... + a_{t-1} X^{t-1}`` with
``s = int.from_bytes(secret, "big")`` and ``a_k`` uniform in ``[0, p)`` from
``secrets.randbelow``; share ``i`` is ``(x_i, f(x_i))``. Any ``t`` shares give
``s`` by Lagrange interpolation at 0; ``t - 1`` reveal nothing about it.

Share wire layout (:meth:`Share.to_bytes`, :data:`SHARE_BYTES` = 38 bytes)::

    x (4 bytes, big-endian, 1 <= x < 2**32) || length (1 byte, 1..32) || y (33 bytes, big-endian, y < p)

``length`` is the secret's byte length, public metadata needed to return the
exact bytes (a secret may have leading zero bytes).

Consistency: :func:`combine` with more than ``t`` shares checks that all of them
lie on one polynomial of degree ``< t``. It uses one random linear combination
(fresh randomness from :mod:`secrets`) of the ``m - t`` parity checks of the
Reed-Solomon code, so it costs O(m) per secret; an inconsistent set passes with
probability at most ``(m - t) / p < 2**-245``.

``gmpy2`` (the ``he`` extra) speeds the arithmetic up when it is importable;
plain Python integers give the same results.
"""

from __future__ import annotations

import math
import secrets as _secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import ConfigError, DecodeError, IntegrityError, ThresholdError

try:  # optional accelerator; results are identical without it
    from gmpy2 import mpz as _mpz
except ImportError:  # pragma: no cover - depends on the environment
    _mpz = int

__all__ = [
    "Share",
    "split",
    "combine",
    "split_many",
    "combine_many",
    "PRIME",
    "MAX_SECRET_BYTES",
    "MAX_X",
    "SHARE_BYTES",
]

PRIME = 2**256 + 297  # smallest prime > 2**256: holds any 32-byte secret, y fits in 33 bytes
MAX_SECRET_BYTES = 32  # 256-bit secrets (X25519 private keys, PRG seeds)
_X_BYTES = 4  # x-coordinates are party indices: 32 bits is plenty
_Y_BYTES = 33  # ceil(log2(PRIME) / 8)
MAX_X = 2**32 - 1
SHARE_BYTES = _X_BYTES + 1 + _Y_BYTES

_P = _mpz(PRIME)


@dataclass(frozen=True)
class Share:
    """One Shamir share: the point ``(x, y)`` and the secret's byte ``length``.

    Construction does not validate (shares are created in bulk);
    :meth:`from_bytes` and :func:`combine` do.
    """

    x: int
    y: int
    length: int

    def to_bytes(self) -> bytes:
        """Serialise to the fixed 38-byte layout in the module docstring.

        Raises :class:`ConfigError` if a field is out of range.
        """
        if not _valid(self):
            raise ConfigError("share fields out of range", x=self.x, length=self.length)
        return (
            int(self.x).to_bytes(_X_BYTES, "big")
            + bytes([self.length])
            + int(self.y).to_bytes(_Y_BYTES, "big")
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Parse :meth:`to_bytes` output. Raises :class:`DecodeError` on any malformed input."""
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != SHARE_BYTES:
            raise DecodeError(
                f"a share is exactly {SHARE_BYTES} bytes",
                got=len(data) if isinstance(data, (bytes, bytearray, memoryview)) else None,
            )
        data = bytes(data)
        share = cls(
            x=int.from_bytes(data[:_X_BYTES], "big"),
            y=int.from_bytes(data[_X_BYTES + 1 :], "big"),
            length=data[_X_BYTES],
        )
        if not _valid(share):
            raise DecodeError("share has x = 0, y >= p or a length outside 1..32")
        return share


def _valid(share: Share) -> bool:
    x, y, length = share.x, share.y, share.length
    return (
        all(isinstance(v, int) and not isinstance(v, bool) for v in (x, y, length))
        and 1 <= x <= MAX_X
        and 0 <= y < PRIME
        and 1 <= length <= MAX_SECRET_BYTES
    )


def _check_threshold(n: int, t: int) -> None:
    for name, value in (("n", n), ("t", t)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer", **{name: value})
    if not 1 <= t <= n:
        raise ThresholdError("threshold must satisfy 1 <= t <= n", t=t, n=n)


def _check_xs(n: int, xs: Sequence[int] | None) -> list[int]:
    if xs is None:
        if n > MAX_X:
            raise ConfigError("n is larger than the x-coordinate range", n=n)
        return list(range(1, n + 1))
    xs = list(xs)
    if len(xs) != n:
        raise ConfigError("xs must have exactly n entries", n=n, got=len(xs))
    if any(isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= MAX_X for x in xs):
        raise ConfigError("x-coordinates must be integers in [1, 2**32 - 1]")
    if len(set(xs)) != n:
        raise ConfigError("x-coordinates must be distinct")
    return xs


def _secret_int(secret: bytes) -> tuple[int, int]:
    if not isinstance(secret, (bytes, bytearray)) or not 1 <= len(secret) <= MAX_SECRET_BYTES:
        raise ConfigError("a secret is 1 to 32 bytes", type=type(secret).__name__)
    return int.from_bytes(secret, "big"), len(secret)


def split_many(
    secrets: Sequence[bytes],
    n: int,
    t: int,
    *,
    xs: Sequence[int] | None = None,
    rng: Callable[[int], int] | None = None,
) -> list[list[Share]]:
    """Split each secret into ``n`` shares, any ``t`` of which reconstruct it.

    Returns one list of ``n`` shares per secret, at x-coordinates ``xs``
    (default ``1..n``). ``rng`` is a ``randbelow(p) -> int`` callable for
    seeded tests only; the default is :func:`secrets.randbelow`.

    Raises :class:`ThresholdError` unless ``1 <= t <= n``; :class:`ConfigError`
    for a secret that is not 1..32 bytes, or ``xs`` that are not ``n``
    distinct integers in ``[1, 2**32)``.
    """
    _check_threshold(n, t)
    points = _check_xs(n, xs)
    randbelow = _secrets.randbelow if rng is None else rng
    values = [_secret_int(s) for s in secrets]
    mpz_points = [_mpz(x) for x in points]
    out: list[list[Share]] = []
    for value, length in values:
        # Highest coefficient first for Horner's rule; the constant term is the secret.
        coefficients = [_mpz(randbelow(PRIME)) for _ in range(t - 1)]
        coefficients.append(_mpz(value))
        shares = []
        for x, mx in zip(points, mpz_points):
            y = coefficients[0]
            for a in coefficients[1:]:
                y = (y * mx + a) % _P
            shares.append(Share(x, int(y), length))
        out.append(shares)
    return out


def split(
    secret: bytes,
    n: int,
    t: int,
    *,
    xs: Sequence[int] | None = None,
    rng: Callable[[int], int] | None = None,
) -> list[Share]:
    """Split one secret into ``n`` shares; see :func:`split_many` for the contract."""
    return split_many([secret], n, t, xs=xs, rng=rng)[0]


class _Plan:
    """Coefficients reused for every share list at one x-set: Lagrange weights
    at 0 over the first ``t`` points, and one random parity check over all."""

    def __init__(self, xs: tuple[int, ...], t: int) -> None:
        self.t = t
        self.lagrange = _lagrange_at_zero(xs[:t])
        self.check = _random_parity_check(xs, t) if len(xs) > t else None


def _denominators(xs: Sequence[int]) -> list[int]:
    """prod_{j != i} (x_i - x_j) mod p for each i.

    Exact products of small integers in C (``math.prod``) and one reduction
    each: ten times faster than reducing after every multiplication.
    """
    return [math.prod([xi - xj for xj in xs if xj != xi]) % PRIME for xi in xs]


def _batch_inverse(values: Sequence[int]) -> list[int]:
    """Inverses mod p of non-zero values with one exponentiation (Montgomery's trick)."""
    prefix = [_mpz(1)]
    for v in values:
        prefix.append(prefix[-1] * v % _P)
    inverse = pow(prefix[-1], -1, _P)
    out = [_mpz(0)] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inverse * prefix[i] % _P
        inverse = inverse * values[i] % _P
    return out


def _lagrange_at_zero(xs: Sequence[int]) -> list[int]:
    # lambda_i = prod_{j != i} x_j / (x_j - x_i) = (prod_j x_j / x_i) / ((-1)^(k-1) prod_{j != i}(x_i - x_j))
    total = math.prod(xs)
    sign = -1 if len(xs) % 2 == 0 else 1
    inverses = _batch_inverse(_denominators(xs))
    return [(sign * (total // xi)) % _P * inv % _P for xi, inv in zip(xs, inverses)]


def _random_parity_check(xs: Sequence[int], t: int) -> list[int]:
    """Vector c with sum(c_i * f(x_i)) == 0 for every f of degree < t.

    With barycentric weights v_i = 1 / prod_{j != i}(x_i - x_j), the sums
    sum_i v_i x_i^k f(x_i) vanish for k < m - t exactly when the points lie on
    such an f (the dual of a Reed-Solomon code). We combine those m - t checks
    with powers of a secret random r: c_i = v_i * sum_{k < m-t} (r x_i)^k.
    """
    m = len(xs)
    while True:
        r = _mpz(_secrets.randbelow(PRIME - 2) + 2)
        if all((r * x) % _P != 1 for x in xs):
            break
    weights = _batch_inverse(_denominators(xs))
    rxs = [r * x % _P for x in xs]
    ratios = _batch_inverse([(rx - 1) % _P for rx in rxs])
    return [
        v * (pow(rx, m - t, _P) - 1) % _P * q % _P for v, rx, q in zip(weights, rxs, ratios)
    ]


def _reconstruct(shares: Sequence[Share], plan: _Plan) -> bytes:
    ys = [s.y for s in shares]
    if plan.check is not None and sum(c * y for c, y in zip(plan.check, ys)) % _P != 0:
        raise IntegrityError(
            "shares are inconsistent: they do not lie on one polynomial of degree < t",
            t=plan.t,
            got=len(shares),
        )
    value = int(sum(w * y for w, y in zip(plan.lagrange, ys[: plan.t])) % _P)
    length = shares[0].length
    if value >> (8 * length):
        raise IntegrityError("reconstructed value does not fit the declared length", length=length)
    return value.to_bytes(length, "big")


def _validate_shares(shares: Sequence[Share], t: int) -> tuple[int, ...]:
    if len(shares) < t:
        raise ThresholdError("fewer than t shares", needed=t, got=len(shares))
    for s in shares:
        if not isinstance(s, Share) or not _valid(s):
            raise IntegrityError("malformed share: x, y or length out of range")
    xs = tuple(s.x for s in shares)
    if len(set(xs)) != len(xs):
        raise IntegrityError("duplicate x-coordinates among shares")
    if len({s.length for s in shares}) != 1:
        raise IntegrityError("shares declare different secret lengths")
    return xs


def _check_t(t: int) -> None:
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ThresholdError("threshold t must be an integer >= 1", t=t)


def combine_many(share_lists: Sequence[Sequence[Share]], t: int) -> list[bytes]:
    """Reconstruct one secret per list of shares.

    Lagrange weights and the consistency check are computed once per distinct
    x-coordinate sequence and reused, so reconstructing hundreds of secrets
    from shares held by the same parties costs O(m) each.

    Raises :class:`ThresholdError` (fields ``needed``, ``got``) for a list with
    fewer than ``t`` shares or ``t < 1``; :class:`IntegrityError` for malformed
    shares, duplicate x-coordinates, mixed lengths, shares not on one
    polynomial of degree ``< t``, or a value that does not fit ``length`` bytes.
    """
    _check_t(t)
    plans: dict[tuple[int, ...], _Plan] = {}
    out = []
    for shares in share_lists:
        shares = list(shares)
        xs = _validate_shares(shares, t)
        plan = plans.get(xs)
        if plan is None:
            plan = plans[xs] = _Plan(xs, t)
        out.append(_reconstruct(shares, plan))
    return out


def combine(shares: Sequence[Share], t: int) -> bytes:
    """Reconstruct the secret from at least ``t`` shares; see :func:`combine_many`."""
    return combine_many([shares], t)[0]
