"""The ``secagg`` command: ``run`` (train, report, plots; ``--compare``),
``params`` (threat-model parameter finder) and ``bench`` (benchmark scripts).

Bad arguments print one clear line and exit non-zero; typed errors from the
library (:class:`~secagg.errors.SecAggError`) are shown the same way, never as
a traceback. Without the ``fl`` extra (typer, rich) the command says which
extra to install instead of failing on import.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional, Sequence

from protocols.config import choose_params
from protocols.he import SCHEME_MODULES, require_scheme
from secagg.errors import ConfigError, MissingExtraError, SecAggError, require_extra

try:
    import typer
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table
except ImportError as exc:  # the `fl` extra is missing: main() says so
    _MISSING_CLI_MODULE: str | None = exc.name or "typer"
else:
    _MISSING_CLI_MODULE = None

__all__ = ["app", "main", "run_with_progress", "print_report_paths"]

# Help panels: each is its own table, so a long option name (--insecure-reproducible-noise)
# is not squeezed by the range metavars of another panel and the help fits 80 columns.
DP_PANEL = "Differential privacy"
SPLIT_PANEL = "Simulated split (breast-cancer)"
OUTPUT_PANEL = "Output"

#: The optional-dependency extra that the command line (typer, rich) and ``secagg run`` (torch) come from.
CLI_EXTRA = "fl"

if _MISSING_CLI_MODULE is None:
    console = Console()
    err_console = Console(stderr=True)


def _fail(exc: BaseException) -> "typer.Exit":
    # A missing extra's message already says what to install; its fields would only repeat it.
    text = exc.message if isinstance(exc, MissingExtraError) else str(exc)
    # escape(): an extra named in brackets ("secagg[dp]") is text, not rich markup. soft_wrap: one line.
    err_console.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)
    return typer.Exit(code=1)


def _round_table(rounds: list[dict[str, Any]], centres: Sequence[str] = ()) -> Table:
    """Per-round metrics; dropped clients by centre name (``centres[client id]``) where known."""
    table = Table(title="per-round metrics", show_lines=False)
    for col in ("round", "loss", "mean acc.", "kB up", "kB down", "s", "dropped", "ε"):
        table.add_column(col, justify="left" if col == "dropped" else "right")
    for r in rounds:
        dropped = ", ".join(_centre_name(centres, cid) for cid in r.get("dropped", [])) or "–"
        table.add_row(
            str(r["round"]),
            f"{r['loss']:.4f}",
            f"{r['mean_centre_accuracy']:.3f}",
            f"{r.get('bytes_up', 0) / 1e3:.1f}",
            f"{r.get('bytes_down', 0) / 1e3:.1f}",
            f"{r.get('seconds', 0.0):.2f}",
            f"aborted ({dropped})" if r.get("aborted") else dropped,
            "–" if r.get("epsilon") is None else f"{r['epsilon']:.3f}",
        )
    return table


def _centre_name(centres: Sequence[str], client_id: int) -> str:
    return escape(centres[client_id]) if 0 <= client_id < len(centres) else f"client {client_id}"


def _dataset_options(
    dataset: str, n_clients: Optional[int], partition: Optional[str], alpha: Optional[float]
) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if dataset == "breast-cancer":
        if n_clients is not None:
            opts["n_clients"] = n_clients
        if partition is not None:
            opts["partition"] = partition
        if alpha is not None:
            opts["alpha"] = alpha
    elif any(v is not None for v in (n_clients, partition, alpha)):
        raise ConfigError(
            "--n-clients/--partition/--alpha apply to simulated splits (breast-cancer) only; "
            f"{dataset} has its natural split by hospital",
            dataset=dataset,
        )
    return opts


def run(
    dataset: Annotated[str, typer.Option(help="heart-disease (4 real hospitals) or breast-cancer (simulated)")] = (
        "heart-disease"
    ),
    protocol: Annotated[
        str, typer.Option(help="plaintext, secagg, secagg+, paillier, paillier-threshold or ckks")
    ] = "secagg+",
    strategy: Annotated[str, typer.Option(help="fedavg, fedprox, fedsgd, fedadam, fedyogi, fedadagrad")] = "fedavg",
    model: Annotated[str, typer.Option(help="logreg or mlp")] = "logreg",
    rounds: Annotated[int, typer.Option(min=1, help="federated rounds")] = 15,
    local_steps: Annotated[
        Optional[int], typer.Option(min=1, help="local SGD steps per round (default 100; 1 under --dp-unit record)")
    ] = None,
    client_lr: Annotated[
        Optional[float], typer.Option(help="client learning rate (default 1e-3; FedSGD 0.1; record-level DP 0.25)")
    ] = None,
    server_lr: Annotated[
        Optional[float], typer.Option(help="server learning rate (default 1; FedAdam/FedYogi 0.03, FedAdagrad 0.1)")
    ] = None,
    mu: Annotated[Optional[float], typer.Option(help="FedProx proximal weight (default 0.01)")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    clients_per_round: Annotated[Optional[int], typer.Option(min=1, help="sample this many clients per round")] = None,
    dropout_rate: Annotated[float, typer.Option(min=0.0, max=0.99, help="per-round client dropout probability")] = 0.0,
    seed: Annotated[int, typer.Option()] = 42,
    dp_epsilon: Annotated[
        Optional[float], typer.Option(help="target ε for distributed DP", rich_help_panel=DP_PANEL)
    ] = None,
    dp_delta: Annotated[
        Optional[float], typer.Option(help="target δ for distributed DP", rich_help_panel=DP_PANEL)
    ] = None,
    dp_clip: Annotated[
        Optional[float],
        typer.Option(
            help="DP L2 clip: per hospital delta (default 0.1) or per record (default 1.0)", rich_help_panel=DP_PANEL
        ),
    ] = None,
    dp_unit: Annotated[
        str,
        typer.Option(
            help="DP unit: record (a patient: distributed DP-SGD; the default, since with a handful of "
            "hospitals client-level noise drowns the update) or client (a hospital's update)",
            rich_help_panel=DP_PANEL,
        ),
    ] = "record",
    dp_sampling_rate: Annotated[
        Optional[float],
        typer.Option(help="record-level DP: Poisson rate per record (default 0.05)", rich_help_panel=DP_PANEL),
    ] = None,
    insecure_reproducible_noise: Annotated[
        bool,
        typer.Option(
            "--insecure-reproducible-noise",
            help="INSECURE, tests only: derive DP noise from --seed so runs repeat bit for bit; "
            "anyone who knows the seed can then remove the noise (no privacy)",
            rich_help_panel=DP_PANEL,
        ),
    ] = False,
    n_clients: Annotated[Optional[int], typer.Option(help="simulated centres", rich_help_panel=SPLIT_PANEL)] = None,
    partition: Annotated[Optional[str], typer.Option(help="iid or dirichlet", rich_help_panel=SPLIT_PANEL)] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Dirichlet α", rich_help_panel=SPLIT_PANEL)] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            help="output directory (default: a new folder in runs/ named after the dataset, protocol, "
            "strategy and seed)",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue the checkpoint in --out", rich_help_panel=OUTPUT_PANEL)
    ] = False,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="pooled, local-only, plaintext and secure runs over seeds 42-46",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="no progress bar or table", rich_help_panel=OUTPUT_PANEL)
    ] = False,
) -> None:
    """Train federated models over a secure-aggregation protocol and write a report."""

    try:
        if dp_epsilon is not None or dp_delta is not None:
            if dp_epsilon is None or dp_delta is None:
                raise ConfigError("--dp-epsilon and --dp-delta go together")
        if protocol in SCHEME_MODULES:
            require_scheme(protocol)  # refuse now, not as a key holder that drops out of every round
        require_extra("torch", CLI_EXTRA)
        from .trainer import CHECKPOINT_JSON, TrainConfig

        clip_option: dict[str, Any] = {} if dp_clip is None else {"dp_l2_clip": dp_clip}
        config = TrainConfig(
            dataset=dataset,
            model=model,
            strategy=strategy,
            protocol=protocol,
            rounds=rounds,
            local_steps=(1 if dp_epsilon is not None and dp_unit == "record" else 100)
            if local_steps is None
            else local_steps,
            client_lr=client_lr,
            dp_unit=dp_unit if dp_epsilon is not None else "client",
            dp_sampling_rate=dp_sampling_rate,
            insecure_reproducible_noise=insecure_reproducible_noise,
            batch_size=batch_size,
            mu=mu,
            server_lr=server_lr,
            clients_per_round=clients_per_round,
            dropout_rate=dropout_rate,
            seed=seed,
            dp_epsilon=dp_epsilon,
            dp_delta=dp_delta,
            **clip_option,
            dataset_options=_dataset_options(dataset, n_clients, partition, alpha),
        )
        from .datasets import DATASETS

        if dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
        _set_threads()
        if compare:
            _run_compare(config, out, quiet=quiet)
            return
        out_dir = out if out is not None else Path("runs") / f"{dataset}-{protocol}-{strategy}-s{seed}"
        _check_out_dir(out_dir)
        if not resume and (out_dir / CHECKPOINT_JSON).exists():
            raise ConfigError(
                f"{out_dir} already holds a run; pass --resume to continue it, or a new --out directory",
                out=str(out_dir),
            )
        run_with_progress(config, out_dir, resume=resume, quiet=quiet)
    except (SecAggError, OSError) as exc:
        raise _fail(exc) from None


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out`` that names an existing file (``mkdir`` would say only "File exists")."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; pass a directory (new or holding a run)", out=str(out_dir))


def _set_threads() -> None:
    import torch

    torch.set_num_threads(1)  # tiny models: one thread is fastest and keeps runs reproducible


def run_with_progress(
    config: Any,
    out_dir: Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    aggregator: Any = None,
    print_paths: bool = True,
) -> dict[str, Any]:
    """Run one experiment with a rich progress bar and per-round table; return its report.

    ``print_paths=False`` leaves the ``report:`` and ``plots:`` lines to the caller.
    """
    from .experiment import run_experiment
    from .report import security_warnings

    warnings = security_warnings(config.to_dict())
    for line in warnings:  # before training, even with --quiet
        err_console.print(f"[bold red]WARNING:[/] {line}")
    if not quiet:
        console.print(
            f"[bold]secagg run[/] {config.dataset} · protocol {config.protocol} · "
            f"strategy {config.strategy} · {config.rounds} rounds · seed {config.seed}"
        )
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    ) as progress:
        task = progress.add_task("rounds", total=config.rounds, status="")

        def on_round(record: dict[str, Any]) -> None:
            progress.update(
                task,
                completed=record["round"],
                status=f"acc {record['mean_centre_accuracy']:.3f} loss {record['loss']:.3f}",
            )

        report = run_experiment(config, out_dir, resume=resume, on_round=on_round, aggregator=aggregator)
    if not quiet:
        console.print(_round_table(report["rounds"], list(report["dataset"]["centres"])))
        final = report["final"]
        console.print(
            f"final mean per-centre accuracy: [bold]{final['mean_centre_accuracy']:.3f}[/]  "
            + "  ".join(f"{k}: {v:.3f}" for k, v in final["centre_accuracy"].items())
        )
    if report.get("dp"):
        dp = report["dp"]
        console.print(
            f"distributed DP ({dp['unit']}): ε = {report['rounds'][-1].get('epsilon', float('nan')):.3f} "
            f"spent (target {dp['epsilon_target']}, δ = {dp['delta']})"
        )
        if dp.get("utility_warning"):
            err_console.print(f"[bold yellow]DP utility:[/] {dp['utility_warning']}")
        for name, entry in (dp.get("per_centre") or {}).items():
            console.print(
                f"  {name}: ε = {entry['epsilon']:.3f} over {entry['rounds']} rounds; "
                f"{entry['epsilon_if_exposed']:.3f} if its masked input were unmasked alone"
            )
    for line in warnings:  # and again under the results, where a reader looks
        err_console.print(f"[bold red]WARNING:[/] {line}")
    if print_paths:
        print_report_paths(report)
    return report


def print_report_paths(report: dict[str, Any]) -> None:
    """The ``report:`` and ``plots:`` lines of a finished run."""
    paths = report["paths"]
    console.print(f"report: {escape(str(paths['report']))}", soft_wrap=True)
    console.print(f"plots:  {escape(str(paths['accuracy_plot']))}, {escape(str(paths['costs_plot']))}", soft_wrap=True)


def _run_compare(config: Any, out: Optional[Path], *, quiet: bool = False) -> None:
    """``--compare``: a ``k/N`` bar naming the current method on a terminal, and one line per finished method."""
    from .experiment import ComparisonStep, run_comparison, shell_command

    out_dir = out if out is not None else Path("runs") / f"compare-{config.dataset}"
    _check_out_dir(out_dir)
    started: dict[int, float] = {}
    with Progress(
        TextColumn("comparing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet or not console.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=None)

        def on_step(step: ComparisonStep) -> None:
            if step.row is None:
                started[step.index] = time.perf_counter()
                progress.update(task, total=step.total, completed=step.index - 1, description=step.method)
                return
            progress.update(task, completed=step.index)
            if not quiet:
                seconds = time.perf_counter() - started.get(step.index, time.perf_counter())
                console.print(
                    f"[{step.index}/{step.total}] {step.method}: mean per-centre accuracy "
                    f"{step.row['mean']:.3f} ± {step.row['std']:.3f} ({seconds:.0f} s)",
                    markup=False,
                    highlight=False,
                )

        result = run_comparison(config, out_dir, command=shell_command(["secagg"] + sys.argv[1:]), on_step=on_step)
    console.print(Path(result["paths"]["markdown"]).read_text(), markup=False)
    console.print(f"table: {result['paths']['markdown']} and {result['paths']['json']}", markup=False)


def params(
    n: Annotated[int, typer.Option("--n", min=2, help="number of clients")],
    dropout_rate: Annotated[float, typer.Option(help="expected fraction of clients that drop")] = 0.1,
    corrupt_rate: Annotated[float, typer.Option(help="fraction of clients colluding with the server")] = 0.05,
    security_bits: Annotated[int, typer.Option(min=1)] = 40,
    correctness_bits: Annotated[int, typer.Option(min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Pick SecAgg+ neighbour degree k, threshold t and bit width for a threat model."""
    try:
        p = choose_params(
            n,
            dropout_rate=dropout_rate,
            corrupt_rate=corrupt_rate,
            security_bits=security_bits,
            correctness_bits=correctness_bits,
        )
    except SecAggError as exc:
        raise _fail(exc) from None
    fields = {
        k: getattr(p, k)
        for k in ("n", "neighbors", "threshold", "bits", "min_survivors", "security_failure", "correctness_failure")
    }
    if as_json:
        console.print_json(json.dumps(fields))
        return
    table = Table(title=f"SecAgg+ parameters for n={n}, dropout {dropout_rate}, corrupt {corrupt_rate}")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for k, v in fields.items():
        table.add_row(k, f"{v:.3g}" if isinstance(v, float) else str(v))
    console.print(table)


