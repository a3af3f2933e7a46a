"""Compact CKKS for addition-only aggregation: seeded symmetric ciphertexts, one small prime.

Microsoft SEAL (through the ``seal-python`` binding, extra ``he-compact``) does
the key generation, encoding, noise sampling and decryption; this module only
shapes the ciphertexts and their bytes.

**Ciphertexts.** A CKKS ciphertext is a pair ``(c0, a)`` of polynomials mod q
with ``c0 + a·s = Δ·m + e``. In secret-key encryption ``a`` is uniform and
independent of everything else, so it can come from a public seed: the client
sends ``(seed, c0)`` and anyone can rebuild ``a`` (SEAL's own "seeded"
serialization does this; the binding does not expose it, so it is done here).
The client lets SEAL encrypt, which gives ``(c0*, c1)`` with fresh SEAL noise
``e``; draws a fresh 32-byte seed from the OS CSPRNG; expands it to ``a``; and
asks SEAL to decrypt ``(c0*, c1 − a)``, which is ``c0*+c1·s − a·s = Δm + e − a·s``:
the ``c0`` that goes with ``a``. The pair ``(Δm + e − a·s, a)`` has exactly the
distribution of a SEAL seeded symmetric encryption. ``a`` is expanded by
:func:`secagg.prg.expand` (ChaCha20) and rejection-sampled below q, so it is
uniform mod q (in SEAL's NTT domain, a bijection of the coefficient domain).

**Packing.** Values go into the real and imaginary parts of the N/2 complex
slots: one ciphertext carries N real values.

**Modulus and security.** There is no multiplication, so one prime q suffices:
no special prime, no modulus chain. ``log2 q`` is as small as the precision
allows, and never above the HomomorphicEncryption.org standard's bound for
128-bit classical security with a ternary secret (Albrecht et al.,
"Homomorphic Encryption Standard", 2018, Table 1: N = 1024 → 27 bits,
2048 → 54, 4096 → 109; :data:`HE_STANDARD_MAX_LOG_Q`), nor above SEAL's 60-bit
limit for one prime. A smaller q at the same N and error width is only harder
to attack. SEAL refuses the context itself if it breaks its own copy of that
table (``sec_level_type.tc128``).

**Exact integer sums.** A CKKS decryption carries the encryption noise, and
whoever holds the ciphertext and learns the decrypted values at full precision
re-encodes them to ``c0 + a·s`` and solves for the secret key (Li and
Micciancio, Eurocrypt 2021; ``tests/secagg/test_ckks_compact.py`` runs the
attack on raw decryptions). So clients quantise each value to an integer
multiple of ``quantum`` (``weight·round(x/quantum)``, then the weight itself),
and the key holder rounds every decrypted value to the exact integer sum,
refusing (:class:`IntegrityError`) any value not within 1/4 of an integer or
beyond what the contributors can sum to. What leaves the key holder is a
function of the plaintexts alone. The only error is quantisation:
``n·max_weight·quantum/2`` for the sum.

**Noise and sizes.** One client's decryption noise per value has a measured
standard deviation σ (``NOISE_SIGMA``, in units of 1/Δ, doubled for margin).
``Δ = 2^scale_bits`` is the smallest power of two with ``ROUNDING_SIGMAS·σ·√n/Δ
≤ 1/4``, so rounding is exact but with negligible probability; q leaves
``MARGIN_BITS`` above the largest possible integer sum times Δ.

**Wire format** (all integers little-endian):

* client chunk: ``b"CKC1" | log2 N (u8) | log2 q bits (u8) | seed (32 B) |
  c0`` where ``c0`` is N coefficients in [0, q), each in ``bits`` bits, packed
  least-significant bit first (coefficient i occupies body bits
  ``[i·bits, (i+1)·bits)``, body bit j is bit ``j mod 8`` of byte ``j // 8``);
  N is a power of two ≥ 1024, so the body is exactly ``N·bits/8`` bytes;
* aggregate chunk: ``b"CKA1" | log2 N | bits | count (u32) | Σc0 | Σa``, both
  packed the same way;
* server context: ``b"CKP1" | log2 N (u8) | bits (u8) | scale bits (u8) |
  q (u64)``: parameters only.

Decoding raises :class:`DecodeError` for a wrong magic, wrong parameters, a
wrong length or a coefficient ≥ q. An in-range change to a coefficient (NTT
domain) or the seed scrambles the whole decrypted polynomial, which the key
holder's integer check refuses; the HMAC tag of :func:`secagg.ckks.tag_chunk`,
used as for TenSEAL's chunks, catches it at receipt and names the sender.

**Roles.** :class:`CompactKeyHolder` holds the secret key, encrypts and
decrypts. :class:`CompactServer` holds the public parameters only (q and N, no
key of any kind), adds chunks with numpy, and cannot decrypt: its ``decrypt``
raises :class:`ConfigError`. The server needs neither SEAL nor the extra.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigError, DecodeError, IntegrityError, OverflowRiskError, require_bytes, require_extra
from secagg.prg import expand

__all__ = [
    "HE_STANDARD_MAX_LOG_Q",
    "SEAL_MAX_PRIME_BITS",
    "SEED_BYTES",
    "CompactParams",
    "choose_compact_params",
    "CompactKeyHolder",
    "CompactServer",
    "CompactAccumulator",
    "encode_update",
    "decode_sum",
    "pack_coefficients",
    "unpack_coefficients",
]

#: Largest log2 q for 128-bit classical security, ternary secret, σ = 3.2
#: (HomomorphicEncryption.org standard, 2018, Table 1).
HE_STANDARD_MAX_LOG_Q = {1024: 27, 2048: 54, 4096: 109}
#: SEAL builds each prime in at most 60 bits; one prime is all this module uses.
SEAL_MAX_PRIME_BITS = 60
#: Smallest prime this module asks SEAL for: below it the NTT prime search has few candidates.
MIN_PRIME_BITS = 20
SEED_BYTES = 32
#: σ of one client's decryption error per real value, in units of 1/Δ (SEAL's σ = 3.2 error
#: through the canonical embedding, plus encoding rounding): measured 74 (N = 1024), 104 (2048)
#: and 147 (4096) over 200 encryptions of N uniform values each, largest error 5σ; doubled for margin.
NOISE_SIGMA = {1024: 150.0, 2048: 210.0, 4096: 300.0}
#: the summed noise stays below 1/4 of an integer out to this many (doubled) σ
ROUNDING_SIGMAS = 16
#: q exceeds twice the largest |sum|·Δ by this many bits (CKKS decodes centred mod q)
MARGIN_BITS = 2
#: above this 10-client-sum error a setting must be asked for explicitly (as in secagg.ckks)
PRECISION_LIMIT = 1e-6

_CHUNK_MAGIC = b"CKC1"
_AGGREGATE_MAGIC = b"CKA1"
_CONTEXT_MAGIC = b"CKP1"
_CHUNK_HEAD = struct.Struct("<4sBB")
_AGGREGATE_HEAD = struct.Struct("<4sBBI")
_CONTEXT = struct.Struct("<4sBBBQ")
_SECRET_MAGIC = b"CKS1"

# SEAL 4.x serialization (compr_mode none), read and written for ciphertexts and plaintexts:
# a 16-byte SEALHeader (magic 0xA15E, header size 16, version major, minor, compr mode, reserved,
# u64 total size), then the members, then the coefficient DynArray (its own header, u64 count, u64 data).
_SEAL_MAGIC = 0xA15E
_SEAL_HEADER = struct.Struct("<HBBBBHQ")
_SEAL_CT_MEMBERS = struct.Struct("<32sBQQQdQ")  # parms_id, is_ntt_form, size, N, coeff_mod_size, scale, correction
_SEAL_PT_MEMBERS = struct.Struct("<32sQd")  # parms_id, coeff_count, scale
_SEAL_ARRAY_HEAD = _SEAL_HEADER.size + 8


def _seal() -> Any:
    return require_extra("seal", "he-compact")


@dataclass(frozen=True)
class CompactParams:
    """Validated compact-CKKS parameters: ring degree, prime size, scale, error bound."""

    n_clients: int
    clip: float
    max_weight: int
    poly_degree: int
    modulus_bits: int
    scale_bits: int
    quantum: float
    #: the largest |integer| one client puts in a value (weight·round(clip/quantum), or the weight)
    bound: int

    @property
    def error_bound(self) -> float:
        """Largest error of the n-client weighted sum: quantisation only."""
        return self.n_clients * self.max_weight * self.quantum / 2

    @property
    def values_per_chunk(self) -> int:
        """Real values per ciphertext: N/2 complex slots, two reals each."""
        return self.poly_degree

    @property
    def body_bytes(self) -> int:
        return -(-self.poly_degree * self.modulus_bits // 8)

    @property
    def chunk_bytes(self) -> int:
        """Exact size of one client chunk on the wire (untagged)."""
        return _CHUNK_HEAD.size + SEED_BYTES + self.body_bytes

    @property
    def aggregate_bytes(self) -> int:
        return _AGGREGATE_HEAD.size + 2 * self.body_bytes

    @property
    def bytes_per_param(self) -> float:
        """Client wire bytes per parameter for long vectors (untagged)."""
        return self.chunk_bytes / self.values_per_chunk

    def n_chunks(self, length: int) -> int:
        """Chunks for a length-``length`` update plus its weight."""
        return -(-(length + 1) // self.values_per_chunk)


def choose_compact_params(
    n_clients: int,
    precision: float = PRECISION_LIMIT,
    *,
    clip: float = 1.0,
    max_weight: int = 1,
    allow_coarse: bool = False,
) -> CompactParams:
    """The fewest wire bytes whose n-client-sum error is at most ``precision``.

    Tries N = 1024, 2048, 4096 and keeps the smallest prime that fits under
    both the 128-bit bound for N and SEAL's 60 bits. Raises ``ConfigError`` for
    a precision above 1e-6 without ``allow_coarse=True`` or bad arguments, and
    ``OverflowRiskError`` when no N can hold the sum at that precision.
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
    quantum = 2 * precision / (n_clients * max_weight)
    bound = max_weight * max(1, math.ceil(clip / quantum))
    sum_bits = (2 * n_clients * bound).bit_length()  # sign included
    best: CompactParams | None = None
    for degree, max_bits in HE_STANDARD_MAX_LOG_Q.items():
        noise = ROUNDING_SIGMAS * NOISE_SIGMA[degree] * math.sqrt(n_clients)
        scale_bits = math.ceil(math.log2(4 * noise))
        bits = max(MIN_PRIME_BITS, sum_bits + scale_bits + MARGIN_BITS)
        if bits > min(max_bits, SEAL_MAX_PRIME_BITS):
            continue
        params = CompactParams(n_clients, float(clip), max_weight, degree, bits, scale_bits, quantum, bound)
        # the fewest bits per value; on a tie the smaller ring (less padding in the last chunk)
        if best is None or params.modulus_bits < best.modulus_bits:
            best = params
    if best is None:
        raise OverflowRiskError(
            "no ring degree holds the n-client sum at this precision under the 128-bit bound",
            sum_bits=sum_bits,
            precision=precision,
        )
    return best


