"""Imports point down: fl -> protocols -> secagg. ``secagg`` imports neither
``protocols`` nor ``fl``, and ``protocols`` does not import ``fl``, at module
level or inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"secagg": {"protocols", "fl"}, "protocols": {"fl"}}


def imported_packages(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, top-level package) for every import in ``path``: nested in
    functions, relative (resolved against the module's package), and
    ``importlib.import_module`` / ``__import__`` calls on a literal name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts + ("__init__",)  # level 1 inside a package's __init__ is the package itself
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level] + tuple(filter(None, (node.module or "").split(".")))
                tops = base[:1] or tuple(alias.name for alias in node.names)
                found += [(node.lineno, top) for top in tops]
            elif node.module:
                found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            arg = node.args[0] if node.args else None
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_down(package: str) -> None:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules found under {package}/"
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {top}"
        for path in modules
        for line, top in imported_packages(path)
        if top in FORBIDDEN[package]
    ]
    assert not violations, "layering broken (fl -> protocols -> secagg):\n" + "\n".join(violations)


def test_the_walk_sees_nested_relative_and_dynamic_imports(tmp_path: Path) -> None:
    module = tmp_path / "secagg" / "dp" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "import numpy\n"
        "def f():\n"
        "    from protocols import config\n"
        "    from .. import masking\n"
        "    return importlib.import_module('fl.flower')\n"
    )
    assert [top for _, top in imported_packages(module, tmp_path)] == ["numpy", "protocols", "secagg", "fl"]
