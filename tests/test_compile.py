"""Compile to ONNX and run on onnxruntime: every bundled spec, weights in and out, the CLI.

Independent oracles: onnx.checker, onnx.shape_inference (against our own shapes), and
onnx.reference.ReferenceEvaluator (against onnxruntime) for whole small networks. Per-layer
numeric parity with numpy references is in test_numeric.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

from compiler import build
from compiler.build import compile_spec, save
from compiler.errors import LoweringError, SpecError, UsageError
from compiler.ir import output_values
from compiler.lower import lower
from compiler.pipeline import analyse, analyse_text
from compiler.weights import seeded
from compiler.zoo import bundled
from clirun import run_cli
from reference import NOT_IN_TORCHVISION, REFERENCE
from weightfiles import write_safetensors

ROOT = Path(__file__).resolve().parent.parent


def session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def static_dims(value) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]


def weightless(lowered) -> onnx.ModelProto:
    """The graph with each weight declared by its shape alone: all that shape inference needs."""
    model = onnx.ModelProto()
    model.CopyFrom(lowered.model)
    model.graph.input.extend(onnx.helper.make_tensor_value_info(key, onnx.TensorProto.FLOAT, array.shape)
                             for key, array in lowered.weights)
    return model


def assert_sound(a, lowered, out: str) -> None:
    """The written model passes onnx's checker, and onnx's own shape inference agrees with ours on
    every node's output, with the batch axis left free. test_torchvision_parity.py runs this too."""
    onnx.checker.check_model(out, full_check=True)  # from the file, without another copy in memory
    assert lowered.model.ir_version <= 13 and lowered.model.opset_import[0].version == 21

    inferred = onnx.shape_inference.infer_shapes(weightless(lowered), strict_mode=True)
    known = {v.name: static_dims(v) for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    crops = a.graph.nodes[0].type == "crops"  # a multi-crop's network runs on a batch of crops, a multiple
    for f in a.layers:  # a split's or chunk's outputs are the values node.0, node.1...
        for value, shape in zip(output_values(f.node), f.output_shapes):
            assert known[value][1:] == list(shape), value
            assert known[value][0] == "batch" or crops, value


# The torchvision-named specs get the checks below in their parity test, on their compile from
# torchvision's weights, when torch and torchvision are installed: the graph is the same, and
# compiling a VGG twice would add minutes to the suite for nothing.
TORCH = all(importlib.util.find_spec(m) for m in ("torch", "torchvision"))
PARITY = {name for name in REFERENCE if name not in NOT_IN_TORCHVISION} if TORCH else set()


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in bundled() if p.stem not in PARITY], ids=lambda p: p.stem)
def test_bundled_spec_compiles_checks_and_runs(tmp_path, path):
    a = analyse(str(path))
    lowered = compile_spec(a, seed=0)
    (out,) = save(lowered, str(tmp_path / "m.onnx"))  # the streamed writer of `convspec compile`
    assert_sound(a, lowered, out)
    s = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    for batch in (1, 2):  # the batch axis is dynamic
        x = np.random.default_rng(batch).standard_normal((batch, *a.graph.input_shape), dtype=np.float32)
        outputs = s.run(None, {"input": x})
        for y, shape in zip(outputs, a.output_shapes):
            assert y.shape == (batch, *shape)
            assert np.isfinite(y).all()


@pytest.mark.parametrize("name", ["lenet5", "inception_cost", "cs231n_conv_example"])
def test_onnxruntime_agrees_with_the_onnx_reference_evaluator(name):
    a = analyse(name)
    model = compile_spec(a, seed=3).to_model()
    x = np.random.default_rng(0).standard_normal((2, *a.graph.input_shape), dtype=np.float32)
    expected = ReferenceEvaluator(model).run(None, {"input": x})
    got = session(model).run(None, {"input": x})
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_same_spec_and_seed_give_the_same_bytes():
    a = analyse("resnet56_cifar")  # convolutions, BatchNorm and a dense layer, in 0.9 M weights
    first = compile_spec(a, seed=7).to_model().SerializeToString()
    assert compile_spec(analyse("resnet56_cifar"), seed=7).to_model().SerializeToString() == first
    assert compile_spec(a, seed=8).to_model().SerializeToString() != first


