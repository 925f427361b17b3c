"""Every writer is atomic: complete files or none, and an existing file is replaced only with --force."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import compiler.build as build
from cli import main

ROOT = Path(__file__).resolve().parent.parent


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return code, err


def test_compile_refuses_to_overwrite_before_doing_any_work(tmp_path, capsys, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    monkeypatch.setattr(build, "compile_spec", lambda *a, **k: pytest.fail("compiled before refusing"))
    code, err = _cli(capsys, "compile", "lenet5", "-o", str(out))
    assert (code, err) == (2, f"error: {out}: exists; pass --force to replace it\n")
    assert out.read_bytes() == b"precious"


def test_force_replaces_with_the_usual_permissions(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    assert _cli(capsys, "compile", "lenet5", "-o", str(out), "--force")[0] == 0
    onnx.checker.check_model(onnx.load(str(out)))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_a_directory_is_not_an_output(tmp_path, capsys):
    code, err = _cli(capsys, "compile", "lenet5", "-o", str(tmp_path))
    assert (code, err) == (2, f"error: {tmp_path}: is a folder; give the path of the file to write\n")


def _fail_halfway(error):
    real = build._save_inline

    def write_then_fail(lowered, out):
        real(lowered, out)
        with open(out, "r+b") as f:
            f.truncate(100)  # as if the disk filled up part way
        raise error

    return write_then_fail


@pytest.mark.parametrize("error, code, message", [
    (OSError(errno.ENOSPC, "No space left on device"), 2, "cannot write: No space left on device"),
    (KeyboardInterrupt(), 130, "convspec: interrupted"),
])
def test_a_failure_while_writing_leaves_nothing(tmp_path, capsys, monkeypatch, error, code, message):
    monkeypatch.setattr(build, "_save_inline", _fail_halfway(error))
    out = tmp_path / "m.onnx"
    got, err = _cli(capsys, "compile", "lenet5", "-o", str(out))
    assert got == code and message in err
    assert list(tmp_path.iterdir()) == []


def test_a_failure_keeps_the_old_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old model")
    monkeypatch.setattr(build, "_save_inline", _fail_halfway(KeyboardInterrupt()))
    assert _cli(capsys, "compile", "lenet5", "-o", str(out), "--force")[0] == 130
    assert out.read_bytes() == b"old model" and list(tmp_path.iterdir()) == [out]


def _data_name(model_path: Path) -> str:
    """The side file a model names, checked to be named after the model and its own sha256."""
    model = onnx.load(str(model_path), load_external_data=False)
    (name,) = {t.external_data[0].value for t in model.graph.initializer}
    digest = hashlib.sha256((model_path.parent / name).read_bytes()).hexdigest()[:16]
    assert name == f"{model_path.name}.{digest}.data"
    return name


def _lenet_output(path: Path) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.ones((1, 1, 32, 32), np.float32)})[0]


def test_external_data_and_model_appear_together(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(build, "EXTERNAL_THRESHOLD", 1000)  # lenet5's 241 KB of weights go to a side file
    out = tmp_path / "m.onnx"
    code, err = _cli(capsys, "compile", "lenet5", "-o", str(out))
    data = _data_name(out)
    assert (code, err) == (0, "") and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", data]
    onnx.checker.check_model(str(out))  # the side file is whole and where the model says
    # The model exists: refused before any work.
    monkeypatch.setattr(build, "compile_spec", lambda *a, **k: pytest.fail("compiled before refusing"))
    code, err = _cli(capsys, "compile", "lenet5", "-o", str(out))
    assert (code, err) == (2, f"error: {out}: exists; pass --force to replace it\n")
    # A side file left by a deleted model is an output like any other: replaced only with --force.
    monkeypatch.undo()
    monkeypatch.setattr(build, "EXTERNAL_THRESHOLD", 1000)
    out.unlink()
    code, err = _cli(capsys, "compile", "lenet5", "-o", str(out))
    assert (code, err) == (2, f"error: {tmp_path / data}: exists; pass --force to replace it\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [data]


def test_force_over_a_model_with_external_data_names_the_stale_side_files(tmp_path, capsys, monkeypatch):
    """The side files of replaced models are kept (a concurrent compile's model may be about to
    name one) and each is named in a warning."""
    out = tmp_path / "m.onnx"
    monkeypatch.setattr(build, "EXTERNAL_THRESHOLD", 1000)
    monkeypatch.chdir(tmp_path)
    for path in ("./m.onnx", "sub/../m.onnx"):  # the model's own side file, however the path is written
        (tmp_path / "sub").mkdir(exist_ok=True)
        assert _cli(capsys, "compile", "lenet5", "-o", path, "--force") == (0, "")
    first = _data_name(out)
    assert _cli(capsys, "compile", "lenet5", "-o", str(out), "--force", "--seed", "1") == (
        0, f"warning: {tmp_path / first} is left from an earlier model; {out} does not use it, so it can be deleted\n")
    second = _data_name(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.onnx", "sub", first, second])
    monkeypatch.setattr(build, "EXTERNAL_THRESHOLD", 10**12)  # the new model keeps its weights inline
    code, err = _cli(capsys, "compile", "lenet5", "-o", str(out), "--force")
    assert (code, err) == (0, "".join(f"warning: {tmp_path / name} is left from an earlier model; {out} does not "
                                      "use it, so it can be deleted\n" for name in sorted([first, second])))
    onnx.checker.check_model(str(out))
    assert not onnx.load(str(out)).graph.initializer[0].external_data


def test_an_interrupt_between_the_renames_leaves_the_old_model_on_its_old_weights(tmp_path, capsys, monkeypatch):
    """The side file is renamed first, then the model. Between the two, the old model still
    names its own side file, so it runs as before; then a Ctrl-C removes the new side file."""
    import compiler.output as output

    monkeypatch.setattr(build, "EXTERNAL_THRESHOLD", 1000)
    out = tmp_path / "m.onnx"
    assert _cli(capsys, "compile", "lenet5", "-o", str(out), "--seed", "1")[0] == 0
    old_files, old_output = sorted(tmp_path.iterdir()), _lenet_output(out)
    real_place, seen = output._place, []

    def interrupted_before_the_model(temp, target, force):
        if target == out:
            seen.append(sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp")))
            np.testing.assert_array_equal(_lenet_output(out), old_output)  # the new weights are there, unused
            raise KeyboardInterrupt
        real_place(temp, target, force)

    monkeypatch.setattr(output, "_place", interrupted_before_the_model)
    assert _cli(capsys, "compile", "lenet5", "-o", str(out), "--seed", "2", "--force") == (
        130, "convspec: interrupted\n")
    assert len(seen) == 1 and len(seen[0]) == 3  # the old pair and the new side file
    assert sorted(tmp_path.iterdir()) == old_files
    np.testing.assert_array_equal(_lenet_output(out), old_output)


def test_a_failure_without_a_reason_still_says_why(tmp_path, capsys, monkeypatch):
    """An OSError made with an errno alone (no strerror) is worded from its errno, not 'None'."""
    def full(lowered, out):
        raise OSError(errno.ENOSPC)

    monkeypatch.setattr(build, "_save_inline", full)
    out = tmp_path / "m.onnx"
    assert _cli(capsys, "compile", "lenet5", "-o", str(out)) == (
        2, f"error: {out}: cannot write: No space left on device\n")
    assert list(tmp_path.iterdir()) == []


def test_export_is_atomic_and_needs_force(tmp_path, capsys):
    repo = tmp_path / "repo"
    assert _cli(capsys, "export", "lenet5", "--triton", str(repo))[0] == 0
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == ["lenet5/1/model.onnx", "lenet5/config.pbtxt"]
    code, err = _cli(capsys, "export", "lenet5", "--triton", str(repo), "--name", "lenet5")
    assert (code, err) == (2, f"error: {repo}/lenet5/1/model.onnx: exists; pass --force to replace it\n")
    assert _cli(capsys, "export", "lenet5", "--triton", str(repo), "--force")[0] == 0


def test_run_outputs_need_force(tmp_path, capsys):
    out = tmp_path / "y.npy"
    assert _cli(capsys, "run", "lenet5", "--device", "cpu", "-o", str(out))[0] == 0
    first = np.load(out)
    code, err = _cli(capsys, "run", "lenet5", "--device", "cpu", "-o", str(out), "--seed", "1")
    assert (code, err.splitlines()[-1]) == (2, f"error: {out}: exists; pass --force to replace it")
    assert _cli(capsys, "run", "lenet5", "--device", "cpu", "-o", str(tmp_path / "y"), "--seed", "1",
                "--force")[0] == 0
    assert not np.array_equal(np.load(out), first)  # "y" became y.npy, as numpy names it


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, message", [(signal.SIGINT, 130, "convspec: interrupted"),
                                                  (signal.SIGTERM, 143, "convspec: terminated")])
def test_a_real_signal_during_compile_leaves_a_whole_file_or_none(tmp_path, signum, code, message):
    """Interrupt `convspec compile vgg19` (575 MB) as soon as its temporary file appears."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "compile", "vgg19", "-o", "vgg19.onnx"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not any(tmp_path.glob(".vgg19.onnx.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err
    if proc.returncode == 0:  # it finished first: then the file is whole
        assert onnx.load(str(tmp_path / "vgg19.onnx"), load_external_data=False).graph.node
        return
    assert (proc.returncode, err.strip()) == (code, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("before, after", [(0o600, 0o600), (0o4750, 0o750)])  # kept, less setuid
def test_force_keeps_the_permissions_of_the_replaced_file(tmp_path, capsys, before, after):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    out.chmod(before)
    assert _cli(capsys, "compile", "lenet5", "-o", str(out), "--force")[0] == 0
    assert out.stat().st_mode & 0o7777 == after


@pytest.mark.parametrize("make, name, message", [
    (lambda d: (d / "dangling.onnx").symlink_to("nowhere"), "dangling.onnx", "exists; pass --force to replace it"),
    (lambda d: (d / "afile").write_text("x"), "afile/m.onnx", "cannot write: {d}/afile is a file, not a folder"),
    (lambda d: None, "m.onnx/", "names a folder; give the path of the file to write"),
])
def test_outputs_that_cannot_be_written(tmp_path, capsys, make, name, message):
    make(tmp_path)
    code, err = _cli(capsys, "compile", "lenet5", "-o", f"{tmp_path}/{name}")
    assert (code, err) == (2, f"error: {tmp_path}/{name}: {message.format(d=tmp_path)}\n")


def test_a_target_name_as_long_as_names_go(tmp_path, capsys):
    out = tmp_path / ("a" * 245 + ".onnx")  # 250 characters: the temporary beside it must be shorter
    assert _cli(capsys, "compile", "lenet5", "-o", str(out))[0] == 0
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_run_refuses_an_npy_for_several_outputs(tmp_path, capsys):
    spec = tmp_path / "two.yaml"
    spec.write_text("input: [4]\nlayers:\n  - dense: 3\n    name: a\n  - dense: 2\n    name: b\n    inputs: input\n"
                    "outputs: [a, b]\n")
    code, err = _cli(capsys, "run", str(spec), "--device", "cpu", "-o", str(tmp_path / "y.npy"))
    assert (code, err.splitlines()[-1]) == (2, f"error: {tmp_path}/y.npy: the model has 2 outputs, which go to one "
                                               ".npz file; name it .npz")


def test_force_does_not_replace_links_or_special_files(tmp_path, capsys):
    real = tmp_path / "real.onnx"
    real.write_bytes(b"old")
    (tmp_path / "link.onnx").symlink_to(real)
    os.mkfifo(tmp_path / "fifo.onnx")
    for name in ("link.onnx", "fifo.onnx"):
        code, err = _cli(capsys, "compile", "lenet5", "-o", str(tmp_path / name), "--force")
        assert (code, err) == (2, f"error: {tmp_path / name}: is a symbolic link or a special file; give the path "
                                  "of a regular file\n")
    assert real.read_bytes() == b"old"


def test_names_too_long_for_the_system(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    long = "a" * 300
    code, err = _cli(capsys, "check", long + ".yaml")
    assert code == 2 and err.startswith("error: ") and "File name too long" in err, err
    (tmp_path / "s.yaml").write_text(f"extends: {long}\n")
    code, err = _cli(capsys, "check", "s.yaml")
    assert code == 1 and err.startswith(f"s.yaml:1:10: error: 'extends' names '{long}', which is not a bundled spec")
    code, err = _cli(capsys, "compile", "lenet5", "-o", f"{long}/m.onnx")
    assert code == 2 and "File name too long" in err, err


def test_an_interrupt_just_after_the_temporary_is_made_leaves_nothing(tmp_path, monkeypatch):
    """The narrowest window: the temporary exists, and Ctrl-C comes before anything else runs."""
    import compiler.output as output

    real_close = os.close

    def interrupted(fd):
        real_close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(output.os, "close", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with output.replacing([tmp_path / "m.onnx"]):
            pytest.fail("the body ran")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
