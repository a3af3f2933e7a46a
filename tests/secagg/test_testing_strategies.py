"""The public strategies in secagg.testing produce what their docstrings promise."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import secagg.testing as testing
from secagg.encoding import FixedPointEncoder
from secagg.testing.strategies import encoders, seeds, shamir_params, update_vectors, weights


@given(x=update_vectors(dim=7, max_abs=2.5, dtype=np.float32))
def test_update_vectors_respect_dim_bound_and_dtype(x: np.ndarray) -> None:
    assert x.shape == (7,) and x.dtype == np.float32
    assert np.isfinite(x).all() and np.abs(x).max() <= 2.5


@given(x=update_vectors(dim=st.integers(1, 3), max_abs=0.1, dtype=np.float64))
def test_update_vectors_accept_a_dim_strategy(x: np.ndarray) -> None:
    assert 1 <= x.size <= 3 and x.dtype == np.float64


@given(w=weights(max_weight=9), s=seeds(), s32=seeds(sizes=(32,)), nt=shamir_params(max_n=6))
def test_scalars(w: int, s: bytes, s32: bytes, nt: tuple[int, int]) -> None:
    assert 0 <= w <= 9
    assert len(s) in (16, 32) and len(s32) == 32
    n, t = nt
    assert 1 <= t <= n <= 6


@given(enc=encoders())
def test_encoders_are_valid_and_encode(enc: FixedPointEncoder) -> None:
    assert 2 <= enc.bits <= 64 and enc.scale >= 1
    out = enc.encode(np.array([enc.clip, -enc.clip]), weight=enc.max_weight)
    assert out.dtype == enc.dtype and out.shape == (3,)


@given(enc=encoders(max_clients=5, clip=1.0, bits=32, max_weight=3, norm="l2"))
def test_encoders_accept_fixed_values(enc: FixedPointEncoder) -> None:
    assert (enc.max_clients, enc.clip, enc.bits, enc.max_weight, enc.norm) == (5, 1.0, 32, 3, "l2")


def test_package_reexports() -> None:
    assert set(testing.__all__) == {"update_vectors", "weights", "seeds", "encoders", "shamir_params"}


def test_secagg_core_does_not_import_secagg_testing() -> None:
    import subprocess
    import sys

    code = (
        "import sys, secagg, secagg.kex, secagg.aead, secagg.prg, secagg.shamir, secagg.encoding; "
        "assert 'secagg.testing' not in sys.modules and 'hypothesis' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
