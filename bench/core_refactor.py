"""What porting SecAgg onto the shared session core cost: the same rounds before and after, in one run.

Times one ``protocols.sim.run`` SecAgg+ round (our side only) in two source
trees: ``--before`` (default c539373, the commit just before the port) and
``--after`` (default HEAD). Each tree is a ``git archive`` export of its
commit (``--before-tree``/``--after-tree`` take existing checkouts, e.g.
``git worktree add``), and every round runs in a fresh subprocess with
``PYTHONPATH`` pointing at that tree, so neither tree's modules leak into
the other's. Runs alternate before/after ``--repeats`` times and the best of
each is kept (other load on the machine only ever adds time); medians are
recorded too. Each round is
checked against the plaintext sum of the survivors' updates.

Cases (as in ``secagg_vs_flower.py``): N=50, d=10k, k=8, t=5, 5 dropouts at
masked input; N=10, d=1M, k=4, t=3, 2 dropouts. ``--smoke``: N=12, d=500 and
N=10, d=20k, one repeat.

Run ``python bench/core_refactor.py [--smoke] [--repeats R] [--json out.json]``.
Prints JSON, then a table. Timings are not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import emit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "c539373"  # SecAgg with verified reconstruction, just before the port onto protocols.session
MAX_GRAPH_SEEDS = 20  # as secagg_vs_flower.py: a dropout pattern may abort on one public graph, try the next
ROUND_TIMEOUT_S = 600

# (name, N, d, neighbours, threshold, dropouts at masked input)
CASES = {
    "full": [("N=50, d=10k, k=8, 5 drops", 50, 10_000, 8, 5, 5), ("N=10, d=1M, k=4, 2 drops", 10, 1_000_000, 4, 3, 2)],
    "smoke": [("N=12, d=500, k=8, 2 drops", 12, 500, 8, 5, 2), ("N=10, d=20k, k=4, 2 drops", 10, 20_000, 4, 3, 2)],
}
REPEATS = {"full": 5, "smoke": 1}

# Runs inside the tree under test: one warm-up round at a tiny size (imports,
# first-call costs), then the timed round; prints one JSON line.
WORKER = r"""
import json, sys, time
import numpy as np
from protocols import sim
from secagg.errors import AbortError

n, d, k, t, drops, max_seeds = map(int, sys.argv[1:7])
rng = np.random.default_rng(20261130)
updates = [rng.uniform(-1.0, 1.0, d) for _ in range(n)]
dropouts = {i: "masked_input" for i in range(n - drops, n)}
sim.run("secagg+", [u[:16] for u in updates], neighbors=k, threshold=t, seed=0)
for seed in range(1, max_seeds + 1):
    start = time.perf_counter()
    try:
        res = sim.run("secagg+", updates, dropouts=dropouts, neighbors=k, threshold=t, seed=seed)
    except AbortError:
        continue
    seconds = time.perf_counter() - start
    expected = np.sum([updates[i] for i in res.survivors], axis=0)
    error = float(np.max(np.abs(res.aggregate - expected)))
    print(json.dumps({"seconds": seconds, "graph_seed": seed, "survivors": len(res.survivors),
                      "max_error": error, "correct": error <= 1e-3}))
    break
else:
    print(json.dumps({"seconds": None, "correct": False, "aborted": max_seeds}))
"""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def export(commit: str, into: Path) -> Path:
    """The source tree of ``commit`` (``git archive``; the repository is not touched)."""
    into.mkdir(parents=True)
    archive = into.with_suffix(".tar")
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, check=True, stdout=out)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return into


def one_round(tree: Path, case: tuple[Any, ...]) -> dict[str, Any]:
    """One timed round in a fresh interpreter whose ``protocols``/``secagg`` come from ``tree``."""
    _, n, d, k, t, drops = case
    env = {**os.environ, "PYTHONPATH": str(tree)}
    args = [sys.executable, "-c", WORKER, *(str(v) for v in (n, d, k, t, drops, MAX_GRAPH_SEEDS))]
    proc = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, timeout=ROUND_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"round in {tree} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(trees: dict[str, Path], cases: list[tuple[Any, ...]], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in trees}
        for _ in range(repeats):
            for side, tree in trees.items():  # alternate, so slow spells of the machine hit both sides
                runs[side].append(one_round(tree, case))
        row: dict[str, Any] = {
            "case": case[0],
            "n": case[1],
            "d": case[2],
            "neighbors": case[3],
            "threshold": case[4],
            "dropouts": case[5],
        }
        for side, results in runs.items():
            times = [r["seconds"] for r in results if r["seconds"] is not None]
            row[side] = {
                "best_s": min(times) if times else None,
                "median_s": statistics.median(times) if times else None,
                "all_s": times,
                "correct": all(r["correct"] for r in results),
                "graph_seed": results[0].get("graph_seed"),
            }
        if row["before"]["best_s"] and row["after"]["best_s"]:
            row["after_over_before"] = row["after"]["best_s"] / row["before"]["best_s"]
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, one repeat (seconds)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--before", default=BEFORE, help="commit before the port (default %(default)s)")
    parser.add_argument("--after", default="HEAD", help="commit after the port (default %(default)s)")
    parser.add_argument("--before-tree", type=Path, help="an existing checkout of --before (not exported)")
    parser.add_argument("--after-tree", type=Path, help="an existing checkout of --after (not exported)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    mode = "smoke" if args.smoke else "full"
    repeats = args.repeats or REPEATS[mode]
    commits = {"before": git("rev-parse", "--short", args.before), "after": git("rev-parse", "--short", args.after)}
    with tempfile.TemporaryDirectory(prefix="core_refactor_") as tmp:
        given = {"before": args.before_tree, "after": args.after_tree}
        trees = {
            side: (given[side].resolve() if given[side] else export(commits[side], Path(tmp) / side))
            for side in ("before", "after")
        }
        rows = measure(trees, CASES[mode], repeats)
    result = {
        "benchmark": "core_refactor",
        "smoke": args.smoke,
        "commits": commits,
        "repeats": repeats,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "cases": rows,
    }
    lines = [f"{'case':<28} {'before s':>9} {'after s':>9} {'after/before':>12}"]
    for row in rows:
        ratio = row.get("after_over_before")
        lines.append(
            f"{row['case']:<28} {row['before']['best_s'] or float('nan'):>9.3f} "
            f"{row['after']['best_s'] or float('nan'):>9.3f} {ratio or float('nan'):>12.3f}"
        )
    emit(result, "\n".join(lines), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
