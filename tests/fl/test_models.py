"""Models and their flat-vector view."""

from __future__ import annotations

import numpy as np
import pytest

from fl.models import get_flat_params, make_model, n_params, set_flat_params
from secagg.errors import ConfigError


@pytest.mark.parametrize("name, size", [("logreg", 14), ("mlp", 13 * 16 + 16 + 16 + 1)])
def test_flat_vector_round_trips(name, size):
    model = make_model(name, 13, sim_seed=7)
    flat = get_flat_params(model)
    assert flat.dtype == np.float32 and flat.shape == (size,) == (n_params(model),)
    new = np.arange(size, dtype=np.float32) / 7
    set_flat_params(model, new)
    assert np.array_equal(get_flat_params(model), new)


def test_logreg_starts_at_zero_and_mlp_init_is_seeded():
    assert not get_flat_params(make_model("logreg", 13)).any()
    a, b = (get_flat_params(make_model("mlp", 13, sim_seed=s)) for s in (1, 1))
    c = get_flat_params(make_model("mlp", 13, sim_seed=2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_vectors_and_names_are_config_errors():
    model = make_model("logreg", 13)
    with pytest.raises(ConfigError):
        set_flat_params(model, np.zeros(13))
    with pytest.raises(ConfigError):
        set_flat_params(model, np.full(14, np.nan))
    with pytest.raises(ConfigError):
        make_model("resnet", 13)
