"""Latency measurement as deployment engineers do it: warm-up first (by count and by time), then a
measured window (by count and by time), the candidates interleaved in one process (round-robin, so
drift on a noisy machine hits all of them alike), and medians, tails and ratios reported."""

import time
from typing import Callable

import numpy as np

CV_HIGH = 0.10  # coefficient of variation above which a run is flagged as unstable


def interleaved(
    candidates: dict[str, Callable[[], object]],
    warmup: int = 10,
    runs: int = 50,
    *,
    warmup_s: float = 0.0,
    duration_s: float = 0.0,
    max_runs: int | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each candidate. Warm-up: round-robin until every candidate had `warmup`
    untimed calls and `warmup_s` seconds have passed. Then timed rounds until every candidate has
    `runs` samples and `duration_s` seconds have passed, or `max_runs` samples each."""
    if not candidates:
        return {}
    deadline, done = time.perf_counter() + warmup_s, 0
    while done < warmup or time.perf_counter() < deadline:
        for fn in candidates.values():
            fn()
        done += 1
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    deadline, done = time.perf_counter() + duration_s, 0
    while (done < runs or time.perf_counter() < deadline) and (max_runs is None or done < max_runs):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
        done += 1
    return samples


def summary(seconds: list[float], items: int = 1) -> dict:
    """Latency statistics in ms of per-call `seconds`, and throughput in items/s when each call
    handles `items` (images in a batch) one after another."""
    if not seconds:
        return {"n": 0}
    s = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p95, p99 = np.percentile(s, [50, 90, 95, 99])  # linear interpolation between order statistics
    mean = float(s.mean())
    cv = float(s.std() / mean) if mean > 0 else 0.0
    return {
        "n": len(s),
        "min_ms": float(s.min()),
        "mean_ms": mean,
        "median_ms": float(p50),
        "p90_ms": float(p90),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "max_ms": float(s.max()),
        "std_ms": float(s.std()),
        "cv": cv,
        "high_cv": cv > CV_HIGH,
        "throughput": items * 1e3 / mean if mean > 0 else 0.0,
    }
