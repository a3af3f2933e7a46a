"""SecAgg / SecAgg+ wire messages (Bonawitz et al. 2017, Fig. 4, rounds 0-4;
the same messages serve SecAgg+, Bell et al. 2020, where maps hold only
neighbours). Kinds 1-31. Encoded by :mod:`protocols.messages`.
"""

from __future__ import annotations

from dataclasses import field

import numpy as np

from .messages import FieldKind, Header, Message, wire_message

__all__ = [
    "AdvertiseKeysRequest",
    "AdvertiseKeys",
    "KeysBroadcast",
    "EncryptedShares",
    "SharesDelivery",
    "MaskedInput",
    "ConsistencyRequest",
    "ConsistencySignature",
    "UnmaskRequest",
    "UnmaskShares",
]


@wire_message(1)
class AdvertiseKeysRequest(Message):
    """Server -> client: round 0 begins."""

    header: Header
    BODY = ()


@wire_message(2)
class AdvertiseKeys(Message):
    """Client -> server, round 0: the encryption key c_pk, the mask key s_pk and
    a hash commitment to the self-mask seed b_u, signed with the client's
    Ed25519 identity when identities are configured."""

    header: Header
    c_public: bytes
    s_public: bytes
    signature: bytes
    self_mask_commitment: bytes = b""
    BODY = (
        ("c_public", FieldKind.BYTES),
        ("s_public", FieldKind.BYTES),
        ("signature", FieldKind.BYTES),
        ("self_mask_commitment", FieldKind.BYTES),
    )


@wire_message(3)
class KeysBroadcast(Message):
    """Server -> client, round 1: each neighbour's c_pk || s_pk || commitment || signature."""

    header: Header
    keys: dict
    BODY = (("keys", FieldKind.BYTES_MAP),)


@wire_message(4)
class EncryptedShares(Message):
    """Client -> server, round 1: AEAD-sealed (b_u, s_u) share pairs per
    neighbour, per holder (the dealer included) the hashes of the two shares
    it dealt, and, when identities are configured, the dealer's signature over
    all of those hashes."""

    header: Header
    ciphertexts: dict
    share_hashes: dict = field(default_factory=dict)
    hashes_signature: bytes = b""
    BODY = (
        ("ciphertexts", FieldKind.BYTES_MAP),
        ("share_hashes", FieldKind.BYTES_MAP),
        ("hashes_signature", FieldKind.BYTES),
    )


@wire_message(5)
class SharesDelivery(Message):
    """Server -> client, round 2: the ciphertexts addressed to this client, by
    sender, with each sender's hashes of the shares it dealt to it."""

    header: Header
    ciphertexts: dict
    share_hashes: dict = field(default_factory=dict)
    BODY = (("ciphertexts", FieldKind.BYTES_MAP), ("share_hashes", FieldKind.BYTES_MAP))


@wire_message(6)
class MaskedInput(Message):
    """Client -> server, round 2: y_u = encode(x_u) + PRG(b_u) + Σ ±PRG(s_uv) mod 2^bits."""

    header: Header
    masked: np.ndarray
    BODY = (("masked", FieldKind.ARRAY),)


@wire_message(7)
class ConsistencyRequest(Message):
    """Server -> client, round 3 (active security): the survivor set U3 to sign."""

    header: Header
    survivors: tuple
    BODY = (("survivors", FieldKind.IDS),)


@wire_message(8)
class ConsistencySignature(Message):
    """Client -> server, round 3: the client's signature over U3."""

    header: Header
    signature: bytes
    BODY = (("signature", FieldKind.BYTES),)


@wire_message(9)
class UnmaskRequest(Message):
    """Server -> client, round 4: which neighbours survived (reveal b shares) and
    which dropped (reveal s shares), plus, in active mode, the U3 signatures."""

    header: Header
    survivors: tuple
    dropped: tuple
    signatures: dict
    BODY = (("survivors", FieldKind.IDS), ("dropped", FieldKind.IDS), ("signatures", FieldKind.BYTES_MAP))


@wire_message(10)
class UnmaskShares(Message):
    """Client -> server, round 4: shares of b_v for survivors, of s_v for dropouts."""

    header: Header
    self_mask_shares: dict
    mask_key_shares: dict
    BODY = (("self_mask_shares", FieldKind.BYTES_MAP), ("mask_key_shares", FieldKind.BYTES_MAP))
