"""The benchmark suite (docs/performance.md): convspec's models on onnxruntime beside the same
torchvision models, against this machine's own SGEMM peak; then compile speed and memory.

    python bench/suite.py [--quick] [--models a,b] [--batches 1,8,32] [--no-torch] [-o build/bench.md]

Not a test: machines are noisy. The figures go to stdout and, as Markdown, to `-o`.

Per model and batch: convspec's compiled model and torchvision's model exported by
`torch.onnx.export`, both on onnxruntime, timed in alternating order in the same rounds (so that
drift and a neighbour's load hit both alike), then PyTorch eager on its own. Both models carry the
same weights (torchvision's state_dict, compiled through a .pth), and their outputs must agree
with eager to 1e-4 before anything is timed. Without torch only convspec's model runs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.build import compile_spec, save  # noqa: E402  (after the path: runs from a checkout)
from compiler.pipeline import analyse  # noqa: E402
from compiler.zoo import bundled  # noqa: E402

MODELS = ("resnet50", "googlenet", "densenet121", "alexnet", "vgg16")
PENDING = ("mobilenet_v2", "efficientnet_b0")  # not bundled yet
THREADS = 2  # intra-op threads, every engine
TOLERANCE = 1e-4  # max |output - eager| / max |eager|
PAUSE = 0.5  # seconds for idle OpenMP and BLAS threads to stop spinning (libgomp, OpenBLAS) before the next timing
MAX_ROUNDS = 200
ENGINES = ("convspec", "torch.onnx", "eager")


@dataclass(frozen=True)
class Plan:
    models: tuple
    batches: tuple
    runs: int  # timed runs per engine and cell, at least
    seconds: float  # ... and rounds go on until a cell has taken this long
    compiles: tuple  # specs compiled in a child process each, for time and peak memory
    sgemm_repeats: int


FULL = Plan(MODELS, (1, 8, 32), runs=3, seconds=2.0, compiles=("resnet50", "vgg19"), sgemm_repeats=5)
QUICK = Plan(("googlenet",), (1,), runs=2, seconds=0.2, compiles=("googlenet",), sgemm_repeats=2)


# -- the machine --------------------------------------------------------------------------------

def cpu() -> tuple[str, str]:
    """The CPU's model name and which of the vector and matrix extensions it has (Linux's /proc/cpuinfo)."""
    name, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    extensions = {"AVX2": ["avx2"], "FMA": ["fma"], "AVX-512": ["avx512f"], "AVX-512 BF16": ["avx512_bf16"],
                  "VNNI": ["avx512_vnni", "avx_vnni"], "AMX": ["amx_tile", "amx_bf16", "amx_int8"]}
    has = ", ".join(f"{k} {'yes' if any(f in flags for f in v) else 'no'}" for k, v in extensions.items())
    return name, f"{has} ({' '.join(sorted(f for v in extensions.values() for f in v if f in flags)) or 'none'})"


def sgemm_peak(repeats: int, n: int = 2048) -> float:
    """GFLOP/s of the best of `repeats` float32 n x n matrix products with numpy's BLAS (all cores):
    what this machine's cores can do on the friendliest dense work, the ceiling for a CNN."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    a @ b  # warm-up: BLAS threads start, pages fault in
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    time.sleep(PAUSE)
    return 2 * n**3 / best / 1e9


def _seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


# -- the engines --------------------------------------------------------------------------------

