"""PrivacyBudget: composes rounds with the shares actually summed and refuses overspending."""

from __future__ import annotations

import math

import pytest

from secagg.dp import PrivacyBudget, ddgauss_epsilon, plan_ddp
from secagg.errors import ConfigError, PrivacyBudgetExceeded

PLAN = plan_ddp(mechanism="ddgauss", n_clients=100, min_survivors=80, dim=2**10, l2_clip=1.0,
                noise_multiplier=1.0, bits=16, k=4)
Q = 0.01


def test_spent_matches_the_accountant_for_identical_rounds() -> None:
    budget = PrivacyBudget(epsilon=10.0, delta=1e-5)
    for _ in range(200):
        budget.spend(PLAN, n_shares=80, sampling_rate=Q)
    expected = ddgauss_epsilon(n_clients=100, min_survivors=80, n_shares=80, sampling_rate=Q, steps=200, delta=1e-5,
                               dim=2**10, l2_clip=1.0, noise_multiplier=1.0, bits=16, beta=math.exp(-0.5), k=4,
                               pld_floor=False)
    assert budget.spent == pytest.approx(expected, rel=1e-9)
    assert len(budget.history) == 200 and budget.history[-1].epsilon_total == budget.spent


def test_fewer_survivors_spend_more() -> None:
    a, b = PrivacyBudget(10.0, 1e-5), PrivacyBudget(10.0, 1e-5)
    ra = a.spend(PLAN, n_shares=80, sampling_rate=Q)
    rb = b.spend(PLAN, n_shares=100, sampling_rate=Q)
    assert ra.epsilon_round > rb.epsilon_round
    assert ra.n_shares == 80 and ra.round == 0


def test_round_that_would_exceed_is_refused_before_it_runs() -> None:
    budget = PrivacyBudget(epsilon=2.0, delta=1e-5)
    rounds = 0
    with pytest.raises(PrivacyBudgetExceeded) as err:
        while True:
            budget.check_round(PLAN, n_shares=PLAN.min_survivors, sampling_rate=Q)
            budget.spend(PLAN, n_shares=PLAN.min_survivors, sampling_rate=Q)
            rounds += 1
    e = err.value
    assert rounds > 0 and e.epsilon == 2.0
    assert e.spent == pytest.approx(budget.spent) and e.spent <= 2.0 < e.requested
    assert len(budget.history) == rounds  # the refused round spent nothing
    report = budget.report()
    assert report["spent"] <= 2.0 and len(report["rounds"]) == rounds


def test_overspending_round_is_recorded_then_reported() -> None:
    budget = PrivacyBudget(epsilon=0.05, delta=1e-5)
    with pytest.raises(PrivacyBudgetExceeded):
        budget.spend(PLAN, n_shares=80, sampling_rate=1.0)
    assert len(budget.history) == 1 and budget.spent > 0.05


@pytest.mark.parametrize("eps,delta", [(0.0, 1e-5), (1.0, 0.0), (1.0, 1.0), (float("inf"), 1e-5)])
def test_bad_budget_is_refused(eps: float, delta: float) -> None:
    with pytest.raises(ConfigError):
        PrivacyBudget(eps, delta)
