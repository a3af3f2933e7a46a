"""What both sides of an HE session derive from its config.

:class:`HeConfig` (validated parameters), the signed transcripts of the key
ceremony (:func:`advert_transcript`, :func:`key_transcript`), the scheme
back-end (:class:`HeScheme`: Paillier, threshold Paillier or CKKS) and
:class:`WireSizes`, the largest field an honest round puts on the wire, from
which each stage's :class:`~protocols.messages.DecodeLimits` follow. The state
machines live in :mod:`protocols.he_server` and :mod:`protocols.he_client`.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

from secagg import aead, ckks, kex, paillier
from secagg import paillier_threshold as threshold_paillier
from secagg.errors import ConfigError, DecodeError, IntegrityError, SecAggError, ThresholdError

from . import messages as m
from .he_messages import pack_ints, unpack_ints

__all__ = [
    "SCHEMES",
    "SHARED_KEY_SCHEMES",
    "HeConfig",
    "HeScheme",
    "WireSizes",
    "advert_transcript",
    "key_transcript",
    "verify_signed",
    "ckks_chunk_sizes",
    "limits",
    "peer_data",
    "MAC_BYTES",
]

SCHEMES = ("paillier", "paillier-threshold", "ckks")
#: Schemes in which every client holds the whole secret key.
SHARED_KEY_SCHEMES = ("paillier", "ckks")
_CONTEXT = b"secagg/he/v1"
_U32 = struct.Struct(">I")
#: An HMAC-SHA256 tag (inputs and the aggregate).
MAC_BYTES = 32
#: What gmpy2, TenSEAL and numpy raise on bytes they cannot parse.
_LIBRARY_ERRORS = (ValueError, TypeError, ArithmeticError, LookupError, RuntimeError)
F = TypeVar("F", bound=Callable[..., Any])
#: One pack_ints record: u32 length, then the magnitude (one spare byte for rounding).
_INT_OVERHEAD = 5


@dataclass(frozen=True)
class HeConfig:
    """Validated HE session parameters.

    ``encoder`` is the shared ``FixedPointEncoder``; ``key_bits`` the Paillier
    modulus size; ``threshold`` the t of threshold Paillier (default n//2 + 1);
    ``min_survivors`` the fewest inputs aggregated; ``decryptors`` how many
    survivors are asked to decrypt (shared key); ``workers`` how many cores
    Paillier pools (processes) and decryption (threads) use, by default every
    core this process may run on (``secagg.paillier.usable_cores``);
    ``pool_method`` ``"djn"`` (default: DJN 2010 short-exponent r, about 5-8x
    cheaper noise) or ``"standard"`` (textbook r); see ``secagg.paillier``.

    ``max_corrupt`` is how many clients may collude with the server (default
    0). Above 0, ``paillier`` and ``ckks`` are refused (every client holds the
    key), and ``paillier-threshold`` needs t > max_corrupt; the default t is
    max(n//2 + 1, max_corrupt + 1). ``identities`` maps every client id to its
    Ed25519 public key; when set, the key ceremony is signed (see
    :mod:`protocols.he`) and every ``HeClient`` needs its ``identity``. When
    ``None`` the ceremony is unsigned: safe against a semi-honest server only.
    """

    client_ids: tuple[int, ...]
    dim: int
    encoder: Any
    scheme: str = "paillier"
    key_holder: int | None = None
    threshold: int | None = None
    min_survivors: int = 1
    weighted: bool = False
    key_bits: int = 2048
    decryptors: int = 2
    workers: int = field(default_factory=paillier.usable_cores)
    pool_method: str = paillier.DEFAULT_POOL_METHOD
    session_id: bytes = field(default_factory=lambda: os.urandom(16))
    round: int = 0
    max_corrupt: int = 0
    identities: Mapping[int, bytes] | None = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigError(f"scheme must be one of {SCHEMES}", scheme=self.scheme)
        ids = self.client_ids
        if not ids or len(set(ids)) != len(ids) or any(not isinstance(i, int) or i < 0 for i in ids):
            raise ConfigError("client_ids must be distinct non-negative ints")
        if self.key_holder is None:
            object.__setattr__(self, "key_holder", min(ids))
        elif self.key_holder not in ids:
            raise ConfigError("key_holder must be a client", key_holder=self.key_holder)
        self._check_collusion()
        self._check_identities()
        if not 1 <= self.min_survivors <= len(ids):
            raise ConfigError("min_survivors must be in [1, n]", min_survivors=self.min_survivors)
        if self.pool_method not in paillier.POOL_METHODS:
            raise ConfigError(f"pool_method must be one of {paillier.POOL_METHODS}", pool_method=self.pool_method)
        if self.dim < 0 or self.decryptors < 1 or self.workers < 1:
            raise ConfigError("dim >= 0, decryptors >= 1 and workers >= 1 are required")

    def _check_collusion(self) -> None:
        n, c = len(self.client_ids), self.max_corrupt
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n:
            raise ConfigError("max_corrupt must be an int in [0, n - 1]", max_corrupt=c, n=n)
        if c and self.scheme in SHARED_KEY_SCHEMES:
            raise ConfigError(
                f"{self.scheme!r} gives every client the secret key, so one client colluding with the server "
                f"decrypts every update; with max_corrupt={c} use 'paillier-threshold' with threshold >= {c + 1}",
                scheme=self.scheme,
                max_corrupt=c,
            )
        if self.scheme != "paillier-threshold":
            return
        t = max(n // 2 + 1, c + 1) if self.threshold is None else self.threshold
        if not 1 <= t <= n:
            raise ThresholdError("threshold must be in [1, n]", needed=t, got=n)
        if t <= c:  # c colluding clients hold c shares: they must stay below t
            raise ConfigError(
                f"paillier-threshold needs threshold > max_corrupt (got threshold={t}, "
                f"max_corrupt={c}); use threshold >= {c + 1}",
                needed=c + 1,
                got=t,
                max_corrupt=c,
            )
        object.__setattr__(self, "threshold", t)

    def _check_identities(self) -> None:
        if self.identities is None:
            return
        ids = dict(self.identities)
        if set(ids) != set(self.client_ids) or any(not isinstance(k, bytes) or len(k) != 32 for k in ids.values()):
            raise ConfigError("identities must map every client id to a 32-byte Ed25519 public key")
        object.__setattr__(self, "identities", ids)

    @property
    def protocol_id(self) -> int:
        return m.PROTOCOL_IDS[self.scheme]

    @property
    def is_threshold(self) -> bool:
        return self.scheme == "paillier-threshold"

    @property
    def bound(self) -> int:
        """Largest |integer| the encoder's ``quantize`` emits (values and the weight)."""
        return int(self.encoder.max_abs_int)

    @property
    def quorum(self) -> int:
        """Fewest live clients the key ceremony needs (t for threshold Paillier)."""
        return int(self.threshold) if self.is_threshold else self.min_survivors  # type: ignore[arg-type]

    def context(self, purpose: bytes, *ids: int) -> bytes:
        """HKDF/AEAD/MAC context: scheme, session, round, purpose, party ids."""
        return b"|".join(
            [
                _CONTEXT,
                self.scheme.encode(),
                self.session_id,
                _U32.pack(self.round),
                purpose,
                *(_U32.pack(i) for i in ids),
            ]
        )


# ---------------------------------------------------------------- signed transcripts
def _transcript(config: HeConfig, label: bytes, *fields: bytes) -> bytes:
    """Length-prefixed fields after scheme, protocol id, session and round, so
    no two different transcripts encode alike."""
    parts = (
        _CONTEXT + b"/" + label,
        config.scheme.encode(),
        _U32.pack(config.protocol_id),
        config.session_id,
        _U32.pack(config.round),
        *fields,
    )
    return b"".join(_U32.pack(len(p)) + p for p in parts)


def advert_transcript(config: HeConfig, client_id: int, public: bytes) -> bytes:
    """What client ``client_id`` signs: its X25519 key for this session."""
    return _transcript(config, b"advertise", _U32.pack(client_id), public)


def key_transcript(config: HeConfig, he_public: bytes, holder_public: bytes, parties: tuple[int, ...]) -> bytes:
    """What the key holder signs: the HE public key bytes (Paillier n; the
    threshold key with its verification keys; the public CKKS context), the
    holder's X25519 key that sealed the secrets, and the parties."""
    return _transcript(
        config,
        b"he-key",
        _U32.pack(config.key_holder),
        he_public,
        holder_public,
        b"".join(_U32.pack(u) for u in parties),
    )


def verify_signed(config: HeConfig, signer: int, signature: bytes, transcript: bytes, what: str) -> None:
    """``IntegrityError(client_id=signer)`` unless ``signer`` signed ``transcript``."""
    try:
        kex.verify(config.identities[signer], signature, transcript)  # type: ignore[index]
    except IntegrityError:
        raise IntegrityError(f"{what} is unsigned or not signed by client {signer}", client_id=signer) from None


# ---------------------------------------------------------------- scheme back-ends
def ckks_chunk_sizes(params: Any, dim: int) -> list[int]:
    """Slots per CKKS ciphertext chunk for a ``dim``-long update plus its weight."""
    n_slots = params.n_slots(dim)
    return [min(ckks.SLOTS, n_slots - i) for i in range(0, n_slots, ckks.SLOTS)]


class HeScheme:
    """What differs between Paillier, threshold Paillier and CKKS: key
    generation, public-key parsing, and the packing of one update."""

    def __init__(self, config: HeConfig) -> None:
        self.config = config
        n = len(config.client_ids)
        self.ckks, self.paillier = ckks, paillier
        if config.scheme == "ckks":
            self.params = ckks.integer_params(n, config.bound)
        else:
            self.plan = paillier.PackingPlan(n, config.bound, config.key_bits)

    def generate(self, parties: list[int]) -> tuple[bytes, dict[int, bytes]]:
        """Key holder / dealer: (public key bytes, {client: secret bytes})."""
        c = self.config
        if c.scheme == "ckks":
            holder = ckks.CkksKeyHolder(self.params)
            secret = holder.secret_bytes()
            return holder.server_context_bytes(), {u: secret for u in parties}
        if c.scheme == "paillier":
            pk, sk = paillier.generate_keypair(c.key_bits)
            return pack_ints(pk.n), {u: pack_ints(sk.p, sk.q) for u in parties}
        pub, shares = threshold_paillier.deal(c.threshold, len(parties), bits=c.key_bits)  # type: ignore[arg-type]
        public = pack_ints(pub.n, pub.threshold, pub.parties, pub.v, *pub.verification_keys)
        return public, {u: pack_ints(s.index, s.share) for u, s in zip(parties, shares)}

    def load_public(self, data: bytes) -> Any:
        """The HE public key from the key holder; ``DecodeError`` if malformed.
        A CKKS context carrying a secret key is an ``IntegrityError``."""
        c = self.config
        if c.scheme == "ckks":
            return ckks.CkksServerContext(self.params, bytes(data))
        ints = unpack_ints(data)
        try:
            if c.scheme == "paillier":
                if len(ints) != 1 or ints[0].bit_length() != c.key_bits:
                    raise DecodeError("bad Paillier public key")
                return paillier.PaillierPublicKey(ints[0])
            if (
                len(ints) < 5
                or ints[1] != c.threshold
                or ints[0].bit_length() < c.key_bits - 1
                or ints[2] != len(ints) - 4
                or ints[2] > len(c.client_ids)
            ):
                raise DecodeError("bad threshold public key")
            n, t, ell, v, *vks = ints
            return threshold_paillier.ThresholdPublicKey(n, t, ell, v, tuple(vks))
        except (ConfigError, ThresholdError) as exc:
            raise DecodeError(f"bad public key: {exc}") from None

    def paillier_key(self, public: Any) -> Any:
        """The Paillier public key inside ``public`` (itself, or a threshold key's)."""
        return public.paillier if self.config.is_threshold else public


# ---------------------------------------------------------------- wire sizes and decode limits
def _int_bytes(bits: int) -> int:
    return _INT_OVERHEAD + (bits + 7) // 8


@dataclass(frozen=True)
class WireSizes:
    """Upper bounds, in bytes, of the fields an honest round of a config
    carries: ``public_key`` (HE public key), ``sealed`` (one sealed secret),
    ``chunks`` and ``chunk`` (an encrypted vector: how many chunks, bytes per
    chunk), ``partial`` and ``proof`` (threshold decryption share)."""

    public_key: int
    sealed: int
    chunks: int
    chunk: int
    partial: int
    proof: int

    @classmethod
    def of(cls, config: HeConfig, scheme: HeScheme) -> "WireSizes":
        n, k = len(config.client_ids), config.key_bits
        if config.scheme == "ckks":
            chunks = len(ckks_chunk_sizes(scheme.params, config.dim))
            return cls(
                ckks.MAX_SERVER_CONTEXT_BYTES,
                ckks.MAX_SECRET_CONTEXT_BYTES + aead.OVERHEAD,
                chunks,
                ckks.MAX_CIPHERTEXT_BYTES,
                0,
                0,
            )
        n_cts = scheme.plan.n_ciphertexts(config.dim + 1)
        element = _int_bytes(2 * k)  # an element of Z_{n²}
        chunk = n_cts * ((2 * k + 7) // 8)  # fixed-width elements of Z_{n²}
        if not config.is_threshold:
            return cls(_int_bytes(k), 2 * _int_bytes(k) + aead.OVERHEAD, 1, chunk, 0, 0)
        # Threshold: n, t, l, v and l verification keys; a share is f(i) mod n·m < n².
        z_bits = (
            max(
                3 * k + threshold_paillier.CHALLENGE_BITS + threshold_paillier.SLACK_BITS,
                threshold_paillier.CHALLENGE_BITS + math.factorial(n).bit_length() + 2 * k,
            )
            + 2
        )
        proof = _int_bytes(threshold_paillier.CHALLENGE_BITS) + _int_bytes(z_bits) + 2 * element
        return cls((4 + n) * element, _int_bytes(32) + element + aead.OVERHEAD, 1, chunk, n_cts * element, proof)


def limits(*fields: int, entries: int = 0, entry: int = 0, words: int = 0) -> m.DecodeLimits:
    """Decode limits for one message kind: the header plus ``fields`` bytes
    (each field's own length prefix included by the caller), at most
    ``entries`` per map or id list of at most ``entry`` bytes each, and
    ``words`` per array."""
    return m.DecodeLimits(
        max_bytes=m.HEADER_BYTES + sum(fields), max_entries=entries, max_entry_bytes=entry, max_words=words
    )


def peer_data(stage: m.Stage) -> Callable[[F], F]:
    """Decorator for a stage handler that feeds a peer's bytes to a library:
    what gmpy2, TenSEAL or numpy raise on them becomes a ``DecodeError`` at
    ``stage`` (SecAggErrors pass through), so only typed errors escape."""

    def wrap(handler: F) -> F:
        @functools.wraps(handler)
        def run(*args: Any) -> Any:
            try:
                return handler(*args)
            except SecAggError:
                raise
            except _LIBRARY_ERRORS as exc:
                raise DecodeError(
                    f"cannot process the {stage.value} message: {type(exc).__name__}: {exc}", stage=stage
                ) from exc

        return run  # type: ignore[return-value]

    return wrap
