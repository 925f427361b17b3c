"""Latency and throughput of a session: warm-up, then timed runs, reported as percentiles."""

from __future__ import annotations

import time

import numpy as np


def measure(session, feeds: dict, warmup: int = 5, runs: int = 50, min_seconds: float = 1.0) -> list[float]:
    """Seconds per run: `runs` runs at least, and more until `min_seconds` have passed."""
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
        if len(times) >= 100 * runs:
            break
    return times


def summarise(times: list[float], batch: int, macs: int) -> dict:
    t = np.asarray(times)
    p50, p90, p99 = (float(np.percentile(t, q)) for q in (50, 90, 99))
    return {
        "runs": len(times),
        "batch": batch,
        "latency_ms": {"p50": p50 * 1e3, "p90": p90 * 1e3, "p99": p99 * 1e3, "mean": float(t.mean()) * 1e3},
        "throughput_per_s": batch / p50,
        "gflops_per_s": 2 * macs * batch / p50 / 1e9 if macs else None,
    }
