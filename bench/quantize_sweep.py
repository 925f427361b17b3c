"""Int8 recipes against fp32: latency ratio (batch 1, round-robin in one process) and accuracy.

    python bench/quantize_sweep.py resnet50 [--weights W.pth] [--threads 2] [--runs 30] [recipe ...]

A recipe is `name:key=value,...` over compiler.quantize.Recipe's fields (e.g.
`s8act:activations=s8`). Accuracy is measured on held-out inputs (another seed than the
calibration's), so it is not flattered by the calibration set. Results: docs/quantization.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from compiler.build import compile_spec  # noqa: E402
from compiler.pipeline import analyse  # noqa: E402
from compiler.quantize import Recipe, compare, generated_calibration, quantize  # noqa: E402


def parse_recipe(text: str) -> tuple[str, Recipe]:
    name, _, settings = text.partition(":")
    kinds = {f.name: f.type for f in fields(Recipe)}
    values = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        kind = kinds[key]
        values[key] = (value == "1" if kind == "bool" else tuple(filter(None, value.split("+"))) if kind == "tuple"
                       else value)
    return name, replace(Recipe(), **values)


def smooth_images(shape, seed: int, samples: int, cells: int = 7) -> np.ndarray:
    """Natural-image-like inputs: random colours on a coarse grid, interpolated bilinearly (so
    neighbouring pixels correlate, as in photos), normalised with ImageNet's mean and std."""
    channels, height, width = shape
    rng = np.random.default_rng(seed)
    grid = rng.uniform(0, 1, (samples, channels, cells, cells)).astype(np.float32)

    def spread(n):  # (n, cells): linear interpolation weights
        return np.stack([np.interp(np.linspace(0, cells - 1, n), np.arange(cells), np.eye(cells)[k])
                         for k in range(cells)], axis=1).astype(np.float32)

    images = spread(height) @ grid @ spread(width).T
    mean = np.array([0.485, 0.456, 0.406][:channels], np.float32).reshape(-1, 1, 1)
    std = np.array([0.229, 0.224, 0.225][:channels], np.float32).reshape(-1, 1, 1)
    return (images - mean) / std


def session(path: str, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle pool threads spin for a while after each run; with sessions taking turns on 2 cores,
    # one session's spinning would slow the next one's run. No spinning: a fair round-robin.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def latencies(sessions: list, x, runs: int) -> list[float]:
    """Median latency (ms) of each session, runs round-robin so that load on the machine hits all."""
    feeds = {"input": x}
    for s in sessions:
        for _ in range(3):
            s.run(None, feeds)
    times = [[] for _ in sessions]
    for _ in range(runs):
        for s, samples in zip(sessions, times):
            t = time.perf_counter()
            s.run(None, feeds)
            samples.append(time.perf_counter() - t)
    return [statistics.median(t) * 1e3 for t in times]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("spec")
    p.add_argument("recipes", nargs="*", default=["default:"])
    p.add_argument("--weights")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--samples", type=int, default=32)
    args = p.parse_args()
    a = analyse(args.spec)
    model = compile_spec(a, args.weights).to_model()
    shape = a.graph.input_shape
    calibration = generated_calibration(shape, 0, args.samples)
    held_out = generated_calibration(shape, 1, 16)
    smooth = smooth_images(shape, 2, 16)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = str(Path(tmp) / "fp32.onnx")
        onnx.save(model, fp32_path)
        fp32 = session(fp32_path, args.threads)
        print(f"{args.spec} weights={args.weights or 'seeded'} threads={args.threads} ort={ort.__version__}")
        rows = []
        for text in args.recipes:
            name, recipe = parse_recipe(text)
            t = time.time()
            q, figures = quantize(model, calibration, "generated", recipe)
            seconds = time.time() - t
            path = str(Path(tmp) / f"{name}.onnx")
            onnx.save(q, path)
            held = compare(fp32_path, path, "input", held_out)
            images = compare(fp32_path, path, "input", smooth)
            rows.append((name, path, figures, held, images, seconds))
        # all recipes timed together, round-robin with fp32, after the quantisations
        ms = latencies([fp32] + [session(row[1], args.threads) for row in rows], held_out[:1], args.runs)
        print(f"fp32         {ms[0]:.1f} ms")
        for (name, _, figures, held, images, seconds), ms8 in zip(rows, ms[1:]):
            print(f"{name:12s} ratio {ms[0] / ms8:.2f}x ({ms8:.1f} ms)  "
                  f"cosine calib {figures['cosine']:.4f} held-out {held['cosine']:.4f}  "
                  f"maxrel {held['max_relative_error']:.3f} top1 {held['top1_agreement']:.2f}  "
                  f"smooth images: cosine {images['cosine']:.4f} top1 {images['top1_agreement']:.2f}  "
                  f"quantise {seconds:.0f} s", flush=True)

if __name__ == "__main__":
    main()