def pack_coefficients(coeffs: NDArray[np.uint64], bits: int) -> bytes:
    """``coeffs`` (each below 2**bits) in ``bits`` bits each, least-significant bit first."""
    words = np.ascontiguousarray(coeffs, dtype="<u8").view(np.uint8).reshape(-1, 8)
    spread = np.unpackbits(words, axis=1, bitorder="little")[:, :bits]
    return np.packbits(spread.reshape(-1), bitorder="little").tobytes()


def unpack_coefficients(body: bytes, count: int, bits: int, modulus: int) -> NDArray[np.uint64]:
    """Inverse of :func:`pack_coefficients`; ``DecodeError`` for a wrong length or a
    coefficient ≥ modulus (padding bits after the last coefficient are ignored)."""
    if len(body) != -(-count * bits // 8):
        raise DecodeError("packed coefficients have the wrong length", expected=-(-count * bits // 8), got=len(body))
    flat = np.unpackbits(np.frombuffer(body, dtype=np.uint8), bitorder="little")
    spread = np.zeros((count, 64), dtype=np.uint8)
    spread[:, :bits] = flat[: count * bits].reshape(count, bits)
    coeffs = np.packbits(spread, axis=1, bitorder="little").view("<u8").reshape(count).astype(np.uint64)
    if coeffs.size and int(coeffs.max()) >= modulus:
        raise DecodeError("packed coefficient is not below the modulus")
    return coeffs


def _uniform_mod(seed: bytes, count: int, modulus: int) -> NDArray[np.uint64]:
    """``count`` values uniform in [0, modulus) from ``seed``: ChaCha20 words of
    ``bit_length(modulus)`` bits, keeping those below the modulus, in order."""
    bits = modulus.bit_length()
    out = np.empty(0, dtype=np.uint64)
    offset = 0
    while out.size < count:
        draw = count - out.size + 64
        words = expand(seed, draw, bits, offset=offset).astype(np.uint64)
        offset += draw
        out = np.concatenate([out, words[words < np.uint64(modulus)]])
    return out[:count]


class _SealCodec:
    """Reads and writes SEAL 4.x ciphertext/plaintext bytes for one context."""

    def __init__(self, seal: Any, context: Any, degree: int) -> None:
        template = seal.Ciphertext(context).to_string()
        magic, _, self.major, self.minor, _, _, _ = _SEAL_HEADER.unpack_from(template)
        if magic != _SEAL_MAGIC or self.major != 4:
            raise ConfigError("unsupported SEAL serialization version", major=self.major)
        self.parms_id = template[_SEAL_HEADER.size : _SEAL_HEADER.size + 32]
        self.degree = degree

    def _header(self, size: int) -> bytes:
        return _SEAL_HEADER.pack(_SEAL_MAGIC, _SEAL_HEADER.size, self.major, self.minor, 0, 0, size)

    def ciphertext(self, c0: NDArray[np.uint64], c1: NDArray[np.uint64], scale: float) -> bytes:
        data = np.concatenate([c0, c1]).astype("<u8").tobytes()
        array = self._header(_SEAL_ARRAY_HEAD + len(data)) + struct.pack("<Q", 2 * self.degree) + data
        members = _SEAL_CT_MEMBERS.pack(self.parms_id, 1, 2, self.degree, 1, scale, 1)
        return self._header(_SEAL_HEADER.size + len(members) + len(array)) + members + array

    def ciphertext_polys(self, blob: bytes) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
        start = _SEAL_HEADER.size + _SEAL_CT_MEMBERS.size + _SEAL_ARRAY_HEAD
        data = np.frombuffer(blob, dtype="<u8", count=2 * self.degree, offset=start).astype(np.uint64)
        return data[: self.degree], data[self.degree :]

    def plaintext_coeffs(self, blob: bytes) -> NDArray[np.uint64]:
        start = _SEAL_HEADER.size + _SEAL_PT_MEMBERS.size + _SEAL_ARRAY_HEAD
        return np.frombuffer(blob, dtype="<u8", count=self.degree, offset=start).astype(np.uint64)


def _context(seal: Any, params: CompactParams) -> tuple[Any, int]:
    parms = seal.EncryptionParameters(seal.scheme_type.ckks)
    parms.set_poly_modulus_degree(params.poly_degree)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(params.poly_degree, [params.modulus_bits]))
    context = seal.SEALContext(parms, True, seal.sec_level_type.tc128)
    if not context.parameters_set():
        raise ConfigError("SEAL refuses these parameters", reason=context.parameter_error_message())
    return context, int(parms.coeff_modulus()[0].value())


class CompactKeyHolder:
    """Secret-key side: encrypts chunks and decrypts aggregates.

    Security: whoever holds this object (or its ``secret_bytes()``) can decrypt
    every client's chunks. Share it only sealed (AEAD) with key holders.
    """

    def __init__(self, params: CompactParams, *, _secret: bytes | None = None) -> None:
        seal = _seal()
        self.params = params
        self._seal = seal
        self._context, self.modulus = _context(seal, params)
        self._codec = _SealCodec(seal, self._context, params.poly_degree)
        if _secret is None:
            self._secret_key = seal.KeyGenerator(self._context).secret_key()
        else:
            try:
                self._secret_key = self._context.from_secret_str(_secret)
            except Exception as exc:  # SEAL raises ValueError/RuntimeError on garbage
                raise DecodeError("bad SEAL secret key bytes") from exc
        self._encryptor = seal.Encryptor(self._context, self._secret_key)
        self._decryptor = seal.Decryptor(self._context, self._secret_key)
        self._encoder = seal.CKKSEncoder(self._context)
        self._scale = 2.0**params.scale_bits

    def secret_bytes(self) -> bytes:
        """The secret key (SEAL bytes behind a short tag), for sealed distribution to key holders."""
        return _SECRET_MAGIC + self._secret_key.to_string()

    @classmethod
    def from_secret_bytes(cls, params: CompactParams, data: bytes) -> "CompactKeyHolder":
        data = require_bytes(data, "secret key", error=DecodeError)
        if not data.startswith(_SECRET_MAGIC):
            raise DecodeError("not a compact CKKS secret key")
        return cls(params, _secret=data[len(_SECRET_MAGIC) :])

    def server_context_bytes(self) -> bytes:
        """Parameters only: N, the prime q and the scale; no key of any kind."""
        p = self.params
        return _CONTEXT.pack(_CONTEXT_MAGIC, _log2(p.poly_degree), p.modulus_bits, p.scale_bits, self.modulus)

    def _encrypt_chunk(self, values: NDArray[np.float64], seed: bytes) -> bytes:
        p, codec, q = self.params, self._codec, self.modulus
        half = p.poly_degree // 2
        plain = self._encoder.encode_complex(values[:half] + 1j * values[half:], self._scale)
        c0, c1 = codec.ciphertext_polys(self._encryptor.encrypt_symmetric(plain).to_string())
        a = _uniform_mod(seed, p.poly_degree, q)
        shifted = codec.ciphertext(c0, (c1 + np.uint64(q) - a) % np.uint64(q), self._scale)
        c0_seeded = codec.plaintext_coeffs(self._decryptor.decrypt(self._context.from_cipher_str(shifted)).to_bytes())
        head = _CHUNK_HEAD.pack(_CHUNK_MAGIC, _log2(p.poly_degree), p.modulus_bits)
        return head + seed + pack_coefficients(c0_seeded, p.modulus_bits)

    def encrypt(self, values: NDArray[np.integer], *, seeds: Iterable[bytes] | None = None) -> Iterator[bytes]:
        """Client chunks for integers in ±bound (from :func:`encode_update`),
        zero-padded to whole chunks, one per N values, produced lazily. Each
        chunk draws a fresh seed from the OS CSPRNG; ``seeds`` overrides them
        for known-answer tests only. ``OverflowRiskError`` for an integer
        outside ±bound."""
        ints = np.asarray(values)
        if ints.ndim != 1 or ints.dtype.kind not in "iu":
            raise ConfigError("values must be a 1-D integer array")
        if ints.size and int(np.max(np.abs(ints.astype(np.int64)))) > self.params.bound:
            raise OverflowRiskError("integer outside the planned bound", bound=self.params.bound)
        x = ints.astype(np.float64)
        n = self.params.values_per_chunk
        seed_iter = iter(seeds) if seeds is not None else None
        for start in range(0, max(x.size, 1), n):
            chunk = np.zeros(n)
            part = x[start : start + n]
            chunk[: part.size] = part
            seed = next(seed_iter) if seed_iter is not None else os.urandom(SEED_BYTES)
            yield self._encrypt_chunk(chunk, seed)

    def _decrypt_values(self, c0: NDArray[np.uint64], a: NDArray[np.uint64]) -> NDArray[np.float64]:
        """Raw CKKS decryption, noise included: never to leave the key holder."""
        ct = self._context.from_cipher_str(self._codec.ciphertext(c0, a, self._scale))
        z = np.asarray(self._encoder.decode_complex(self._decryptor.decrypt(ct)))[: self.params.poly_degree // 2]
        return np.concatenate([z.real, z.imag])

    def decrypt(self, aggregates: Sequence[bytes]) -> NDArray[np.int64]:
        """The exact integer sums carried by aggregate chunks.

        Raises ``DecodeError`` on malformed bytes and ``IntegrityError`` when a
        value is not within 1/4 of an integer or exceeds what the chunk's
        contributors can sum to (noise or tampering). The result depends on the
        plaintexts only, never on the encryption noise."""
        p = self.params
        out = []
        for blob in aggregates:
            count, c0, a = _read_aggregate(p, self.modulus, blob)
            values = self._decrypt_values(c0, a)
            sums = np.rint(values)
            if not np.all(np.abs(values - sums) <= 0.25) or np.any(np.abs(sums) > count * p.bound):
                raise IntegrityError("compact CKKS value is not a valid integer sum (noise or tampering)")
            out.append(sums.astype(np.int64))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _log2(degree: int) -> int:
    return degree.bit_length() - 1


def _read_aggregate(
    params: CompactParams, modulus: int, blob: bytes
) -> tuple[int, NDArray[np.uint64], NDArray[np.uint64]]:
    blob = require_bytes(blob, "aggregate chunk", max_size=params.aggregate_bytes, error=DecodeError)
    if len(blob) != params.aggregate_bytes:
        raise DecodeError("aggregate chunk has the wrong size", expected=params.aggregate_bytes, got=len(blob))
    magic, log_n, bits, count = _AGGREGATE_HEAD.unpack_from(blob)
    if magic != _AGGREGATE_MAGIC or (log_n, bits) != (_log2(params.poly_degree), params.modulus_bits):
        raise DecodeError("not an aggregate chunk for these parameters")
    if not 1 <= count <= params.n_clients:
        raise DecodeError("aggregate count out of range", count=count)
    body = blob[_AGGREGATE_HEAD.size :]
    n = params.poly_degree
    c0 = unpack_coefficients(body[: params.body_bytes], n, bits, modulus)
    a = unpack_coefficients(body[params.body_bytes :], n, bits, modulus)
    return count, c0, a


class CompactServer:
    """Public-only side: checks and adds client chunks, never decrypts.

    Built from :meth:`CompactKeyHolder.server_context_bytes`: the prime q, N
    and the scale, nothing secret; it needs neither SEAL nor the extra.
    """

    def __init__(self, params: CompactParams, data: bytes) -> None:
        data = require_bytes(data, "server context", max_size=_CONTEXT.size, error=DecodeError)
        if len(data) != _CONTEXT.size:
            raise DecodeError("server context has the wrong size", expected=_CONTEXT.size, got=len(data))
        magic, log_n, bits, scale_bits, modulus = _CONTEXT.unpack(data)
        if magic != _CONTEXT_MAGIC:
            raise DecodeError("not a compact CKKS server context")
        if (log_n, bits, scale_bits) != (_log2(params.poly_degree), params.modulus_bits, params.scale_bits):
            raise ConfigError("server context does not match the parameters")
        if modulus.bit_length() != bits or modulus % (2 * params.poly_degree) != 1:
            raise DecodeError("server context modulus is not an NTT prime of the planned size")
        self.params = params
        self.modulus = modulus

    @property
    def has_secret_key(self) -> bool:
        """Always False: the server context is parameters only."""
        return False

    def load(self, blob: bytes) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
        """``(c0, a)`` of one client chunk, with ``a`` expanded from its seed; ``DecodeError`` if malformed."""
        p = self.params
        blob = require_bytes(blob, "compact CKKS chunk", max_size=p.chunk_bytes, error=DecodeError)
        if len(blob) != p.chunk_bytes:
            raise DecodeError("compact CKKS chunk has the wrong size", expected=p.chunk_bytes, got=len(blob))
        magic, log_n, bits = _CHUNK_HEAD.unpack_from(blob)
        if magic != _CHUNK_MAGIC or (log_n, bits) != (_log2(p.poly_degree), p.modulus_bits):
            raise DecodeError("not a compact CKKS chunk for these parameters")
        seed = blob[_CHUNK_HEAD.size : _CHUNK_HEAD.size + SEED_BYTES]
        c0 = unpack_coefficients(blob[_CHUNK_HEAD.size + SEED_BYTES :], p.poly_degree, bits, self.modulus)
        return c0, _uniform_mod(seed, p.poly_degree, self.modulus)

    def decrypt(self, blob: bytes) -> NDArray[np.float64]:
        """Always fails: the server holds no secret key."""
        self.load(blob)
        raise ConfigError("the compact CKKS server cannot decrypt: it holds no secret key")


def _add_mod(x: NDArray[np.uint64], y: NDArray[np.uint64], modulus: np.uint64) -> NDArray[np.uint64]:
    """(x + y) mod q for x, y in [0, q), q < 2^63: one conditional subtraction."""
    total = x + y
    return np.where(total >= modulus, total - modulus, total)


class CompactAccumulator:
    """Server-side running sum of chunked client ciphertexts, coefficient-wise mod q."""

    def __init__(self, server: CompactServer, length: int) -> None:
        self.server = server
        self.length = length
        self.n_chunks = server.params.n_chunks(length)
        self._sum: list[tuple[NDArray[np.uint64], NDArray[np.uint64]]] = []
        self.count = 0

    def add(self, chunks: Sequence[bytes]) -> None:
        """Add one client's chunks; all-or-nothing (``DecodeError`` leaves the sum as it was)."""
        if len(chunks) != self.n_chunks:
            raise DecodeError("wrong number of compact CKKS chunks", expected=self.n_chunks, got=len(chunks))
        if self.count >= self.server.params.n_clients:
            raise ConfigError("more contributions than the parameters allow", n_clients=self.server.params.n_clients)
        loaded = [self.server.load(blob) for blob in chunks]
        q = np.uint64(self.server.modulus)
        if not self._sum:
            self._sum = loaded
        else:
            self._sum = [(_add_mod(s0, c0, q), _add_mod(s1, c1, q)) for (s0, s1), (c0, c1) in zip(self._sum, loaded)]
        self.count += 1

    def result(self) -> list[bytes]:
        """Aggregate chunks for the key holder."""
        if not self.count:
            raise ConfigError("nothing was added")
        p = self.server.params
        head = _AGGREGATE_HEAD.pack(_AGGREGATE_MAGIC, _log2(p.poly_degree), p.modulus_bits, self.count)
        bits = p.modulus_bits
        return [head + pack_coefficients(c0, bits) + pack_coefficients(a, bits) for c0, a in self._sum]


def encode_update(params: CompactParams, update: NDArray[np.floating], weight: int = 1) -> NDArray[np.int64]:
    """``weight·round(update/quantum)`` followed by ``weight``; ``ConfigError`` for
    values outside ±clip, non-finite values or a weight outside [1, max_weight]."""
    if not isinstance(weight, (int, np.integer)) or not 1 <= weight <= params.max_weight:
        raise ConfigError("weight must be an int in [1, max_weight]", weight=weight, max_weight=params.max_weight)
    x = np.asarray(update, dtype=np.float64)
    if x.ndim != 1:
        raise ConfigError("update must be 1-D")
    if not np.all(np.isfinite(x)) or (x.size and float(np.max(np.abs(x))) > params.clip):
        raise ConfigError("update outside [-clip, clip] or not finite", clip=params.clip)
    ints = np.rint(x / params.quantum).astype(np.int64) * int(weight)
    return np.concatenate([ints, np.array([int(weight)], dtype=np.int64)])


def decode_sum(params: CompactParams, sums: NDArray[np.integer], length: int) -> tuple[NDArray[np.float64], int]:
    """``(Σ n_k·x_k, Σ n_k)`` from the key holder's integer sums (chunk padding dropped);
    the first is within ``error_bound`` of the exact weighted sum."""
    sums = np.asarray(sums)
    if sums.size != params.n_chunks(length) * params.values_per_chunk:
        raise ConfigError("wrong number of values for length", length=length)
    return sums[:length].astype(np.float64) * params.quantum, int(sums[length])