def ort_runner(path: str):
    """A function running the ONNX model at `path` on onnxruntime's CPU provider, THREADS threads.

    Spinning is off: onnxruntime's idle workers otherwise busy-wait after each run and take the
    cores from the engine timed next (convspec's runtime.session keeps onnxruntime's defaults).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def load_torch():
    """(torch, torchvision), or the reason why not."""
    # torchvision 0.28's package import fails on CPU torch until this module is stubbed (DESIGN.md)
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    try:
        import torch
        import torchvision
    except ImportError as e:
        return None, f"torch or torchvision is not importable ({e})"
    torch.set_num_threads(THREADS)
    return (torch, torchvision), ""


def prepare(name: str, folder: Path, tv) -> tuple[dict, object, str]:
    """The engines of one model, as {engine: run(x) -> array}, its analysis, and a note (why one is missing).

    With torch: torchvision's model with seeded random weights, its state_dict compiled by
    convspec through a .pth, and exported by torch.onnx; all three must agree before timing.
    """
    analysis = analyse(name)
    if tv is None:
        (path,) = save(compile_spec(analysis), str(folder / f"{name}.onnx"))
        return {"convspec": ort_runner(path)}, analysis, ""
    torch, torchvision = tv
    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    torch.save(model.state_dict(), folder / f"{name}.pth")
    (path,) = save(compile_spec(analysis, weights=str(folder / f"{name}.pth")), str(folder / f"{name}.onnx"))

    def eager(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    engines, note = {"convspec": ort_runner(path)}, ""
    exported = folder / f"{name}.torch.onnx"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            # the TorchScript exporter: torch 2.13's default (dynamo) one needs onnxscript
            torch.onnx.export(model, (torch.zeros(1, *analysis.graph.input_shape),), str(exported), dynamo=False,
                              input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}},
                              opset_version=18)
        engines["torch.onnx"] = ort_runner(str(exported))
    except Exception as e:  # whatever the exporter raises; the other engines still run
        note = f"torch.onnx.export failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
    engines["eager"] = eager
    x = np.random.default_rng(1).standard_normal((2, *analysis.graph.input_shape), dtype=np.float32)
    expected = eager(x)
    for engine, run in engines.items():
        error = np.abs(run(x) - expected).max() / np.abs(expected).max()
        if error > TOLERANCE:
            raise RuntimeError(f"{name}: {engine} differs from PyTorch eager by {error:.1e} (relative), "
                               f"more than {TOLERANCE:g}: the comparison would be meaningless")
    return engines, analysis, note


def rounds(runs: list, x, plan: Plan) -> list[list[float]]:
    """Seconds per call of each of `runs`, called in the same rounds, in reversed order every other
    round: at least plan.runs rounds, and more until plan.seconds have passed."""
    for run in runs * 2:
        run(x)  # warm-up: memory arenas, caches, thread pools
    times = [[] for _ in runs]
    start = time.perf_counter()
    while len(times[0]) < plan.runs or (time.perf_counter() - start < plan.seconds and len(times[0]) < MAX_ROUNDS):
        order = range(len(runs)) if len(times[0]) % 2 == 0 else reversed(range(len(runs)))
        for i in order:
            times[i].append(_seconds(lambda: runs[i](x)))
    return times


def time_model(engines: dict, analysis, batch: int, plan: Plan) -> dict:
    """{engine: (median seconds, runs, its time / convspec's)} for one batch size."""
    x = np.random.default_rng(2).standard_normal((batch, *analysis.graph.input_shape), dtype=np.float32)
    pair = [e for e in ("convspec", "torch.onnx") if e in engines]
    times = dict(zip(pair, rounds([engines[e] for e in pair], x, plan)))
    if "eager" in engines:  # on its own: its OpenMP threads spin after each call
        times["eager"] = rounds([engines["eager"]], x, plan)[0]
        time.sleep(PAUSE)
    base = statistics.median(times["convspec"])
    result = {}
    for engine, t in times.items():
        if engine == "torch.onnx":  # timed in the same rounds: the median of the per-round ratios
            ratio = statistics.median(b / a for a, b in zip(times["convspec"], t))
        else:
            ratio = statistics.median(t) / base
        result[engine] = (statistics.median(t), len(t), ratio)
    return result


# -- the compiler -------------------------------------------------------------------------------

SUMMARIES = """
import contextlib, io, sys, time
sys.path.insert(0, {root!r})
from cli import main
start = time.perf_counter()
for spec in {specs!r}:
    with contextlib.redirect_stdout(io.StringIO()):
        if main(["summary", spec]) != 0:
            sys.exit(f"summary {{spec}} failed")
print(time.perf_counter() - start)
"""


# Runs a command and prints its peak RSS. A child's ru_maxrss starts from its parent's peak
# (Linux carries it over fork and exec), so the child must come from this small process, never
# from the benchmark with its models loaded.
PEAK = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stderr=subprocess.DEVNULL); " \
       "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def child(cmd: list) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in bytes and stdout of `cmd` in a fresh process."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PEAK, *cmd], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()[-300:]}")
    *text, peak = out.stdout.splitlines()
    return seconds, int(peak) * (1 if sys.platform == "darwin" else 1024), "\n".join(text)  # Linux counts KiB


