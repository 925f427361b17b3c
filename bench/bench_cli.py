"""Whole-process timings of the fast paths, against their targets (not a test: machines are noisy).

    python bench/bench_cli.py [--repeat N]

Measures, side by side in one run: a bare interpreter start (the floor), `convspec summary
resnet152` (target < 0.5 s), and `convspec check` over every bundled spec (target < 2 s).
Reports medians, the ratio to each target, and whether onnx or onnxruntime was imported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "cli.py")]


def timed(cmd) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_imports(cmd) -> list[str]:
    """Modules named onnx* that the command imports (python -X importtime lists every import)."""
    out = subprocess.run([sys.executable, "-X", "importtime"] + cmd[1:], cwd=ROOT, capture_output=True, text=True)
    names = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    return sorted(n for n in names if n.split(".")[0] in ("onnx", "onnxruntime"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    specs = sorted(str(p) for p in (ROOT / "specs").glob("*.yaml"))
    cases = [
        ("python -c pass (floor)", [sys.executable, "-c", "pass"], None),
        ("convspec summary resnet152", CLI + ["summary", "resnet152"], 0.5),
        (f"convspec check ({len(specs)} bundled specs)", CLI + ["check", "-q"] + specs, 2.0),
    ]
    print(f"{'command':<40} {'median s':>9} {'min s':>7} {'target s':>9} {'ratio':>6}")
    for label, cmd, target in cases:
        runs = [timed(cmd) for _ in range(args.repeat)]
        med = statistics.median(runs)
        ratio = f"{med / target:.2f}" if target else ""
        print(f"{label:<40} {med:>9.3f} {min(runs):>7.3f} {target or '':>9} {ratio:>6}")
    for label, cmd, _ in cases[1:]:
        found = heavy_imports(cmd)
        print(f"{label}: imports onnx/onnxruntime: {'yes: ' + ', '.join(found) if found else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
