"""Run reports: ``report.json`` plus PNG plots, and the comparison table.

``report.json`` schema (later tools read these keys; keep them stable):

- ``schema``: ``"secagg.run/1"``;
- ``config``: the :class:`~fl.trainer.TrainConfig` as a dict;
- ``dataset``: name, centre names, sizes, ``simulated``;
- ``rounds``: one dict per round (``round``, ``loss``, ``mean_centre_accuracy``,
  ``centre_accuracy`` {centre: float}, ``bytes_up``, ``bytes_down``,
  ``seconds``, ``survivors``, ``dropped``, ``aborted``, ...);
- ``final``: ``mean_centre_accuracy`` (float), ``centre_accuracy``
  {centre: float}, ``test_loss``;
- ``costs``: protocol cost totals (bytes up/down, seconds, aborted rounds,
  dropped client-rounds) and the fixed-point encoding used;
- ``environment``: versions of Python, numpy, torch, platform, CPU count;
- ``security_warnings``: one line per setting that voids a guarantee
  (:func:`security_warnings`; empty for a sound run).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .privacy import INSECURE_NOISE_WARNING

__all__ = [
    "security_warnings",
    "REPORT_SCHEMA",
    "environment",
    "build_report",
    "write_report",
    "plot_run",
    "accuracy_figure",
    "comparison_markdown",
]

REPORT_SCHEMA = "secagg.run/1"
ACCURACY_PLOT = "accuracy.png"
COSTS_PLOT = "costs.png"


def environment() -> dict[str, Any]:
    """Versions and machine facts that numbers in a report depend on."""
    import torch

    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def security_warnings(config: Mapping[str, Any]) -> list[str]:
    """Lines a user must see for this config: today, DP noise derived from the public run seed."""
    warnings = []
    if config.get("dp_epsilon") is not None and config.get("insecure_reproducible_noise"):
        warnings.append(INSECURE_NOISE_WARNING)
    return warnings


def build_report(
    config: Mapping[str, Any],
    dataset: Any,
    rounds: Sequence[Mapping[str, Any]],
    final: Mapping[str, Any],
    *,
    encoding: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the report dict (see the module docstring for its schema)."""
    done = [r for r in rounds if not r.get("aborted")]
    costs = {
        "bytes_up_total": int(sum(r.get("bytes_up", 0) for r in rounds)),
        "bytes_down_total": int(sum(r.get("bytes_down", 0) for r in rounds)),
        "aggregate_seconds_total": float(sum(r.get("aggregate_seconds", 0.0) for r in rounds)),
        "train_seconds_total": float(sum(r.get("train_seconds", 0.0) for r in rounds)),
        "seconds_total": float(sum(r.get("seconds", 0.0) for r in rounds)),
        "rounds_completed": len(done),
        "rounds_aborted": len(rounds) - len(done),
        "dropped_client_rounds": int(sum(len(r.get("dropped", [])) for r in rounds)),
        "bytes_up_per_round_mean": float(np.mean([r.get("bytes_up", 0) for r in done])) if done else 0.0,
        "encoding": dict(encoding or {}),
    }
    return {
        "schema": REPORT_SCHEMA,
        "config": dict(config),
        "dataset": {
            "name": dataset.name,
            "simulated": bool(dataset.simulated),
            "description": dataset.description,
            "centres": {c.name: {"n_train": c.n_train, "n_test": c.n_test} for c in dataset.centres},
        },
        "rounds": [dict(r) for r in rounds],
        "final": {
            "mean_centre_accuracy": float(final["mean_centre_accuracy"]),
            "centre_accuracy": {k: float(v) for k, v in final["centre_accuracy"].items()},
            "test_loss": float(final.get("test_loss", float("nan"))),
        },
        "costs": costs,
        "environment": environment(),
        "security_warnings": security_warnings(config),
        **dict(extra or {}),
    }


def write_report(out_dir: Path | str, report: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``report.json`` and the plots into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=2, default=_json_default))
    paths = {"report": path}
    paths.update(plot_run(out, report["rounds"], title=_title(report)))
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _title(report: Mapping[str, Any]) -> str:
    cfg = report.get("config", {})
    return f"{cfg.get('dataset')} · {cfg.get('protocol')} · {cfg.get('strategy')} · seed {cfg.get('seed')}"


