"""Authenticated encryption: AES-256-GCM with a random 96-bit nonce.

Wire layout of :func:`seal`'s output (part of the wire protocol)::

    nonce (12 bytes, os.urandom) || ciphertext (len(plaintext) bytes) || tag (16 bytes)

``aad`` (associated data) is authenticated but not sent; the protocol binds
protocol id, round, stage, sender and receiver into it, so a ciphertext replayed
to another party, round or session fails to open (SECURITY.md invariant 4).

Security notes: random 96-bit nonces are safe for up to about 2**32 messages
per key (NIST SP 800-38D §8.3); protocol keys are per pair and per round, far
below that. This module defines a function named ``open``, which shadows the
builtin inside this module only; call it as ``aead.open``.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError, IntegrityError, require_bytes

__all__ = ["seal", "open", "KEY_BYTES", "NONCE_BYTES", "TAG_BYTES", "OVERHEAD"]

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the 96-bit nonce GCM is designed for (SP 800-38D §5.2.1.1)
TAG_BYTES = 16  # full 128-bit tag; truncated tags weaken forgery bounds
OVERHEAD = NONCE_BYTES + TAG_BYTES  # 28 bytes added by seal()


def _cipher(key: object) -> AESGCM:
    key = require_bytes(key, "key")
    if len(key) != KEY_BYTES:
        raise ConfigError("AES-256-GCM key must be 32 bytes", got=len(key))
    return AESGCM(key)


def seal(key: bytes, plaintext: bytes, *, aad: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` and ``aad`` under ``key``.

    Returns ``nonce || ciphertext || tag`` (``len(plaintext) + OVERHEAD`` bytes).
    Raises :class:`ConfigError` for a key that is not 32 bytes or a non-bytes
    argument.
    """
    cipher = _cipher(key)
    plaintext, aad = require_bytes(plaintext, "plaintext"), require_bytes(aad, "aad")
    nonce = os.urandom(NONCE_BYTES)
    return nonce + cipher.encrypt(nonce, plaintext, aad)


def open(key: bytes, ciphertext: bytes, *, aad: bytes) -> bytes:  # noqa: A001 - aead.open
    """Verify and decrypt the output of :func:`seal`; return the plaintext.

    Raises :class:`IntegrityError` if anything was altered (nonce, ciphertext,
    tag or ``aad``), the key is wrong, or the input is shorter than
    ``OVERHEAD`` bytes. Raises :class:`ConfigError` for a key that is not 32
    bytes or a non-bytes argument.
    """
    cipher = _cipher(key)
    ciphertext, aad = require_bytes(ciphertext, "ciphertext"), require_bytes(aad, "aad")
    if len(ciphertext) < OVERHEAD:
        raise IntegrityError(
            f"AEAD ciphertext too short: need at least {OVERHEAD} bytes (nonce + tag)",
            got=len(ciphertext),
        )
    try:
        return cipher.decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise IntegrityError("AEAD authentication failed: ciphertext or aad was altered") from exc
