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
