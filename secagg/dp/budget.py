"""A privacy budget that refuses rounds which would overspend it.

Usage in a training loop (dropout-aware, DESIGN.md clarification 3)::

    budget = PrivacyBudget(epsilon=4.0, delta=1e-5)
    budget.check_round(plan, n_shares=plan.min_survivors, sampling_rate=q)  # worst case, before
    ...  # run the round; the server unmasks a sum of `survivors` shares
    record = budget.spend(plan, n_shares=survivors, sampling_rate=q)        # what really happened
    record.epsilon_round, record.epsilon_total

Before a round the number of surviving shares is unknown, so the check uses
the fewest the server will unmask; afterwards the accountant composes the
round with the number actually in the sum. RDP curves are added over
:data:`~secagg.dp.accountant.RDP_ORDERS` and converted to ε at the budget's
δ. Every per-order curve of the DDGauss and Skellam bounds dominates that of
the continuous Gaussian with the same noise, so the total is never below the
continuous Gaussian's ε (``tests/secagg/dp/test_accountant.py::
test_epsilon_never_below_continuous_gaussian_pld`` checks it on a grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, PrivacyBudgetExceeded
from .accountant import RDP_ORDERS, rdp_to_epsilon, round_rdp
from .subsampling import Sampling
from .planning import DDPPlan

__all__ = ["PrivacyBudget", "RoundPrivacy"]


@dataclass(frozen=True)
class RoundPrivacy:
    """One spent round: its index, shares in the sum, its own ε and the running total."""

    round: int
    n_shares: int
    sampling_rate: float
    epsilon_round: float
    epsilon_total: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for reports."""
        return {
            "round": self.round,
            "n_shares": self.n_shares,
            "sampling_rate": self.sampling_rate,
            "epsilon_round": self.epsilon_round,
            "epsilon_total": self.epsilon_total,
        }


class PrivacyBudget:
    """Track ε spent over rounds and refuse any round that would exceed ``epsilon`` at ``delta``.

    Raises :class:`ConfigError` for ``epsilon <= 0`` or ``delta`` outside
    ``(0, 1)``. :meth:`check_round` and :meth:`spend` raise
    :class:`PrivacyBudgetExceeded` with fields ``spent`` (ε so far),
    ``requested`` (ε after the round) and ``epsilon`` (the budget).
    """

    def __init__(self, epsilon: float, delta: float) -> None:
        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise ConfigError("epsilon must be positive and finite", epsilon=epsilon)
        if not 0 < delta < 1:
            raise ConfigError("delta must be in (0, 1)", delta=delta)
        self.epsilon = float(epsilon)
        self.delta = float(delta)
        self._rdp: NDArray[np.float64] = np.zeros(len(RDP_ORDERS))
        self._history: list[RoundPrivacy] = []

    @property
    def spent(self) -> float:
        """ε spent by the rounds recorded so far (0 before any round)."""
        return self._epsilon_of(self._rdp) if self._history else 0.0

    @property
    def remaining(self) -> float:
        """Budget left, ``epsilon - spent`` (never negative)."""
        return max(0.0, self.epsilon - self.spent)

    @property
    def history(self) -> tuple[RoundPrivacy, ...]:
        """The per-round ε report, oldest first."""
        return tuple(self._history)

    def _epsilon_of(self, rdp: NDArray[np.float64]) -> float:
        return rdp_to_epsilon(RDP_ORDERS, rdp, self.delta)[0]

    def _round_rdp(self, plan: DDPPlan, n_shares: int, sampling_rate: float, sampling: Sampling) -> NDArray[np.float64]:
        if not isinstance(plan, DDPPlan):
            raise ConfigError("plan must be a DDPPlan (see secagg.dp.plan_ddp)", type=type(plan).__name__)
        return round_rdp(plan, n_shares=n_shares, sampling_rate=sampling_rate, sampling=sampling)

    def epsilon_if(self, plan: DDPPlan, *, n_shares: int, sampling_rate: float, sampling: Sampling = "poisson") -> float:
        """ε spent in total if one more round of ``plan`` with ``n_shares`` shares ran."""
        return self._epsilon_of(self._rdp + self._round_rdp(plan, n_shares, sampling_rate, sampling))

    def check_round(self, plan: DDPPlan, *, n_shares: int, sampling_rate: float, sampling: Sampling = "poisson") -> float:
        """Return the ε total after such a round, or raise :class:`PrivacyBudgetExceeded`."""
        requested = self.epsilon_if(plan, n_shares=n_shares, sampling_rate=sampling_rate, sampling=sampling)
        if requested > self.epsilon:
            raise PrivacyBudgetExceeded(
                f"the next round would spend epsilon {requested:.4f} of a budget of {self.epsilon:.4f}",
                spent=self.spent,
                requested=requested,
                epsilon=self.epsilon,
                delta=self.delta,
                n_shares=n_shares,
            )
        return requested

    def spend(self, plan: DDPPlan, *, n_shares: int, sampling_rate: float, sampling: Sampling = "poisson") -> RoundPrivacy:
        """Record a round whose unmasked sum held ``n_shares`` noise shares.

        ``sampling`` is ``"poisson"`` or ``"fixed"`` (see
        :mod:`secagg.dp.subsampling`). The round has already happened, so it is always recorded; if it took
        the total past the budget (because :meth:`check_round` was skipped or
        given more shares than survived), :class:`PrivacyBudgetExceeded` is
        raised *after* recording, so the report stays truthful.
        """
        spent_before = self.spent
        rdp = self._round_rdp(plan, n_shares, sampling_rate, sampling)
        self._rdp = self._rdp + rdp
        record = RoundPrivacy(
            round=len(self._history),
            n_shares=int(n_shares),
            sampling_rate=float(sampling_rate),
            epsilon_round=self._epsilon_of(rdp),
            epsilon_total=self._epsilon_of(self._rdp),
        )
        self._history.append(record)
        if record.epsilon_total > self.epsilon:
            raise PrivacyBudgetExceeded(
                f"round {record.round} overspent: epsilon {record.epsilon_total:.4f} of {self.epsilon:.4f}",
                spent=spent_before,
                requested=record.epsilon_total,
                epsilon=self.epsilon,
                delta=self.delta,
                n_shares=n_shares,
            )
        return record

    def report(self) -> dict[str, Any]:
        """JSON-ready summary: budget, spent, remaining and the per-round records."""
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "spent": self.spent,
            "remaining": self.remaining,
            "rounds": [r.as_dict() for r in self._history],
        }
