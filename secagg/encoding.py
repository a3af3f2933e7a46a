"""Fixed-point encoding of weighted updates into Z_{2^bits}, with an overflow proof.

A client with update ``x`` (floats, length d) and weight ``w`` (its number of
examples, an integer in ``[0, max_weight]``) sends ``d + 1`` elements of
``Z_{2^bits}``:

1. **clip** ``x``: ``norm="linf"`` clamps each coordinate to ``[-clip, clip]``;
   ``norm="l2"`` rescales ``x`` to L2 norm ``clip`` if it is longer. Clipping is
   the documented mechanism, and it is counted: :meth:`FixedPointEncoder.clip_count`
   and ``last_clipped``.
2. **scale** by ``scale * w`` (float64): ``v = x_clipped * (scale * w)``.
3. **round stochastically**: ``q = floor(v) + Bernoulli(v - floor(v))``, so
   ``E[q] = v`` (unbiased). The coin flips come from a CSPRNG-seeded numpy
   generator unless an ``rng`` is passed (simulations and tests).
4. append ``w`` and **map** each signed integer to ``Z_{2^bits}`` in two's complement.

The server adds encodings modulo ``2**bits`` and :meth:`~FixedPointEncoder.decode_sum`
returns ``(sum_k w_k x_k, sum_k w_k)``. The integer sum is exact; dividing it by
``scale`` rounds once to float64.

Overflow proof (SECURITY.md invariant 6). Let ``M = ceil(fl(clip * fl(scale * max_weight)))``.
IEEE rounding is monotone, so every ``|v| <= M`` and therefore ``|q| <= M``.
The sum of ``n <= max_clients`` encodings has coordinates in ``[-n M, n M]`` and
a weight sum in ``[0, n max_weight]``; both fit the signed range
``[-2^(bits-1), 2^(bits-1) - 1]`` when ``max_clients * max(M, max_weight) <= 2^(bits-1) - 1``.
:func:`plan_bits` returns the smallest such width, and the encoder refuses any
configuration that violates it (:class:`OverflowRiskError`), so a sum of at
most ``max_clients`` encodings never wraps. Weights above ``max_weight`` are a
:class:`ConfigError`, never clipped. (With DP noise the sum can wrap by design;
that is planned in ``secagg.dp``, not here.)
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .encoding_torch import encode_torch, is_tensor, to_numpy
from .errors import ConfigError, IntegrityError, OverflowRiskError

__all__ = [
    "Encoder",
    "RingEncoder",
    "FixedPointEncoder",
    "plan_bits",
    "min_bits",
    "word_dtype",
    "MAX_BITS",
    "MIN_SCALE",
    "NORMS",
]

MAX_BITS = 64  # sums live in uint64 at most; wider rings would need object arrays
NORMS = ("linf", "l2")
MIN_SCALE = 1.0  # a derived scale below 1 cannot even represent integers: refuse
# Values per step of quantize()/encode(): the float64 temporaries (scaled value,
# floor, coin flips) stay in L2, so encoding needs O(1) memory beyond its output
# instead of ~6x the update (the goal: a 10**8-parameter update with peak RSS <= 3x its size).
_PIECE = 1 << 16
# Smallest normal float64: an L2 rescale factor below it would be subnormal and
# lose significant bits, so such vectors are rescaled through their peak instead.
_TINY = float(np.finfo(np.float64).tiny)


# How an L2 rescale is applied: x * factor, or x / peak * factor (see _l2_factor).
_Rescale = tuple[float | None, float]


def word_dtype(bits: int) -> type[np.unsignedinteger]:
    """The machine word holding one element of ``Z_{2^bits}``: ``np.uint32`` for
    ``bits <= 32``, else ``np.uint64`` (the wire format's two array dtypes)."""
    return np.uint32 if bits <= 32 else np.uint64


@runtime_checkable
class Encoder(Protocol):
    """What a masking protocol needs from an encoder (:class:`FixedPointEncoder`,
    :class:`secagg.dp.DistributedDPEncoder`).

    ``encode`` maps one update and its integer weight to ring elements of
    ``dtype`` (``word_dtype(bits)``); the protocol adds encodings modulo
    ``modulus`` (``2**bits``); ``decode_sum`` turns the sum of at most
    ``max_clients`` encodings into ``(sum_k w_k x_k, sum_k w_k)``. Weights
    lie in ``[0, max_weight]``. ``rng`` is for seeded simulations only.
    """

    @property
    def bits(self) -> int: ...

    @property
    def modulus(self) -> int: ...

    @property
    def dtype(self) -> type[np.unsignedinteger]: ...

    @property
    def max_clients(self) -> int: ...

    @property
    def max_weight(self) -> int: ...

    def encode(self, x: Any, *, weight: int = 1, rng: Any = None) -> Any: ...

    def decode_sum(self, y: ArrayLike) -> tuple[NDArray[np.float64], int]: ...

    def decode_mean(self, y: ArrayLike) -> NDArray[np.float64]: ...


@runtime_checkable
class RingEncoder(Encoder, Protocol):
    """An :class:`Encoder` whose integers homomorphic encryption can carry.

    ``quantize`` returns the encoding as signed integers of magnitude at most
    ``max_abs_int`` (what a plaintext slot must hold), weight last;
    ``to_modular`` reduces a (decrypted) integer sum into the ring, ready
    for ``decode_sum``.
    """

    @property
    def max_abs_int(self) -> int: ...

    def quantize(self, x: Any, weight: int = 1, rng: Any = None) -> NDArray[np.int64]: ...

    def to_modular(self, ints: ArrayLike) -> NDArray[np.unsignedinteger]: ...


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer", **{name: value})
    return int(value)


def _positive_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a positive finite number", **{name: value})
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive finite number", **{name: value})
    return value


def _magnitude_bound(clip: float, scale: float, max_weight: int) -> int:
    """Largest |q| one client can produce: ceil(fl(clip * fl(scale * max_weight))).

    An infinite product (absurd scales) returns 2**1024, which no width admits.
    """
    bound = clip * (scale * float(max_weight))
    return math.ceil(bound) if math.isfinite(bound) else 1 << 1024


def _signed_limit(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def _fits(bits: int, max_clients: int, clip: float, scale: float, max_weight: int) -> bool:
    worst = max(_magnitude_bound(clip, scale, max_weight), max_weight)
    return max_clients * worst <= _signed_limit(bits)


def plan_bits(max_clients: int, clip: float, precision: float, *, max_weight: int = 1) -> int:
    """Smallest bit width whose ring holds the sum of ``max_clients`` encodings.

    ``precision`` is the quantisation step (``1 / scale``). The width covers
    ``sum_k w_k q_k`` (each ``|q| <= ceil(max_weight * clip / precision)``,
    stochastic rounding included) and ``sum_k w_k <= max_clients * max_weight``,
    in two's complement. Raises :class:`OverflowRiskError` if more than 64 bits
    are needed, :class:`ConfigError` for non-positive, NaN or infinite inputs.
    """
    max_clients = _positive_int(max_clients, "max_clients")
    max_weight = _positive_int(max_weight, "max_weight")
    clip = _positive_float(clip, "clip")
    precision = _positive_float(precision, "precision")
    scale = 1.0 / precision
    if not math.isfinite(scale):
        raise OverflowRiskError("precision is too small to scale by", precision=precision)
    worst = max(_magnitude_bound(clip, scale, max_weight), max_weight)
    bits = (max_clients * worst).bit_length() + 1  # +1 for the sign
    if bits > MAX_BITS:
        raise OverflowRiskError(
            f"the sum needs {bits} bits, more than {MAX_BITS}: raise precision, lower clip, max_clients or max_weight",
            bits=bits,
            max_clients=max_clients,
            clip=clip,
            precision=precision,
            max_weight=max_weight,
        )
    return bits


def min_bits(max_clients: int, clip: float, *, max_weight: int = 1) -> int:
    """Smallest width for which ``FixedPointEncoder(clip, bits, max_clients)`` is valid.

    Raises :class:`OverflowRiskError` if no width up to 64 bits works.
    """
    clip = _positive_float(clip, "clip")
    start = plan_bits(max_clients, clip, min(1.0, clip), max_weight=max_weight)
    for bits in range(start, MAX_BITS + 1):
        try:
            FixedPointEncoder(clip, bits, max_clients, max_weight=max_weight)
        except OverflowRiskError:
            continue
        return bits
    raise OverflowRiskError("no bit width up to 64 holds this configuration", clip=clip)


class FixedPointEncoder:
    """Clip, scale, stochastically round and map updates into ``Z_{2^bits}``.

    ``FixedPointEncoder(clip, bits, max_clients, *, max_weight=1, norm="linf", scale=None)``
    uses the largest scale for which the worst case (every client at ``+clip``
    or ``-clip`` with weight ``max_weight``) cannot wrap, unless ``scale`` is
    given. Raises :class:`OverflowRiskError` if the given scale overflows, or
    if the derived scale is below 1 or coarser than ``clip``;
    :class:`ConfigError` for invalid arguments. See the module docstring for
    the encoding and the overflow proof.
    """

    def __init__(
        self,
        clip: float,
        bits: int,
        max_clients: int,
        *,
        max_weight: int = 1,
        norm: str = "linf",
        scale: float | None = None,
    ) -> None:
        self._clip = _positive_float(clip, "clip")
        self._max_clients = _positive_int(max_clients, "max_clients")
        self._max_weight = _positive_int(max_weight, "max_weight")
        bits = _positive_int(bits, "bits")
        if not 2 <= bits <= MAX_BITS:
            raise ConfigError("bits must be in [2, 64]", bits=bits)
        self._bits = bits
        if norm not in NORMS:
            raise ConfigError("norm must be 'linf' or 'l2'", norm=norm)
        self._norm = norm
        if self._max_clients * self._max_weight > _signed_limit(bits):
            raise OverflowRiskError(
                "the weight sum alone does not fit: raise bits or lower max_clients/max_weight",
                bits=bits,
                max_clients=max_clients,
                max_weight=max_weight,
            )
        if scale is None:
            self._scale = self._largest_scale()
        else:
            self._scale = _positive_float(scale, "scale")
            if not _fits(bits, self._max_clients, self._clip, self._scale, self._max_weight):
                raise OverflowRiskError(
                    "this scale lets the sum wrap: use plan_bits() for the width",
                    bits=bits,
                    scale=scale,
                )
        self.last_clipped = 0

    def _largest_scale(self) -> float:
        limit = _signed_limit(self._bits) // self._max_clients
        scale = limit / (self._clip * self._max_weight)
        if not math.isfinite(scale):
            raise OverflowRiskError("clip is too small to scale into the ring", clip=self._clip)
        # Float rounding may put the bound a few ulps over the limit: step down.
        while scale > 0 and not _fits(self._bits, self._max_clients, self._clip, scale, self._max_weight):
            scale = float(np.nextafter(scale, 0.0))
        if scale < MIN_SCALE or scale * self._clip < 1.0:
            raise OverflowRiskError(
                f"{self._bits} bits leave no useful precision for clip={self._clip}, "
                f"max_clients={self._max_clients}, max_weight={self._max_weight}; use more bits",
                bits=self._bits,
                scale=scale,
            )
        return scale

    @classmethod
    def for_precision(
        cls,
        clip: float,
        precision: float,
        max_clients: int,
        *,
        max_weight: int = 1,
        norm: str = "linf",
    ) -> FixedPointEncoder:
        """Encoder with step ``precision`` and the smallest safe width (:func:`plan_bits`)."""
        bits = plan_bits(max_clients, clip, precision, max_weight=max_weight)
        return cls(clip, bits, max_clients, max_weight=max_weight, norm=norm, scale=1.0 / precision)

    # -- read-only configuration ------------------------------------------------
    bits = property(lambda self: self._bits, doc="Width of the ring Z_{2^bits}.")
    modulus = property(lambda self: 1 << self._bits, doc="2**bits.")
    scale = property(lambda self: self._scale, doc="Fixed-point scale (values per unit).")
    precision = property(lambda self: 1.0 / self._scale, doc="Quantisation step, 1/scale.")
    clip = property(lambda self: self._clip, doc="Clipping bound (L-inf or L2).")
    norm = property(lambda self: self._norm, doc="'linf' or 'l2'.")
    max_clients = property(lambda self: self._max_clients, doc="Most encodings summed.")
    max_weight = property(lambda self: self._max_weight, doc="Largest admissible weight.")

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """``word_dtype(bits)``: ``np.uint32`` for ``bits <= 32``, else ``np.uint64``."""
        return word_dtype(self._bits)

    @property
    def max_abs_int(self) -> int:
        """Largest |integer| :meth:`quantize` emits (values and the weight): what HE slots must hold."""
        return max(int(math.ceil(self._clip * (self._scale * self._max_weight))), self._max_weight)

    def __repr__(self) -> str:
        return (
            f"FixedPointEncoder(clip={self._clip!r}, bits={self._bits}, max_clients={self._max_clients}, "
            f"max_weight={self._max_weight}, norm={self._norm!r}, scale={self._scale!r})"
        )

    # -- encoding ---------------------------------------------------------------
    def _check_vector(self, x: Any) -> NDArray[np.floating[Any] | np.integer[Any]]:
        """1-D real array, finite; kept in its own dtype (float32 checks are cheaper).

        A torch tensor is read through :func:`~secagg.encoding_torch.to_numpy`
        (bfloat16 and float16 widen to float32).
        """
        arr = to_numpy(x)
        if arr.ndim != 1 or arr.dtype.kind not in "fiu":
            raise ConfigError("x must be a 1-D real array", shape=arr.shape, dtype=str(arr.dtype))
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ConfigError("x contains NaN or infinity", bad=int((~np.isfinite(arr)).sum()))
        return arr

    def _check_weight(self, weight: Any) -> int:
        if isinstance(weight, bool) or not isinstance(weight, (int, np.integer)):
            raise ConfigError("weight must be an integer", weight=weight)
        if not 0 <= weight <= self._max_weight:
            raise ConfigError(
                "weight must be in [0, max_weight]; it is never clipped",
                weight=int(weight),
                max_weight=self._max_weight,
            )
        return int(weight)

    def _l2_factor(self, arr: NDArray[Any]) -> _Rescale | None:
        """How to rescale x to L2 norm ``clip``: None if it is not longer, else
        ``(peak, factor)``: ``x * factor`` when ``peak`` is None, ``x / peak * factor`` otherwise.

        The peak form is taken only when the sum of squares overflows (entries
        near the float max) or ``clip / ||x||`` would be subnormal: ``x / peak``
        has entries in [-1, 1], so its norm and ``clip / ||x / peak||`` are
        normal floats and the clipped vector keeps its direction.
        """
        # Sum of squares in float64, piece by piece (no float64 copy of a float32 update).
        squares = 0.0
        with np.errstate(over="ignore"):
            for start in range(0, arr.size, _PIECE):
                part = arr[start : start + _PIECE].astype(np.float64)
                squares += float(np.dot(part, part))
        norm = math.sqrt(squares)
        if not norm > self._clip:
            return None
        factor = self._clip / norm
        if math.isfinite(norm) and factor >= _TINY:
            return None, factor
        peak = max(float(np.abs(arr[start : start + _PIECE]).max()) for start in range(0, arr.size, _PIECE))
        unit_squares = 0.0
        for start in range(0, arr.size, _PIECE):
            part = np.divide(arr[start : start + _PIECE], peak, dtype=np.float64)
            unit_squares += float(np.dot(part, part))
        return peak, self._clip / math.sqrt(unit_squares)

    def _count_clipped(self, arr: NDArray[Any]) -> int:
        if self._norm == "l2":
            return 0 if self._l2_factor(arr) is None else 1
        # np.float64, not a Python float: NumPy 2 would compare a float32 array
        # against a Python float in float32 and miss values just above clip.
        c = np.float64(self._clip)
        # Two 1-byte-per-entry passes: cheaper than abs() into a float temporary.
        return int(np.count_nonzero(arr > c)) + int(np.count_nonzero(arr < -c))

    def clip_count(self, x: ArrayLike) -> int:
        """Coordinates that encoding would clip (L-inf), or 1 if L2 would rescale x, else 0."""
        return self._count_clipped(self._check_vector(x))

    def _clipping(self, arr: NDArray[Any]) -> _Rescale | None:
        """Sets ``last_clipped``; returns the L2 rescale (:meth:`_l2_factor`; None: no rescale)."""
        if self._norm == "linf":
            self.last_clipped = self._count_clipped(arr)
            return None
        rescale = self._l2_factor(arr)
        self.last_clipped = 0 if rescale is None else 1
        return rescale

    def _scaled(self, part: NDArray[Any], k: float, rescale: _Rescale | None) -> NDArray[np.float64]:
        """fl(clip(part) * k) as a fresh float64 array, k = fl(scale * weight).

        For L-inf, clamping the scaled value to +-fl(clip * k) is bit-identical to
        scaling the clamped value (IEEE rounding is monotone), and saves a pass.
        """
        c = self._clip
        if self._norm == "linf":
            with np.errstate(over="ignore"):  # x near the float max scales to +-inf, clamped next
                scaled = np.multiply(part, k, dtype=np.float64)
            # Clamp unconditionally: the overflow proof must not rest on the count.
            ck = c * k
            np.clip(scaled, -ck, ck, out=scaled)
            return scaled
        if rescale is None:
            return np.multiply(part, k, dtype=np.float64)
        # Rescale, clamp away the ulps by which a coordinate could exceed c, then scale.
        peak, factor = rescale
        if peak is None:
            scaled = np.multiply(part, factor, dtype=np.float64)
        else:
            scaled = np.divide(part, peak, dtype=np.float64)
            scaled *= factor
        np.clip(scaled, -c, c, out=scaled)
        scaled *= k
        return scaled

    def _rounded_pieces(self, arr: NDArray[Any], weight: int, rng: np.random.Generator | None) -> Any:
        """Yield (start, q) pieces of the stochastically rounded values of a checked ``arr``.

        The coin flips are drawn piece by piece; ``Generator.random`` fills its
        output value by value, so a seeded ``rng`` gives the same flips as one
        draw of all d values.
        """
        rescale = self._clipping(arr)
        k = self._scale * float(weight)
        if rng is None:
            rng = np.random.Generator(np.random.PCG64(secrets.randbits(128)))
        for start in range(0, arr.size, _PIECE):
            scaled = self._scaled(arr[start : start + _PIECE], k, rescale)
            floor = np.floor(scaled)
            frac = np.subtract(scaled, floor, out=scaled)
            # Round up with probability frac: E[q] = floor + frac = v (unbiased).
            floor += rng.random(floor.size) < frac
            yield start, floor

    def quantize(self, x: ArrayLike, weight: int = 1, rng: np.random.Generator | None = None) -> NDArray[np.int64]:
        """Signed integers before the modular map: ``d`` rounded values, then the weight.

        Each ``|value| <= M`` (module docstring). Sets ``last_clipped``. Raises
        :class:`ConfigError` for NaN/inf, a non-1-D input, or a weight that is
        not an integer in ``[0, max_weight]``. A torch tensor (any float
        dtype, bfloat16 included) is read on the CPU.
        """
        weight = self._check_weight(weight)
        arr = self._check_vector(x)
        out = np.empty(arr.size + 1, dtype=np.int64)
        for start, q in self._rounded_pieces(arr, weight, rng):
            out[start : start + q.size] = q
        out[-1] = weight
        return out

    def to_modular(self, ints: ArrayLike) -> NDArray[np.unsignedinteger]:
        """Map signed integers in ``[-2^(bits-1), 2^(bits-1))`` to ``Z_{2^bits}`` (two's complement).

        Raises :class:`OverflowRiskError` for a value outside that range (it
        would wrap) and :class:`ConfigError` for a non-integer array.
        """
        arr = np.asarray(ints)
        if arr.dtype.kind not in "iu":
            raise ConfigError("to_modular needs an integer array", dtype=str(arr.dtype))
        if arr.size:
            low, high = int(arr.min()), int(arr.max())
            if low < -(1 << (self._bits - 1)) or high > _signed_limit(self._bits):
                raise OverflowRiskError(
                    "value outside the signed range of the ring", bits=self._bits, min=low, max=high
                )
        out = self._wrap(arr)
        return out.copy() if np.may_share_memory(out, arr) else out

    def _wrap(self, arr: NDArray[np.integer[Any]]) -> NDArray[np.unsignedinteger]:
        if arr.dtype.kind == "i":
            wide = arr.astype(np.int64, copy=False).view(np.uint64)
        else:
            wide = arr.astype(np.uint64, copy=False)
        if self._bits <= 32:
            # Truncating to uint32 keeps the low 32 bits (= mod 2**32); then mask.
            small = wide.astype(np.uint32)
            if self._bits < 32:
                small &= np.uint32((1 << self._bits) - 1)
            return small
        if self._bits < 64:
            return wide & np.uint64((1 << self._bits) - 1)
        return wide  # may be a view of arr: to_modular copies, encode owns its input

    def from_modular(self, y: ArrayLike) -> NDArray[np.int64]:
        """Map ring elements back to signed integers in ``[-2^(bits-1), 2^(bits-1))``.

        Any integer representative is accepted (it is reduced mod ``2**bits``).
        Raises :class:`ConfigError` for a non-integer array.
        """
        arr = np.asarray(y)
        if arr.dtype.kind not in "iu":
            raise ConfigError("from_modular needs an integer array", dtype=str(arr.dtype))
        wide = arr.astype(np.uint64)  # a copy; signed inputs wrap mod 2**64, a multiple of 2**bits
        values = wide.view(np.int64)
        if self._bits < 64:
            # Shift the b-bit residue to the top, then sign-extend with an arithmetic shift.
            shift = np.uint64(64 - self._bits)
            np.left_shift(wide, shift, out=wide)
            np.right_shift(values, np.int64(64 - self._bits), out=values)
        return values

    def encode(
        self, x: ArrayLike, *, weight: int = 1, rng: np.random.Generator | None = None
    ) -> NDArray[np.unsignedinteger]:
        """Encode ``x`` with ``weight`` as ``d + 1`` ring elements of ``.dtype``.

        ``to_modular(quantize(x, weight, rng))``; see :meth:`quantize` for errors.
        A torch tensor is encoded on its own device by
        :func:`secagg.encoding_torch.encode_torch` and returns an int64 tensor
        there (``rng`` is then an optional ``torch.Generator``).
        """
        if is_tensor(x):
            return encode_torch(self, x, weight=weight, generator=rng)
        # Streamed: each rounded piece is mapped to the ring straight into the output,
        # within +-M by construction (no range scan), so memory is the output + O(piece).
        weight = self._check_weight(weight)
        arr = self._check_vector(x)
        out = np.empty(arr.size + 1, dtype=self.dtype)
        for start, q in self._rounded_pieces(arr, weight, rng):
            out[start : start + q.size] = self._wrap(q.astype(np.int64))
        out[-1] = weight
        return out

    # -- decoding ---------------------------------------------------------------
    def decode_sum(self, y: ArrayLike) -> tuple[NDArray[np.float64], int]:
        """From the modular sum of at most ``max_clients`` encodings, return
        ``(sum_k w_k x_k, sum_k w_k)``.

        The integer sum is exact; the division by ``scale`` rounds once to
        float64. Raises :class:`IntegrityError` if the decoded weight sum lies
        outside ``[0, max_clients * max_weight]`` (the input is not such a sum).
        """
        ints = self.from_modular(y)
        if ints.ndim != 1 or ints.size < 1:
            raise ConfigError("y must be a 1-D array of length d + 1", shape=ints.shape)
        weight_sum = int(ints[-1])
        if not 0 <= weight_sum <= self._max_clients * self._max_weight:
            raise IntegrityError(
                "decoded weight sum is out of range: not a sum of at most max_clients encodings",
                weight_sum=weight_sum,
            )
        return ints[:-1].astype(np.float64) / self._scale, weight_sum

    def decode_mean(self, y: ArrayLike) -> NDArray[np.float64]:
        """Weighted mean ``sum_k w_k x_k / sum_k w_k``; :class:`ConfigError` if the weights sum to 0."""
        total, weight_sum = self.decode_sum(y)
        if weight_sum == 0:
            raise ConfigError("weights sum to zero: the mean is undefined")
        return total / weight_sum
