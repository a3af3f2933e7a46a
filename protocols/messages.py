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
:class:`DecodeError`, never another exception. Every count and length is
checked against :class:`DecodeLimits` and against the bytes that remain
*before* anything is allocated, so a decoder holds at most a few times the
input, and a session (``protocols.session``) sizes the limits from its
config. :func:`decode_header` reads the fixed header alone, so a session can
refuse a message for the wrong stage or sender without touching its body.
Trailing bytes are an error, so the encoding is canonical:
``encode(decode(b)) == b`` for every accepted ``b``.

Message classes are declared with :func:`wire_message` (or :func:`register` on
a ready dataclass); kinds 1–31 belong to SecAgg/SecAgg+, 32–63 to the HE
protocols, 64–95 to the plaintext baseline.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, TypeVar, dataclass_transform

import numpy as np

from secagg.errors import ConfigError, DecodeError

__all__ = [
    "Stage",
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
    "wire_message",
    "message_classes",
    "encode",
    "decode",
    "decode_header",
    "DecodeLimits",
    "HEADER_BYTES",
    "ARRAY_PREFIX_BYTES",
    "MAPS_PER_MESSAGE",
    "DEFAULT_MAX_ENTRIES",
]


class Stage(enum.Enum):
    """Protocol stages, named as in Bonawitz et al. 2017 (rounds 0–4).

    HE protocols reuse the names that fit (ADVERTISE_KEYS for the key
    ceremony, MASKED_INPUT for ciphertext upload, UNMASK for decryption).
    Defined here because every header carries one; ``protocols.session``
    re-exports it.
    """

    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY = "consistency"
    UNMASK = "unmask"

    @property
    def index(self) -> int:
        return _STAGE_ORDER.index(self)


_STAGE_ORDER = list(Stage)

MAGIC = b"SAGG"
WIRE_VERSION = 1
SERVER_ID = 0xFFFFFFFF  # the server's sender/receiver id on the wire
SESSION_ID_BYTES = 16  # 128-bit random session ids: collisions across sessions are negligible
# 4 GiB, a 10^9-word uint32 update: a bare decode()'s cap; sessions derive theirs from the config.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 32
# Entries per map or id list in a bare decode(): more clients than any SecAgg cohort (quadratic
# cost in n); caps the Python objects of a map of tiny entries (~100 bytes each) at a few MiB.
DEFAULT_MAX_ENTRIES = 1 << 16
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
_DTYPE_BY_CODE: dict[int, np.dtype[Any]] = {4: np.dtype("<u4"), 8: np.dtype("<u8")}
_HEADER = struct.Struct(f"<4sBBB{SESSION_ID_BYTES}sIBII")
HEADER_BYTES = _HEADER.size  # 36: magic, version, kind and the Header fields
ARRAY_PREFIX_BYTES = 9  # an ARRAY field's u8 dtype code and u64 word count
# The most maps and id lists one message carries (UnmaskRequest: two id lists and a map).
MAPS_PER_MESSAGE = 3


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


# Tells type checkers that subclasses are frozen dataclasses (what wire_message makes them).
@dataclass_transform(frozen_default=True, field_specifiers=(field,))
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
C = TypeVar("C", bound=type)


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


def wire_message(kind: int) -> Callable[[C], C]:
    """Class decorator: make ``cls`` a frozen dataclass and register it as ``kind``.

    The one way protocol modules declare their messages::

        @wire_message(64)
        class InputRequest(Message):
            header: Header
            BODY = ()

    Raises :class:`ConfigError` for a kind outside 1..255 or already taken, or
    a ``BODY`` that does not list the fields after ``header`` in order.
    """

    def wrap(cls: C) -> C:
        return register(kind)(dataclass(frozen=True)(cls))  # type: ignore[return-value]

    return wrap


def message_classes() -> dict[int, type[Message]]:
    """Every registered message class, keyed by wire kind (a copy)."""
    return dict(_REGISTRY)


