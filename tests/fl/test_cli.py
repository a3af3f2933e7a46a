"""The ``secagg`` command through typer's test runner: files, schema, errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fl.cli import app
from fl.experiment import run_comparison
from fl.trainer import TrainConfig

runner = CliRunner()


def _output(result) -> str:
    text = result.output
    try:
        text += result.stderr
    except (ValueError, AttributeError):
        pass
    return text


def test_run_writes_report_and_plots_with_the_documented_schema(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--dataset", "heart-disease", "--protocol", "secagg+", "--strategy",
                                 "fedavg", "--rounds", "2", "--local-steps", "5", "--seed", "42",
                                 "--dropout-rate", "0.1", "--out", str(out)])
    assert result.exit_code == 0, _output(result)
    report = json.loads((out / "report.json").read_text())
    assert {"config", "rounds", "final", "costs", "environment"} <= set(report)
    assert report["config"]["protocol"] == "secagg+" and report["config"]["rounds"] == 2
    assert isinstance(report["final"]["mean_centre_accuracy"], float)
    assert set(report["final"]["centre_accuracy"]) == {"Cleveland", "Hungary", "Switzerland", "Long Beach VA"}
    assert all(isinstance(v, float) for v in report["final"]["centre_accuracy"].values())
    assert isinstance(report["rounds"], list) and len(report["rounds"]) == 2
    for r in report["rounds"]:
        assert {"round", "loss", "mean_centre_accuracy", "centre_accuracy", "bytes_up", "bytes_down",
                "seconds", "dropped"} <= set(r)
    assert report["costs"]["encoding"]["precision"] == 2.0**-20
    for plot in ("accuracy.png", "costs.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "report.json" in result.output


def test_resume_through_the_cli(tmp_path):
    out = str(tmp_path / "r")
    def args(rounds):
        return ["run", "--protocol", "plaintext", "--rounds", rounds, "--local-steps", "3", "--quiet", "--out", out]

    assert runner.invoke(app, args("1")).exit_code == 0
    again = runner.invoke(app, args("1"))
    assert again.exit_code == 1 and "--resume" in _output(again)
    longer = runner.invoke(app, args("2") + ["--resume"])
    assert longer.exit_code == 0, _output(longer)
    assert len(json.loads((tmp_path / "r" / "report.json").read_text())["rounds"]) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--protocol", "smoke-signals"], "unknown protocol"),
        (["run", "--dataset", "mnist"], "unknown dataset"),
        (["run", "--strategy", "scaffold"], "unknown strategy"),
        (["run", "--dataset", "heart-disease", "--partition", "iid"], "breast-cancer"),
        (["run", "--dp-epsilon", "1.0"], "--dp-delta"),
        (["bench", "--bench-dir", "/nonexistent/bench"], "no benchmark directory"),
    ],
)
def test_invalid_arguments_give_a_clear_error_and_no_traceback(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert message in _output(result)
    assert "Traceback" not in _output(result)
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_dp_run_reports_epsilon_within_the_target(tmp_path):
    out = tmp_path / "dp"
    result = runner.invoke(app, ["run", "--dp-epsilon", "5.0", "--dp-delta", "1e-5", "--rounds", "2",
                                 "--dp-unit", "client", "--local-steps", "3", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, _output(result)
    report = json.loads((out / "report.json").read_text())
    eps = [r["epsilon"] for r in report["rounds"]]
    assert 0 < eps[0] < eps[1] <= 5.0 + 1e-9
    assert report["dp"]["epsilon_target"] == 5.0 and report["dp"]["min_survivors"] == 4


def test_usage_errors_exit_non_zero():
    result = runner.invoke(app, ["run", "--rounds", "0"])
    assert result.exit_code == 2 and "Traceback" not in _output(result)


def test_params_reports_threat_model_parameters():
    result = runner.invoke(app, ["params", "--n", "100", "--dropout-rate", "0.1", "--corrupt-rate", "0.05", "--json"])
    assert result.exit_code == 0, _output(result)
    fields = json.loads(result.output)
    assert fields["n"] == 100 and fields["threshold"] <= fields["neighbors"] < 100


def test_comparison_writes_markdown_and_json(tmp_path):
    base = TrainConfig(protocol="secagg+", rounds=2, local_steps=5)
    result = run_comparison(base, tmp_path, seeds=(42,), strategies=("fedavg",), protocols=("secagg+",),
                            he_protocols=(), command="secagg run --compare", baseline_epochs=1)
    methods = [(r["method"], r["protocol"]) for r in result["rows"]]
    assert methods == [("pooled", "–"), ("local-only (own centre)", "–"), ("fedavg", "plaintext"),
                       ("fedavg", "secagg+")]
    assert json.loads((tmp_path / "compare.json").read_text())["rows"][0]["method"] == "pooled"
    assert "| fedavg | secagg+ |" in (tmp_path / "compare.md").read_text()


def test_dp_unit_defaults_to_record_for_the_cross_silo_datasets(tmp_path):
    out = tmp_path / "dp-default"
    result = runner.invoke(app, ["run", "--dp-epsilon", "5.0", "--dp-delta", "1e-5", "--rounds", "2", "--quiet",
                                 "--out", str(out)])
    assert result.exit_code == 0, _output(result)
    report = json.loads((out / "report.json").read_text())
    assert report["dp"]["unit"].startswith("record") and report["dp"]["utility_warning"] is None


def test_client_level_dp_with_few_hospitals_warns_and_names_record_level(tmp_path):
    out = tmp_path / "dp-client"
    result = runner.invoke(app, ["run", "--dp-epsilon", "0.5", "--dp-delta", "1e-5", "--rounds", "20",
                                 "--dp-unit", "client", "--local-steps", "1", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, _output(result)
    warning = json.loads((out / "report.json").read_text())["dp"]["utility_warning"]
    assert warning and "exceeds" in warning and "--dp-unit record" in warning
    assert "DP utility" in _output(result)
