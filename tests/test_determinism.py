"""Two compiles give identical bytes, in separate processes.

Each process prints, for every bundled spec, a sha256 of its compiled graph: everything
`compile_spec` makes (nodes, names, attributes, metadata, the weights' keys, order and shapes)
with the weights' values left out (zeros, which cost nothing to make), since those are a pure
function of the seed and the weight's key (compiler/weights.py). For the specs of `SUBSET` it
also compiles through `convspec compile`'s own code path (analyse, seeded weights, the streamed
writer) and prints the file's sha256. The two processes run side by side, with different hash
seeds and working folders, so nothing that varies between runs (set and dict order, temporary
names, the folder the files are written in) can reach the output.

`SUBSET` holds a sixth of the library's weights (374 M of 2.15 billion; the eight VGGs alone are
1.1 billion), and provably covers it: the test checks that its specs hold every layer type,
every top-level spec key and both weight initialisations that the whole library uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compiler.pipeline import analyse
from compiler.weights import initialisation
from compiler.zoo import bundled

pytestmark = pytest.mark.slow  # two compiles of a sixth of the library

ROOT = Path(__file__).resolve().parent.parent

# the cheapest specs that cover the library (see features()): what each brings first
SUBSET = ("resnet18_ensemble",  # ensemble, combine, preprocess
          "alexnet_10crop",  # multicrop, crops, crop_mean
          "convnext_tiny",  # gelu, layernorm, layer_scale, stochastic_depth
          "unet",  # conv_transpose, crop
          "fcn_resnet50",  # upsample
          "resnet50_10class",  # frozen, extends, replace
          "resnet34",  # set
          "googlenet_paper",  # lrn, augment
          "inception_cost",  # outputs, glorot
          "shufflenet_v2_x1_0",  # channel_shuffle, chunk
          "resnet56_cifar",  # zero_pad_shortcut
          "mobilenet_v3_small",  # hardswish, mul
          "mobilenet_v2",  # relu6
          "efficientnet_b0")  # silu

HASH = """
import hashlib, os, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from cli import main
from compiler import build
from compiler.pipeline import analyse
from compiler.zoo import bundled

for path in bundled():
    if path.stem in sys.argv[2:]:
        if main(["compile", str(path), "-o", path.stem + ".onnx", "--seed", "7"]) != 0:
            sys.exit(f"compile failed: {path.stem}")
        with open(path.stem + ".onnx", "rb") as f:
            print(path.stem + ".onnx", hashlib.sha256(f.read()).hexdigest(), file=sys.stderr)
        os.remove(path.stem + ".onnx")  # hold one model at a time

def zeros(analysis, seed):  # compile_spec's seeded weights, every value 0
    return lambda f: {w.key(f.node.name): np.zeros(w.shape, np.float32)
                      for w in f.node.layer.weights(*f.input_shapes) if w.role != "fixed"}

build.seeded = zeros
for path in bundled():
    lowered = build.compile_spec(analyse(str(path)), seed=7)
    digest = hashlib.sha256(lowered.model.SerializeToString())
    digest.update(repr([(key, array.shape) for key, array in lowered.weights]).encode())
    print(path.stem, digest.hexdigest(), file=sys.stderr)
"""


def _hashes(proc: subprocess.Popen) -> dict:
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-2000:]
    lines = [line.split() for line in err.splitlines() if len(line.split()) == 2 and len(line.split()[1]) == 64]
    return dict(lines)


def features(path: Path) -> set:
    """What a spec exercises: its layer types, its top-level keys, its weight initialisation."""
    a = analyse(str(path))
    return ({("layer", f.node.type) for f in a.layers} | {("layer", n.type) for n in a.graph.nodes}
            | {("key", k) for k in yaml.safe_load(path.read_text())} | {("init", initialisation(a))})


def test_the_subset_covers_the_library():
    library = {p.stem: features(p) for p in bundled()}
    covered = set().union(*(library[name] for name in SUBSET))
    assert set().union(*library.values()) - covered == set(), "add a spec that has these to SUBSET"


def test_every_bundled_spec_compiles_to_the_same_bytes_twice(tmp_path):
    procs = []
    for hash_seed in ("1", "2"):
        folder = tmp_path / f"run{hash_seed}"
        folder.mkdir()
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        procs.append(subprocess.Popen([sys.executable, "-c", HASH, str(ROOT), *SUBSET], cwd=folder, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    first, second = (_hashes(p) for p in procs)
    assert sorted(first) == sorted([p.stem for p in bundled()] + [f"{name}.onnx" for name in SUBSET])
    assert first == second