@dataclass(frozen=True)
class DecodeLimits:
    """Caps that decoding checks before it allocates anything.

    ``max_bytes`` bounds the whole message, ``max_entries`` the entries of one
    IDS or BYTES_MAP field, ``max_entry_bytes`` one BYTES_MAP value and
    ``max_words`` one ARRAY field. The defaults are those of a bare
    :func:`decode`; sessions size them from their config with :meth:`for_round`.
    Raises :class:`ConfigError` for a negative cap.
    """

    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_entry_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_words: int = DEFAULT_MAX_MESSAGE_BYTES // 4

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_entries", "max_entry_bytes", "max_words"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative int", **{name: value})

    @classmethod
    def for_round(
        cls,
        *,
        clients: int,
        dim: int,
        word_bytes: int = 8,
        entry_bytes: int = 0,
        maps: int = MAPS_PER_MESSAGE,
        slack: int = 4096,
    ) -> "DecodeLimits":
        """Limits for a round of ``clients`` clients whose vectors hold ``dim`` + 1
        words of ``word_bytes`` and whose map values hold ``entry_bytes``.

        ``max_bytes`` is the header, one full vector, ``maps`` full maps or id
        lists and ``slack`` bytes for small fields (keys, signatures); with
        ``maps=0, slack=0`` it is exactly the size of a vector message.
        """
        words = dim + 1
        one_map = 4 + clients * (8 + entry_bytes)
        total = HEADER_BYTES + ARRAY_PREFIX_BYTES + words * word_bytes + maps * one_map + slack
        return cls(max_bytes=total, max_entries=clients, max_entry_bytes=entry_bytes, max_words=words)


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
        out.append(wire.data.cast("B"))
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

_U8, _U32, _U64 = struct.Struct("<B"), struct.Struct("<I"), struct.Struct("<Q")
_ENTRY = struct.Struct("<II")  # BYTES_MAP entry: id, length
_ARRAY_HEAD = struct.Struct("<BQ")


class _Reader:
    """Bounds-checked cursor over a bytes object; every failure is a DecodeError."""

    def __init__(self, data: bytes, limits: DecodeLimits, pos: int = 0) -> None:
        self.data, self.limits, self.pos = data, limits, pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.remaining:
            raise DecodeError(f"truncated message: {what} needs {n} bytes", at=self.pos, remaining=self.remaining)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: struct.Struct, what: str) -> tuple[Any, ...]:
        if fmt.size > self.remaining:
            raise DecodeError(
                f"truncated message: {what} needs {fmt.size} bytes", at=self.pos, remaining=self.remaining
            )
        values = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return values

    def count(self, name: str, entry_bytes: int) -> int:
        """An entry count, checked against the limit and the bytes left."""
        (n,) = self.unpack(_U32, name)
        if n > self.limits.max_entries:
            raise DecodeError(f"{name}: {n} entries exceed the limit", count=n, limit=self.limits.max_entries)
        if n * entry_bytes > self.remaining:
            raise DecodeError(f"{name}: entry count exceeds the message size", count=n)
        return n

    def field(self, kind: FieldKind, name: str) -> Any:
        if kind is FieldKind.U8:
            return self.unpack(_U8, name)[0]
        if kind is FieldKind.U32:
            return self.unpack(_U32, name)[0]
        if kind is FieldKind.U64:
            return self.unpack(_U64, name)[0]
        if kind is FieldKind.BYTES:
            (n,) = self.unpack(_U32, name)
            return self.take(n, name)
        if kind is FieldKind.IDS:
            n = self.count(name, 4)
            ids = np.frombuffer(self.take(4 * n, name), dtype="<u4")
            if n > 1 and not bool(np.all(ids[1:] > ids[:-1])):
                raise DecodeError(f"{name}: ids must be strictly increasing")
            return tuple(ids.tolist())
        if kind is FieldKind.BYTES_MAP:
            return self.bytes_map(name)
        if kind is FieldKind.ARRAY:
            code, n = self.unpack(_ARRAY_HEAD, name)
            dtype = _DTYPE_BY_CODE.get(code)
            if dtype is None:
                raise DecodeError(f"{name}: unknown array dtype code {code}")
            if n > self.limits.max_words:
                raise DecodeError(f"{name}: {n} words exceed the limit", count=n, limit=self.limits.max_words)
            if n > self.remaining // dtype.itemsize:
                raise DecodeError(f"{name}: array length exceeds the message size", count=n)
            start = self.pos  # n fits in what remains (checked above)
            self.pos += n * dtype.itemsize
            # A view of the message buffer, not a slice: a large vector is never copied.
            raw = memoryview(self.data)[start : self.pos]
            return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
        raise AssertionError(kind)  # pragma: no cover

    def bytes_map(self, name: str) -> dict[int, bytes]:
        # The count is capped before the loop, so the dict (about 100 bytes of
        # Python objects per entry, against 8 wire bytes) stays within the limit.
        n = self.count(name, _ENTRY.size)
        max_entry = self.limits.max_entry_bytes
        result: dict[int, bytes] = {}
        last = -1
        for _ in range(n):
            key, length = self.unpack(_ENTRY, name)
            if key <= last:
                raise DecodeError(f"{name}: keys must be strictly increasing")
            if length > max_entry:
                raise DecodeError(f"{name}: an entry of {length} bytes exceeds the limit", limit=max_entry, key=key)
            last = key
            result[key] = self.take(length, name)
        return result


