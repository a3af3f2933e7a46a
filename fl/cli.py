"""The ``secagg`` command: ``run`` (train, report, plots; ``--compare``),
``params`` (threat-model parameter finder) and ``bench`` (benchmark scripts).

Bad arguments print one clear line and exit non-zero; typed errors from the
library (:class:`~secagg.errors.SecAggError`) are shown the same way, never as
a traceback.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from secagg.errors import ConfigError, SecAggError

__all__ = ["app", "main", "dp_available", "run_with_progress"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Secure aggregation for federated learning.")
console = Console()
err_console = Console(stderr=True)


def _fail(exc: BaseException) -> "typer.Exit":
    err_console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=1)


def dp_available() -> bool:
    """True when the distributed-DP layer (``protocols.dp`` over ``secagg.dp``) is installed."""
    from .privacy import dp_available as available

    return available()


def _round_table(rounds: list[dict[str, Any]]) -> Table:
    table = Table(title="per-round metrics", show_lines=False)
    for col in ("round", "loss", "mean acc.", "kB up", "kB down", "s", "dropped", "ε"):
        table.add_column(col, justify="right")
    for r in rounds:
        table.add_row(
            str(r["round"]), f"{r['loss']:.4f}", f"{r['mean_centre_accuracy']:.3f}",
            f"{r.get('bytes_up', 0) / 1e3:.1f}", f"{r.get('bytes_down', 0) / 1e3:.1f}",
            f"{r.get('seconds', 0.0):.2f}",
            ("aborted" if r.get("aborted") else ",".join(map(str, r.get("dropped", []))) or "–"),
            "–" if r.get("epsilon") is None else f"{r['epsilon']:.3f}",
        )
    return table


def _dataset_options(dataset: str, n_clients: Optional[int], partition: Optional[str],
                     alpha: Optional[float]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if dataset == "breast-cancer":
        if n_clients is not None:
            opts["n_clients"] = n_clients
        if partition is not None:
            opts["partition"] = partition
        if alpha is not None:
            opts["alpha"] = alpha
    elif any(v is not None for v in (n_clients, partition, alpha)):
        raise ConfigError("--n-clients/--partition/--alpha apply to simulated splits (breast-cancer) only; "
                          f"{dataset} has its natural split by hospital", dataset=dataset)
    return opts


@app.command()
def run(
    dataset: str = typer.Option("heart-disease", help="heart-disease (4 real hospitals) or breast-cancer (simulated)"),
    protocol: str = typer.Option("secagg+", help="plaintext, secagg, secagg+, paillier, paillier-threshold or ckks"),
    strategy: str = typer.Option("fedavg", help="fedavg, fedprox, fedsgd, fedadam, fedyogi, fedadagrad"),
    model: str = typer.Option("logreg", help="logreg or mlp"),
    rounds: int = typer.Option(15, min=1, help="federated rounds"),
    local_steps: Optional[int] = typer.Option(None, min=1, help="local SGD steps per round (default 100; 1 under --dp-unit record)"),
    client_lr: Optional[float] = typer.Option(None, help="client learning rate (default 1e-3; FedSGD 0.1)"),
    server_lr: Optional[float] = typer.Option(None, help="server learning rate (default 1; FedAdam/FedYogi 0.03, FedAdagrad 0.1)"),
    mu: Optional[float] = typer.Option(None, help="FedProx proximal weight (default 0.01)"),
    batch_size: int = typer.Option(4, min=1),
    clients_per_round: Optional[int] = typer.Option(None, min=1, help="sample this many clients per round"),
    dropout_rate: float = typer.Option(0.0, min=0.0, max=0.99, help="per-round client dropout probability"),
    seed: int = typer.Option(42),
    dp_epsilon: Optional[float] = typer.Option(None, help="target ε for distributed DP"),
    dp_delta: Optional[float] = typer.Option(None, help="target δ for distributed DP"),
    dp_clip: Optional[float] = typer.Option(None, help="DP L2 clip: per hospital delta (default 0.1) or per record (default 1.0)"),
    dp_unit: str = typer.Option("record", help="DP unit: record (a patient: distributed DP-SGD; the default, since with "
                                "a handful of hospitals client-level noise drowns the update) or client (a hospital's update)"),
    dp_sampling_rate: Optional[float] = typer.Option(None, help="record-level DP: Poisson rate per record (default 0.05)"),
    insecure_reproducible_noise: bool = typer.Option(
        False, "--insecure-reproducible-noise",
        help="INSECURE, tests only: derive DP noise from --seed so runs repeat bit for bit; "
             "anyone who knows the seed can then remove the noise (no privacy)"),
    n_clients: Optional[int] = typer.Option(None, help="simulated centres (breast-cancer)"),
    partition: Optional[str] = typer.Option(None, help="iid or dirichlet (breast-cancer)"),
    alpha: Optional[float] = typer.Option(None, help="Dirichlet α (breast-cancer)"),
    out: Optional[Path] = typer.Option(None, help="output directory (default runs/<dataset>-<protocol>-<strategy>-s<seed>)"),
    resume: bool = typer.Option(False, "--resume", help="continue the checkpoint in --out"),
    compare: bool = typer.Option(False, "--compare", help="pooled, local-only, plaintext and secure runs over seeds 42-46"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar or table"),
) -> None:
    """Train federated models over a secure-aggregation protocol and write a report."""

    try:
        if dp_epsilon is not None or dp_delta is not None:
            if dp_epsilon is None or dp_delta is None:
                raise ConfigError("--dp-epsilon and --dp-delta go together")
            if not dp_available():
                raise ConfigError("distributed DP is not available yet in this installation "
                                  "(protocols.dp / secagg.dp are missing); run without --dp-epsilon")
        from .trainer import TrainConfig

        config = TrainConfig(
            dataset=dataset, model=model, strategy=strategy, protocol=protocol, rounds=rounds,
            local_steps=(1 if dp_epsilon is not None and dp_unit == "record" else 100)
            if local_steps is None else local_steps,
            client_lr=client_lr, dp_unit=dp_unit if dp_epsilon is not None else "client",
            dp_sampling_rate=dp_sampling_rate,
            insecure_reproducible_noise=insecure_reproducible_noise,
            batch_size=batch_size, mu=mu, server_lr=server_lr, clients_per_round=clients_per_round,
            dropout_rate=dropout_rate, seed=seed, dp_epsilon=dp_epsilon, dp_delta=dp_delta,
            **({} if dp_clip is None else {"dp_l2_clip": dp_clip}),
            dataset_options=_dataset_options(dataset, n_clients, partition, alpha),
        )
        from .datasets import DATASETS

        if dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
        _set_threads()
        if compare:
            _run_compare(config, out)
            return
        out_dir = out if out is not None else Path("runs") / f"{dataset}-{protocol}-{strategy}-s{seed}"
        run_with_progress(config, out_dir, resume=resume, quiet=quiet)
    except (SecAggError, OSError) as exc:
        raise _fail(exc) from None


def _set_threads() -> None:
    import torch

    torch.set_num_threads(1)  # tiny models: one thread is fastest and keeps runs reproducible


def run_with_progress(config: Any, out_dir: Path, *, resume: bool = False, quiet: bool = False,
                      aggregator: Any = None) -> dict[str, Any]:
    """Run one experiment with a rich progress bar and per-round table; return its report."""
    from .experiment import run_experiment
    from .report import security_warnings

    warnings = security_warnings(config.to_dict())
    for line in warnings:  # before training, even with --quiet
        err_console.print(f"[bold red]WARNING:[/] {line}")
    if not quiet:
        console.print(f"[bold]secagg run[/] {config.dataset} · protocol {config.protocol} · "
                      f"strategy {config.strategy} · {config.rounds} rounds · seed {config.seed}")
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
                  disable=quiet, transient=False) as progress:
        task = progress.add_task("rounds", total=config.rounds, status="")

        def on_round(record: dict[str, Any]) -> None:
            progress.update(task, completed=record["round"],
                            status=f"acc {record['mean_centre_accuracy']:.3f} loss {record['loss']:.3f}")

        report = run_experiment(config, out_dir, resume=resume, on_round=on_round, aggregator=aggregator)
    if not quiet:
        console.print(_round_table(report["rounds"]))
        final = report["final"]
        console.print(f"final mean per-centre accuracy: [bold]{final['mean_centre_accuracy']:.3f}[/]  "
                      + "  ".join(f"{k}: {v:.3f}" for k, v in final["centre_accuracy"].items()))
    if report.get("dp"):
        dp = report["dp"]
        console.print(f"distributed DP ({dp['unit']}): ε = {report['rounds'][-1].get('epsilon', float('nan')):.3f} "
                      f"spent (target {dp['epsilon_target']}, δ = {dp['delta']})")
        if dp.get("utility_warning"):
            err_console.print(f"[bold yellow]DP utility:[/] {dp['utility_warning']}")
        for name, entry in (dp.get("per_centre") or {}).items():
            console.print(f"  {name}: ε = {entry['epsilon']:.3f} over {entry['rounds']} rounds; "
                          f"{entry['epsilon_if_exposed']:.3f} if its masked input were unmasked alone")
    for line in warnings:  # and again under the results, where a reader looks
        err_console.print(f"[bold red]WARNING:[/] {line}")
    console.print(f"report: {report['paths']['report']}", soft_wrap=True)
    console.print(f"plots:  {report['paths']['accuracy_plot']}, {report['paths']['costs_plot']}", soft_wrap=True)
    return report


def _run_compare(config: Any, out: Optional[Path]) -> None:
    from .experiment import run_comparison, shell_command

    out_dir = out if out is not None else Path("runs") / f"compare-{config.dataset}"
    with console.status("comparing") as status:
        result = run_comparison(config, out_dir, command=shell_command(["secagg"] + sys.argv[1:]),
                                on_step=lambda m: status.update(f"comparing: {m}"))
    console.print(Path(result["paths"]["markdown"]).read_text())
    console.print(f"table: {result['paths']['markdown']} and {result['paths']['json']}")


@app.command()
def params(
    n: int = typer.Option(..., "--n", min=2, help="number of clients"),
    dropout_rate: float = typer.Option(0.1, help="expected fraction of clients that drop"),
    corrupt_rate: float = typer.Option(0.05, help="fraction of clients colluding with the server"),
    security_bits: int = typer.Option(40, min=1),
    correctness_bits: int = typer.Option(20, min=1),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Pick SecAgg+ neighbour degree k, threshold t and bit width for a threat model."""
    try:
        try:
            config_mod = importlib.import_module("protocols.config")
            choose = config_mod.choose_params
        except (ImportError, AttributeError) as exc:
            raise ConfigError("protocols.config.choose_params is not available in this installation") from exc
        p = choose(n, dropout_rate=dropout_rate, corrupt_rate=corrupt_rate,
                   security_bits=security_bits, correctness_bits=correctness_bits)
    except SecAggError as exc:
        raise _fail(exc) from None
    fields = {k: getattr(p, k) for k in ("n", "neighbors", "threshold", "bits", "min_survivors",
                                         "security_failure", "correctness_failure")}
    if as_json:
        console.print_json(json.dumps(fields))
        return
    table = Table(title=f"SecAgg+ parameters for n={n}, dropout {dropout_rate}, corrupt {corrupt_rate}")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for k, v in fields.items():
        table.add_row(k, f"{v:.3g}" if isinstance(v, float) else str(v))
    console.print(table)


