"""Record-level DP encoding: per-record rotate/clip/round, one noise share per silo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.dp import DistributedDPEncoder, RecordDPEncoder, plan_ddp, rotate
from secagg.dp.rounding import conditional_randomized_round, rounded_l2_norm_bound
from secagg.errors import ConfigError

SEED = bytes(range(16))


def plan(**kw):
    args = dict(mechanism="ddgauss", n_clients=4, min_survivors=3, dim=16, l2_clip=1.0, noise_multiplier=1.0,
                bits=32, max_inputs=200)
    args.update(kw)
    return plan_ddp(**args)


def encoder(**kw) -> RecordDPEncoder:
    p = plan(**kw)
    return RecordDPEncoder(p, dim=p.dim, rotation_seed=SEED)


def clip_rows(rows: np.ndarray, c: float) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows * np.minimum(1.0, c / np.maximum(norms, 1e-300))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.floats(0.1, 50.0), st.integers(0, 2**32 - 1))
def test_a_one_row_batch_rounds_exactly_like_the_vector(d: int, c: float, seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=d)
    x *= c / np.linalg.norm(x)
    one = conditional_randomized_round(x, l2_norm=c, beta=math.exp(-0.5), rng=np.random.default_rng(seed))
    batch = conditional_randomized_round(x[None], l2_norm=c, beta=math.exp(-0.5), rng=np.random.default_rng(seed))
    assert np.array_equal(batch, one[None])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 30), st.integers(1, 40), st.floats(0.5, 30.0), st.integers(0, 2**32 - 1))
def test_every_row_is_rounded_to_a_neighbour_within_its_own_bound(b: int, d: int, c: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = clip_rows(rng.normal(size=(b, d)) * c, c)
    out = conditional_randomized_round(rows, l2_norm=c, beta=math.exp(-0.5), rng=rng)
    assert out.shape == (b, d) and out.dtype == np.int64
    assert np.all(np.abs(out - rows) < 1)
    bound = rounded_l2_norm_bound(c, math.exp(-0.5), d)
    assert np.all(np.linalg.norm(out.astype(np.float64), axis=1) <= bound)


def test_a_row_above_the_bound_is_refused() -> None:
    rows = np.array([[0.1, 0.1], [3.0, 4.0]])
    with pytest.raises(ConfigError, match="clip before rounding"):
        conditional_randomized_round(rows, l2_norm=1.0, beta=0.5)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 50), st.integers(9, 16), st.floats(0.01, 10.0), st.integers(0, 2**32 - 1))
def test_sum_records_is_the_sum_of_rounded_clipped_rotated_records(b: int, d: int, spread: float, seed: int) -> None:
    enc = encoder()
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(b, d)) * spread
    ints = enc.sum_records(rows, rng=rng)
    assert ints.shape == (16,) and ints.dtype == np.int64
    exact = enc.scale * clip_rows(rotate(rows, SEED), 1.0).sum(axis=0) if b else np.zeros(16)
    assert np.all(np.abs(ints - exact) < max(b, 1))  # each record moves each coordinate by < 1
    assert enc.last_clipped == int(np.count_nonzero(np.linalg.norm(rows, axis=1) > 1.0))


def test_sum_records_is_unbiased() -> None:
    enc = encoder()
    rows = np.random.default_rng(1).normal(size=(30, 16)) * 0.1
    exact = enc.scale * rotate(rows, SEED).sum(axis=0)
    rng = np.random.default_rng(2)
    mean = np.mean([enc.sum_records(rows, rng=rng) for _ in range(400)], axis=0)
    # Each coordinate's rounding error has variance <= 30/4; 400 trials, 6 standard errors.
    assert np.all(np.abs(mean - exact) <= 6 * math.sqrt(30 / 4 / 400))


def test_decode_without_noise_returns_the_sum_of_clipped_records() -> None:
    enc = encoder(dim=100)
    rows = np.random.default_rng(3).normal(size=(40, 100)) * 0.15  # some exceed the clip of 1
    ints = enc.sum_records(rows, rng=np.random.default_rng(4))
    assert enc.last_clipped > 0
    total, silos = enc.decode_sum(enc.to_modular(np.append(ints, 1)))
    expected = clip_rows(rows, 1.0).sum(axis=0)
    assert silos == 1
    assert np.max(np.abs(total[:100] - expected)) <= 40 * math.sqrt(128) / enc.scale  # rounding, rotated back


def test_one_share_carries_the_planned_noise() -> None:
    enc = encoder(dim=4096, min_survivors=4, n_clients=4)
    rows = np.random.default_rng(5).normal(size=(10, 4096)) * 0.005
    y = enc.encode(enc.sum_records(rows, rng=np.random.default_rng(6)), rng=np.random.default_rng(7))
    total, _ = enc.decode_sum(y)
    err = total - rows.sum(axis=0)
    planned = enc.plan.local_stddev**2  # z^2 c^2 / min_survivors = 0.25
    assert planned == pytest.approx(0.25)
    se = planned * math.sqrt(2 / err.size)
    assert abs(err.var() - planned) <= 6 * se and abs(err.mean()) <= 6 * math.sqrt(planned / err.size)


def test_max_records_aligned_records_fit_the_ring() -> None:
    """Bit planning counts records, not silos: the worst-case aligned batch stays in range."""
    enc = encoder(max_inputs=5000, bits=24)
    rows = np.zeros((5000, 16))
    rows[:, 0] = 1.0  # all records equal, at the clip
    ints = enc.sum_records(rows, rng=np.random.default_rng(8))
    noise_room = 4 * math.sqrt(enc.plan.n_clients) * enc.plan.scaled_stddev
    assert np.max(np.abs(ints)) + noise_room < 2 ** (enc.bits - 1)
    # Planning for silos only would have scaled 5000/4 times larger and wrapped.
    silo_only = plan_ddp(mechanism="ddgauss", n_clients=4, min_survivors=3, dim=16, l2_clip=1.0,
                         noise_multiplier=1.0, bits=24)
    assert silo_only.scale * 5000 / 4 > 2 ** (enc.bits - 1)


def test_more_records_planned_means_a_smaller_scale() -> None:
    assert plan(max_inputs=10_000).scale < plan(max_inputs=100).scale < plan(max_inputs=None).scale


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda e: e.sum_records(np.zeros((201, 16))), "max_inputs"),
        (lambda e: e.sum_records(np.zeros((2, 8))), "pads to"),
        (lambda e: e.sum_records(np.zeros(16)), "pads to"),
        (lambda e: e.sum_records(np.full((2, 16), np.nan)), "NaN"),
        (lambda e: e.encode(np.full(16, 0.25)), "integer vector"),
        (lambda e: e.encode(np.full(16, 2.0**40)), "larger than max_records"),
        (lambda e: e.encode(np.zeros(15)), "length"),
        (lambda e: e.encode(np.zeros(16), weight=2), "weight"),
    ],
)
def test_bad_input_is_refused(make, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make(encoder())


def test_a_record_encoder_needs_a_record_plan_and_unit_weights() -> None:
    p = plan(max_inputs=None)
    with pytest.raises(ConfigError, match="max_inputs"):
        RecordDPEncoder(p, dim=16, rotation_seed=SEED)
    with pytest.raises(ConfigError, match="weight 1"):
        RecordDPEncoder(plan(), dim=16, rotation_seed=SEED, max_weight=3)
    with pytest.raises(ConfigError, match="max_inputs cannot be below n_clients"):
        plan(max_inputs=2)
    assert isinstance(encoder().for_round(bytes(16)), RecordDPEncoder)
    assert isinstance(encoder(), DistributedDPEncoder) and encoder().max_records == 200


def test_an_empty_batch_still_sends_a_noise_share() -> None:
    enc = encoder(dim=1024)
    ints = enc.sum_records(np.zeros((0, 1024)))
    assert not ints.any()
    total, _ = enc.decode_sum(enc.encode(ints))
    assert total.std() > 0.3  # local std 1/sqrt(3) ≈ 0.58


def test_records_near_the_float_max_clip_by_direction() -> None:
    enc = encoder(noise_multiplier=1e-3)
    big = float(np.finfo(np.float64).max)
    rows = np.zeros((2, 16))
    rows[0, :2] = [big, big]
    rows[1, 0] = -big
    ints = enc.sum_records(rows, rng=np.random.default_rng(0))
    assert enc.last_clipped == 2
    want = rotate(np.array([2**-0.5 - 1.0, 2**-0.5] + [0.0] * 14), SEED) * enc.plan.scale
    # each of the two records rounds every coordinate by less than one step
    assert float(np.linalg.norm(ints - want)) <= 2 * math.sqrt(enc.padded_dim)


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_half_precision_record_tensors_sum_as_their_float32_values(dtype_name: str) -> None:
    torch = pytest.importorskip("torch")
    enc = encoder()
    t = torch.linspace(-0.5, 0.5, 3 * 16, dtype=getattr(torch, dtype_name)).reshape(3, 16)
    got = enc.sum_records(t, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(got, enc.sum_records(t.float().numpy(), rng=np.random.default_rng(2)))


def test_an_overflowing_integer_vector_is_refused() -> None:
    enc = encoder()
    x = np.zeros(enc.padded_dim)
    x[0] = np.finfo(np.float64).max
    with pytest.raises(ConfigError):
        enc.encode(x)
