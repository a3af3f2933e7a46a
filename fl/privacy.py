"""Distributed differential privacy for training: each client adds a discrete
Gaussian noise share to its clipped, rotated delta before masking
(``protocols.dp`` over ``secagg.dp``; Kairouz, Liu, Steinke 2021), so the
server only ever unmasks a noisy sum.

Client-level DP, one unit = one hospital's whole update:

- each client's delta is L2-clipped to ``dp_l2_clip`` (after the random
  rotation) and aggregated with weight 1 (DP-FedAvg: a weight n_k would
  scale one client's influence, and the weight slot is not noised);
- the noise multiplier is calibrated so that ``rounds`` rounds, each summing
  only ``min_survivors`` shares, meet ``(dp_epsilon, dp_delta)``; the
  protocol refuses to unmask fewer shares, so such a round aborts rather
  than leak;
- ``max_corrupt`` colluders know their own noise shares, so the noise is
  calibrated to the ``min_survivors - max_corrupt`` honest shares;
- the accountant is the tight one (:mod:`secagg.dp.pld`, min'd with RDP);
- with few hospitals client-level noise exceeds the clipped sum's largest
  norm: :attr:`DPAggregator.utility_warning` says so, and record-level DP
  (the default unit for these cross-silo datasets) is the fix;
- ``min_survivors = n - ceil(dropout_rate * n)`` (n when no dropouts are
  simulated): a round with more dropouts aborts;
- every client takes part in every round (sampling rate 1: the accountant
  assumes Poisson sampling, which fixed-size sampling is not, so sampling
  with DP is refused);
- ε is recomputed after every round from the shares actually summed, and the
  run stops with PrivacyBudgetExceeded before a round that could overspend.

Record-level DP (``unit="record"``, :mod:`fl.record_dp`), one unit = one
patient record: each round is one distributed DP-SGD step; the updates are
``(B, d)`` batches of per-record gradients from Poisson samples at rate
``sampling_rate``, each record clipped to ``l2_clip``; bit planning counts all
``n_records`` records; the accountant samples records at rate ``q`` and
counts the hospitals summed. Noise is calibrated to ``min_survivors``
hospitals exactly as above. The protocol runs unweighted and releases the
noisy sum of the clipped per-record gradients, which the trainer divides by
the expected batch ``q N`` (:func:`fl.record_dp.expected_batch`).

Per-hospital accounting (both units): :meth:`DPAggregator.privacy_report`
gives, per centre, ε over the rounds its input was summed and ε "if exposed"
(its masked input unmasked alone, protected only by its own noise share).

Noise is secret. By default every client-side draw of a DP round (the noise
shares, the rounding coins, the public rotation seed) comes from the OS
CSPRNG, whatever the run seed: anyone who knows a seed could re-derive noise
drawn from it and subtract it from the released sum. ``insecure_reproducible_noise=True``
derives them from the round's simulation seed instead, so that two runs are
bit-identical; the released model then has no privacy at all against anyone
who knows the seed (tests and debugging only; :data:`INSECURE_NOISE_WARNING`).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from typing import Any, Final, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from protocols import sim
from protocols.dp import DistributedDP, DPUtilityWarning
from secagg.dp import PrivacyBudget
from secagg.dp.calibration import calibrate_noise_multiplier
from secagg.errors import ConfigError

from .aggregation import relabel, security_options

__all__ = [
    "DP_UNITS",
    "DP_L2_CLIP",
    "DP_BITS",
    "DP_MECHANISM",
    "INSECURE_NOISE_WARNING",
    "dp_min_survivors",
    "DPAggregator",
]

DP_UNITS = ("client", "record")
DP_L2_CLIP = 0.1  # L2 bound per client delta; FedAvg deltas on heart-disease have norm ≈ 0.05-0.2
DP_BITS = 32  # ring for the noisy sum; plan_ddp checks the wrap probability (≤ 1e-4) for it
DP_MECHANISM: Final = "ddgauss"  # distributed discrete Gaussian (Kairouz et al. 2021)
#: What the CLI prints and report.json records when DP noise is derived from the run seed.
INSECURE_NOISE_WARNING = (
    "INSECURE: DP noise, rounding coins and record samples are derived from the run seed "
    "(insecure_reproducible_noise); anyone who knows the seed can remove the noise, so "
    "this run has NO differential privacy. For tests and debugging only."
)


def dp_min_survivors(n_clients: int, dropout_rate: float) -> int:
    """Fewest shares a DP round may unmask: n minus the expected dropouts, rounded up."""
    return max(1, n_clients - math.ceil(dropout_rate * n_clients))


class DPAggregator:
    """A protocol round with distributed DP; same call shape as ProtocolAggregator.

    The result's ``aggregate`` is the noisy mean of the survivors' clipped
    deltas (client-level) or the noisy sum of every sampled record's clipped
    gradient (record-level; :attr:`~protocols.session.AggregateResult.weighted`
    is then False).

    Noise shares, rounding coins and the rotation seed come from the OS
    CSPRNG and the ``seed`` of a call is ignored (the protocol's public graph
    is then fresh too, as in a deployment). ``insecure_reproducible_noise=True``
    derives them all from ``seed`` (no privacy against anyone who knows it; tests only).
    ``max_corrupt`` (clients colluding with the server) goes to the protocol's
    config; HE rounds always sign their key ceremony
    (:func:`fl.aggregation.security_options`).
    Raises ConfigError if DP is not installed or the target is unreachable,
    PrivacyBudgetExceeded before a round that could overspend, AbortError when
    fewer than ``min_survivors`` clients survive.
    """

    def __init__(
        self,
        protocol: str,
        *,
        n_clients: int,
        dim: int,
        rounds: int,
        epsilon: float,
        delta: float,
        dropout_rate: float = 0.0,
        l2_clip: float = DP_L2_CLIP,
        threshold: int | None = None,
        neighbors: int | None = None,
        unit: str = "client",
        sampling_rate: float = 1.0,
        n_records: int | None = None,
        insecure_reproducible_noise: bool = False,
        max_corrupt: int | None = None,
    ) -> None:
        if not (epsilon > 0 and math.isfinite(epsilon)) or not 0 < delta < 1:
            raise ConfigError("DP needs epsilon > 0 and 0 < delta < 1", epsilon=epsilon, delta=delta)
        if unit not in DP_UNITS:
            raise ConfigError(f"DP unit must be one of {DP_UNITS}", unit=unit)
        if unit == "record" and n_records is None:
            raise ConfigError("record-level DP needs n_records (all training records)")
        if unit == "client" and (sampling_rate != 1.0 or n_records is not None):
            raise ConfigError(
                "client-level DP runs every client every round; sampling_rate and n_records are for record-level DP",
                sampling_rate=sampling_rate,
                n_records=n_records,
            )

        self.protocol, self.threshold, self.neighbors, self.unit = protocol, threshold, neighbors, unit
        self.max_corrupt = max_corrupt
        corrupt = 0 if max_corrupt is None else int(max_corrupt)
        self.sampling_rate = float(sampling_rate)
        self.min_survivors = dp_min_survivors(n_clients, dropout_rate)
        if corrupt >= self.min_survivors:
            raise ConfigError(
                "DP needs at least one honest noise share: max_corrupt must be below min_survivors",
                max_corrupt=corrupt,
                min_survivors=self.min_survivors,
            )
        self.noise_multiplier = calibrate_noise_multiplier(
            epsilon,
            delta,
            steps=rounds,
            sampling_rate=self.sampling_rate,
            min_survivors=self.min_survivors,
            mechanism=DP_MECHANISM,
            n_clients=n_clients,
            dim=dim,
            l2_clip=l2_clip,
            bits=DP_BITS,
            max_inputs=n_records,
            max_corrupt=corrupt,
        )
        self.dp = DistributedDP(
            dim=dim,
            n_clients=n_clients,
            min_survivors=self.min_survivors,
            l2_clip=l2_clip,
            noise_multiplier=self.noise_multiplier,
            bits=DP_BITS,
            delta=delta,
            mechanism=DP_MECHANISM,
            budget=PrivacyBudget(epsilon=epsilon, delta=delta),
            sampling_rate=self.sampling_rate,
            max_records=n_records,
            max_corrupt=corrupt,
        )
        #: Set when the noise drowns the clipped sum (few hospitals, client-level DP); also warned.
        self.utility_warning = self.dp.utility_warning()
        if self.utility_warning is not None:
            warnings.warn(self.utility_warning, DPUtilityWarning, stacklevel=2)
        self.encoder = None  # per-round encoders come from the DP layer
        self.insecure_reproducible_noise = bool(insecure_reproducible_noise)
        self.settings = {
            "epsilon_target": epsilon,
            "delta": delta,
            "l2_clip": l2_clip,
            "noise_multiplier": self.noise_multiplier,
            "min_survivors": self.min_survivors,
            "mechanism": DP_MECHANISM,
            "bits": DP_BITS,
            "max_corrupt": corrupt,
            "accountant": "pld (rounded-Gaussian twin + TV term), min with RDP",
            "utility_warning": self.utility_warning,
            "unit": "client (hospital)" if unit == "client" else "record (patient)",
            "sampling_rate": self.sampling_rate,
            "n_records": n_records,
            "noise_source": "run seed (INSECURE)" if self.insecure_reproducible_noise else "OS CSPRNG",
            "insecure_reproducible_noise": self.insecure_reproducible_noise,
        }

    def restore(self, rounds: Sequence[Mapping[str, Any]]) -> None:
        """Re-spend the budget of rounds already run (when resuming from a checkpoint)."""
        for record in rounds:
            if not record.get("aborted"):
                self.dp.replay([int(c) for c in record["survivors"]])

    def privacy_report(self, names: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
        """Per centre (``names[id]`` or the id): rounds summed, ε, ε if its input were exposed alone."""
        return {(str(cid) if names is None else names[cid]): p.as_dict() for cid, p in self.dp.client_privacy().items()}

    def __call__(
        self,
        updates: Mapping[int, NDArray[np.float32]],
        weights: Mapping[int, int],
        *,
        dropouts: Mapping[int, str] | None = None,
        seed: int | None = None,
    ) -> Any:
        ids = sorted(updates)
        position = {cid: i for i, cid in enumerate(ids)}
        self.dp.check_round()
        # protocols.sim seeds each client's encoder stream, noise included, from its seed: pass one only
        # when the noise may be public. Without it the graph seed is fresh too (a deployment draws it anyway).
        noise_seed = seed if self.insecure_reproducible_noise else None
        rotation_seed = None if noise_seed is None else hashlib.sha256(b"fl/dp/rotation|%d" % noise_seed).digest()[:16]
        encoder = self.dp.round_encoder(rotation_seed=rotation_seed)
        padded = self.dp.client_inputs([updates[c] for c in ids], encoder, seed=noise_seed)
        drops = {position[c]: s for c, s in (dropouts or {}).items() if c in position} or None
        # Client-level: weight 1 per hospital, so the protocol releases the mean of the clipped deltas.
        # Record-level: no weights, so it releases the noisy sum of the clipped per-record gradients,
        # which the server divides by the expected batch q N (a mean over silos would shrink the step n-fold).
        protocol_weights = None if self.unit == "record" else [1] * len(ids)
        common: dict[str, Any] = dict(
            weights=protocol_weights, dropouts=drops, seed=noise_seed, encoder=encoder, min_survivors=self.min_survivors
        )
        if self.protocol == "plaintext":
            result = sim.run_plaintext(padded, **common)
        else:
            # HE: every client signs the key ceremony (security_options); max_corrupt reaches every protocol.
            options = security_options(
                self.protocol, len(ids), len(padded[0]), encoder, threshold=self.threshold, max_corrupt=self.max_corrupt
            )
            result = sim.run(self.protocol, padded, neighbors=self.neighbors, **common, **options)
        self.dp.finish_round(result, encoder, ids=ids)
        return relabel(result, ids)
