"""Partitioners: split one data set's row indices into simulated clients.

- :func:`iid_partition`: a seeded shuffle cut into near-equal parts;
- :func:`dirichlet_partition`: label skew, each class spread over clients
  with proportions drawn from Dirichlet(alpha) (Hsu et al. 2019); small alpha
  means strong skew;
- :func:`natural_partition`: one client per existing group id (e.g. hospital).

Randomness comes only from the explicitly seeded ``rng`` argument: these are
simulation tools, never security-relevant.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigError

__all__ = ["iid_partition", "dirichlet_partition", "natural_partition", "PARTITIONERS"]

PARTITIONERS = ("iid", "dirichlet")
#: Resample Dirichlet proportions until every client has this many rows; a
#: client with fewer rows cannot hold a train/test split.
MIN_ROWS_PER_CLIENT = 10
MAX_DIRICHLET_TRIES = 1000


def _check_clients(n_rows: int, n_clients: int) -> None:
    if not isinstance(n_clients, (int, np.integer)) or n_clients < 1:
        raise ConfigError(f"n_clients must be a positive integer, got {n_clients!r}", n_clients=n_clients)
    if n_rows < n_clients * MIN_ROWS_PER_CLIENT:
        raise ConfigError(
            f"{n_rows} rows cannot give {n_clients} clients {MIN_ROWS_PER_CLIENT} rows each",
            n_rows=n_rows,
            n_clients=n_clients,
        )


def iid_partition(n_rows: int, n_clients: int, *, rng: np.random.Generator) -> list[NDArray[np.intp]]:
    """Shuffle ``range(n_rows)`` with ``rng`` and cut it into ``n_clients`` near-equal sorted parts."""
    _check_clients(n_rows, n_clients)
    perm = rng.permutation(n_rows)
    return [np.sort(part) for part in np.array_split(perm, n_clients)]


def dirichlet_partition(
    labels: NDArray[np.integer] | NDArray[np.floating],
    n_clients: int,
    alpha: float,
    *,
    rng: np.random.Generator,
) -> list[NDArray[np.intp]]:
    """Label-skewed split: for each class, proportions ~ Dirichlet(alpha * 1).

    Redraws (up to 1000 times) until every client has at least 10 rows;
    raises ConfigError if alpha <= 0 or no such draw is found.
    """
    labels = np.asarray(labels)
    _check_clients(len(labels), n_clients)
    if not np.isfinite(alpha) or alpha <= 0:
        raise ConfigError(f"Dirichlet alpha must be > 0, got {alpha!r}", alpha=alpha)
    classes = np.unique(labels)
    for _ in range(MAX_DIRICHLET_TRIES):
        parts: list[list[int]] = [[] for _ in range(n_clients)]
        for cls in classes:
            idx = rng.permutation(np.flatnonzero(labels == cls))
            props = rng.dirichlet(np.full(n_clients, float(alpha)))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].extend(chunk.tolist())
        if min(len(p) for p in parts) >= MIN_ROWS_PER_CLIENT:
            return [np.sort(np.asarray(p, dtype=np.intp)) for p in parts]
    raise ConfigError(
        f"Dirichlet({alpha}) never gave every one of {n_clients} clients {MIN_ROWS_PER_CLIENT} rows; "
        "raise alpha or lower the number of clients",
        alpha=alpha,
        n_clients=n_clients,
    )


def natural_partition(groups: NDArray[np.integer] | list[object]) -> dict[object, NDArray[np.intp]]:
    """One part per distinct group id, in sorted order of the ids: id -> sorted row indices."""
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.size == 0:
        raise ConfigError("groups must be a non-empty 1-D array", shape=groups.shape)
    return {g.item() if hasattr(g, "item") else g: np.flatnonzero(groups == g) for g in np.unique(groups)}
