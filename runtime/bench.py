"""Latency and throughput of a session: warm-up, then timed runs, reported as percentiles."""

from __future__ import annotations

import os
import time

import numpy as np

from compiler.errors import printable


def benchmark(session, feeds: dict, info, batch: int, warmup: int = 5, runs: int = 50,
              timeout: float | None = None) -> dict:
    """The figures of `summarise`, and the model, provider, threads and device they were measured with.

    `session` is a runtime.session.Session and `info` its model's runtime.model.ModelInfo. The
    runs stop on Ctrl-C, SIGTERM, or one run longer than `timeout` seconds (see Session.watch).
    """
    times = session.watch(lambda: measure(session, feeds, warmup, runs), timeout)
    result = summarise(times, batch, info.macs)
    # intra-op threads: as asked, or onnxruntime's default (one per core)
    result.update(model=info.name, provider=session.provider, threads=session.threads or os.cpu_count(),
                  device=session.device)
    return result


def describe(result: dict) -> list[str]:
    """The result of `benchmark` as three lines of text, escaped: the model's name comes from its file."""
    lat = result["latency_ms"]
    gflops = f", {result['gflops_per_s']:.1f} GFLOP/s" if result["gflops_per_s"] else ""
    lines = [f"{result['model']}: batch {result['batch']}, {result['runs']} runs on {result['provider']} "
             f"({result['threads']} threads)",
             f"latency ms: p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}",
             f"throughput: {result['throughput_per_s']:.1f} samples/s{gflops}"]
    return [printable(line) for line in lines]


def measure(session, feeds: dict, warmup: int = 5, runs: int = 50, min_seconds: float = 1.0) -> list[float]:
    """Seconds per run of `session` (a runtime.session.Session): `runs` runs at least, and more
    until `min_seconds` have passed. A refused input fails in the first run, as one clean line."""
    for _ in range(warmup):
        session.run(feeds)
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        session.run(feeds)
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
