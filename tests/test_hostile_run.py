"""Hostile models and inputs at run time: a run that never ends, a batch that claims too much,
onnxruntime's and the libraries' noise, signals at any moment.

Each case in tests/hostile/models/ (made by tests/hostile/make_corpus.py) names its exact stderr
and exit code. Exit codes: 1 for a model or input convspec refuses (a run past --timeout, an
input past --max-input-bytes), 130 for Ctrl-C (SIGINT), 143 for SIGTERM.
"""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import cli
from clirun import ROOT, run_cli

MODELS = Path(__file__).resolve().parent / "hostile" / "models"
CPU = "provider: CPUExecutionProvider\n"
RESHAPE = ("error: onnxruntime could not run the model: [ONNXRuntimeError] : 1 : FAIL : Non-zero status code "
           "returned while running Reshape node. Name:'' Status Message: /onnxruntime_src/onnxruntime/core/"
           "providers/cpu/tensor/reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper(const "
           "onnxruntime::TensorShape&, onnxruntime::TensorShapeVector&, bool) input_shape_size == "
           "requested_shape_size was false. The input tensor cannot be reshaped to the requested shape. Input "
           "shape:{1,4}, requested shape:{3}\n")

# file -> (arguments, exit code, the exact stderr), run in tests/hostile/models with --device cpu.
RUN_CASES = {
    "endless_loop.onnx": (["run", "endless_loop.onnx", "--timeout", "1"], 1,
                          f"{CPU}error: the model ran longer than 1 s (--timeout); it was stopped\n"),
    "reshape_fails.onnx": (["run", "reshape_fails.onnx"], 1, CPU + RESHAPE),
    "batch_70000.npz": (["run", "lenet5", "--input", "batch_70000.npz"], 1,
                        "error: batch_70000.npz: the input [70000, 1, 32, 32] is 286,720,000 bytes as float32, "
                        "more than the limit of 268,435,456; check the file, or raise the limit with "
                        "--max-input-bytes\n"),
    # Pillow warns that it should be converted to RGBA; convspec converts it to RGB anyway: no noise.
    "palette_transparency.png": (["run", "lenet5", "--input", "palette_transparency.png"], 0, CPU),
}


@pytest.mark.parametrize("name", sorted(RUN_CASES))
def test_hostile_run(name, capfd):
    args, code, stderr = RUN_CASES[name]
    started = time.monotonic()
    result = run_cli(MODELS, *args, "--device", "cpu")
    assert (result.returncode, result.stderr) == (code, stderr)
    assert time.monotonic() - started < 30
    assert capfd.readouterr().err == ""  # nothing from onnxruntime's own log on the real stderr


# -- a run that never ends: --timeout, Ctrl-C and SIGTERM stop it ---------------------------------------
@pytest.mark.parametrize("command, seconds", [("run", "0.3"), ("bench", "0.5"),
                                             pytest.param("run", "1.5", marks=pytest.mark.slow)])
def test_timeout_stops_a_run_that_never_ends(command, seconds, capfd):
    started = time.monotonic()
    result = run_cli(MODELS, command, "endless_loop.onnx", "--device", "cpu", "--timeout", seconds)
    elapsed = time.monotonic() - started
    assert (result.returncode, result.stderr) == (
        1, f"{CPU}error: the model ran longer than {seconds} s (--timeout); it was stopped\n")
    assert float(seconds) < elapsed < float(seconds) + 5
    assert capfd.readouterr().err == ""  # onnxruntime logs its termination as an error: kept away


def test_a_timeout_lets_a_quick_model_finish():
    result = run_cli(MODELS, "bench", "lenet5", "--device", "cpu", "--timeout", "5", "--runs", "3", "--warmup", "0")
    assert result.returncode == 0 and result.stdout.startswith("lenet5: batch 1"), result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_timeout_must_be_a_positive_number(value):
    result = run_cli(MODELS, "run", "lenet5", "--timeout", value)
    assert result.returncode == 2 and "argument --timeout: " in result.stderr.splitlines()[-1]


