"""DP noise in training is secret: an outsider who knows the run seed cannot remove it.

The attack: the run seed is public (the CLI defaults to 42 and prints it), so
an outsider rebuilds every generator a seeded simulation derives from it (the
protocol seed of round ``t``, each client's encoder stream, the public
rotation seed), draws the noise shares the clients would have drawn, subtracts
their decoded sum from the released aggregate and gets the noiseless sum (or
mean) of the clipped updates back, to the encoder's rounding precision (exactly, for
record-level DP, where the noise stream is separate from the rounding coins).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from fl import privacy
from fl.cli import app
from fl.datasets import load_dataset
from fl.privacy import DPAggregator
from fl.trainer import TrainConfig, Trainer, derive_seed
from secagg.dp import unrotate

_TAG_PROTOCOL = 4  # the trainer's stream tag for the protocol seed (public: it is in the source)


@pytest.fixture(scope="module")
def heart():
    return load_dataset("heart-disease")


@dataclass
class Release:
    """What one DP round handed the aggregator and what the server released."""

    updates: dict[int, np.ndarray]
    seed: int | None
    aggregate: np.ndarray
    survivors: list[int]


def _record_releases(monkeypatch: pytest.MonkeyPatch) -> list[Release]:
    """Patch DPAggregator so every round's inputs and released aggregate are kept (the test's ground truth)."""
    releases: list[Release] = []
    call = DPAggregator.__call__

    def recording(self: DPAggregator, updates: Any, weights: Any, **kw: Any) -> Any:
        result = call(self, updates, weights, **kw)
        releases.append(Release({c: np.array(u) for c, u in updates.items()}, kw.get("seed"),
                                np.array(result.aggregate), list(result.survivors)))
        return result

    monkeypatch.setattr(DPAggregator, "__call__", recording)
    return releases


def outsider_denoises(cfg: TrainConfig, dataset: Any, aggregate: np.ndarray, survivors: list[int],
                      t: int = 0) -> np.ndarray:
    """The attack: the released aggregate minus the noise re-derived from the public run seed alone."""
    dp = Trainer(cfg, dataset=dataset).aggregator.dp  # the same plan, from the public config
    seed = derive_seed(cfg.seed, t, _TAG_PROTOCOL)
    rotation_seed = hashlib.sha256(b"fl/dp/rotation|%d" % seed).digest()[:16]
    encoder = dp.round_encoder(rotation_seed=rotation_seed)
    # A zero input rounds to zero and draws the same coins first, so what is left is the noise share.
    zero = np.zeros(dp.padded_dim, dtype=np.int64 if dp.record_level else np.float64)
    shares = [encoder.encode_signed(zero, weight=1, rng=np.random.Generator(np.random.PCG64([seed, i])))[:-1]
              for i in survivors]
    noise = unrotate(np.sum(shares, axis=0) / encoder.scale, rotation_seed, dp.padded_dim)[: dp.dim]
    # client-level DP releases the mean over the survivors, record-level DP the sum
    return aggregate - (noise if dp.record_level else noise / len(survivors))


def noiseless_release(cfg: TrainConfig, dataset: Any, release: Release) -> tuple[np.ndarray, float]:
    """What the round releases without noise, and how far rounding alone can move it.

    Client-level: the clipped deltas' mean over the survivors; record-level:
    the sum of every clipped per-record gradient.
    """
    dp = Trainer(cfg, dataset=dataset).aggregator.dp
    encoder = dp.round_encoder()
    clip = dp.plan.l2_clip
    if dp.record_level:
        rows = [release.updates[c] for c in release.survivors]
        sums = [np.sum(r * np.minimum(1.0, clip / np.maximum(np.linalg.norm(r, axis=1), 1e-300))[:, None], axis=0)
                for r in rows]
        n_rounded = sum(len(r) for r in rows)
    else:
        sums = [u * min(1.0, clip / np.linalg.norm(u)) for c, u in release.updates.items() if c in release.survivors]
        n_rounded = len(sums)
    # Each rounded vector is within sqrt(padded_dim) / scale of its input (L2).
    tolerance = n_rounded * np.sqrt(dp.padded_dim) / encoder.scale
    if dp.record_level:
        return np.sum(sums, axis=0), float(tolerance)
    return np.mean(sums, axis=0), float(tolerance / len(release.survivors))


def _noise_std(cfg: TrainConfig, dataset: Any, n_shares: int) -> float:
    """Per coordinate of the release: the noise of the sum, over n_shares for a client-level mean."""
    dp = Trainer(cfg, dataset=dataset).aggregator.dp
    std = float(np.sqrt(dp.round_encoder().noise_variance(n_shares)))
    return std if dp.record_level else std / n_shares


def _attack_succeeds(cfg: TrainConfig, dataset: Any, release: Release) -> tuple[bool, float, float]:
    recovered = outsider_denoises(cfg, dataset, release.aggregate, release.survivors)
    truth, tolerance = noiseless_release(cfg, dataset, release)
    error = float(np.max(np.abs(recovered - truth)))
    return error <= tolerance, error, tolerance


CLIENT = dict(rounds=1, local_steps=5, dp_epsilon=8.0, dp_delta=1e-5, seed=42)
RECORD = dict(rounds=1, local_steps=1, dp_epsilon=8.0, dp_delta=1e-5, seed=42, dp_unit="record")


@pytest.mark.parametrize("options", [CLIENT, RECORD], ids=["client-level", "record-level"])
@pytest.mark.parametrize("protocol", ["plaintext", "secagg+"])
def test_an_outsider_who_knows_the_seed_cannot_remove_the_trainers_noise(heart, monkeypatch, options, protocol):
    cfg = TrainConfig(protocol=protocol, **options)
    releases = _record_releases(monkeypatch)
    Trainer(cfg, dataset=heart).run()
    (release,) = releases
    succeeded, error, tolerance = _attack_succeeds(cfg, heart, release)
    assert not succeeded, f"the seed gives the noise away: the noiseless sum is back to {error:.2e}"
    # What is left is the difference of two independent noise draws, nowhere near the rounding error.
    residual = outsider_denoises(cfg, heart, release.aggregate, release.survivors) - \
        noiseless_release(cfg, heart, release)[0]
    assert np.sqrt(np.mean(residual**2)) > 0.3 * _noise_std(cfg, heart, len(release.survivors)) > 1e3 * tolerance


def test_an_outsider_who_knows_the_seed_cannot_remove_the_noise_of_secagg_run(heart, monkeypatch, tmp_path):
    """The CLI's main DP path at its default seed (42), exactly as a user types it."""
    releases = _record_releases(monkeypatch)
    result = CliRunner().invoke(app, ["run", "--dp-epsilon", "8", "--dp-delta", "1e-5", "--rounds", "1",
                                      "--dp-unit", "client", "--local-steps", "5", "--quiet", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    cfg = TrainConfig(**json.loads((tmp_path / "run" / "report.json").read_text())["config"])
    assert cfg.seed == 42
    (release,) = releases
    succeeded, error, _ = _attack_succeeds(cfg, heart, release)
    assert not succeeded, f"the seed gives the noise away: the noiseless sum is back to {error:.2e}"


def test_the_insecure_option_makes_dp_runs_repeat_and_the_attack_work(heart, monkeypatch):
    """What ``insecure_reproducible_noise`` costs: the same attack then recovers the noiseless mean."""
    cfg = TrainConfig(protocol="secagg+", insecure_reproducible_noise=True, **RECORD)
    releases = _record_releases(monkeypatch)
    a, b = Trainer(cfg, dataset=heart).run(), Trainer(cfg, dataset=heart).run()
    assert np.array_equal(a.params, b.params)
    succeeded, error, tolerance = _attack_succeeds(cfg, heart, releases[0])
    assert succeeded, (error, tolerance)


def test_two_dp_runs_at_the_same_seed_draw_different_noise_and_spend_the_same_epsilon(heart):
    for options in (CLIENT, RECORD):
        cfg = TrainConfig(protocol="plaintext", **dict(options, rounds=2))
        a, b = Trainer(cfg, dataset=heart), Trainer(cfg, dataset=heart)
        ra, rb = a.run(), b.run()
        assert not np.array_equal(ra.params, rb.params)
        assert [r["epsilon"] for r in ra.rounds] == [r["epsilon"] for r in rb.rounds]
        assert a.aggregator.privacy_report() == b.aggregator.privacy_report()


def test_insecure_reproducible_noise_needs_dp():
    from secagg.errors import ConfigError

    with pytest.raises(ConfigError, match="insecure_reproducible_noise need"):
        TrainConfig(insecure_reproducible_noise=True)


def test_the_cli_warns_and_the_report_records_insecure_noise(tmp_path):
    runner = CliRunner()
    args = ["run", "--dp-epsilon", "8", "--dp-delta", "1e-5", "--rounds", "1", "--dp-unit", "client", "--local-steps", "3", "--quiet"]
    secure = runner.invoke(app, args + ["--out", str(tmp_path / "secure")])
    assert secure.exit_code == 0, secure.output
    report = json.loads((tmp_path / "secure" / "report.json").read_text())
    assert report["security_warnings"] == [] and report["dp"]["noise_source"] == "OS CSPRNG"
    assert report["config"]["insecure_reproducible_noise"] is False
    assert "INSECURE" not in secure.output

    runs = []
    for name in ("a", "b"):
        result = runner.invoke(app, args + ["--insecure-reproducible-noise", "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert " ".join(result.output.split()).count(" ".join(privacy.INSECURE_NOISE_WARNING.split())) == 2
        runs.append(json.loads((tmp_path / name / "report.json").read_text()))
    assert all(r["security_warnings"] == [privacy.INSECURE_NOISE_WARNING] for r in runs)
    assert all(r["config"]["insecure_reproducible_noise"] is True and r["dp"]["insecure_reproducible_noise"]
               for r in runs)
    assert runs[0]["rounds"][0]["centre_test_loss"] == runs[1]["rounds"][0]["centre_test_loss"]


def test_the_insecure_option_without_dp_is_refused_by_the_cli():
    result = CliRunner().invoke(app, ["run", "--insecure-reproducible-noise", "--rounds", "1"])
    assert result.exit_code == 1 and "need dp_epsilon" in result.output
