"""Breast cancer (Wisconsin diagnostic, scikit-learn's bundled copy), split
into **simulated** hospitals.

WDBC comes from a single site; the centres here are an artificial IID or
Dirichlet label-skew split (see :mod:`fl.datasets.partition`) and are named
``sim-hospital-<i>`` so that nobody mistakes them for real institutions.
Each simulated centre gets a stratified 75/25 train/test split and is
normalised with its own training statistics, as in Fed-Heart-Disease.
Label: 1 = malignant.
"""

from __future__ import annotations

import numpy as np

from secagg.errors import ConfigError, require_extra

from .federated import CentreData, FederatedDataset, standardise, train_statistics
from .partition import PARTITIONERS, dirichlet_partition, iid_partition

__all__ = ["load_breast_cancer", "TEST_FRACTION"]

TEST_FRACTION = 0.25
DEFAULT_CLIENTS = 4
DEFAULT_ALPHA = 0.5


def load_breast_cancer(
    *,
    n_clients: int = DEFAULT_CLIENTS,
    partition: str = "iid",
    alpha: float = DEFAULT_ALPHA,
    sim_seed: int = 0,
    normalize: bool = True,
) -> FederatedDataset:
    """WDBC (569 x 30) split into ``n_clients`` simulated centres.

    ``partition`` is ``"iid"`` or ``"dirichlet"`` (label skew with ``alpha``);
    ``sim_seed`` seeds the split. Raises ConfigError on a bad argument.
    """
    if partition not in PARTITIONERS:
        raise ConfigError(f"unknown partition {partition!r}; choose one of {PARTITIONERS}", partition=partition)
    datasets = require_extra("sklearn.datasets", "fl")
    model_selection = require_extra("sklearn.model_selection", "fl")
    bunch = datasets.load_breast_cancer()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = (np.asarray(bunch.target) == 0).astype(np.float64)  # sklearn: 0 = malignant
    rng = np.random.default_rng(sim_seed)
    if partition == "iid":
        parts = iid_partition(len(y), n_clients, rng=rng)
    else:
        parts = dirichlet_partition(y, n_clients, alpha, rng=rng)

    centres, pooled_x, pooled_y = [], [], []
    for i, idx in enumerate(parts):
        xc, yc = x[idx], y[idx]
        _, counts = np.unique(yc, return_counts=True)
        stratify = yc if len(counts) > 1 and counts.min() >= 2 else None
        tr, te = model_selection.train_test_split(
            np.arange(len(yc)), test_size=TEST_FRACTION, random_state=sim_seed, shuffle=True, stratify=stratify
        )
        tr, te = np.sort(tr), np.sort(te)
        x_tr, x_te = xc[tr], xc[te]
        pooled_x.append(x_tr)
        pooled_y.append(yc[tr])
        if normalize:
            mean, std = train_statistics(x_tr)
            x_tr, x_te = standardise(x_tr, mean, std), standardise(x_te, mean, std)
        centres.append(
            CentreData(
                f"sim-hospital-{i}",
                x_tr.astype(np.float32),
                yc[tr].astype(np.float32),
                x_te.astype(np.float32),
                yc[te].astype(np.float32),
            )
        )
    px = np.concatenate(pooled_x)
    if normalize:
        mean, std = train_statistics(px)
        px = standardise(px, mean, std)
    return FederatedDataset(
        name="breast-cancer",
        centres=tuple(centres),
        pooled_x_train=px.astype(np.float32),
        pooled_y_train=np.concatenate(pooled_y).astype(np.float32),
        simulated=True,
        description=f"WDBC breast cancer, SIMULATED {partition} split into {n_clients} centres",
        meta={"partition": partition, "alpha": alpha if partition == "dirichlet" else None, "sim_seed": sim_seed},
    )