def _start(tmp_path: Path, *argv: str) -> subprocess.Popen:
    """`python cli.py ARGV` in `tmp_path`, stderr piped: its first line says the session is up."""
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *argv], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("command, signum, code, message", [
    ("run", signal.SIGINT, 130, "convspec: interrupted"),
    ("run", signal.SIGTERM, 143, "convspec: terminated"),
    ("bench", signal.SIGINT, 130, "convspec: interrupted"),
])
def test_a_real_signal_stops_a_run_that_never_ends(tmp_path, command, signum, code, message):
    """onnxruntime runs in a worker thread; the main thread takes the signal and sets terminate."""
    output = ["-o", "y.npy"] if command == "run" else []
    proc = _start(tmp_path, command, str(MODELS / "endless_loop.onnx"), "--device", "cpu", *output)
    try:
        assert proc.stderr.readline() == CPU  # the session is up and the run under way
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert time.monotonic() - sent < 3  # ~0.1 s measured
    assert (proc.returncode, err) == (code, message + "\n")
    assert list(tmp_path.iterdir()) == []  # no output, not even a temporary


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # the process has gone
        return ""


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("launch", [["{cli}"], ["-c", "import sys; sys.path.insert(0, {root!r}); from cli import main; "
                                                  "sys.exit(main())"]], ids=["cli.py", "entry-point"])
