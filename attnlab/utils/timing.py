"""Median wall time of several training steps measured round-robin (shared by benchmarks and reproductions).

Timing the candidates in turn, repeat by repeat, exposes them to the same minutes of machine
load, so their ratio is far steadier on a shared CPU than timing one after the other.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

from attnlab.utils.checks import check_positive_int, fail

__all__ = ["interleaved_median_seconds"]


def interleaved_median_seconds(
    steps: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds of each step callable over ``repeats`` rounds, after ``warmup`` untimed rounds.

    Each round calls every step once, in the mapping's order. Returns {name: median seconds}.
    """
    check_positive_int("repeats", repeats)
    if not isinstance(warmup, int) or warmup < 0:
        fail("warmup", "an int >= 0", warmup)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}
