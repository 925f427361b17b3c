"""Follow-ups of the review of issues #11 and #12: each test failed before its fix.

References are PyTorch eager (F.interpolate, ...) or numpy written from the definition; CLI runs go
through tests/clirun.run_cli, which also fails a test on any traceback or internal error.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from clirun import run_cli

torch = pytest.importorskip("torch", reason="torch is the reference: `pip install torch==2.13.0`")
F = torch.nn.functional


def outputs(path, x) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def refused(folder, name: str, text: str) -> str:
    """`convspec check` of the spec `text` written to `folder/name`: invalid (exit 1); its message."""
    (folder / name).write_text(text)
    result = run_cli(folder, "check", name)
    assert result.returncode == 1, result.stderr
    return result.stderr.strip()


@pytest.mark.parametrize("upsample, reference, pad", [
    ("{size: [8, 8]}", dict(size=(8, 8)), 2),  # lowered with sizes
    ("2", dict(scale_factor=2.0), 2),
    ("{scale: 1.7, mode: bilinear}", dict(scale_factor=1.7, mode="bilinear"), 1),  # 6, lowered with scales
])
def test_int8_upsample_feeding_a_concat(tmp_path, upsample, reference, pad):
    """onnxruntime's quantisation pre-processing ignores Resize's `axes`, so an upsample used to
    get a 2-D shape there and a concat with another layer stopped it: 'internal error:
    Incomplete symbolic shape inference'."""
    (tmp_path / "up.yaml").write_text(f"input: [2, 4, 4]\nlayers:\n  - upsample: {upsample}\n    name: u\n"
                                      f"  - pad: {pad}\n    inputs: [input]\n    name: p\n"
                                      "  - concat:\n    inputs: [u, p]\n")
    x = np.random.default_rng(0).uniform(-1, 1, (8, 2, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", input=x)
    result = run_cli(tmp_path, "compile", "up.yaml", "-o", "up.onnx", "--quantize", "int8",
                     "--calibration", "calib.npz")
    assert result.returncode == 0, result.stderr
    t, l, b, r = pad if isinstance(pad, list) else [pad] * 4
    expected = np.concatenate([F.interpolate(torch.from_numpy(x), **reference).numpy(),
                               np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))], axis=1)
    got = outputs(tmp_path / "up.onnx", x)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 2 * 2 / 255  # two steps of an 8-bit scale over [-1, 1]


def test_int8_global_pool_after_instance_norm(tmp_path):
    """Each channel of an instance norm averages to 0, so the global pool's output calibrates to a
    near-zero scale that onnxruntime's QLinearGlobalAveragePool refuses (from a worker thread: the
    comparison run used to end in 'internal error', or a segmentation fault with a batch of 4).
    The pool is kept in float and named."""
    (tmp_path / "inorm.yaml").write_text("input: [3, 8, 8]\nlayers:\n  - instancenorm: null\n"
                                         "  - global_avgpool\n  - flatten\n")
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", input=x)
    result = run_cli(tmp_path, "compile", "inorm.yaml", "-o", "inorm.onnx", "--quantize", "int8",
                     "--calibration", "calib.npz")
    assert result.returncode == 0, result.stderr
    assert "kept in float: global_avgpool1" in result.stdout
    expected = torch.nn.InstanceNorm2d(3)(torch.from_numpy(x)).mean(dim=(2, 3)).numpy()  # zeros, to rounding
    got = outputs(tmp_path / "inorm.onnx", x)
    assert got.shape == (4, 3) and np.abs(got - expected).max() < 2 / 255  # within one step of the input's scale


def test_augment_arguments_not_a_mapping_hint_the_transforms_own_argument(tmp_path):
    """`pad: 4` used to be told 'like {p: 0.5}', an argument pad does not have."""
    text = ("input: [3, 16, 16]\nlayers: [flatten]\naugment:\n  transforms:\n"
            "    - pad: 4\n    - center_crop: {size: 16}\n")
    assert refused(tmp_path, "a.yaml", text) == \
        "a.yaml:5:7: error: the arguments of 'pad' must be a mapping, like {padding: 4}; got 4"