def _byte_view(data: Any) -> memoryview:
    """``data`` as a flat byte view; DecodeError for anything that is not bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("messages are bytes", type=type(data).__name__)
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        try:
            view = view.cast("B")
        except (TypeError, ValueError):
            raise DecodeError("message buffer is not contiguous bytes") from None
    return view


def _parse_header(view: memoryview) -> tuple[int, Header]:
    if len(view) < HEADER_BYTES:
        raise DecodeError(f"truncated message: header needs {HEADER_BYTES} bytes", remaining=len(view))
    magic, version, kind, protocol, session_id, round_, stage_code, sender, receiver = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise DecodeError("not a secagg message (bad magic)")
    if version != WIRE_VERSION:
        raise DecodeError("unsupported wire version", version=version, supported=WIRE_VERSION)
    if kind not in _REGISTRY:
        raise DecodeError("unknown message kind", kind=kind)
    stage = _STAGE_BY_CODE.get(stage_code)
    if stage is None:
        raise DecodeError("unknown stage code", stage=stage_code)
    return kind, Header(protocol, session_id, round_, stage, sender, receiver)


def decode_header(data: bytes | bytearray | memoryview) -> tuple[int, Header]:
    """Parse only the fixed header: ``(kind, header)``, the body untouched.

    Raises :class:`DecodeError` for a short buffer, bad magic, another wire
    version, an unregistered kind or an unknown stage code, and nothing else.
    Costs O(1) whatever the body's size.
    """
    return _parse_header(_byte_view(data))


def decode(
    data: bytes | bytearray | memoryview, *, max_bytes: int | None = None, limits: DecodeLimits | None = None
) -> Message:
    """Parse one message. Any malformed, truncated, oversized, trailing-garbage
    or unknown-version input raises :class:`DecodeError` and nothing else.

    ``limits`` caps counts and lengths before allocation (default:
    ``DecodeLimits()``); ``max_bytes``, when given, further caps the size.
    """
    limits = limits if limits is not None else DecodeLimits()
    cap = limits.max_bytes if max_bytes is None else min(max_bytes, limits.max_bytes)
    view = _byte_view(data)
    if len(view) > cap:
        raise DecodeError("message exceeds the size limit", size=len(view), limit=cap)
    kind, header = _parse_header(view)
    cls = _REGISTRY[kind]
    # One copy for mutable buffers: decoded arrays view it, and the caller may reuse its buffer.
    raw = data if type(data) is bytes else bytes(view)
    reader = _Reader(raw, limits, HEADER_BYTES)
    values = {name: reader.field(fk, name) for name, fk in cls.BODY}
    if reader.remaining:
        raise DecodeError("trailing bytes after message", extra=reader.remaining)
    try:
        # Every registered class is a dataclass taking ``header`` and its BODY fields.
        return cls(header=header, **values)  # type: ignore[call-arg]
    except DecodeError:
        raise
    except Exception as exc:  # a message class's own validation rejected the values
        raise DecodeError(f"invalid {cls.__name__}: {exc}") from None


# The SecAgg / SecAgg+ message classes live in protocols.secagg_messages; they are
# re-exported here because most callers spell them ``messages.AdvertiseKeys``. The
# import sits at the end: that module registers its classes with ``wire_message``.
from .secagg_messages import (  # noqa: E402
    AdvertiseKeys,
    AdvertiseKeysRequest,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    KeysBroadcast,
    MaskedInput,
    SharesDelivery,
    UnmaskRequest,
    UnmaskShares,
)

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
