"""Distributed DP through real SecAgg+ with dropouts, end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocols.dp import DistributedDP, DPRoundReport, run_dp
from secagg.dp import PrivacyBudget
from secagg.errors import ConfigError, PrivacyBudgetExceeded

Z = 6.0
DIM = 2**14 - 100  # padded to 2^14 inside the layer


def clipped(x: np.ndarray, c: float = 1.0) -> np.ndarray:
    return x * min(1.0, c / float(np.linalg.norm(x)))


def layer(**kw) -> DistributedDP:
    args = dict(dim=DIM, n_clients=12, min_survivors=8, l2_clip=1.0, noise_multiplier=1.0, bits=16, sampling_rate=0.1)
    args.update(kw)
    return DistributedDP(**args)


@pytest.mark.parametrize("mechanism", ["ddgauss", "skellam"])
def test_secagg_plus_with_dropouts_unmasks_the_sum_plus_planned_noise(mechanism: str) -> None:
    dp = layer(mechanism=mechanism)
    rng = np.random.default_rng(4)
    updates = [rng.normal(size=DIM) * (0.02 if i % 3 else 0.002) for i in range(12)]  # some get clipped
    result = run_dp("secagg+", updates, dp, dropouts={2: "masked_input", 9: "share_keys", 7: "unmask"}, neighbors=8)
    # 2 and 9 never sent a masked input; 7 did (dropping later does not remove its share).
    assert result.dropped == [2, 9] and len(result.survivors) == 10
    report = result.dp
    assert isinstance(report, DPRoundReport) and result.extras["dp"] is report
    assert report.n_shares == 10
    err = result.aggregate - np.sum([clipped(updates[i]) for i in result.survivors], axis=0)
    assert err.shape == (DIM,)
    planned = report.noise_variance
    assert planned == pytest.approx(10 / 8)  # 10 shares of variance z^2 c^2 / min_survivors
    rounding = 10 * 0.25 / dp.plan.scale**2
    se = planned * math.sqrt(2 / err.size)
    assert abs(err.mean()) <= Z * math.sqrt((planned + rounding) / err.size)
    assert planned - Z * se <= err.var() <= planned + rounding + Z * se


def test_epsilon_per_round_uses_the_shares_actually_summed() -> None:
    dp = layer(dim=256)
    updates = [np.full(256, 0.01) for _ in range(12)]
    full = run_dp("secagg+", updates, dp, neighbors=8).dp
    fewer = run_dp("secagg+", updates, dp, dropouts={0: "share_keys", 5: "share_keys"}, neighbors=8).dp
    assert (full.n_shares, fewer.n_shares) == (12, 10)
    assert full.epsilon_round == pytest.approx(dp.epsilon_for(12))
    assert fewer.epsilon_round == pytest.approx(dp.epsilon_for(10)) and fewer.epsilon_round > full.epsilon_round
    assert fewer.epsilon_total > fewer.epsilon_round and len(dp.reports) == 2
    # Calibrated to min_survivors: even the worst permitted sum meets the plan's own target.
    assert dp.epsilon_for(10) <= dp.epsilon_for(8)


def test_budget_refuses_a_round_before_it_runs() -> None:
    dp = layer(dim=64, sampling_rate=1.0, budget=PrivacyBudget(epsilon=8.0, delta=1e-5))
    updates = [np.full(64, 0.01) for _ in range(12)]
    rounds = 0
    with pytest.raises(PrivacyBudgetExceeded) as err:
        for _ in range(50):
            run_dp("plaintext", updates, dp)
            rounds += 1
    assert rounds >= 1 and len(dp.reports) == rounds
    assert err.value.spent <= 8.0 < err.value.requested


def test_protocol_config_must_not_unmask_fewer_shares_than_calibrated() -> None:
    dp = layer(dim=64)

    class Config:
        min_survivors = 5

    with pytest.raises(ConfigError):
        dp.check_protocol_config(Config())
    Config.min_survivors = 8
    dp.check_protocol_config(Config())