def test_diagram_too_large_with_collapse_does_not_suggest_collapse(tmp_path, monkeypatch):
    """A plain stack has no blocks, so collapsed it is as large: the error used to suggest
    --collapse to a user who had just passed it. (The pixel limit is lowered to keep this fast.)"""
    import compiler.diagram_png

    monkeypatch.setattr(compiler.diagram_png, "MAX_PIXELS", 10_000)
    (tmp_path / "deep.yaml").write_text("input: [8, 4, 4]\nlayers:\n" + "  - relu\n" * 3)
    plain = run_cli(tmp_path, "diagram", "deep.yaml", "-o", "deep.png")
    collapsed = run_cli(tmp_path, "diagram", "deep.yaml", "-o", "deep.png", "--collapse")
    assert plain.returncode == collapsed.returncode == 2
    assert plain.stderr.rstrip().endswith("write an .svg instead, or pass --collapse for one box per block")
    assert collapsed.stderr.rstrip().endswith("too large to draw; write an .svg instead")
    assert not (tmp_path / "deep.png").exists()


@pytest.mark.parametrize("layer, message", [
    # used to be 'internal error: OverflowError: cannot convert float infinity to integer'
    ("upsample: {scale: 1.0e300}", "argument 'scale' is 1e+300, beyond the float32 range the model computes in "
                                   "(at most 3.403e+38); is it a typo?"),
    # used to compile with an inf pad value, and numpy's 'overflow encountered in cast' on stderr
    ("pad: {padding: 1, value: 1.0e300}", "argument 'value' is 1e+300, beyond the float32 range the model "
                                          "computes in (at most 3.403e+38); is it a typo?"),
    # used to compile with eps = inf: every output 0
    ("layernorm: {eps: 1.0e300}", "argument 'eps' is 1e+300, beyond the float32 range the model computes in "
                                  "(at most 3.403e+38); is it a typo?"),
    # used to suggest `size: [2000000000000000039769249677312, ...]`
    ("upsample: {scale: 1.0e30}", "the output would be [2e+30, 2e+30] from [2, 2], beyond what ONNX Runtime "
                                  "can compute with; use a smaller scale"),
])
def test_float_arguments_beyond_float32(tmp_path, layer, message):
    (tmp_path / "big.yaml").write_text(f"input: [4, 2, 2]\nlayers:\n  - {layer}\n")
    result = run_cli(tmp_path, "check", "big.yaml")
    assert result.returncode == 1
    assert result.stderr.startswith("big.yaml:3:"), result.stderr
    assert result.stderr.rstrip().endswith(message), result.stderr


@pytest.mark.parametrize("source, message", [
    ("top", "layer 'b1': 'top' has 2 outputs; name the one this layer takes in `inputs:` (top.0, top.1)"),
    ("top.7", "layer 'b1': 'top.7' names output 7 of 'top', which has 2 outputs: top.0, top.1"),
])
def test_block_reading_in_channels_of_a_split(tmp_path, source, message):
    """A block whose `in.channels` reads a split's bare name used to be told that the split 'is
    defined after this point'; the error is the reference's own, at its line."""
    (tmp_path / "s.yaml").write_text(
        "input: [8, 4, 4]\nblocks:\n  b:\n    layers:\n      - conv: {filters: \"${in.channels}\", kernel: 1}\n"
        f"layers:\n  - split: [4, 4]\n    name: top\n  - b:\n    inputs: [{source}]\n")
    result = run_cli(tmp_path, "check", "s.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == f"s.yaml:10:14: error: {message}"


@pytest.mark.parametrize("layer", ["chunk: 16262781", "split: [" + ", ".join(["1"] * 1025) + "]"])
def test_a_split_into_millions_of_values_is_refused_at_once(tmp_path, layer):
    """Found by the fuzzer: a six-line spec with `chunk: 16262781` took 16 s and 1.9 GB before its
    error, wiring one name per value."""
    (tmp_path / "c.yaml").write_text(f"input: [14]\nlayers:\n  - {layer}\n    name: c\n  - relu:\n    inputs: c.1\n")
    result = run_cli(tmp_path, "check", "c.yaml", timeout=5)
    assert result.returncode == 1
    what = "'chunks' of chunk must be an integer from 2 to 1,024" if "chunk" in layer else \
        "'sizes' of split must be a list of 2 to 1,024 positive integers"
    assert result.stderr.startswith("c.yaml:3:") and what in result.stderr, result.stderr


AUGMENTED = "input: [3, 16, 16]\nlayers: [flatten]\naugment:\n  transforms: [hflip]\n"


def test_augment_refuses_raw_input(tmp_path):
    """`compile --augment --raw-input` used to write the augmentation graph, --raw-input ignored."""
    (tmp_path / "a.yaml").write_text(AUGMENTED)
    result = run_cli(tmp_path, "compile", "a.yaml", "--augment", "--raw-input", "-o", "a.onnx")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --raw-input is for the network; the augmentation graph takes images "
                                     "[N, C, H, W] with pixels in [0, 1]")
    assert not (tmp_path / "a.onnx").exists()


