"""Property-based fuzzing of the image and model readers (hypothesis), as tests/test_fuzz.py fuzzes specs.

The property, for any bytes given as `run --input IMAGE` or as a model to `run`, `bench` and
`export --triton`: exit 0, 1 or 2, with no traceback and no internal error (clirun checks both),
and every line of stderr escaped (printable). Inputs are valid PNG, JPEG, TIFF, DDS, BMP and GIF
files, and small ONNX models made with onnx.helper, mutated: truncated, bytes flipped or set to
extreme values; model dims, element types and metadata values replaced by hostile ones.

The hypothesis tests are `slow`; the fixed cases below them, which once were internal errors,
run in the quick loop. A deeper hunt: FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz_readers.py
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from clirun import run_cli  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0) or 150
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _clean(result) -> None:
    assert result.returncode in (0, 1, 2), (result.returncode, result.stderr)
    assert all(line.isprintable() for line in result.stderr.splitlines()), result.stderr


# -- images ---------------------------------------------------------------------------------------
def _images() -> dict:
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 24, 3), np.uint8)
    out = {}
    for fmt, mode in [("PNG", "RGB"), ("PNG", "L"), ("PNG", "P"), ("JPEG", "RGB"), ("TIFF", "RGB"), ("TIFF", "L"),
                      ("DDS", "RGBA"), ("DDS", "L"), ("BMP", "RGB"), ("GIF", "L")]:
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, fmt)
        out[f"{fmt}-{mode}"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 65536, (20, 24), np.uint16)).save(buf, "PNG")
    out["PNG-16"] = buf.getvalue()
    return out


IMAGES = _images()
EXTREMES = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff"]


@st.composite
def mutated(draw, sources: dict, head: int = 256):
    """Bytes of one source, truncated or with a few bytes flipped or set to extremes (mostly in its header)."""
    data = bytearray(sources[draw(st.sampled_from(sorted(sources)))])
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, min(len(data), head) - 1)) if draw(st.booleans()) else \
            draw(st.integers(0, len(data) - 1))
        value = draw(st.sampled_from(EXTREMES) | st.binary(min_size=1, max_size=2))
        data[where:where + len(value)] = value
    if draw(st.integers(0, 4)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


def _run_image(folder: Path, data: bytes):
    (folder / "x.png").write_bytes(data)  # Pillow reads by content, whatever the suffix
    return run_cli(folder, "run", "lenet5", "--input", "x.png", "--device", "cpu")


@pytest.mark.slow
@SETTINGS
@given(data=mutated(IMAGES))
def test_damaged_images(data, tmp_path_factory):
    _clean(_run_image(tmp_path_factory.mktemp("img"), data))


# -- models ---------------------------------------------------------------------------------------
DIMS = st.one_of(st.none(), st.integers(-3, 4), st.sampled_from([2**31, 2**34 + 1, 2**40, 2**62, 2**63 - 1, -(2**63)]))
META_KEYS = ["convspec.macs", "convspec.labels", "convspec.preprocess", "convspec.spec"]
META_VALUES = st.one_of(
    st.sampled_from(["1" + "0" * 400, "1e400", "-1e400", "NaN", "Infinity", "-1", "true", "null", "[" * 5000,
                     '{"scale": 1e400}', '{"mean": [NaN]}', '{"std": [0]}', '{"resize": -1}', '{"resize": [1e400, 2]}',
                     '["\\u001b[2J", "a\\nb"]', "\x1b[2Jevil\n", "9" * 5000]),
    st.text(max_size=40))


def _onnx(shape, elem, meta, name="x") -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", [name], ["y"])], "g",
                              [helper.make_tensor_value_info(name, elem, shape)],
                              [helper.make_tensor_value_info("y", elem, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


@st.composite
def models(draw) -> bytes:
    from onnx import TensorProto

    shape = [d if d is not None else "n" for d in draw(st.lists(DIMS, min_size=0, max_size=6))]
    if draw(st.integers(0, 9)) == 0:
        shape = [1] * draw(st.integers(30, 80))
    elem = draw(st.sampled_from([TensorProto.FLOAT] * 4 + [TensorProto.DOUBLE, TensorProto.INT64, TensorProto.STRING]))
    meta = draw(st.dictionaries(st.sampled_from(META_KEYS), META_VALUES, max_size=3))
    name = draw(st.sampled_from(["x", "x\n", 'x"\nbackend: "python', "\x1b[2J", "naïve"]))
    data = _onnx(shape, elem, meta, name)
    if draw(st.integers(0, 4)) == 0:
        data = draw(mutated({"m": data}, head=len(data)))
    return data


@pytest.mark.slow
@SETTINGS
@given(data=models(), command=st.sampled_from(["run", "bench", "export"]))
def test_hostile_models(data, command, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    (folder / "m.onnx").write_bytes(data)
    extra = {"run": ["--device", "cpu"], "bench": ["--device", "cpu", "--runs", "1", "--warmup", "0"],
             "export": ["--triton", "repo", "--name", "m"]}[command]
    _clean(run_cli(folder, command, "m.onnx", *extra))


# -- fixed cases: internal errors (exit 3) that the fuzzers found, now one-line errors ------------
@pytest.mark.parametrize("shape, meta", [
    (["n", -5], {}), ([1] * 70, {}), (["n", 2**62], {}), ([1, 2**63 - 1], {}),
    (["n", 4], {"convspec.macs": "1" + "0" * 400}), (["n", 4], {"convspec.preprocess": "[" * 100_000}),
])
@pytest.mark.parametrize("command", ["run", "bench"])
def test_models_that_were_internal_errors(shape, meta, command, tmp_path):
    from onnx import TensorProto

    (tmp_path / "m.onnx").write_bytes(_onnx(shape, TensorProto.FLOAT, meta))
    r = run_cli(tmp_path, command, "m.onnx", "--device", "cpu", *(["--runs", "1"] if command == "bench" else []))
    assert r.returncode == 1 and r.stderr.startswith("error: the model's ") and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("source, offset, value", [
    ("PNG-L", 33, (100).to_bytes(4, "big")),  # IDAT's length, short: SyntaxError
    ("DDS-L", 80, bytes(4)),  # no pixel format: NotImplementedError
    ("TIFF-L", 72, b"\x05"),  # a size tag typed RATIONAL: TypeError
])
def test_images_that_were_internal_errors(source, offset, value, tmp_path):
    data = bytearray(IMAGES[source])
    data[offset:offset + len(value)] = value
    r = _run_image(tmp_path, bytes(data))
    assert r.returncode == 2 and r.stderr.startswith("error: x.png: cannot read the image: ") \
        and r.stderr.count("\n") == 1, r.stderr
