"""What ``secagg run`` and the demo print: dropped hospitals by name, each path
once, one clear line for a bad ``--out``, help that fits 80 columns, ``--compare``
progress, and dropout/abort marks on the accuracy plot."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

import fl.demo
import fl.experiment
from fl.cli import _round_table, app
from fl.experiment import ComparisonStep, run_comparison
from fl.report import ABORT_LABEL, DROPOUT_LABEL, accuracy_figure
from fl.trainer import TrainConfig

RUN = ["run", "--rounds", "1", "--local-steps", "2", "--quiet"]


def _record(dropped: list[int], *, aborted: bool = False) -> dict:
    return {"round": 1, "loss": 0.5, "mean_centre_accuracy": 0.7, "dropped": dropped, "aborted": aborted}


def _render(table) -> str:
    console = Console(record=True, width=120)
    console.print(table)
    return console.export_text()


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_dropped_column_names_the_hospitals_not_their_ids():
    centres = ["Cleveland", "Hungary", "Switzerland", "Long Beach VA"]
    text = _render(_round_table([_record([2, 3]), _record([]), _record([1], aborted=True)], centres))
    rows = [line for line in text.splitlines() if "0.5000" in line]
    assert [row.split("│")[-3].strip() for row in rows] == [
        "Switzerland, Long Beach VA",
        "–",
        "aborted (Hungary)",
    ]


def test_run_prints_report_and_plots_once(tmp_path):
    result = CliRunner().invoke(app, RUN + ["--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert result.output.count("report:") == 1 and result.output.count("plots:") == 1


def test_demo_prints_report_and_plots_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fl.demo, "DEMO_CONFIG", dataclasses.replace(fl.demo.DEMO_CONFIG, rounds=1, local_steps=2))
    assert fl.demo.main(tmp_path / "demo") == 0
    out = capsys.readouterr().out
    assert out.count("report:") == 1 and out.count("plots:") == 1


def test_out_naming_a_file_is_one_clear_line(tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    result = CliRunner().invoke(app, RUN + ["--out", str(existing)])
    assert result.exit_code == 1
    lines = _lines(result.output)
    assert len(lines) == 1 and "is a file" in lines[0] and "Errno" not in lines[0]
    assert existing.read_text() == "keep me"


def test_existing_run_names_the_resume_flag(tmp_path):
    args = RUN + ["--out", str(tmp_path / "run")]
    assert CliRunner().invoke(app, args).exit_code == 0
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1
    lines = _lines(again.output)
    assert len(lines) == 1 and "--resume" in lines[0] and "resume=True" not in lines[0]


@pytest.mark.parametrize("command", [["run"], ["params"], ["bench"], []])
def test_help_at_80_columns_shows_every_option_whole(command):
    result = CliRunner().invoke(app, command + ["--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "…" not in result.output
    if command == ["run"]:
        assert "--insecure-reproducible-noise " in result.output
        out_rows = result.output[result.output.index("--out ") : result.output.index("--resume")]
        flat = re.sub(r"[\s│]+", " ", out_rows)
        assert "a new folder in runs/ named after the dataset, protocol, strategy and seed" in flat


def _fake_comparison(methods: list[str]):
    """A stand-in for run_comparison that reports each method's start and finish, then writes its table."""

    def fake(config, out_dir, *, command, on_step):  # noqa: ANN001, ANN202
        for i, method in enumerate(methods, 1):
            on_step(ComparisonStep(i, len(methods), method))
            on_step(ComparisonStep(i, len(methods), method, {"mean": 0.5 + i / 100, "std": 0.01}))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "compare.md").write_text("| method |\n")
        return {"paths": {"markdown": str(out_dir / "compare.md"), "json": str(out_dir / "compare.json")}}

    return fake


def test_compare_without_a_terminal_prints_one_line_per_finished_method(tmp_path, monkeypatch):
    methods = ["pooled", "local-only", "fedavg / plaintext", "fedavg / secagg+"]
    monkeypatch.setattr(fl.experiment, "run_comparison", _fake_comparison(methods))
    result = CliRunner().invoke(app, ["run", "--compare", "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    progress = [line for line in result.output.splitlines() if re.match(r"\[\d+/\d+\]", line)]
    assert [line.split("]")[0] + "]" for line in progress] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    for line, method, i in zip(progress, methods, range(1, 5)):
        assert f"] {method}: mean per-centre accuracy {0.5 + i / 100:.3f} ± 0.010" in line


def test_compare_steps_count_every_method_once(tmp_path):
    steps: list[ComparisonStep] = []
    base = TrainConfig(protocol="secagg+", rounds=1, local_steps=2)
    result = run_comparison(base, tmp_path, seeds=(42,), strategies=("fedavg",), protocols=("secagg+",),
                            he_protocols=(), baseline_epochs=1, on_step=steps.append)
    total = len(result["rows"])
    assert {s.total for s in steps} == {total}
    assert [(s.index, s.row is None) for s in steps] == [(i, start) for i in range(1, total + 1)
                                                          for start in (True, False)]
    assert [s.row for s in steps if s.row is not None] == json.loads((tmp_path / "compare.json").read_text())["rows"]


def test_accuracy_plot_marks_dropout_and_abort_rounds():
    centres = {"Cleveland": 0.7, "Hungary": 0.8, "Switzerland": 0.6}
    rounds = [
        {"round": r, "mean_centre_accuracy": 0.7, "centre_accuracy": centres, "dropped": d, "aborted": a}
        for r, d, a in [(1, [], False), (2, [1], False), (3, [0, 2], True), (4, [], False), (5, [2], False)]
    ]
    fig = accuracy_figure(rounds)
    ax = fig.axes[0]
    lines = [line for line in ax.lines if line.get_label() == DROPOUT_LABEL]
    assert sorted(line.get_xdata()[0] for line in lines) == [2, 5]
    bands = [p for p in ax.patches if p.get_label() == ABORT_LABEL]
    assert len(bands) == 1 and bands[0].get_x() < 3 < bands[0].get_x() + bands[0].get_width()
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == [" −Cleveland, Switzerland", " −Hungary", " −Switzerland"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend.count(DROPOUT_LABEL) == 1 and legend.count(ABORT_LABEL) == 1
