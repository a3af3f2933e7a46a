"""The federated round loop: sample clients → local training → aggregation
through a protocol → server update → per-centre evaluation, with a checkpoint
after every round.

Determinism: every simulation choice (client sampling, dropouts, local
training batches, the protocol's public graph outside DP) is drawn from a generator
seeded by ``(seed, round, client)`` through ``numpy.random.SeedSequence``,
never from a running global stream, so a run resumed from round r's
checkpoint replays rounds r+1.. exactly as an uninterrupted run would.
``torch.manual_seed(seed)`` is also set for anything that still touches
torch's global RNG. This is simulation randomness (``sim_seed``); the
protocols draw their own keys.

Differential privacy is the exception: the seed is public (it is in the
config, the report and the CLI's default), so the DP noise shares, the
rounding coins and record-level DP's Poisson samples come from the OS CSPRNG
and a DP run is not reproducible. A resumed DP run restores the released
model and the privacy ledger (ε per hospital) from the checkpoint, which
holds no noise, and draws fresh noise for the remaining rounds.
``insecure_reproducible_noise=True`` derives all of it from the seed instead
(bit-identical DP runs for tests; no privacy against anyone who knows the seed).

Metrics per round: ``loss`` (n_k-weighted mean local training loss of the
clients that trained), per-centre test accuracy and their unweighted mean
(FLamby's metric), bytes up/down, seconds, sampled/survivor/dropped ids.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from numpy.typing import NDArray

from secagg.errors import AbortError, ConfigError, require_extra

try:
    import torch
except ImportError:  # a MissingExtraError naming the extra, not a bare ModuleNotFoundError
    require_extra("torch", "fl")
    raise

from .aggregation import DELTA_CLIP, DELTA_PRECISION, PROTOCOLS, ProtocolAggregator, make_encoder
from .algorithms import DEFAULT_BATCH_SIZE, STRATEGIES, local_train, make_strategy
from .datasets import FederatedDataset, load_dataset
from .models import MODELS, get_flat_params, make_model, n_params, set_flat_params
from .privacy import DP_L2_CLIP, DP_UNITS, DPAggregator
from .record_dp import (
    DEFAULT_RECORD_CLIP,
    DEFAULT_RECORD_LR,
    DEFAULT_RECORD_SAMPLING_RATE,
    PerExampleGradients,
    expected_batch,
    poisson_sample,
)

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "derive_seed",
    "CHECKPOINT_JSON",
    "CHECKPOINT_ARRAYS",
]

CHECKPOINT_JSON = "checkpoint.json"
CHECKPOINT_ARRAYS = "checkpoint.npz"
CHECKPOINT_VERSION = 1
# Stages at which a simulated client may vanish. Before masked input its delta
# is lost; after it (unmask) SecAgg still recovers its contribution.
DROPOUT_STAGES = ("share_keys", "masked_input", "unmask")
# Stream tags for derive_seed, so the sampling, dropout, training and protocol
# streams of one round never coincide.
_TAG_SAMPLE, _TAG_DROPOUT, _TAG_TRAIN, _TAG_PROTOCOL = 1, 2, 3, 4


def derive_seed(*words: int) -> int:
    """A 63-bit seed from integers, via SeedSequence (independent streams per tuple)."""
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; two equal configs give identical runs.

    ``protocol``: one of :data:`fl.aggregation.PROTOCOLS` (plaintext, secagg,
    secagg+, paillier, paillier-threshold, ckks). ``dp_epsilon``/``dp_delta``
    switch on distributed DP (:mod:`fl.privacy`); ``dp_unit`` is ``"record"``
    (a patient: distributed DP-SGD, :mod:`fl.record_dp`: one step per round,
    so ``local_steps`` must be 1, records Poisson-sampled at
    ``dp_sampling_rate`` and clipped to ``dp_l2_clip``, default 1.0;
    ``client_lr`` is the step size, default 0.25) or ``"client"`` (a
    hospital's whole update, clipped to ``dp_l2_clip``, default 0.1).
    ``dp_unit=None`` (the default) resolves to ``"record"`` under DP: with a
    handful of hospitals, client-level noise drowns the summed update. The
    one exception is a DP config that asks for ``local_steps > 1``, which
    only client-level DP can run; it resolves to ``"client"`` (and
    :class:`fl.privacy.DPAggregator` warns when that noise drowns the
    update). Without DP it resolves to ``"client"`` and means nothing.
    ``local_steps=None`` resolves to 1 under record-level DP and to 100
    otherwise. Both are resolved in place, so :meth:`to_dict`, checkpoints
    and reports hold the unit and step count that ran.
    ``insecure_reproducible_noise`` (DP only) derives the DP noise, rounding
    coins and record samples from ``seed`` so that equal configs give
    identical DP runs: anyone who knows the seed can then remove the noise.
    ``clients_per_round=None`` samples every centre. ``dropout_rate`` is the
    per-round probability that a sampled client vanishes mid-protocol.
    ``max_corrupt`` is how many clients may collude with the server: the
    protocol's config refuses thresholds (SecAgg, threshold Paillier) or
    schemes (shared-key HE) that many defeat. HE rounds always sign their
    key ceremony with per-client identity keys.
    """

    dataset: str = "heart-disease"
    model: str = "logreg"
    strategy: str = "fedavg"
    protocol: str = "secagg+"
    rounds: int = 15
    local_steps: int | None = None  # 1 under record-level DP, else 100
    client_lr: float | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    mu: float | None = None
    server_lr: float | None = None
    clients_per_round: int | None = None
    dropout_rate: float = 0.0
    seed: int = 42
    clip: float = DELTA_CLIP
    precision: float = DELTA_PRECISION
    neighbors: int | None = None
    threshold: int | None = None
    max_corrupt: int | None = None
    dp_epsilon: float | None = None
    dp_delta: float | None = None
    dp_l2_clip: float | None = None
    dp_unit: str | None = None  # "record" under DP unless local_steps > 1; else "client"
    dp_sampling_rate: float | None = None
    insecure_reproducible_noise: bool = False
    dataset_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dp_on = self.dp_epsilon is not None
        if self.dp_unit is None:
            multi_step = self.local_steps is not None and self.local_steps != 1
            object.__setattr__(self, "dp_unit", "record" if dp_on and not multi_step else "client")
        if self.local_steps is None:
            object.__setattr__(self, "local_steps", 1 if dp_on and self.dp_unit == "record" else 100)
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of {MODELS}", model=self.model)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; choose one of {STRATEGIES}", strategy=self.strategy)
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {self.protocol!r}; choose one of {PROTOCOLS}", protocol=self.protocol)
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {self.rounds!r}", rounds=self.rounds)
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(
                f"dropout rate must be in [0, 1), got {self.dropout_rate}", dropout_rate=self.dropout_rate
            )
        if self.clients_per_round is not None and self.clients_per_round < 1:
            raise ConfigError("clients_per_round must be >= 1", clients_per_round=self.clients_per_round)
        if (self.dp_epsilon is None) != (self.dp_delta is None):
            raise ConfigError("dp_epsilon and dp_delta go together", dp_epsilon=self.dp_epsilon, dp_delta=self.dp_delta)
        if self.dp_epsilon is not None and self.clients_per_round is not None:
            raise ConfigError(
                "distributed DP is accounted with every client in every round; drop clients_per_round",
                clients_per_round=self.clients_per_round,
            )
        if self.dp_unit not in DP_UNITS:
            raise ConfigError(f"unknown DP unit {self.dp_unit!r}; choose one of {DP_UNITS}", dp_unit=self.dp_unit)
        if self.dp_epsilon is None and (
            self.dp_unit != "client"
            or self.dp_sampling_rate is not None
            or self.dp_l2_clip is not None
            or self.insecure_reproducible_noise
        ):
            raise ConfigError(
                "dp_unit, dp_sampling_rate, dp_l2_clip and insecure_reproducible_noise need dp_epsilon and dp_delta"
            )
        if self.dp_l2_clip is not None and not (self.dp_l2_clip > 0 and np.isfinite(self.dp_l2_clip)):
            raise ConfigError("dp_l2_clip must be > 0", dp_l2_clip=self.dp_l2_clip)
        if self.dp_unit == "client" and self.dp_sampling_rate is not None:
            raise ConfigError(
                "client-level DP runs every hospital every round; dp_sampling_rate is for record-level DP",
                dp_sampling_rate=self.dp_sampling_rate,
            )
        if self.dp_unit == "record":
            if self.local_steps != 1:
                raise ConfigError(
                    "record-level DP runs one distributed DP-SGD step per round: set local_steps=1 "
                    "(several local steps would release a sum that is not a Gaussian mechanism "
                    "of the records)",
                    local_steps=self.local_steps,
                )
            if self.strategy == "fedprox":
                raise ConfigError(
                    "FedProx's proximal term is zero at the global model, where record-level DP "
                    "takes its one step; use fedavg or fedsgd",
                    strategy=self.strategy,
                )
            if self.dp_sampling_rate is not None and not 0 < self.dp_sampling_rate <= 1:
                raise ConfigError("dp_sampling_rate must be in (0, 1]", dp_sampling_rate=self.dp_sampling_rate)
        if not (self.clip > 0 and self.precision > 0):
            raise ConfigError("clip and precision must be > 0", clip=self.clip, precision=self.precision)
        make_strategy(
            self.strategy,
            local_steps=self.steps_per_round,
            client_lr=self.client_lr,
            batch_size=self.batch_size,
            mu=self.mu,
            server_lr=self.server_lr,
        )

    @property
    def steps_per_round(self) -> int:
        """``local_steps`` as resolved by the constructor (never None)."""
        if self.local_steps is None:  # only a config built around __init__ gets here
            raise ConfigError("local_steps was not resolved")
        return self.local_steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """Final flat parameters, one dict per round, and the final evaluation."""

    params: NDArray[np.float32]
    rounds: list[dict[str, Any]]
    final: dict[str, Any]


