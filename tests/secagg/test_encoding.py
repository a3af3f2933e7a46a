"""Tests for secagg.encoding: clipping, stochastic rounding, Z_{2^b} and the overflow proof."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from secagg.encoding import FixedPointEncoder, min_bits, plan_bits
from secagg.errors import ConfigError, IntegrityError, OverflowRiskError
from secagg.testing.strategies import encoders, update_vectors

EPS = 2.0**-52


class _AlwaysRoundUp:
    """Adversarial 'generator': every coin says round up (the worst case for overflow)."""

    def random(self, size: int) -> np.ndarray:
        return np.zeros(size)


class _NeverRoundUp:
    def random(self, size: int) -> np.ndarray:
        return np.ones(size)


def _modular_sum(enc: FixedPointEncoder, encodings: list[np.ndarray]) -> np.ndarray:
    total = np.zeros(encodings[0].shape, dtype=np.uint64)
    for e in encodings:
        total += e.astype(np.uint64)  # uint64 addition wraps mod 2**64, a multiple of 2**bits
    return total


def _times_mod(enc: FixedPointEncoder, encoding: np.ndarray, n: int) -> np.ndarray:
    """n copies of one encoding summed mod 2**bits, computed exactly with Python ints."""
    return np.array([(int(v) * n) % enc.modulus for v in encoding], dtype=np.uint64)


@given(
    max_clients=st.integers(1, 10**6),
    clip=st.floats(1e-3, 1e3),
    precision=st.floats(1e-7, 1.0),
    max_weight=st.integers(1, 10**4),
    sign=st.sampled_from([1.0, -1.0]),
)
def test_plan_bits_never_admits_an_overflow(
    max_clients: int, clip: float, precision: float, max_weight: int, sign: float
) -> None:
    try:
        bits = plan_bits(max_clients, clip, precision, max_weight=max_weight)
    except OverflowRiskError:
        assume(False)
    enc = FixedPointEncoder.for_precision(clip, precision, max_clients, max_weight=max_weight)
    assert enc.bits == bits and enc.scale == 1.0 / precision
    limit = 2 ** (bits - 1) - 1
    # Worst case: every client at +clip (or -clip) with the largest weight, rounding up.
    # float32 inputs too: float32(clip) may round above clip.
    near = [np.float32(clip), np.nextafter(np.float32(clip), np.float32(np.inf))]
    inputs = [np.full(3, sign * clip), np.full(3, sign * 10 * clip)] + [np.full(3, sign * v) for v in near]
    for rng, x in itertools.product((_AlwaysRoundUp(), _NeverRoundUp()), inputs):
        q = enc.quantize(x, max_weight, rng)  # type: ignore[arg-type]
        assert max_clients * int(np.abs(q).max()) <= limit
        total, weight_sum = enc.decode_sum(_times_mod(enc, enc.to_modular(q), max_clients))
        assert weight_sum == max_clients * max_weight
        assert np.array_equal(total, (q[:-1] * max_clients).astype(np.float64) / enc.scale)
        assert np.all(sign * total >= 0)  # no wrap-around flipped the sign
    # Minimality: one bit fewer could wrap in that worst case.
    worst = max(math.ceil(clip * (enc.scale * max_weight)), max_weight)
    assert max_clients * worst > 2 ** (bits - 2) - 1


@given(enc=encoders(max_clients=st.integers(1, 20), max_weight=st.integers(1, 50)), data=st.data())
def test_encode_sum_decode_is_exact_and_within_bound(enc: FixedPointEncoder, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, enc.max_clients))
    d = data.draw(st.integers(1, 16))
    xs = [data.draw(update_vectors(dim=d, max_abs=2 * enc.clip, dtype=np.float64)) for _ in range(n)]
    ws = [data.draw(st.integers(0, enc.max_weight)) for _ in range(n)]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    qs = [enc.quantize(x, w, rng) for x, w in zip(xs, ws)]
    encodings = [enc.to_modular(q) for q in qs]
    assert all(e.dtype == enc.dtype and int(e.max()) < enc.modulus for e in encodings)
    y = _modular_sum(enc, encodings)
    exact = np.sum(qs, axis=0)  # no int64 overflow: |sum| <= max_clients * M < 2**63
    assert np.array_equal(enc.from_modular(y), exact)
    total, weight_sum = enc.decode_sum(y)
    assert weight_sum == sum(ws)
    assert np.array_equal(total, exact[:-1].astype(np.float64) / enc.scale)
    # Within n * precision of the true weighted sum of clipped vectors.
    if enc.norm == "linf":
        clipped = [np.clip(x, -enc.clip, enc.clip) for x in xs]
    else:
        clipped = [x * min(1.0, enc.clip / n2) if (n2 := np.linalg.norm(x)) > 0 else x for x in xs]
    true = np.sum([w * c for w, c in zip(ws, clipped)], axis=0)
    slack = n * enc.precision + 8 * n * enc.clip * enc.max_weight * EPS + np.abs(true) * 4 * EPS
    assert np.all(np.abs(total - true) <= slack)


@given(enc=encoders(), data=st.data())
def test_from_modular_inverts_to_modular(enc: FixedPointEncoder, data: st.DataObject) -> None:
    half = 2 ** (enc.bits - 1)
    ints = np.array(data.draw(st.lists(st.integers(-half, half - 1), min_size=1, max_size=20)), dtype=np.int64)
    assert np.array_equal(enc.from_modular(enc.to_modular(ints)), ints)


def test_to_modular_refuses_values_that_would_wrap() -> None:
    enc = FixedPointEncoder(1.0, 8, 1)
    with pytest.raises(OverflowRiskError):
        enc.to_modular(np.array([128]))
    with pytest.raises(OverflowRiskError):
        enc.to_modular(np.array([-129]))
    assert list(enc.to_modular(np.array([-128, 127, -1]))) == [128, 127, 255]
    with pytest.raises(ConfigError):
        enc.to_modular(np.array([0.5]))


def test_stochastic_rounding_is_unbiased() -> None:
    enc = FixedPointEncoder(10.0, 32, 1, scale=1.0)
    rng = np.random.default_rng(0)
    samples = 200_000
    q = enc.quantize(np.full(samples, 2.3), 1, rng)[:-1]
    assert set(np.unique(q)) == {2, 3}
    sigma = math.sqrt(0.3 * 0.7 / samples)
    assert abs(q.mean() - 2.3) < 5 * sigma
    # Negative values too: floor is towards -inf.
    q = enc.quantize(np.full(samples, -2.3), 1, rng)[:-1]
    assert set(np.unique(q)) == {-3, -2}
    assert abs(q.mean() + 2.3) < 5 * sigma


def test_default_rng_is_fresh_each_call() -> None:
    enc = FixedPointEncoder(1.0, 32, 10, scale=2.0)
    x = np.full(1000, 0.25)  # scaled 0.5: a fair coin per coordinate
    assert not np.array_equal(enc.encode(x), enc.encode(x))


@pytest.mark.parametrize("weight", [-1, 4, 2.0, float("nan"), True, np.float64(1.0), "1"])
def test_bad_weight_is_config_error_never_clipped(weight: object) -> None:
    enc = FixedPointEncoder(1.0, 32, 10, max_weight=3)
    with pytest.raises(ConfigError):
        enc.encode(np.zeros(3), weight=weight)  # type: ignore[arg-type]


def test_numpy_integer_weight_and_float32_input_are_accepted() -> None:
    enc = FixedPointEncoder(1.0, 32, 10, max_weight=3)
    out = enc.encode(np.array([0.5, -0.5], dtype=np.float32), weight=np.int64(3))
    assert out.dtype == np.uint32 and out.shape == (3,) and out[-1] == 3


@pytest.mark.parametrize(
    "x", [np.array([1.0, np.nan]), np.array([np.inf]), np.zeros((2, 2)), np.array([1 + 1j]), np.array(["a"])]
)
def test_bad_vectors_are_config_errors(x: np.ndarray) -> None:
    enc = FixedPointEncoder(1.0, 32, 10)
    with pytest.raises(ConfigError):
        enc.encode(x)


def test_linf_clipping_is_counted() -> None:
    enc = FixedPointEncoder(1.0, 32, 10)
    x = np.array([0.5, 2.0, -3.0, 1.0])
    assert enc.clip_count(x) == 2
    total, _ = enc.decode_sum(enc.encode(x, rng=np.random.default_rng(1)))
    assert enc.last_clipped == 2
    assert np.all(np.abs(total - [0.5, 1.0, -1.0, 1.0]) <= enc.precision)


def test_l2_clipping_rescales_and_is_counted() -> None:
    enc = FixedPointEncoder(1.0, 32, 10, norm="l2")
    x = np.array([3.0, 4.0])
    assert enc.clip_count(x) == 1 and enc.clip_count(x / 10) == 0
    total, _ = enc.decode_sum(enc.encode(x, rng=np.random.default_rng(1)))
    assert enc.last_clipped == 1
    assert np.allclose(total, [0.6, 0.8], atol=2 * enc.precision)
    enc.encode(x / 10)
    assert enc.last_clipped == 0


def test_weighted_mean() -> None:
    enc = FixedPointEncoder(10.0, 40, 4, max_weight=100)
    rng = np.random.default_rng(2)
    xs, ws = [np.array([1.0, 2.0]), np.array([3.0, -2.0])], [10, 30]
    y = _modular_sum(enc, [enc.encode(x, weight=w, rng=rng) for x, w in zip(xs, ws)])
    assert np.allclose(enc.decode_mean(y), [2.5, -1.0], atol=1e-6)
    with pytest.raises(ConfigError):
        enc.decode_mean(enc.encode(np.ones(2), weight=0))


def test_decode_rejects_impossible_weight_sum() -> None:
    enc = FixedPointEncoder(1.0, 16, 4, max_weight=2)
    with pytest.raises(IntegrityError):
        enc.decode_sum(enc.to_modular(np.array([0, -1])))
    with pytest.raises(IntegrityError):
        enc.decode_sum(enc.to_modular(np.array([0, 9])))


def test_properties_and_derived_scale_is_largest_safe() -> None:
    enc = FixedPointEncoder(2.0, 32, 100, max_weight=5)
    assert enc.modulus == 2**32 and enc.dtype == np.uint32 and enc.bits == 32
    assert enc.precision == 1.0 / enc.scale
    limit = 2**31 - 1
    assert 100 * math.ceil(2.0 * (enc.scale * 5)) <= limit
    bigger = float(np.nextafter(enc.scale, np.inf)) * (1 + 1e-9)
    assert 100 * math.ceil(2.0 * (bigger * 5)) > limit
    assert FixedPointEncoder(1.0, 33, 1).dtype == np.uint64
    with pytest.raises(OverflowRiskError):
        FixedPointEncoder(2.0, 32, 100, max_weight=5, scale=enc.scale * 1.01)


@pytest.mark.parametrize(
    "args",
    [(0, 1.0, 0.1), (10, 0.0, 0.1), (10, 1.0, 0.0), (10, float("nan"), 0.1), (10, 1.0, float("inf")), (10, -1.0, 0.1), (1.5, 1.0, 0.1)],
)
def test_plan_bits_rejects_bad_inputs(args: tuple) -> None:
    with pytest.raises(ConfigError):
        plan_bits(*args)


def test_plan_bits_raises_when_64_bits_are_not_enough() -> None:
    with pytest.raises(OverflowRiskError):
        plan_bits(10**6, 1e6, 1e-9, max_weight=10**4)
    assert plan_bits(1, 1.0, 1.0) == 2  # |q| <= 1 fits in 2 bits


def test_too_few_bits_is_overflow_risk() -> None:
    with pytest.raises(OverflowRiskError):
        FixedPointEncoder(1.0, 8, 1000)  # weight sum alone needs 11 bits
    with pytest.raises(OverflowRiskError):
        FixedPointEncoder(100.0, 12, 1000)  # scale would fall below 1
    with pytest.raises(ConfigError):
        FixedPointEncoder(1.0, 65, 1)
    with pytest.raises(ConfigError):
        FixedPointEncoder(1.0, 32, 1, norm="l1")


@given(max_clients=st.integers(1, 10**5), clip=st.floats(1e-3, 1e3), max_weight=st.integers(1, 10**4))
def test_min_bits_is_the_smallest_valid_width(max_clients: int, clip: float, max_weight: int) -> None:
    bits = min_bits(max_clients, clip, max_weight=max_weight)
    FixedPointEncoder(clip, bits, max_clients, max_weight=max_weight)
    if bits > 2:
        with pytest.raises(OverflowRiskError):
            FixedPointEncoder(clip, bits - 1, max_clients, max_weight=max_weight)


@given(enc=encoders(max_clients=st.integers(1, 50)), data=st.data())
def test_quantize_matches_the_documented_definition(enc: FixedPointEncoder, data: st.DataObject) -> None:
    """Steps 1-3 of the module docstring, written out plainly, give the same integers."""
    x = data.draw(update_vectors(dim=st.integers(1, 20), max_abs=3 * enc.clip, dtype=np.float32))
    w = data.draw(st.integers(0, enc.max_weight))
    seed = data.draw(st.integers(0, 2**32))
    got = enc.quantize(x, w, np.random.default_rng(seed))
    x64 = x.astype(np.float64)
    if enc.norm == "linf":
        clipped = np.clip(x64, -enc.clip, enc.clip)
    else:
        norm = np.linalg.norm(x64)
        clipped = np.clip(x64 * (enc.clip / norm), -enc.clip, enc.clip) if norm > enc.clip else x64
    v = clipped * (enc.scale * float(w))
    u = np.random.default_rng(seed).random(x.size)
    expected = np.floor(v) + (u < v - np.floor(v))
    assert np.array_equal(got[:-1], expected.astype(np.int64)) and got[-1] == w
    assert enc.last_clipped == enc.clip_count(x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_encoding_in_pieces_equals_one_pass_over_the_whole_vector(norm: str) -> None:
    """encode()/quantize() round piece by piece (bounded memory); a seeded rng gives the one-pass result."""
    enc = FixedPointEncoder(1.0, 32, 10, max_weight=7, norm=norm)
    d = 3 * (1 << 16) + 5  # several pieces and a ragged last one
    x = np.random.default_rng(1).normal(size=d).astype(np.float32) * (0.5 if norm == "linf" else 0.003)
    x64 = x.astype(np.float64)
    if norm == "linf":
        clipped = np.clip(x64, -1.0, 1.0)
    else:
        n = np.linalg.norm(x64)
        clipped = np.clip(x64 * (1.0 / n), -1.0, 1.0) if n > 1.0 else x64
    v = clipped * (enc.scale * 5.0)
    u = np.random.default_rng(9).random(d)
    expected = (np.floor(v) + (u < v - np.floor(v))).astype(np.int64)
    assert np.array_equal(enc.quantize(x, 5, np.random.default_rng(9))[:-1], expected)
    assert np.array_equal(enc.encode(x, weight=5, rng=np.random.default_rng(9)),
                          enc.to_modular(np.append(expected, 5)))


# -- extreme magnitudes, shared rules, the Encoder protocol -------------------

FLOAT_MAX = float(np.finfo(np.float64).max)
_EXTREMES = st.sampled_from([FLOAT_MAX, -FLOAT_MAX, FLOAT_MAX / 2, 1e308, -1e300, 1e200, 5e-324, 0.0])
_ANY_FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64) | _EXTREMES


def _l2_reference(x: np.ndarray, clip: float) -> np.ndarray:
    """x clipped to L2 norm clip: the decision is exact (Fractions), the rescale through the peak."""
    from fractions import Fraction

    squares = sum(Fraction(float(v)) ** 2 for v in x)
    if squares <= Fraction(clip) ** 2:
        return x.astype(np.float64)
    unit = x / np.max(np.abs(x))
    return unit * (clip / math.sqrt(float(np.dot(unit, unit))))


@given(
    x=st.lists(_ANY_FINITE, min_size=1, max_size=12).map(np.array),
    clip=st.sampled_from([1e-3, 1.0, 4.0, 1e6]),
    bits=st.sampled_from([32, 48]),
    seed=st.integers(0, 2**32 - 1),
)
def test_l2_clipping_of_any_finite_vector_decodes_within_one_step(
    x: np.ndarray, clip: float, bits: int, seed: int
) -> None:
    """Values up to the float max clip along their direction: the norm may overflow, the result may not."""
    enc = FixedPointEncoder(clip, bits, 1, norm="l2")
    total, weight = enc.decode_sum(enc.encode(x, rng=np.random.default_rng(seed)))
    assert weight == 1
    want = _l2_reference(x, clip)
    assert np.all(np.abs(total - want) <= enc.precision + 1e-9 * clip)
    assert np.array_equal(enc.quantize(x, rng=np.random.default_rng(seed))[:-1], enc.from_modular(
        enc.encode(x, rng=np.random.default_rng(seed)))[:-1])


def test_l2_clipping_near_the_float_max_keeps_the_direction() -> None:
    enc = FixedPointEncoder(1.0, 32, 10, norm="l2")
    total, _ = enc.decode_sum(enc.encode(np.array([1.7e308, 1.7e308, 0.0]), rng=np.random.default_rng(0)))
    np.testing.assert_allclose(total, [2**-0.5, 2**-0.5, 0.0], atol=enc.precision)
    assert enc.last_clipped == 1 and enc.clip_count(np.array([1.7e308, -1.7e308])) == 1


@given(x=st.lists(_ANY_FINITE, min_size=1, max_size=12).map(np.array), seed=st.integers(0, 2**32 - 1))
def test_linf_clipping_of_any_finite_vector_decodes_within_one_step(x: np.ndarray, seed: int) -> None:
    enc = FixedPointEncoder(2.0, 32, 3, norm="linf")
    total, _ = enc.decode_sum(enc.encode(x, rng=np.random.default_rng(seed)))
    assert np.all(np.abs(total - np.clip(x, -2.0, 2.0)) <= enc.precision)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinity_are_refused_next_to_extreme_values(norm: str, bad: float) -> None:
    enc = FixedPointEncoder(1.0, 32, 2, norm=norm)
    with pytest.raises(ConfigError, match="NaN or infinity"):
        enc.encode(np.array([FLOAT_MAX, bad, -FLOAT_MAX]))


def test_unconvertible_input_is_a_config_error() -> None:
    enc = FixedPointEncoder(1.0, 32, 2)
    for x in ([[1.0], [1.0, 2.0]], ["a", "b"], np.array([1 + 2j]), np.array([True])):
        with pytest.raises(ConfigError):
            enc.encode(x)  # type: ignore[arg-type]


def test_word_dtype_is_the_one_bits_rule() -> None:
    from secagg import masking
    from secagg.dp import encoder as dp_encoder
    from secagg.encoding import word_dtype

    assert [word_dtype(b) for b in (1, 16, 32, 33, 64)] == [np.uint32] * 3 + [np.uint64] * 2
    assert masking.word_dtype is word_dtype and dp_encoder.word_dtype is word_dtype
    assert FixedPointEncoder(1.0, 32, 2).dtype is np.uint32 and FixedPointEncoder(1.0, 33, 2).dtype is np.uint64


def test_encoders_satisfy_the_encoder_protocols() -> None:
    import os

    from secagg.dp import DistributedDPEncoder
    from secagg.encoding import Encoder, RingEncoder

    fixed = FixedPointEncoder(1.0, 32, 4)
    dp = DistributedDPEncoder.create(dim=8, n_clients=4, l2_clip=1.0, noise_multiplier=1.0, bits=20,
                                     rotation_seed=os.urandom(16))
    for enc in (fixed, dp):
        assert isinstance(enc, Encoder) and isinstance(enc, RingEncoder)
    assert not isinstance(object(), Encoder)