@app.command()
def bench(
    name: Optional[str] = typer.Argument(None, help="one script in bench/ (without .py); default: all"),
    quick: bool = typer.Option(False, "--quick", help="fast smoke run"),
    bench_dir: Path = typer.Option(Path("bench"), help="where the benchmark scripts are"),
) -> None:
    """Run the benchmark scripts in bench/ (each prints JSON)."""
    try:
        if not bench_dir.is_dir():
            raise ConfigError(f"no benchmark directory {bench_dir}; run from the repository root "
                              "or pass --bench-dir", bench_dir=str(bench_dir))
        scripts = sorted(p for p in bench_dir.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py")
        if name is not None:
            scripts = [p for p in scripts if p.stem == name]
            if not scripts:
                raise ConfigError(f"no benchmark named {name!r} in {bench_dir}", name=name)
        if not scripts:
            raise ConfigError(f"no benchmark scripts in {bench_dir}")
    except SecAggError as exc:
        raise _fail(exc) from None
    failed = 0
    for script in scripts:
        console.rule(script.stem)
        rc = subprocess.call([sys.executable, str(script)] + (["--quick"] if quick else []))
        failed += rc != 0
    if failed:
        err_console.print(f"[bold red]error:[/] {failed} benchmark(s) failed")
        raise typer.Exit(code=1)


def main() -> None:
    """Console-script entry point (``secagg``)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
