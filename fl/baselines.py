"""Non-federated reference points for the comparison table (FLamby's protocol).

- **pooled**: one model trained on every centre's training rows together,
  normalised with the pooled training statistics; Adam, lr 1e-3, batch 4,
  50 epochs (FLamby's pooled recipe). Scored, as FLamby does, on each
  centre's own (centre-normalised) test set.
- **local-only**: each centre trains its own model with the same recipe on its
  own rows and is scored on its own test set. ``best_local`` is FLamby's
  "best local" figure: the local model whose mean accuracy over *all*
  centres' test sets is highest.

Both use the ``(seed, ...)``-derived torch generators of the trainer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .algorithms import LocalConfig, local_train
from .datasets import FederatedDataset
from .models import make_model
from .trainer import derive_seed, evaluate

__all__ = ["train_pooled", "train_local_only", "BASELINE_EPOCHS", "BASELINE_LR"]

BASELINE_EPOCHS = 50  # FLamby NUM_EPOCHS_POOLED
BASELINE_LR = 1e-3  # FLamby LR
BASELINE_BATCH = 4  # FLamby BATCH_SIZE
_TAG_POOLED, _TAG_LOCAL = 11, 12


def _recipe(n_rows: int, epochs: int) -> LocalConfig:
    steps = epochs * math.ceil(n_rows / BASELINE_BATCH)
    return LocalConfig(steps=steps, lr=BASELINE_LR, batch_size=BASELINE_BATCH, optimizer="adam")


def train_pooled(
    dataset: FederatedDataset, *, model: str = "logreg", seed: int = 42, epochs: int = BASELINE_EPOCHS
) -> dict[str, Any]:
    """Train on the pooled training set; return :func:`fl.trainer.evaluate`'s dict."""
    torch.manual_seed(seed)
    net = make_model(model, dataset.n_features, sim_seed=derive_seed(seed, 0))
    gen = torch.Generator().manual_seed(derive_seed(seed, _TAG_POOLED))
    local_train(
        net, dataset.pooled_x_train, dataset.pooled_y_train, _recipe(len(dataset.pooled_y_train), epochs), generator=gen
    )
    return evaluate(net, dataset)


def train_local_only(
    dataset: FederatedDataset, *, model: str = "logreg", seed: int = 42, epochs: int = BASELINE_EPOCHS
) -> dict[str, Any]:
    """Each centre trains alone; scored on its own test set (plus FLamby's best-local figure)."""
    torch.manual_seed(seed)
    own: dict[str, float] = {}
    best_local = -1.0
    for k, centre in enumerate(dataset.centres):
        net = make_model(model, dataset.n_features, sim_seed=derive_seed(seed, 0))
        gen = torch.Generator().manual_seed(derive_seed(seed, _TAG_LOCAL, k))
        local_train(net, centre.x_train, centre.y_train, _recipe(centre.n_train, epochs), generator=gen)
        scores = evaluate(net, dataset)
        own[centre.name] = scores["centre_accuracy"][centre.name]
        best_local = max(best_local, scores["mean_centre_accuracy"])
    return {
        "centre_accuracy": own,
        "mean_centre_accuracy": float(np.mean(list(own.values()))),
        "best_local_mean_centre_accuracy": best_local,
    }
