"""A core install (numpy and cryptography only) works, and names the extra for the rest.

Builds a fresh virtual environment, installs this repository into it without
extras, and runs what a new user would try first. Slow: the install fetches
numpy and cryptography (from pip's cache when warm).
"""

from __future__ import annotations

import subprocess
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECKS = textwrap.dedent(
    """
    import importlib.util, json
    import numpy as np
    import secagg, protocols
    from protocols import sim
    from secagg.errors import MissingExtraError

    absent = [m for m in ("torch", "phe", "gmpy2", "tenseal", "hypothesis", "typer", "flwr")
              if importlib.util.find_spec(m) is not None]
    assert not absent, f"a core install pulled in {absent}"
    updates = [np.full(5, float(i)) for i in range(6)]
    result = sim.run("secagg+", updates, neighbors=4, threshold=3, dropouts={1: "masked_input"})
    survivors = [u for i, u in enumerate(updates) if i != 1]
    assert np.allclose(result.aggregate, np.sum(survivors, axis=0), atol=1e-3), result.aggregate
    try:
        sim.run("paillier", updates)
    except MissingExtraError as exc:
        assert exc.extra == "he", exc.extra
        print(json.dumps({"paillier": str(exc)}))
    else:
        raise AssertionError("paillier ran without the he extra")
    """
)


@pytest.mark.slow
def test_core_install_aggregates_and_names_missing_extras(tmp_path: Path) -> None:
    env = tmp_path / "core"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(ROOT)], capture_output=True, text=True, timeout=900
    )
    assert install.returncode == 0, install.stderr[-3000:]
    checks = subprocess.run([str(python), "-c", CHECKS], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert checks.returncode == 0, checks.stderr[-3000:]
    assert "secagg[he]" in checks.stdout
    cli = subprocess.run([str(env / "bin" / "secagg"), "--help"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert "Traceback" not in cli.stdout + cli.stderr
    assert "fl" in cli.stdout + cli.stderr  # names the extra that `run` needs
