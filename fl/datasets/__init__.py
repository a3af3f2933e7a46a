"""Federated data sets: real hospitals (Fed-Heart-Disease) and simulated splits.

``load_dataset(name, **options)`` is the one entry point; an unknown name or
option raises :class:`~secagg.errors.ConfigError`, never a silent fallback.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from secagg.errors import ConfigError

from .breast_cancer import load_breast_cancer
from .federated import CentreData, FederatedDataset
from .heart_disease import load_heart_disease
from .partition import dirichlet_partition, iid_partition, natural_partition

__all__ = [
    "DATASETS",
    "CentreData",
    "FederatedDataset",
    "load_dataset",
    "load_heart_disease",
    "load_breast_cancer",
    "iid_partition",
    "dirichlet_partition",
    "natural_partition",
]

DATASETS: dict[str, Callable[..., FederatedDataset]] = {
    "heart-disease": load_heart_disease,
    "breast-cancer": load_breast_cancer,
}


def load_dataset(name: str, **options: Any) -> FederatedDataset:
    """Load a federated data set by name (``"heart-disease"``, ``"breast-cancer"``).

    Raises ConfigError for an unknown name or an option the loader does not take;
    the loaders raise DecodeError for corrupted data files.
    """
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}", dataset=name)
    loader = DATASETS[key]
    try:
        inspect.signature(loader).bind(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for dataset {key!r}: {exc}", dataset=key, options=sorted(options)) from exc
    return loader(**options)
