"""Execute every research notebook in ``notebooks/`` and fail on any error.

Each notebook runs in its own kernel, started from the interpreter running
pytest (a kernelspec written to a temporary ``JUPYTER_PATH``, so a stale
system-wide ``python3`` spec cannot pick another environment), with
``SECAGG_NOTEBOOK_QUICK=1`` and ``notebooks/`` as the working directory.
Outputs are never written back: the notebooks stay stripped in git, and
Hypothesis' storage (notebook 05) goes to a temporary directory.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 120  # per cell; a whole notebook is meant to finish in < 60 s on 2 cores
KERNEL_NAME = "python3"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory):
    """Point JUPYTER_PATH at a kernelspec for ``sys.executable`` and set quick mode."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (secagg tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "SECAGG_NOTEBOOK_QUICK", "MPLBACKEND",
                                            "HYPOTHESIS_STORAGE_DIRECTORY")}
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root)] + ([saved["JUPYTER_PATH"]] if saved["JUPYTER_PATH"] else []))
    os.environ["SECAGG_NOTEBOOK_QUICK"] = "1"
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(root / "hypothesis")  # nothing written into notebooks/
    os.environ.pop("MPLBACKEND", None)  # the notebooks choose the inline (Agg) backend themselves
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_notebooks_are_present_and_stripped() -> None:
    """All five notebooks exist and carry no outputs or execution counts in git."""
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_dropouts_and_threat_models.ipynb",
        "03_masking_vs_homomorphic.ipynb",
        "04_distributed_dp_on_heart_disease.ipynb",
        "05_property_testing_your_aggregator.ipynb",
    ]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_error(path: Path, kernel_env: None) -> None:
    """Every cell executes; any exception in the kernel fails the test (CellExecutionError)."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    client.execute()
    figures = sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    )
    assert figures >= 1, f"{path.name} produced no figure"
