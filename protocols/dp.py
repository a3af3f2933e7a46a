"""Distributed DP in front of any aggregation protocol: noise shares, bit planning, dropout-aware ε.

A :class:`DistributedDP` holds one training run's DP configuration (a
:class:`secagg.dp.DDPPlan`), an optional :class:`secagg.dp.PrivacyBudget`,
and the per-round ε report. Each round it hands the protocol a fresh
:class:`secagg.dp.DistributedDPEncoder` (new public rotation seed); the
protocol carries it exactly like a fixed-point encoder, so SecAgg, SecAgg+,
the plaintext baseline and the HE protocols (Paillier, threshold Paillier,
CKKS: the encoder's ``quantize`` hands them ring elements, and the decrypted
sum is reduced mod ``2^bits``) work unchanged. The noise is added by each
client *before* masking or encryption; the server only ever sees the modular
sum of at least ``min_survivors`` noisy inputs.

Dropouts: every share is calibrated so that ``min_survivors`` shares meet
the target; the protocol config must refuse to unmask fewer
(:meth:`DistributedDP.protocol_min_survivors`), and ε is recomputed after
each round from the number of shares actually summed. Colluders
(``max_corrupt``, as in the protocol's config) know their own noise shares,
so only the honest ``n_shares - max_corrupt`` count, in the calibration and
in every ε reported.

Accounting: the tight accountant of :mod:`secagg.dp.pld` (PLD of the
rounded-Gaussian twin plus a total-variation term), min'd with the RDP
bound, for the budget and the per-client ledger (``accountant="rdp"`` for
the RDP bound alone).

Utility: when the central noise std exceeds the largest norm the clipped
sum can have (client-level DP with few clients), every coordinate of the
release is mostly noise; :meth:`DistributedDP.utility_warning` says so with
the numbers, :func:`run_dp` warns (:class:`DPUtilityWarning`), and
record-level DP is the fix (the sum then holds every sampled record).

Record-level DP (:class:`secagg.dp.RecordDPEncoder`): pass ``max_records``
(the number of training records over all clients) and a record sampling
rate. Each client then hands :func:`run_dp` a ``(B, dim)`` batch of
per-record vectors (gradients); the encoder clips and rounds every record,
the client adds one noise share to their sum, and the accountant counts
records, not clients. :meth:`DistributedDP.client_privacy` reports, per
client, ε over the rounds it took part in, both for the sum (what the server
sees) and "if exposed" (its own masked input revealed alone, e.g. by a
collusion above the SecAgg threshold: only its own share protects it).

Dimensions: the rotation works on ``padded_dim = 2^ceil(log2 d)``, so the
protocol runs with ``dim = padded_dim``; :meth:`pad` zero-pads updates and
:meth:`finish_round` drops the padding again.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from secagg.dp import DDPPlan, DistributedDPEncoder, PrivacyBudget, RecordDPEncoder, RoundPrivacy, plan_ddp
from secagg.dp.accountant import ACCOUNTANTS, rounds_epsilon
from secagg.dp.planning import DEFAULT_BETA, DEFAULT_K, Mechanism
from secagg.dp.subsampling import Sampling
from secagg.errors import ConfigError

from . import sim
from .session import AggregateResult, Stage

__all__ = ["DistributedDP", "DPRoundReport", "ClientPrivacy", "DPUtilityWarning", "run_dp"]


class DPUtilityWarning(UserWarning):
    """The DP noise drowns the signal: the noise std exceeds the clipped sum's largest norm."""


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


@dataclass(frozen=True)
class ClientPrivacy:
    """One client's (silo's) ledger: rounds its input was summed, ε for the sum, ε if exposed alone."""

    rounds: int
    epsilon: float
    epsilon_if_exposed: float

    def as_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "epsilon": self.epsilon, "epsilon_if_exposed": self.epsilon_if_exposed}


