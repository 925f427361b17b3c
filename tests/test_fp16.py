"""fp16 models, the CUDA libraries' preload and provider line, and bench's I/O-binding path.

No GPU is needed: an fp16 model also runs on onnxruntime's CPU provider (which casts around the
float16 kernels it lacks), the preload is tested with onnxruntime's functions replaced, and the
I/O binding binds to 'cpu' exactly as it binds to 'cuda'.

Tolerance: float16 keeps 11 significant bits, a relative rounding error of 2^-11 (4.9e-4) each
time a weight or a layer's output is stored, and these errors add up over the depth of the net
(onnxruntime also folds BatchNorm into the float16 conv weights). Measured against fp32, as the
largest difference over the largest |output|: lenet5 6e-4, resnet18 4e-4, googlenet 8.5e-3
(57 convolutions). RTOL = 2e-2 leaves googlenet a margin of two; a wrong cast or a weight stored
as float32 bytes read as float16 is off by orders of magnitude.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from clirun import run_cli
from compiler.build import compile_spec, save
from compiler.half import half
from compiler.pipeline import analyse
from runtime import session as rs
from runtime.bench import benchmark, measure
from runtime.model import read_model

RTOL = 2e-2


def cli(*args):
    return run_cli(Path.cwd(), *args)


def _pair(tmp_path, name):
    """The spec compiled in fp32 and fp16 with the same seed: (fp32 path, fp16 path)."""
    analysis = analyse(name)
    paths = []
    for precision in ("fp32", "fp16"):
        path = tmp_path / f"{name}.{precision}.onnx"
        save(compile_spec(analysis, seed=3, precision=precision), str(path))
        paths.append(path)
    return paths


def _run(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})


def _agree(tmp_path, name, batch=2):
    fp32, fp16 = _pair(tmp_path, name)
    shape = analyse(name).graph.input_shape
    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    for want, got in zip(_run(fp32, x), _run(fp16, x)):
        assert got.dtype == np.float32  # keep_io_types: the outputs stay float32
        err = np.abs(got.astype(np.float64) - want).max()
        assert err <= RTOL * np.abs(want).max(), (name, err, np.abs(want).max())
    return fp32, fp16


@pytest.mark.parametrize("name", ["lenet5", "cs231n_conv_example"])
def test_fp16_agrees_with_fp32_on_cpu(tmp_path, name):
    _agree(tmp_path, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "googlenet", "alexnet_paper"])  # alexnet_paper: LRN
def test_fp16_agrees_with_fp32_on_cpu_deep(tmp_path, name):
    fp32, fp16 = _agree(tmp_path, name, batch=1)
    assert fp16.stat().st_size < 0.51 * fp32.stat().st_size


def test_fp16_model_io_weights_metadata_and_size(tmp_path):
    fp32, fp16 = _pair(tmp_path, "lenet5")
    model = onnx.load(str(fp16))
    onnx.checker.check_model(model, full_check=True)  # topologically sorted, types consistent
    assert [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)] == [1, 1]
    assert [v.name for v in model.graph.input] == ["input"]  # the weights are initializers, not inputs
    weights = {t.name: t.data_type for t in model.graph.initializer if "/" not in t.name}
    assert weights and set(weights.values()) == {onnx.TensorProto.FLOAT16}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["convspec.precision"] == "fp16" and meta["convspec.spec"] == "lenet5"
    assert "convspec.precision" not in {p.key for p in onnx.load(str(fp32)).metadata_props}
    # 61,706 weights: 246,824 bytes in fp32, 123,412 in fp16, plus the same graph
    graph_bytes = fp32.stat().st_size - 4 * 61706
    assert fp16.stat().st_size - graph_bytes < 2 * 61706 + 4096
    assert read_model(str(fp16)).info.input_name == "input"  # runtime takes it as any float32-input model


def test_fp16_keeps_lrn_in_float32(tmp_path):
    # two LRNs read one value: the converter casts it twice under one name, kept once
    (tmp_path / "n.yaml").write_text("input: [8, 6, 6]\nlayers:\n  - lrn: {size: 3}\n    name: a\n"
                                     "  - lrn: {size: 5}\n    name: b\n    inputs: input\n"
                                     "  - add: {}\n    inputs: [a, b]\n")
    lowered = compile_spec(analyse(str(tmp_path / "n.yaml")), precision="fp16")
    model = lowered.model
    lrn = next(n for n in model.graph.node if n.op_type == "LRN")
    producers = {o: n for n in model.graph.node for o in n.output}
    cast = producers[lrn.input[0]]
    assert cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.FLOAT
    # |x| = 300: x^2 = 90,000 overflows float16; in float32 the result is finite and right
    x = np.full((1, 8, 6, 6), 300, np.float32)
    save(lowered, str(tmp_path / "n.onnx"))
    onnx.checker.check_model(str(tmp_path / "n.onnx"), full_check=True)
    y = _run(tmp_path / "n.onnx", x)[0]
    assert np.isfinite(y).all() and y.max() > 0


def test_half_clamps_to_float16_range_and_keeps_nan_inf():
    out = half(np.array([1e5, -1e6, np.inf, -np.inf, np.nan, 1.0, 0.0], np.float32))
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out[[0, 1, 2, 3, 5, 6]], [65504, -65504, np.inf, -np.inf, 1, 0])
    assert np.isnan(out[4])


def test_cli_compile_and_run_fp16(tmp_path):
    out = tmp_path / "m.onnx"
    proc = cli("compile", "lenet5", "-o", str(out), "--precision", "fp16")
    assert proc.returncode == 0, proc.stderr
    assert "120.5 KiB of weights" in proc.stdout  # half of fp32's 241.0 KiB
    proc = cli("run", str(out), "--device", "cpu", "--top", "1")
    assert proc.returncode == 0 and proc.stderr.strip() == "provider: CPUExecutionProvider", proc.stderr
    proc = cli("compile", "lenet5", "-o", str(tmp_path / "x.onnx"), "--precision", "fp8")
    assert proc.returncode == 2 and "invalid choice: 'fp8'" in proc.stderr


# -- the CUDA libraries: preload, and the provider line -----------------------------------------
class FakeOrt:
    """Just what preload_cuda looks at."""


def test_preload_absent_is_a_no_op():
    assert rs.preload_cuda(FakeOrt()) == ""


def test_preload_output_is_captured_not_printed(capsys):
    fake = FakeOrt()
    fake.preload_dlls = lambda: print("Failed to load libcublasLt.so.13: cannot open shared object file")
    text = rs.preload_cuda(fake)
    assert "libcublasLt.so.13" in text and capsys.readouterr().out == ""


def test_preload_raising_is_captured(capsys):
    fake = FakeOrt()

    def boom():
        raise RuntimeError("Invalid parameter of directory=x")

    fake.preload_dlls = boom
    assert "preload_dlls: Invalid parameter" in rs.preload_cuda(fake)
    assert capsys.readouterr() == ("", "")


def test_cuda_session_preloads_and_reason_is_one_line(monkeypatch, lenet):
    """With a CUDA provider that does not start (this machine, or any without the libraries), the
    preload runs first, and the fallback is one line whatever it printed."""
    calls = []
    monkeypatch.setattr(ort, "preload_dlls", lambda: calls.append(1) or print("Failed to load x"), raising=False)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [rs.CUDA, rs.CPU])
    model = lenet
    s = rs.open_session(model, "auto")
    assert calls == [1]
    if s.provider == rs.CUDA:
        pytest.skip("CUDA works here")
    line = s.describe()
    assert line.startswith("provider: CPUExecutionProvider (") and "\n" not in line
    assert rs.open_session(model, "cpu") and calls == [1]  # --device cpu never preloads


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    path = tmp_path_factory.mktemp("lenet") / "lenet5.onnx"
    save(compile_spec(analyse("lenet5")), str(path))
    return read_model(str(path))


WHEELS = {"nvidia-cuda-runtime": "13.5.37", "nvidia-cudnn-cu13": "9.28.1.4"}


@pytest.mark.parametrize("maps, expected", [
    ("7f r-xp 0 00:1 1 /v/lib/python3.11/site-packages/nvidia/cu13/lib/libcudart.so.13\n"
     "7f r-xp 0 00:1 1 /v/lib/python3.11/site-packages/nvidia/cudnn/lib/libcudnn.so.9\n",
     "CUDA 13.5, cuDNN 9.28 from the nvidia wheels"),
    ("7f r-xp 0 00:1 1 /usr/lib/x86_64-linux-gnu/libcudart.so.13.0.48\n"
     "7f r-xp 0 00:1 1 /usr/lib/x86_64-linux-gnu/libcudnn.so.9.1.0\n", "CUDA 13, cuDNN 9 from the system"),
    ("7f r-xp 0 00:1 1 /v/site-packages/nvidia/cu13/lib/libcudart.so.13\n7f r-xp /opt/libcudnn.so.9\n",
     "CUDA 13.5 from the nvidia wheels, cuDNN 9 from the system"),
    ("7f r-xp 0 00:1 1 /usr/lib/libc.so.6\n", ""),
])
def test_cuda_libraries_from_loaded_objects(maps, expected):
    assert rs.cuda_libraries(maps, WHEELS.get) == expected


def test_provider_line_names_the_libraries_only_on_cuda():
    on_cuda = rs.Session(None, rs.CUDA, 0, libraries="CUDA 13.5, cuDNN 9.28 from the nvidia wheels")
    assert on_cuda.describe() == "provider: CUDAExecutionProvider (CUDA 13.5, cuDNN 9.28 from the nvidia wheels)"
    assert rs.Session(None, rs.CPU, 2, "no usable CUDA device or driver").describe() == \
        "provider: CPUExecutionProvider, 2 threads (no usable CUDA device or driver)"


# -- bench: I/O binding, on the CPU -------------------------------------------------------------
def test_bench_binding_path_on_cpu(lenet):
    model = lenet
    s = rs.open_session(model, "cpu", threads=1)
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    binding = s.bind({"input": x})
    s.run_bound(binding)
    bound = binding.copy_outputs_to_cpu()[0]
    np.testing.assert_array_equal(bound, s.run({"input": x})[0])  # the same numbers as a plain run
    from_host = s.bind({"input": x}, on_device=False)
    s.run_bound(from_host)
    np.testing.assert_array_equal(from_host.copy_outputs_to_cpu()[0], bound)
    model_only, copied = measure(s, {"input": x}, warmup=1, runs=3, min_seconds=0)
    assert len(model_only) == len(copied) == 3 and min(model_only + copied) > 0
    result = benchmark(s, {"input": x}, model.info, 2, warmup=1, runs=3)
    assert set(result["end_to_end_ms"]) == {"p50", "p90", "p99", "mean"}


def test_bench_binding_refused_input_is_one_line(lenet):
    from compiler.errors import RunError

    s = rs.open_session(lenet, "cpu", threads=1)
    with pytest.raises(RunError, match="onnxruntime could not run the model: Error in execution: Got invalid dimensions"):
        measure(s, {"input": np.zeros((1, 3, 32, 32), np.float32)}, warmup=1, runs=1, min_seconds=0)


def test_cli_bench_reports_both_latencies():
    proc = cli("bench", "lenet5", "--runs", "3", "--device", "cpu", "--threads", "1", "--precision", "fp16")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].startswith("latency ms: p50 ") and lines[2].startswith("end-to-end ms, with copies: p50 ")
    proc = cli("bench", "lenet5", "--runs", "3", "--device", "cpu", "--format", "json")
    assert json.loads(proc.stdout)["end_to_end_ms"]["p50"] > 0


def test_fp16_same_bytes_twice_and_external_data(tmp_path, monkeypatch):
    from compiler import build

    analysis = analyse("lenet5")
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    save(compile_spec(analysis, precision="fp16"), str(a))
    save(compile_spec(analysis, precision="fp16"), str(b))
    assert a.read_bytes() == b.read_bytes()
    monkeypatch.setattr(build, "EXTERNAL_THRESHOLD", 0)  # the side-file writer, as past 1.9 GB
    written = save(compile_spec(analysis, precision="fp16"), str(tmp_path / "e.onnx"))
    assert len(written) == 2 and Path(written[1]).stat().st_size == 2 * 61706
    x = np.zeros((1, 1, 32, 32), np.float32)
    np.testing.assert_array_equal(_run(tmp_path / "e.onnx", x)[0], _run(a, x)[0])