def test_value_names_follow_node_names_and_batch_is_dynamic():
    a = analyse("resnet18")
    model = compile_spec(a).to_model()
    produced = {out for node in model.graph.node for out in node.output}
    assert {f.node.name for f in a.layers} <= produced
    assert static_dims(model.graph.input[0]) == ["batch", 3, 224, 224]
    assert [o.name for o in model.graph.output] == ["fc"]
    assert {i.name for i in model.graph.initializer} >= {"conv1.weight", "layer1.0.bn1.running_var", "fc.bias"}


def test_metadata():
    a = analyse("lenet5")
    meta = {p.key: p.value for p in compile_spec(a, seed=1).to_model().metadata_props}
    assert meta["convspec.spec"] == "lenet5"
    assert meta["convspec.spec_sha256"] == hashlib.sha256((ROOT / "specs" / "lenet5.yaml").read_bytes()).hexdigest()
    assert meta["convspec.params"] == "61706"
    assert meta["convspec.macs"] == "416520"
    assert meta["convspec.weights"] == "seeded:1"
    # the package's version as pyproject.toml declares it
    declared = re.search(r'^version = "(.*)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert meta["convspec.version"] == declared == "0.1.0"


def test_initialisation_schemes():
    """He for ReLU networks (normal, std sqrt(2/fan_in)), Glorot for tanh ones (uniform on
    +-sqrt(6/(fan_in+fan_out))). With n = 147,456 draws the sample std is within 0.19 % (one
    standard error, 1/sqrt(2n)) of the true one, so the 1 % bounds below are five standard errors."""
    relu = analyse_text("input: [64, 8, 8]\nlayers:\n  - conv: {filters: 256, kernel: 3, activation: relu}\n")
    arrays = seeded(relu, 0)(relu.layers[0])
    w, n = arrays["conv1.weight"].astype(np.float64), 256 * 64 * 9
    assert w.shape == (256, 64, 3, 3) and w.size == n
    he = math.sqrt(2 / (64 * 9))  # fan_in = 64 channels x 3 x 3 = 576: 0.05893
    assert abs(w.std() / he - 1) < 0.01
    assert abs(w.mean()) < 5 * he / math.sqrt(n)
    assert abs(np.mean(np.abs(w) < he) - 0.6827) < 0.006  # normal: 68.27 % within one std
    assert arrays["conv1.bias"].tolist() == [0.0] * 256

    tanh = analyse_text("input: [64, 8, 8]\nlayers:\n  - conv: {filters: 256, kernel: 3, activation: tanh}\n")
    w = seeded(tanh, 0)(tanh.layers[0])["conv1.weight"].astype(np.float64)
    bound = math.sqrt(6 / (64 * 9 + 256 * 9))  # fan_in 576, fan_out 2304: 0.04564
    assert -bound <= w.min() and w.max() <= bound
    assert w.max() > bound * (1 - 10 / n) and w.min() < -bound * (1 - 10 / n)  # the draws reach the ends
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.01  # uniform: std = bound / sqrt(3)

    bn = analyse_text("input: [4, 8, 8]\nlayers:\n  - batchnorm\n")
    arrays = seeded(bn, 0)(bn.layers[0])
    assert {k: v.tolist() for k, v in arrays.items()} == {
        "batchnorm1.weight": [1, 1, 1, 1], "batchnorm1.bias": [0, 0, 0, 0],
        "batchnorm1.running_mean": [0, 0, 0, 0], "batchnorm1.running_var": [1, 1, 1, 1]}


def test_opsets(tmp_path):
    a = analyse("googlenet")
    for opset in (18, 24):
        model = lower(a, seeded(a, 0), opset).to_model()
        assert model.opset_import[0].version == opset and model.ir_version <= 13
        session(model)
    with pytest.raises(LoweringError, match="opset 30 is not supported"):
        lower(a, seeded(a, 0), 30).to_model()


# -- weights files ------------------------------------------------------------------------------
def perturbed_weights(a, seed=5) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for f in a.layers:
        for key, array in seeded(a, 0)(f).items():
            out[key] = (array + rng.standard_normal(array.shape).astype(np.float32) * 0.1).astype(np.float32)
    return out


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_weights_load_by_name(tmp_path, suffix):
    a = analyse("resnet18")
    arrays = perturbed_weights(a)
    path = tmp_path / f"w{suffix}"
    if suffix == ".npz":
        np.savez(path, **arrays)
    else:
        write_safetensors(path, arrays)
    model = compile_spec(a, weights=str(path)).to_model()
    loaded = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name in arrays}
    assert loaded.keys() == arrays.keys()
    for key in arrays:
        np.testing.assert_array_equal(loaded[key], arrays[key])
    assert {p.key: p.value for p in model.metadata_props}["convspec.weights"] == path.name


