"""Statistical tests of the discrete Gaussian and Skellam samplers (OpenDP style).

Every test compares against the exact pmf with a fixed, generous threshold of
Z = 6 standard errors (χ²: df + 6·sqrt(2·df)), so a correct sampler fails
with probability around 1e-6 per check. Default sizes keep the suite fast;
``-m slow`` runs N >= 1.2e5 (OpenDP's size) and more.
"""

from __future__ import annotations

import decimal
import math
from fractions import Fraction

import numpy as np
import pytest

from secagg.dp import samplers
from secagg.dp.randomness import RandomWords
from secagg.dp.samplers import discrete_gaussian, discrete_laplace, skellam
from secagg.errors import ConfigError

Z = 6.0
SIGMA2S = [0.25, 1.0, 4.0, 1e4]
N_DEFAULT = 20_000
N_SLOW = 1_200_000


def dg_pmf(sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    """Support and exact (to float precision) pmf of N_Z(0, sigma2), truncated where mass < 1e-300."""
    half = int(math.ceil(40 * math.sqrt(sigma2))) + 10
    xs = np.arange(-half, half + 1)
    logw = -(xs.astype(np.float64) ** 2) / (2 * sigma2)
    w = np.exp(logw - logw.max())
    return xs, w / w.sum()


def moments(xs: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    m2 = float(np.sum(p * xs.astype(np.float64) ** 2))
    m4 = float(np.sum(p * xs.astype(np.float64) ** 4))
    return 0.0, m2, m4


def chi2_check(samples: np.ndarray, xs: np.ndarray, p: np.ndarray) -> None:
    """Binned χ² against the pmf; bins pooled so each expects >= 20; threshold df + Z sqrt(2 df)."""
    n = samples.size
    counts = np.zeros(xs.size)
    idx = samples - xs[0]
    assert idx.min() >= 0 and idx.max() < xs.size
    np.add.at(counts, idx, 1)
    expected = p * n
    obs_bins, exp_bins = [], []
    acc_o = acc_e = 0.0
    for o, e in zip(counts, expected):
        acc_o += o
        acc_e += e
        if acc_e >= 20:
            obs_bins.append(acc_o)
            exp_bins.append(acc_e)
            acc_o = acc_e = 0.0
    obs_bins[-1] += acc_o
    exp_bins[-1] += acc_e
    o, e = np.array(obs_bins), np.array(exp_bins)
    stat = float(np.sum((o - e) ** 2 / e))
    df = len(o) - 1
    assert stat <= df + Z * math.sqrt(2 * df), (stat, df)


def moment_checks(samples: np.ndarray, m2: float, m4: float) -> None:
    n = samples.size
    x = samples.astype(np.float64)
    assert abs(x.mean()) <= Z * math.sqrt(m2 / n)
    assert abs(np.mean(x * x) - m2) <= Z * math.sqrt((m4 - m2 * m2) / n)


def slope_checks(samples: np.ndarray, sigma2: float) -> None:
    """Log-ratio slope: ln(P(k+1)/P(k)) = -(2k+1)/(2 sigma2).

    For large sigma single integers are too rare, so neighbouring blocks of
    width w are compared, with the theoretical ratio from the exact pmf
    (w = 1 is exactly OpenDP's per-k test).
    """
    w = max(1, int(math.sqrt(sigma2) // 4))
    xs, p = dg_pmf(sigma2)
    tested = 0
    for j in range(-12, 12):
        lo_a, lo_b = j * w, (j + 1) * w
        a = int(np.count_nonzero((samples >= lo_a) & (samples < lo_a + w)))
        b = int(np.count_nonzero((samples >= lo_b) & (samples < lo_b + w)))
        if a < 200 or b < 200:
            continue
        pa = float(p[(xs >= lo_a) & (xs < lo_a + w)].sum())
        pb = float(p[(xs >= lo_b) & (xs < lo_b + w)].sum())
        if w == 1:
            assert math.isclose(math.log(pb / pa), -(2 * j + 1) / (2 * sigma2), rel_tol=1e-9, abs_tol=1e-12)
        se = math.sqrt(1 / a + 1 / b)
        assert abs(math.log(b / a) - math.log(pb / pa)) <= Z * se, j
        tested += 1
    assert tested >= 2


def tail_checks(samples: np.ndarray, xs: np.ndarray, p: np.ndarray, sigma2: float) -> None:
    n = samples.size
    for mult in (1.0, 2.0, 3.0):
        t = math.ceil(mult * math.sqrt(sigma2))
        q = float(p[np.abs(xs) >= t].sum())
        emp = float(np.mean(np.abs(samples) >= t))
        assert abs(emp - q) <= Z * math.sqrt(q * (1 - q) / n) + 1e-12, (t, emp, q)
    assert np.all(samples == samples.astype(np.int64))


def full_dg_check(sigma2: float, n: int, rng: np.random.Generator | None) -> None:
    samples = discrete_gaussian(math.sqrt(sigma2), n, rng=rng)
    assert samples.dtype == np.int64 and samples.shape == (n,)
    xs, p = dg_pmf(sigma2)
    _, m2, m4 = moments(xs, p)
    moment_checks(samples, m2, m4)
    chi2_check(samples, xs, p)
    slope_checks(samples, sigma2)
    tail_checks(samples, xs, p, sigma2)


@pytest.mark.parametrize("sigma2", SIGMA2S)
def test_discrete_gaussian_matches_exact_pmf(sigma2: float) -> None:
    full_dg_check(sigma2, N_DEFAULT, rng=None)  # the OS CSPRNG path


@pytest.mark.slow
@pytest.mark.parametrize("sigma2", SIGMA2S + [476.9**2])
def test_discrete_gaussian_matches_exact_pmf_large_n(sigma2: float) -> None:
    full_dg_check(sigma2, N_SLOW, rng=None)


def test_exact_fallback_path_alone_gives_the_same_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    # Make every decision "ambiguous": the float fast path decides nothing and
    # each comparison W < exp(-gamma) is settled by the exact enclosure.
    monkeypatch.setattr(samplers, "_AMBIGUITY", 2.0)
    calls = {"n": 0}
    real = samplers._LazyUniform.less_than_exp

    def counting(self: samplers._LazyUniform, gamma: Fraction) -> bool:
        calls["n"] += 1
        return real(self, gamma)

    monkeypatch.setattr(samplers._LazyUniform, "less_than_exp", counting)
    sigma2 = 2.25
    samples = discrete_gaussian(1.5, 3000, rng=np.random.default_rng(7))
    assert calls["n"] > 3000
    xs, p = dg_pmf(sigma2)
    _, m2, m4 = moments(xs, p)
    moment_checks(samples, m2, m4)
    chi2_check(samples, xs, p)


def _digits_of_exp_neg(gamma: Fraction, bits: int) -> int:
    """floor(exp(-gamma) * 2^bits), from a 120-digit decimal value (far beyond the bits used)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 120
        e = (-(decimal.Decimal(gamma.numerator) / decimal.Decimal(gamma.denominator))).exp()
        return int((e * (1 << bits)).to_integral_value(rounding=decimal.ROUND_FLOOR))


class _Scripted(RandomWords):
    def __init__(self, words: list[int]) -> None:
        super().__init__(np.random.default_rng(0))
        self._script = list(words)

    def words(self, n: int) -> np.ndarray:
        return np.array([self._script.pop(0) for _ in range(n)], dtype=np.uint64)


@pytest.mark.parametrize("gamma", [Fraction(1), Fraction(1, 3), Fraction(7, 2)])
def test_lazy_uniform_resolves_ties_with_more_bits(gamma: Fraction) -> None:
    prefix = _digits_of_exp_neg(gamma, 53)  # W's first 53 bits equal exp(-gamma)'s
    tie = _digits_of_exp_neg(gamma, 117) - (prefix << 64)  # the next 64 bits of exp(-gamma)
    assert samplers._LazyUniform(prefix, 53, _Scripted([tie - 1])).less_than_exp(gamma) is True
    assert samplers._LazyUniform(prefix, 53, _Scripted([tie + 1])).less_than_exp(gamma) is False
    nxt = _digits_of_exp_neg(gamma, 181) - (((prefix << 64) | tie) << 64)
    assert samplers._LazyUniform(prefix, 53, _Scripted([tie, nxt - 1])).less_than_exp(gamma) is True
    assert samplers._LazyUniform(prefix, 53, _Scripted([tie, nxt + 1])).less_than_exp(gamma) is False


def test_exp_enclosure_is_rigorous_and_tight() -> None:
    for gamma in [Fraction(0), Fraction(1, 10**9), Fraction(1), Fraction(12345, 7), Fraction(10**6, 3)]:
        lo, hi = samplers._exp_neg_interval(gamma, 40)
        with decimal.localcontext() as ctx:
            ctx.prec, ctx.Emin = 150, -(10**9)
            ref = Fraction((-(decimal.Decimal(gamma.numerator) / decimal.Decimal(gamma.denominator))).exp())
        slack = ref * Fraction(1, 10**140)  # the 150-digit reference's own error
        assert lo - slack <= ref <= hi + slack
        assert hi - lo <= ref * Fraction(1, 10**30)


def test_discrete_laplace_matches_pmf() -> None:
    t, n = 3, N_DEFAULT
    s = discrete_laplace(t, n, rng=np.random.default_rng(1))
    xs = np.arange(-200, 201)
    w = np.exp(-np.abs(xs) / t)
    chi2_check(s, xs, w / w.sum())


@pytest.mark.parametrize("n_shares", [2, 30])
def test_sum_of_shares_has_variance_n_sigma2(n_shares: int) -> None:
    sigma2, trials = 9.0, 20_000
    shares = discrete_gaussian(3.0, n_shares * trials).reshape(trials, n_shares)
    sums = shares.sum(axis=1).astype(np.float64)
    xs, p = dg_pmf(sigma2)
    _, m2, m4 = moments(xs, p)
    var_n = n_shares * m2
    # Var(S^2) for a sum of iid symmetric terms: n m4 + 3 n (n - 1) m2^2 - (n m2)^2.
    m4_sum = n_shares * m4 + 3 * n_shares * (n_shares - 1) * m2 * m2
    assert abs(np.mean(sums**2) - var_n) <= Z * math.sqrt((m4_sum - var_n**2) / trials)
    assert abs(sums.mean()) <= Z * math.sqrt(var_n / trials)


def skellam_pmf(variance: float) -> tuple[np.ndarray, np.ndarray]:
    stats = pytest.importorskip("scipy.stats")
    half = int(math.ceil(12 * math.sqrt(variance))) + 20
    xs = np.arange(-half, half + 1)
    p = stats.skellam.pmf(xs, variance / 2, variance / 2)
    return xs, p / p.sum()


@pytest.mark.parametrize("variance", [0.5, 4.0, 30.0, 1e4])
def test_skellam_matches_scipy_pmf(variance: float) -> None:
    s = skellam(variance, N_DEFAULT)
    assert s.dtype == np.int64
    xs, p = skellam_pmf(variance)
    _, m2, m4 = moments(xs, p)
    moment_checks(s, m2, m4)
    chi2_check(s, xs, p)


def test_sum_of_skellam_shares_is_skellam() -> None:
    n_shares, share_var, trials = 25, 12.0, 20_000
    sums = skellam(share_var, n_shares * trials, rng=np.random.default_rng(3)).reshape(trials, n_shares).sum(axis=1)
    xs, p = skellam_pmf(n_shares * share_var)
    chi2_check(sums, xs, p)


@pytest.mark.slow
@pytest.mark.parametrize("variance", [0.5, 4.0, 30.0, 1e4, 1e6])
def test_skellam_matches_scipy_pmf_large_n(variance: float) -> None:
    s = skellam(variance, N_SLOW)
    xs, p = skellam_pmf(variance)
    _, m2, m4 = moments(xs, p)
    moment_checks(s, m2, m4)
    chi2_check(s, xs, p)


@pytest.mark.parametrize("sampler", [lambda r: discrete_gaussian(10.0, 5000, rng=r), lambda r: skellam(100.0, 5000, rng=r)])
def test_noise_is_independent_across_calls_unless_seeded(sampler) -> None:
    a, b = sampler(None), sampler(None)
    assert not np.array_equal(a, b)
    corr = float(np.corrcoef(a, b)[0, 1])
    assert abs(corr) <= Z / math.sqrt(a.size)
    # Equal draws only with an explicitly seeded generator.
    assert np.array_equal(sampler(np.random.default_rng(5)), sampler(np.random.default_rng(5)))


def test_default_randomness_is_the_chacha_csprng() -> None:
    src = RandomWords()
    assert src.is_csprng
    assert not np.array_equal(src.words(8), RandomWords().words(8))
    assert not RandomWords(np.random.default_rng(0)).is_csprng


def test_uniform_below_is_unbiased() -> None:
    v = RandomWords().below(6, 60_000)
    counts = np.bincount(v, minlength=6)
    assert v.min() >= 0 and v.max() < 6
    stat = float(np.sum((counts - 10_000) ** 2 / 10_000))
    assert stat <= 5 + Z * math.sqrt(10)


@pytest.mark.parametrize(
    "call",
    [
        lambda: discrete_gaussian(0.0, 3),
        lambda: discrete_gaussian(float("nan"), 3),
        lambda: discrete_gaussian(2.0**41, 3),
        lambda: discrete_gaussian(1.0, -1),
        lambda: discrete_gaussian(1.0, 3, rng=42),
        lambda: skellam(0.0, 3),
        lambda: skellam(float("inf"), 3),
        lambda: discrete_laplace(0, 3),
    ],
)
def test_bad_arguments_raise_config_error(call) -> None:
    with pytest.raises(ConfigError):
        call()


def test_zero_size_is_empty() -> None:
    assert discrete_gaussian(1.0, 0).shape == (0,)
    assert skellam(1.0, 0).shape == (0,)
