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


def _claims(text: str) -> list[str]:
    """Each '- **Claim ...' bullet joined with its indented continuation lines."""
    claims: list[str] = []
    open_claim = False
    for line in text.splitlines():
        if line.startswith("- **Claim"):
            claims.append(line)
            open_claim = True
        elif open_claim and line.startswith("  ") and line.strip():
            claims[-1] += " " + line.strip()
        else:
            open_claim = False
    return claims


def test_every_claim_names_a_test():
    claims = _claims((ROOT / "SECURITY.md").read_text())
    assert claims
    unverified = [claim[:60] for claim in claims if not NODE_ID.search(claim)]
    assert not unverified, f"claims without a test: {unverified}"
