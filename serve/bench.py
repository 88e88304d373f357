"""Latency measurement as deployment engineers do it: warm-up first, then many runs, the candidates
interleaved in one process (round-robin, so drift on a noisy machine hits all of them alike), and
medians and ratios reported rather than means."""

import statistics
import time
from typing import Callable


def interleaved(candidates: dict[str, Callable[[], object]], warmup: int = 10, runs: int = 50) -> dict[str, list[float]]:
    """Seconds per call of each candidate, `runs` samples each, after `warmup` untimed calls."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(runs):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


def summary(seconds: list[float]) -> dict:
    s = sorted(seconds)
    q = statistics.quantiles(s, n=100, method="inclusive") if len(s) > 1 else [s[0]] * 99
    return {"n": len(s), "min_ms": s[0] * 1e3, "median_ms": statistics.median(s) * 1e3, "p90_ms": q[89] * 1e3,
            "p99_ms": q[98] * 1e3, "max_ms": s[-1] * 1e3, "cv": statistics.pstdev(s) / statistics.mean(s)}
