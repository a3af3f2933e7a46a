"""Tight accountant: TV lemmas against exact numbers, independent known answers, colluders, the ledger."""

from __future__ import annotations

import math

import numpy as np
import pytest

from secagg.dp import PrivacyBudget, calibrate_noise_multiplier, ddgauss_epsilon, gaussian_epsilon, plan_ddp, skellam_epsilon
from secagg.dp.pld import ddgauss_sum_tv, release_tv, rounded_gaussian_tv, skellam_tv

pytest.importorskip("dp_accounting")
stats = pytest.importorskip("scipy.stats")
BETA = math.exp(-0.5)
# Record-level Fed-Heart-Disease: 4 silos, 740 records, logistic regression (14 -> 16 coordinates).
TARGET = dict(steps=100, sampling_rate=0.05, min_survivors=4, n_clients=4, dim=14, l2_clip=1.0, bits=32,
              max_inputs=740)


def _dg(var: float, k: int) -> np.ndarray:
    w = np.exp(-np.arange(-k, k + 1) ** 2 / (2 * var))
    return w / w.sum()


@pytest.mark.parametrize("s", [0.7, 1.0, 2.0, 5.0])
def test_rounded_gaussian_lemma_bounds_the_exact_distance(s: float) -> None:
    k = int(40 * s) + 5
    x = np.arange(-k, k + 1)
    rounded = stats.norm.cdf((x + 0.5) / s) - stats.norm.cdf((x - 0.5) / s)
    assert 0.5 * np.abs(_dg(s * s, k) - rounded).sum() <= rounded_gaussian_tv(s)


