"""Two compiles of every bundled spec give identical bytes, in separate processes.

Each process compiles the whole library through `convspec compile`'s own code path (analyse,
seeded weights, the streamed writer) and prints each file's sha256. The two run side by side,
with different hash seeds and working folders, so nothing that varies between runs (set and
dict order, temporary names, the folder the files are written in) can reach the output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compiler.zoo import bundled

pytestmark = pytest.mark.slow  # two compiles of the whole library

ROOT = Path(__file__).resolve().parent.parent

HASH_ALL = """
import hashlib, os, sys
sys.path.insert(0, sys.argv[1])
from cli import main
from compiler.zoo import bundled
for path in bundled():
    if main(["compile", str(path), "-o", path.stem + ".onnx", "--seed", "7"]) != 0:
        sys.exit(f"compile failed: {path.stem}")
    with open(path.stem + ".onnx", "rb") as f:
        print(path.stem, hashlib.sha256(f.read()).hexdigest(), file=sys.stderr)
    os.remove(path.stem + ".onnx")  # the library is gigabytes; hold one model at a time
"""


def _hashes(proc: subprocess.Popen) -> dict:
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-2000:]
    lines = [line.split() for line in err.splitlines() if len(line.split()) == 2 and len(line.split()[1]) == 64]
    return dict(lines)


def test_every_bundled_spec_compiles_to_the_same_bytes_twice(tmp_path):
    procs = []
    for hash_seed in ("1", "2"):
        folder = tmp_path / f"run{hash_seed}"
        folder.mkdir()
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        procs.append(subprocess.Popen([sys.executable, "-c", HASH_ALL, str(ROOT)], cwd=folder, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    first, second = (_hashes(p) for p in procs)
    assert sorted(first) == sorted(p.stem for p in bundled())
    assert first == second
