"""Models (torch): logistic regression and a small MLP, plus the flat-vector
view that secure aggregation works on.

Both models output one logit per row; train with ``BCEWithLogitsLoss`` and
predict "disease" when the logit is > 0 (probability > 0.5, FLamby's metric).

Initialisation (our choice, not FLamby's): logistic regression
starts at zero, the unique symmetric start of a convex problem, which keeps
runs comparable across seeds; the MLP uses PyTorch's default (Kaiming-uniform)
initialisation drawn from a ``torch.Generator`` seeded by ``sim_seed``.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from secagg.errors import ConfigError

__all__ = [
    "MODELS",
    "LogisticRegression",
    "MLP",
    "make_model",
    "get_flat_params",
    "set_flat_params",
    "n_params",
]

MLP_HIDDEN = 16  # small enough for 30-200 rows per centre


class LogisticRegression(nn.Module):
    """``Linear(d, 1)``; FLamby's Fed-Heart-Disease baseline model."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class MLP(nn.Module):
    """``Linear(d, h) -> ReLU -> Linear(h, 1)``."""

    def __init__(self, n_features: int, hidden: int = MLP_HIDDEN) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


MODELS = ("logreg", "mlp")


def make_model(name: str, n_features: int, *, sim_seed: int = 0) -> nn.Module:
    """Build ``"logreg"`` (zero init) or ``"mlp"`` (default init, seeded). ConfigError otherwise."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {MODELS}", model=name)
    if n_features < 1:
        raise ConfigError(f"n_features must be >= 1, got {n_features}", n_features=n_features)
    if name == "logreg":
        model: nn.Module = LogisticRegression(n_features)
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        return model
    # nn.Linear draws from the global torch RNG: fork it so the caller's stream is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sim_seed)
        return MLP(n_features)


def n_params(model: nn.Module) -> int:
    """Number of scalar parameters (the length of the flat vector)."""
    return sum(p.numel() for p in model.parameters())


def get_flat_params(model: nn.Module) -> NDArray[np.float32]:
    """All parameters, in ``model.parameters()`` order, as one float32 vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to(torch.float32).numpy().copy()


def set_flat_params(model: nn.Module, flat: NDArray[np.floating]) -> None:
    """Load a flat vector (as from :func:`get_flat_params`) back into ``model``.

    Raises ConfigError if the length differs or a value is not finite.
    """
    flat = np.asarray(flat)
    expected = n_params(model)
    if flat.ndim != 1 or flat.shape[0] != expected:
        raise ConfigError(
            f"flat parameter vector has shape {flat.shape}, model needs ({expected},)",
            expected=expected,
            got=flat.shape,
        )
    if not np.all(np.isfinite(flat)):
        raise ConfigError("flat parameter vector has non-finite values")
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            n = p.numel()
            p.copy_(
                torch.from_numpy(np.ascontiguousarray(flat[offset : offset + n], dtype=np.float32)).reshape(p.shape)
            )
            offset += n
