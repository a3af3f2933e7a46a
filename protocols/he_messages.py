"""Wire messages of the HE aggregation sessions (kinds 32-63) and small codecs.

Split from the state machines (:mod:`protocols.he_server`,
:mod:`protocols.he_client`) to keep each module readable in one sitting. Messages use the canonical codec of
:mod:`protocols.messages`; integers inside BYTES fields use :func:`pack_ints`
(a u32 big-endian length, then the big-endian magnitude, per integer).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import numpy as np

from secagg.errors import DecodeError

from . import messages as m

__all__ = [
    "HeKeyRequest",
    "HeAdvertise",
    "HeKeysBroadcast",
    "HeKeyDelivery",
    "HeKeyForward",
    "HeInput",
    "HeDecryptRequest",
    "HeDecrypted",
    "HePartial",
    "pack_ints",
    "unpack_ints",
    "chunk_mac",
]

_U32 = struct.Struct(">I")


# ---------------------------------------------------------------- messages (kinds 32-63)
@m.wire_message(32)
class HeKeyRequest(m.Message):
    """Server -> client: the session begins; the server's X25519 public key."""

    header: m.Header
    server_public: bytes
    BODY = (("server_public", m.FieldKind.BYTES),)


@m.wire_message(33)
class HeAdvertise(m.Message):
    """Client -> server: the client's X25519 public key for this session, and
    its Ed25519 signature over ``advert_transcript`` (empty without identities)."""

    header: m.Header
    public: bytes
    signature: bytes
    BODY = (("public", m.FieldKind.BYTES), ("signature", m.FieldKind.BYTES))


@m.wire_message(34)
class HeKeysBroadcast(m.Message):
    """Server -> key holder: every live client's X25519 public key and its signature."""

    header: m.Header
    keys: dict
    signatures: dict
    BODY = (("keys", m.FieldKind.BYTES_MAP), ("signatures", m.FieldKind.BYTES_MAP))


@m.wire_message(35)
class HeKeyDelivery(m.Message):
    """Key holder -> server: the HE public key, one sealed secret per client, and
    the holder's signature over ``key_transcript`` (empty without identities)."""

    header: m.Header
    public_key: bytes
    sealed: dict
    signature: bytes
    BODY = (("public_key", m.FieldKind.BYTES), ("sealed", m.FieldKind.BYTES_MAP), ("signature", m.FieldKind.BYTES))


@m.wire_message(36)
class HeKeyForward(m.Message):
    """Server -> client: HE public key, the holder's X25519 key, this client's
    sealed secret, the parties, and the holder's signature over all but the sealed secret."""

    header: m.Header
    public_key: bytes
    holder_public: bytes
    sealed: bytes
    parties: tuple
    signature: bytes
    BODY = (
        ("public_key", m.FieldKind.BYTES),
        ("holder_public", m.FieldKind.BYTES),
        ("sealed", m.FieldKind.BYTES),
        ("parties", m.FieldKind.IDS),
        ("signature", m.FieldKind.BYTES),
    )


@m.wire_message(37)
class HeInput(m.Message):
    """Client -> server: encrypted chunks (index -> bytes) and their HMAC tag."""

    header: m.Header
    chunks: dict
    tag: bytes
    BODY = (("chunks", m.FieldKind.BYTES_MAP), ("tag", m.FieldKind.BYTES))


@m.wire_message(38)
class HeDecryptRequest(m.Message):
    """Server -> client: the aggregate chunks, their tag, and who was summed."""

    header: m.Header
    chunks: dict
    tag: bytes
    survivors: tuple
    BODY = (("chunks", m.FieldKind.BYTES_MAP), ("tag", m.FieldKind.BYTES), ("survivors", m.FieldKind.IDS))


@m.wire_message(39)
class HeDecrypted(m.Message):
    """Client -> server (shared key): the integer sums in Z_{2^bits}."""

    header: m.Header
    sums: np.ndarray
    BODY = (("sums", m.FieldKind.ARRAY),)


@m.wire_message(40)
class HePartial(m.Message):
    """Client -> server (threshold): partial decryptions and their proof."""

    header: m.Header
    values: bytes
    proof: bytes
    BODY = (("values", m.FieldKind.BYTES), ("proof", m.FieldKind.BYTES))


# ---------------------------------------------------------------- codecs
def pack_ints(*xs: int) -> bytes:
    """Non-negative ints as (u32 length, big-endian bytes) records."""
    out = []
    for x in xs:
        raw = int(x).to_bytes((int(x).bit_length() + 7) // 8 or 1, "big")
        out.append(_U32.pack(len(raw)) + raw)
    return b"".join(out)


def unpack_ints(data: bytes, count: int | None = None) -> list[int]:
    """Inverse of :func:`pack_ints`; ``DecodeError`` if truncated or of the wrong count."""
    out, pos = [], 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise DecodeError("truncated integer list")
        (n,) = _U32.unpack_from(data, pos)
        if n > len(data) - pos - 4:
            raise DecodeError("truncated integer list")
        out.append(int.from_bytes(data[pos + 4 : pos + 4 + n], "big"))
        pos += 4 + n
    if count is not None and len(out) != count:
        raise DecodeError("wrong number of integers", expected=count, got=len(out))
    return out


def chunk_mac(key: bytes, aad: bytes, chunks: dict) -> bytes:
    """HMAC-SHA256 over ``aad`` and every (index, length, bytes) chunk in index order."""
    h = hmac.new(key, aad, hashlib.sha256)
    for k in sorted(chunks):
        h.update(_U32.pack(k) + _U32.pack(len(chunks[k])))
        h.update(chunks[k])
    return h.digest()
