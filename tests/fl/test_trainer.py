"""The round loop: determinism, resume, secure-equals-plaintext bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fl.aggregation import ProtocolAggregator, make_encoder
from fl.datasets import load_dataset
from fl.trainer import Trainer, TrainConfig
from secagg.errors import ConfigError

TIMING_KEYS = ("seconds", "train_seconds", "aggregate_seconds", "stage_seconds")
# Small runs keep the suite fast; each round still goes through the protocol.
FAST = dict(rounds=3, local_steps=5)


@pytest.fixture(scope="module")
def heart():
    return load_dataset("heart-disease")


def _strip(rounds):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS and not k.startswith("bytes")} for r in rounds]


def test_same_seed_gives_the_same_run(heart):
    cfg = TrainConfig(protocol="secagg+", strategy="fedyogi", seed=3, **FAST)
    a, b = Trainer(cfg, dataset=heart).run(), Trainer(cfg, dataset=heart).run()
    assert np.array_equal(a.params, b.params)
    assert _strip(a.rounds) == _strip(b.rounds)
    c = Trainer(dataclasses.replace(cfg, seed=4), dataset=heart).run()
    assert not np.array_equal(a.params, c.params)


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("strategy", ["fedavg", "fedadam"])
def test_resume_after_interruption_equals_an_uninterrupted_run(heart, tmp_path, strategy):
    cfg = TrainConfig(protocol="secagg+", strategy=strategy, seed=11, dropout_rate=0.2, **FAST)
    full = Trainer(cfg, dataset=heart).run()

    def stop_after_two(record):
        if record["round"] == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        Trainer(cfg, dataset=heart, out_dir=tmp_path).run(on_round=stop_after_two)
    resumed = Trainer(cfg, dataset=heart, out_dir=tmp_path).run(resume=True)
    assert np.array_equal(full.params, resumed.params)
    assert _strip(full.rounds) == _strip(resumed.rounds)
    assert [r["round"] for r in resumed.rounds] == [1, 2, 3]


def test_existing_checkpoint_needs_resume_and_the_same_config(heart, tmp_path):
    cfg = TrainConfig(protocol="plaintext", rounds=1, local_steps=5)
    Trainer(cfg, dataset=heart, out_dir=tmp_path).run()
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(cfg, dataset=heart, out_dir=tmp_path).run()
    with pytest.raises(ConfigError, match="different configuration"):
        Trainer(dataclasses.replace(cfg, seed=1), dataset=heart, out_dir=tmp_path).run(resume=True)
    # extending the number of rounds is allowed
    more = Trainer(dataclasses.replace(cfg, rounds=2), dataset=heart, out_dir=tmp_path).run(resume=True)
    assert len(more.rounds) == 2


# Seed 22 at dropout rate 0.3 drops one client per round, at share_keys,
# masked_input and unmask in turn, and no round aborts; the plaintext twin has
# no abort rule of its own, so the comparison uses rounds that complete.
@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
@pytest.mark.parametrize("dropout_rate, seed", [(0.0, 5), (0.3, 22)])
def test_secure_training_equals_plaintext_bit_for_bit(heart, protocol, dropout_rate, seed):
    cfg = TrainConfig(protocol=protocol, strategy="fedavg", seed=seed, dropout_rate=dropout_rate, **FAST)
    secure = Trainer(cfg, dataset=heart).run()
    encoder = make_encoder(clip=cfg.clip, precision=cfg.precision, max_clients=4, max_weight=199)
    twin = ProtocolAggregator(protocol, encoder).plaintext_twin()
    plain = Trainer(cfg, dataset=heart, aggregator=twin).run()
    assert np.array_equal(secure.params, plain.params)
    assert [r["survivors"] for r in secure.rounds] == [r["survivors"] for r in plain.rounds]
    stages = {s for r in secure.rounds for s in r["dropout_schedule"].values()}
    assert stages == (set() if dropout_rate == 0 else {"share_keys", "masked_input", "unmask"})
    assert not any(r["aborted"] for r in secure.rounds)
    assert all(r["bytes_up"] > 0 for r in secure.rounds)


@pytest.mark.parametrize("protocol", ["ckks", pytest.param("paillier", marks=pytest.mark.slow)])
def test_he_training_equals_plaintext_bit_for_bit(heart, protocol):
    pytest.importorskip("tenseal" if protocol == "ckks" else "phe")
    cfg = TrainConfig(protocol=protocol, strategy="fedavg", seed=5, rounds=2, local_steps=5)
    secure = Trainer(cfg, dataset=heart).run()
    encoder = make_encoder(clip=cfg.clip, precision=cfg.precision, max_clients=4, max_weight=199)
    plain = Trainer(cfg, dataset=heart, aggregator=ProtocolAggregator(protocol, encoder).plaintext_twin()).run()
    assert np.array_equal(secure.params, plain.params)


def test_round_records_have_the_documented_fields(heart):
    res = Trainer(TrainConfig(protocol="secagg", rounds=1, local_steps=5), dataset=heart).run()
    (r,) = res.rounds
    for key in ("round", "loss", "mean_centre_accuracy", "centre_accuracy", "bytes_up", "bytes_down",
                "seconds", "survivors", "dropped", "aborted", "clipped_coordinates"):
        assert key in r
    assert set(r["centre_accuracy"]) == {"Cleveland", "Hungary", "Switzerland", "Long Beach VA"}
    assert res.final["mean_centre_accuracy"] == pytest.approx(np.mean(list(res.final["centre_accuracy"].values())))


def test_bad_configs_are_config_errors(heart):
    with pytest.raises(ConfigError):
        TrainConfig(protocol="smoke-signals")
    with pytest.raises(ConfigError):
        TrainConfig(rounds=0)
    with pytest.raises(ConfigError):
        TrainConfig(dropout_rate=1.5)
    with pytest.raises(ConfigError):
        Trainer(TrainConfig(clients_per_round=9), dataset=heart)
