"""Client encoding and server decoding for distributed DP through secure aggregation.

:class:`DistributedDPEncoder` has the interface of
:class:`secagg.encoding.FixedPointEncoder` (``bits``, ``modulus``, ``dtype``,
``max_clients``, ``max_weight``, ``encode(x, *, weight=1, rng=None)``,
``decode_sum(y)``, ``decode_mean(y)``), so any aggregation protocol can carry
it. One difference: the encoding has ``padded_dim + 1`` elements
(:attr:`encoded_length`), because the Hadamard rotation works on the next
power of two.

Client pipeline (Kairouz, Liu, Steinke 2021; Agarwal, Kairouz, Liu 2021):

1. flatten and multiply by the weight ``w`` (``Σ w_k x_k`` is what is summed);
2. rotate with the round's public seed (:func:`~secagg.dp.rotation.rotate`);
3. L2-clip the weighted, rotated vector to ``l2_clip`` (the DP sensitivity);
4. scale by ``plan.scale``;
5. conditional randomised rounding to integers, norm <= the inflated Δ₂;
6. add this client's noise share: discrete Gaussian (exact) or Skellam, with
   the per-share variance of the plan (calibrated so ``min_survivors`` shares
   meet the target ε), drawn in bulk from the OS CSPRNG unless ``rng`` is given;
7. reduce into ``Z_{2^bits}`` and append the weight.

The server's modular sum is centre-lifted into ``[-2^(bits-1), 2^(bits-1))``,
unscaled and rotated back. Wrap-around is part of the mechanism: a coordinate
whose true sum leaves that range comes back wrong, with planned probability
``plan.wrap_probability`` (<= 1e-4). It costs accuracy, never privacy.
In simulation, :meth:`encode_signed` and :func:`count_wraps` count wraps.

The weight slot is exact and carries no noise. With ``max_weight=1`` (the
default) it reveals only the number of summed clients, which the server knows;
larger weights are released without DP protection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..encoding import word_dtype
from ..encoding_torch import to_numpy
from ..errors import ConfigError, IntegrityError, OverflowRiskError
from .planning import DEFAULT_BETA, DEFAULT_K, DDPPlan, Mechanism, plan_ddp
from .randomness import RandomWords, as_random_words
from .rotation import rotate, unrotate
from .rounding import conditional_randomized_round
from .samplers import discrete_gaussian, skellam

__all__ = ["DistributedDPEncoder", "count_wraps"]

# Smallest normal float64: a clip factor l2_clip / norm below it would be subnormal.
_TINY = float(np.finfo(np.float64).tiny)


def _clip_equivalent(rows: NDArray[np.floating], l2_clip: float) -> NDArray[np.float64]:
    """Each row divided by its largest |entry| and scaled to norm >= 2 * ``l2_clip``.

    For rows longer than ``l2_clip`` (all rows near the float max are) the L2
    clip of the result equals the clip of the row, and nothing overflows on
    the way: the rotation's butterflies and the sum of squares stay finite.
    """
    peak = np.max(np.abs(rows), axis=1, keepdims=True)
    return np.divide(rows, peak, dtype=np.float64) * (2.0 * l2_clip)


def count_wraps(signed_sum: ArrayLike, bits: int) -> int:
    """Coordinates of an unreduced integer sum (weight slot excluded) outside ``[-2^(bits-1), 2^(bits-1))``."""
    arr = np.asarray(signed_sum, dtype=np.int64)[:-1]
    half = 1 << (bits - 1)
    return int(np.count_nonzero((arr < -half) | (arr >= half)))


class DistributedDPEncoder:
    """Encode one client's update with distributed DP noise; decode the sum at the server.

    Build with :meth:`create` (keywords as :func:`~secagg.dp.planning.plan_ddp`)
    or from a :class:`DDPPlan`. ``rotation_seed`` is 16 or 32 *public* bytes,
    fresh every round (:meth:`for_round`). Raises :class:`ConfigError` for an
    invalid plan or seed, :class:`OverflowRiskError` if ``n_clients *
    max_weight`` does not fit the signed range of the ring.
    """

    def __init__(self, plan: DDPPlan, *, dim: int, rotation_seed: bytes, max_weight: int = 1) -> None:
        if not isinstance(plan, DDPPlan):
            raise ConfigError("plan must be a DDPPlan", type=type(plan).__name__)
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= plan.dim or plan.dim >= 2 * dim:
            raise ConfigError("dim does not match the plan's padded dimension", dim=dim, padded_dim=plan.dim)
        if isinstance(max_weight, bool) or not isinstance(max_weight, int) or max_weight < 1:
            raise ConfigError("max_weight must be a positive integer", max_weight=max_weight)
        if plan.n_clients * max_weight > (1 << (plan.bits - 1)) - 1:
            raise OverflowRiskError(
                "the weight sum does not fit the ring", bits=plan.bits, n_clients=plan.n_clients, max_weight=max_weight
            )
        rotate(np.zeros(1), rotation_seed)  # validates the seed (ConfigError)
        self._plan = plan
        self._dim = dim
        self._seed = bytes(rotation_seed)
        self._max_weight = max_weight
        self.last_clipped = 0

    @classmethod
    def create(
        cls,
        *,
        dim: int,
        n_clients: int,
        l2_clip: float,
        noise_multiplier: float,
        bits: int,
        rotation_seed: bytes,
        min_survivors: int | None = None,
        mechanism: Mechanism = "ddgauss",
        beta: float = DEFAULT_BETA,
        k: float = DEFAULT_K,
        max_weight: int = 1,
    ) -> DistributedDPEncoder:
        """Plan (:func:`plan_ddp`) and build an encoder in one step."""
        plan = plan_ddp(
            mechanism=mechanism,
            n_clients=n_clients,
            min_survivors=min_survivors,
            dim=dim,
            l2_clip=l2_clip,
            noise_multiplier=noise_multiplier,
            bits=bits,
            beta=beta,
            k=k,
        )
        return cls(plan, dim=dim, rotation_seed=rotation_seed, max_weight=max_weight)

    def for_round(self, rotation_seed: bytes) -> DistributedDPEncoder:
        """The same plan with the next round's public rotation seed."""
        return DistributedDPEncoder(self._plan, dim=self._dim, rotation_seed=rotation_seed, max_weight=self._max_weight)

    # -- read-only configuration (FixedPointEncoder's names) --------------------
    plan = property(lambda self: self._plan, doc="The DDPPlan shared with the accountant.")
    bits = property(lambda self: self._plan.bits, doc="Width of the ring Z_{2^bits}.")
    modulus = property(lambda self: 1 << self._plan.bits, doc="2**bits.")
    scale = property(lambda self: self._plan.scale, doc="Fixed-point scale applied after rotation.")
    max_clients = property(lambda self: self._plan.n_clients, doc="Most encodings summed.")
    max_weight = property(lambda self: self._max_weight, doc="Largest admissible weight.")
    dim = property(lambda self: self._dim, doc="Update dimension d.")
    padded_dim = property(lambda self: self._plan.dim, doc="Rotation length, 2^ceil(log2 d).")
    encoded_length = property(lambda self: self._plan.dim + 1, doc="Length of an encoding: padded_dim + 1.")
    rotation_seed = property(lambda self: self._seed, doc="This round's public rotation seed.")

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """``word_dtype(bits)``: ``np.uint32`` for ``bits <= 32``, else ``np.uint64``."""
        return word_dtype(self._plan.bits)

    def __repr__(self) -> str:
        p = self._plan
        return (
            f"DistributedDPEncoder(mechanism={p.mechanism!r}, dim={self._dim}, bits={p.bits}, "
            f"n_clients={p.n_clients}, min_survivors={p.min_survivors}, l2_clip={p.l2_clip}, "
            f"noise_multiplier={p.noise_multiplier})"
        )

    def noise_variance(self, n_shares: int) -> float:
        """Per-coordinate variance of the decoded sum's noise for ``n_shares`` shares (rounding excluded)."""
        return n_shares * self._plan.scaled_variance / self._plan.scale**2

    # -- client side -------------------------------------------------------------
    def _check(self, x: Any, weight: Any) -> tuple[NDArray[np.float64], int]:
        """``x`` as a finite float64 vector of length ``dim`` and ``weight`` as an int.

        A torch tensor of any real dtype (bfloat16 and float16 included) is
        read on the CPU. :class:`ConfigError` otherwise.
        """
        arr = to_numpy(x)
        if arr.ndim != 1 or arr.dtype.kind not in "fiu" or arr.size != self._dim:
            raise ConfigError("x must be a 1-D real array of length dim", shape=arr.shape, dim=self._dim)
        arr = arr.astype(np.float64, copy=False)
        if not np.isfinite(arr).all():
            raise ConfigError("x contains NaN or infinity", bad=int((~np.isfinite(arr)).sum()))
        if isinstance(weight, bool) or not isinstance(weight, (int, np.integer)) or not 0 <= weight <= self._max_weight:
            raise ConfigError(
                "weight must be an integer in [0, max_weight]; it is never clipped",
                weight=weight,
                max_weight=self._max_weight,
            )
        return arr, int(weight)

    def encode_signed(
        self, x: ArrayLike, *, weight: int = 1, rng: np.random.Generator | RandomWords | None = None
    ) -> NDArray[np.int64]:
        """Steps 1-6: the signed integer vector before the modular reduction (length ``encoded_length``)."""
        arr, weight = self._check(x, weight)
        src = as_random_words(rng)
        with np.errstate(over="ignore"):
            rows = arr[None] * float(weight)
        if not np.isfinite(rows).all():  # w * x overflows: its clip is that of a shorter row, same direction
            rows = _clip_equivalent(arr[None], self._plan.l2_clip)
        ints = self._rotate_clip_round(rows, src)[0]
        return self._add_noise_share(ints, weight, src)

    def _rotate_clip_round(self, rows: NDArray[np.float64], src: RandomWords) -> NDArray[np.int64]:
        """Steps 2-5 for each row on its own: rotate, L2-clip, scale, conditional rounding.

        Sets :attr:`last_clipped` to the number of rows that were clipped.
        """
        p = self._plan
        with np.errstate(over="ignore", invalid="ignore"):
            rotated = rotate(rows, self._seed)
            norms = np.sqrt(np.sum(rotated * rotated, axis=1))  # no BLAS: its threads spin on a busy machine
        # Rows near the float max overflow above, or would clip by a subnormal factor:
        # rotate a shorter row with the same clip instead.
        bad = ~np.isfinite(norms) | (norms * _TINY > p.l2_clip)
        if bad.any():
            rotated[bad] = rotate(_clip_equivalent(rows[bad], p.l2_clip), self._seed)
            norms[bad] = np.sqrt(np.sum(rotated[bad] * rotated[bad], axis=1))
        over = norms > p.l2_clip
        self.last_clipped = int(over.sum())
        rotated[over] *= (p.l2_clip / norms[over])[:, None]
        return conditional_randomized_round(rotated * p.scale, l2_norm=p.l2_clip * p.scale, beta=p.beta, rng=src)

    def _add_noise_share(self, ints: NDArray[np.int64], weight: int, src: RandomWords) -> NDArray[np.int64]:
        """Step 6 and the weight slot: ``ints`` plus one noise share, then ``weight``."""
        p = self._plan
        if p.mechanism == "ddgauss":
            noise = discrete_gaussian(p.scaled_stddev, p.dim, rng=src)
        else:
            noise = skellam(p.scaled_variance, p.dim, rng=src)
        out = np.empty(p.dim + 1, dtype=np.int64)
        out[:-1] = ints + noise
        out[-1] = weight
        return out

    @property
    def max_abs_int(self) -> int:
        """Largest integer :meth:`quantize` emits: ring elements are in ``[0, 2^bits)``."""
        return self.modulus - 1

    def quantize(
        self, x: ArrayLike, weight: int = 1, rng: np.random.Generator | RandomWords | None = None
    ) -> NDArray[np.int64]:
        """The encoding as int64 ring elements, for protocols that sum integers exactly (Paillier, CKKS).

        The noisy sum is unbounded, so the ring is part of the mechanism (the
        privacy analysis assumes the modular sum, wraps included): the HE sum
        of these values is reduced by :meth:`to_modular` before
        :meth:`decode_sum`, giving exactly the modular sum that masking
        protocols compute.
        """
        return self.encode(x, weight=weight, rng=rng).astype(np.int64)

    def to_modular(self, ints: ArrayLike) -> NDArray[np.unsignedinteger]:
        """Step 7: reduce signed integers mod ``2^bits`` (wrapping is intended here)."""
        wide = np.asarray(ints, dtype=np.int64).view(np.uint64) & np.uint64(self.modulus - 1)
        return wide.astype(self.dtype)

    def encode(
        self, x: ArrayLike, *, weight: int = 1, rng: np.random.Generator | RandomWords | None = None
    ) -> NDArray[np.unsignedinteger]:
        """Encode ``x`` (length ``dim``) with ``weight``: ``encoded_length`` ring elements of ``.dtype``.

        Raises :class:`ConfigError` for a wrong shape, NaN/inf, or a weight
        outside ``[0, max_weight]``. ``rng`` (seeded Generator) only for simulation.
        """
        return self.to_modular(self.encode_signed(x, weight=weight, rng=rng))

    # -- server side -------------------------------------------------------------
    def centre_lift(self, y: ArrayLike) -> NDArray[np.int64]:
        """Map ring elements to their representatives in ``[-2^(bits-1), 2^(bits-1))``."""
        arr = np.asarray(y)
        if arr.dtype.kind not in "iu":
            raise ConfigError("expected an integer array", dtype=str(arr.dtype))
        wide = arr.astype(np.uint64) & np.uint64(self.modulus - 1)
        signed = wide.astype(np.int64)
        signed[signed >= (1 << (self.bits - 1))] -= self.modulus
        return signed

    def decode_sum(self, y: ArrayLike) -> tuple[NDArray[np.float64], int]:
        """From the modular sum of encodings return ``(noisy Σ clip(w_k x_k), Σ w_k)``.

        Raises :class:`ConfigError` for a wrong length and :class:`IntegrityError`
        if the weight sum is outside ``[0, max_clients * max_weight]``.
        """
        lifted = self.centre_lift(y)
        if lifted.ndim != 1 or lifted.size != self.encoded_length:
            raise ConfigError("sum has the wrong length", expected=self.encoded_length, got=lifted.shape)
        weight_sum = int(lifted[-1])
        if not 0 <= weight_sum <= self.max_clients * self._max_weight:
            raise IntegrityError("decoded weight sum is out of range", weight_sum=weight_sum)
        total = unrotate(lifted[:-1].astype(np.float64) / self._plan.scale, self._seed, self._dim)
        return total, weight_sum

    def decode_mean(self, y: ArrayLike) -> NDArray[np.float64]:
        """Noisy weighted mean; :class:`ConfigError` if the weights sum to 0."""
        total, weight_sum = self.decode_sum(y)
        if weight_sum == 0:
            raise ConfigError("weights sum to zero: the mean is undefined")
        return total / weight_sum
