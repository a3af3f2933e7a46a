"""The curated mutations stay in step with the code, and each is killed by its tests."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.mutations.run_curated import CURATED, REPO, killed

RUNNER = REPO / "tests" / "mutations" / "run_curated.py"


def test_every_snippet_occurs_exactly_once_and_every_selection_exists() -> None:
    assert len({m.name for m in CURATED}) == len(CURATED)
    for mutation in CURATED:
        source = (REPO / mutation.path).read_text()
        assert mutation.old != mutation.new
        assert source.count(mutation.old) == 1, f"{mutation.name}: snippet not found exactly once in {mutation.path}"
        compile(mutation.apply(source), mutation.path, "exec")  # a mutant that does not compile kills nothing
        paths = [arg.split("::")[0] for arg in mutation.tests if arg.startswith("tests/")]
        assert paths and all((REPO / p).exists() for p in paths), mutation.tests


def test_only_a_failing_test_counts_as_a_kill() -> None:
    assert killed({"rc": 1, "failed": 2})
    assert not killed({"rc": 1, "failed": 0})  # a setup error alone
    assert not killed({"rc": 2, "failed": 0})  # collection or import error
    assert not killed({"rc": 4, "failed": 0})
    assert not killed({"rc": None, "failed": 0, "timed_out": True})
    assert not killed({"rc": 0, "failed": 0})


@pytest.mark.slow
def test_every_curated_mutation_is_killed() -> None:
    proc = subprocess.run([sys.executable, str(RUNNER)], cwd=REPO, capture_output=True, text=True, timeout=3600)
    summary = json.loads(proc.stdout)
    assert proc.returncode == 0 and summary["ok"], json.dumps(
        {k: v for k, v in summary.items() if k != "mutations"} | {"survived": summary.get("survived")}, indent=1)
