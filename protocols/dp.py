"""Distributed DP in front of any aggregation protocol: noise shares, bit planning, dropout-aware ε.

A :class:`DistributedDP` holds one training run's DP configuration (a
:class:`secagg.dp.DDPPlan`), an optional :class:`secagg.dp.PrivacyBudget`,
and the per-round ε report. Each round it hands the protocol a fresh
:class:`secagg.dp.DistributedDPEncoder` (new public rotation seed); the
protocol carries it exactly like a fixed-point encoder, so SecAgg, SecAgg+
and the plaintext baseline work unchanged (HE protocols once they accept an
encoder). The noise is added by each client *before* masking; the server only
ever sees the modular sum of at least ``min_survivors`` noisy inputs.

Dropouts (DESIGN.md clarification 3): every share is calibrated so that
``min_survivors`` shares meet the target; the protocol config must refuse to
unmask fewer (:meth:`DistributedDP.protocol_min_survivors`), and ε is
recomputed after each round from the number of shares actually summed.

Dimensions: the rotation works on ``padded_dim = 2^ceil(log2 d)``, so the
protocol runs with ``dim = padded_dim``; :meth:`pad` zero-pads updates and
:meth:`finish_round` drops the padding again.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from secagg.dp import DDPPlan, DistributedDPEncoder, PrivacyBudget, RoundPrivacy, plan_ddp
from secagg.dp.accountant import RDP_ORDERS, rdp_to_epsilon, round_rdp
from secagg.dp.planning import DEFAULT_BETA, DEFAULT_K, Mechanism
from secagg.dp.subsampling import Sampling
from secagg.errors import ConfigError

from . import sim
from .session import AggregateResult, Stage

__all__ = ["DistributedDP", "DPRoundReport", "run_dp"]

ROTATION_SEED_BYTES = 16  # public, fresh per round; 128 bits make reuse across rounds negligible


@dataclass(frozen=True)
class DPRoundReport:
    """What one round spent: shares in the sum, the round's own ε and the running total."""

    round: int
    n_shares: int
    epsilon_round: float
    epsilon_total: float
    delta: float
    noise_variance: float  # per coordinate of the decoded sum, for the shares actually summed
    extras: dict[str, Any] = field(default_factory=dict)


