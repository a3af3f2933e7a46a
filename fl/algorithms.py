"""Federated optimisation: client-side local training and server-side updates.

Every strategy has the same shape (Reddi et al. 2021, "Adaptive Federated
Optimization", Alg. 1): client k trains locally from the global model x_t and
sends its delta Δ_k = x_k - x_t with weight n_k (its training rows); the
protocol returns the weighted mean Δ = Σ n_k Δ_k / Σ n_k (McMahan et al. 2017,
the FedAvg formula of the seed documents); a server optimiser turns Δ into
x_{t+1}.

- **FedAvg**: local SGD; server step x + η_s Δ with η_s = 1.
- **FedProx** (Li et al. 2020): local loss + μ/2 ||x - x_t||².
- **FedSGD**: one full-batch gradient step per round (Δ_k = -η g_k).
- **FedAdam / FedYogi / FedAdagrad** (Reddi et al. 2021): Δ is the negated
  pseudo-gradient; m ← β1 m + (1-β1) Δ; v ← Adam: β2 v + (1-β2) Δ²,
  Yogi: v - (1-β2) Δ² sign(v - Δ²), Adagrad: v + Δ²; x ← x + η m / (√v + τ).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from secagg.errors import ConfigError

from .models import get_flat_params

__all__ = [
    "STRATEGIES",
    "LocalConfig",
    "LocalResult",
    "Strategy",
    "ServerOptimizer",
    "make_strategy",
    "weighted_mean",
    "local_train",
]

STRATEGIES = ("fedavg", "fedprox", "fedsgd", "fedadam", "fedyogi", "fedadagrad")

# Defaults tuned on Fed-Heart-Disease seeds 42-46 (see the README table).
DEFAULT_CLIENT_LR = 0.001  # FLamby's learning rate for Fed-Heart-Disease
# FedSGD takes one full-batch step per round, so 15 rounds at 1e-3 barely move
# the model; 0.1 was the best of {0.01, 0.1, 1} on seeds 42-46.
FEDSGD_CLIENT_LR = 0.1
DEFAULT_BATCH_SIZE = 4  # FLamby's batch size for Fed-Heart-Disease
DEFAULT_FEDPROX_MU = 0.01  # FLamby's μ
#: Server η per adaptive strategy: best of the grid {0.01, 0.03, 0.1} on
#: Fed-Heart-Disease, seeds 42-46 (Adagrad's v only grows, so it wants a larger η).
ADAPTIVE_SERVER_LR = {"fedadam": 0.03, "fedyogi": 0.03, "fedadagrad": 0.1}
ADAPTIVE_BETA1 = 0.9  # Reddi et al. 2021, §5
ADAPTIVE_BETA2 = 0.99
ADAPTIVE_TAU = 1e-3
LOCAL_OPTIMIZERS = ("sgd", "adam")  # adaptivity degree τ, Reddi et al. grid includes 1e-3


def weighted_mean(updates: list[NDArray[np.floating]], weights: list[float]) -> NDArray[np.float64]:
    """Plain Σ n_k u_k / Σ n_k in float64: the reference the protocols must match.

    Raises ConfigError for empty input, mismatched lengths, negative weights or
    a zero weight sum.
    """
    if not updates or len(updates) != len(weights):
        raise ConfigError(
            "need one weight per update and at least one update", n_updates=len(updates), n_weights=len(weights)
        )
    w = np.asarray(weights, dtype=np.float64)
    if np.any(w < 0) or w.sum() <= 0:
        raise ConfigError("weights must be >= 0 with a positive sum", weights=list(weights))
    stacked = np.stack([np.asarray(u, dtype=np.float64) for u in updates])
    return (w[:, None] * stacked).sum(axis=0) / w.sum()


@dataclass(frozen=True)
class LocalConfig:
    """Client-side training: ``steps`` steps of ``batch_size`` rows at ``lr``.

    ``optimizer`` is ``"sgd"`` (plain SGD, no momentum: the federated clients)
    or ``"adam"`` (FLamby's pooled and local-only baselines).
    ``mu > 0`` adds FedProx's proximal term; ``full_batch`` makes each step use
    the whole local training set (FedSGD uses one such step).
    """

    steps: int = 100
    lr: float = DEFAULT_CLIENT_LR
    batch_size: int = DEFAULT_BATCH_SIZE
    mu: float = 0.0
    full_batch: bool = False
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if self.optimizer not in LOCAL_OPTIMIZERS:
            raise ConfigError(f"unknown local optimiser {self.optimizer!r}", optimizer=self.optimizer)
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("local steps and batch size must be >= 1", steps=self.steps, batch_size=self.batch_size)
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise ConfigError(f"client learning rate must be > 0, got {self.lr}", lr=self.lr)
        if self.mu < 0:
            raise ConfigError(f"FedProx mu must be >= 0, got {self.mu}", mu=self.mu)


@dataclass(frozen=True)
class LocalResult:
    """A client's delta (float32, x_k - x_t), its mean training loss, its weight n_k."""

    delta: NDArray[np.float32]
    loss: float
    n_samples: int


class _SGDStep:
    """Plain SGD, p ← p - lr·g. Written out rather than ``torch.optim.SGD``,
    whose first construction imports torch._dynamo (~3 s per process)."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float) -> None:
        self.params, self.lr = params, lr

    @torch.no_grad()
    def __call__(self, grads: tuple[torch.Tensor, ...]) -> None:
        for p, g in zip(self.params, grads):
            p.sub_(g, alpha=self.lr)


class _AdamStep:
    """Adam (Kingma & Ba 2015) with torch.optim.Adam's defaults: β=(0.9, 0.999),
    ε=1e-8, bias correction, no weight decay."""

    BETA1, BETA2, EPS = 0.9, 0.999, 1e-8

    def __init__(self, params: Sequence[torch.Tensor], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def __call__(self, grads: tuple[torch.Tensor, ...]) -> None:
        self.t += 1
        c1, c2 = 1 - self.BETA1**self.t, 1 - self.BETA2**self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.mul_(self.BETA1).add_(g, alpha=1 - self.BETA1)
            v.mul_(self.BETA2).addcmul_(g, g, value=1 - self.BETA2)
            denom = (v / c2).sqrt_().add_(self.EPS)
            p.addcdiv_(m, denom, value=-self.lr / c1)


def local_train(
    model: nn.Module,
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    config: LocalConfig,
    *,
    generator: torch.Generator,
) -> LocalResult:
    """Train ``model`` in place from its current (global) parameters; return the delta.

    Mini-batches are drawn by reshuffling the local rows each epoch with the
    seeded ``generator`` (simulation randomness only).
    """
    start = get_flat_params(model)
    params = [p for p in model.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in params]
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    n = xt.shape[0]
    step = _AdamStep(params, config.lr) if config.optimizer == "adam" else _SGDStep(params, config.lr)
    batch = n if config.full_batch else min(config.batch_size, n)
    order = torch.randperm(n, generator=generator)
    pos = 0
    total_loss = torch.zeros(())
    model.train()
    for _ in range(config.steps):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=generator), 0
        idx = order[pos : pos + batch]
        pos += batch
        loss = nn.functional.binary_cross_entropy_with_logits(model(xt[idx]), yt[idx])
        total_loss += loss.detach()
        if config.mu > 0:
            prox = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor))
            loss = loss + 0.5 * config.mu * prox
        step(torch.autograd.grad(loss, params))
    delta = (get_flat_params(model) - start).astype(np.float32)
    return LocalResult(delta=delta, loss=float(total_loss) / config.steps, n_samples=int(n))


class ServerOptimizer:
    """Turns the aggregated delta into the next global model; its state is checkpointable.

    ``kind`` is ``"sgd"`` (FedAvg/FedProx/FedSGD), ``"adam"``, ``"yogi"`` or ``"adagrad"``.
    """

    KINDS = ("sgd", "adam", "yogi", "adagrad")

    def __init__(
        self,
        kind: str = "sgd",
        *,
        lr: float = 1.0,
        beta1: float = ADAPTIVE_BETA1,
        beta2: float = ADAPTIVE_BETA2,
        tau: float = ADAPTIVE_TAU,
    ) -> None:
        if kind not in self.KINDS:
            raise ConfigError(f"unknown server optimiser {kind!r}", kind=kind)
        if not (lr > 0 and tau > 0 and 0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ConfigError(
                "server optimiser needs lr > 0, tau > 0, betas in [0, 1)", lr=lr, tau=tau, beta1=beta1, beta2=beta2
            )
        self.kind, self.lr, self.beta1, self.beta2, self.tau = kind, lr, beta1, beta2, tau
        self.m: NDArray[np.float64] | None = None
        self.v: NDArray[np.float64] | None = None

    def step(self, params: NDArray[np.floating], delta: NDArray[np.floating]) -> NDArray[np.float32]:
        """x_{t+1} from x_t and the mean delta Δ (float32 out; float64 inside)."""
        x = np.asarray(params, dtype=np.float64)
        d = np.asarray(delta, dtype=np.float64)
        if x.shape != d.shape:
            raise ConfigError("delta and parameters differ in shape", params=x.shape, delta=d.shape)
        if self.kind == "sgd":
            return (x + self.lr * d).astype(np.float32)
        if self.m is None or self.v is None:
            self.m = np.zeros_like(x)
            self.v = np.full_like(x, self.tau**2)  # v_{-1} ≥ τ², Reddi et al. Alg. 2
        self.m = self.beta1 * self.m + (1 - self.beta1) * d
        d2 = d * d
        if self.kind == "adam":
            self.v = self.beta2 * self.v + (1 - self.beta2) * d2
        elif self.kind == "yogi":
            self.v = self.v - (1 - self.beta2) * d2 * np.sign(self.v - d2)
        else:
            self.v = self.v + d2
        return (x + self.lr * self.m / (np.sqrt(self.v) + self.tau)).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "lr": self.lr,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "tau": self.tau,
            "m": None if self.m is None else self.m.copy(),
            "v": None if self.v is None else self.v.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ConfigError("checkpoint is for another server optimiser", expected=self.kind, got=state.get("kind"))
        self.m = None if state["m"] is None else np.asarray(state["m"], dtype=np.float64).copy()
        self.v = None if state["v"] is None else np.asarray(state["v"], dtype=np.float64).copy()


@dataclass(frozen=True)
class Strategy:
    """A named pair (client-side LocalConfig, server optimiser settings)."""

    name: str
    local: LocalConfig
    server_kind: str = "sgd"
    server_lr: float = 1.0
    server_options: dict[str, float] = field(default_factory=dict)

    def make_server_optimizer(self) -> ServerOptimizer:
        return ServerOptimizer(self.server_kind, lr=self.server_lr, **self.server_options)


def make_strategy(
    name: str,
    *,
    local_steps: int = 100,
    client_lr: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    mu: float | None = None,
    server_lr: float | None = None,
) -> Strategy:
    """Build a strategy by name (one of :data:`STRATEGIES`); ConfigError otherwise.

    FedSGD ignores ``local_steps``/``batch_size``: one full-batch step per round.
    ``client_lr=None`` means 1e-3 (FedSGD: 0.1); ``server_lr=None`` means 1
    (adaptive strategies: :data:`ADAPTIVE_SERVER_LR`).
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {STRATEGIES}", strategy=name)
    if client_lr is None:
        client_lr = FEDSGD_CLIENT_LR if key == "fedsgd" else DEFAULT_CLIENT_LR
    if key == "fedsgd":
        local = LocalConfig(steps=1, lr=client_lr, batch_size=batch_size, full_batch=True)
        return Strategy(key, local, "sgd", 1.0 if server_lr is None else server_lr)
    prox = (DEFAULT_FEDPROX_MU if mu is None else mu) if key == "fedprox" else 0.0
    local = LocalConfig(steps=local_steps, lr=client_lr, batch_size=batch_size, mu=prox)
    if key in ("fedavg", "fedprox"):
        return Strategy(key, local, "sgd", 1.0 if server_lr is None else server_lr)
    kind = key.removeprefix("fed")
    return Strategy(key, local, kind, ADAPTIVE_SERVER_LR[key] if server_lr is None else server_lr)
