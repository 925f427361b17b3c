"""Peak memory and time of `convspec compile` on VGG-19 (143.7 M params, 575 MB), against its size.

    python bench/bench_compile.py

Target: peak resident memory about twice the model's size or less. For comparison, the same
model is also built in memory and written with onnx.save_model, the straightforward way, in its
own process. Each case runs in a fresh process; peak RSS is that process's ru_maxrss.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]

NAIVE = """
import sys; sys.path.insert(0, {root!r})
import onnx
from compiler.build import compile_model
from compiler.pipeline import analyse
onnx.save_model(compile_model(analyse({spec!r})), {out!r})
"""


def vgg19_spec(folder: Path) -> Path:
    text = (ROOT / "specs" / "vgg16.yaml").read_text()
    start, end = text.index("    sequential:\n") + len("    sequential:\n"), text.index("    expect: {output: [512, 7, 7]}")
    lines, i = [], 0
    for c in VGG19:
        if c == "M":
            lines.append(f"      - maxpool: 2   # {i}")
            i += 1
        else:
            lines += [f"      - conv: {{filters: {c}}}   # {i}", f"      - relu   # {i + 1}"]
            i += 2
    text = text[:start] + "\n".join(lines) + "\n" + text[end:]
    text = text.replace("name: vgg16", "name: vgg19")
    text = re.sub(r"\nexpect:.*", "\nexpect:\n  trainable: 143667240\n", text, flags=re.S)
    path = folder / "vgg19.yaml"
    path.write_text(text)
    return path


def peak_of(cmd) -> tuple[float, int]:
    """Seconds and peak RSS in bytes of one fresh process (GNU time's %M)."""
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, int(out.stderr.strip().splitlines()[-1]) * 1024


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = vgg19_spec(folder)
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