def evaluate(model: torch.nn.Module, dataset: FederatedDataset) -> dict[str, Any]:
    """Test accuracy (logit > 0 ⇔ p > 0.5) and BCE loss per centre, plus the unweighted mean accuracy."""
    acc: dict[str, float] = {}
    losses: dict[str, float] = {}
    model.eval()
    with torch.no_grad():
        for centre in dataset.centres:
            logits = model(torch.from_numpy(centre.x_test))
            y = torch.from_numpy(centre.y_test)
            acc[centre.name] = float(((logits > 0).float() == y).float().mean())
            losses[centre.name] = float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y))
    return {
        "centre_accuracy": acc,
        "mean_centre_accuracy": float(np.mean(list(acc.values()))),
        "centre_test_loss": losses,
        "test_loss": float(np.mean(list(losses.values()))),
    }


def _dropout_schedule(rng: np.random.Generator, sampled: list[int], rate: float) -> dict[int, str]:
    if rate <= 0:
        return {}
    schedule = {}
    for cid in sampled:
        if rng.random() < rate:
            schedule[cid] = DROPOUT_STAGES[int(rng.integers(len(DROPOUT_STAGES)))]
    return schedule


def _total_bytes(counts: Any) -> int:
    if not counts:
        return 0
    return int(sum(counts.values())) if isinstance(counts, dict) else int(counts)


