"""Helpers shared by the benchmarks (run as ``python bench/X.py``, so
``bench/`` is on ``sys.path``): the best-of timer and the JSON-then-table output."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["best_of", "emit"]


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of ``repeats`` calls: the run least disturbed by other processes."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def emit(result: Any, table: str, json_path: Path | None) -> None:
    """Print the JSON document, then the table; also write the JSON to ``json_path`` if given."""
    text = json.dumps(result, indent=2)
    print(text)
    print(table)
    if json_path:
        json_path.write_text(text + "\n")
