"""Bit width, scale and noise plan for distributed DP under secure aggregation.

One frozen :class:`DDPPlan` is shared by the client encoder, the server
decoder and the accountant, so the three can never disagree on the scale or
the noise. Terms (Kairouz, Liu, Steinke, ICML 2021, §4; Agarwal, Kairouz,
Liu, NeurIPS 2021):

* ``n_clients``: the most noise shares (clients) that can be in one sum;
* ``max_inputs``: the most rounded vectors that can be in one sum, for bit
  planning (defaults to ``n_clients``; record-level DP sums one per record,
  so it is the number of training records);
* ``min_survivors``: the fewest noise shares the server will ever unmask
  (dropouts remove noise shares, so that many shares alone must meet the
  target). Each client's share has standard deviation
  ``noise_multiplier * l2_clip / sqrt(min_survivors)``, so *any* permitted
  sum already carries central noise ``noise_multiplier * l2_clip``. Never
  pass the SecAgg+ per-neighbourhood threshold here;
* ``max_corrupt``: clients that may collude with the server. They know
  their own noise shares and can subtract them, so only the
  ``min_survivors - max_corrupt`` honest shares count: each share has
  standard deviation ``noise_multiplier * l2_clip / sqrt(min_survivors -
  max_corrupt)`` and the accountant counts ``n_shares - max_corrupt``;
* ``k``: the number of standard deviations of the aggregate kept inside the
  modular range (not the neighbour degree). The planned per-coordinate wrap
  probability is the Gaussian tail ``erfc(k/sqrt 2)``, as in the authors'
  code (``k = sqrt 2 erfcinv(modclip_prob)``): ``k = 4`` plans 6.3e-5, within
  the project default of 1e-4. This treats the rotated aggregate as Gaussian
  with the planned variance; the noise part is (a sum of discrete Gaussians),
  the signal part is only subgaussian, for which the rigorous bound is
  ``2 exp(-k^2/2)`` (6.7e-4 at k = 4; ``k >= 4.45`` gives 1e-4). The signal
  term is a worst case (all clients aligned), so the measured rate stays
  below plan (``tests/secagg/dp/test_encoder.py``);
* ``bits``: the modulus is ``2^bits``. Feasible only if ``2^bits >= n_clients``
  and ``2^(2 bits) >= n_clients k^2``; the scale then solves
  ``2^bits = 2k sqrt(rho c^2 n^2 / d + (gamma^2/4 + sigma^2) n) / gamma``
  (``accounting_utils.heuristic_scale_factor`` of the authors), ``1/gamma``
  being the scale.

Guards (ConfigError): the scaled local standard deviation of a discrete
Gaussian share must be at least 1/2 (Prop. 14 of the paper is stated for it),
and the inflation ``tau * d`` of the sum of discrete Gaussians must stay at or
below 1e-3 so that the sum is practically Gaussian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError
from .rotation import padded_dim
from .rounding import rounded_l1_norm_bound, rounded_l2_norm_bound

__all__ = [
    "DDPPlan",
    "plan_ddp",
    "heuristic_scale",
    "ddgauss_tau",
    "wrap_probability",
    "Mechanism",
    "MAX_TAU_DIM",
    "MIN_SCALED_STDDEV",
    "MAX_WRAP_PROBABILITY",
    "MAX_DDP_BITS",
    "DEFAULT_BETA",
    "DEFAULT_K",
]

Mechanism = Literal["ddgauss", "skellam"]

MAX_TAU_DIM = 1e-3  # tau * d above this and the sum of shares is visibly non-Gaussian
MIN_SCALED_STDDEV = 0.5  # Kairouz et al. Prop. 14 needs scaled sigma >= 1/2
MAX_WRAP_PROBABILITY = 1e-4  # planned per-coordinate wrap rate: a wrapped sum is not the mechanism analysed
# Scaled values must stay exactly representable in float64 (2^53) while
# rounding, with headroom for the noise: 2^52 is the largest modulus allowed.
MAX_DDP_BITS = 52
DEFAULT_BETA = math.exp(-0.5)  # Kairouz et al.'s recommended conditional-rounding beta
DEFAULT_K = 4.0  # authors' FL runs; erfc(4/sqrt 2) = 6.3e-5 <= 1e-4


def wrap_probability(k: float) -> float:
    """Planned per-coordinate wrap probability ``erfc(k / sqrt 2)`` for ``k`` standard deviations."""
    return math.erfc(k / math.sqrt(2.0))


def heuristic_scale(
    *,
    local_stddev: float,
    l2_clip: float,
    bits: int,
    n_clients: int,
    dim: int,
    k: float,
    rho: float = 1.0,
    max_inputs: int | None = None,
) -> float:
    """The scale ``1/gamma`` that fits ``k`` standard deviations of the sum into ``2^bits``.

    ``n_clients`` noise shares of std ``local_stddev`` and ``max_inputs``
    (default ``n_clients``) rounded vectors of norm ``l2_clip``, each adding
    rounding variance ``gamma^2/4`` per coordinate. Raises
    :class:`ConfigError` if ``2^(2 bits) < max_inputs k^2`` or ``2^bits < max_inputs``.
    """
    m = n_clients if max_inputs is None else max_inputs
    if 2.0 ** (2 * bits) < m * k**2 or 2.0**bits < m:
        raise ConfigError(
            "bit width too small: need 2^bits >= max_inputs and 2^(2 bits) >= max_inputs * k^2",
            bits=bits,
            max_inputs=m,
            k=k,
        )
    numer = math.sqrt(2.0 ** (2 * bits) - m * k**2)
    denom = 2.0 * k * math.sqrt(rho / dim * l2_clip**2 * m**2 + n_clients * local_stddev**2)
    return numer / denom


def ddgauss_tau(scaled_stddev: float, n_shares: int) -> float:
    """Kairouz et al. Thm. 1 inflation: ``10 * sum_{j<n} exp(-2 pi^2 sigma^2 j/(j+1))``."""
    c = 2.0 * math.pi**2 * scaled_stddev**2
    return 10.0 * sum(math.exp(-c * j / (j + 1)) for j in range(1, int(n_shares)))


@dataclass(frozen=True)
class DDPPlan:
    """Everything both ends and the accountant must agree on for one DDP configuration.

    ``scale`` multiplies (rotated, clipped) updates; ``local_stddev`` is the
    per-client noise standard deviation *before* scaling, ``scaled_stddev``
    after; ``rounded_l2`` / ``rounded_l1`` are the scaled sensitivities after
    conditional rounding; ``dim`` is the padded (power-of-two) dimension.
    """

    mechanism: Mechanism
    n_clients: int
    min_survivors: int
    dim: int
    l2_clip: float
    noise_multiplier: float
    bits: int
    beta: float
    k: float
    rho: float
    scale: float
    local_stddev: float
    scaled_stddev: float
    rounded_l2: float
    rounded_l1: float
    max_inputs: int = 0  # rounded vectors in one sum; 0 means n_clients (client-level DP)
    max_corrupt: int = 0  # colluding clients whose noise shares the server may subtract

    def honest_shares(self, n_shares: int) -> int:
        """Noise shares in a sum of ``n_shares`` that the server and its colluders do not know."""
        return int(n_shares) - self.max_corrupt

    @property
    def inputs_bound(self) -> int:
        """The most rounded vectors one sum may hold (``max_inputs`` or ``n_clients``)."""
        return self.max_inputs or self.n_clients

    @property
    def wrap_probability(self) -> float:
        """Planned per-coordinate wrap probability of the sum (subgaussian model)."""
        return wrap_probability(self.k)

    @property
    def scaled_variance(self) -> float:
        """Variance of one client's integer noise share."""
        return self.scaled_stddev**2

    def tau(self, n_shares: int) -> float:
        """DDGauss inflation for a sum of ``n_shares`` shares (0 for Skellam: closed under sums)."""
        return ddgauss_tau(self.scaled_stddev, n_shares) if self.mechanism == "ddgauss" else 0.0


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer", **{name: value})
    return value


