"""Distributed differential privacy for secure aggregation (Kairouz et al. 2021, Agarwal et al. 2021).

* :func:`discrete_gaussian` (exact, CKS20) and :func:`skellam` samplers on a
  ChaCha20 CSPRNG (``rng`` only for seeded simulation);
* randomised Hadamard rotation (:func:`rotate`, :func:`unrotate`, :func:`fwht`);
* :func:`conditional_randomized_round` with the inflated norm bound;
* :func:`plan_ddp` (bits, scale, guards), :func:`ddgauss_epsilon`,
  :func:`skellam_epsilon` (Poisson or fixed-size client sampling),
  :func:`calibrate_noise_multiplier` (dropout-aware) and :class:`PrivacyBudget`;
* :class:`DistributedDPEncoder`, the client/server codec that protocols carry,
  and :class:`RecordDPEncoder` for record-level DP (per-example clipping).

``dp_accounting`` (the ``dp`` extra) is imported lazily, only for the PLD
floor and :func:`gaussian_epsilon`.
"""

from .accountant import (
    OPACUS_RDP_ORDERS,
    RDP_ORDERS,
    ddgauss_epsilon,
    gaussian_epsilon,
    plan_epsilon,
    rdp_to_epsilon,
    round_rdp,
    skellam_epsilon,
)
from .budget import PrivacyBudget, RoundPrivacy
from .calibration import calibrate_noise_multiplier
from .encoder import DistributedDPEncoder, count_wraps
from .planning import DDPPlan, plan_ddp, wrap_probability
from .records import RecordDPEncoder
from .rotation import fwht, padded_dim, rotate, rotation_signs, unrotate
from .rounding import conditional_randomized_round, rounded_l2_norm_bound
from .samplers import discrete_gaussian, discrete_laplace, skellam
from .subsampling import Sampling, subsampled_rdp

__all__ = [
    "discrete_gaussian",
    "discrete_laplace",
    "skellam",
    "fwht",
    "padded_dim",
    "rotate",
    "rotation_signs",
    "unrotate",
    "conditional_randomized_round",
    "rounded_l2_norm_bound",
    "DDPPlan",
    "plan_ddp",
    "wrap_probability",
    "RDP_ORDERS",
    "OPACUS_RDP_ORDERS",
    "ddgauss_epsilon",
    "skellam_epsilon",
    "gaussian_epsilon",
    "plan_epsilon",
    "rdp_to_epsilon",
    "round_rdp",
    "subsampled_rdp",
    "Sampling",
    "calibrate_noise_multiplier",
    "PrivacyBudget",
    "RoundPrivacy",
    "DistributedDPEncoder",
    "RecordDPEncoder",
    "count_wraps",
]