def test_augment_preview_writes_png_only(tmp_path):
    """`augment preview -o grid.jpg` used to write PNG bytes under a .jpg name."""
    from PIL import Image

    (tmp_path / "a.yaml").write_text(AUGMENTED)
    Image.new("RGB", (20, 20), "red").save(tmp_path / "img.png")
    result = run_cli(tmp_path, "augment", "preview", "a.yaml", "img.png", "-n", "2", "-o", "grid.jpg")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: grid.jpg: the grid is written as PNG; end the name with .png"
    assert not (tmp_path / "grid.jpg").exists()


def test_onnx_member_whose_output_is_not_per_input(tmp_path):
    """A member whose output is a weight (no batch axis) used to be taken with its first axis, 192,
    as the batch: a batch of 1 came out as 192 rows."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((192, 5), np.float32), "W")
    graph = helper.make_graph([], "constant", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("W", TensorProto.FLOAT, [192, 5])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    onnx.save(model, tmp_path / "constant.onnx")
    assert refused(tmp_path, "e.yaml", "ensemble: {members: [constant.onnx, lenet5]}\n") == (
        "e.yaml:1:22: error: the output 'W' of 'constant.onnx' is [192, 5], whose first axis is not the batch of its "
        "input ['?', 3, 8, 8]; an ensemble member gives one output per input")


def test_preprocess_mean_of_a_grey_input(tmp_path):
    """The message used to say 'so give 1 (or 1 for all)'."""
    text = "input: [1, 16, 16]\npreprocess: {mean: [0.5, 0.5, 0.5]}\nlayers: [flatten]\n"
    assert refused(tmp_path, "g.yaml", text) == \
        "g.yaml:2:20: error: 'preprocess.mean' has 3 values; the input has 1 channel, so give 1"


def test_expected_output_of_a_split_shows_its_values(tmp_path):
    """A split's expectation used to report its input's shape as its output ('output is [8, 4, 4]')."""
    text = "input: [8, 4, 4]\nlayers:\n  - split: [3, 5]\n    name: s\n    expect: {output: [3, 4, 4]}\n"
    assert refused(tmp_path, "s.yaml", text) == (
        "s.yaml:5:22: error: layer 's': expect failed: output is [3, 4, 4] + [5, 4, 4], the spec expects [3, 4, 4]; "
        "fix the layer's arguments, or the expectation if it is the one that is wrong")


def test_extending_a_wrapper_spec(tmp_path):
    """`extends:` of an ensemble or a multi-crop used to be 'internal error: KeyError'."""
    import json

    (tmp_path / "center.yaml").write_text("extends: alexnet_10crop\nset:\n  multicrop/crops: center\n")
    (tmp_path / "more.yaml").write_text("extends: alexnet_10crop\nappend: [softmax]\n")
    report = json.loads(run_cli(tmp_path, "summary", "center.yaml", "--format", "json").stdout)
    # torchvision's AlexNet: 61,100,840 params, 714,188,480 MACs at 224x224; one crop
    assert (report["params"]["total"], report["macs"]) == (61_100_840, 714_188_480)
    result = run_cli(tmp_path, "check", "more.yaml")
    assert result.returncode == 1
    assert result.stderr.strip() == ("more.yaml:2:1: error: 'append' changes the base's layers, and the base has "
                                     "none (its network is made of other specs); change it with `set:` or its own "
                                     "keys")


def test_int8_ensemble_of_an_int8_member(tmp_path):
    """Quantising an ensemble whose member is already int8 used to end in onnxruntime's 'two nodes
    with same node name' from inside the quantiser: an internal error."""
    assert run_cli(tmp_path, "compile", "lenet5", "-o", "int8.onnx", "--quantize", "int8").returncode == 0
    (tmp_path / "e.yaml").write_text("ensemble: {members: [int8.onnx, lenet5]}\n")
    result = run_cli(tmp_path, "compile", "e.yaml", "-o", "e.onnx", "--quantize", "int8")
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith(
        "error: the model is already partly int8 (node 'int8.model/c1.bias_DequantizeLinear': an ensemble member "
        "compiled with --quantize?); quantise its float32 members, or compile without --quantize")
    assert not (tmp_path / "e.onnx").exists()


