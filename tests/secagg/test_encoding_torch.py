"""Torch (device-side) fixed-point encoding: identical words to numpy on the grid,
unbiased rounding within one quantisation step, clipping before scaling, and the
same weight validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.encoding import FixedPointEncoder
from secagg.errors import ConfigError

torch = pytest.importorskip("torch")

FLOATS = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def _grid(encoder: FixedPointEncoder, ints: np.ndarray, weight: int) -> np.ndarray:
    """Floats whose scaled values are exactly the integers ``ints`` (frac == 0)."""
    return ints.astype(np.float64) / (encoder.scale * weight)


@settings(max_examples=60)
@given(
    bits=st.sampled_from([16, 24, 32, 40, 63]),
    exponent=st.integers(-3, 3),
    weight=st.sampled_from([0, 1, 2, 4]),  # powers of two keep x * scale * w exact
    seed=st.integers(0, 2**31),
    chunk=st.integers(1, 9),
)
def test_on_grid_torch_words_equal_numpy_words(bits, exponent, weight, seed, chunk):
    # A power-of-two clip and scale keep the grid points exactly representable.
    enc = FixedPointEncoder(2.0**exponent, bits, 4, max_weight=4, scale=2.0**6)
    rng = np.random.default_rng(seed)
    k = max(weight, 1)
    limit = 2 ** (6 + exponent) * k if exponent >= -6 else 1
    # Up to twice the clip: clipped values land on +-clip*scale*w, also on the grid.
    ints = rng.integers(-2 * limit, 2 * limit + 1, size=17)
    x = _grid(enc, ints, k) if weight else rng.uniform(-3, 3, size=17)
    expected = enc.encode(x, weight=weight, rng=np.random.default_rng(0))
    clipped = enc.last_clipped
    from secagg.encoding_torch import encode_torch

    got = encode_torch(enc, torch.from_numpy(x), weight=weight, chunk=chunk)
    assert got.dtype == torch.int64 and got.shape == (18,)
    np.testing.assert_array_equal(got.numpy().astype(np.uint64), expected.astype(np.uint64))
    assert enc.last_clipped == clipped


@pytest.mark.parametrize("dtype", FLOATS)
def test_dtypes_clip_before_scale_and_bound(dtype):
    enc = FixedPointEncoder(1.0, 32, 10, max_weight=3)
    x = torch.linspace(-5, 5, 101, dtype=torch.float64).to(dtype)
    y = enc.encode(x, weight=3)
    assert y.dtype == torch.int64 and y.device == x.device
    assert int(y.min()) >= 0 and int(y.max()) < 2**32
    assert enc.last_clipped == int((x.double().abs() > 1.0).sum())
    total, w = enc.decode_sum(y.numpy())
    assert w == 3
    xc = x.double().clamp(-1, 1).numpy()
    assert np.all(np.abs(total / 3 - xc) <= enc.precision + 1e-15)


def test_stochastic_rounding_is_unbiased():
    enc = FixedPointEncoder(1.0, 24, 4)
    x = torch.full((200_000,), 0.3 * enc.precision, dtype=torch.float64) + 0.25
    gen = torch.Generator().manual_seed(7)
    y = enc.encode(x, rng=gen)
    decoded, _ = enc.decode_sum(y.numpy())
    assert np.all(np.abs(decoded - x.numpy()) <= enc.precision)
    # Mean error ~ N(0, (p * 0.46 / sqrt(n))^2): 6 sigma is ~0.006 p.
    assert abs(float(decoded.mean() - x.numpy().mean())) < 0.01 * enc.precision


def test_l2_clip_matches_numpy_up_to_an_ulp():
    enc = FixedPointEncoder(1.0, 32, 4, norm="l2")
    x = np.random.default_rng(3).normal(size=1000)
    a, _ = enc.decode_sum(enc.encode(x))
    assert enc.last_clipped == 1
    b, _ = enc.decode_sum(enc.encode(torch.from_numpy(x), weight=1).numpy())
    assert enc.last_clipped == 1
    assert np.linalg.norm(b) <= 1.0 + 1000**0.5 * enc.precision
    np.testing.assert_allclose(a, b, atol=2 * enc.precision)


@pytest.mark.parametrize("weight", [-1, 5, 1.0, True])
def test_weights_validated_like_numpy(weight):
    enc = FixedPointEncoder(1.0, 32, 4, max_weight=4)
    with pytest.raises(ConfigError):
        enc.encode(torch.zeros(3), weight=weight)


@pytest.mark.parametrize(
    "x", [torch.tensor([0.0, float("nan")]), torch.tensor([float("inf")]), torch.zeros(2, 2),
          torch.zeros(2, dtype=torch.complex64), torch.zeros(2, dtype=torch.bool)]
)
def test_bad_tensors_rejected(x):
    with pytest.raises(ConfigError):
        FixedPointEncoder(1.0, 32, 4).encode(x)


def test_bits_64_refused_on_torch_path():
    with pytest.raises(ConfigError):
        FixedPointEncoder(1.0, 64, 4).encode(torch.zeros(3))


def test_masks_round_trip_through_torch_server_backend():
    from secagg.masking import apply_masks, remove_masks

    for bits in (20, 32, 48, 64):
        enc = np.random.default_rng(bits).integers(0, 2**bits, size=50, dtype=np.uint64)
        masked = apply_masks(enc, bits=bits, self_seed=b"s" * 16, pair_seeds=[], backend="numpy")
        ref = remove_masks(masked, bits=bits, self_seeds=[b"s" * 16], pair_seeds=[])
        got = remove_masks(masked, bits=bits, self_seeds=[b"s" * 16], pair_seeds=[(b"p" * 16, 1)],
                           backend="torch", device="cpu", chunk=7)
        again = remove_masks(masked, bits=bits, self_seeds=[b"s" * 16], pair_seeds=[(b"p" * 16, 1)], chunk=7)
        np.testing.assert_array_equal(ref, enc.astype(ref.dtype))
        np.testing.assert_array_equal(got, again)
    with pytest.raises(ConfigError):
        remove_masks(masked, bits=64, self_seeds=[], pair_seeds=[], backend="jax")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_on_grid_equals_numpy():
    enc = FixedPointEncoder(1.0, 32, 4, scale=2.0**10)
    x = np.arange(-1024, 1025, dtype=np.float64) / 2**10
    got = enc.encode(torch.from_numpy(x).to("cuda", torch.float32))
    assert got.device.type == "cuda"
    np.testing.assert_array_equal(got.cpu().numpy().astype(np.uint32), enc.encode(x))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_values_at_the_dtype_max_clip_by_direction_on_the_device_path(dtype, norm: str) -> None:  # noqa: ANN001
    enc = FixedPointEncoder(1.0, 32, 10, norm=norm)
    big = float(torch.finfo(dtype).max)
    words = enc.encode(torch.tensor([big, -big, 0.0], dtype=dtype)).numpy().astype(np.uint64)
    total, _ = enc.decode_sum(words)
    want = [2**-0.5, -(2**-0.5), 0.0] if norm == "l2" else [1.0, -1.0, 0.0]
    np.testing.assert_allclose(total, want, atol=enc.precision)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors_quantize_as_their_float32_values(dtype) -> None:  # noqa: ANN001
    enc = FixedPointEncoder(2.0, 32, 4, norm="l2")
    t = torch.linspace(-3, 3, 50, dtype=dtype)
    as_float32 = t.float().numpy()
    got = enc.quantize(t, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(got, enc.quantize(as_float32, rng=np.random.default_rng(5)))
    assert enc.clip_count(t) == enc.clip_count(as_float32) == 1


def test_is_tensor_has_one_definition() -> None:
    from secagg import encoding, encoding_torch, masking

    assert masking.is_tensor is encoding_torch.is_tensor is encoding.is_tensor
    assert encoding_torch.is_tensor(torch.zeros(1)) and not encoding_torch.is_tensor(np.zeros(1))
