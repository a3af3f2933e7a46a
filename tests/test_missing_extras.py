"""A missing optional extra is refused up front with MissingExtraError naming it.

A missing module is simulated with ``sys.modules[name] = None`` (in process,
with monkeypatch, or in a fresh interpreter), never by uninstalling it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from fl.cli import app
from protocols import sim
from secagg.errors import MissingExtraError

UPDATES = [np.linspace(-1.0, 1.0, 4) * (i + 1) for i in range(3)]


def _without(module: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which ``module`` cannot be imported."""
    script = f"import sys\nsys.modules[{module!r}] = None\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


BACKENDS = [("paillier", "phe"), ("paillier", "gmpy2"), ("paillier-threshold", "gmpy2"), ("ckks", "tenseal")]


@pytest.mark.parametrize("protocol, module", BACKENDS)
def test_he_protocol_without_its_backend_is_refused_at_configuration(monkeypatch, protocol, module):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtraError) as info:
        sim.run(protocol, UPDATES)
    assert info.value.extra == "he" and info.value.module == module
    assert "pip install 'secagg[he]'" in str(info.value)


def test_cli_run_without_he_backend_exits_nonzero_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "phe", None)
    result = CliRunner().invoke(app, ["run", "--protocol", "paillier", "--rounds", "3", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "secagg[he]" in lines[0]  # the bracket survives rich markup
    assert not (tmp_path / "r").exists()  # refused before training


def test_cli_dp_without_dp_accounting_keeps_the_bracketed_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dp_accounting", None)
    args = ["run", "--rounds", "1", "--local-steps", "1", "--quiet", "--dp-epsilon", "5", "--dp-delta", "1e-5"]
    result = CliRunner().invoke(app, args + ["--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert result.output.strip() == "error: 'dp_accounting' is needed here; install it with: pip install 'secagg[dp]'"


def test_console_script_without_typer_names_the_extra():
    proc = _without("typer", "from fl.cli import main\nsys.argv = ['secagg', 'run']\nmain()\n")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "'secagg run'" in proc.stderr and "pip install 'secagg[fl]'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"]])
def test_console_script_help_without_typer_exits_zero_naming_the_extra(argv):
    proc = _without("typer", f"from fl.cli import main\nsys.argv = ['secagg', *{argv!r}]\nmain()\n")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "secagg run" in proc.stdout and "pip install 'secagg[fl]'" in proc.stdout


def test_cli_run_without_torch_names_the_extra():
    proc = _without("torch", "from fl.cli import main\nsys.argv = ['secagg', 'run', '--rounds', '1']\nmain()\n")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "secagg[fl]" in proc.stderr


def test_trainer_without_torch_names_the_extra():
    proc = _without(
        "torch",
        """
        from secagg.errors import MissingExtraError
        try:
            import fl.trainer
        except MissingExtraError as exc:
            print(exc.extra, exc.module)
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fl", "torch"]


@pytest.mark.parametrize("package", ["protocols.testing", "secagg.testing", "secagg.testing.strategies"])
def test_testing_helpers_without_hypothesis_name_the_extra(package):
    proc = _without(
        "hypothesis",
        f"""
        from secagg.errors import MissingExtraError
        try:
            import {package}
        except MissingExtraError as exc:
            print(exc.extra, exc.module)
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["dev", "hypothesis"]
