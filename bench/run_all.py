"""Run every benchmark in bench/ and write BENCHMARKS.md.

Each benchmark prints JSON and a short table and measures its reference system
in the same run. This runner records the machine, the exact commands and each
script's output. ``--quick`` passes ``--quick`` on (smoke sizes).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Order: primitives first, then protocols, HE, DP, GPU/streaming, Flower engine.
SCRIPTS = ["primitives.py", "secagg_vs_flower.py", "he.py", "dp.py", "record_dp.py", "gpu.py", "flower_engine.py"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke sizes")
    parser.add_argument("--only", nargs="*", help="run only these scripts")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    scripts = [s for s in SCRIPTS if (BENCH / s).exists() and (not args.only or s in args.only)]
    sections = []
    failed = 0
    for script in scripts:
        cmd = [sys.executable, str(BENCH / script)] + (["--quick"] if args.quick else [])
        shown = "python bench/" + script + (" --quick" if args.quick else "")
        print(f"== {shown}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        print(proc.stdout[-4000:], flush=True)
        if proc.returncode:
            failed += 1
            print(proc.stderr[-4000:], file=sys.stderr)
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        sections.append(
            f"## `{script}`\n\nCommand: `{shown}` ({elapsed:.0f} s, {status})\n\n```\n{proc.stdout.strip()}\n```\n"
        )
    header = (
        "# Benchmarks\n\n"
        f"Written by `make bench` on {datetime.date.today().isoformat()}.\n\n"
        f"Machine: {machine()}.\n\n"
        "Every figure below comes from the run that wrote this file; reference systems "
        "(Flower SecAgg+, per-value phe, raw TenSEAL, raw `cryptography` ChaCha20) were "
        "measured in the same run, so compare ratios rather than absolute times.\n\n"
    )
    Path(args.out).write_text(header + "\n".join(sections))
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
