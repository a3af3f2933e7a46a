"""Helpers shared by the benchmarks (run as ``python bench/X.py``, so
``bench/`` is on ``sys.path``): the best-of timer and the JSON-then-table output."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["best_of", "emit"]


def best_of(fn: Callable[[], Any], repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Best time of ``repeats`` calls: the run least disturbed by other processes.

    ``clock`` is wall time by default; ``time.process_time`` gives this
    process's CPU time (all its threads).
    """
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def emit(result: Any, table: str, json_path: Path | None) -> None:
    """Print the JSON document, then the table; also write the JSON to ``json_path`` if given."""
    text = json.dumps(result, indent=2)
    print(text)
    print(table)
    if json_path:
        json_path.write_text(text + "\n")
