"""Summarise a finished ``mutmut run`` from the ``mutants/`` directory it leaves.

Per module: mutants, killed, survived, timeouts, and every other outcome
counted apart. *Killed* means pytest exited 1: a collected test failed
(mutmut mutates only function bodies, behind a switch read at call time, so
a mutant cannot break collection or an import). Exit 3 (pytest internal
error), which mutmut also counts as killed, is listed apart as ``internal``;
so are timeouts (the CPU-time limit), ``suspicious`` (any other exit code),
``no tests`` (no selected test calls the function) and ``interrupted``
(exit 2, a usage or collection error).

Survivors are printed with the lines their mutation changed, read from the
mutated copy, so they can be judged without re-running mutmut.

Usage: ``python tests/mutations/mutmut_report.py [--mutants DIR ...] [--json]``;
the default reads every group that ``tests/mutations/run_mutmut.py`` ran
(``mutants/*/mutants``).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
import sys
import textwrap
from pathlib import Path

OUTCOME_BY_EXIT_CODE: dict[int | None, str] = {
    1: "killed",
    3: "internal",
    0: "survived",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    5: "no tests",
    33: "no tests",
    2: "interrupted",
    34: "skipped",
    37: "type check",
    -11: "segfault",
    -9: "segfault",
    None: "not run",
}
COLUMNS = ("killed", "survived", "timeout", "suspicious", "internal", "no tests", "interrupted", "not run")
_MUTANT = re.compile(r"^(?P<func>.+)__mutmut_(?P<id>\d+|orig)$")


def outcome(exit_code: int | None) -> str:
    """Our reading of one mutant's exit code; an unlisted code is ``suspicious``."""
    return OUTCOME_BY_EXIT_CODE.get(exit_code, "suspicious")


def _function_sources(mutated: Path) -> dict[str, list[str]]:
    """Every function in a mutated file, by its mutmut name, as source lines (signature included, the
    function's name replaced by ``f`` so that a mutant and the original line up)."""
    source = mutated.read_text()
    lines = source.splitlines()
    out: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _MUTANT.match(node.name):
            text = lines[node.lineno - 1 : node.end_lineno]
            out[node.name] = [text[0].replace(f"def {node.name}(", "def f(", 1), *text[1:]]
    return out


def changed_lines(funcs: dict[str, list[str]], mutant_name: str) -> list[str]:
    """The ``-``/``+`` lines that turn the original function into this mutant."""
    func = mutant_name.rsplit(".", 1)[-1]
    match = _MUTANT.match(func)
    if match is None or func not in funcs:
        return ["(source not found)"]
    orig = funcs.get(f"{match['func']}__mutmut_orig", [])
    diff = difflib.unified_diff(orig, funcs[func], lineterm="", n=0)
    return [d for d in diff if d[:1] in "+-" and not d.startswith(("+++", "---"))]


_STRING = re.compile(r"""[rbf]*("[^"]*"|'[^']*')""")


def _raise_lines(body: list[str]) -> set[int]:
    """Indices of the body lines that belong to a ``raise`` statement."""
    try:
        tree = ast.parse(textwrap.dedent("\n".join(body)))
    except SyntaxError:
        return set()
    return {
        i - 1
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise) and node.end_lineno is not None
        for i in range(node.lineno, node.end_lineno + 1)
    }


def kind_of_change(funcs: dict[str, list[str]], mutant_name: str) -> str:
    """``raise`` when the mutation lies inside a raise statement (only the error's message or fields can
    change: mutmut never deletes the statement); ``string`` when only a string literal changed or became
    None; else ``code``."""
    func = mutant_name.rsplit(".", 1)[-1]
    match = _MUTANT.match(func)
    if match is None or func not in funcs:
        return "code"
    orig, mutant = funcs.get(f"{match['func']}__mutmut_orig", []), funcs[func]
    changed: list[int] = []
    pairs: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=orig, b=mutant, autojunk=False).get_opcodes():
        if tag != "equal":
            changed.extend(range(i1, i2))
            pairs.append(("".join(orig[i1:i2]), "".join(mutant[j1:j2])))
    if changed and set(changed) <= _raise_lines(orig):
        return "raise"
    if pairs and all(_STRING.sub("S", o) == _STRING.sub("S", n).replace("None", "S") for o, n in pairs):
        return "string"
    return "code"


def summarise(mutant_dirs: list[Path]) -> dict[str, object]:
    """Outcome counts per mutated module, and every mutant that was not killed, over mutmut output dirs."""
    modules: dict[str, dict[str, int]] = {}
    survivors: list[dict[str, object]] = []
    metas = [(mutants, meta) for mutants in mutant_dirs for meta in sorted(mutants.rglob("*.py.meta"))]
    for mutants, meta in metas:
        rel = meta.relative_to(mutants).as_posix()[: -len(".meta")]
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = {c: 0 for c in COLUMNS}
        funcs: dict[str, list[str]] | None = None
        for name, code in sorted(codes.items(), key=lambda kv: _sort_key(kv[0])):
            kind = outcome(code)
            counts[kind if kind in counts else "suspicious"] += 1
            if kind not in ("killed", "not run"):
                funcs = funcs if funcs is not None else _function_sources(mutants / rel)
                survivors.append(
                    {
                        "module": rel,
                        "mutant": name,
                        "outcome": kind,
                        "change": kind_of_change(funcs, name),
                        "diff": changed_lines(funcs, name),
                    }
                )
        modules[rel] = {"mutants": len(codes), **counts}
    return {"modules": modules, "not_killed": survivors}


def _sort_key(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("__mutmut_")
    return head, int(tail) if tail.isdigit() else -1


def markdown(summary: dict[str, object]) -> str:
    modules = summary["modules"]
    assert isinstance(modules, dict)
    head = "| module | mutants | " + " | ".join(COLUMNS) + " | score |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    total = {c: 0 for c in ("mutants", *COLUMNS)}
    for module, counts in modules.items():
        for c in total:
            total[c] += counts[c]
        rows.append(_row(module, counts))
    rows.append(_row("**all**", total))
    return "\n".join(rows)


def _row(name: str, counts: dict[str, int]) -> str:
    tested = counts["mutants"] - counts["not run"] - counts["no tests"]
    score = f"{100 * counts['killed'] / tested:.1f}%" if tested else "n/a"
    return f"| {name} | {counts['mutants']} | " + " | ".join(str(counts[c]) for c in COLUMNS) + f" | {score} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, nargs="+", help="mutmut output dirs (default: mutants/*/mutants)")
    parser.add_argument("--json", action="store_true", help="print the whole summary as JSON")
    args = parser.parse_args(argv)
    dirs = args.mutants or sorted(Path("mutants").glob("*/mutants"))
    missing = [d for d in dirs if not d.is_dir()]
    if not dirs or missing:
        print(f"no mutmut results in {missing or 'mutants/*/mutants'}; run `make mutate` first", file=sys.stderr)
        return 2
    summary = summarise(dirs)
    if args.json:
        print(json.dumps(summary, indent=1, ensure_ascii=False))
        return 0
    print(markdown(summary))
    for s in summary["not_killed"]:  # type: ignore[attr-defined]
        print(f"\n{s['outcome']} ({s['change']}): {s['mutant']}")
        for line in s["diff"]:
            print(f"    {line.strip()[:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