def compile_rows(plan: Plan, folder: Path) -> list[list[str]]:
    specs = sorted(p.stem for p in bundled())
    wall, peak, inner = child([sys.executable, "-c", SUMMARIES.format(root=str(ROOT), specs=specs)])
    rows = [[f"`convspec summary` x {len(specs)} bundled specs, in-process, one fresh process",
             f"{wall:.2f}", f"{float(inner):.2f}", f"{peak / 1e6:.0f}", "", ""]]
    for spec in plan.compiles:
        out = folder / f"compiled-{spec}.onnx"
        wall, peak, _ = child([sys.executable, str(ROOT / "cli.py"), "compile", spec, "-o", str(out)])
        size = out.stat().st_size
        rows.append([f"`convspec compile {spec}`", f"{wall:.2f}", "", f"{peak / 1e6:.0f}", f"{size / 1e6:.0f}",
                     f"{peak / size:.2f}"])
        out.unlink()
    return rows


# -- the report ---------------------------------------------------------------------------------

def table(header: list, rows: list, text: int = 1) -> list[str]:
    """A Markdown table, its first `text` columns left-aligned and the figures right-aligned."""
    rule = ["---"] * text + ["---:"] * (len(header) - text)
    return ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


INFERENCE = ["model", "batch", "engine", "runs", "median ms", "samples/s", "GFLOP/s", "% of peak", "time / convspec"]
COMPILE = ["what", "wall s", "in-process s", "peak RSS MB", "output MB", "peak / output"]


def run(plan: Plan, use_torch: bool, command: str, echo=print) -> list[str]:
    """The whole report as Markdown lines; `echo` hears each inference row as it is measured."""
    import onnxruntime

    tv, why = load_torch() if use_torch else (None, "--no-torch")
    load_before = os.getloadavg()[0]  # the neighbours' share of this machine
    first_peak = sgemm_peak(plan.sgemm_repeats)
    measured, notes = [], []  # (model, batch, engine, runs, seconds, GFLOP/s, time / convspec)
    with tempfile.TemporaryDirectory(prefix="convspec-bench-") as tmp:
        for model in plan.models:
            engines, analysis, note = prepare(model, Path(tmp), tv)
            notes += [f"- {model}: {note}"] if note else []
            for batch in plan.batches:
                for engine, (seconds, n, ratio) in time_model(engines, analysis, batch, plan).items():
                    measured.append((model, batch, engine, n, seconds, 2 * analysis.macs * batch / seconds / 1e9, ratio))
                    echo(f"{model} batch {batch} {engine}: {seconds * 1e3:.1f} ms")
            del engines
            gc.collect()
        compiled = compile_rows(plan, Path(tmp))
    # at both ends, the best: a neighbour's load on this shared machine only ever lowers it
    peak = max(first_peak, sgemm_peak(plan.sgemm_repeats))
    rows = [[model, str(batch), engine, str(n), f"{s * 1e3:.1f}", f"{batch / s:.1f}", f"{g:.1f}",
             f"{100 * g / peak:.0f}", f"{ratio:.2f}"] for model, batch, engine, n, s, g, ratio in measured]

    name, extensions = cpu()
    versions = f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}"
    if tv:
        versions += f", torch {tv[0].__version__}, torchvision {tv[1].__version__}"
    return ["# convspec benchmark", "", f"`{command}`", "",
            f"- CPU: {name}, {os.cpu_count()} logical cores; {extensions}",
            f"- {versions}; {THREADS} intra-op threads everywhere, onnxruntime's spinning off",
            f"- peak: {peak:.1f} GFLOP/s, the best 2048x2048 float32 SGEMM with numpy's BLAS "
            f"({2 * plan.sgemm_repeats} tries, before and after)",
            "- GFLOP per sample: 2 x the model's MACs (convolution and dense layers)",
            f"- load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
            *([] if tv else [f"- torch.onnx and eager not run: {why}"]),
            "", "## Inference", "", *table(INFERENCE, rows, text=3), *([""] + notes if notes else []),
            "", f"Pending (not bundled yet): {', '.join(PENDING)}.",
            "", "## Compile", "", *table(COMPILE, compiled)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: one small model, batch 1, few runs")
    parser.add_argument("--models", help=f"comma-separated bundled specs (default {','.join(MODELS)})")
    parser.add_argument("--batches", help="comma-separated batch sizes (default 1,8,32)")
    parser.add_argument("--no-torch", action="store_true", help="convspec's models only")
    parser.add_argument("-o", "--output", default=str(ROOT / "build" / "bench.md"), help="the Markdown report")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.models:
        plan = replace(plan, models=tuple(args.models.split(",")))
    if args.batches:
        plan = replace(plan, batches=tuple(int(b) for b in args.batches.split(",")))
    command = "python bench/suite.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    lines = run(plan, not args.no_torch, command)
    text = "\n".join(lines) + "\n"
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
