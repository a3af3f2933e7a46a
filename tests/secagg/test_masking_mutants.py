"""secagg.masking: contracts that mutation testing (make mutate) found unchecked."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import ConfigError
from secagg.masking import apply_masks
from secagg.prg import expand

MASKS = dict(bits=32, self_seed=bytes(range(16)), pair_seeds=[(bytes(range(1, 17)), 1), (bytes(16), -1)])


def _encoded(n: int = 8) -> np.ndarray:
    return np.arange(1, n + 1, dtype=np.uint32) * 1000


def test_a_separate_out_buffer_gets_exactly_the_masked_words() -> None:
    """A caller's own output buffer, holding anything beforehand, ends with the same words as a fresh one."""
    expected = apply_masks(_encoded(), backend="numpy", **MASKS)
    out = np.full(8, 0xDEADBEEF, dtype=np.uint32)
    got = apply_masks(_encoded(), backend="numpy", out=out, **MASKS)
    assert got is out
    np.testing.assert_array_equal(got, expected)


def test_an_out_buffer_right_after_the_input_is_not_an_overlap() -> None:
    buffer = np.zeros(16, dtype=np.uint32)
    buffer[:8] = _encoded()
    got = apply_masks(buffer[:8], backend="numpy", out=buffer[8:], **MASKS)
    np.testing.assert_array_equal(got, apply_masks(_encoded(), backend="numpy", **MASKS))
    source = buffer[8:].copy()
    got = apply_masks(buffer[8:], backend="numpy", out=buffer[:8], **MASKS)  # out right before the input
    np.testing.assert_array_equal(got, apply_masks(source, backend="numpy", **MASKS))


def test_out_at_the_inputs_address_with_another_word_size_is_refused() -> None:
    buffer = np.zeros(8, dtype=np.uint32)
    narrow = buffer.view(np.uint8)[:8]  # the same first bytes, 1-byte words
    with pytest.raises(ConfigError, match="same words"):
        apply_masks(narrow, bits=8, self_seed=None, pair_seeds=[], backend="numpy", out=buffer)


@pytest.mark.parametrize("bits", [31, 32, 33, 64])
@pytest.mark.parametrize("offset", [0, 5, 1000])
def test_masking_at_the_word_size_boundary_is_the_prg_formula(bits: int, offset: int) -> None:
    """At 32 bits a value takes one PRG word, at 33 two: the formula holds on both sides, at any offset."""
    seed = bytes(range(32))
    encoded = np.arange(1, 20, dtype=np.uint64) * 7919  # below 2**31: valid at every width here
    dtype = np.uint32 if bits <= 32 else np.uint64
    prg_words = expand(seed, encoded.size, bits, offset=offset).astype(dtype)
    want = (encoded.astype(dtype) + prg_words) & dtype((1 << bits) - 1)
    got = apply_masks(encoded.astype(dtype), bits=bits, self_seed=seed, pair_seeds=[], offset=offset, backend="numpy")
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bits, per_value", [(32, 1), (33, 2), (64, 2)])
def test_the_last_prg_block_can_be_used_and_not_one_word_more(bits: int, per_value: int) -> None:
    """Masks may run up to the last word of ChaCha20 block 2**32 - 1, never past it (the stream would repeat)."""
    last_offset = (1 << 36) // per_value - 1  # the value whose words end the last block
    one = np.ones(1, dtype=np.uint32 if bits == 32 else np.uint64)
    masked = apply_masks(one, bits=bits, self_seed=bytes(32), pair_seeds=[], offset=last_offset, backend="numpy")
    np.testing.assert_array_equal(masked, one + expand(bytes(32), 1, bits, offset=last_offset))
    with pytest.raises(ConfigError, match="counter"):
        apply_masks(one, bits=bits, self_seed=bytes(32), pair_seeds=[], offset=last_offset + 1, backend="numpy")


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.int32])
def test_any_integer_dtype_in_range_masks_like_the_word_dtype(dtype: type) -> None:
    encoded = np.arange(40, dtype=dtype)
    got = apply_masks(encoded, backend="numpy", **MASKS)
    np.testing.assert_array_equal(got, apply_masks(encoded.astype(np.uint32), backend="numpy", **MASKS))


@pytest.mark.parametrize("pair", [(bytes(16),), (bytes(16), 1, 1), [bytes(16)]])
def test_a_pair_seed_entry_that_is_not_a_pair_is_config_error(pair: object) -> None:
    with pytest.raises(ConfigError, match="pairs"):
        apply_masks(_encoded(), bits=32, self_seed=None, pair_seeds=[pair], backend="numpy")  # type: ignore[list-item]


@pytest.mark.parametrize(
    "field, bad", [("bits", True), ("bits", 32.0), ("offset", True), ("offset", 1.0), ("chunk", 8.0)]
)
def test_bools_and_floats_are_not_counts(field: str, bad: object) -> None:
    kwargs: dict = dict(bits=32, self_seed=bytes(16), pair_seeds=[], backend="numpy")
    kwargs[field] = bad
    with pytest.raises(ConfigError):
        apply_masks(_encoded(), **kwargs)
