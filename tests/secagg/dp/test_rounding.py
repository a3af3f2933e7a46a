"""Conditional randomised rounding: integer, unbiased, and within the inflated norm bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from secagg.dp.rounding import conditional_randomized_round, rounded_l2_norm_bound
from secagg.errors import ConfigError

BETA = math.exp(-0.5)


@given(arrays(np.float64, st.integers(1, 200), elements=st.floats(-50, 50)), st.sampled_from([0.0, BETA]))
def test_rounded_vector_is_floor_or_ceil_and_within_the_bound(x: np.ndarray, beta: float) -> None:
    c = max(float(np.linalg.norm(x)), 1e-3)
    r = conditional_randomized_round(x, l2_norm=c, beta=beta, rng=np.random.default_rng(0))
    assert r.dtype == np.int64
    assert np.all((r == np.floor(x)) | (r == np.ceil(x)))
    assert np.linalg.norm(r) <= rounded_l2_norm_bound(c, beta, x.size)


def test_rounding_is_unbiased_without_conditioning() -> None:
    x = np.array([0.25, -1.7, 3.5, 0.0, 10.9])
    reps = np.stack([conditional_randomized_round(x, l2_norm=20.0, beta=0.0) for _ in range(4000)])
    se = np.sqrt(np.maximum((x - np.floor(x)) * (np.ceil(x) - x), 1e-12) / 4000)
    assert np.all(np.abs(reps.mean(axis=0) - x) <= 6 * se + 1e-12)


def test_beta_bound_is_tighter_for_large_dimension() -> None:
    assert rounded_l2_norm_bound(100.0, BETA, 2**16) < rounded_l2_norm_bound(100.0, 0.0, 2**16)
    assert rounded_l2_norm_bound(100.0, 0.0, 2**16) == 100.0 + 256.0


def test_input_above_the_bound_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        conditional_randomized_round(np.array([3.0, 4.0]), l2_norm=4.0, beta=BETA)
    assert err.value.norm == 5.0


@pytest.mark.parametrize("beta", [-0.1, 1.0])
def test_bad_beta_is_refused(beta: float) -> None:
    with pytest.raises(ConfigError):
        rounded_l2_norm_bound(1.0, beta, 4)