class Trainer:
    """Runs one configured federated training, checkpointing into ``out_dir``.

    ``aggregator`` overrides the protocol aggregator (tests inject the
    plaintext twin this way); by default it is built from the config:
    :class:`~fl.privacy.DPAggregator` when ``dp_epsilon`` is set, else
    :class:`~fl.aggregation.ProtocolAggregator` with the fixed-point encoder.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        dataset: FederatedDataset | None = None,
        out_dir: Path | str | None = None,
        aggregator: Callable[..., Any] | None = None,
    ) -> None:
        self.config = config
        self.dataset = dataset if dataset is not None else load_dataset(config.dataset, **config.dataset_options)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.strategy = make_strategy(
            config.strategy,
            local_steps=config.steps_per_round,
            client_lr=config.client_lr,
            batch_size=config.batch_size,
            mu=config.mu,
            server_lr=config.server_lr,
        )
        n_clients = len(self.dataset.centres)
        if config.clients_per_round is not None and config.clients_per_round > n_clients:
            raise ConfigError(
                f"clients_per_round {config.clients_per_round} exceeds the {n_clients} centres",
                clients_per_round=config.clients_per_round,
                n_clients=n_clients,
            )
        self.max_weight = max(c.n_train for c in self.dataset.centres)
        self.n_records = sum(c.n_train for c in self.dataset.centres)
        self.record_level = config.dp_epsilon is not None and config.dp_unit == "record"
        #: The DP clip in force: the config's, else 0.1 per hospital delta or 1.0 per record.
        self.dp_l2_clip = (
            config.dp_l2_clip
            if config.dp_l2_clip is not None
            else (DEFAULT_RECORD_CLIP if config.dp_unit == "record" else DP_L2_CLIP)
        )
        #: Record-level DP's Poisson rate q per record.
        self.record_sampling_rate = (
            DEFAULT_RECORD_SAMPLING_RATE if config.dp_sampling_rate is None else config.dp_sampling_rate
        )
        if self.record_level:  # the server's DP-SGD step: -lr times the noisy gradient sum over q N
            lr = DEFAULT_RECORD_LR if config.client_lr is None else config.client_lr
            self._record_step = -lr / expected_batch(self.record_sampling_rate, self.n_records)
        if aggregator is None and config.dp_epsilon is not None:
            dim = n_params(make_model(config.model, self.dataset.n_features))
            record: dict[str, Any] = (
                {"unit": "record", "sampling_rate": self.record_sampling_rate, "n_records": self.n_records}
                if self.record_level
                else {}
            )
            aggregator = DPAggregator(
                config.protocol,
                n_clients=n_clients,
                dim=dim,
                rounds=config.rounds,
                epsilon=config.dp_epsilon,
                delta=float(config.dp_delta or 0.0),
                dropout_rate=config.dropout_rate,
                l2_clip=self.dp_l2_clip,
                threshold=config.threshold,
                neighbors=config.neighbors,
                max_corrupt=config.max_corrupt,
                insecure_reproducible_noise=config.insecure_reproducible_noise,
                **record,
            )
        if aggregator is None:
            encoder = make_encoder(
                clip=config.clip, precision=config.precision, max_clients=n_clients, max_weight=self.max_weight
            )
            aggregator = ProtocolAggregator(
                config.protocol,
                encoder,
                threshold=config.threshold,
                neighbors=config.neighbors,
                max_corrupt=config.max_corrupt,
            )
        self.aggregator = aggregator
        self._grads: PerExampleGradients | None = None  # built on first use (record-level DP)

    # -- checkpoints ---------------------------------------------------------

    def _save(
        self, next_round: int, params: NDArray[np.float32], server_state: dict[str, Any], history: list[dict[str, Any]]
    ) -> None:
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"params": params, "round": np.asarray(next_round)}
        for key in ("m", "v"):
            if server_state[key] is not None:
                arrays[f"server_{key}"] = server_state[key]
        tmp = self.out_dir / (CHECKPOINT_ARRAYS + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, self.out_dir / CHECKPOINT_ARRAYS)
        meta = {
            "version": CHECKPOINT_VERSION,
            "next_round": next_round,
            "config": self.config.to_dict(),
            "rounds": history,
        }
        tmp_json = self.out_dir / (CHECKPOINT_JSON + ".tmp")
        tmp_json.write_text(json.dumps(meta, indent=1))
        os.replace(tmp_json, self.out_dir / CHECKPOINT_JSON)

    def _load(self) -> tuple[int, NDArray[np.float32], dict[str, Any], list[dict[str, Any]]] | None:
        if self.out_dir is None or not (self.out_dir / CHECKPOINT_JSON).is_file():
            return None
        meta = json.loads((self.out_dir / CHECKPOINT_JSON).read_text())
        saved = dict(meta.get("config", {}))
        saved.setdefault("insecure_reproducible_noise", False)  # checkpoints from before the option
        mine = self.config.to_dict()
        if self.config.dp_epsilon is None:  # a resumed run may be extended, unless DP noise was sized for it
            saved.pop("rounds", None), mine.pop("rounds", None)
        if meta.get("version") != CHECKPOINT_VERSION or saved != json.loads(json.dumps(mine)):
            raise ConfigError(
                f"checkpoint in {self.out_dir} was written by a different configuration; "
                "use a new --out directory or the same options",
                out=str(self.out_dir),
            )
        with np.load(self.out_dir / CHECKPOINT_ARRAYS) as z:
            if int(z["round"]) != meta["next_round"]:
                raise ConfigError("checkpoint files disagree (interrupted while writing?)", out=str(self.out_dir))
            params = z["params"].astype(np.float32)
            state = {k: (z[f"server_{k}"] if f"server_{k}" in z.files else None) for k in ("m", "v")}
        return int(meta["next_round"]), params, state, list(meta["rounds"])

    # -- the loop --------------------------------------------------------------

    def run(self, *, resume: bool = False, on_round: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
        """Train for ``config.rounds`` rounds (continuing a checkpoint if ``resume``).

        ``on_round`` is called with each round's metrics after its checkpoint
        is written (an exception there interrupts the run, resumably).
        """
        cfg = self.config
        torch.manual_seed(cfg.seed)
        model = make_model(cfg.model, self.dataset.n_features, sim_seed=derive_seed(cfg.seed, 0))
        server_opt = self.strategy.make_server_optimizer()
        params = get_flat_params(model)
        history: list[dict[str, Any]] = []
        start = 0
        loaded = self._load() if resume else None
        if loaded is not None:
            start, params, state, history = loaded
            full = server_opt.state_dict()
            full.update(state)
            server_opt.load_state_dict(full)
            if hasattr(self.aggregator, "restore"):
                self.aggregator.restore(history)
        elif self.out_dir is not None and not resume and (self.out_dir / CHECKPOINT_JSON).exists():
            raise ConfigError(
                f"{self.out_dir} already holds a run; pass resume=True (--resume) or a new directory",
                out=str(self.out_dir),
            )
        n_clients = len(self.dataset.centres)
        for t in range(start, cfg.rounds):
            record = self._round(t, model, params, server_opt, n_clients)
            params = record.pop("_params")
            history.append(record)
            self._save(t + 1, params, server_opt.state_dict(), history)
            if on_round is not None:
                on_round(record)
        set_flat_params(model, params)
        final = evaluate(model, self.dataset)
        return TrainResult(params=params, rounds=history, final=final)

    def _round(
        self, t: int, model: torch.nn.Module, params: NDArray[np.float32], server_opt: Any, n_clients: int
    ) -> dict[str, Any]:
        cfg = self.config
        t0 = time.perf_counter()
        k = n_clients if cfg.clients_per_round is None else cfg.clients_per_round
        sample_rng = np.random.default_rng(derive_seed(cfg.seed, t, _TAG_SAMPLE))
        sampled = sorted(int(c) for c in sample_rng.choice(n_clients, size=k, replace=False))
        dropouts = _dropout_schedule(
            np.random.default_rng(derive_seed(cfg.seed, t, _TAG_DROPOUT)), sampled, cfg.dropout_rate
        )
        updates: dict[int, NDArray[np.floating]] = {}
        weights: dict[int, int] = {}
        losses: dict[int, float] = {}
        if self.record_level:
            updates, weights, losses = self._record_gradients(t, model, params, sampled)
        else:
            for cid in sampled:
                centre = self.dataset.centres[cid]
                set_flat_params(model, params)
                gen = torch.Generator().manual_seed(derive_seed(cfg.seed, t, _TAG_TRAIN, cid))
                res = local_train(model, centre.x_train, centre.y_train, self.strategy.local, generator=gen)
                updates[cid], weights[cid], losses[cid] = res.delta, res.n_samples, res.loss
        t1 = time.perf_counter()
        record: dict[str, Any] = {"round": t + 1, "sampled": sampled}
        try:
            result = self.aggregator(
                updates, weights, dropouts=dropouts or None, seed=derive_seed(cfg.seed, t, _TAG_PROTOCOL)
            )
        except AbortError as exc:
            result = None
            record.update(
                aborted=True, abort_reason=str(exc), survivors=[], dropped=sorted(dropouts), bytes_up=0, bytes_down=0
            )
        t2 = time.perf_counter()
        if result is not None:
            step = np.asarray(result.aggregate)
            if self.record_level:  # noisy Σ clipped per-record gradients → -lr Σ / (q N), DP-SGD's step
                step = (self._record_step * step).astype(np.float32)
            params = server_opt.step(params, step)
            record.update(
                aborted=False,
                survivors=list(result.survivors),
                dropped=list(result.dropped),
                bytes_up=_total_bytes(result.bytes_up),
                bytes_down=_total_bytes(result.bytes_down),
                stage_seconds={
                    str(s): float(max(v.values())) if isinstance(v, dict) and v else v
                    for s, v in (result.stage_seconds or {}).items()
                },
            )
            dp_report = (result.extras or {}).get("dp")
            if dp_report is not None:
                record.update(epsilon=float(dp_report.epsilon_total), epsilon_round=float(dp_report.epsilon_round))
        trained = [c for c in sampled if result is None or c in result.survivors] or sampled
        total_w = sum(weights[c] for c in trained)
        record["loss"] = float(sum(weights[c] * losses[c] for c in trained) / total_w)
        if self.record_level:
            record["records"] = {str(c): int(len(u)) for c, u in updates.items()}  # simulation diagnostics
            record["clipped_records"] = int(
                sum(np.count_nonzero(np.linalg.norm(u, axis=1) > self.dp_l2_clip) for u in updates.values())
            )
        else:
            record["max_abs_delta"] = float(max(np.max(np.abs(u)) for u in updates.values()))
            record["clipped_coordinates"] = int(sum(np.count_nonzero(np.abs(u) > cfg.clip) for u in updates.values()))
        record["dropout_schedule"] = {str(c): s for c, s in dropouts.items()}
        set_flat_params(model, params)
        record.update(evaluate(model, self.dataset))
        record.update(train_seconds=t1 - t0, aggregate_seconds=t2 - t1, seconds=time.perf_counter() - t0)
        record["_params"] = params
        return record

    def _record_gradients(
        self, t: int, model: torch.nn.Module, params: NDArray[np.float32], sampled: list[int]
    ) -> tuple[dict[int, NDArray[np.floating]], dict[int, int], dict[int, float]]:
        """Record-level DP: each hospital's per-record gradients at the global model, on a Poisson sample.

        The sample is private (amplification by sampling counts on it), so it
        comes from the OS CSPRNG, :func:`fl.record_dp.poisson_sample`'s default;
        from a generator seeded by ``(seed, round, client)`` only with
        ``insecure_reproducible_noise``.
        """
        if self._grads is None:
            self._grads = PerExampleGradients(model)
        set_flat_params(model, params)
        updates: dict[int, NDArray[np.floating]] = {}
        weights: dict[int, int] = {}
        losses: dict[int, float] = {}
        for cid in sampled:
            centre = self.dataset.centres[cid]
            rng = (
                np.random.default_rng(derive_seed(self.config.seed, t, _TAG_TRAIN, cid))
                if self.config.insecure_reproducible_noise
                else None
            )
            idx = poisson_sample(centre.n_train, self.record_sampling_rate, rng=rng)
            updates[cid] = self._grads(centre.x_train[idx], centre.y_train[idx])
            weights[cid] = 1
            losses[cid] = self._grads.last_loss
        return updates, weights, losses
