"""Run every benchmark in bench/ and write BENCHMARKS.md.

Each benchmark prints JSON and a short table and measures its reference system
in the same run. This runner records the machine, the exact commands and each
script's output, with the commit each section was measured at. ``--quick``
passes ``--quick`` on; ``--smoke`` passes ``--smoke`` on (tiny sizes) and
prints a JSON summary instead of writing BENCHMARKS.md. ``--only a.py b.py``
replaces just those scripts' sections of the file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Order: primitives first, then protocols (active security's cost after them), HE, DP, GPU/streaming, Flower engine.
SCRIPTS = [
    "primitives.py",
    "secagg_vs_flower.py",
    "active.py",
    "core_refactor.py",
    "he.py",
    "ckks_compact.py",
    "he_threshold.py",
    "dp.py",
    "record_dp.py",
    "gpu.py",
    "flower_engine.py",
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def commit(out: str | None = None) -> str:
    """The short hash of HEAD, with ``+dirty`` if tracked files other than ``out`` differ from it."""

    def git(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode:
        return "unknown"
    target = Path(out).resolve() if out else None
    spec = [".", f":(exclude){target.relative_to(ROOT)}"] if target and target.is_relative_to(ROOT) else []
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", *spec).stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


def size_flag(script: str, mode: str) -> list[str]:
    """``--quick`` / ``--smoke`` for ``script``; a script without ``--smoke`` yet gets ``--quick``."""
    if mode == "smoke" and "--smoke" not in (BENCH / script).read_text():
        return ["--quick"]
    return [f"--{mode}"] if mode != "full" else []


def replace_sections(old: str, sections: dict[str, str]) -> str:
    """``old`` with each ``## `script` `` section swapped for ``sections[script]``; new ones appended."""
    parts = re.split(r"(?m)^(?=## `)", old)
    head, body = parts[0], parts[1:]
    out, seen = [head], set()
    for part in body:
        name = re.match(r"## `([^`]+)`", part).group(1)  # type: ignore[union-attr]
        out.append(sections[name] + "\n" if name in sections else part)
        seen.add(name)
    out += [sections[name] + "\n" for name in sections if name not in seen]
    return "".join(out).rstrip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes; prints a JSON summary and writes no file unless --out is given",
    )
    parser.add_argument("--only", nargs="*", help="run only these scripts (their sections of --out are replaced)")
    parser.add_argument("--out", help="the Markdown file to write (default BENCHMARKS.md; none with --smoke)")
    args = parser.parse_args()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    out = args.out or (None if args.smoke else str(ROOT / "BENCHMARKS.md"))
    scripts = [s for s in SCRIPTS if (BENCH / s).exists() and (not args.only or s in args.only)]
    measured_at = commit(out)  # a file this run rewrites does not make the code dirty
    sections: dict[str, str] = {}
    summary: dict[str, dict[str, object]] = {}
    failed = 0
    for script in scripts:
        flags = size_flag(script, mode)
        cmd = [sys.executable, str(BENCH / script), *flags]
        shown = " ".join(["python", "bench/" + script, *flags])
        print(f"== {shown}", file=sys.stderr if args.smoke else sys.stdout, flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if not args.smoke:
            print(proc.stdout[-4000:], flush=True)
        if proc.returncode:
            failed += 1
            print(proc.stderr[-4000:], file=sys.stderr)
        summary[script] = {"command": shown, "seconds": round(elapsed, 2), "returncode": proc.returncode}
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        sections[script] = (
            f"## `{script}`\n\nCommand: `{shown}` ({elapsed:.0f} s, {status}), at commit `{measured_at}`, "
            f"on a shared machine (1-minute load average {os.getloadavg()[0]:.1f} at the end).\n\n"
            f"```\n{proc.stdout.strip()}\n```\n"
        )
    if args.smoke:
        print(json.dumps({"benchmark": "run_all", "smoke": True, "commit": measured_at, "scripts": summary}, indent=2))
    if out:
        header = (
            "# Benchmarks\n\n"
            f"Written by `make bench` on {datetime.date.today().isoformat()}.\n\n"
            f"Machine: {machine()}.\n\n"
            "Every figure below comes from the run that wrote its section; reference systems "
            "(Flower SecAgg+, per-value phe, raw TenSEAL, raw `cryptography` ChaCha20) were "
            "measured in the same run, so compare ratios rather than absolute times.\n\n"
            "Mutation testing of the security core (mutmut, per module: mutants, killed, survived, "
            "timeouts; the survivors judged) is in [MUTATION.md](MUTATION.md).\n\n"
        )
        path = Path(out)
        if args.only and path.exists():
            path.write_text(replace_sections(path.read_text(), sections))
        else:
            path.write_text(header + "\n".join(sections.values()))
        print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
