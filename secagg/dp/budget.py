"""A privacy budget that refuses rounds which would overspend it.

Usage in a training loop (dropout-aware)::

    budget = PrivacyBudget(epsilon=4.0, delta=1e-5)
    budget.check_round(plan, n_shares=plan.min_survivors, sampling_rate=q)  # worst case, before
    ...  # run the round; the server unmasks a sum of `survivors` shares
    record = budget.spend(plan, n_shares=survivors, sampling_rate=q)        # what really happened
    record.epsilon_round, record.epsilon_total

Before a round the number of surviving shares is unknown, so the check uses
the fewest the server will unmask; afterwards the accountant composes the
round with the number actually in the sum.

Two accountants run side by side. RDP curves are added over
:data:`~secagg.dp.accountant.RDP_ORDERS` (the cross-check, always valid);
with ``accountant="pld"`` (default) the budget also composes, round by
round, dp-accounting's PLD of each round's rounded-Gaussian twin and sums
the coupling terms η (:mod:`secagg.dp.pld`). The reported ε is the smaller
of the two valid bounds. A composition and an ε lookup cost about 2-3 ms per
round (the round's own PLD is cached per plan, shares and rate). Both
bounds use the continuous Gaussian's loss at the same noise or more, so the
total is never below its ε (``tests/secagg/dp/test_budget.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, PrivacyBudgetExceeded
from .accountant import ACCOUNTANTS, RDP_ORDERS, rdp_to_epsilon, round_rdp
from .planning import DDPPlan
from .pld import composed_pld, pld_epsilon, release_tv, round_pld
from .subsampling import Sampling

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

    ``accountant`` is ``"pld"`` (tight, min'd with RDP; Poisson rounds only,
    a fixed-size round switches the budget to RDP alone) or ``"rdp"``.
    Raises :class:`ConfigError` for ``epsilon <= 0`` or ``delta`` outside
    ``(0, 1)``. :meth:`check_round` and :meth:`spend` raise
    :class:`PrivacyBudgetExceeded` with fields ``spent`` (ε so far),
    ``requested`` (ε after the round) and ``epsilon`` (the budget).
    """

    def __init__(self, epsilon: float, delta: float, *, accountant: str = "pld") -> None:
        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise ConfigError("epsilon must be positive and finite", epsilon=epsilon)
        if not 0 < delta < 1:
            raise ConfigError("delta must be in (0, 1)", delta=delta)
        if accountant not in ACCOUNTANTS:
            raise ConfigError("accountant must be 'pld' or 'rdp'", accountant=accountant)
        self.epsilon = float(epsilon)
        self.delta = float(delta)
        self.accountant = accountant
        self._rdp: NDArray[np.float64] = np.zeros(len(RDP_ORDERS))
        self._pld: Any = None  # composed twin PLD; None before a round or once RDP alone applies
        self._tv = 0.0  # Σ η of the rounds composed
        self._tight = accountant == "pld"
        self._spent = 0.0
        self._history: list[RoundPrivacy] = []

    @property
    def spent(self) -> float:
        """ε spent by the rounds recorded so far (0 before any round)."""
        return self._spent

    @property
    def remaining(self) -> float:
        """Budget left, ``epsilon - spent`` (never negative)."""
        return max(0.0, self.epsilon - self.spent)

    @property
    def history(self) -> tuple[RoundPrivacy, ...]:
        """The per-round ε report, oldest first."""
        return tuple(self._history)

    def _epsilon_of(self, rdp: NDArray[np.float64], pld: Any = None, tv: float = 0.0) -> float:
        eps = rdp_to_epsilon(RDP_ORDERS, rdp, self.delta)[0]
        return eps if pld is None else min(eps, pld_epsilon(pld, tv, self.delta, eps))

    def _next(
        self, plan: DDPPlan, n_shares: int, sampling_rate: float, sampling: Sampling
    ) -> tuple[NDArray[np.float64], Any, float, float]:
        """(RDP total, PLD total or None, Σ η, this round's own ε) after one more such round."""
        if not isinstance(plan, DDPPlan):
            raise ConfigError("plan must be a DDPPlan (see secagg.dp.plan_ddp)", type=type(plan).__name__)
        rdp = round_rdp(plan, n_shares=n_shares, sampling_rate=sampling_rate, sampling=sampling)
        if not (self._tight and sampling == "poisson"):
            return self._rdp + rdp, None, 0.0, self._epsilon_of(rdp)
        one = round_pld(plan, int(n_shares), float(sampling_rate))
        tv = release_tv(plan, int(n_shares))
        pld = one if self._pld is None else self._pld.compose(one)
        round_eps = self._epsilon_of(rdp, composed_pld(plan, {int(n_shares): 1}, sampling_rate), tv)
        return self._rdp + rdp, pld, self._tv + tv, round_eps

    def epsilon_if(
        self, plan: DDPPlan, *, n_shares: int, sampling_rate: float, sampling: Sampling = "poisson"
    ) -> float:
        """ε spent in total if one more round of ``plan`` with ``n_shares`` shares ran."""
        rdp, pld, tv, _ = self._next(plan, n_shares, sampling_rate, sampling)
        return self._epsilon_of(rdp, pld, tv)

    def check_round(
        self, plan: DDPPlan, *, n_shares: int, sampling_rate: float, sampling: Sampling = "poisson"
    ) -> float:
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

    def spend(
        self, plan: DDPPlan, *, n_shares: int, sampling_rate: float, sampling: Sampling = "poisson"
    ) -> RoundPrivacy:
        """Record a round whose unmasked sum held ``n_shares`` noise shares.

        ``sampling`` is ``"poisson"`` or ``"fixed"`` (see
        :mod:`secagg.dp.subsampling`). The round has already happened, so it is always recorded; if it took
        the total past the budget (because :meth:`check_round` was skipped or
        given more shares than survived), :class:`PrivacyBudgetExceeded` is
        raised *after* recording, so the report stays truthful.
        """
        spent_before = self.spent
        self._rdp, pld, tv, round_eps = self._next(plan, n_shares, sampling_rate, sampling)
        if pld is None:
            self._tight = False  # a round the PLD does not model: RDP alone from now on
        self._pld, self._tv = pld, tv
        self._spent = self._epsilon_of(self._rdp, self._pld, self._tv)
        record = RoundPrivacy(
            round=len(self._history),
            n_shares=int(n_shares),
            sampling_rate=float(sampling_rate),
            epsilon_round=round_eps,
            epsilon_total=self._spent,
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
            "accountant": self.accountant if self._tight or not self._history else "rdp",
            "spent": self.spent,
            "remaining": self.remaining,
            "rounds": [r.as_dict() for r in self._history],
        }
