"""The wire codec: header-only parsing, decode limits checked before
allocation, bounded decoding of hostile maps, and the message decorator."""

from __future__ import annotations

import array
import struct
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import messages as m
from protocols import session
from secagg.errors import ConfigError, DecodeError

HEADER = m.Header(m.PROTOCOL_IDS["secagg"], bytes(range(16)), 5, m.Stage.SHARE_KEYS, 3, m.SERVER_ID)


def empty_entries_map(count: int) -> bytes:
    """EncryptedShares holding ``count`` empty ciphertexts: legal, 8 bytes each."""
    body = struct.pack("<I", count) + b"".join(struct.pack("<II", i, 0) for i in range(count))
    return HEADER.to_bytes(m.EncryptedShares.KIND) + body


def peak_of(call):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        call()
    finally:
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, elapsed


# ---------------------------------------------------------------- decode_header


def test_decode_header_reads_only_the_fixed_header():
    msg = m.EncryptedShares(HEADER, {1: b"a", 2: b"bc"})
    data = msg.to_bytes()
    assert m.decode_header(data) == (m.EncryptedShares.KIND, HEADER)
    assert m.decode_header(data[: m.HEADER_BYTES] + b"garbage body") == (m.EncryptedShares.KIND, HEADER)
    assert m.decode_header(memoryview(bytearray(data))) == (m.EncryptedShares.KIND, HEADER)


@pytest.mark.parametrize("bad", [b"", b"SAGG", b"XXXX" + bytes(40), b"SAGG\x02" + bytes(40),
                                 b"SAGG\x01\xfe" + bytes(40), b"SAGG\x01\x01\x01" + bytes(16) + bytes(4) + b"\x09"
                                 + bytes(8)])
def test_decode_header_raises_decode_error_on_bad_headers(bad):
    with pytest.raises(DecodeError):
        m.decode_header(bad)


def test_decode_header_and_decode_take_any_byte_buffer():
    data = m.MaskedInput(HEADER, np.arange(5, dtype=np.uint32)).to_bytes()
    words = array.array("I", data[: len(data) // 4 * 4])  # a non-byte buffer format
    assert m.decode_header(memoryview(words))[1] == HEADER
    for wrapped in (bytearray(data), memoryview(data)):
        assert np.array_equal(m.decode(wrapped).masked, np.arange(5))
    with pytest.raises(DecodeError):
        m.decode_header("not bytes")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        m.decode_header(memoryview(data)[::2])  # not contiguous


def test_the_stage_enum_is_shared_by_messages_and_session():
    assert session.Stage is m.Stage


@settings(max_examples=200)
@given(st.binary(max_size=80))
def test_decode_header_is_total(data):
    try:
        kind, header = m.decode_header(data)
    except DecodeError:
        return
    assert m.message_classes()[kind].KIND == kind and header.to_bytes(kind) == data[: m.HEADER_BYTES]


# ---------------------------------------------------------------- limits


def test_500k_empty_entries_are_refused_quickly_with_bounded_memory():
    data = empty_entries_map(500_000)
    with pytest.raises(DecodeError, match="entries exceed the limit"):
        m.decode(data)
    peak, elapsed = peak_of(lambda: pytest.raises(DecodeError, m.decode, data))
    assert peak < 4 * len(data) + (1 << 20)
    assert elapsed < 0.5  # was about a second and 41 MB before the count was capped


def test_a_session_sized_limit_refuses_the_same_message_by_size():
    limits = m.DecodeLimits.for_round(clients=100, dim=1000, entry_bytes=200)
    with pytest.raises(DecodeError, match="size limit"):
        m.decode(empty_entries_map(500_000), limits=limits)


@pytest.mark.parametrize("field,msg", [
    ("max_entries", m.EncryptedShares(HEADER, {i: b"" for i in range(5)})),
    ("max_entries", m.ConsistencyRequest(HEADER, tuple(range(5)))),
    ("max_entry_bytes", m.EncryptedShares(HEADER, {1: bytes(5)})),
    ("max_words", m.MaskedInput(HEADER, np.zeros(5, np.uint32))),
    ("max_bytes", m.AdvertiseKeys(HEADER, bytes(32), bytes(32), b"")),
])
def test_each_limit_is_enforced_at_its_boundary(field, msg):
    data = msg.to_bytes()
    exact = {"max_entries": 5, "max_entry_bytes": 5, "max_words": 5, "max_bytes": len(data)}[field]
    assert m.encode(m.decode(data, limits=m.DecodeLimits(**{field: exact}))) == data
    with pytest.raises(DecodeError):
        m.decode(data, limits=m.DecodeLimits(**{field: exact - 1}))


def test_for_round_without_maps_is_exactly_one_vector_message():
    limits = m.DecodeLimits.for_round(clients=3, dim=10, word_bytes=4, maps=0, slack=0)
    data = m.MaskedInput(HEADER, np.zeros(11, np.uint32)).to_bytes()
    assert limits.max_bytes == len(data) and limits.max_words == 11
    m.decode(data, limits=limits)
    with pytest.raises(DecodeError):
        m.decode(m.MaskedInput(HEADER, np.zeros(12, np.uint32)).to_bytes(), limits=limits)


def test_limits_are_validated():
    with pytest.raises(ConfigError):
        m.DecodeLimits(max_bytes=-1)


def test_max_bytes_keeps_working_alone_and_with_limits():
    data = m.AdvertiseKeys(HEADER, bytes(32), bytes(32), b"").to_bytes()
    with pytest.raises(DecodeError, match="size limit"):
        m.decode(data, max_bytes=len(data) - 1)
    with pytest.raises(DecodeError, match="size limit"):
        m.decode(data, max_bytes=len(data) - 1, limits=m.DecodeLimits())
    assert m.decode(data, max_bytes=len(data)).c_public == bytes(32)


@settings(max_examples=200)
@given(st.binary(max_size=300), st.integers(0, 8), st.integers(0, 64), st.integers(0, 16))
def test_decoding_under_any_limits_is_total_and_canonical(body, entries, entry_bytes, words):
    limits = m.DecodeLimits(max_bytes=400, max_entries=entries, max_entry_bytes=entry_bytes, max_words=words)
    for kind in (m.EncryptedShares.KIND, m.UnmaskRequest.KIND, m.MaskedInput.KIND):
        data = HEADER.to_bytes(kind) + body
        try:
            msg = m.decode(data, limits=limits)
        except DecodeError:
            continue
        assert m.encode(msg) == data


# ---------------------------------------------------------------- the message decorator


def test_wire_message_makes_a_frozen_registered_dataclass():
    @m.wire_message(250)
    class Probe(m.Message):
        """A test-only message."""

        header: m.Header
        value: int
        BODY = (("value", m.FieldKind.U32),)

    probe = Probe(HEADER, 7)
    assert m.message_classes()[250] is Probe and m.decode(probe.to_bytes()) == probe
    with pytest.raises(AttributeError):
        probe.value = 8  # type: ignore[misc]
    with pytest.raises(ConfigError):
        m.wire_message(250)(type("Again", (m.Message,), {"__annotations__": {"header": m.Header}, "BODY": ()}))
