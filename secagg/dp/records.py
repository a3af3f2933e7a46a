"""Record-level distributed DP: per-example clipping inside each silo, one noise share per silo.

In cross-silo training the unit of privacy is a patient record, not a
hospital. The mechanism is distributed DP-SGD (one gradient step per round):

1. each silo Poisson-samples its records with the round's rate ``q`` (every
   record independently, so the union over silos is a Poisson sample of
   all records);
2. it computes one gradient per sampled record (Opacus' per-sample
   gradients in :mod:`fl.record_dp`), rotates each with the round's public
   seed, L2-clips it to ``l2_clip``, scales it and rounds it with conditional
   randomised rounding (:meth:`RecordDPEncoder.sum_records`): every record
   becomes an integer vector of norm at most the inflated Δ₂;
3. it sums those integer vectors and adds *one* noise share
   (:meth:`RecordDPEncoder.encode`), then masks the result as usual.

Removing one record removes exactly one rounded vector from the server's
sum, so the sum is the distributed discrete Gaussian (or Skellam) mechanism
of Kairouz et al. 2021 with records in place of clients: the same
sensitivity (Δ₂, Δ₁), noise shares from the silos (``n_clients`` silos,
``min_survivors`` of them enough for the target), Poisson sampling of
records at rate ``q``. The accountant (:func:`~secagg.dp.accountant.round_rdp`)
applies unchanged.

Bit planning counts every rounded vector that can be in a sum: the plan's
``max_inputs`` is the total number of records (a Poisson batch never
exceeds its silo), so the modular range holds up to ``max_inputs`` aligned
records plus the noise of all silos (:func:`~secagg.dp.planning.plan_ddp`).

The weight slot carries 1 per silo (the number of silos summed, which the
server knows anyway), never the batch size: a Poisson batch size is itself
private. The server divides by the *expected* batch, ``q`` times the number
of records.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..encoding_torch import to_numpy
from ..errors import ConfigError
from .encoder import DistributedDPEncoder
from .planning import DDPPlan
from .randomness import RandomWords, as_random_words

__all__ = ["RecordDPEncoder"]


class RecordDPEncoder(DistributedDPEncoder):
    """A :class:`DistributedDPEncoder` whose client input is a batch of records.

    ``dim`` is the protocol's vector length, the plan's padded dimension
    (:attr:`~DistributedDPEncoder.padded_dim`). Client side, two steps:
    :meth:`sum_records` turns per-record vectors into one integer vector in the
    rotated, scaled domain; :meth:`encode` adds the silo's noise share to that
    vector and reduces it into the ring (this is what a protocol calls).
    :meth:`decode_sum` returns the noisy sum of the clipped records, rotated
    back, and the number of silos summed.
    """

    def __init__(self, plan: DDPPlan, *, dim: int, rotation_seed: bytes, max_weight: int = 1) -> None:
        if not plan.max_inputs:
            raise ConfigError("a record-level plan needs max_inputs (the number of records)")
        if max_weight != 1:
            raise ConfigError("record-level DP sends weight 1 per silo", max_weight=max_weight)
        super().__init__(plan, dim=dim, rotation_seed=rotation_seed, max_weight=1)

    def for_round(self, rotation_seed: bytes) -> RecordDPEncoder:
        """The same plan with the next round's public rotation seed."""
        return RecordDPEncoder(self.plan, dim=self.dim, rotation_seed=rotation_seed)

    @property
    def max_records(self) -> int:
        """The most records one sum may hold (the plan's ``max_inputs``)."""
        return self.plan.max_inputs

    def sum_records(
        self, records: ArrayLike, *, rng: np.random.Generator | RandomWords | None = None
    ) -> NDArray[np.int64]:
        """Rotate, clip, scale and round every row of ``records``; return their integer sum.

        ``records`` is ``(B, d)`` with ``d <= padded_dim`` (``B = 0`` is a silo
        that sampled no record; it still sends a noise share). The result has
        length ``padded_dim``. Sets :attr:`last_clipped` to the number of
        records that were clipped. Raises :class:`ConfigError` for a wrong
        shape, NaN/inf, or more than :attr:`max_records` records. A torch
        tensor of any real dtype (bfloat16 and float16 included) is read on the CPU.
        """
        arr = to_numpy(records)
        p = self.plan
        if (
            arr.ndim != 2
            or arr.dtype.kind not in "fiu"
            or not 1 <= arr.shape[1] <= p.dim
            or (arr.shape[1] < p.dim and 2 * arr.shape[1] <= p.dim)
        ):
            raise ConfigError(
                "records must be a (B, d) real array whose d pads to the plan's dimension",
                shape=arr.shape,
                padded_dim=p.dim,
            )
        if arr.shape[0] > p.max_inputs:
            raise ConfigError("more records than the plan's max_inputs", records=arr.shape[0], max_inputs=p.max_inputs)
        if not np.isfinite(arr).all():
            raise ConfigError("records contain NaN or infinity", bad=int((~np.isfinite(arr)).sum()))
        if arr.shape[0] == 0:
            self.last_clipped = 0
            return np.zeros(p.dim, dtype=np.int64)
        return self._rotate_clip_round(arr.astype(np.float64), as_random_words(rng)).sum(axis=0)

    def encode_signed(
        self, x: ArrayLike, *, weight: int = 1, rng: np.random.Generator | RandomWords | None = None
    ) -> NDArray[np.int64]:
        """Add this silo's noise share to a :meth:`sum_records` vector; append the weight.

        Raises :class:`ConfigError` unless ``x`` is an integer-valued vector of
        length ``padded_dim`` whose norm fits :attr:`max_records` rounded
        records (a float update passed by mistake fails here), and unless
        ``weight`` is 0 or 1.
        """
        arr, weight = self._check(x, weight)
        p = self.plan
        if not np.array_equal(arr, np.round(arr)):
            raise ConfigError("record-level encode takes the integer vector from sum_records, not a float update")
        with np.errstate(over="ignore"):  # entries near the float max: an infinite norm, refused below
            norm = math.sqrt(float(np.sum(arr * arr)))
        if norm > p.max_inputs * p.rounded_l2 * (1 + 1e-9):
            raise ConfigError(
                "vector is larger than max_records rounded records", norm=norm, bound=p.max_inputs * p.rounded_l2
            )
        return self._add_noise_share(arr.astype(np.int64), weight, as_random_words(rng))
