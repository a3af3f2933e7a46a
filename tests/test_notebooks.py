"""The five research notebooks are committed executed, and stay fresh.

Each notebook in git holds its outputs and figures (``make notebooks``). The
test re-executes every notebook from its cells, in a kernel on the interpreter
running pytest and in quick mode (``notebooks/make_notebooks.py``'s
``kernel_environment``), and checks that the fresh run has the committed
structure: the same code cells write the same streams and show the same kinds
of output (a PNG where there was a PNG), and no cell raises. Values are not
compared: they are measurements. Outputs are never written back.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
MAX_NOTEBOOK_BYTES = 400_000  # figures are 72 dpi PNGs; a notebook far above this carries something unintended


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOK_DIR / "make_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_notebooks = _load_generator()


@pytest.fixture(scope="module")
def kernel_env():
    """The generator's kernel environment, in quick mode whatever the caller set (the committed outputs are)."""
    saved = os.environ.get("SECAGG_NOTEBOOK_QUICK")
    os.environ["SECAGG_NOTEBOOK_QUICK"] = "1"
    try:
        with make_notebooks.kernel_environment():
            yield
    finally:
        if saved is None:
            os.environ.pop("SECAGG_NOTEBOOK_QUICK", None)
        else:
            os.environ["SECAGG_NOTEBOOK_QUICK"] = saved


def _figures(nb) -> int:
    return sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    )


def test_all_five_are_committed_executed_from_their_generator() -> None:
    """Every code cell ran (execution counts 1, 2, ...), none raised, each notebook shows
    figures, stays small, and its cells are exactly the generator's."""
    assert [p.name for p in NOTEBOOKS] == list(make_notebooks.NOTEBOOKS)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), f"{path.name} not executed"
        assert not [out for cell in code for out in cell.outputs if out.output_type == "error"], path.name
        assert _figures(nb) >= 1, f"{path.name} has no figure"
        assert path.stat().st_size <= MAX_NOTEBOOK_BYTES, f"{path.name}: {path.stat().st_size} bytes"
        cells = [(("md" if c.cell_type == "markdown" else "code"), c.source) for c in nb.cells]
        assert cells == list(make_notebooks.NOTEBOOKS[path.name]), f"{path.name}: run `make notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_reexecutes_with_the_committed_structure(path: Path, kernel_env: None) -> None:
    """A fresh run raises nowhere (CellExecutionError) and shows what the committed one shows."""
    committed = nbformat.read(path, as_version=4)
    fresh = copy.deepcopy(committed)
    for cell in fresh.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    make_notebooks.execute(fresh, timeout=make_notebooks.CELL_TIMEOUT_S)
    assert make_notebooks.output_structure(fresh) == make_notebooks.output_structure(committed)
