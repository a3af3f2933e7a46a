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
Reed-Solomon code; an inconsistent set passes with probability at most
``(m - t) / p < 2**-245``. Cost: O(m^2) small-integer work per distinct
x-set (cached across the secrets of one :func:`combine_many` call), then O(m)
per secret.

x-coordinates are limited to ``[1, 2**32)`` (4 bytes on the wire), far below
``p``; protocols use ``client_id + 1``.

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
        return int(self.x).to_bytes(_X_BYTES, "big") + bytes([self.length]) + int(self.y).to_bytes(_Y_BYTES, "big")

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


def _is_int(value: object) -> bool:
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _valid(share: Share) -> bool:
    x, y, length = share.x, share.y, share.length
    return (
        _is_int(x)
        and _is_int(y)
        and _is_int(length)
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
    """Coefficients reused for every share list at one x-set ``S`` (m points).

    Both come from the barycentric weights ``v_i = 1 / prod_{j != i}(x_i - x_j)``:

    * Lagrange weights at 0 over all of ``S``,
      ``lambda_i = (-1)^(m-1) * v_i * prod_{j != i} x_j``. Once the check below
      passes, all m points lie on the sharing polynomial, so interpolating
      through all of them gives the same value at 0.
    * One random parity check ``c_i = v_i * (x_i + r)^(m-t-1)``. For any f of
      degree < t, ``sum_i v_i g(x_i) f(x_i) = 0`` whenever ``deg g <= m - t - 1``
      (it is the leading coefficient of a degree-(m-1) interpolation), and the
      sums for ``g = x^k`` all vanish only for points on such an f (the dual of a
      Reed-Solomon code). For points off every such f, the check is a non-zero
      polynomial of degree <= m - t - 1 in the secret random ``r``, so it
      passes with probability at most ``(m - t) / p``.
    """

    def __init__(self, xs: Sequence[int], t: int, weights: Sequence[int]) -> None:
        m = len(xs)
        self.t = t
        # prod_{j != i} x_j from prefix and suffix products mod p (no division).
        prefix = [_mpz(1)]
        for x in xs[:-1]:
            prefix.append(prefix[-1] * x % _P)
        others = [_mpz(0)] * m
        suffix = _mpz(1)
        for i in range(m - 1, -1, -1):
            others[i] = prefix[i] * suffix % _P
            suffix = suffix * xs[i] % _P
        sign = 1 if m % 2 == 1 else PRIME - 1
        self.lagrange = [sign * o % _P * v % _P for o, v in zip(others, weights)]
        self.check: list[int] | None = None
        if m > t:
            r = _mpz(_secrets.randbelow(PRIME))
            self.check = [v * pow(x + r, m - t - 1, _P) % _P for x, v in zip(xs, weights)]


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


def _barycentric(xs: Sequence[int]) -> list[int]:
    """v_i = 1 / prod_{j != i}(x_i - x_j) mod p: O(m^2) small-integer products."""
    return _batch_inverse(_denominators(xs))


class _Universe:
    """Barycentric weights over the union U of all x-sets in one combine_many call.

    For S inside U, ``v_i(S) = v_i(U) * prod_{j in U, j not in S}(x_i - x_j)``:
    when S misses few points of U (a complete graph with a few dropouts), that
    is O(m * missing) per secret instead of O(m^2).
    """

    def __init__(self, xs: set[int]) -> None:
        self.xs = sorted(xs)
        self._weights: dict[int, int] | None = None

    def weights(self, subset: Sequence[int]) -> list[int]:
        if self._weights is None:
            self._weights = dict(zip(self.xs, _barycentric(self.xs)))
        members = set(subset)
        missing = [x for x in self.xs if x not in members]
        if not missing:
            return [self._weights[x] for x in subset]
        return [self._weights[x] * (math.prod([x - j for j in missing]) % PRIME) % _P for x in subset]


def _reconstruct(shares: Sequence[Share], plan: _Plan) -> bytes:
    ys = [s.y for s in shares]
    if plan.check is not None and sum(c * y for c, y in zip(plan.check, ys)) % _P != 0:
        raise IntegrityError(
            "shares are inconsistent: they do not lie on one polynomial of degree < t",
            t=plan.t,
            got=len(shares),
        )
    value = int(sum(w * y for w, y in zip(plan.lagrange, ys)) % _P)
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
    from shares held by the same parties costs O(m) each. Share lists whose
    x-sets each miss only a few points of their union (a complete graph with
    dropouts) derive their weights from the union's, in O(m * missing).

    Raises :class:`ThresholdError` (fields ``needed``, ``got``) for a list with
    fewer than ``t`` shares or ``t < 1``; :class:`IntegrityError` for malformed
    shares, duplicate x-coordinates, mixed lengths, shares not on one
    polynomial of degree ``< t``, or a value that does not fit ``length`` bytes.
    """
    _check_t(t)
    lists = [list(shares) for shares in share_lists]
    xsets = [_validate_shares(shares, t) for shares in lists]
    distinct = set(xsets)
    universe = _Universe({x for xs in distinct for x in xs})
    # Direct weights cost m^2 per x-set; via the union U, |U|^2 once plus m * (|U| - m) each.
    size = len(universe.xs)
    direct_cost = sum(len(xs) ** 2 for xs in distinct)
    universe_cost = size**2 + sum(len(xs) * (size - len(xs)) for xs in distinct)
    use_universe = universe_cost < direct_cost
    plans: dict[tuple[int, ...], _Plan] = {}
    out = []
    for shares, xs in zip(lists, xsets):
        plan = plans.get(xs)
        if plan is None:
            weights = universe.weights(xs) if use_universe else _barycentric(xs)
            plan = plans[xs] = _Plan(xs, t, weights)
        out.append(_reconstruct(shares, plan))
    return out


def combine(shares: Sequence[Share], t: int) -> bytes:
    """Reconstruct the secret from at least ``t`` shares; see :func:`combine_many`."""
    return combine_many([shares], t)[0]