def test_fp16_onnx_member_counts_its_weights(tmp_path):
    """An fp16 model as an ensemble member used to count 0 params (only float32 weights counted)."""
    import json

    assert run_cli(tmp_path, "compile", "lenet5", "-o", "half.onnx", "--precision", "fp16").returncode == 0
    (tmp_path / "e.yaml").write_text("ensemble: {members: [half.onnx, lenet5]}\n")
    report = json.loads(run_cli(tmp_path, "summary", "e.yaml", "--format", "json").stdout)
    # LeNet-5's conv and dense weights and biases, 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706, twice
    assert report["params"]["total"] == 2 * 61_706


def test_extended_ensemble_reads_its_members_beside_itself(tmp_path):
    """A base ensemble in a sub-folder names its members relative to itself, not to the child."""
    import json

    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "small.yaml").write_text("input: [1, 32, 32]\nlayers:\n  - flatten\n  - dense: 10\n")
    (tmp_path / "nets" / "base.yaml").write_text("ensemble: {members: [small.yaml, lenet5]}\n")
    (tmp_path / "child.yaml").write_text("extends: nets/base.yaml\nset:\n  ensemble/members/1: lenet5\n")
    report = json.loads(run_cli(tmp_path, "summary", "child.yaml", "--format", "json").stdout)
    # a 1024 -> 10 dense layer (10,250) and LeNet-5 (61,706)
    assert report["params"]["total"] == 1024 * 10 + 10 + 61_706


def test_weights_for_a_nested_member(tmp_path):
    """`--weights inner.lenet5=FILE` on an ensemble of an ensemble used to say 'no such file'."""
    (tmp_path / "inner.yaml").write_text("ensemble: {members: [lenet5, {spec: lenet5, name: b}]}\n")
    (tmp_path / "outer.yaml").write_text("ensemble: {members: [inner.yaml, lenet5]}\n")
    np.savez(tmp_path / "w.npz", x=np.zeros(1, np.float32))
    result = run_cli(tmp_path, "compile", "outer.yaml", "-o", "o.onnx", "--weights", "inner.lenet5=w.npz")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --weights inner.lenet5=w.npz: 'outer' has no member 'inner.lenet5'; its "
                                     "members are inner, lenet5; give 'inner' a file keyed by its own names "
                                     "(lenet5.*)")


def test_compiled_member_brings_its_flops(tmp_path):
    """A compiled .onnx member counted its MACs (from the model's metadata) but 0 FLOPs."""
    import json

    assert run_cli(tmp_path, "compile", "lenet5", "-o", "l5.onnx").returncode == 0
    (tmp_path / "e.yaml").write_text("ensemble: {members: [l5.onnx, lenet5]}\n")
    report = json.loads(run_cli(tmp_path, "summary", "e.yaml", "--format", "json").stdout)
    member = next(row for row in report["layers"] if row["name"] == "l5.model")
    # LeNet-5's 416,520 multiply-accumulates, each two FLOPs, plus its biases and activations
    assert member["macs"] == 416_520 and member["flops"] > 2 * 416_520


def test_int8_when_onnxruntime_shape_inference_gives_up(tmp_path, monkeypatch):
    """onnxruntime's pre-processing, when its symbolic shape inference fails, raised through as an
    internal error and left sym_shape_infer_temp.onnx and a <uuid>.data in the user's folder.
    The model is now quantised without pre-processing, and the folder stays clean."""
    import onnxruntime.quantization

    def failing(model_in, model_out, **kwargs):  # what onnxruntime 1.31 does on such a graph
        with open("sym_shape_infer_temp.onnx", "wb") as f:
            f.write(b"")
        raise Exception("Incomplete symbolic shape inference")

    monkeypatch.setattr(onnxruntime.quantization, "quant_pre_process", failing)
    (tmp_path / "net.yaml").write_text("input: [2, 4, 4]\nlayers:\n  - pad: 1\n")
    x = np.random.default_rng(0).uniform(-1, 1, (8, 2, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", input=x)
    result = run_cli(tmp_path, "compile", "net.yaml", "-o", "net.onnx", "--quantize", "int8", "--calibration",
                     "calib.npz")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npz", "net.onnx", "net.yaml"]
    expected = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))  # F.pad's zeros
    assert np.abs(outputs(tmp_path / "net.onnx", x) - expected).max() < 2 / 255