class DistributedDP:
    """One run's distributed-DP layer: plan, per-round encoders, dropout-aware accounting.

    Keywords as :func:`secagg.dp.plan_ddp` plus ``max_records`` (record-level
    DP, see the module docstring), ``sampling_rate`` and
    ``sampling`` (``"poisson"`` or ``"fixed"``-size client sampling, for the
    accountant), ``delta`` and an optional
    ``budget``. With a budget, :meth:`check_round` raises
    :class:`~secagg.errors.PrivacyBudgetExceeded` before a round that could
    overspend (assuming only ``min_survivors`` shares survive).
    ``max_corrupt`` clients may collude with the server (default 0): their
    shares are not counted as noise. ``accountant`` is ``"pld"`` (tight,
    default) or ``"rdp"``; a given ``budget`` keeps its own.
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
        max_records: int | None = None,
        max_corrupt: int = 0,
        accountant: str = "pld",
    ) -> None:
        self.plan: DDPPlan = plan_ddp(
            mechanism=mechanism,
            n_clients=n_clients,
            min_survivors=min_survivors,
            dim=dim,
            l2_clip=l2_clip,
            noise_multiplier=noise_multiplier,
            bits=bits,
            beta=beta,
            k=k,
            max_inputs=max_records,
            max_corrupt=max_corrupt,
        )
        if accountant not in ACCOUNTANTS:
            raise ConfigError("accountant must be 'pld' or 'rdp'", accountant=accountant)
        self.accountant = accountant
        if max_records is not None and max_weight != 1:
            raise ConfigError("record-level DP sends weight 1 per client", max_weight=max_weight)
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
        self.budget = (
            budget
            if budget is not None
            else PrivacyBudget(epsilon=sys.float_info.max, delta=delta, accountant=accountant)
        )
        self._reports: list[DPRoundReport] = []
        self._client_rounds: dict[int, Counter[int]] = {}  # client id -> {n_shares: rounds}

    @property
    def record_level(self) -> bool:
        """True when the unit of privacy is a record (``max_records`` was given)."""
        return bool(self.plan.max_inputs)

    @property
    def max_corrupt(self) -> int:
        """Clients that may collude with the server; their noise shares are not counted."""
        return self.plan.max_corrupt

    def utility_warning(self) -> str | None:
        """A message when the central noise std exceeds the clipped sum's largest norm, else None.

        The honest shares of ``min_survivors`` clients carry central noise
        ``noise_multiplier * l2_clip`` per coordinate; the clipped sum has
        norm at most ``n_clients * l2_clip`` (client-level) or
        ``max_records * l2_clip`` (record-level).
        """
        p = self.plan
        noise_std = p.noise_multiplier * p.l2_clip
        units, what = (p.max_inputs, "records") if self.record_level else (p.n_clients, "clients")
        sum_norm = units * p.l2_clip
        if noise_std <= sum_norm:
            return None
        return (
            f"DP noise std {noise_std:.4g} per coordinate exceeds the largest norm of the clipped sum, "
            f"{sum_norm:.4g} ({units} {what} x clip {p.l2_clip:.4g}; noise multiplier "
            f"{p.noise_multiplier:.4g}): the release is mostly noise. "
            + (
                "Use record-level DP (--dp-unit record): the sum then holds every sampled record, "
                "so the same noise protects each record at far smaller relative cost."
                if not self.record_level
                else "Raise the sampling rate, epsilon or the number of records."
            )
        )

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
        """A fresh encoder for the next round (public rotation seed from the OS unless given).

        A :class:`~secagg.dp.RecordDPEncoder` when :attr:`record_level`.
        """
        seed = os.urandom(ROTATION_SEED_BYTES) if rotation_seed is None else rotation_seed
        if self.record_level:
            return RecordDPEncoder(self.plan, dim=self.padded_dim, rotation_seed=seed)
        return DistributedDPEncoder(self.plan, dim=self.padded_dim, rotation_seed=seed, max_weight=self.max_weight)

    def pad(self, update: NDArray[np.floating]) -> NDArray[np.float64]:
        """Zero-pad a length-``dim`` update to ``padded_dim``; ConfigError on a wrong length."""
        u = np.asarray(update, dtype=np.float64).ravel()
        if u.size != self.dim:
            raise ConfigError("update has the wrong length", expected=self.dim, got=u.size)
        out = np.zeros(self.padded_dim)
        out[: self.dim] = u
        return out

    def client_inputs(
        self, updates: Sequence[Any] | NDArray[Any], encoder: DistributedDPEncoder, *, seed: int | None = None
    ) -> list[NDArray[np.int64] | NDArray[np.float64]]:
        """What each client hands the protocol this round.

        Client-level: its update zero-padded (:meth:`pad`). Record-level: the
        rounded sum of its ``(B, dim)`` records (:meth:`RecordDPEncoder.sum_records`;
        ``seed`` seeds the rounding coins, simulation only; otherwise the OS CSPRNG).
        """
        if not self.record_level:
            return [self.pad(u) for u in updates]
        if not isinstance(encoder, RecordDPEncoder):
            raise ConfigError("record-level DP needs this layer's RecordDPEncoder")
        out: list[NDArray[np.int64] | NDArray[np.float64]] = []
        for i, rows in enumerate(updates):
            rows = np.asarray(rows)
            if rows.ndim != 2 or rows.shape[1] != self.dim:
                raise ConfigError("record-level input must be a (B, dim) batch", shape=rows.shape, dim=self.dim)
            rng = None if seed is None else np.random.default_rng([seed, i, 0x7265636F7264])  # "record"
            out.append(encoder.sum_records(rows, rng=rng))
        return out

    def check_round(self) -> float:
        """Refuse (PrivacyBudgetExceeded) a round that could overspend; returns the worst-case total ε."""
        return self.budget.check_round(
            self.plan, n_shares=self.plan.min_survivors, sampling_rate=self.sampling_rate, sampling=self.sampling
        )

    def check_protocol_config(self, config: Any) -> None:
        """ConfigError unless ``config.min_survivors >= plan.min_survivors`` and the config
        tolerates no more colluders than the plan (``config.max_corrupt <= plan.max_corrupt``)."""
        got = getattr(config, "min_survivors", None)
        if got is None or got < self.plan.min_survivors:
            raise ConfigError(
                "the protocol could unmask fewer noise shares than the DP plan is calibrated for",
                protocol_min_survivors=got,
                dp_min_survivors=self.plan.min_survivors,
            )
        corrupt = getattr(config, "max_corrupt", 0) or 0
        if corrupt > self.plan.max_corrupt:
            raise ConfigError(
                "the protocol assumes more colluders than the DP noise is calibrated for",
                protocol_max_corrupt=corrupt,
                dp_max_corrupt=self.plan.max_corrupt,
            )

    def finish_round(
        self, result: AggregateResult, encoder: DistributedDPEncoder, *, ids: Sequence[int] | None = None
    ) -> DPRoundReport:
        """Account the round with the survivors actually summed; strip the padding from the aggregate.

        Mutates ``result.aggregate`` (length ``dim``) and sets ``result.dp`` (and,
        for older callers, ``result.extras["dp"]``) to the report.
        ``ids[i]`` is the caller's id for protocol client ``i`` (for
        :meth:`client_privacy`; default the protocol ids). Raises
        :class:`~secagg.errors.PrivacyBudgetExceeded` (after recording) if
        the round overspent.
        """
        n_shares = len(result.survivors)
        result.aggregate = np.asarray(result.aggregate)[: self.dim]
        summed = [int(c) if ids is None else int(ids[c]) for c in result.survivors]
        record = self.replay(summed)
        report = DPRoundReport(
            round=record.round,
            n_shares=n_shares,
            epsilon_round=record.epsilon_round,
            epsilon_total=record.epsilon_total,
            delta=self.delta,
            noise_variance=encoder.noise_variance(n_shares),
            extras={
                "mechanism": self.plan.mechanism,
                "bits": self.plan.bits,
                "planned_wrap_probability": self.plan.wrap_probability,
            },
        )
        self._reports.append(report)
        result.dp = report
        result.extras["dp"] = report
        return report

    def replay(self, survivors: Sequence[int]) -> RoundPrivacy:
        """Account one round whose sum held the inputs of ``survivors`` (a resumed run replays its rounds).

        Spends the budget (:class:`~secagg.errors.PrivacyBudgetExceeded` after
        recording, if overspent) and updates the per-client ledger.
        """
        n_shares = len(survivors)
        for cid in survivors:
            self._client_rounds.setdefault(int(cid), Counter())[n_shares] += 1
        return self.budget.spend(self.plan, n_shares=n_shares, sampling_rate=self.sampling_rate, sampling=self.sampling)

    def client_privacy(self) -> dict[int, ClientPrivacy]:
        """Per client id: rounds its input was in an unmasked sum, ε for those sums, ε if exposed alone.

        ``epsilon`` composes only the rounds the client took part in (a
        dropped client's data was not released that round), each with the
        shares actually summed; ``epsilon_if_exposed`` composes the same
        rounds as if its masked input had been unmasked alone, protected
        only by its own noise share. Clients never summed are absent.
        """
        alone_plan = replace(self.plan, max_corrupt=0)  # its own share is honest, and the only one
        out = {}
        for cid, rounds in sorted(self._client_rounds.items()):
            total = sum(rounds.values())
            out[cid] = ClientPrivacy(
                rounds=total,
                epsilon=self._epsilon(self.plan, rounds),
                epsilon_if_exposed=self._epsilon(alone_plan, {1: total}),
            )
        return out

    def _epsilon(self, plan: DDPPlan, rounds: Mapping[int, int]) -> float:
        return rounds_epsilon(
            plan,
            rounds,
            sampling_rate=self.sampling_rate,
            delta=self.delta,
            sampling=self.sampling,
            accountant=self.accountant,
        )

    def epsilon_for(self, n_shares: int, rounds: int = 1) -> float:
        """ε of ``rounds`` rounds each summing ``n_shares`` shares (no budget change)."""
        return self._epsilon(self.plan, {int(n_shares): int(rounds)})


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

    ``updates[i]`` is client i's update (length ``dp.dim``) or, for
    record-level DP, its ``(B_i, dp.dim)`` batch of per-record vectors.
    Checks the budget first, runs :func:`protocols.sim.run` with the round's
    DP encoder and ``min_survivors = dp.protocol_min_survivors``, then
    accounts the round with the survivors actually summed. ``seed`` makes the
    noise reproducible too (simulation only). The result's ``dp`` field
    holds the :class:`DPRoundReport`. Warns (:class:`DPUtilityWarning`) when
    the noise drowns the clipped sum (:meth:`DistributedDP.utility_warning`).
    """
    message = dp.utility_warning()
    if message is not None:
        warnings.warn(message, DPUtilityWarning, stacklevel=2)
    dp.check_round()
    encoder = dp.round_encoder()
    padded = dp.client_inputs(updates, encoder, seed=seed)
    result = sim.run(
        protocol,
        padded,
        weights=weights,
        dropouts=dropouts,
        threshold=threshold,
        neighbors=neighbors,
        seed=seed,
        active_security=active_security,
        encoder=encoder,
        min_survivors=dp.protocol_min_survivors,
        **({"max_corrupt": dp.max_corrupt} if dp.max_corrupt else {}),
    )
    dp.finish_round(result, encoder)
    return result
