"""Every ```python block of README.md runs as pasted, in a fresh interpreter.

A block whose first line is a ``# not run: <reason>`` comment is skipped (a
fragment of a Flower app that only runs inside a deployment). Each block runs
under :data:`BLOCK_SECONDS`; a slow example should shrink its sizes in the README.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
#: Wall-clock limit per block; the whole file stays under a minute on 2 cores.
BLOCK_SECONDS = 20
SKIP_MARKER = "# not run:"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, source)`` of each ```python block in ``text``."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("line, source", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_example_runs(line, source, tmp_path):
    first = source.lstrip().splitlines()[0] if source.strip() else ""
    if first.startswith(SKIP_MARKER):
        pytest.skip(first[len(SKIP_MARKER) :].strip())
    root = README.parent
    try:
        proc = subprocess.run(
            [sys.executable, "-c", source],
            cwd=tmp_path,  # examples that write files write them here
            env={"PYTHONPATH": str(root), "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=BLOCK_SECONDS,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"README.md:{line}: the example took more than {BLOCK_SECONDS} s; shrink its sizes")
    assert proc.returncode == 0, f"README.md:{line} failed:\n{proc.stderr[-3000:]}"
