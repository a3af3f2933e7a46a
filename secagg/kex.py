"""Key agreement (X25519 + HKDF-SHA256) and identity signatures (Ed25519).

Derivations (part of the wire protocol; change the ``v1`` labels to change them):

``generate_keypair(seed)``
    ``private = HKDF-SHA256(ikm=seed, salt=None, info=KEYPAIR_INFO, L=32)``,
    used as the X25519 scalar (RFC 7748 clamps it). Without a seed the 32
    private bytes come from ``os.urandom``.

``agree(private, peer_public, *, context, length=32)``
    ``shared = X25519(private, peer_public)`` (RFC 7748 §5), then
    ``HKDF-SHA256(ikm=shared, salt=None, info=AGREE_INFO || context, L=length)``
    (RFC 5869). The function is symmetric: ``agree(a, B) == agree(b, A)``.
    ``context`` provides domain separation: the protocol puts the protocol id,
    round, stage and the two party ids in it, so a key for one purpose never
    serves another. ``AGREE_INFO`` is a fixed-length prefix, so
    ``AGREE_INFO || context`` is unambiguous.

``generate_identity(seed)``
    ``private = HKDF-SHA256(ikm=seed, salt=None, info=IDENTITY_INFO, L=32)``
    as the Ed25519 private key (RFC 8032), or ``os.urandom`` without a seed.

Errors: a bad argument from our own caller (wrong type, a seed of the wrong
size, a bad context or length) is a :class:`ConfigError`. Bad key material from
a *peer* (a public key of the wrong length, a low-order point that gives the
all-zero shared secret, a signature that does not verify) is an
:class:`IntegrityError`.

Security notes: private bytes are hidden from ``repr``; seeds must be 16 or 32
bytes from a CSPRNG (128-bit security at least). Seeded key pairs exist so that
a simulation can be replayed; a deployment passes no seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import ConfigError, IntegrityError, require_bytes

__all__ = [
    "KeyPair",
    "IdentityKey",
    "generate_keypair",
    "agree",
    "generate_identity",
    "verify",
    "KEY_BYTES",
    "SIGNATURE_BYTES",
    "SEED_SIZES",
    "KEYPAIR_INFO",
    "AGREE_INFO",
    "IDENTITY_INFO",
    "MAX_AGREE_LENGTH",
]

KEY_BYTES = 32  # X25519 and Ed25519 private and public keys are 32 bytes (RFC 7748, RFC 8032)
SIGNATURE_BYTES = 64  # Ed25519 signatures are 64 bytes (RFC 8032 §5.1.6)
SEED_SIZES = (16, 32)  # 128- or 256-bit seeds; shorter ones are brute-forceable
KEYPAIR_INFO = b"secagg/kex/x25519/v1"
AGREE_INFO = b"secagg/kex/agree/v1"
IDENTITY_INFO = b"secagg/kex/ed25519/v1"
MAX_AGREE_LENGTH = 255 * 32  # HKDF-SHA256 output limit (RFC 5869 §2.3)

_RAW = Encoding.Raw


def _hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def _private_from_seed(seed: bytes | None, info: bytes) -> bytes:
    if seed is None:
        return os.urandom(KEY_BYTES)
    seed = require_bytes(seed, "seed")
    if len(seed) not in SEED_SIZES:
        raise ConfigError("key seed must be 16 or 32 bytes", got=len(seed))
    return _hkdf(seed, info, KEY_BYTES)


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair. ``private_bytes`` is secret and hidden from ``repr``.

    Build one with :func:`generate_keypair`; the constructor checks that
    ``public_bytes`` matches ``private_bytes`` (:class:`ConfigError` if not).
    The parsed key object is cached, so :func:`agree` does not re-parse it.
    """

    private_bytes: bytes = field(repr=False)
    public_bytes: bytes
    _key: X25519PrivateKey = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        private = require_bytes(self.private_bytes, "private_bytes")
        public = require_bytes(self.public_bytes, "public_bytes")
        if len(private) != KEY_BYTES or len(public) != KEY_BYTES:
            raise ConfigError("X25519 keys are 32 bytes", private=len(private), public=len(public))
        key = X25519PrivateKey.from_private_bytes(private)
        if key.public_key().public_bytes(_RAW, PublicFormat.Raw) != public:
            raise ConfigError("public_bytes does not belong to private_bytes")
        object.__setattr__(self, "private_bytes", private)
        object.__setattr__(self, "public_bytes", public)
        object.__setattr__(self, "_key", key)

    def __reduce__(self):  # the cached OpenSSL key object does not pickle; rebuild it
        return (KeyPair, (self.private_bytes, self.public_bytes))


