"""Tests for secagg.prg: RFC 8439 known answers, determinism, chunking and uniformity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from secagg import prg
from secagg.errors import ConfigError
from secagg.testing.strategies import seeds
from tests.vectors import load

RFC8439 = load("chacha20_rfc8439")


def _keystream_bytes(key_hex: str, nonce_hex: str, counter: int, n_bytes: int) -> bytes:
    words = prg.keystream(bytes.fromhex(key_hex), bytes.fromhex(nonce_hex), counter, -(-n_bytes // 4))
    assert words.dtype == np.uint32
    return words.astype("<u4").tobytes()[:n_bytes]


@pytest.mark.parametrize("vector", RFC8439["blocks"], ids=lambda v: v["name"])
def test_keystream_block_matches_rfc8439(vector: dict) -> None:
    expected = bytes.fromhex(vector["keystream"])
    assert _keystream_bytes(vector["key"], vector["nonce"], vector["counter"], len(expected)) == expected


@pytest.mark.parametrize("vector", RFC8439["encryption"], ids=lambda v: v["name"])
def test_keystream_encryption_matches_rfc8439(vector: dict) -> None:
    plaintext = vector["plaintext_ascii"].encode("ascii")
    stream = _keystream_bytes(vector["key"], vector["nonce"], vector["counter"], len(plaintext))
    ciphertext = bytes(p ^ k for p, k in zip(plaintext, stream))
    assert ciphertext.hex() == vector["ciphertext"]


def test_keystream_words_are_little_endian_and_truncate_the_last_block() -> None:
    vector = RFC8439["blocks"][0]
    words = prg.keystream(bytes.fromhex(vector["key"]), bytes.fromhex(vector["nonce"]), vector["counter"], 5)
    block = bytes.fromhex(vector["keystream"])
    assert list(words) == [int.from_bytes(block[4 * i : 4 * i + 4], "little") for i in range(5)]
    assert prg.keystream(bytes(32), bytes(12), 0, 0).size == 0


@given(seed=seeds(), length=st.integers(0, 100))
def test_expand_uses_keystream_byte_order(seed: bytes, length: int) -> None:
    key = prg.derive_key(seed)
    words = prg.keystream(key, prg.PRG_NONCE, 0, 2 * length)
    assert np.array_equal(prg.expand(seed, length, 32), words[:length])
    wide = words[0::2].astype(np.uint64) | (words[1::2].astype(np.uint64) << np.uint64(32))
    assert np.array_equal(prg.expand(seed, length, 64), wide)
    assert np.array_equal(prg.expand(seed, length, 7), words[:length] & 0x7F)


def test_derive_key_is_hkdf_sha256_with_the_documented_label() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    seed = bytes(range(16))
    expected = HKDF(hashes.SHA256(), 32, salt=b"", info=b"secagg/prg/chacha20/v1").derive(seed)
    assert prg.derive_key(seed) == expected


@given(seed=seeds(), length=st.integers(0, 300), bits=st.integers(1, 64))
def test_expand_is_deterministic_and_in_range(seed: bytes, length: int, bits: int) -> None:
    a, b = prg.expand(seed, length, bits), prg.expand(seed, length, bits)
    assert np.array_equal(a, b)
    assert a.dtype == (np.uint32 if bits <= 32 else np.uint64) and a.shape == (length,)
    if length:
        assert int(a.max()) < 2**bits


@given(
    seed=seeds(),
    bits=st.integers(1, 64),
    cuts=st.lists(st.integers(0, 200), min_size=1, max_size=6),
)
def test_expand_is_chunking_and_offset_invariant(seed: bytes, bits: int, cuts: list[int]) -> None:
    total = sum(cuts)
    whole = prg.expand(seed, total, bits)
    pieces, offset = [], 0
    for size in cuts:
        pieces.append(prg.expand(seed, size, bits, offset=offset))
        offset += size
    assert np.array_equal(np.concatenate(pieces), whole)


def test_expand_across_the_internal_chunk_boundary() -> None:
    seed = b"\x07" * 32
    n = prg._CHUNK_BLOCKS * prg.WORDS_PER_BLOCK + 37
    whole = prg.expand(seed, n)
    head = prg._CHUNK_BLOCKS * prg.WORDS_PER_BLOCK - 5
    assert np.array_equal(whole[head:], prg.expand(seed, n - head, offset=head))


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8, 13, 31, 32, 33, 48, 63, 64])
def test_expand_is_uniform_on_b_bit_values(bits: int) -> None:
    """Chi-square on the b-bit values (masks must be uniform on [0, 2**b) for every b), top 8 bits for wide b."""
    values = prg.expand(bytes(range(32)), 200_000, bits).astype(np.uint64)
    shown = min(bits, 8)
    buckets = values >> np.uint64(bits - shown)
    counts = np.bincount(buckets.astype(np.int64), minlength=2**shown)
    assert counts.size == 2**shown
    assert stats.chisquare(counts).pvalue > 1e-4
    # The low bit is fair too (masking keeps every bit uniform).
    low = np.bincount((values & np.uint64(1)).astype(np.int64), minlength=2)
    assert stats.chisquare(low).pvalue > 1e-4


def test_different_seeds_give_different_streams() -> None:
    assert not np.array_equal(prg.expand(b"\x00" * 16, 64), prg.expand(b"\x00" * 32, 64))


@pytest.mark.parametrize("seed", [b"", b"x" * 15, b"x" * 24, b"x" * 33, "s" * 16, None, 5])
def test_bad_seed_is_config_error(seed: object) -> None:
    with pytest.raises(ConfigError):
        prg.expand(seed, 4)  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", [0, 65, -1, True, 8.0])
def test_bad_bits_is_config_error(bits: object) -> None:
    with pytest.raises(ConfigError):
        prg.expand(b"x" * 16, 4, bits)  # type: ignore[arg-type]


def test_negative_sizes_and_bad_key_nonce_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        prg.expand(b"x" * 16, -1)
    with pytest.raises(ConfigError):
        prg.expand(b"x" * 16, 1, offset=-1)
    with pytest.raises(ConfigError):
        prg.keystream(bytes(31), bytes(12), 0, 1)
    with pytest.raises(ConfigError):
        prg.keystream(bytes(32), bytes(8), 0, 1)
    with pytest.raises(ConfigError):
        prg.keystream(bytes(32), bytes(12), -1, 1)
    with pytest.raises(ConfigError):
        prg.keystream(bytes(32), bytes(12), 0, -1)


def test_counter_overflow_is_config_error() -> None:
    key, nonce = bytes(32), bytes(12)
    last = prg.MAX_COUNTER
    assert prg.keystream(key, nonce, last, 16).size == 16  # the last block is fine
    with pytest.raises(ConfigError):
        prg.keystream(key, nonce, last, 17)  # would need block 2**32
    with pytest.raises(ConfigError):
        prg.keystream(key, nonce, 2**32, 1)
    with pytest.raises(ConfigError):
        prg.expand(b"x" * 16, 1, 32, offset=2**32 * prg.WORDS_PER_BLOCK)
    # The very last word of the 32-bit counter space is reachable.
    assert prg.expand(b"x" * 16, 1, 32, offset=2**32 * prg.WORDS_PER_BLOCK - 1).size == 1
