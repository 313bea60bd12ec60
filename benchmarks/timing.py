"""Timing shared by the benchmark scripts: a median over repeats after one warm-up call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    """Median wall time of `work()` after one warm-up call (caches, filter designs and imports settle)."""
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