@pytest.mark.parametrize("sigma,m", [(0.8, 3), (1.0, 4), (1.0, 10)])
def test_sum_of_discrete_gaussians_bound_covers_the_exact_distance(sigma: float, m: int) -> None:
    k = int(40 * sigma * math.sqrt(m)) + 5
    p = _dg(sigma * sigma, k)
    q = p
    for _ in range(m - 1):
        q = np.convolve(q, p)
    exact = 0.5 * np.abs(q - _dg(m * sigma * sigma, (len(q) - 1) // 2)).sum()
    assert exact <= ddgauss_sum_tv(sigma, m) < 1


@pytest.mark.parametrize("mu", [25.0, 100.0])
def test_skellam_bound_covers_the_exact_distance(mu: float) -> None:
    k = int(40 * math.sqrt(mu)) + 5
    x = np.arange(-k, k + 1)
    exact = 0.5 * np.abs(stats.skellam.pmf(x, mu / 2, mu / 2) - _dg(mu, k)).sum()
    assert exact <= skellam_tv(mu) < 1


def test_target_point_matches_dp_accounting_and_beats_opacus() -> None:
    from opacus.accountants.utils import get_noise_multiplier

    z = calibrate_noise_multiplier(1.0, 1e-5, **TARGET)
    z_rdp = calibrate_noise_multiplier(1.0, 1e-5, **TARGET, accountant="rdp")
    z_gauss = calibrate_noise_multiplier(1.0, 1e-5, steps=100, sampling_rate=0.05, min_survivors=4,
                                         mechanism="gaussian")
    z_opacus = get_noise_multiplier(target_epsilon=1.0, target_delta=1e-5, sample_rate=0.05, steps=100,
                                    accountant="rdp", epsilon_tolerance=0.001)
    assert z <= 2.3 and z < z_opacus < z_rdp
    assert z >= z_gauss * (1 - 1e-3)  # never less noise than the continuous Gaussian needs


@pytest.mark.parametrize("mechanism", ["ddgauss", "skellam"])
@pytest.mark.parametrize("z,q,steps,bits", [(1.0, 0.01, 1000, 32), (2.0, 0.05, 100, 32), (0.8, 0.1, 50, 24),
                                            (1.0, 0.01, 1000, 16)])
def test_tight_epsilon_never_below_continuous_gaussian_pld(mechanism: str, z: float, q: float, steps: int,
                                                           bits: int) -> None:
    fn = ddgauss_epsilon if mechanism == "ddgauss" else skellam_epsilon
    kw = dict(n_clients=20, sampling_rate=q, steps=steps, delta=1e-5, dim=2**10, l2_clip=1.0,
              noise_multiplier=z, beta=BETA, k=4, bits=bits)
    raw = fn(**kw, pld_floor=False)
    rdp = fn(**kw, pld_floor=False, accountant="rdp")
    assert gaussian_epsilon(noise_multiplier=z, sampling_rate=q, steps=steps, delta=1e-5) <= raw <= rdp


def test_opacus_and_dp_accounting_known_answer_at_32_bits() -> None:
    # Opacus tests/accountants_test.py: sigma = 1.5, q = 0.04, 2250 steps, delta = 1e-5 -> RDP 7.3291;
    # dp-accounting's PLD for the same Gaussian: 6.7688. 32 bits leave no room between the two.
    eps = ddgauss_epsilon(n_clients=10, sampling_rate=0.04, steps=2250, delta=1e-5, dim=64, l2_clip=1.0,
                          noise_multiplier=1.5, beta=BETA, k=4, bits=32, pld_floor=False)
    assert 6.7688 - 1e-3 <= eps <= 6.7688 * 1.002 < 7.3291


def test_dropouts_raise_epsilon_above_the_no_dropout_value() -> None:
    # z = 1 calibrated for 100 clients; only 80 shares reach the sum (20 % dropout).
    kw = dict(n_clients=100, sampling_rate=0.01, steps=1000, delta=1e-5, dim=2**16, l2_clip=1.0,
              noise_multiplier=1.0, beta=BETA, k=4)
    for bits, bar in ((32, 2.3), (16, 3.0)):  # tight route at 32 bits; RDP takes over at 16 bits
        full = ddgauss_epsilon(**kw, bits=bits)
        naive = ddgauss_epsilon(**kw, bits=bits, n_shares=80)
        assert full < bar <= naive, (bits, full, naive)


def test_colluders_shares_do_not_count() -> None:
    common = dict(mechanism="ddgauss", n_clients=10, dim=64, l2_clip=1.0, noise_multiplier=1.0, bits=32)
    with_corrupt = plan_ddp(**common, min_survivors=8, max_corrupt=3)
    honest_only = plan_ddp(**common, min_survivors=5)
    assert with_corrupt.local_stddev == pytest.approx(honest_only.local_stddev)
    kw = dict(n_clients=10, sampling_rate=0.1, steps=50, delta=1e-5, dim=64, l2_clip=1.0, noise_multiplier=1.0,
              beta=BETA, k=4, bits=32)
    assert ddgauss_epsilon(**kw, min_survivors=8, max_corrupt=3, n_shares=8) == pytest.approx(
        ddgauss_epsilon(**kw, min_survivors=5, n_shares=5), rel=1e-9)
    z = calibrate_noise_multiplier(2.0, 1e-5, steps=50, sampling_rate=0.1, min_survivors=8, n_clients=10, dim=64,
                                   bits=32, max_corrupt=3)
    assert ddgauss_epsilon(**{**kw, "noise_multiplier": z}, min_survivors=8, max_corrupt=3, n_shares=8) <= 2.0


def test_coupling_term_is_negligible_at_32_bits_and_disables_the_tight_route_at_16() -> None:
    wide = plan_ddp(mechanism="ddgauss", n_clients=4, dim=14, l2_clip=1.0, noise_multiplier=2.0, bits=32,
                    max_inputs=740)
    narrow = plan_ddp(mechanism="ddgauss", n_clients=100, dim=2**16, l2_clip=1.0, noise_multiplier=1.0, bits=16)
    assert 100 * release_tv(wide, 4) < 1e-9
    assert 1000 * release_tv(narrow, 100) > 1e-6


def test_ledger_composes_to_the_calibrated_target() -> None:
    z = calibrate_noise_multiplier(1.0, 1e-5, **TARGET)
    plan = plan_ddp(mechanism="ddgauss", n_clients=4, min_survivors=4, dim=14, l2_clip=1.0, noise_multiplier=z,
                    bits=32, max_inputs=740)
    budget = PrivacyBudget(1.0, 1e-5)
    for _ in range(100):
        budget.check_round(plan, n_shares=4, sampling_rate=0.05)
        record = budget.spend(plan, n_shares=4, sampling_rate=0.05)
    assert 0.99 < record.epsilon_total <= 1.0
    rdp_budget = PrivacyBudget(100.0, 1e-5, accountant="rdp")
    for _ in range(100):
        rdp_record = rdp_budget.spend(plan, n_shares=4, sampling_rate=0.05)
    assert rdp_record.epsilon_total > 1.5 * record.epsilon_total  # the generic RDP bound is far looser here
