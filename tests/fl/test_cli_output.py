"""What ``secagg run`` and the demo print: counts that read as counts, each path
once, one clear line for a bad ``--out``, and help that fits 80 columns."""

from __future__ import annotations

import dataclasses
import re

from rich.console import Console
from typer.testing import CliRunner

import fl.demo
from fl.cli import _round_table, app

RUN = ["run", "--rounds", "1", "--local-steps", "2", "--quiet"]


def _record(dropped: list[int], *, aborted: bool = False) -> dict:
    return {"round": 1, "loss": 0.5, "mean_centre_accuracy": 0.7, "dropped": dropped, "aborted": aborted}


def _render(table) -> str:
    console = Console(record=True, width=120)
    console.print(table)
    return console.export_text()


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_dropped_column_is_a_count_not_client_ids():
    text = _render(_round_table([_record([2, 3]), _record([]), _record([1], aborted=True)]))
    assert "# dropped" in text
    rows = [line for line in text.splitlines() if "0.5000" in line]
    assert [row.split("│")[-3].strip() for row in rows] == ["2", "0", "aborted"]
    assert "2,3" not in text


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


def test_help_at_80_columns_shows_the_whole_out_default():
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0
    assert max(len(line) for line in result.output.splitlines()) <= 80
    text = result.output
    out_rows = text[text.index("--out ") : text.index("--resume")]
    assert "…" not in out_rows
    flat = re.sub(r"[\s│]+", " ", out_rows)
    assert "a new folder in runs/ named after the dataset, protocol, strategy and seed" in flat