def generate_keypair(seed: bytes | None = None) -> KeyPair:
    """Return an X25519 key pair, derived from ``seed`` (16 or 32 bytes) or random.

    Same seed, same key pair. Raises :class:`ConfigError` for a seed of another
    size or type.
    """
    private = _private_from_seed(seed, KEYPAIR_INFO)
    key = X25519PrivateKey.from_private_bytes(private)
    public = key.public_key().public_bytes(_RAW, PublicFormat.Raw)
    pair = KeyPair.__new__(KeyPair)
    # Skip __post_init__'s consistency check: we just computed public from private.
    object.__setattr__(pair, "private_bytes", private)
    object.__setattr__(pair, "public_bytes", public)
    object.__setattr__(pair, "_key", key)
    return pair


def agree(private: KeyPair | bytes, peer_public: bytes, *, context: bytes, length: int = 32) -> bytes:
    """Derive a ``length``-byte pairwise key from X25519 then HKDF-SHA256.

    Symmetric: ``agree(a, b.public_bytes, context=c) == agree(b, a.public_bytes, context=c)``.
    ``context`` is bound into the HKDF info (domain separation by protocol,
    round and party ids).

    Raises :class:`IntegrityError` if ``peer_public`` is not 32 bytes or is a
    low-order point (all-zero shared secret, RFC 7748 §6.1); :class:`ConfigError`
    for a bad private key, a non-bytes argument, or ``length`` outside
    ``[1, 8160]``.
    """
    if isinstance(private, KeyPair):
        key = private._key
    else:
        raw = require_bytes(private, "private")
        if len(raw) != KEY_BYTES:
            raise ConfigError("X25519 private key must be 32 bytes", got=len(raw))
        key = X25519PrivateKey.from_private_bytes(raw)
    peer = require_bytes(peer_public, "peer_public")
    context = require_bytes(context, "context")
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_AGREE_LENGTH:
        raise ConfigError("length must be an integer in [1, 8160]", length=length)
    if len(peer) != KEY_BYTES:
        raise IntegrityError("peer X25519 public key must be 32 bytes", got=len(peer))
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError as exc:  # cryptography rejects an all-zero result (low-order point)
        raise IntegrityError("peer X25519 public key is a low-order point") from exc
    return _hkdf(shared, AGREE_INFO + context, length)


@dataclass(frozen=True)
class IdentityKey:
    """An Ed25519 signing key. ``private_bytes`` is secret and hidden from ``repr``."""

    private_bytes: bytes = field(repr=False)
    public_bytes: bytes = field(init=False)
    _key: Ed25519PrivateKey = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        private = require_bytes(self.private_bytes, "private_bytes")
        if len(private) != KEY_BYTES:
            raise ConfigError("Ed25519 private key must be 32 bytes", got=len(private))
        key = Ed25519PrivateKey.from_private_bytes(private)
        object.__setattr__(self, "private_bytes", private)
        object.__setattr__(self, "public_bytes", key.public_key().public_bytes(_RAW, PublicFormat.Raw))
        object.__setattr__(self, "_key", key)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message`` (deterministic, RFC 8032)."""
        return self._key.sign(require_bytes(message, "message"))

    def __reduce__(self):  # the cached OpenSSL key object does not pickle; rebuild it
        return (IdentityKey, (self.private_bytes,))


def generate_identity(seed: bytes | None = None) -> IdentityKey:
    """Return an Ed25519 identity key, derived from ``seed`` (16 or 32 bytes) or random.

    Raises :class:`ConfigError` for a seed of another size or type.
    """
    return IdentityKey(_private_from_seed(seed, IDENTITY_INFO))


def verify(public: bytes, signature: bytes, message: bytes) -> None:
    """Check an Ed25519 ``signature`` on ``message`` under ``public``.

    Returns ``None`` on success. Raises :class:`IntegrityError` on any failure:
    wrong key or signature length, an invalid key encoding, or a bad signature.
    A non-bytes argument is a :class:`ConfigError`.
    """
    public = require_bytes(public, "public")
    signature = require_bytes(signature, "signature")
    message = require_bytes(message, "message")
    if len(public) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        raise IntegrityError(
            "Ed25519 public key must be 32 bytes and signature 64 bytes",
            public=len(public),
            signature=len(signature),
        )
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise IntegrityError("Ed25519 signature does not verify") from exc