def plan_ddp(
    *,
    mechanism: Mechanism,
    n_clients: int,
    dim: int,
    l2_clip: float,
    noise_multiplier: float,
    bits: int,
    min_survivors: int | None = None,
    beta: float = DEFAULT_BETA,
    k: float = DEFAULT_K,
    rho: float = 1.0,
    max_wrap_probability: float = MAX_WRAP_PROBABILITY,
    max_inputs: int | None = None,
    max_corrupt: int = 0,
) -> DDPPlan:
    """Validate a distributed-DP configuration and derive its scale and noise.

    ``dim`` is the update dimension before padding. ``min_survivors``
    defaults to ``n_clients`` (no dropout tolerance). ``max_inputs`` (record-level
    DP: the number of records) bounds the rounded vectors in one sum, at least
    ``n_clients``; it only widens the bit planning. ``max_corrupt`` colluders'
    shares are not counted as noise (module docstring). Raises
    :class:`ConfigError` for: a non-positive size or clip, ``min_survivors``
    outside ``[1, n_clients]``, ``max_corrupt`` outside ``[0, min_survivors)``,
    ``bits`` outside ``[1, 52]`` or too small for ``n_clients`` and ``k``, a planned wrap probability above
    ``max_wrap_probability``, a scaled discrete-Gaussian sigma below 1/2, or
    ``tau * d > 1e-3``.
    """
    if mechanism not in ("ddgauss", "skellam"):
        raise ConfigError("mechanism must be 'ddgauss' or 'skellam'", mechanism=mechanism)
    n_clients = _positive_int("n_clients", n_clients)
    min_survivors = n_clients if min_survivors is None else _positive_int("min_survivors", min_survivors)
    if min_survivors > n_clients:
        raise ConfigError("min_survivors cannot exceed n_clients", min_survivors=min_survivors, n_clients=n_clients)
    if max_inputs is not None and _positive_int("max_inputs", max_inputs) < n_clients:
        raise ConfigError("max_inputs cannot be below n_clients", max_inputs=max_inputs, n_clients=n_clients)
    if isinstance(max_corrupt, bool) or not isinstance(max_corrupt, int) or not 0 <= max_corrupt < min_survivors:
        raise ConfigError(
            "max_corrupt must be an integer in [0, min_survivors): the colluders know their own "
            "noise, so at least one honest share must remain",
            max_corrupt=max_corrupt,
            min_survivors=min_survivors,
        )
    p = padded_dim(_positive_int("dim", dim))
    if not (l2_clip > 0 and math.isfinite(l2_clip)):
        raise ConfigError("l2_clip must be positive and finite", l2_clip=l2_clip)
    if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
        raise ConfigError("noise_multiplier must be positive and finite", noise_multiplier=noise_multiplier)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_DDP_BITS:
        raise ConfigError(f"bits must be an integer in [1, {MAX_DDP_BITS}]", bits=bits)
    if not 0 <= beta < 1:
        raise ConfigError("beta must be in [0, 1)", beta=beta)
    if not (k > 0 and math.isfinite(k)):
        raise ConfigError("k (noise standard deviations kept in range) must be positive", k=k)
    if wrap_probability(k) > max_wrap_probability:
        raise ConfigError(
            "k too small for the planned wrap probability",
            k=k,
            wrap_probability=wrap_probability(k),
            max_wrap_probability=max_wrap_probability,
        )
    local_stddev = noise_multiplier * l2_clip / math.sqrt(min_survivors - max_corrupt)
    scale = heuristic_scale(
        local_stddev=local_stddev,
        l2_clip=l2_clip,
        bits=bits,
        n_clients=n_clients,
        dim=p,
        k=k,
        rho=rho,
        max_inputs=max_inputs,
    )
    scaled_stddev = local_stddev * scale
    rounded_l2 = rounded_l2_norm_bound(l2_clip * scale, beta, p)
    plan = DDPPlan(
        mechanism=mechanism,
        n_clients=n_clients,
        min_survivors=min_survivors,
        dim=p,
        l2_clip=float(l2_clip),
        noise_multiplier=float(noise_multiplier),
        bits=bits,
        beta=float(beta),
        k=float(k),
        rho=float(rho),
        scale=scale,
        local_stddev=local_stddev,
        scaled_stddev=scaled_stddev,
        rounded_l2=rounded_l2,
        rounded_l1=rounded_l1_norm_bound(rounded_l2, p),
        max_inputs=0 if max_inputs is None else max_inputs,
        max_corrupt=max_corrupt,
    )
    if mechanism == "ddgauss":
        if scaled_stddev < MIN_SCALED_STDDEV:
            raise ConfigError(
                "scaled discrete-Gaussian sigma below 1/2: add bits or noise",
                scaled_stddev=scaled_stddev,
                bits=bits,
            )
        tau_d = plan.tau(plan.honest_shares(n_clients)) * p
        if tau_d > MAX_TAU_DIM:
            raise ConfigError(
                "tau * d too large: the sum of discrete Gaussians is far from Gaussian; add bits or noise",
                tau_dim=tau_d,
                limit=MAX_TAU_DIM,
            )
    return plan
