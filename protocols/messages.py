"""Wire messages: frozen dataclasses with one canonical, versioned byte encoding.

Layout (all integers little-endian)::

    magic   4 bytes  b"SAGG"
    version u8       WIRE_VERSION
    kind    u8       message kind (registry below)
    header           protocol u8 | session_id 16 bytes | round u32 | stage u8
                     | sender u32 | receiver u32
    body             the message's fields, in declaration order

Field codecs (``FieldKind``):

* ``U8``/``U32``/``U64``: fixed-width unsigned integers;
* ``BYTES``: u32 length, then the bytes;
* ``IDS``: u32 count, then that many u32 client ids (strictly increasing);
* ``BYTES_MAP``: u32 count, then (u32 id, u32 length, bytes) entries with
  strictly increasing ids, decoded to ``dict[int, bytes]``;
* ``ARRAY``: u8 dtype code (4 = uint32, 8 = uint64), u64 count, then the raw
  little-endian words: never int64 padding.

Decoding is total (SECURITY invariant 5): any byte string yields a message or a
:class:`DecodeError`, never another exception. Every length is checked against
the bytes that remain *before* anything is allocated, so memory is bounded by
the input size, itself capped by ``max_bytes``. Trailing bytes are an error, so
the encoding is canonical: ``encode(decode(b)) == b`` for every accepted ``b``.

Message kinds are registered with :func:`register`; kinds 1–31 belong to
SecAgg/SecAgg+, 32–63 to the HE protocols, 64–95 to the plaintext baseline.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar, TypeVar

import numpy as np

from secagg.errors import ConfigError, DecodeError

from .session import Stage

__all__ = [
    "encode_parts",
    "MAGIC",
    "WIRE_VERSION",
    "SERVER_ID",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "PROTOCOL_IDS",
    "FieldKind",
    "Header",
    "Message",
    "register",
    "encode",
    "decode",
]

MAGIC = b"SAGG"
WIRE_VERSION = 1
SERVER_ID = 0xFFFFFFFF  # the server's sender/receiver id on the wire
SESSION_ID_BYTES = 16  # 128-bit random session ids: collisions across sessions are negligible
# 4 GiB: a 10^9-parameter uint32 update fits; anything larger is refused before parsing.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 32
PROTOCOL_IDS: dict[str, int] = {
    "secagg": 1,
    "secagg+": 2,
    "paillier": 3,
    "paillier-threshold": 4,
    "ckks": 5,
    "plaintext": 6,
}
_STAGE_CODES = {stage: i + 1 for i, stage in enumerate(Stage)}
_STAGE_BY_CODE = {code: stage for stage, code in _STAGE_CODES.items()}
_DTYPE_CODES = {np.dtype(np.uint32): 4, np.dtype(np.uint64): 8}
_DTYPE_BY_CODE = {4: np.dtype("<u4"), 8: np.dtype("<u8")}
_HEADER = struct.Struct(f"<4sBBB{SESSION_ID_BYTES}sIBII")


class FieldKind(enum.Enum):
    """How one body field is laid out on the wire (see the module docstring)."""

    U8 = "u8"
    U32 = "u32"
    U64 = "u64"
    BYTES = "bytes"
    IDS = "ids"
    BYTES_MAP = "bytes_map"
    ARRAY = "array"


@dataclass(frozen=True)
class Header:
    """Binds a message to protocol, session, round, stage, sender and receiver
    (SECURITY invariant 4). The server's id is :data:`SERVER_ID`."""

    protocol: int
    session_id: bytes
    round: int
    stage: Stage
    sender: int
    receiver: int

    def __post_init__(self) -> None:
        if len(self.session_id) != SESSION_ID_BYTES:
            raise ConfigError("session_id must be 16 bytes", got=len(self.session_id))
        for name in ("round", "sender", "receiver"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFFFFFF:
                raise ConfigError(f"{name} must fit in u32", **{name: value})
        if not 0 <= self.protocol <= 0xFF:
            raise ConfigError("protocol id must fit in u8", protocol=self.protocol)

    def to_bytes(self, kind: int) -> bytes:
        return _HEADER.pack(
            MAGIC,
            WIRE_VERSION,
            kind,
            self.protocol,
            bytes(self.session_id),
            self.round,
            _STAGE_CODES[self.stage],
            self.sender,
            self.receiver,
        )

    def aad(self) -> bytes:
        """Associated data for AEAD: the header without the kind byte."""
        return self.to_bytes(0)


class Message:
    """Base of all wire messages. Subclasses are frozen dataclasses whose first
    field is ``header: Header`` and whose ``BODY`` lists (field, FieldKind)."""

    KIND: ClassVar[int]
    BODY: ClassVar[tuple[tuple[str, FieldKind], ...]]
    header: Header

    def to_bytes(self) -> bytes:
        return encode(self)


_REGISTRY: dict[int, type[Message]] = {}
M = TypeVar("M", bound=type[Message])


def register(kind: int) -> Callable[[M], M]:
    """Class decorator: give a message class its wire ``kind`` (unique, 1..255)."""

    def wrap(cls: M) -> M:
        if not 1 <= kind <= 255 or kind in _REGISTRY:
            raise ConfigError("message kind must be unique in 1..255", kind=kind)
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        if names[0] != "header" or [n for n, _ in cls.BODY] != names[1:]:
            raise ConfigError("BODY must list the dataclass fields after header", cls=cls.__name__)
        cls.KIND = kind
        _REGISTRY[kind] = cls
        return cls

    return wrap


# ---------------------------------------------------------------- encoding


def _encode_field(kind: FieldKind, value: Any, out: list[bytes | memoryview]) -> None:
    if kind is FieldKind.U8:
        out.append(struct.pack("<B", value))
    elif kind is FieldKind.U32:
        out.append(struct.pack("<I", value))
    elif kind is FieldKind.U64:
        out.append(struct.pack("<Q", value))
    elif kind is FieldKind.BYTES:
        out.append(struct.pack("<I", len(value)))
        out.append(bytes(value))
    elif kind is FieldKind.IDS:
        ids = list(value)
        if any(b <= a for a, b in zip(ids, ids[1:])):
            raise ConfigError("id lists must be strictly increasing")
        out.append(struct.pack("<I", len(ids)))
        out.append(np.asarray(ids, dtype="<u4").tobytes())
    elif kind is FieldKind.BYTES_MAP:
        out.append(struct.pack("<I", len(value)))
        for key in sorted(value):
            item = bytes(value[key])
            out.append(struct.pack("<II", key, len(item)))
            out.append(item)
    elif kind is FieldKind.ARRAY:
        array = np.asarray(value)
        if array.ndim != 1 or array.dtype not in _DTYPE_CODES:
            raise ConfigError("arrays on the wire are 1-D uint32 or uint64", dtype=str(array.dtype))
        out.append(struct.pack("<BQ", _DTYPE_CODES[array.dtype], array.size))
        # A view, not tobytes(): join() below makes the one copy of a large vector.
        wire = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
        out.append(memoryview(wire).cast("B"))
    else:  # pragma: no cover - exhaustive
        raise AssertionError(kind)


def encode_parts(msg: Message) -> list[bytes | memoryview]:
    """``encode(msg)`` as a list of buffers whose concatenation is the message.

    Large vectors appear as views of the message's own arrays (no copy), so a
    transport with scatter-gather writes (``socket.sendmsg``, ``writev``) can
    send a 10^8-word masked input without a second update-sized buffer. The
    views are valid while the arrays are alive and unmodified.
    """
    parts: list[bytes | memoryview] = [msg.header.to_bytes(type(msg).KIND)]
    for name, kind in type(msg).BODY:
        _encode_field(kind, getattr(msg, name), parts)
    return parts


def encode(msg: Message) -> bytes:
    """Serialise ``msg`` canonically."""
    return b"".join(encode_parts(msg))


# ---------------------------------------------------------------- decoding


class _Reader:
    """Bounds-checked cursor over a bytes object; every failure is a DecodeError."""

    def __init__(self, data: bytes) -> None:
        self.view = memoryview(data)
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or n > len(self.view) - self.pos:
            raise DecodeError(
                f"truncated message: {what} needs {n} bytes", at=self.pos, remaining=len(self.view) - self.pos
            )
        chunk = self.view[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        s = struct.Struct("<" + fmt)
        return s.unpack(self.take(s.size, what))

    def field(self, kind: FieldKind, name: str) -> Any:
        if kind is FieldKind.U8:
            return self.unpack("B", name)[0]
        if kind is FieldKind.U32:
            return self.unpack("I", name)[0]
        if kind is FieldKind.U64:
            return self.unpack("Q", name)[0]
        if kind is FieldKind.BYTES:
            (n,) = self.unpack("I", name)
            return bytes(self.take(n, name))
        if kind is FieldKind.IDS:
            (n,) = self.unpack("I", name)
            if n > (len(self.view) - self.pos) // 4:
                raise DecodeError(f"{name}: id count exceeds the message size", count=n)
            raw = self.take(4 * n, name)
            ids = np.frombuffer(raw, dtype="<u4").astype(np.int64)
            if n > 1 and not bool(np.all(ids[1:] > ids[:-1])):
                raise DecodeError(f"{name}: ids must be strictly increasing")
            return tuple(int(i) for i in ids)
        if kind is FieldKind.BYTES_MAP:
            (n,) = self.unpack("I", name)
            if n > (len(self.view) - self.pos) // 8:
                raise DecodeError(f"{name}: entry count exceeds the message size", count=n)
            result: dict[int, bytes] = {}
            last = -1
            for _ in range(n):
                key, length = self.unpack("II", name)
                if key <= last:
                    raise DecodeError(f"{name}: keys must be strictly increasing")
                last = key
                result[key] = bytes(self.take(length, name))
            return result
        if kind is FieldKind.ARRAY:
            code, n = self.unpack("BQ", name)
            dtype = _DTYPE_BY_CODE.get(code)
            if dtype is None:
                raise DecodeError(f"{name}: unknown array dtype code {code}")
            if n > (len(self.view) - self.pos) // dtype.itemsize:
                raise DecodeError(f"{name}: array length exceeds the message size", count=n)
            raw = self.take(n * dtype.itemsize, name)
            return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
        raise AssertionError(kind)  # pragma: no cover


def decode(data: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    """Parse one message. Any malformed, truncated, oversized, trailing-garbage
    or unknown-version input raises :class:`DecodeError` and nothing else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("messages are bytes", type=type(data).__name__)
    if len(data) > max_bytes:
        raise DecodeError("message exceeds the size limit", size=len(data), limit=max_bytes)
    reader = _Reader(bytes(data))
    magic, version, kind, protocol, session_id, round_, stage_code, sender, receiver = (
        _HEADER.unpack(reader.take(_HEADER.size, "header"))
    )
    if magic != MAGIC:
        raise DecodeError("not a secagg message (bad magic)")
    if version != WIRE_VERSION:
        raise DecodeError("unsupported wire version", version=version, supported=WIRE_VERSION)
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise DecodeError("unknown message kind", kind=kind)
    stage = _STAGE_BY_CODE.get(stage_code)
    if stage is None:
        raise DecodeError("unknown stage code", stage=stage_code)
    header = Header(protocol, session_id, round_, stage, sender, receiver)
    values = {name: reader.field(fk, name) for name, fk in cls.BODY}
    if reader.pos != len(reader.view):
        raise DecodeError("trailing bytes after message", extra=len(reader.view) - reader.pos)
    try:
        return cls(header=header, **values)
    except DecodeError:
        raise
    except Exception as exc:  # a message class's own validation rejected the values
        raise DecodeError(f"invalid {cls.__name__}: {exc}") from None


# ---------------------------------------------------------------- SecAgg / SecAgg+ messages
# One class per message of Bonawitz et al. 2017, Fig. 4 (rounds 0-4); the same
# messages serve SecAgg+ (Bell et al. 2020), where maps only hold neighbours.


def _message(kind: int) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        return register(kind)(dataclass(frozen=True)(cls))

    return wrap


@_message(1)
class AdvertiseKeysRequest(Message):
    """Server -> client: round 0 begins."""

    header: Header
    BODY = ()


@_message(2)
class AdvertiseKeys(Message):
    """Client -> server, round 0: the encryption key c_pk and the mask key s_pk,
    signed with the client's Ed25519 identity when identities are configured."""

    header: Header
    c_public: bytes
    s_public: bytes
    signature: bytes
    BODY = (("c_public", FieldKind.BYTES), ("s_public", FieldKind.BYTES), ("signature", FieldKind.BYTES))


@_message(3)
class KeysBroadcast(Message):
    """Server -> client, round 1: each neighbour's c_pk || s_pk || signature."""

    header: Header
    keys: dict
    BODY = (("keys", FieldKind.BYTES_MAP),)


@_message(4)
class EncryptedShares(Message):
    """Client -> server, round 1: AEAD-sealed (b_u, s_u) share pairs per neighbour."""

    header: Header
    ciphertexts: dict
    BODY = (("ciphertexts", FieldKind.BYTES_MAP),)


@_message(5)
class SharesDelivery(Message):
    """Server -> client, round 2: the ciphertexts addressed to this client, by sender."""

    header: Header
    ciphertexts: dict
    BODY = (("ciphertexts", FieldKind.BYTES_MAP),)


@_message(6)
class MaskedInput(Message):
    """Client -> server, round 2: y_u = encode(x_u) + PRG(b_u) + Σ ±PRG(s_uv) mod 2^bits."""

    header: Header
    masked: np.ndarray
    BODY = (("masked", FieldKind.ARRAY),)


@_message(7)
class ConsistencyRequest(Message):
    """Server -> client, round 3 (active security): the survivor set U3 to sign."""

    header: Header
    survivors: tuple
    BODY = (("survivors", FieldKind.IDS),)


@_message(8)
class ConsistencySignature(Message):
    """Client -> server, round 3: the client's signature over U3."""

    header: Header
    signature: bytes
    BODY = (("signature", FieldKind.BYTES),)


@_message(9)
class UnmaskRequest(Message):
    """Server -> client, round 4: which neighbours survived (reveal b shares) and
    which dropped (reveal s shares), plus, in active mode, the U3 signatures."""

    header: Header
    survivors: tuple
    dropped: tuple
    signatures: dict
    BODY = (("survivors", FieldKind.IDS), ("dropped", FieldKind.IDS), ("signatures", FieldKind.BYTES_MAP))


@_message(10)
class UnmaskShares(Message):
    """Client -> server, round 4: shares of b_v for survivors, of s_v for dropouts."""

    header: Header
    self_mask_shares: dict
    mask_key_shares: dict
    BODY = (("self_mask_shares", FieldKind.BYTES_MAP), ("mask_key_shares", FieldKind.BYTES_MAP))


__all__ += [
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
