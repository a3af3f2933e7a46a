"""What binds SecAgg secrets and messages to one round: HKDF contexts for the
pairwise keys, the transcripts that identities sign, the commitments and share
hashes that make reconstruction verifiable, and the layout of a sealed share
pair. Shared by the client and the server in :mod:`protocols.secagg`.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Mapping

import numpy as np

from secagg import aead, shamir
from secagg.errors import DecodeError, IntegrityError

from . import messages as m
from .config import SecAggConfig

__all__ = [
    "mask_context",
    "share_context",
    "pair_sign",
    "advert_transcript",
    "survivors_transcript",
    "self_mask_commitment",
    "share_hash",
    "share_hashes_transcript",
    "SEED_BYTES",
    "KEY_BYTES",
    "HASH_BYTES",
    "SIGNATURE_BYTES",
    "MAX_SHARE_CIPHERTEXT",
    "MAX_MAP_ENTRY",
    "share_pair_plaintext",
    "open_share_pair",
]

SEED_BYTES = 32  # b_u and s_u seeds: 256-bit (PRG and X25519 seed sizes)
KEY_BYTES = 32  # X25519 public keys
HASH_BYTES = 32  # SHA-256: commitments to b_u and hashes of dealt shares
SIGNATURE_BYTES = 64  # Ed25519
_ID = struct.Struct("<I")


def _context(config: SecAggConfig, purpose: bytes, u: int, v: int) -> bytes:
    """HKDF context binding a pairwise secret to protocol, session, round,
    purpose and the unordered pair {u, v} (SECURITY invariant 4)."""
    lo, hi = (u, v) if u < v else (v, u)
    return b"|".join(
        (
            b"secagg/v1",
            bytes([m.PROTOCOL_IDS[config.protocol]]),
            config.session_id,
            _ID.pack(config.round),
            purpose,
            _ID.pack(lo) + _ID.pack(hi),
        )
    )


def mask_context(config: SecAggConfig, u: int, v: int) -> bytes:
    """Context for the pairwise mask seed s_uv."""
    return _context(config, b"mask", u, v)


def share_context(config: SecAggConfig, u: int, v: int) -> bytes:
    """Context for the key that seals shares between u and v (both directions;
    the AEAD associated data names sender and receiver)."""
    return _context(config, b"share", u, v)


def _round_prefix(config: SecAggConfig, purpose: bytes) -> bytes:
    return b"secagg/v1/" + purpose + b"|" + config.session_id + _ID.pack(config.round)


def advert_transcript(config: SecAggConfig, u: int, c_pk: bytes, s_pk: bytes, commitment: bytes) -> bytes:
    """What client u signs in round 0: its two public keys and its commitment to b_u."""
    return _round_prefix(config, b"advertise") + _ID.pack(u) + c_pk + s_pk + commitment


def self_mask_commitment(config: SecAggConfig, u: int, b_seed: bytes) -> bytes:
    """SHA-256 commitment to client u's self-mask seed b_u, bound to the round.

    b_u is a uniformly random 256-bit seed, so the hash hides it; the server
    checks every rebuilt b_u against it (a wrong one names its dealer).
    """
    return hashlib.sha256(_round_prefix(config, b"self-mask-commitment") + _ID.pack(u) + b_seed).digest()


def share_hash(config: SecAggConfig, dealer: int, holder: int, kind: bytes, share: bytes) -> bytes:
    """SHA-256 of one dealt share (``kind`` b"b" or b"s"), bound to round, dealer
    and holder. Each share is a uniform field element to anyone holding fewer
    than t of them, so its hash reveals nothing."""
    return hashlib.sha256(
        _round_prefix(config, b"share-hash") + _ID.pack(dealer) + _ID.pack(holder) + kind + share
    ).digest()


def share_hashes_transcript(config: SecAggConfig, dealer: int, hashes: Mapping[int, bytes]) -> bytes:
    """What the dealer signs once per round: every holder's id with the two share
    hashes dealt to it, in id order."""
    body = b"".join(_ID.pack(holder) + hashes[holder] for holder in sorted(hashes))
    return _round_prefix(config, b"share-hashes") + _ID.pack(dealer) + body


def survivors_transcript(config: SecAggConfig, survivors: tuple[int, ...]) -> bytes:
    """What every client signs in the consistency round: the survivor set U3."""
    ids = np.asarray(survivors, dtype="<u4").tobytes()
    return _round_prefix(config, b"consistency") + ids


def pair_sign(u: int, v: int) -> int:
    """The sign of the pairwise mask PRG(s_uv) in y_u: + if u < v, - if u > v."""
    return 1 if u < v else -1


# ====================================================================== client


def share_pair_plaintext(dealer: int, holder: int, b_share: shamir.Share, s_share: shamir.Share) -> bytes:
    """What the dealer seals to one holder: both ids, then its (b, s) share pair."""
    b, s = b_share.to_bytes(), s_share.to_bytes()
    return _ID.pack(dealer) + _ID.pack(holder) + _ID.pack(len(b)) + b + s


def open_share_pair(plaintext: bytes, *, dealer: int, holder: int) -> tuple[shamir.Share, shamir.Share]:
    """Parse :func:`share_pair_plaintext`; IntegrityError (naming the dealer) on anything else."""
    if plaintext[:8] != _ID.pack(dealer) + _ID.pack(holder):
        raise IntegrityError("share ciphertext names other parties", client_id=dealer)
    return _unpack_pair(plaintext[8:], client_id=dealer)


def _unpack_pair(data: bytes, *, client_id: int) -> tuple[shamir.Share, shamir.Share]:
    if len(data) < 4:
        raise IntegrityError("share pair truncated", client_id=client_id)
    (n,) = _ID.unpack(data[:4])
    try:
        return shamir.Share.from_bytes(data[4 : 4 + n]), shamir.Share.from_bytes(data[4 + n :])
    except DecodeError as exc:
        raise IntegrityError(f"malformed share from peer: {exc}", client_id=client_id) from None


# ====================================================================== server


# two 4-byte ids, a 4-byte length, two shares, AEAD nonce and tag
MAX_SHARE_CIPHERTEXT = 8 + 4 + 2 * shamir.SHARE_BYTES + aead.OVERHEAD
# the largest map value any SecAgg message carries: c_pk || s_pk || commitment || signature
MAX_MAP_ENTRY = 2 * KEY_BYTES + HASH_BYTES + SIGNATURE_BYTES
