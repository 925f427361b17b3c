"""Hostile sizes for adaptive pooling and the input: cost stays bounded whatever the spec asks.

Adaptive pooling used to lower to about six ONNX nodes per output bin, so `[1, 100000]` on a 1x3
input passed `check` and then took 10 s, 1.2 GB and a 60 MB file to compile, and larger sizes ran
out of memory or crashed. Its lowering now has a fixed number of nodes and scalar constants
(compiler/layers/pool.py). Every other layer type's lowering is held to the same rule here, so a
model's size is bounded by the limits `check` already enforces: its node count by --max-layers,
its weights by --max-params, every tensor (the input included) by 2^34 elements.

The cases in tests/hostile/specs/pool/ get their exact error from check, summary and compile.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import compiler.layers  # noqa: F401  (fills the registry)
from clirun import hard_limit
from cli import main
from compiler.errors import ShapeError
from compiler.lower import lower
from compiler.pipeline import analyse_text
from compiler.registry import REGISTRY
from compiler.weights import seeded
from test_layers import MERGE_ROWS, ROWS, merge_spec, single_spec

SPECS = Path(__file__).resolve().parent / "hostile" / "specs" / "pool"
TOO_MANY = "elements per sample, more than 17,179,869,184 (64 GiB of float32)"

# file -> the exact error line of `convspec check|summary|compile FILE` (exit 1), run in SPECS.
SPEC_ERRORS = {
    "input_huge_dims.yaml": "input_huge_dims.yaml:1:8: error: 'input' [3, 9223372036854775807, 9223372036854775807] "
                            "has 255,211,775,190,703,847,542,190,723,352,697,503,747 " + TOO_MANY
                            + "; use a smaller input",
    "input_too_many_elements.yaml": "input_too_many_elements.yaml:1:8: error: 'input' [4096, 4096, 4096] has "
                                    "68,719,476,736 " + TOO_MANY + "; use a smaller input",
    "adaptive_output_too_many_elements.yaml": "adaptive_output_too_many_elements.yaml:3:5: error: layer "
                                              "'adaptive_maxpool1': the output [1024, 100000, 1000] has "
                                              "102,400,000,000 " + TOO_MANY + "; check the input size and the "
                                              "layer's arguments",
    "adaptive_output_size_beyond_int32.yaml": "adaptive_output_size_beyond_int32.yaml:3:5: error: layer "
                                              "'adaptive_avgpool1': argument 'output_size' is 3000000000, beyond "
                                              "what ONNX Runtime can compute with (at most 2,147,483,647); is it "
                                              "a typo?",
}


def test_the_table_covers_the_folder():
    assert sorted(SPEC_ERRORS) == sorted(p.name for p in SPECS.glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(SPEC_ERRORS))
@pytest.mark.parametrize("command", ["check", "summary", "compile"])
def test_hostile_spec(name, command, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(SPECS)
    out = tmp_path / "model.onnx"
    with hard_limit(10):
        code = main([command, name] + (["-o", str(out)] if command == "compile" else []))
    stdout, stderr = capsys.readouterr()
    assert (code, stderr, stdout) == (1, SPEC_ERRORS[name] + "\n", "")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("channels, fits", [(8, True), (9, False)])
def test_adaptive_bins_are_bounded_by_the_tensor_limit(channels, fits):
    """The most bins an argument may ask for (2^31 - 1), times the channels, against 2^34."""
    text = f"input: [{channels}, 2, 2]\nlayers:\n  - adaptive_avgpool: [{2**31 - 1}, 1]\n"
    with hard_limit(10):
        if fits:
            assert analyse_text(text, "s.yaml").layers[-1].output_shape == (channels, 2**31 - 1, 1)
        else:
            with pytest.raises(ShapeError, match=re.escape(f"has {channels * (2**31 - 1):,} {TOO_MANY}")):
                analyse_text(text, "s.yaml")


# -- compiling huge non-uniform adaptive pools: small and fast ------------------------------------

NODES_PER_LAYER = 64  # what any one layer's lowering may emit, whatever its sizes
CONSTANTS_PER_LAYER = 64  # elements of the constants (axes, pads, indices) it emits, weights aside

HUGE = [
    ([1, 1, 3], [1, 100_000]),  # the case
    ([1, 1, 3], [1, 2_000_000_000]),  # used to eat all memory
    ([1, 1, 3], [7_000_000, 3]),  # used to end in a segmentation fault under a memory cap
    ([1, 3, 7], [100_000, 100_000]),  # both axes, 1e10 values: just under the tensor limit
    ([3, 100_003, 7], [99_991, 2]),  # many input rows into many bins
]


@pytest.mark.parametrize("type_", ["adaptive_avgpool", "adaptive_maxpool"])
@pytest.mark.parametrize("in_shape, size", HUGE, ids=[f"{s[0]}x{s[1]}" for _, s in HUGE])
def test_a_huge_adaptive_pool_compiles_small_and_fast(type_, in_shape, size, tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(f"input: {in_shape}\nlayers:\n  - {type_}: {size}\n")
    out = tmp_path / "m.onnx"
    with hard_limit(10):  # was 10 s for [1, 100000], unbounded beyond
        assert main(["check", str(tmp_path / "s.yaml"), "-q"]) == 0
        assert main(["compile", str(tmp_path / "s.yaml"), "-o", str(out)]) == 0
    capsys.readouterr()
    assert out.stat().st_size < 8_000  # was 60 MB for [1, 100000]
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert len(model.graph.node) <= NODES_PER_LAYER


def _zeros(figures) -> dict:
    """A node's weights as zeros, which cost nothing to make (fc6's 37 M seeded draws took a second):
    what a layer lowers to does not depend on its weights' values."""
    return {w.key(figures.node.name): np.zeros(w.shape, np.float32)
            for w in figures.node.layer.weights(*figures.input_shapes)}


