"""Mutation testing of the security core with mutmut, one module group at a time.

mutmut reads one ``[tool.mutmut]`` table and runs every mutant against the
tests of that table's selection that call the mutated function. Protocol tests
call every primitive, so one shared selection would run a whole SecAgg round
for each Shamir or AEAD mutant. Each group here therefore names its own fast
test subset: a primitive is judged by its unit tests, the protocol layer by
the protocol tests. For each group the runner copies ``secagg/``,
``protocols/``, ``tests/`` and ``pyproject.toml`` (with the group's
``[tool.mutmut]`` table appended) into ``mutants/<group>/`` and runs
``mutmut run`` there; mutmut then mutates a further copy
(``mutants/<group>/mutants/``). The sources are never written.

mutmut keeps its results, so a second run only tests what changed.
``tests/mutations/mutmut_report.py`` summarises every group.

The default groups (the primitives, the binding and masking) take about an hour on two
shared cores; ``--all`` adds the session core, client and server, about two hours more.

Usage: ``python tests/mutations/run_mutmut.py [--only GROUP ... | --all] [--jobs N] [--list]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / "mutants"
COPIED = ("secagg", "protocols", "tests")

# Applied to every group: one core per mutant (mutmut forks its own workers), no slow tests.
COMMON_PYTEST_ARGS = ("-p", "no:xdist", "-p", "no:cacheprovider", "-m", "not slow")

# Protocol tests left out of the protocol groups, each with its reason.
_SLOW_OR_ONCE = (
    # 200 random rounds, about 50 s a run; the named round tests beside it stay.
    "tests/protocols/test_secagg.py::test_aggregate_equals_plaintext_sum_or_aborts_exactly_when_threshold_violated",
    # 200 accepted configurations against every attack, about 50 s a run under mutmut.
    "tests/protocols/test_active_security.py::test_no_accepted_config_lets_max_corrupt_colluders_expose_an_honest_input",
    # Registers a message kind, so it cannot run twice in one process (mutmut's stats run, then its clean run).
    "tests/protocols/test_messages.py::test_wire_message_makes_a_frozen_registered_dataclass",
)
PROTOCOL_DESELECT = tuple(arg for test in _SLOW_OR_ONCE for arg in ("--deselect", test))
PROTOCOL_TESTS = (
    "tests/protocols/test_secagg.py",
    "tests/protocols/test_secagg_secrets.py",
    "tests/protocols/test_blame.py",
    "tests/protocols/test_active_security.py",
    "tests/protocols/test_transcript_leak.py",
    "tests/protocols/test_session_core.py",
    "tests/protocols/test_adversarial.py",
    "tests/protocols/test_secagg_binding_mutants.py",
)


@dataclass(frozen=True)
class Group:
    """Modules mutated together, and the tests (pytest arguments) that judge them."""

    name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    pytest_args: tuple[str, ...] = ()
    # The default run fits in about an hour on two cores; the others run with --all or --only.
    default: bool = True

    def table(self) -> str:
        """The ``[tool.mutmut]`` table for this group."""
        fields = {
            "source_paths": ["secagg", "protocols"],
            "only_mutate": list(self.modules),
            "pytest_add_cli_args_test_selection": list(self.tests),
            "pytest_add_cli_args": [*COMMON_PYTEST_ARGS, *self.pytest_args],
        }
        return "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())


# Cheapest first, so that a run cut short has judged whole modules.
GROUPS: tuple[Group, ...] = (
    Group("aead", ("secagg/aead.py",), ("tests/secagg/test_aead.py",)),
    Group(
        "kex",
        ("secagg/kex.py",),
        ("tests/secagg/test_kex.py", "tests/secagg/test_kex_mutants.py", "tests/secagg/test_hkdf.py"),
    ),
    Group("shamir", ("secagg/shamir.py",), ("tests/secagg/test_shamir.py", "tests/secagg/test_shamir_mutants.py")),
    Group("prg", ("secagg/prg.py",), ("tests/secagg/test_prg.py", "tests/secagg/test_prg_mutants.py")),
    Group("binding", ("protocols/secagg_binding.py",), PROTOCOL_TESTS, PROTOCOL_DESELECT),
    Group(
        "masking",
        ("secagg/masking.py",),
        (
            "tests/secagg/test_masking.py",
            "tests/secagg/test_masking_mutants.py",
            "tests/protocols/test_secagg_secrets.py",
        ),
        # The torch backend's equivalence to numpy is not the security core.
        ("-k", "not torch"),
    ),
    # Each of these runs a SecAgg round per surviving mutant: about 2 h together on two shared cores.
    Group("session", ("protocols/session.py",), PROTOCOL_TESTS, PROTOCOL_DESELECT, default=False),
    Group("client", ("protocols/secagg_client.py",), PROTOCOL_TESTS, PROTOCOL_DESELECT, default=False),
    Group("server", ("protocols/secagg_server.py",), PROTOCOL_TESTS, PROTOCOL_DESELECT, default=False),
)


def prepare(group: Group) -> Path:
    """Lay out ``mutants/<group>/``: fresh copies of the sources and tests, and the group's config."""
    root = WORK / group.name
    root.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    for name in COPIED:
        shutil.rmtree(root / name, ignore_errors=True)
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    (root / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text() + group.table())
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="GROUP", help="run these groups (default: the default groups)")
    parser.add_argument("--all", action="store_true", help="run every group, the protocol-engine ones too")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--list", action="store_true", help="print the groups and exit")
    args = parser.parse_args(argv)
    by_name = {g.name: g for g in GROUPS}
    if args.list:
        for g in GROUPS:
            print(f"{g.name}{'' if g.default else ' (--all)'}: {' '.join(g.modules)} <- {' '.join(g.tests)}")
        return 0
    unknown = sorted(set(args.only or ()) - set(by_name))
    if unknown:
        print(f"unknown group(s) {unknown}; known: {sorted(by_name)}", file=sys.stderr)
        return 2
    mutmut = Path(sys.executable).with_name("mutmut")
    failed = []
    chosen = [by_name[n] for n in args.only] if args.only else [g for g in GROUPS if args.all or g.default]
    for group in chosen:
        root = prepare(group)
        print(f"== {group.name}: {' '.join(group.modules)}", flush=True)
        command = [str(mutmut), "run", "--max-children", str(args.jobs)]
        with open(root / "mutmut.log", "w") as log:
            rc = subprocess.run(command, cwd=root, stdout=log, stderr=log)
        print(f"   mutmut exit {rc.returncode}; log: {root / 'mutmut.log'}", flush=True)
        if rc.returncode != 0:
            failed.append(group.name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