@pytest.mark.parametrize("library", ["numpy/", "onnx/"])
def test_ctrl_c_during_start_up_is_one_line(tmp_path, launch, library):
    """As soon as convspec loads numpy's or onnx's native code: no traceback, no crash."""
    argv = [part.format(cli=str(ROOT / "cli.py"), root=str(ROOT)) for part in launch]
    proc = subprocess.Popen([sys.executable, *argv, "run", str(MODELS / "endless_loop.onnx"), "--device", "cpu"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while proc.poll() is None and library not in _maps(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert (proc.returncode, err) == (130, "convspec: interrupted\n")


@pytest.mark.parametrize("error, code, message", [(KeyboardInterrupt, 130, "interrupted"),
                                                  (cli.Terminated, 143, "terminated")])
def test_a_signal_before_the_command_line_is_read(monkeypatch, error, code, message):
    def interrupted():
        raise error

    monkeypatch.setattr(cli, "build_parser", interrupted)
    result = run_cli(MODELS, "check", "lenet5")
    assert (result.returncode, result.stderr) == (code, f"convspec: {message}\n")


def test_a_signal_during_the_native_imports_waits_for_them(monkeypatch):
    """A signal inside a C extension's initialisation crashed onnxruntime's import (a segmentation
    fault) or became numpy's ImportError: it is held back until the imports are done."""
    import importlib

    imported = []

    def import_module(name):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # this thread, as a lone process's
        time.sleep(0.01)  # a handler would run here
        imported.append(name)

    monkeypatch.setattr(importlib, "import_module", import_module)
    with pytest.raises(KeyboardInterrupt):
        cli._import_uninterrupted(["numpy", "onnx"])
    assert imported == ["numpy", "onnx"]


def test_an_error_a_library_made_of_a_signal_is_the_interruption(monkeypatch):
    """numpy's import, interrupted, raises ImportError('PyCapsule_Import could not import module
    "datetime"'), without the KeyboardInterrupt behind it: the signal is remembered."""
    def failed_import(args):
        try:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
            time.sleep(1)
        except KeyboardInterrupt:
            raise ImportError("PyCapsule_Import could not import module \"datetime\"") from None

    monkeypatch.setattr(cli, "cmd_schema", failed_import)
    result = run_cli(MODELS, "schema")
    assert (result.returncode, result.stderr) == (143, "convspec: terminated\n")


# -- an input file's size, from its header, before it is read -------------------------------------------
@pytest.mark.parametrize("dims, dtype", [((3, 1, 32, 32), np.float32), ((3, 1, 32, 32), np.uint8),
                                         ((3, 1, 32, 32), np.float64), ((1, 32, 32), np.float16)])
def test_an_input_past_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch, dims, dtype):
    """The limit counts the float32 the model is fed (4 bytes a value, whatever the file stores)."""
    import compiler.arrays

    path = tmp_path / "x.npy"
    np.save(path, np.zeros(dims, dtype))
    size = 4 * int(np.prod(dims))
    batched = list(dims) if len(dims) == 4 else [1, *dims]
    monkeypatch.setattr(compiler.arrays, "_data", lambda *a: pytest.fail("read before the size was checked"))
    result = run_cli(tmp_path, "run", "lenet5", "--input", "x.npy", "--device", "cpu",
                     "--max-input-bytes", str(size - 1))
    assert (result.returncode, result.stderr) == (
        1, f"error: x.npy: the input {batched} is {size:,} bytes as float32, more than the limit of {size - 1:,}; "
           "check the file, or raise the limit with --max-input-bytes\n")
    monkeypatch.undo()
    result = run_cli(tmp_path, "run", "lenet5", "--input", "x.npy", "--device", "cpu", "--max-input-bytes", str(size))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == batched[0]


def test_the_default_input_limit_passes_a_batch_as_large_as_random_input_may_be(tmp_path):
    """65,536 lenet5 samples (--batch's cap) are exactly the default limit: refused one sample later."""
    from compiler.limits import INPUT_BYTES

    assert INPUT_BYTES == 65_536 * 4 * 32 * 32
    np.save(tmp_path / "x.npy", np.zeros((65_537, 1, 32, 32), np.uint8))
    result = run_cli(tmp_path, "run", "lenet5", "--input", "x.npy", "--device", "cpu")
    assert result.returncode == 1 and "the input [65537, 1, 32, 32] is 268,439,552 bytes" in result.stderr


# -- noise: one line each, from the file it comes from -----------------------------------------------
def test_a_library_warning_is_one_line(monkeypatch):
    import warnings

    from compiler import pipeline

    real = pipeline.analyse

    def warning_analyse(*args, **kwargs):
        warnings.warn("something a library says\nover two lines", UserWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "analyse", warning_analyse)
    result = run_cli(MODELS, "check", "lenet5", "-q")
    assert (result.returncode, result.stderr) == (0, "warning: something a library says\\nover two lines\n")


def test_numpy_warnings_while_converting_an_input_stay_quiet(tmp_path):
    """float64 past float32's range becomes inf: one warning of ours, none of numpy's."""
    x = np.zeros((1, 1, 32, 32))
    x[0, 0, 0, :3] = [1e300, -1e300, np.nan]
    np.save(tmp_path / "x.npy", x)
    result = run_cli(tmp_path, "run", "lenet5", "--input", "x.npy", "--device", "cpu")
    assert (result.returncode, result.stderr) == (0, f"warning: x.npy: 3 of 1024 input values are NaN or Inf\n{CPU}")


@pytest.mark.parametrize("value", ['{"std": [0]}', '{"mean": [NaN]}', '{"scale": Infinity}', '{"std": [1, -0.0]}',
                                   '{"scale": 1e39}', '{"mean": [' + "9" * 400 + ']}'])
def test_preprocessing_that_would_divide_by_zero_is_damaged_metadata(tmp_path, value):
    import onnx

    from compiler.build import compile_spec
    from compiler.pipeline import analyse

    model = compile_spec(analyse("lenet5")).to_model()
    model.metadata_props.add(key="convspec.preprocess", value=value)
    onnx.save(model, tmp_path / "m.onnx")
    result = run_cli(tmp_path, "run", "m.onnx", "--device", "cpu")
    assert (result.returncode, result.stderr) == (
        1, f"error: the model's metadata 'convspec.preprocess' is damaged ({value[:60]!r}); re-export the model or "
           "remove that entry\n")


def test_an_os_error_without_a_reason_is_worded_from_its_errno(monkeypatch):
    def full(args):
        raise OSError(errno.ENOSPC)

    monkeypatch.setattr(cli, "cmd_schema", full)
    result = run_cli(MODELS, "schema")
    assert (result.returncode, result.stderr) == (2, "error: convspec: No space left on device\n")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
