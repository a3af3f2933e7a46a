"""Tests for secagg.aead: AES-256-GCM seal/open with associated data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg import aead
from secagg.errors import ConfigError, IntegrityError

KEY = bytes(range(32))


def _flip(blob: bytes, bit: int) -> bytes:
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@given(plaintext=st.binary(max_size=300), aad=st.binary(max_size=64))
def test_open_inverts_seal(plaintext: bytes, aad: bytes) -> None:
    sealed = aead.seal(KEY, plaintext, aad=aad)
    assert len(sealed) == len(plaintext) + aead.OVERHEAD
    assert aead.open(KEY, sealed, aad=aad) == plaintext


@given(plaintext=st.binary(max_size=100), aad=st.binary(max_size=32), data=st.data())
def test_any_single_bit_flip_in_ciphertext_is_rejected(
    plaintext: bytes, aad: bytes, data: st.DataObject
) -> None:
    sealed = aead.seal(KEY, plaintext, aad=aad)
    bit = data.draw(st.integers(0, 8 * len(sealed) - 1))
    with pytest.raises(IntegrityError):
        aead.open(KEY, _flip(sealed, bit), aad=aad)


@given(plaintext=st.binary(max_size=100), aad=st.binary(min_size=1, max_size=32), data=st.data())
def test_any_single_bit_flip_in_aad_is_rejected(
    plaintext: bytes, aad: bytes, data: st.DataObject
) -> None:
    sealed = aead.seal(KEY, plaintext, aad=aad)
    bit = data.draw(st.integers(0, 8 * len(aad) - 1))
    with pytest.raises(IntegrityError):
        aead.open(KEY, sealed, aad=_flip(aad, bit))


def test_wrong_key_truncation_and_extension_are_rejected() -> None:
    sealed = aead.seal(KEY, b"payload", aad=b"ctx")
    with pytest.raises(IntegrityError):
        aead.open(bytes(32), sealed, aad=b"ctx")
    with pytest.raises(IntegrityError):
        aead.open(KEY, sealed[:-1], aad=b"ctx")
    with pytest.raises(IntegrityError):
        aead.open(KEY, sealed + b"\x00", aad=b"ctx")


@pytest.mark.parametrize("size", range(aead.OVERHEAD))
def test_too_short_input_is_integrity_error(size: int) -> None:
    with pytest.raises(IntegrityError, match="too short"):
        aead.open(KEY, bytes(size), aad=b"")


def test_nonces_are_fresh() -> None:
    a, b = aead.seal(KEY, b"same", aad=b""), aead.seal(KEY, b"same", aad=b"")
    assert a[: aead.NONCE_BYTES] != b[: aead.NONCE_BYTES]


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33), "k" * 32])
def test_bad_key_is_config_error(key: object) -> None:
    with pytest.raises(ConfigError):
        aead.seal(key, b"x", aad=b"")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        aead.open(key, bytes(64), aad=b"")  # type: ignore[arg-type]


def test_constants() -> None:
    assert (aead.NONCE_BYTES, aead.TAG_BYTES, aead.OVERHEAD) == (12, 16, 28)


@pytest.mark.parametrize("bad", [10**9, 1.5, "key", None, [1, 2]], ids=repr)
def test_non_bytes_arguments_are_config_errors_before_any_copy(bad: object) -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        for call in (lambda: aead.seal(bad, b"m", aad=b"a"), lambda: aead.seal(bytes(32), bad, aad=b"a"),  # type: ignore[arg-type]
                     lambda: aead.open(bytes(32), bad, aad=b"a")):  # type: ignore[arg-type]
            with pytest.raises(ConfigError, match="must be bytes") as info:
                call()
            assert info.value.type == type(bad).__name__
        assert tracemalloc.get_traced_memory()[1] < 1 << 20  # never bytes(10**9)
    finally:
        tracemalloc.stop()


def test_require_bytes_is_the_one_check_and_bounds_the_size() -> None:
    from secagg import errors, kex
    from secagg.errors import DecodeError, require_bytes

    assert aead.require_bytes is kex.require_bytes is errors.require_bytes
    assert require_bytes(bytearray(b"ab"), "x") == b"ab" and require_bytes(memoryview(b"ab"), "x") == b"ab"
    data = b"abc"
    assert require_bytes(data, "x", max_size=3) is data  # bytes pass through without a copy
    with pytest.raises(DecodeError) as info:
        require_bytes(b"abcd", "payload", max_size=3, error=DecodeError)
    assert (info.value.size, info.value.limit, info.value.name) == (4, 3, "payload")
