"""CKKS (TenSEAL) for addition-only aggregation: contexts, parameters, chunking.

Two context roles:

* :class:`CkksKeyHolder` holds the secret key (clients, in the shared-key
  trust model) and encrypts (secret-key, SYMMETRIC mode) and decrypts;
* :class:`CkksServerContext` is built from :meth:`CkksKeyHolder.server_context_bytes`
  (parameters only: no secret key, no public key, no Galois or relinearisation
  keys) and can only deserialize and add. Its constructor asserts that no
  secret key is present (:class:`IntegrityError` otherwise); decrypting with
  it raises :class:`ConfigError`.

**Parameters** (:func:`choose_ckks_params`): N = 4096 with coefficient moduli
[60, 49] (109 bits, the 128-bit-security maximum for N = 4096 in the
HomomorphicEncryption.org standard). The 49-bit prime is SEAL's special prime,
so ciphertexts carry one 60-bit prime: 2·4096·8 B per 2048 slots = 32 B/slot,
TenSEAL's floor. Two modes:

* ``real`` (default): one real per slot at scale 2^40. Error of an n-client sum
  ≤ 8σ·√n/2^40 (about 3e-8 at n = 10), where σ is the measured noise (see
  ``NOISE_SIGMA_SCALED``). 32 B/param.
* ``packed``: ``values_per_slot`` quantised integers per slot. Each client
  value is quantised to ``value_bits`` bits of ``[-clip, clip]``, offset to be
  non-negative and placed in ``slot_bits = bit_length(2·bound·n)`` bits (so the
  n-client sum cannot carry), at a small scale chosen so that CKKS noise stays
  below 1/40 of an integer unit (20σ); the decoder rounds to the exact integer
  sum and raises :class:`IntegrityError` if any value is not within 0.25 of an
  integer. The only error is quantisation: ≤ n·max_weight·quantum/2 for the
  sum. With 16-bit values at n = 10 this is 2 per slot, 16 B/param, error
  ≤ 1.6e-4 for clip 1. It exceeds 1e-6, so it needs ``allow_coarse=True``.

The weight n_k is one more protected value at the end of the vector (clients
encrypt ``n_k·x_k`` and ``n_k``), so the server never sees it.

**Integrity.** CKKS is malleable: a flipped bit in a serialized ciphertext
usually deserializes and decrypts to a wrong sum (measured). So every
serialized chunk travels with an HMAC-SHA256 tag (:func:`tag_chunk` /
:func:`open_chunk`) under a per-session key shared by the sender and the
verifier, bound to associated data (session, round, sender, chunk index).
Without a tag the structure checks still turn truncation and most garbage into
:class:`DecodeError`, but cannot catch every bit flip. HE gives no integrity
against the server itself: it can add any encryption it likes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigError, DecodeError, IntegrityError, OverflowRiskError, require_extra

__all__ = [
    "POLY_MODULUS_DEGREE",
    "COEFF_MOD_BIT_SIZES",
    "CkksParams",
    "choose_ckks_params",
    "CkksKeyHolder",
    "CkksServerContext",
    "integer_params",
    "encode_update",
    "decode_sum",
    "pack_integers",
    "unpack_integers",
    "Accumulator",
    "tag_chunk",
    "open_chunk",
    "TAG_BYTES",
    "SLOTS",
    "MAX_CIPHERTEXT_BYTES",
    "MAX_SECRET_CONTEXT_BYTES",
    "MAX_SERVER_CONTEXT_BYTES",
]

POLY_MODULUS_DEGREE = 4096
#: one 60-bit data prime + 49-bit special prime = 109 bits, the 128-bit maximum at N = 4096
COEFF_MOD_BIT_SIZES = (60, 49)
SLOTS = POLY_MODULUS_DEGREE // 2
#: |slot value|·scale must stay below 2^58 (q ≈ 2^60, factor 4 of margin for the wrap at q/2)
MAX_SCALED_BITS = 58
REAL_SCALE_BITS = 40
#: σ of one client's fresh-encryption noise in a slot, in scaled integer units. Measured
#: 0.0083·2^18/√10 ≈ 690 (N = 4096, 10-client sums of 410k slots); doubled for margin.
NOISE_SIGMA_SCALED = 1400.0
#: packed mode keeps noise ≤ 1/(2·PACKED_SIGMAS) of a unit: rounding fails with prob ~e^-200
PACKED_SIGMAS = 20
#: the real-mode error bound is this many σ of the n-client noise
REAL_SIGMAS = 8
#: above this 10-client-sum error a setting must be asked for explicitly
PRECISION_LIMIT = 1e-6
TAG_BYTES = 32
_MAX_CHUNK_BYTES = 1 << 20  # one serialized N=4096 ciphertext is ~66 kB
#: Serialized headers (SEAL, TenSEAL protobuf): a few hundred bytes, with margin.
_SERIAL_HEADER_BYTES = 4096
_POLY_BYTES = POLY_MODULUS_DEGREE * len(COEFF_MOD_BIT_SIZES) * 8  # one polynomial, 64-bit words per prime
#: Largest serialized ciphertext: two uncompressed polynomials (measured ~66 kB compressed, fresh or summed).
MAX_CIPHERTEXT_BYTES = 2 * _POLY_BYTES + _SERIAL_HEADER_BYTES
#: Largest secret context (secret key and public key, three polynomials; measured ~62 kB).
MAX_SECRET_CONTEXT_BYTES = 4 * _POLY_BYTES + _SERIAL_HEADER_BYTES
#: Largest server context (parameters only; measured 86 bytes).
MAX_SERVER_CONTEXT_BYTES = _SERIAL_HEADER_BYTES


def _ts() -> Any:
    return require_extra("tenseal", "he")


@dataclass(frozen=True)
class CkksParams:
    """Validated CKKS aggregation parameters (see module docstring)."""

    n_clients: int
    clip: float
    max_weight: int
    scale_bits: int
    values_per_slot: int  # 0 = real mode
    value_bits: int = 0
    slot_bits: int = 0
    error_bound: float = 0.0
    bound: int = 0  # packed mode: largest |integer| one client puts in a field

    @property
    def packed(self) -> bool:
        return self.values_per_slot > 0

    @property
    def quantum(self) -> float:
        return self.clip / (2 ** (self.value_bits - 1) - 1)

    def n_slots(self, length: int) -> int:
        """Slots for a length-``length`` update plus its weight."""
        items = length + 1
        return -(-items // self.values_per_slot) if self.packed else items

    def n_chunks(self, length: int) -> int:
        return -(-self.n_slots(length) // SLOTS)

    @property
    def bytes_per_param(self) -> float:
        """Wire bytes per parameter for long vectors (32 B per slot)."""
        return 32.0 / (self.values_per_slot if self.packed else 1)


def _noise_units(n_clients: int) -> float:
    return NOISE_SIGMA_SCALED * math.sqrt(n_clients)


def choose_ckks_params(
    n_clients: int,
    precision: float = PRECISION_LIMIT,
    *,
    clip: float = 1.0,
    max_weight: int = 1,
    allow_coarse: bool = False,
) -> CkksParams:
    """Parameters whose n-client-sum error is at most ``precision``.

    Picks the packed mode when it meets ``precision`` with ≥ 2 values per
    slot, else the real mode. Raises ``ConfigError`` if ``precision`` is above
    1e-6 without ``allow_coarse=True``, if no setting meets it, or if values
    of ``n_clients·max_weight·clip`` could wrap the modulus.
    """
    if not isinstance(n_clients, int) or n_clients < 1:
        raise ConfigError("n_clients must be a positive int", n_clients=n_clients)
    if not isinstance(max_weight, int) or max_weight < 1:
        raise ConfigError("max_weight must be a positive int", max_weight=max_weight)
    if not (clip > 0 and math.isfinite(clip)) or not (precision > 0 and math.isfinite(precision)):
        raise ConfigError("clip and precision must be positive and finite")
    if precision > PRECISION_LIMIT and not allow_coarse:
        raise ConfigError(
            f"an error above {PRECISION_LIMIT} must be allowed explicitly (allow_coarse=True)", precision=precision
        )
    # packed mode: the fewest value bits whose quantisation error meets precision
    packed_scale = math.ceil(math.log2(2 * PACKED_SIGMAS * _noise_units(n_clients)))
    signal_bits = MAX_SCALED_BITS - packed_scale
    for value_bits in range(2, 40):
        quantum = clip / (2 ** (value_bits - 1) - 1)
        if n_clients * max_weight * quantum / 2 <= precision:
            bound = (2 ** (value_bits - 1) - 1) * max_weight
            slot_bits = (2 * bound * n_clients).bit_length()
            vps = signal_bits // slot_bits
            if vps >= 2:
                return CkksParams(
                    n_clients,
                    float(clip),
                    max_weight,
                    packed_scale,
                    vps,
                    value_bits,
                    slot_bits,
                    n_clients * max_weight * quantum / 2,
                    bound,
                )
            break
    magnitude = n_clients * max_weight * max(clip, 1.0)
    if magnitude * 2.0**REAL_SCALE_BITS >= 2.0**MAX_SCALED_BITS:
        raise OverflowRiskError("the sum could wrap the CKKS modulus", magnitude=magnitude)
    error = REAL_SIGMAS * _noise_units(n_clients) / 2.0**REAL_SCALE_BITS
    if error > precision:
        raise ConfigError("no CKKS setting meets this precision", precision=precision, best=error)
    return CkksParams(n_clients, float(clip), max_weight, REAL_SCALE_BITS, 0, error_bound=error)


def integer_params(n_clients: int, bound: int) -> CkksParams:
    """Packed parameters that carry integers in ``[-bound, bound]`` *exactly*
    (for example a shared fixed-point encoder's output): the n-client sum is
    recovered bit for bit. Raises ``OverflowRiskError`` if one field cannot hold
    the sum."""
    if not isinstance(n_clients, int) or n_clients < 1 or not isinstance(bound, int) or bound < 1:
        raise ConfigError("n_clients and bound must be positive ints")
    scale = math.ceil(math.log2(2 * PACKED_SIGMAS * _noise_units(n_clients)))
    slot_bits = (2 * bound * n_clients).bit_length()
    vps = (MAX_SCALED_BITS - scale) // slot_bits
    if vps < 1:
        raise OverflowRiskError("a CKKS slot cannot hold the n-client integer sum", slot_bits=slot_bits)
    return CkksParams(n_clients, 1.0, 1, scale, vps, 0, slot_bits, 0.0, bound)


def _make_context(params: CkksParams, n_threads: int) -> Any:
    ts = _ts()
    # SYMMETRIC: only secret-key holders ever encrypt (the server only adds), and
    # secret-key encryption is ~20% faster with less noise; same ciphertext size.
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=POLY_MODULUS_DEGREE,
        coeff_mod_bit_sizes=list(COEFF_MOD_BIT_SIZES),
        n_threads=n_threads,
        encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
    )
    ctx.global_scale = 2.0**params.scale_bits
    return ctx


class CkksKeyHolder:
    """Secret-key context: encrypts chunks and decrypts aggregates.

    Security: whoever holds this object (or its ``secret_bytes()``) can decrypt
    every client's ciphertext. Share it only sealed (AEAD) with key holders.
    """

    def __init__(self, params: CkksParams, *, n_threads: int = 1, _context: Any = None) -> None:
        self.params = params
        self._ctx = _context if _context is not None else _make_context(params, n_threads)
        if not self._ctx.has_secret_key():
            raise ConfigError("a key holder needs a secret key")

    def secret_bytes(self) -> bytes:
        """Full context with the secret key, for sealed distribution to key holders."""
        return self._ctx.serialize(
            save_public_key=True, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
        )

    @classmethod
    def from_secret_bytes(cls, params: CkksParams, data: bytes) -> "CkksKeyHolder":
        try:
            ctx = _ts().context_from(data)
        except Exception as exc:  # TenSEAL raises ValueError/RuntimeError on garbage
            raise DecodeError("bad CKKS context bytes") from exc
        ctx.global_scale = 2.0**params.scale_bits
        return cls(params, _context=ctx)

    def server_context_bytes(self) -> bytes:
        """Parameters only: no secret, public, Galois or relinearisation key."""
        return self._ctx.serialize(
            save_public_key=False, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
        )

    def encrypt(self, slot_values: NDArray[np.float64]) -> Iterator[bytes]:
        """Serialized ciphertexts, one per 2048 slots, produced lazily (memory
        is one chunk at a time)."""
        ts = _ts()
        values = np.asarray(slot_values, dtype=np.float64)
        # tests/mutations/run_curated.py mutates this loop by its exact text.
        # fmt: off
        for start in range(0, values.size, SLOTS):
            yield ts.ckks_vector(self._ctx, values[start:start + SLOTS]).serialize()
        # fmt: on

    def decrypt(self, chunks: Iterable[bytes], expected_sizes: Sequence[int]) -> NDArray[np.float64]:
        """Decrypt serialized chunks (checked like the server checks them)."""
        out = [
            np.asarray(_load_vector(self._ctx, blob, size).decrypt(), dtype=np.float64)
            for blob, size in zip(chunks, expected_sizes, strict=True)
        ]
        return np.concatenate(out) if out else np.zeros(0)


class CkksServerContext:
    """Public-only context: deserialize and add, never decrypt.

    Raises ``IntegrityError`` at construction if the bytes carry a secret key.
    """

    def __init__(self, params: CkksParams, data: bytes, *, n_threads: int = 1) -> None:
        if not isinstance(data, bytes) or len(data) > 64 * _MAX_CHUNK_BYTES:
            raise DecodeError("bad server context bytes")
        try:
            ctx = _ts().context_from(data, n_threads=n_threads)
        except Exception as exc:
            raise DecodeError("bad CKKS context bytes") from exc
        if ctx.has_secret_key() or not ctx.is_public():
            raise IntegrityError("server context must not hold a secret key")
        ctx.global_scale = 2.0**params.scale_bits
        self.params = params
        self._ctx = ctx

    @property
    def has_secret_key(self) -> bool:
        return bool(self._ctx.has_secret_key())

    def load(self, blob: bytes, size: int) -> Any:
        return _load_vector(self._ctx, blob, size)

    def decrypt(self, blob: bytes, size: int) -> NDArray[np.float64]:
        """Always fails: the server holds no secret key."""
        vec = self.load(blob, size)
        try:
            return np.asarray(vec.decrypt(), dtype=np.float64)
        except ValueError as exc:
            raise ConfigError("the server context cannot decrypt: it holds no secret key") from exc


def _load_vector(ctx: Any, blob: bytes, size: int) -> Any:
    """Deserialize a CKKS vector of exactly ``size`` slots or raise ``DecodeError``."""
    if not isinstance(blob, bytes) or not 0 < len(blob) <= _MAX_CHUNK_BYTES:
        raise DecodeError("CKKS chunk is empty or too large", size=len(blob) if blob else 0)
    try:
        vec = _ts().ckks_vector_from(ctx, blob)
        got, cts = vec.size(), vec.data.ciphertext()
        scales = [ct.scale for ct in cts]
    except Exception as exc:  # TenSEAL/SEAL raise ValueError or RuntimeError
        raise DecodeError("malformed CKKS ciphertext") from exc
    if got != size or scales != [ctx.global_scale]:
        raise DecodeError("CKKS chunk has the wrong size or scale", expected=size, got=got)
    return vec


class Accumulator:
    """Server-side running sum of chunked ciphertexts, one chunk at a time."""

    def __init__(self, server: CkksServerContext, length: int) -> None:
        self.server = server
        self.length = length
        n_slots = server.params.n_slots(length)
        self.sizes = [min(SLOTS, n_slots - i) for i in range(0, n_slots, SLOTS)]
        self._sum: list[Any] = [None] * len(self.sizes)
        self.count = 0

    def add(self, chunks: Sequence[bytes]) -> None:
        """Add one client's chunks; all-or-nothing (DecodeError leaves the sum as it was)."""
        if len(chunks) != len(self.sizes):
            raise DecodeError("wrong number of CKKS chunks", expected=len(self.sizes), got=len(chunks))
        loaded = [self.server.load(blob, size) for blob, size in zip(chunks, self.sizes)]
        self._sum = [v if s is None else s + v for s, v in zip(self._sum, loaded)]
        self.count += 1

    def result(self) -> list[bytes]:
        if not self.count:
            raise ConfigError("nothing was added")
        return [s.serialize() for s in self._sum]


def _quantise(params: CkksParams, update: NDArray[np.floating]) -> NDArray[np.int64]:
    x = np.asarray(update, dtype=np.float64)
    if not np.all(np.isfinite(x)) or (x.size and float(np.max(np.abs(x))) > params.clip):
        raise ConfigError("update outside [-clip, clip] or not finite", clip=params.clip)
    return np.rint(x / params.quantum).astype(np.int64)


def encode_update(params: CkksParams, update: NDArray[np.floating], weight: int = 1) -> NDArray[np.float64]:
    """Slot values for ``weight·update`` followed by ``weight``.

    Raises ``ConfigError`` for values outside ±clip, non-finite values, or a
    weight outside [1, max_weight] (never clipped silently)."""
    if not isinstance(weight, (int, np.integer)) or not 1 <= weight <= params.max_weight:
        raise ConfigError("weight must be an int in [1, max_weight]", weight=weight, max_weight=params.max_weight)
    x = np.asarray(update, dtype=np.float64)
    if x.ndim != 1:
        raise ConfigError("update must be 1-D")
    if not params.packed:
        if not np.all(np.isfinite(x)) or (x.size and float(np.max(np.abs(x))) > params.clip):
            raise ConfigError("update outside [-clip, clip] or not finite", clip=params.clip)
        return np.concatenate([x * float(weight), [float(weight)]])
    return pack_integers(params, np.concatenate([_quantise(params, x) * int(weight), [int(weight)]]))


def pack_integers(params: CkksParams, ints: NDArray[np.integer]) -> NDArray[np.float64]:
    """Slot values carrying ``ints`` (each in ±bound) ``values_per_slot`` at a time.

    Raises ``OverflowRiskError`` for an integer outside ±bound."""
    if not params.packed:
        raise ConfigError("pack_integers needs packed parameters")
    q = np.asarray(ints, dtype=np.int64)
    if q.size and (int(q.min()) < -params.bound or int(q.max()) > params.bound):
        raise OverflowRiskError("integer outside the planned bound", bound=params.bound)
    vps, s = params.values_per_slot, params.slot_bits
    padded = np.full(-(-q.size // vps) * vps, params.bound, dtype=np.int64)
    padded[: q.size] = q + params.bound
    shifts = np.int64(1) << (np.arange(vps, dtype=np.int64) * s)
    return (padded.reshape(-1, vps) * shifts).sum(axis=1).astype(np.float64)


def decode_sum(
    params: CkksParams, slots: NDArray[np.float64], length: int, n_contributors: int
) -> tuple[NDArray[np.float64], float]:
    """``(Σ n_k·x_k, Σ n_k)`` from decrypted slot values of ``n_contributors`` clients.

    Packed mode raises ``IntegrityError`` when a slot is not within 0.25 of an
    integer or a field exceeds what the contributors can sum to."""
    if not 1 <= n_contributors <= params.n_clients:
        raise ConfigError("n_contributors out of range", n_contributors=n_contributors)
    slots = np.asarray(slots, dtype=np.float64)
    if slots.size != params.n_slots(length):
        raise ConfigError("wrong number of slots for length", length=length)
    if not params.packed:
        return slots[:length].copy(), float(slots[length])
    sums = unpack_integers(params, slots, length + 1, n_contributors)
    return sums[:length].astype(np.float64) * params.quantum, float(sums[length])


def unpack_integers(
    params: CkksParams, slots: NDArray[np.float64], count: int, n_contributors: int
) -> NDArray[np.int64]:
    """The exact integer sums of ``n_contributors`` packed vectors of ``count`` items.

    Raises ``IntegrityError`` when a slot is not within 0.25 of an integer or a
    field exceeds what the contributors can sum to (noise or tampering)."""
    slots = np.asarray(slots, dtype=np.float64)
    vps, s = params.values_per_slot, params.slot_bits
    if not params.packed or slots.size != -(-count // vps):
        raise ConfigError("wrong number of slots for count", count=count)
    rounded = np.rint(slots)
    if not np.all(np.abs(slots - rounded) <= 0.25) or np.any(rounded < 0) or np.any(rounded >= 2.0 ** (vps * s)):
        raise IntegrityError("packed CKKS slot is not a valid integer sum (noise or tampering)")
    ints = rounded.astype(np.int64)
    mask = (np.int64(1) << s) - 1
    fields = (ints[:, None] >> (np.arange(vps, dtype=np.int64) * s)) & mask
    fields = fields.reshape(-1)[:count]
    offset = n_contributors * params.bound
    if fields.size and int(fields.max()) > 2 * offset:
        raise IntegrityError("packed field exceeds what the contributors can sum to")
    return fields - offset


def _mac(key: bytes, associated_data: bytes, blob: bytes) -> bytes:
    msg = len(associated_data).to_bytes(4, "big") + associated_data + blob
    return hmac.new(key, msg, hashlib.sha256).digest()


def tag_chunk(key: bytes, associated_data: bytes, blob: bytes) -> bytes:
    """``blob || HMAC-SHA256(key, len(ad) || ad || blob)``; key ≥ 16 bytes."""
    if not isinstance(key, bytes) or len(key) < 16:
        raise ConfigError("MAC key must be at least 16 bytes")
    return blob + _mac(key, associated_data, blob)


def open_chunk(key: bytes, associated_data: bytes, data: bytes) -> bytes:
    """Verify and strip the tag; ``IntegrityError`` on any change, ``DecodeError`` if too short."""
    if not isinstance(data, bytes) or len(data) <= TAG_BYTES:
        raise DecodeError("tagged chunk too short")
    blob, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
    if not hmac.compare_digest(tag, _mac(key, associated_data, blob)):
        raise IntegrityError("CKKS chunk tag does not verify")
    return blob