def bench(
    name: Annotated[Optional[str], typer.Argument(help="one script in bench/ (without .py); default: all")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="fast smoke run")] = False,
    bench_dir: Annotated[Path, typer.Option(help="where the benchmark scripts are")] = Path("bench"),
) -> None:
    """Run the benchmark scripts in bench/ (each prints JSON)."""
    try:
        if not bench_dir.is_dir():
            raise ConfigError(
                f"no benchmark directory {bench_dir}; run from the repository root or pass --bench-dir",
                bench_dir=str(bench_dir),
            )
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


def _build_app() -> "typer.Typer":
    command_line = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        help="Secure aggregation for federated learning.",
    )
    for command in (run, params, bench):
        command_line.command()(command)
    return command_line


if _MISSING_CLI_MODULE is None:
    app = _build_app()


def main() -> None:
    """Console-script entry point (``secagg``).

    Without the ``fl`` extra, ``secagg --help`` (or no arguments) prints what
    the command needs and exits 0; any other command prints one line naming the
    extra and exits 1.
    """
    if _MISSING_CLI_MODULE is not None:
        need = f"needs the '{CLI_EXTRA}' extra ({_MISSING_CLI_MODULE} is not installed); "
        need += f"install it with: pip install 'secagg[{CLI_EXTRA}]'"
        if sys.argv[1:] in ([], ["--help"], ["-h"]):
            sys.stdout.write(f"usage: secagg run [OPTIONS]\n\nThe secagg command {need}\n")
            raise SystemExit(0)
        sys.stderr.write(f"error: the secagg command ('secagg run') {need}\n")
        raise SystemExit(1)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
