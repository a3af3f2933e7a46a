"""Record-level distributed DP through real SecAgg+: the sum, its noise, and per-silo accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocols.dp import DistributedDP, run_dp
from secagg.dp import PrivacyBudget, RecordDPEncoder, gaussian_epsilon
from secagg.errors import AbortError, ConfigError

Z = 6.0


def layer(**kw) -> DistributedDP:
    args = dict(dim=2000, n_clients=6, min_survivors=4, l2_clip=1.0, noise_multiplier=1.0, bits=32,
                sampling_rate=0.05, max_records=600)
    args.update(kw)
    return DistributedDP(**args)


def clip_rows(rows: np.ndarray, c: float = 1.0) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows * np.minimum(1.0, c / np.maximum(norms, 1e-300))


def test_secagg_plus_with_dropouts_unmasks_the_clipped_record_sum_plus_planned_noise() -> None:
    dp = layer()
    rng = np.random.default_rng(11)
    batches = [rng.normal(size=(b, 2000)) * s for b, s in zip((9, 0, 14, 5, 30, 7), (0.01, 1, 0.05, 0.01, 0.01, 1))]
    result = run_dp("secagg+", batches, dp, dropouts={3: "masked_input", 5: "unmask"}, neighbors=4, seed=5)
    assert result.dropped == [3] and result.survivors == [0, 1, 2, 4, 5]
    assert result.weight_sum == 5  # one per silo, never the (private) batch sizes
    report = result.dp
    assert report.n_shares == 5 and report.noise_variance == pytest.approx(5 / 4)
    err = result.aggregate - np.sum([clip_rows(batches[i]).sum(axis=0) for i in result.survivors], axis=0)
    planned = report.noise_variance
    rounding = sum(len(batches[i]) for i in result.survivors) * 0.25 / dp.plan.scale**2
    se = planned * math.sqrt(2 / err.size)
    assert abs(err.mean()) <= Z * math.sqrt((planned + rounding) / err.size)
    assert planned - Z * se <= err.var() <= planned + rounding + Z * se


def test_record_level_accounting_is_bracketed_by_dp_sgd_accounting() -> None:
    """With a wide ring, record-level ε sits between DP-SGD's PLD and RDP ε for the same z, q, T.

    It never goes below the continuous Gaussian's PLD (the issue's floor); it is
    within 25 % of the Gaussian-specific RDP bound; the gap is the generic
    subsampling bound the discrete mechanism's accountant uses.
    """
    dp = layer(dim=64, n_clients=4, min_survivors=4, noise_multiplier=1.1, sampling_rate=0.01, bits=40)
    ours = dp.epsilon_for(n_shares=4, rounds=1000)
    pld = gaussian_epsilon(noise_multiplier=1.1, sampling_rate=0.01, steps=1000, delta=1e-5)
    rdp = gaussian_epsilon(noise_multiplier=1.1, sampling_rate=0.01, steps=1000, delta=1e-5, accountant="rdp")
    assert pld <= ours <= rdp * 1.25


def test_each_silo_is_accounted_over_the_rounds_it_was_summed_in() -> None:
    dp = layer(dim=64, max_records=200)
    batches = [np.full((3, 64), 0.01) for _ in range(6)]
    run_dp("secagg+", batches, dp, neighbors=4)
    run_dp("secagg+", batches, dp, dropouts={2: "share_keys"}, neighbors=4)
    run_dp("secagg+", batches, dp, neighbors=4)
    ledger = dp.client_privacy()
    assert set(ledger) == set(range(6))
    assert ledger[2].rounds == 2 and ledger[0].rounds == 3
    assert ledger[2].epsilon < ledger[0].epsilon
    assert ledger[0].epsilon == pytest.approx(dp.budget.spent)  # in every round: the run's total
    alone = layer(dim=64, max_records=200).epsilon_for(n_shares=1, rounds=3)
    assert ledger[0].epsilon_if_exposed == pytest.approx(alone)
    assert ledger[0].epsilon_if_exposed > 2 * ledger[0].epsilon  # one share is a quarter of the noise

    again = layer(dim=64, max_records=200)
    for survivors in ([0, 1, 2, 3, 4, 5], [0, 1, 3, 4, 5], [0, 1, 2, 3, 4, 5]):
        again.replay(survivors)
    assert again.client_privacy() == ledger and again.budget.spent == pytest.approx(dp.budget.spent)


def test_fewer_silos_than_min_survivors_never_unmask() -> None:
    dp = layer(dim=64, max_records=100)
    batches = [np.zeros((1, 64)) for _ in range(6)]
    with pytest.raises(AbortError):
        run_dp("secagg", batches, dp, dropouts={0: "share_keys", 1: "share_keys", 2: "share_keys"}, threshold=4)
    assert dp.client_privacy() == {}


def test_the_budget_refuses_the_round_that_would_overspend() -> None:
    dp = layer(dim=64, max_records=100, budget=PrivacyBudget(epsilon=1.0, delta=1e-5), sampling_rate=0.5)
    batches = [np.zeros((1, 64)) for _ in range(6)]
    from secagg.errors import PrivacyBudgetExceeded

    with pytest.raises(PrivacyBudgetExceeded):
        for _ in range(100):
            run_dp("secagg+", batches, dp, neighbors=4)
    assert dp.budget.spent <= 1.0


def test_record_inputs_are_checked() -> None:
    dp = layer(dim=64, max_records=10)
    enc = dp.round_encoder()
    assert isinstance(enc, RecordDPEncoder) and dp.record_level
    with pytest.raises(ConfigError, match=r"\(B, dim\)"):
        dp.client_inputs([np.zeros(64)], enc)
    with pytest.raises(ConfigError, match="max_inputs"):
        dp.client_inputs([np.zeros((11, 64))], enc)
    with pytest.raises(ConfigError, match="weight 1"):
        layer(max_weight=5)
    assert not layer(max_records=None).record_level
