"""Every security claim in SECURITY.md names a test, and every named test exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]`]*\])?`")


def _defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_security_md_names_only_existing_tests():
    text = (ROOT / "SECURITY.md").read_text()
    ids = NODE_ID.findall(text)
    assert len(ids) >= 10, "SECURITY.md should tie its claims to tests"
    missing = [f"{f}::{name}" for f, name in ids if not (ROOT / f).exists() or name not in _defined_tests(ROOT / f)]
    assert not missing, f"SECURITY.md names tests that do not exist: {missing}"


def test_every_claim_line_names_a_test():
    claims = [line for line in (ROOT / "SECURITY.md").read_text().splitlines() if line.startswith("- **Claim")]
    assert claims
    unverified = [line for line in claims if not NODE_ID.search(line)]
    assert not unverified, f"claims without a test: {unverified}"
