"""Partitioners and the simulated breast-cancer federation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fl.datasets import dirichlet_partition, iid_partition, load_dataset, natural_partition
from secagg.errors import ConfigError


@given(n_rows=st.integers(40, 500), n_clients=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_iid_parts_are_a_disjoint_cover(n_rows, n_clients, seed):
    parts = iid_partition(n_rows, n_clients, rng=np.random.default_rng(seed))
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(n_rows))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@given(seed=st.integers(0, 2**32 - 1), alpha=st.sampled_from([0.3, 1.0, 100.0]))
def test_dirichlet_parts_are_a_disjoint_cover(seed, alpha):
    labels = np.random.default_rng(0).integers(0, 2, 400)
    parts = dirichlet_partition(labels, 4, alpha, rng=np.random.default_rng(seed))
    assert sorted(np.concatenate(parts).tolist()) == list(range(400))
    assert min(map(len, parts)) >= 10


def test_small_alpha_skews_labels_more_than_large_alpha():
    labels = np.repeat([0, 1], 500)

    def spread(alpha):
        rng = np.random.default_rng(1)
        vals = []
        for _ in range(20):
            parts = dirichlet_partition(labels, 4, alpha, rng=rng)
            vals.append(np.std([labels[p].mean() for p in parts]))
        return np.mean(vals)

    assert spread(0.1) > 3 * spread(100.0)


def test_natural_partition_groups_by_id():
    parts = natural_partition(np.array([2, 0, 2, 1, 0]))
    assert {k: v.tolist() for k, v in parts.items()} == {0: [1, 4], 1: [3], 2: [0, 2]}


def test_bad_partition_arguments_are_config_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError):
        iid_partition(10, 4, rng=rng)
    with pytest.raises(ConfigError):
        dirichlet_partition(np.zeros(100), 2, 0.0, rng=rng)
    with pytest.raises(ConfigError):
        natural_partition(np.array([]))


def test_breast_cancer_is_labelled_simulated():
    ds = load_dataset("breast-cancer", n_clients=3, partition="dirichlet", alpha=0.5, sim_seed=3)
    assert ds.simulated and "SIMULATED" in ds.description
    assert [c.name for c in ds.centres] == ["sim-hospital-0", "sim-hospital-1", "sim-hospital-2"]
    assert sum(c.n_train + c.n_test for c in ds.centres) == 569
    assert ds.n_features == 30
    with pytest.raises(ConfigError):
        load_dataset("breast-cancer", partition="pathological")
