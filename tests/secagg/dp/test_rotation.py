"""Randomised Hadamard rotation: orthogonal, exactly invertible, seeded by a public seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from secagg.dp.rotation import fwht, padded_dim, rotate, rotation_signs, unrotate
from secagg.errors import ConfigError

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
vectors = st.integers(1, 300).flatmap(lambda d: arrays(np.float64, d, elements=finite))
seeds = st.binary(min_size=16, max_size=16) | st.binary(min_size=32, max_size=32)


def hadamard(p: int) -> np.ndarray:
    h = np.array([[1.0]])
    while h.shape[0] < p:
        h = np.block([[h, h], [h, -h]])
    return h


@pytest.mark.parametrize("p", [1, 2, 8, 64])
def test_fwht_equals_hadamard_matrix(p: int) -> None:
    x = np.random.default_rng(p).normal(size=(3, p))
    assert np.allclose(fwht(x), x @ hadamard(p).T)


@given(vectors, seeds)
def test_rotation_is_orthogonal_and_inverse_is_exact(x: np.ndarray, seed: bytes) -> None:
    y = rotate(x, seed)
    assert y.shape == (padded_dim(x.size),)
    scale = max(1.0, float(np.abs(x).max()))
    assert np.isclose(np.linalg.norm(y), np.linalg.norm(x), rtol=1e-12, atol=1e-9 * scale)
    assert np.allclose(unrotate(y, seed, x.size), x, rtol=0, atol=1e-9 * scale)


@given(vectors, vectors, seeds)
def test_rotation_is_linear(x: np.ndarray, y: np.ndarray, seed: bytes) -> None:
    d = min(x.size, y.size)
    a, b = x[:d], y[:d]
    scale = max(1.0, float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)))
    assert np.allclose(rotate(a + b, seed), rotate(a, seed) + rotate(b, seed), atol=1e-9 * scale)


def test_rotation_spreads_a_spike() -> None:
    x = np.zeros(1000)
    x[3] = 1.0
    y = rotate(x, bytes(16))
    assert np.allclose(np.abs(y), 1 / np.sqrt(1024))


def test_signs_are_public_deterministic_and_seed_dependent() -> None:
    a = rotation_signs(b"\x01" * 16, 4096)
    assert set(np.unique(a)) == {-1.0, 1.0}
    assert np.array_equal(a, rotation_signs(b"\x01" * 16, 4096))
    assert not np.array_equal(a, rotation_signs(b"\x02" * 16, 4096))
    assert abs(a.mean()) < 6 / np.sqrt(4096)


@pytest.mark.parametrize(
    "call",
    [
        lambda: padded_dim(0),
        lambda: rotation_signs(b"short", 8),
        lambda: rotate(np.zeros(0), bytes(16)),
        lambda: unrotate(np.zeros(7), bytes(16), 7),
        lambda: fwht(np.zeros(6)),
    ],
)
def test_bad_arguments_raise_config_error(call) -> None:
    with pytest.raises(ConfigError):
        call()
