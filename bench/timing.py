"""Timing shared by the benchmarks: interleaved medians, so drift hits every candidate."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_us(fn: Callable[[], object], calls: int) -> float:
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def interleaved(
    fns: dict[str, Callable[[], object]], calls: int, rounds: int = 10
) -> dict[str, float]:
    """Median of per-round medians, each candidate warmed up first (tracing, caches)."""
    for fn in fns.values():
        for _ in range(max(50, calls // 10)):
            fn()
    results: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            results[key].append(median_us(fn, max(calls // rounds, 1)))
    return {k: statistics.median(v) for k, v in results.items()}
