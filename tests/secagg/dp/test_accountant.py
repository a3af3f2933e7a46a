"""Accountant: known answers, the dropout regression, guards and the PLD floor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from secagg.dp import (
    OPACUS_RDP_ORDERS,
    RDP_ORDERS,
    calibrate_noise_multiplier,
    ddgauss_epsilon,
    gaussian_epsilon,
    plan_ddp,
    rdp_to_epsilon,
    skellam_epsilon,
)
from secagg.dp.accountant import subsampled_rdp
from secagg.errors import ConfigError
from tests.vectors import load

pytest.importorskip("dp_accounting")
VECTORS = load("dp_known_answers")
BETA = math.exp(-0.5)
CONFIG_A = dict(n_clients=100, sampling_rate=0.01, steps=1000, delta=1e-5, dim=2**16, l2_clip=1.0,
                noise_multiplier=1.0, beta=BETA, k=4)


@pytest.mark.parametrize("case", VECTORS["gaussian"], ids=lambda c: c["name"])
def test_gaussian_known_answers(case: dict) -> None:
    orders = {"opacus": OPACUS_RDP_ORDERS, "dp_accounting": None, None: None}[case["orders"]]
    eps = gaussian_epsilon(noise_multiplier=case["noise_multiplier"], sampling_rate=case["sampling_rate"],
                           steps=case["steps"], delta=case["delta"], accountant=case["accountant"], orders=orders)
    assert abs(eps - case["epsilon"]) <= case["abs_tol"]


@pytest.mark.parametrize("case", VECTORS["distributed"], ids=lambda c: c["name"])
@pytest.mark.parametrize("pld_floor", [False, True])
def test_distributed_known_answers_match_the_authors(case: dict, pld_floor: bool) -> None:
    fn = ddgauss_epsilon if case["mechanism"] == "ddgauss" else skellam_epsilon
    keys = ("n_clients", "sampling_rate", "steps", "delta", "dim", "l2_clip", "noise_multiplier", "beta", "k", "bits")
    eps = fn(**{k: case[k] for k in keys}, pld_floor=pld_floor)
    assert abs(eps - case["epsilon"]) <= case["abs_tol"]


def test_naive_calibration_with_dropouts_loses_the_target() -> None:
    reg = VECTORS["dropout_regression"]
    survivors = round(reg["n_clients"] * (1 - reg["dropout_rate"]))
    # Noise calibrated for all 100 clients, but only 80 shares reach the sum. The bar must sit above what
    # 100 shares give under the same accountant, or ignoring dropouts would pass too.
    full = ddgauss_epsilon(**CONFIG_A, bits=16)  # 16 bits: the RDP bound (2.4515) is what gets reported
    naive = ddgauss_epsilon(**CONFIG_A, bits=16, n_shares=survivors)
    assert full == pytest.approx(2.4515, abs=1e-4) and naive >= 3.0 > full
    pld_full = gaussian_epsilon(noise_multiplier=1.0, sampling_rate=0.01, steps=1000, delta=1e-5)
    pld_naive = gaussian_epsilon(noise_multiplier=math.sqrt(survivors / reg["n_clients"]), sampling_rate=0.01,
                                 steps=1000, delta=1e-5)
    assert pld_full == pytest.approx(reg["pld_epsilon_no_dropout"], abs=1e-4)
    assert pld_naive >= reg["naive_epsilon_at_least"] > pld_full


def test_dropout_aware_calibration_keeps_the_target() -> None:
    target = ddgauss_epsilon(**CONFIG_A, bits=16)  # what 100 full shares give at z = 1
    z = calibrate_noise_multiplier(target, 1e-5, steps=1000, sampling_rate=0.01, min_survivors=80,
                                   n_clients=100, dim=2**16, bits=16, l2_clip=1.0, beta=BETA, k=4)
    common = {**CONFIG_A, "noise_multiplier": z, "min_survivors": 80, "bits": 16}
    assert ddgauss_epsilon(**common, n_shares=80) <= target
    assert ddgauss_epsilon(**common, n_shares=100) <= target
    # Tight: a little less noise would miss the target.
    assert ddgauss_epsilon(**{**common, "noise_multiplier": z * 0.99}, n_shares=80) > target


@pytest.mark.parametrize("mechanism", ["ddgauss", "skellam"])
@pytest.mark.parametrize("z,q,steps", [(0.8, 0.01, 500), (2.0, 0.1, 50)])
def test_epsilon_never_below_continuous_gaussian_pld(mechanism: str, z: float, q: float, steps: int) -> None:
    fn = ddgauss_epsilon if mechanism == "ddgauss" else skellam_epsilon
    kw = dict(n_clients=50, sampling_rate=q, steps=steps, delta=1e-5, dim=2**12, l2_clip=1.0,
              noise_multiplier=z, beta=BETA, k=4, bits=18)
    raw = fn(**kw, pld_floor=False)
    pld = gaussian_epsilon(noise_multiplier=z, sampling_rate=q, steps=steps, delta=1e-5)
    assert raw >= pld


@pytest.mark.slow
@pytest.mark.parametrize("mechanism", ["ddgauss", "skellam"])
@pytest.mark.parametrize("z", [0.6, 1.0, 3.0])
@pytest.mark.parametrize("q,steps", [(0.001, 10000), (0.05, 200), (1.0, 10)])
@pytest.mark.parametrize("bits", [14, 20])
def test_epsilon_never_below_continuous_gaussian_pld_grid(mechanism: str, z: float, q: float, steps: int, bits: int) -> None:
    fn = ddgauss_epsilon if mechanism == "ddgauss" else skellam_epsilon
    kw = dict(n_clients=100, sampling_rate=q, steps=steps, delta=1e-5, dim=2**14, l2_clip=1.0,
              noise_multiplier=z, beta=BETA, k=4, bits=bits)
    try:
        raw = fn(**kw, pld_floor=False)
    except ConfigError:
        return  # guard refused the configuration: nothing is reported
    assert raw >= gaussian_epsilon(noise_multiplier=z, sampling_rate=q, steps=steps, delta=1e-5)


def test_rdp_conversion_matches_dp_accounting() -> None:
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    rng = np.random.default_rng(0)
    for _ in range(20):
        rdp = np.sort(rng.uniform(0, 5, len(RDP_ORDERS)))
        ours = rdp_to_epsilon(RDP_ORDERS, rdp, 1e-5)
        ref = compute_epsilon(RDP_ORDERS, rdp, 1e-5)
        assert ours[0] == pytest.approx(ref[0], rel=1e-12) and ours[1] == ref[1]


def test_full_participation_is_not_amplified() -> None:
    curve = lambda a: 0.5 * a.astype(float)
    assert np.allclose(subsampled_rdp(curve, 1.0, RDP_ORDERS), 0.5 * np.array(RDP_ORDERS))
    assert np.all(subsampled_rdp(curve, 0.1, RDP_ORDERS) <= 0.5 * np.array(RDP_ORDERS))


def test_guards_refuse_unsafe_configurations() -> None:
    # Tiny noise next to a large signal range: the scale leaves ~1 integer of noise per share.
    with pytest.raises(ConfigError, match="tau"):
        plan_ddp(mechanism="ddgauss", n_clients=1000, dim=16, l2_clip=1.0, noise_multiplier=0.05, bits=20, k=4)
    with pytest.raises(ConfigError, match="1/2"):
        plan_ddp(mechanism="ddgauss", n_clients=1000, dim=16, l2_clip=1.0, noise_multiplier=0.02, bits=20, k=4)
    with pytest.raises(ConfigError, match="bit width"):
        plan_ddp(mechanism="ddgauss", n_clients=1000, dim=16, l2_clip=1.0, noise_multiplier=1.0, bits=6, k=4)
    with pytest.raises(ConfigError, match="wrap probability"):
        plan_ddp(mechanism="ddgauss", n_clients=10, dim=16, l2_clip=1.0, noise_multiplier=1.0, bits=16, k=3)
    with pytest.raises(ConfigError, match="min_survivors"):
        plan_ddp(mechanism="skellam", n_clients=10, min_survivors=11, dim=16, l2_clip=1.0, noise_multiplier=1.0, bits=16)
    with pytest.raises(ConfigError):
        ddgauss_epsilon(**{**CONFIG_A, "sampling_rate": 0.0}, bits=16)


def test_more_survivors_never_cost_privacy() -> None:
    eps = [ddgauss_epsilon(**CONFIG_A, bits=16, min_survivors=60, n_shares=n, pld_floor=False) for n in (60, 80, 100)]
    assert eps[0] >= eps[1] >= eps[2]


def test_fixed_size_bound_dominates_dp_accounting_gaussian_wor() -> None:
    from dp_accounting.rdp import rdp_privacy_accountant as rdp_acc

    orders = list(range(2, 49))  # dp-accounting's exact Thm. 27 is O(alpha^2) per order: keep it short
    for z, q in [(0.5, 0.01), (3.0, 0.5)]:
        ours = subsampled_rdp(lambda a: a / (2 * z * z), q, orders, "fixed")
        ref = np.array([rdp_acc._compute_rdp_sample_wor_gaussian_scalar(q, z, a) for a in orders])
        plain = np.array(orders) / (2 * z * z)  # the unamplified curve is always valid (dp-accounting skips this min)
        assert np.all(ours >= np.minimum(ref, plain) * (1 - 1e-12))


def test_fixed_size_sampling_doubles_the_sensitivity_and_is_floored() -> None:
    kw = dict(n_clients=50, steps=100, delta=1e-5, dim=2**10, l2_clip=1.0, noise_multiplier=2.0, beta=BETA, k=4, bits=18)
    full_poisson = ddgauss_epsilon(**kw, sampling_rate=1.0, pld_floor=False)
    full_fixed = ddgauss_epsilon(**kw, sampling_rate=1.0, sampling="fixed", pld_floor=False)
    assert full_fixed > full_poisson  # replace-one: twice the sensitivity, no amplification at q = 1
    raw = ddgauss_epsilon(**kw, sampling_rate=0.05, sampling="fixed", pld_floor=False)
    floor = gaussian_epsilon(noise_multiplier=1.0, sampling_rate=0.05, steps=100, delta=1e-5, accountant="rdp",
                             sampling="fixed")
    reported = ddgauss_epsilon(**kw, sampling_rate=0.05, sampling="fixed")
    assert raw >= floor and reported >= max(raw, floor) and reported == pytest.approx(raw, rel=1e-6)
    with pytest.raises(ConfigError):
        gaussian_epsilon(noise_multiplier=1.0, sampling_rate=0.05, steps=1, delta=1e-5, sampling="fixed")
