"""Timing helper shared by the benchmarks (run as ``python bench/X.py``, so
``bench/`` is on ``sys.path``)."""

from __future__ import annotations

import time
from typing import Any, Callable

__all__ = ["best_of"]


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of ``repeats`` calls: the run least disturbed by other processes."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
