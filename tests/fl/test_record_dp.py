"""Record-level DP training: Opacus per-sample gradients, Poisson sampling, distributed DP-SGD."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fl.cli import app
from fl.datasets import load_dataset
from fl.models import get_flat_params, make_model, set_flat_params
from fl.privacy import DPAggregator
from fl.record_dp import PerExampleGradients, expected_batch, per_example_gradients, poisson_sample
from fl.trainer import TrainConfig, Trainer
from secagg.errors import ConfigError
from tests.fl.test_dp_noise import outsider_denoises

pytest.importorskip("opacus")


def loop_gradients(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    rows = []
    for i in range(len(x)):
        logits = model(torch.from_numpy(x[i:i + 1]))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.from_numpy(y[i:i + 1]).view_as(logits), reduction="sum")
        grads = torch.autograd.grad(loss, list(model.parameters()))
        rows.append(torch.cat([g.reshape(-1) for g in grads]).double().numpy())
    return np.array(rows).reshape(len(x), -1)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["logreg", "mlp"]), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_opacus_per_sample_gradients_equal_one_backward_pass_per_record(name: str, b: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model = make_model(name, 13, sim_seed=seed)
    set_flat_params(model, rng.normal(size=get_flat_params(model).size).astype(np.float32) * 0.3)
    x = rng.normal(size=(b, 13)).astype(np.float32)
    y = (rng.random(b) < 0.5).astype(np.float32)
    ours = per_example_gradients(model, x, y)
    assert ours.shape == (b, get_flat_params(model).size)
    assert np.allclose(ours, loop_gradients(model, x, y), atol=1e-5)


def test_per_sample_gradients_of_an_empty_batch_and_after_unwrapping() -> None:
    model = make_model("logreg", 13)
    grads = PerExampleGradients(model)
    assert grads(np.zeros((0, 13)), np.zeros(0)).shape == (0, 14)
    grads.close()
    model(torch.zeros(2, 13)).sum().backward()  # a plain module again
    assert not hasattr(next(model.parameters()), "grad_sample") or next(model.parameters()).grad_sample is None


def test_poisson_sampling_keeps_each_record_with_probability_q() -> None:
    rng = np.random.default_rng(0)
    sizes = [len(poisson_sample(1000, 0.05, rng=rng)) for _ in range(400)]
    assert abs(np.mean(sizes) - 50) < 6 * np.sqrt(1000 * 0.05 * 0.95 / 400)
    assert np.var(sizes) == pytest.approx(1000 * 0.05 * 0.95, rel=0.25)
    first = poisson_sample(500, 0.5)
    assert not np.array_equal(first, poisson_sample(500, 0.5))  # CSPRNG by default: fresh every call
    assert np.array_equal(poisson_sample(30, 0.3, rng=np.random.default_rng(7)),
                          poisson_sample(30, 0.3, rng=np.random.default_rng(7)))
    assert np.array_equal(poisson_sample(10, 1.0), np.arange(10)) and poisson_sample(0, 0.5).size == 0
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ConfigError):
            poisson_sample(10, bad)
    with pytest.raises(ConfigError):
        expected_batch(0.0, 10)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(local_steps=5), "local_steps=1"),
        (dict(strategy="fedprox"), "proximal"),
        (dict(dp_sampling_rate=0.0), "dp_sampling_rate"),
    ],
)
def test_record_level_config_errors(kw, message) -> None:
    args = dict(local_steps=1, dp_epsilon=4.0, dp_delta=1e-5, dp_unit="record")
    args.update(kw)
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**args)


def test_dp_options_need_dp() -> None:
    with pytest.raises(ConfigError, match="need dp_epsilon"):
        TrainConfig(dp_unit="record", local_steps=1)
    with pytest.raises(ConfigError, match="record-level"):
        TrainConfig(dp_epsilon=4.0, dp_delta=1e-5, dp_unit="client", dp_sampling_rate=0.1)
    with pytest.raises(ConfigError, match="unknown DP unit"):
        TrainConfig(dp_epsilon=4.0, dp_delta=1e-5, dp_unit="patient")


@pytest.mark.parametrize(
    "options,unit,steps",
    [
        ({}, "client", 100),  # no DP: the unit means nothing
        ({"dp_epsilon": 4.0, "dp_delta": 1e-5}, "record", 1),  # DP: record-level, one DP-SGD step per round
        ({"dp_epsilon": 4.0, "dp_delta": 1e-5, "local_steps": 1}, "record", 1),
        ({"dp_epsilon": 4.0, "dp_delta": 1e-5, "local_steps": 5}, "client", 5),  # only client-level runs 5 steps
        ({"dp_epsilon": 4.0, "dp_delta": 1e-5, "dp_unit": "client"}, "client", 100),
        ({"local_steps": 7}, "client", 7),
    ],
)
def test_dp_unit_and_local_steps_defaults_resolve_in_place(options: dict, unit: str, steps: int) -> None:
    cfg = TrainConfig(**options)
    assert (cfg.dp_unit, cfg.local_steps, cfg.steps_per_round) == (unit, steps, steps)
    assert (cfg.to_dict()["dp_unit"], cfg.to_dict()["local_steps"]) == (unit, steps)  # what checkpoints record
    assert TrainConfig(**cfg.to_dict()) == cfg  # a resolved config rebuilds to itself


def test_record_unit_asked_for_with_several_local_steps_is_refused() -> None:
    with pytest.raises(ConfigError, match="local_steps=1"):
        TrainConfig(dp_epsilon=4.0, dp_delta=1e-5, dp_unit="record", local_steps=5)


def test_record_level_training_through_secagg_plus_meets_the_target_per_hospital() -> None:
    cfg = TrainConfig(protocol="secagg+", rounds=40, local_steps=1, dp_epsilon=4.0, dp_delta=1e-5,
                      dp_unit="record", dropout_rate=0.2, seed=3)
    trainer = Trainer(cfg)
    result = trainer.run()
    agg = trainer.aggregator
    assert agg.settings["unit"] == "record (patient)" and agg.settings["n_records"] == 486
    assert agg.min_survivors == 3  # 4 hospitals, 20 % dropouts planned for
    done = [r for r in result.rounds if not r["aborted"]]
    assert done and all(r["epsilon"] <= 4.0 + 1e-9 for r in done)
    eps = [r["epsilon"] for r in done]
    assert eps == sorted(eps)
    ledger = agg.privacy_report([c.name for c in trainer.dataset.centres])
    for name, entry in ledger.items():
        summed = sum(1 for r in done if trainer.dataset.centres.index(
            next(c for c in trainer.dataset.centres if c.name == name)) in r["survivors"])
        assert entry["rounds"] == summed
        assert entry["epsilon"] <= eps[-1] + 1e-9 < entry["epsilon_if_exposed"]
    assert all(r["clipped_records"] >= 0 and set(r["records"]) == {"0", "1", "2", "3"} for r in result.rounds)
    assert result.final["mean_centre_accuracy"] > 0.6  # 40 noisy steps from zero: well above chance


def test_record_level_plaintext_and_secagg_plus_release_the_same_model() -> None:
    """Same seed → same samples, coins and noise (insecure option): masking changes nothing the server computes."""
    common = dict(rounds=5, local_steps=1, dp_epsilon=8.0, dp_delta=1e-5, dp_unit="record", seed=9,
                  insecure_reproducible_noise=True)
    plain = Trainer(TrainConfig(protocol="plaintext", **common)).run()
    masked = Trainer(TrainConfig(protocol="secagg+", **common)).run()
    assert np.array_equal(plain.params, masked.params) and np.any(plain.params != 0)


def test_cli_record_level_run_reports_epsilon_per_centre(tmp_path) -> None:
    out = tmp_path / "rec"
    result = CliRunner().invoke(app, ["run", "--dp-epsilon", "6", "--dp-delta", "1e-5", "--dp-unit", "record",
                                      "--rounds", "3", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["local_steps"] == 1 and report["config"]["dp_unit"] == "record"
    per_centre = report["dp"]["per_centre"]
    assert set(per_centre) == {"Cleveland", "Hungary", "Switzerland", "Long Beach VA"}
    assert all(0 < v["epsilon"] <= 6.0 for v in per_centre.values())
    assert "if its masked input were unmasked alone" in " ".join(result.output.split())


class _Stop(Exception):
    pass


def _stop_after_two(record):
    if record["round"] == 2:
        raise _Stop


def _interrupted_then_resumed(cfg, out_dir):
    with pytest.raises(_Stop):
        Trainer(cfg, out_dir=out_dir).run(on_round=_stop_after_two)
    checkpoint = json.loads((out_dir / "checkpoint.json").read_text())
    with np.load(out_dir / "checkpoint.npz") as z:
        at_two = z["params"].copy()
    again = Trainer(cfg, out_dir=out_dir)
    return again, again.run(resume=True), checkpoint, at_two


def test_a_resumed_record_level_run_keeps_its_ledger_and_draws_fresh_noise(tmp_path) -> None:
    """CSPRNG noise cannot be replayed: the ledger and ε match an uninterrupted run, the noise does not."""
    cfg = TrainConfig(protocol="secagg+", rounds=4, local_steps=1, dp_epsilon=6.0, dp_delta=1e-5,
                      dp_unit="record", dropout_rate=0.3, seed=21)
    full_trainer = Trainer(cfg)
    full = full_trainer.run()
    again, resumed, checkpoint, at_two = _interrupted_then_resumed(cfg, tmp_path)
    assert [r["round"] for r in resumed.rounds] == [1, 2, 3, 4]
    # the dropout schedule is simulation, so both runs sum the same hospitals and spend the same ε
    assert [r["survivors"] for r in resumed.rounds] == [r["survivors"] for r in full.rounds]
    assert [r.get("epsilon") for r in resumed.rounds] == [r.get("epsilon") for r in full.rounds]
    assert again.aggregator.privacy_report() == full_trainer.aggregator.privacy_report()
    assert again.aggregator.dp.budget.spent == pytest.approx(full_trainer.aggregator.dp.budget.spent)
    # the first two rounds are the checkpoint's, the last two drew fresh noise
    assert resumed.rounds[:2] == checkpoint["rounds"] and not np.array_equal(resumed.params, at_two)
    assert not np.array_equal(full.params, resumed.params) and np.all(np.isfinite(resumed.params))
    # the checkpoint holds the released model, the optimiser state and the ledger's inputs: no noise, no seed
    with np.load(tmp_path / "checkpoint.npz") as z:
        assert set(z.files) <= {"params", "round", "server_m", "server_v"}


def test_a_resumed_record_level_run_with_insecure_noise_equals_the_uninterrupted_one(tmp_path) -> None:
    cfg = TrainConfig(protocol="secagg+", rounds=4, local_steps=1, dp_epsilon=6.0, dp_delta=1e-5,
                      dp_unit="record", dropout_rate=0.3, seed=21, insecure_reproducible_noise=True)
    full_trainer = Trainer(cfg)
    full = full_trainer.run()
    again, resumed, _, _ = _interrupted_then_resumed(cfg, tmp_path)
    assert np.array_equal(full.params, resumed.params)
    assert again.aggregator.privacy_report() == full_trainer.aggregator.privacy_report()


@pytest.mark.parametrize("protocol", ["paillier", "ckks"])
def test_client_level_dp_over_he_releases_the_same_model_as_over_masking(protocol: str) -> None:
    """DP noise goes into the encoded integers before encryption; the HE sum reduced mod 2^bits is the ring sum."""
    common = dict(rounds=2, local_steps=3, dp_epsilon=8.0, dp_delta=1e-5, seed=5, dropout_rate=0.25,
                  insecure_reproducible_noise=True)
    masked = Trainer(TrainConfig(protocol="secagg+", **common)).run()
    he = Trainer(TrainConfig(protocol=protocol, **common)).run()
    assert np.array_equal(masked.params, he.params) and np.any(he.params != 0)
    assert [r.get("epsilon") for r in masked.rounds] == [r.get("epsilon") for r in he.rounds]


def test_record_level_dp_over_paillier_releases_the_same_model_as_over_masking() -> None:
    common = dict(rounds=3, local_steps=1, dp_epsilon=8.0, dp_delta=1e-5, dp_unit="record", seed=6,
                  insecure_reproducible_noise=True)
    masked = Trainer(TrainConfig(protocol="secagg", **common)).run()
    he = Trainer(TrainConfig(protocol="paillier", **common)).run()
    assert np.array_equal(masked.params, he.params) and np.any(he.params != 0)


def _clipped_gradient_sum(model: torch.nn.Module, dataset, clip: float) -> np.ndarray:
    """Σ over every training record of its per-record gradient, L2-clipped to ``clip`` (sampling rate 1)."""
    total = 0.0
    for centre in dataset.centres:
        rows = per_example_gradients(model, centre.x_train, centre.y_train)
        total = total + np.sum(rows * np.minimum(1.0, clip / np.linalg.norm(rows, axis=1))[:, None], axis=0)
    return total


@pytest.mark.parametrize("protocol", ["plaintext", "secagg+"])
def test_one_record_level_round_takes_the_documented_dp_sgd_step(protocol, monkeypatch) -> None:
    """x₁ = x₀ - lr · (noisy Σ clipped per-record gradients) / (q N), for every hospital's records summed once."""
    heart = load_dataset("heart-disease")
    lr, q = 0.3, 1.0
    cfg = TrainConfig(protocol=protocol, rounds=1, local_steps=1, dp_epsilon=8.0, dp_delta=1e-5,
                      dp_unit="record", dp_sampling_rate=q, client_lr=lr, seed=4, insecure_reproducible_noise=True)
    released = []
    call = DPAggregator.__call__
    monkeypatch.setattr(DPAggregator, "__call__",
                        lambda self, *a, **kw: released.append(call(self, *a, **kw)) or released[-1])
    trainer = Trainer(cfg, dataset=heart)
    x1 = trainer.run().params
    torch.manual_seed(cfg.seed)
    model = make_model(cfg.model, heart.n_features)  # logistic regression starts at zero
    x0 = get_flat_params(model)
    n_records = sum(c.n_train for c in heart.centres)
    noisy_sum = np.asarray(released[0].aggregate)
    # exact against what the protocol released
    assert np.array_equal(x1, (x0 - lr / (q * n_records) * noisy_sum).astype(np.float32))
    # and the released value is the noisy sum itself: the clipped gradient sum plus the four silos' noise
    # (re-derived here from the seed, which the insecure option allows), up to the encoder's rounding
    denoised = outsider_denoises(cfg, heart, noisy_sum, released[0].survivors)
    truth = _clipped_gradient_sum(model, heart, trainer.dp_l2_clip)
    scale = trainer.aggregator.dp.round_encoder().scale
    assert np.max(np.abs(denoised - truth)) <= n_records * 4 / scale
    step = x1.astype(np.float64) - x0
    expected = -lr / (q * n_records) * (truth + (noisy_sum - denoised))
    assert np.dot(step, expected) / np.dot(expected, expected) == pytest.approx(1.0, abs=1e-4)