class DistributedDP:
    """One run's distributed-DP layer: plan, per-round encoders, dropout-aware accounting.

    Keywords as :func:`secagg.dp.plan_ddp` plus ``sampling_rate`` and
    ``sampling`` (``"poisson"`` or ``"fixed"``-size client sampling, for the
    accountant), ``delta`` and an optional
    ``budget``. With a budget, :meth:`check_round` raises
    :class:`~secagg.errors.PrivacyBudgetExceeded` before a round that could
    overspend (assuming only ``min_survivors`` shares survive).
    """

    def __init__(
        self,
        *,
        dim: int,
        n_clients: int,
        min_survivors: int,
        l2_clip: float,
        noise_multiplier: float,
        bits: int,
        sampling_rate: float = 1.0,
        sampling: Sampling = "poisson",
        delta: float = 1e-5,
        mechanism: Mechanism = "ddgauss",
        beta: float = DEFAULT_BETA,
        k: float = DEFAULT_K,
        max_weight: int = 1,
        budget: PrivacyBudget | None = None,
    ) -> None:
        self.plan: DDPPlan = plan_ddp(
            mechanism=mechanism, n_clients=n_clients, min_survivors=min_survivors, dim=dim, l2_clip=l2_clip,
            noise_multiplier=noise_multiplier, bits=bits, beta=beta, k=k,
        )
        if not 0 < sampling_rate <= 1:
            raise ConfigError("sampling_rate must be in (0, 1]", sampling_rate=sampling_rate)
        if sampling not in ("poisson", "fixed"):
            raise ConfigError("sampling must be 'poisson' or 'fixed'", sampling=sampling)
        if budget is not None and budget.delta != delta:
            raise ConfigError("budget and DP layer must use the same delta", budget_delta=budget.delta, delta=delta)
        self.dim = dim
        self.sampling_rate = float(sampling_rate)
        self.sampling: Sampling = sampling
        self.delta = float(delta)
        self.max_weight = max_weight
        # Without a budget, a tracker with no effective limit still composes and reports ε.
        self.budget = budget if budget is not None else PrivacyBudget(epsilon=sys.float_info.max, delta=delta)
        self._reports: list[DPRoundReport] = []

    @property
    def padded_dim(self) -> int:
        return self.plan.dim

    @property
    def protocol_min_survivors(self) -> int:
        """The ``min_survivors`` the protocol config must enforce (never the SecAgg+ t)."""
        return self.plan.min_survivors

    @property
    def reports(self) -> tuple[DPRoundReport, ...]:
        return tuple(self._reports)

    def round_encoder(self, rotation_seed: bytes | None = None) -> DistributedDPEncoder:
        """A fresh encoder for the next round (public rotation seed from the OS unless given)."""
        seed = os.urandom(ROTATION_SEED_BYTES) if rotation_seed is None else rotation_seed
        return DistributedDPEncoder(self.plan, dim=self.padded_dim, rotation_seed=seed, max_weight=self.max_weight)

    def pad(self, update: NDArray[np.floating]) -> NDArray[np.float64]:
        """Zero-pad a length-``dim`` update to ``padded_dim``; ConfigError on a wrong length."""
        u = np.asarray(update, dtype=np.float64).ravel()
        if u.size != self.dim:
            raise ConfigError("update has the wrong length", expected=self.dim, got=u.size)
        out = np.zeros(self.padded_dim)
        out[: self.dim] = u
        return out

    def check_round(self) -> float:
        """Refuse (PrivacyBudgetExceeded) a round that could overspend; returns the worst-case total ε."""
        return self.budget.check_round(
            self.plan, n_shares=self.plan.min_survivors, sampling_rate=self.sampling_rate, sampling=self.sampling
        )

    def check_protocol_config(self, config: Any) -> None:
        """ConfigError unless ``config.min_survivors >= plan.min_survivors`` (the noise would not suffice)."""
        got = getattr(config, "min_survivors", None)
        if got is None or got < self.plan.min_survivors:
            raise ConfigError(
                "the protocol could unmask fewer noise shares than the DP plan is calibrated for",
                protocol_min_survivors=got,
                dp_min_survivors=self.plan.min_survivors,
            )

    def finish_round(self, result: AggregateResult, encoder: DistributedDPEncoder) -> DPRoundReport:
        """Account the round with the survivors actually summed; strip the padding from the aggregate.

        Mutates ``result.aggregate`` (length ``dim``) and sets ``result.extras["dp"]``.
        Raises :class:`~secagg.errors.PrivacyBudgetExceeded` (after recording) if
        the round overspent.
        """
        n_shares = len(result.survivors)
        result.aggregate = np.asarray(result.aggregate)[: self.dim]
        record: RoundPrivacy = self.budget.spend(
            self.plan, n_shares=n_shares, sampling_rate=self.sampling_rate, sampling=self.sampling
        )
        report = DPRoundReport(
            round=record.round,
            n_shares=n_shares,
            epsilon_round=record.epsilon_round,
            epsilon_total=record.epsilon_total,
            delta=self.delta,
            noise_variance=encoder.noise_variance(n_shares),
            extras={"mechanism": self.plan.mechanism, "bits": self.plan.bits,
                    "planned_wrap_probability": self.plan.wrap_probability},
        )
        self._reports.append(report)
        result.extras["dp"] = report
        return report

    def epsilon_for(self, n_shares: int, rounds: int = 1) -> float:
        """ε of ``rounds`` rounds each summing ``n_shares`` shares (no budget change)."""
        rdp = round_rdp(self.plan, n_shares=n_shares, sampling_rate=self.sampling_rate, sampling=self.sampling) * rounds
        return rdp_to_epsilon(RDP_ORDERS, rdp, self.delta)[0]


def run_dp(
    protocol: str,
    updates: Sequence[NDArray[np.floating]] | NDArray[np.floating],
    dp: DistributedDP,
    *,
    weights: Sequence[int] | None = None,
    dropouts: Mapping[int, Stage | str] | None = None,
    threshold: int | None = None,
    neighbors: int | None = None,
    seed: int | None = None,
    active_security: bool = False,
) -> AggregateResult:
    """One simulated round of ``protocol`` (``"secagg"``, ``"secagg+"``, ``"plaintext"``) with distributed DP.

    Checks the budget first, runs :func:`protocols.sim.run` with the round's
    DP encoder and ``min_survivors = dp.protocol_min_survivors``, then
    accounts the round with the survivors actually summed. ``seed`` makes the
    noise reproducible too (simulation only). The result's ``extras["dp"]``
    holds the :class:`DPRoundReport`.
    """
    dp.check_round()
    encoder = dp.round_encoder()
    padded = [dp.pad(u) for u in updates]
    result = sim.run(
        protocol, padded, weights=weights, dropouts=dropouts, threshold=threshold, neighbors=neighbors,
        seed=seed, active_security=active_security, encoder=encoder, min_survivors=dp.protocol_min_survivors,
    )
    dp.finish_round(result, encoder)
    return result
