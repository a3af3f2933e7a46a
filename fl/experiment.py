"""One call per experiment: a training run that writes its report, and the
multi-seed comparison behind ``secagg run --compare``.

The CLI and the demo are thin layers over these two functions.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .aggregation import SECURE_PROTOCOLS
from .baselines import BASELINE_EPOCHS, train_local_only, train_pooled
from .datasets import FederatedDataset, load_dataset
from .report import build_report, comparison_markdown, write_report
from .trainer import TrainConfig, Trainer

__all__ = [
    "run_experiment",
    "run_comparison",
    "ComparisonStep",
    "shell_command",
    "COMPARE_SEEDS",
    "COMPARE_STRATEGIES",
    "COMPARE_HE_PROTOCOLS",
]

COMPARE_SEEDS = (42, 43, 44, 45, 46)  # FLamby reports seeds 42-46
#: Federated methods in the comparison, each run through every secure protocol
#: (FedAvg also in plaintext, the baseline the secure runs must match).
COMPARE_STRATEGIES = ("fedavg", "fedprox", "fedsgd", "fedadam", "fedyogi", "fedadagrad")
#: HE protocols shown with FedAvg only (Paillier costs ~1 s per round here;
#: threshold Paillier ~15 s, so it is left out of the default table).
COMPARE_HE_PROTOCOLS = ("paillier", "ckks")


@dataclass(frozen=True)
class ComparisonStep:
    """Progress of :func:`run_comparison`: method ``index`` of ``total`` (1-based) starts
    (``row`` is ``None``) or has finished (``row`` is its summary row, as in ``compare.json``)."""

    index: int
    total: int
    method: str
    row: dict[str, Any] | None = None


def run_experiment(
    config: TrainConfig,
    out_dir: Path | str | None,
    *,
    resume: bool = False,
    dataset: FederatedDataset | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    aggregator: Any = None,
    write: bool = True,
) -> dict[str, Any]:
    """Train with ``config``; write ``report.json`` and plots into ``out_dir`` when ``write``.

    Returns the report dict (plus ``paths`` when written). Raises the typed
    errors of the trainer (ConfigError, DecodeError, AbortError only if every
    round aborts is *not* raised: aborted rounds are recorded).
    """
    trainer = Trainer(config, dataset=dataset, out_dir=out_dir if write else None, aggregator=aggregator)
    result = trainer.run(resume=resume, on_round=on_round)
    encoding = {
        "clip": config.clip,
        "precision": config.precision,
        "max_weight": trainer.max_weight,
        "encoder": type(getattr(trainer.aggregator, "encoder", None)).__name__,
    }
    extra: dict[str, Any] = {"dp": None}
    if hasattr(trainer.aggregator, "settings"):
        extra["dp"] = dict(trainer.aggregator.settings)
        if hasattr(trainer.aggregator, "privacy_report"):  # ε per hospital over the rounds it was summed in
            extra["dp"]["per_centre"] = trainer.aggregator.privacy_report([c.name for c in trainer.dataset.centres])
    report = build_report(
        config.to_dict(), trainer.dataset, result.rounds, result.final, encoding=encoding, extra=extra
    )
    if write and out_dir is not None:
        report["paths"] = {k: str(v) for k, v in write_report(out_dir, report).items()}
    return report


def _summary(method: str, protocol: str, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    means = [r["final"]["mean_centre_accuracy"] for r in runs]
    centres = list(runs[0]["final"]["centre_accuracy"])
    row: dict[str, Any] = {
        "method": method,
        "protocol": protocol,
        "mean": float(np.mean(means)),
        "std": float(np.std(means)),
        "per_seed": [float(m) for m in means],
        "centre_accuracy_mean": {c: float(np.mean([r["final"]["centre_accuracy"][c] for r in runs])) for c in centres},
        "bytes_up_per_round": None,
        "seconds_per_round": None,
    }
    if runs and "costs" in runs[0]:
        row["bytes_up_per_round"] = float(np.mean([r["costs"]["bytes_up_per_round_mean"] for r in runs]))
        row["seconds_per_round"] = float(
            np.mean([r["costs"]["seconds_total"] / max(1, len(r["rounds"])) for r in runs])
        )
    return row


def run_comparison(
    base: TrainConfig,
    out_dir: Path | str,
    *,
    seeds: Sequence[int] = COMPARE_SEEDS,
    strategies: Sequence[str] = COMPARE_STRATEGIES,
    protocols: Sequence[str] = SECURE_PROTOCOLS,
    he_protocols: Sequence[str] = COMPARE_HE_PROTOCOLS,
    command: str = "",
    on_step: Callable[[ComparisonStep], None] | None = None,
    aggregator_for: Callable[[TrainConfig], Any] | None = None,
    baseline_epochs: int = BASELINE_EPOCHS,
) -> dict[str, Any]:
    """Pooled, local-only, plaintext FedAvg, every strategy through each secure
    protocol, and FedAvg through each HE protocol in ``he_protocols``.

    ``baseline_epochs`` is the pooled/local-only training length (FLamby: 50).
    ``on_step`` hears each method start and finish (:class:`ComparisonStep`).
    Writes ``compare.md`` and ``compare.json`` into ``out_dir``; returns the JSON dict.
    """
    if base.dp_epsilon is not None and base.dp_unit == "record":
        # One DP-SGD step per round: FedProx's proximal term vanishes.
        strategies = tuple(s for s in strategies if s != "fedprox")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(base.dataset, **base.dataset_options)
    rows: list[dict[str, Any]] = []
    plan = [("fedavg", "plaintext")] + [(s, p) for s in strategies for p in protocols]
    plan += [("fedavg", p) for p in he_protocols]
    total = 2 + len(plan)

    def note(method: str, row: dict[str, Any] | None = None) -> None:
        if on_step is not None:
            on_step(ComparisonStep(len(rows) + (row is None), total, method, row))

    note("pooled")
    rows.append(
        _summary(
            "pooled",
            "–",
            [{"final": train_pooled(dataset, model=base.model, seed=s, epochs=baseline_epochs)} for s in seeds],
        )
    )
    note("pooled", rows[-1])
    note("local-only")
    local = [train_local_only(dataset, model=base.model, seed=s, epochs=baseline_epochs) for s in seeds]
    rows.append(_summary("local-only (own centre)", "–", [{"final": r} for r in local]))
    note("local-only", rows[-1])
    best_local = [r["best_local_mean_centre_accuracy"] for r in local]

    for strategy, protocol in plan:
        note(f"{strategy} / {protocol}")
        runs = []
        for s in seeds:
            cfg = replace(
                base,
                strategy=strategy,
                protocol=protocol,
                seed=s,
                server_lr=None if strategy != base.strategy else base.server_lr,
            )
            runs.append(
                run_experiment(
                    cfg,
                    None,
                    dataset=dataset,
                    write=False,
                    aggregator=None if aggregator_for is None else aggregator_for(cfg),
                )
            )
        rows.append(_summary(strategy, protocol, runs))
        note(f"{strategy} / {protocol}", rows[-1])

    result: dict[str, Any] = {
        "config": base.to_dict(),
        "seeds": list(seeds),
        "command": command,
        "rows": rows,
        "best_local_flamby": {"mean": float(np.mean(best_local)), "std": float(np.std(best_local))},
        "reference_flamby": {
            "pooled": 0.735,
            "fedavg": 0.685,
            "fedprox": 0.685,
            "fedyogi": 0.731,
            "fedadam": 0.726,
            "fedadagrad": 0.731,
            "best_local": 0.722,
        },
    }
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    md = comparison_markdown(rows, seeds=seeds, command=command or "secagg run --compare")
    md += (
        f"\nFLamby's best-local figure (best single-centre model, scored on all centres): "
        f"{result['best_local_flamby']['mean']:.3f} ± {result['best_local_flamby']['std']:.3f}.\n"
    )
    (out / "compare.md").write_text(md)
    result["paths"] = {"markdown": str(out / "compare.md"), "json": str(out / "compare.json")}
    return result


def shell_command(argv: Sequence[str]) -> str:
    """The command line as a user would type it (for the report)."""
    return " ".join(shlex.quote(a) for a in argv)