def test_weight_name_mismatches_are_listed(tmp_path):
    a = analyse("lenet5")
    arrays = perturbed_weights(a)
    del arrays["c1.bias"]
    arrays["c9.weight"] = np.zeros(3, np.float32)
    arrays["f6.weight"] = np.zeros((84, 121), np.float32)
    arrays["bn.num_batches_tracked"] = np.zeros((), np.float32)  # PyTorch's counter: ignored
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(SpecError) as e:
        compile_spec(a, weights=str(tmp_path / "w.npz")).to_model()
    text = str(e.value)
    assert "missing keys (1): c1.bias" in text
    assert "unexpected keys (1): c9.weight" in text
    assert "shape mismatches (1): f6.weight: file [84, 121], spec [84, 120]" in text


def test_unreadable_weights_files(tmp_path):
    a = analyse("lenet5")
    (tmp_path / "w.pkl").write_bytes(b"x")
    with pytest.raises(UsageError, match="unknown weights format"):
        compile_spec(a, weights=str(tmp_path / "w.pkl")).to_model()
    (tmp_path / "w.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00nope!")
    with pytest.raises(UsageError, match="not a .safetensors file"):
        compile_spec(a, weights=str(tmp_path / "w.safetensors")).to_model()


def test_large_models_write_external_data(tmp_path, monkeypatch):
    """Past the threshold (2 GB in real life; lowered here) the weights go to a side file."""
    a = analyse("lenet5")
    model = compile_spec(a, seed=2).to_model()
    x = np.ones((1, 1, 32, 32), np.float32)
    expected = session(model).run(None, {"input": x})[0]
    monkeypatch.setattr(build, "EXTERNAL_THRESHOLD", 1000)
    written = save(compile_spec(a, seed=2), str(tmp_path / "m.onnx"))
    data = tmp_path / f"m.onnx.{hashlib.sha256(Path(written[1]).read_bytes()).hexdigest()[:16]}.data"
    assert written == [str(tmp_path / "m.onnx"), str(data)]  # named after the model and its own bytes
    assert (tmp_path / "m.onnx").stat().st_size < 20_000 < data.stat().st_size
    s = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(s.run(None, {"input": x})[0], expected)


