"""FedAvg weighting, server optimisers (Reddi et al. 2021), FedProx, FedSGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.aggregation import DELTA_PRECISION, ProtocolAggregator, make_encoder
from fl.algorithms import LocalConfig, ServerOptimizer, local_train, make_strategy, weighted_mean
from fl.models import make_model
from secagg.errors import ConfigError


def test_weighted_mean_is_the_fedavg_formula():
    ups = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([4.0, 4.0])]
    assert np.allclose(weighted_mean(ups, [1, 3, 0]), [0.25, 0.75])
    with pytest.raises(ConfigError):
        weighted_mean(ups, [0, 0, 0])
    with pytest.raises(ConfigError):
        weighted_mean(ups, [1, 2])


@pytest.mark.parametrize("protocol", ["plaintext", "secagg", "secagg+"])
def test_aggregator_with_unequal_weights_returns_the_weighted_mean(protocol):
    rng = np.random.default_rng(0)
    updates = {c: rng.uniform(-0.5, 0.5, 14).astype(np.float32) for c in range(4)}
    weights = {0: 199, 1: 172, 2: 30, 3: 85}
    encoder = make_encoder(max_clients=4, max_weight=199)
    result = ProtocolAggregator(protocol, encoder)(updates, weights, seed=1)
    expected = weighted_mean([updates[c] for c in range(4)], [weights[c] for c in range(4)])
    unweighted = np.mean([updates[c] for c in range(4)], axis=0)
    # each coordinate is off by at most one quantisation step per client, divided by Σn_k
    assert np.max(np.abs(result.aggregate - expected)) <= 4 * 199 * DELTA_PRECISION / 486 + 1e-12
    assert np.max(np.abs(result.aggregate - unweighted)) > 1e-3  # weighting matters here
    assert result.weight_sum == 486 and result.survivors == [0, 1, 2, 3]


def test_aggregator_maps_centre_ids_and_excludes_early_dropouts():
    updates = {1: np.full(3, 0.1, np.float32), 3: np.full(3, 0.3, np.float32), 5: np.full(3, -0.2, np.float32),
               8: np.full(3, 0.6, np.float32)}
    weights = {1: 10, 3: 30, 5: 20, 8: 40}
    encoder = make_encoder(max_clients=4, max_weight=40)
    result = ProtocolAggregator("secagg", encoder)(updates, weights, dropouts={5: "masked_input"}, seed=2)
    assert result.survivors == [1, 3, 8] and result.dropped == [5]
    assert set(result.bytes_up) <= {1, 3, 5, 8}
    assert np.allclose(result.aggregate, (10 * 0.1 + 30 * 0.3 + 40 * 0.6) / 80, atol=1e-5)


@settings(max_examples=30)
@given(deltas=st.lists(st.floats(-1, 1), min_size=3, max_size=3))
def test_adam_yogi_adagrad_follow_reddi_et_al(deltas):
    d = np.array(deltas)
    x0 = np.zeros(3)
    for kind in ("adam", "yogi", "adagrad"):
        opt = ServerOptimizer(kind, lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
        x1 = opt.step(x0, d)
        m = 0.1 * d
        v0 = np.full(3, 1e-6)
        v = {"adam": 0.99 * v0 + 0.01 * d**2, "yogi": v0 - 0.01 * d**2 * np.sign(v0 - d**2),
             "adagrad": v0 + d**2}[kind]
        assert np.allclose(x1, (0.1 * m / (np.sqrt(v) + 1e-3)).astype(np.float32), rtol=1e-5, atol=1e-7)


def test_server_sgd_with_lr_one_is_fedavg():
    opt = ServerOptimizer("sgd", lr=1.0)
    assert np.allclose(opt.step(np.ones(2), np.array([0.5, -0.5])), [1.5, 0.5])


def test_server_state_round_trips():
    a = ServerOptimizer("yogi", lr=0.03)
    a.step(np.zeros(2), np.array([0.1, 0.2]))
    b = ServerOptimizer("yogi", lr=0.03)
    b.load_state_dict(a.state_dict())
    d = np.array([0.3, -0.1])
    assert np.array_equal(a.step(np.ones(2), d), b.step(np.ones(2), d))


def _train(config, seed=0):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 13)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    model = make_model("logreg", 13)
    return local_train(model, x, y, config, generator=torch.Generator().manual_seed(seed))


def test_local_training_is_deterministic_and_reduces_loss():
    a, b = _train(LocalConfig(steps=50, lr=0.1)), _train(LocalConfig(steps=50, lr=0.1))
    assert np.array_equal(a.delta, b.delta) and a.n_samples == 40
    assert a.loss < np.log(2)  # better than the zero model
    assert not np.array_equal(a.delta, _train(LocalConfig(steps=50, lr=0.1), seed=1).delta)


def test_fedprox_term_keeps_the_update_closer_to_the_global_model():
    free = _train(LocalConfig(steps=100, lr=0.1))
    prox = _train(LocalConfig(steps=100, lr=0.1, mu=5.0))
    assert np.linalg.norm(prox.delta) < 0.8 * np.linalg.norm(free.delta)


def test_fedsgd_is_one_full_batch_gradient_step():
    strategy = make_strategy("fedsgd", client_lr=0.5)
    assert strategy.local.steps == 1 and strategy.local.full_batch
    res = _train(strategy.local)
    # from zero, the BCE gradient is X^T (0.5 - y) / n
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 13))
    y = (x[:, 0] > 0).astype(float)
    grad_w = x.T @ (0.5 - y) / 40
    assert np.allclose(res.delta[:13], -0.5 * grad_w, atol=1e-5)


def test_unknown_strategy_and_bad_hyperparameters_are_config_errors():
    with pytest.raises(ConfigError):
        make_strategy("scaffold")
    with pytest.raises(ConfigError):
        LocalConfig(lr=-1.0)
    with pytest.raises(ConfigError):
        ServerOptimizer("adam", lr=0.0)
