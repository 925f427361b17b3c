"""`compile --quantize int8`: a QDQ model with per-channel weight scales that agrees with fp32.

On LeNet-5 (about a second per quantisation). The agreement is asserted independently of the
figures the compiler reports: both models are run here on the same inputs.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from clirun import run_cli

SHAPE = (1, 32, 32)  # lenet5's input


def calibration(seed: int = 0, n: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE), dtype=np.float32)


def outputs(path, x) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def metadata(model) -> dict:
    return {p.key: p.value for p in model.metadata_props}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """fp32, int8 calibrated on an .npz, and int8 calibrated on generated data, with their CLI results."""
    folder = tmp_path_factory.mktemp("int8")
    np.savez(folder / "calib.npz", input=calibration())
    results = {
        "fp32": run_cli(folder, "compile", "lenet5", "-o", "fp32.onnx"),
        "npz": run_cli(folder, "compile", "lenet5", "-o", "npz.onnx", "--quantize", "int8",
                       "--calibration", "calib.npz"),
        "generated": run_cli(folder, "compile", "lenet5", "-o", "generated.onnx", "--quantize", "int8"),
    }
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
    return folder, results


@pytest.mark.parametrize("kind", ["npz", "generated"])
def test_model_is_qdq_with_per_channel_weights(models, kind):
    folder, _ = models
    model = onnx.load(folder / f"{kind}.onnx")
    onnx.checker.check_model(model)
    assert model.ir_version <= 13  # what onnxruntime 1.31 reads
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 21)]
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    initializers = {t.name: t for t in model.graph.initializer}
    conv_weights = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] in conv_weights]
    assert len(per_channel) == 3  # lenet5's three convolutions
    for node in per_channel:
        weight, scale = initializers[node.input[0]], initializers[node.input[1]]
        assert weight.data_type == onnx.TensorProto.INT8
        assert {a.name: a.i for a in node.attribute}.get("axis", 1) == 0
        assert list(scale.dims) == [weight.dims[0]]  # one scale per output channel


@pytest.mark.parametrize("kind, source", [("npz", "calib.npz"), ("generated", "generated:0")])
def test_metadata_holds_the_figures(models, kind, source):
    folder, results = models
    meta = metadata(onnx.load(folder / f"{kind}.onnx"))
    figures = json.loads(meta["convspec.quantization"])
    assert figures["calibration"] == source
    assert figures["samples"] == (16 if kind == "npz" else 32)
    assert figures["cosine"] >= 0.99 and figures["top1_agreement"] >= 0.9
    assert 0 <= figures["max_relative_error"] < 0.1
    assert meta["convspec.spec"] == "lenet5"  # the fp32 model's metadata travels along
    assert f"{figures['samples']} samples, {source}): cosine {figures['cosine']:.4f}" in results[kind].stdout


def test_agrees_with_fp32_on_the_calibration_set(models):
    folder, _ = models
    x = calibration()
    want, got = outputs(folder / "fp32.onnx", x), outputs(folder / "npz.onnx", x)
    cosines = (want * got).sum(1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1))
    assert cosines.min() >= 0.99
    assert (want.argmax(1) == got.argmax(1)).mean() >= 0.9


def test_generated_calibration_warns_and_npz_does_not(models):
    _, results = models
    assert "random noise" in results["generated"].stderr and "accuracy on real data is unknown" in results["generated"].stderr
    assert "warning" not in results["npz"].stderr


def test_runs_through_convspec_run(models):
    folder, _ = models
    result = run_cli(folder, "run", "npz.onnx", "--device", "cpu")
    assert result.returncode == 0, result.stderr


def test_a_folder_of_images(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(tmp_path / "images" / f"{k}.png")
    (tmp_path / "images" / "notes.txt").write_text("not an image, not read")
    result = run_cli(tmp_path, "compile", "lenet5", "-o", "m.onnx", "--quantize", "int8", "--calibration", "images")
    assert result.returncode == 0, result.stderr
    figures = json.loads(metadata(onnx.load(tmp_path / "m.onnx"))["convspec.quantization"])
    assert (figures["calibration"], figures["samples"]) == ("images", 4)


def test_same_inputs_give_the_same_bytes(models, tmp_path):
    folder, _ = models
    result = run_cli(tmp_path, "compile", "lenet5", "-o", "again.onnx", "--quantize", "int8")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "again.onnx").read_bytes() == (folder / "generated.onnx").read_bytes()


def _bad_inputs(tmp_path):
    np.savez(tmp_path / "wrong.npz", input=np.zeros((4, 3, 32, 32), np.float32))
    np.savez(tmp_path / "nan.npz", input=np.full((2, *SHAPE), np.nan, np.float32))
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)


@pytest.mark.parametrize("args, code, message", [
    (["--calibration", "wrong.npz"], 1, "wrong.npz: input shape [4, 3, 32, 32] does not fit the model; "
                                        "it expects [batch, 1, 32, 32]"),
    (["--calibration", "nan.npz"], 1, "nan.npz: NaN or Inf inputs cannot calibrate int8 scales"),
    (["--calibration", "empty"], 2, "empty: the folder has no images"),
    (["--calibration", "broken"], 2, "a.png: cannot read the image"),
    (["--calibration", "missing.npz"], 2, "missing.npz: no such file"),
])
def test_bad_calibration_is_one_line(tmp_path, args, code, message):
    _bad_inputs(tmp_path)
    result = run_cli(tmp_path, "compile", "lenet5", "-o", "m.onnx", "--quantize", "int8", *args)
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_calibration_without_quantize_is_a_usage_error(tmp_path):
    np.savez(tmp_path / "calib.npz", input=calibration())
    result = run_cli(tmp_path, "compile", "lenet5", "-o", "m.onnx", "--calibration", "calib.npz")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --calibration is for --quantize int8"


def test_int8_and_fp16_exclude_each_other(tmp_path):
    result = run_cli(tmp_path, "compile", "lenet5", "-o", "m.onnx", "--quantize", "int8", "--precision", "fp16")
    assert (result.returncode, result.stderr.strip()) == (
        2, "error: --quantize int8 and --precision fp16 exclude each other; choose one")
    assert not (tmp_path / "m.onnx").exists()