def test_a_model_too_large_for_one_message_runs_from_a_temporary_folder(tmp_path, monkeypatch):
    """Past protobuf's 2 GB (lowered here) `run SPEC` cannot hand onnxruntime one message: the
    model goes to a temporary folder as external data, which is removed once the run is over."""
    import runtime.session

    monkeypatch.setattr(build, "EXTERNAL_THRESHOLD", 1000)
    monkeypatch.setattr(runtime.session, "INLINE_LIMIT", 1000)
    handed, real = [], runtime.session._readable

    def spy(model):
        source, folder = real(model)
        handed.append(source)  # not the folder itself: holding it would keep it alive
        return source, folder

    monkeypatch.setattr(runtime.session, "_readable", spy)
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = cli("run", "lenet5", "--seed", "2", "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
               "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    (source,) = handed
    assert isinstance(source, str) and Path(source).name == "model.onnx"
    assert not Path(source).parent.exists()  # removed with the session
    expected = session(compile_spec(analyse("lenet5"), seed=2).to_model()).run(None, {"input": x})[0]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_export_copies_an_onnx_file_and_its_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "EXTERNAL_THRESHOLD", 1000)
    assert cli("compile", "lenet5", "-o", str(tmp_path / "m.onnx"), "--seed", "2").returncode == 0
    proc = cli("export", "--triton", str(tmp_path / "repo"), str(tmp_path / "m.onnx"), "--name", "net")
    assert proc.returncode == 0, proc.stderr
    version = tmp_path / "repo" / "net" / "1"
    (data,) = tmp_path.glob("m.onnx.*.data")
    assert sorted(p.name for p in version.iterdir()) == [data.name, "model.onnx"]
    assert (version / data.name).read_bytes() == data.read_bytes()
    assert (version / "model.onnx").read_bytes() == (tmp_path / "m.onnx").read_bytes()
    onnx.checker.check_model(str(version / "model.onnx"))
    x = np.ones((1, 1, 32, 32), np.float32)
    original = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    exported = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(exported.run(None, {"input": x})[0], original.run(None, {"input": x})[0])


def test_streamed_file_is_the_same_model(tmp_path):
    """save() writes the weights' wire format itself; onnx reads back exactly the in-memory model."""
    a = analyse("googlenet")
    lowered = compile_spec(a, seed=1)
    save(lowered, str(tmp_path / "g.onnx"))
    back = onnx.load(str(tmp_path / "g.onnx"))
    expected = lowered.to_model()
    assert back.graph.node == expected.graph.node
    assert sorted(back.graph.initializer, key=lambda t: t.name) == sorted(expected.graph.initializer,
                                                                           key=lambda t: t.name)
    assert back.metadata_props == expected.metadata_props and back.ir_version == expected.ir_version
    onnx.checker.check_model(str(tmp_path / "g.onnx"), full_check=True)


# -- the CLI ------------------------------------------------------------------------------------
def cli(*args, cwd=None):
    return run_cli(cwd or Path.cwd(), *args)


def test_cli_compile_run_and_save_outputs(tmp_path):
    out = tmp_path / "lenet5.onnx"
    proc = cli("compile", "lenet5", "-o", str(out), "--seed", "4")
    assert proc.returncode == 0, proc.stderr
    assert "compiling" not in proc.stderr  # no progress bar when stderr is not a terminal
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = cli("run", str(out), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "provider: CPUExecutionProvider"
    expected = session(onnx.load(str(out))).run(None, {"input": x})[0]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    assert "output[1] top-5:" in proc.stdout
    top = int(proc.stdout.splitlines()[0].split(": ")[1].split()[0])
    assert top == int(np.argmax(expected[0]))


def test_cli_run_wrong_input_shape_states_the_expected_one(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 32, 32), np.float32))
    proc = cli("run", "lenet5", "--input", str(tmp_path / "x.npy"), "--device", "cpu")
    assert proc.returncode == 1
    assert "input shape [2, 3, 32, 32] does not fit the model; it expects [batch, 1, 32, 32]" in proc.stderr


