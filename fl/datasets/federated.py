"""Value types shared by every dataset loader: one centre, one federation.

A :class:`FederatedDataset` is a tuple of :class:`CentreData`, each with its own
train/test arrays already preprocessed (float32 features, float32 0/1 labels).
Loaders return them; partitioners build them; the trainer only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigError

__all__ = ["CentreData", "FederatedDataset", "standardise"]

# FLamby adds this to the standard deviation before dividing, so that a
# constant feature (Switzerland's cholesterol is all 0) maps to 0, not NaN.
STD_EPSILON = 1e-9


@dataclass(frozen=True)
class CentreData:
    """One centre (hospital): its training and test split.

    ``x_*`` are float32 ``(n, d)``; ``y_*`` are float32 ``(n,)`` in {0, 1}.
    """

    name: str
    x_train: NDArray[np.float32]
    y_train: NDArray[np.float32]
    x_test: NDArray[np.float32]
    y_test: NDArray[np.float32]

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise ConfigError(
                    f"centre {self.name!r}: {split} arrays have shapes {x.shape} and {y.shape}",
                    centre=self.name,
                )

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])


@dataclass(frozen=True)
class FederatedDataset:
    """A federation of centres plus the pooled training set used as a baseline.

    ``pooled_x_train``/``pooled_y_train`` hold every centre's training rows,
    normalised with the *pooled* training statistics (FLamby's pooled
    protocol); the pooled baseline is still scored on each centre's own test
    set. ``simulated`` is True when the centres are an artificial split of a
    single-site data set (never report those as real hospitals).
    """

    name: str
    centres: tuple[CentreData, ...]
    pooled_x_train: NDArray[np.float32]
    pooled_y_train: NDArray[np.float32]
    simulated: bool
    description: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.centres[0].x_train.shape[1])

    @property
    def centre_names(self) -> list[str]:
        return [c.name for c in self.centres]

    def total_rows(self) -> int:
        return sum(c.n_train + c.n_test for c in self.centres)


def standardise(x: NDArray[np.floating], mean: NDArray[np.floating], std: NDArray[np.floating]) -> NDArray[np.float32]:
    """``(x - mean) / (std + 1e-9)`` as float32 (FLamby's normalisation)."""
    return ((x - mean) / (std + STD_EPSILON)).astype(np.float32)


def train_statistics(x_train: NDArray[np.floating]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-feature mean and unbiased (ddof=1, as ``torch.std``) standard deviation."""
    x = np.asarray(x_train, dtype=np.float64)
    if x.shape[0] < 2:
        raise ConfigError("need at least 2 training rows to normalise", rows=int(x.shape[0]))
    return x.mean(axis=0), x.std(axis=0, ddof=1)
