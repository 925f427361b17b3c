"""Latency and throughput of a session: warm-up, then timed runs, reported as percentiles.

Runs go through onnxruntime's I/O binding: the input is copied to the session's device once and
the outputs stay there, so `latency_ms` times the model alone (on CUDA, not the PCIe copies).
`end_to_end_ms` times the same runs with the input copied in and the outputs copied back each
time, as `convspec run` does. On the CPU the two differ by a copy of the outputs.
"""

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
    times, copied = session.watch(lambda: measure(session, feeds, warmup, runs), timeout)
    result = summarise(times, batch, info.macs)
    result["end_to_end_ms"] = percentiles(copied)
    # intra-op threads: as asked, or onnxruntime's default (one per core)
    result.update(model=info.name, provider=session.provider, threads=session.threads or os.cpu_count(),
                  device=session.device)
    return result


def describe(result: dict) -> list[str]:
    """The result of `benchmark` as three lines of text, escaped: the model's name comes from its file."""
    lat, e2e = result["latency_ms"], result["end_to_end_ms"]
    gflops = f", {result['gflops_per_s']:.1f} GFLOP/s" if result["gflops_per_s"] else ""
    lines = [f"{result['model']}: batch {result['batch']}, {result['runs']} runs on {result['provider']} "
             f"({result['threads']} threads)",
             f"latency ms: p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}",
             f"end-to-end ms, with copies: p50 {e2e['p50']:.3f}  p90 {e2e['p90']:.3f}  "
             f"p99 {e2e['p99']:.3f}",
             f"throughput: {result['throughput_per_s']:.1f} samples/s{gflops}"]
    return [printable(line) for line in lines]


def measure(session, feeds: dict, warmup: int = 5, runs: int = 50,
            min_seconds: float = 1.0) -> tuple[list[float], list[float]]:
    """Seconds per run of `session` (a runtime.session.Session), as (model only, with copies): `runs`
    runs of each at least, and more until `min_seconds` have passed. A refused input fails in
    the first run, as one clean line."""
    binding, from_host = session.bind(feeds), session.bind(feeds, on_device=False)

    def copying():  # the input copied in during the run, the outputs copied back: what `run` pays
        session.run_bound(from_host)
        from_host.copy_outputs_to_cpu()

    for _ in range(warmup):
        session.run_bound(binding)
    return timed(lambda: session.run_bound(binding), runs, min_seconds), timed(copying, runs, min_seconds)


def timed(work, runs: int, min_seconds: float) -> list[float]:
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
        if len(times) >= 100 * runs:
            break
    return times


def percentiles(times: list[float]) -> dict:
    """p50, p90, p99 and mean, in milliseconds."""
    t = np.asarray(times) * 1e3
    return {**{f"p{q}": float(np.percentile(t, q)) for q in (50, 90, 99)}, "mean": float(t.mean())}


def summarise(times: list[float], batch: int, macs: int) -> dict:
    latency = percentiles(times)
    p50 = latency["p50"] / 1e3
    return {
        "runs": len(times),
        "batch": batch,
        "latency_ms": latency,
        "throughput_per_s": batch / p50,
        "gflops_per_s": 2 * macs * batch / p50 / 1e9 if macs else None,
    }