def test_cli_run_image_with_preprocess_and_labels(tmp_path):
    from PIL import Image

    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    (tmp_path / "tiny.yaml").write_text(
        "input: [3, 8, 8]\nlabels: labels.txt\n"
        "preprocess: {resize: [8, 8], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}\n"
        "layers:\n  - global_avgpool: {keepdims: false}\n")
    Image.new("RGB", (20, 10), (255, 0, 51)).save(tmp_path / "img.png")
    proc = cli("run", "tiny.yaml", "--input", "img.png", "--device", "cpu", "--top", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # channel means after (x/255 - 0.5)/0.25: red 2.0, green -2.0, blue (0.2 - 0.5)/0.25 = -1.2
    assert proc.stdout.strip() == "global_avgpool1[0] top-2: 0 'cat' 2, 2 'bird' -1.2"


def test_cli_device_cuda_without_cuda_exits_2():
    if "CUDAExecutionProvider" in ort.get_available_providers():
        probe = cli("run", "cs231n_conv_example", "--device", "auto")
        if "provider: CUDAExecutionProvider" in probe.stderr:
            pytest.skip("CUDA works here: this test is for machines without it")
    proc = cli("run", "cs231n_conv_example", "--device", "cuda")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --device cuda: ")
    assert "[E:onnxruntime" not in proc.stderr  # onnxruntime's own log stays out of the way
    auto = cli("run", "cs231n_conv_example")
    assert auto.returncode == 0 and auto.stderr.count("\n") == 1
    assert auto.stderr.startswith("provider: CPUExecutionProvider")


def test_cli_bench_json(tmp_path):
    proc = cli("bench", "lenet5", "--batch", "2", "--runs", "5", "--format", "json", "--device", "cpu",
               "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["provider"] == "CPUExecutionProvider" and result["threads"] == 1 and result["batch"] == 2
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert result["runs"] >= 5
    assert result["gflops_per_s"] == pytest.approx(2 * 416520 * 2 / (lat["p50"] / 1e3) / 1e9)


def test_cli_export_triton(tmp_path):
    proc = cli("export", "--triton", str(tmp_path / "repo"), "googlenet", "--kind", "gpu", "--instances", "2")
    assert proc.returncode == 0, proc.stderr
    config = (tmp_path / "repo" / "googlenet" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config
    assert '{ name: "input", data_type: TYPE_FP32, dims: [ 3, 224, 224 ] }' in config
    assert '{ name: "fc", data_type: TYPE_FP32, dims: [ 1000 ] }' in config
    assert "dynamic_batching" in config and "count: 2, kind: KIND_GPU" in config
    onnx.checker.check_model(str(tmp_path / "repo" / "googlenet" / "1" / "model.onnx"))


def test_cli_compile_errors(tmp_path):
    proc = cli("compile", "lenet5", "-o", str(tmp_path / "m.onnx"), "--opset", "9")
    assert proc.returncode == 2 and "9 is out of range: use an integer from 18 to 24" in proc.stderr
    proc = cli("compile", "lenet5", "-o", str(tmp_path / "m.onnx"), "--weights", str(tmp_path / "none.npz"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = cli("run", str(tmp_path / "missing.onnx"))
    assert proc.returncode == 2 and "missing.onnx: no such file" in proc.stderr


def test_progress_bar_only_on_a_terminal():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    shown = Terminal()
    bar = build.Progress("compiling x", delay=0, stream=shown)
    bar(5, 10)
    bar.close()
    assert shown.getvalue() == "\rcompiling x [" + "#" * 15 + "." * 15 + "] 5/10 layers\n"
    piped = io.StringIO()
    bar = build.Progress("compiling x", delay=0, stream=piped)
    bar(5, 10)
    bar.close()
    assert piped.getvalue() == ""


@pytest.mark.parametrize("op", ["maxpool", "avgpool", "l2pool"])
def test_ceil_mode_pooling_agrees_with_onnx_shape_inference(op):
    """PyTorch drops a last ceil-mode window that starts in the end padding (5, k2 s2 pad 1 -> 3);
    ONNX's ceil formula would keep it. The lowering writes such windows as explicit padding, so
    onnx's strict shape inference and onnxruntime agree with our shapes."""
    for n in range(3, 10):
        for k in (2, 3):
            for s in (1, 2, 3):
                for p in range(k // 2 + 1):
                    a = analyse_text(f"input: [1, {n}, {n}]\nlayers:\n"
                                     f"  - {op}: {{kernel: {k}, stride: {s}, padding: {p}, ceil_mode: true}}\n")
                    model = compile_spec(a).to_model()
                    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
                    assert static_dims(inferred.graph.output[0])[2:] == list(a.layers[0].output_shape[1:])


@pytest.mark.parametrize("args, message", [
    (["run", "lenet5", "--batch", "-1"], "out of range"),
    (["bench", "lenet5", "--threads", "100000"], "out of range"),
    (["bench", "lenet5", "--runs", "0"], "out of range"),
    (["run", "lenet5", "--top", "0"], "out of range"),
    (["compile", "lenet5", "-o", "x.onnx", "--seed", "-1"], "out of range"),
])
def test_cli_refuses_bad_counts(tmp_path, args, message):
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr


def test_cli_run_bad_input_files(tmp_path):
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    (tmp_path / "t.npz").write_text("not a zip")
    np.savez(tmp_path / "two.npz", a=np.zeros((1, 32, 32)), b=np.zeros((1, 32, 32)))
    for name, message in (("s.npy", "its values are <U1"), ("t.npz", "not a readable .npz file"),
                          ("two.npz", "holds 2 arrays (a, b); name the one to feed 'input'")):
        proc = cli("run", "lenet5", "--input", str(tmp_path / name), "--device", "cpu")
        assert proc.returncode in (1, 2) and message in proc.stderr, proc.stderr
        assert "internal error" not in proc.stderr


def test_foreign_models(tmp_path):
    """Models convspec did not write: a fixed batch, dynamic sizes, an integer input."""
    from onnx import TensorProto, helper

    def model(dims, elem=TensorProto.FLOAT):
        x = helper.make_tensor_value_info("x", elem, dims)
        y = helper.make_tensor_value_info("y", elem, dims)
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)

    onnx.save(model([1, 3, 4, 4]), tmp_path / "fixed.onnx")
    onnx.save(model(["n", 3, "h", "w"]), tmp_path / "dynamic.onnx")
    onnx.save(model(["n", 3], TensorProto.INT64), tmp_path / "int.onnx")
    proc = cli("run", str(tmp_path / "fixed.onnx"), "--batch", "2")
    assert proc.returncode == 1 and "batch size is fixed at 1; use --batch 1" in proc.stderr
    assert cli("run", str(tmp_path / "fixed.onnx")).returncode == 0
    proc = cli("run", str(tmp_path / "dynamic.onnx"))
    assert proc.returncode == 1 and "dynamic sizes" in proc.stderr and "pass --input" in proc.stderr
    np.save(tmp_path / "x.npy", np.ones((2, 3, 5, 6), np.float32))
    assert cli("run", str(tmp_path / "dynamic.onnx"), "--input", str(tmp_path / "x.npy")).returncode == 0
    proc = cli("run", str(tmp_path / "int.onnx"))
    assert proc.returncode == 1 and "not float32" in proc.stderr
    proc = cli("export", str(tmp_path / "dynamic.onnx"), "--triton", str(tmp_path / "repo"), "--name", "dyn")
    config = (tmp_path / "repo" / "dyn" / "config.pbtxt").read_text()
    assert "dims: [ 3, -1, -1 ]" in config and "max_batch_size: 64" in config
    cli("export", str(tmp_path / "fixed.onnx"), "--triton", str(tmp_path / "repo"), "--name", "fixed")
    config = (tmp_path / "repo" / "fixed" / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in config and "dims: [ 1, 3, 4, 4 ]" in config and "dynamic_batching" not in config
    proc = cli("export", "lenet5", "--triton", str(tmp_path / "repo"), "--name", "../escape")
    assert proc.returncode == 2 and "cannot name a Triton model" in proc.stderr
    assert not (tmp_path / "escape").exists()


def test_bfloat16_safetensors_load_as_float32(tmp_path):
    import json

    from compiler.weights import read_weights

    values = np.array([1.0, -2.5, 0.15625, 2.0 ** 100], np.float32)  # exact in bfloat16: the low 16 bits are zero
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, len(raw)]}}).encode()
    (tmp_path / "w.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + raw)
    stored = read_weights(str(tmp_path / "w.safetensors"))["w"]
    assert (stored.shape, stored.dtype) == ((2, 2), np.float32)
    np.testing.assert_array_equal(stored.load(), values.reshape(2, 2))