def _lowered_size(text: str) -> tuple[int, int]:
    """(ONNX nodes, constant elements) that the layer named `t` lowers to; its weights aside."""
    a = analyse_text(text, "t.yaml")
    model = lower(a, _zeros).model  # the weights stay outside the model
    nodes = sum(1 for n in model.graph.node if n.name == "t" or n.name.startswith("t/"))
    constants = sum(int(np.prod(c.dims)) for c in model.graph.initializer if c.name.startswith("t/"))
    return nodes, constants


def _scaled(in_shape, by: int):
    """The same input with its height and width multiplied (a [features] input as it is)."""
    return [in_shape[0], in_shape[1] * by, in_shape[2] * by] if len(in_shape) == 3 else list(in_shape)


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_no_lowering_grows_with_the_input(row):
    """Every layer type (adaptive pooling included): the same nodes and constants at 37x the size."""
    _, type_, args, in_shape = row[:4]
    small = _lowered_size(single_spec(type_, args, in_shape))
    assert small[0] <= NODES_PER_LAYER and small[1] <= CONSTANTS_PER_LAYER
    assert _lowered_size(single_spec(type_, args, _scaled(in_shape, 37))) == small


@pytest.mark.parametrize("row", MERGE_ROWS, ids=[r[0] for r in MERGE_ROWS])
def test_merges_lower_to_a_node_per_input_at_most(row):
    """One n-ary node (Concat), or a chain of binary ones (Add, Mul): never more nodes than inputs,
    whose number the node budget already bounds, and no constants."""
    _, type_, args, shapes = row[:4]
    nodes, constants = _lowered_size(merge_spec(type_, args, shapes))
    assert 1 <= nodes <= max(1, len(shapes) - 1) and constants == 0


def test_every_layer_type_is_held_to_the_bound():
    assert set(REGISTRY) == {r[1] for r in ROWS} | {r[1] for r in MERGE_ROWS}


@pytest.mark.parametrize("type_", ["adaptive_avgpool", "adaptive_maxpool"])
def test_adaptive_lowering_does_not_grow_with_the_bins(type_):
    sizes = {_lowered_size(single_spec(type_, out, shape))
             for shape, out in [((1, 7, 10), [3, 7]), ((1, 10, 7), [7, 3]), ((1, 3, 5), [1000, 999]),
                                ((1, 1, 3), [70_000, 100_000]), ((1, 1000, 999), [3, 7])]}
    assert len(sizes) == 1, sizes  # every non-uniform case: the same graph, whatever the sizes
    (nodes, constants), = sizes
    assert nodes <= NODES_PER_LAYER and constants <= CONSTANTS_PER_LAYER


# -- exactness against PyTorch's adaptive pooling -----------------------------------------------

# (input [C, H, W], output [h, w]): non-uniform bins (overlapping, of two lengths), more bins than
# inputs, one axis uniform and the other not, and long axes where a bin's start needs n/o exactly.
EXACT = [
    ((3, 1, 3), [1, 1000]), ((2, 10, 10), [7, 7]), ((2, 7, 7), [3, 3]), ((2, 3, 4), [5, 6]),
    ((2, 8, 10), [4, 3]), ((2, 10, 8), [3, 4]), ((1, 1, 1), [2, 3]), ((2, 13, 1), [5, 4]),
    ((2, 100, 37), [9, 11]), ((1, 5, 300), [300, 7]), ((2, 1000, 2), [999, 3]), ((1, 2, 4097), [1, 4096]),
    ((2, 11, 11), [10, 12]), ((1, 3, 3), [2, 2]),
]


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("type_", ["adaptive_avgpool", "adaptive_maxpool"])
@pytest.mark.parametrize("in_shape, size", EXACT, ids=[f"{'x'.join(map(str, s))}to{o[0]}x{o[1]}" for s, o in EXACT])
def test_adaptive_pool_matches_pytorch(type_, in_shape, size, torch):
    text = single_spec(type_, size, in_shape)
    a = analyse_text(text, "t.yaml")
    model = lower(a, seeded(a)).to_model()
    x = np.random.default_rng(len(in_shape) + sum(size)).standard_normal((2, *in_shape)).astype(np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    got = ort.InferenceSession(model.SerializeToString(), options,
                               providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    pool = torch.nn.functional.adaptive_avg_pool2d if type_ == "adaptive_avgpool" else \
        torch.nn.functional.adaptive_max_pool2d
    expected = pool(torch.from_numpy(x).double(), tuple(size)).numpy()
    assert got.shape == expected.shape == (2, *a.layers[-1].output_shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_spec_that_extends_may_shrink_its_base_input(tmp_path, capsys):
    (tmp_path / "base.yaml").write_text("input: [3, 9223372036854775807, 9]\nlayers:\n  - relu\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ninput: [3, 8, 8]\n")
    assert main(["check", str(tmp_path / "child.yaml"), "-q"]) == 0
    capsys.readouterr()
