"""Peak memory and time of `convspec compile` on VGG-19 (143.7 M params, 575 MB), against its size.

    python bench/bench_compile.py

Target: peak resident memory about twice the model's size or less. For comparison, the same
model is also built in memory and written with onnx.save_model, the straightforward way, in its
own process. Each case runs in a fresh process; peak RSS is GNU time's maximum resident size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NAIVE = """
import sys; sys.path.insert(0, {root!r})
import onnx
from compiler.build import compile_spec
from compiler.pipeline import analyse
onnx.save_model(compile_spec(analyse({spec!r})).to_model(), {out!r})
"""


def peak_of(cmd) -> tuple[float, int]:
    """Seconds and peak RSS in bytes of one fresh process (GNU time's %M)."""
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, int(out.stderr.strip().splitlines()[-1]) * 1024


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = "vgg19"  # the bundled spec
        out = folder / "vgg19.onnx"
        streamed_s, streamed_peak = peak_of([sys.executable, str(ROOT / "cli.py"), "compile", str(spec), "-o", str(out)])
        size = out.stat().st_size
        naive_out = folder / "naive.onnx"
        naive_s, naive_peak = peak_of([sys.executable, "-c", NAIVE.format(root=str(ROOT), spec=str(spec),
                                                                           out=str(naive_out))])
        floor_s, floor_peak = peak_of([sys.executable, "-c", "import onnx, numpy, yaml, jsonschema"])
    mb = 1e6
    print(f"VGG-19 model file: {size / mb:.0f} MB (cores: {os.cpu_count()})")
    print(f"{'case':<44} {'seconds':>8} {'peak MB':>8} {'peak/size':>10}")
    for label, s, peak in (("interpreter + imports (floor)", floor_s, floor_peak),
                           ("convspec compile (streamed save)", streamed_s, streamed_peak),
                           ("in-memory model + onnx.save_model", naive_s, naive_peak)):
        print(f"{label:<44} {s:>8.2f} {peak / mb:>8.0f} {peak / size:>10.2f}")
    print(f"streamed / in-memory peak: {streamed_peak / naive_peak:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
