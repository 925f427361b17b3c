"""Why the suite turns onnxruntime's spinning off: two sessions run in turn, spinning on and off.

    python bench/spinning.py [SPEC] [--rounds N]

With spinning on (onnxruntime's default), a session's idle workers busy-wait after each run and
take the cores from the other session's run that follows. One session run back to back is the
reference. Medians in ms, each setting measured twice, alternately.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compiler.build import compile_spec, save  # noqa: E402
from compiler.pipeline import analyse  # noqa: E402


def session(path: str, spin: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def median_ms(sessions, x, rounds: int) -> float:
    for s in sessions * 2:
        s.run(None, {"input": x})  # warm-up
    times = []
    for _ in range(rounds):
        for s in sessions:
            start = time.perf_counter()
            s.run(None, {"input": x})
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default="googlenet")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    analysis = analyse(args.spec)
    x = np.random.default_rng(0).standard_normal((1, *analysis.graph.input_shape), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        (path,) = save(compile_spec(analysis), str(Path(tmp) / "model.onnx"))
        print(f"{args.spec}, batch 1, 2 threads: median ms per run")
        print(f"{'spinning':<9} {'two sessions in turn':>21} {'one session alone':>18}")
        for spin in ("1", "0", "1", "0"):
            a, b = session(path, spin), session(path, spin)
            print(f"{'on' if spin == '1' else 'off':<9} {median_ms([a, b], x, args.rounds):>21.1f} "
                  f"{median_ms([a], x, args.rounds):>18.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