def plot_run(out_dir: Path, rounds: Sequence[Mapping[str, Any]], *, title: str = "") -> dict[str, Path]:
    """Accuracy per round per centre (dropout and abort rounds marked), and bytes/time per round, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["round"] for r in rounds]
    fig = accuracy_figure(rounds, title=title)
    acc_path = out_dir / ACCURACY_PLOT
    fig.savefig(acc_path, dpi=110)
    plt.close(fig)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.bar([x - 0.2 for x in xs], [r.get("bytes_up", 0) / 1e3 for r in rounds], width=0.4, label="up")
    ax1.bar([x + 0.2 for x in xs], [r.get("bytes_down", 0) / 1e3 for r in rounds], width=0.4, label="down")
    ax1.set(xlabel="round", ylabel="kB (all clients)", title="protocol traffic per round")
    ax1.legend(fontsize=8)
    ax2.bar(xs, [r.get("train_seconds", 0.0) for r in rounds], label="local training")
    ax2.bar(
        xs,
        [r.get("aggregate_seconds", 0.0) for r in rounds],
        bottom=[r.get("train_seconds", 0.0) for r in rounds],
        label="aggregation (protocol)",
    )
    ax2.set(xlabel="round", ylabel="seconds", title="time per round")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    cost_path = out_dir / COSTS_PLOT
    fig.savefig(cost_path, dpi=110)
    plt.close(fig)
    return {"accuracy_plot": acc_path, "costs_plot": cost_path}


#: Marks on the accuracy plot: a round in which clients dropped, and one that aborted (model kept).
DROPOUT_LABEL = "round with dropouts"
ABORT_LABEL = "aborted round (model kept)"
_MAX_NAMED_ROUNDS = 15  # above this, the dropped centres' names would overlap


def accuracy_figure(rounds: Sequence[Mapping[str, Any]], *, title: str = "") -> Any:
    """The accuracy plot as a matplotlib Figure: per-centre and mean test accuracy per round.

    A round whose ``dropped`` list is not empty gets a dotted orange line, an
    aborted round a red band; each line is labelled with the dropped centres'
    names (``dropped`` holds indices into the centre order of ``centre_accuracy``).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    xs = [r["round"] for r in rounds]
    centres = list(rounds[0]["centre_accuracy"]) if rounds else []
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for name in centres:
        ax.plot(xs, [r["centre_accuracy"][name] for r in rounds], marker="o", ms=3, label=name)
    ax.plot(xs, [r["mean_centre_accuracy"] for r in rounds], "k--", lw=2, label="mean over centres")
    marked = [r for r in rounds if r.get("aborted") or r.get("dropped")]
    for r in marked:
        if r.get("aborted"):
            ax.axvspan(r["round"] - 0.4, r["round"] + 0.4, color="red", alpha=0.15, lw=0, label=ABORT_LABEL)
        else:
            ax.axvline(r["round"], color="tab:orange", ls=":", lw=1.5, label=DROPOUT_LABEL)
        names = [centres[c] if 0 <= c < len(centres) else str(c) for c in r.get("dropped", [])]
        if names and len(marked) <= _MAX_NAMED_ROUNDS:
            ax.text(
                r["round"],
                1.0,
                " −" + ", ".join(names),
                rotation=90,
                fontsize=7,
                va="top",
                ha="center",
                color="red" if r.get("aborted") else "tab:orange",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
            )
    ax.set(xlabel="round", ylabel="test accuracy", title=title or "accuracy per centre", ylim=(0, 1.02))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one legend entry per kind of mark
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def comparison_markdown(rows: Sequence[Mapping[str, Any]], *, seeds: Sequence[int], command: str) -> str:
    """The comparison table: one row per method, mean ± std over seeds, per-centre means."""
    centres: list[str] = list(rows[0]["centre_accuracy_mean"]) if rows else []
    head = "| method | protocol | mean per-centre acc. (± std) | " + " | ".join(centres) + " | kB up/round | s/round |"
    sep = "|" + "---|" * (5 + len(centres))
    lines = [
        f"Mean per-centre test accuracy over seeds {', '.join(map(str, seeds))} (FLamby's metric).",
        "",
        f"Command: `{command}`",
        "",
        head,
        sep,
    ]
    for r in rows:
        cells = " | ".join(f"{r['centre_accuracy_mean'][c]:.3f}" for c in centres)
        kb = "–" if r.get("bytes_up_per_round") is None else f"{r['bytes_up_per_round'] / 1e3:.1f}"
        sec = "–" if r.get("seconds_per_round") is None else f"{r['seconds_per_round']:.2f}"
        lines.append(f"| {r['method']} | {r['protocol']} | {r['mean']:.3f} ± {r['std']:.3f} | {cells} | {kb} | {sec} |")
    return "\n".join(lines) + "\n"
