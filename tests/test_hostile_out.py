"""Hostile images, model shapes and metadata, names and terminal escapes (tests/hostile/images,
onnx, escapes): each gets its exact one-line error, or is printed escaped; never a traceback.

The binary files are made by tests/hostile/make_corpus.py; the specs in escapes/ by hand.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest

from clirun import run_cli

HOSTILE = Path(__file__).resolve().parent / "hostile"
IMAGES, ONNX, ESCAPES = HOSTILE / "images", HOSTILE / "onnx", HOSTILE / "escapes"
_spec = importlib.util.spec_from_file_location("make_corpus", HOSTILE / "make_corpus.py")
make_corpus = importlib.util.module_from_spec(_spec)  # the corpus's generator, for variants of its models
_spec.loader.exec_module(make_corpus)

# file -> (exit code, exact stderr) of `convspec run lenet5 --input FILE`; Pillow reads by content
IMAGE_ERRORS = {
    "broken_chunk.png": (2, "error: broken_chunk.png: cannot read the image: broken PNG file (chunk "
                            "b'\\x036\\x90\\xd5')"),
    "dds_pixel_format.png": (2, "error: dds_pixel_format.png: cannot read the image: Unknown pixel format flags 0"),
    "float.tiff.png": (1, "error: float.tiff.png: its pixels are floating point, whose range is unknown; save them "
                          "as .npy instead"),
    "text.png": (2, "error: text.png: cannot read the image: cannot identify image file 'text.png'"),
    "tiff_rational_size.png": (2, "error: tiff_rational_size.png: cannot read the image: 'IFDRational' object cannot "
                                  "be interpreted as an integer"),
    "truncated.png": (2, "error: truncated.png: cannot read the image: image file is truncated"),
    # Pillow logs "More samples per pixel than can be decoded: 8" before it gives up: not printed
    "tiff_samples_per_pixel.png": (2, "error: tiff_samples_per_pixel.png: cannot read the image: cannot identify "
                                      "image file 'tiff_samples_per_pixel.png'"),
}

DAMAGED = "; re-export the model or remove that entry"
# file -> exact stderr of `convspec run FILE` and `convspec bench FILE` (exit 1: the model is wrong)
MODEL_ERRORS = {
    "deep_json.onnx": "error: the model's metadata 'convspec.preprocess' is damaged ('" + "[" * 60 + f"'){DAMAGED}",
    "huge_dim.onnx": "error: the model's input 'x' of shape [?, 1099511627776] has 1,099,511,627,776 elements, more "
                     "than 17,179,869,184 (64 GiB of float32); the file is damaged or not meant to run here",
    "int64_max_dim.onnx": "error: the model's input 'x' of shape [1, 9223372036854775807] has "
                          "9,223,372,036,854,775,807 elements, more than 17,179,869,184 (64 GiB of float32); the file "
                          "is damaged or not meant to run here",
    "macs_10e400.onnx": "error: the model's metadata 'convspec.macs' is damaged ('1" + "0" * 59 + f"'){DAMAGED}",
    "macs_1e400.onnx": f"error: the model's metadata 'convspec.macs' is damaged ('1e400'){DAMAGED}",
    "negative_batch.onnx": "error: the model's tensor 'x' has a negative size in its shape [-3, 4]; the file is "
                           "damaged",
    "negative_dim.onnx": "error: the model's tensor 'x' has a negative size in its shape [?, -5, 4]; the file is "
                         "damaged",
    "rank70.onnx": "error: the model's input 'x' has 70 axes; convspec takes at most 32",
    "scale_nan.onnx": f"error: the model's metadata 'convspec.preprocess' is damaged ('{{\"scale\": NaN}}'){DAMAGED}",
    "std_zero.onnx": f"error: the model's metadata 'convspec.preprocess' is damaged ('{{\"std\": [0]}}'){DAMAGED}",
}
RUNNABLE = ["escape_name.onnx", "newline_name.onnx", "pbtxt_injection.onnx"]  # run; their names are escaped


def test_the_tables_cover_the_corpus():
    assert sorted(p.name for p in IMAGES.iterdir()) == sorted(IMAGE_ERRORS)
    assert sorted(p.name for p in ONNX.iterdir()) == sorted([*MODEL_ERRORS, *RUNNABLE])


@pytest.mark.parametrize("name", sorted(IMAGE_ERRORS))
def test_hostile_images(name, capfd):
    r = run_cli(IMAGES, "run", "lenet5", "--input", name, "--device", "cpu")
    assert (r.returncode, r.stderr) == (IMAGE_ERRORS[name][0], IMAGE_ERRORS[name][1] + "\n")
    assert capfd.readouterr().err == ""  # nothing from Pillow's log or libtiff on the real stderr


@pytest.mark.parametrize("command", ["run", "bench", "export"])
@pytest.mark.parametrize("name", sorted(MODEL_ERRORS))
def test_hostile_models(name, command, tmp_path):
    extra = {"run": [], "bench": ["--runs", "1", "--warmup", "0"], "export": ["--triton", str(tmp_path)]}[command]
    r = run_cli(ONNX, command, name, "--device", "cpu", *extra) if command != "export" else \
        run_cli(ONNX, command, name, *extra)
    assert (r.returncode, r.stderr, r.stdout) == (1, MODEL_ERRORS[name] + "\n", "")
    assert list(tmp_path.iterdir()) == []


# -- the classes, with other numbers and names ---------------------------------------------------
def _model(path: Path, shape, meta=None, name="x", output="y") -> str:
    return make_corpus.relu_model(path, shape, meta, name, output)


@pytest.mark.parametrize("shape, words", [
    (["b", 2**35], "of shape [?, 34359738368] has 34,359,738,368 elements"),
    ([2**20, 2**15], "of shape [1048576, 32768] has 34,359,738,368 elements"),
    (["b", 3, 2**62, 2**62], "has 63,802,943,797,675,961,899,382,738,893,456,539,648 elements"),
    (["b", -1], "'x' has a negative size in its shape [?, -1]"),
    ([-(2**62), 3], "'x' has a negative size in its shape [-4611686018427387904, 3]"),
    ([1] * 33, "'x' has 33 axes; convspec takes at most 32"),
    ([1] * 65, "'x' has 65 axes; convspec takes at most 32"),
])
def test_input_shapes_beyond_reason(shape, words, tmp_path):
    r = run_cli(tmp_path, "run", _model(tmp_path / "m.onnx", shape), "--device", "cpu")
    assert r.returncode == 1 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_a_negative_output_size_is_refused(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["out"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", -4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    r = run_cli(tmp_path, "export", "m.onnx", "--triton", "repo")
    assert (r.returncode, r.stderr) == (1, "error: the model's tensor 'out' has a negative size in its shape "
                                           "[?, -4]; the file is damaged\n")


@pytest.mark.parametrize("key, value", [
    ("convspec.macs", str(2**63)), ("convspec.macs", "-1"), ("convspec.macs", "true"), ("convspec.macs", "1e30"),
    ("convspec.preprocess", '{"scale": Infinity}'), ("convspec.preprocess", '{"scale": -1e39}'),
    ("convspec.preprocess", '{"mean": [0, NaN, 0]}'), ("convspec.preprocess", '{"std": [1, -1, 1]}'),
    ("convspec.preprocess", '{"resize": 0}'), ("convspec.preprocess", '{"resize": [32]}'),
    ("convspec.preprocess", '{"resize": [32.0, 32]}'), ("convspec.labels", "[" * 5000 + "]" * 5000),
    ("convspec.macs", "9" * 5000),
])
def test_metadata_numbers_beyond_reason(key, value, tmp_path):
    r = run_cli(tmp_path, "bench", _model(tmp_path / "m.onnx", ["n", 4], {key: value}), "--runs", "1",
                "--device", "cpu")
    assert (r.returncode, r.stderr) == (1, f"error: the model's metadata '{key}' is damaged ({value[:60]!r})"
                                           f"{DAMAGED}\n")


def test_large_but_sane_metadata_still_runs(tmp_path):
    meta = {"convspec.macs": str(2**63 - 1), "convspec.preprocess": '{"scale": 1e-30, "std": [1e-30]}'}
    r = run_cli(tmp_path, "bench", _model(tmp_path / "m.onnx", ["n", 4], meta), "--runs", "1", "--device", "cpu")
    assert r.returncode == 0 and "GFLOP/s" in r.stdout


# -- names: a final newline no longer passes, and names in files reach the terminal escaped --------
@pytest.mark.parametrize("name, error", [
    ("name_newline.yaml", "name_newline.yaml:1:7: error: 'name' must be a name made of letters, digits, _, . and -; "
                          "got 'evil\\n'"),
    ("layer_name_newline.yaml", "layer_name_newline.yaml:4:11: error: 'layers[0].name' must be a name made of "
                                "letters, digits, _ and -, in dotted parts (layer1.0.conv1); {i} or {n} number the "
                                "copies of a repeat; got 'relu1\\n'"),
])
def test_a_name_with_a_final_newline_is_refused(name, error):
    r = run_cli(ESCAPES, "check", name)
    assert (r.returncode, r.stderr) == (1, error + "\n")


@pytest.mark.parametrize("pattern, good, bad", [
    (r"^[A-Za-z0-9_.-]+$", "resnet-50.v1", "resnet\n"),
    (r"^(?:[A-Za-z0-9_]|\{[in]\})+(?:\.(?:[A-Za-z0-9_]|\{[in]\})+)*$", "layer1.{i}.conv", "a.b\n"),
    (r"^[A-Za-z_][A-Za-z0-9_]*$", "block_a", "block\n"),
    (r"^a[$]\$$", "a$$", "a$$\n"),
])
def test_schema_patterns_end_at_the_end_of_the_text(pattern, good, bad):
    import re

    from compiler.schema import python_pattern

    assert re.search(python_pattern(pattern), good) and not re.search(python_pattern(pattern), bad)


def test_a_block_reference_with_a_final_newline_is_not_a_name():
    from compiler.expr import ExprError, evaluate

    assert evaluate("$n", {"n": 3}) == 3
    with pytest.raises(ExprError):
        evaluate("$n\n", {"n": 3})


def test_summary_escapes_the_title_for_the_terminal_only():
    import json

    title = "\x1b[2J\x1b]0;owned\x07Tiny\nforged line"
    shown = "\\x1b[2J\\x1b]0;owned\\x07Tiny\\nforged line"
    table = run_cli(ESCAPES, "summary", "title_escape.yaml").stdout
    assert table.splitlines()[0] == f"tiny: {shown}"
    markdown = run_cli(ESCAPES, "summary", "title_escape.yaml", "--format", "markdown").stdout
    assert markdown.splitlines()[0] == f"### tiny: {shown}"
    for text in (table, markdown):
        assert not any(not c.isprintable() for c in text.replace("\n", ""))
    assert json.loads(run_cli(ESCAPES, "summary", "title_escape.yaml", "--format", "json").stdout)["title"] == title


@pytest.mark.parametrize("name", ["escape_key.npz", "escape_key.pth", "escape_key.safetensors"])
def test_unexpected_weight_keys_are_escaped(name, tmp_path):
    r = run_cli(ESCAPES, "compile", "lenet5", "--weights", name, "-o", str(tmp_path / "m.onnx"))
    assert r.returncode == 0
    assert r.stderr == (f"warning: loaded 1 of 10 weight tensors from {name}, the rest seeded; missing keys (9): "
                        "c1.bias, c3.weight, c3.bias, c5.weight, c5.bias, f6.weight, f6.bias, output.weight, "
                        "output.bias; unexpected keys (1): \\x1b[2Jevil\\nkey\n")


@pytest.mark.parametrize("name, shown", [("escape_name.onnx", "\\x1b[2Jevil"), ("newline_name.onnx", "evil\\n")])
def test_bench_escapes_the_model_name(name, shown):
    r = run_cli(ONNX, "bench", name, "--runs", "1", "--warmup", "0", "--device", "cpu")
    assert r.returncode == 0 and r.stdout.startswith(f"{shown}: batch 1, ") and "\x1b" not in r.stdout
    assert len(r.stdout.splitlines()) == 4  # header, latency, end-to-end latency, throughput


# -- Triton: names are quoted, a folder name is fullmatched ----------------------------------------
def _model_config():
    """Triton's ModelConfig message, from tritonclient's generated module when it is installed
    (loaded by path: tritonclient.grpc's own __init__ needs grpcio)."""
    spec = importlib.util.find_spec("tritonclient")
    path = spec and Path(spec.submodule_search_locations[0]) / "grpc" / "model_config_pb2.py"
    if not path or not path.exists():
        pytest.skip("tritonclient is not installed")
    module_spec = importlib.util.spec_from_file_location("_triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.ModelConfig


def test_names_cannot_add_lines_to_config_pbtxt(tmp_path):
    r = run_cli(ONNX, "export", "pbtxt_injection.onnx", "--triton", str(tmp_path), "--name", "m")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "m" / "config.pbtxt").read_text()
    assert [line.split(":")[0] for line in text.splitlines() if not line.startswith((" ", "]"))] == [
        "name", "platform", "max_batch_size", "input [", "output [", "dynamic_batching { max_queue_delay_microseconds",
        "instance_group [ { count"]


def test_config_pbtxt_parses_as_tritons_model_config(tmp_path):
    from google.protobuf import text_format

    import onnx

    config_class = _model_config()
    r = run_cli(ONNX, "export", "pbtxt_injection.onnx", "--triton", str(tmp_path), "--name", "m")
    assert r.returncode == 0, r.stderr
    config = text_format.Parse((tmp_path / "m" / "config.pbtxt").read_text(), config_class())
    model = onnx.load(str(ONNX / "pbtxt_injection.onnx"))
    assert [i.name for i in config.input] == [model.graph.input[0].name]
    assert [o.name for o in config.output] == [model.graph.output[0].name]
    assert (config.name, config.platform, config.backend) == ("m", "onnxruntime_onnx", "")


@pytest.mark.parametrize("name", ["\x1b[31m", "naïve", 'q"uote', "back\\slash", "tab\there", "nul\x00"])
def test_pbtxt_strings_round_trip(name):
    from google.protobuf import text_format

    from runtime.triton import quoted

    config_class = _model_config()
    assert all(32 <= ord(c) < 127 for c in quoted(name))
    assert text_format.Parse(f"name: {quoted(name)}", config_class()).name == name


@pytest.mark.parametrize("name", ["newline_name.onnx", "escape_name.onnx"])
def test_a_model_name_that_cannot_be_a_folder(name, tmp_path):
    r = run_cli(ONNX, "export", name, "--triton", str(tmp_path))
    shown = {"newline_name.onnx": "evil\\n", "escape_name.onnx": "\\x1b[2Jevil"}[name]
    assert (r.returncode, r.stderr) == (2, f"error: '{shown}' cannot name a Triton model: use letters, digits, '_', "
                                           "'.' and '-' (--name sets it)\n")
    assert list(tmp_path.iterdir()) == []


# -- 16-bit images: scaled to the same [0, 1] as 8-bit ones, never clipped --------------------------
def _png(array: np.ndarray) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf


@pytest.mark.parametrize("channels", [1, 3])
def test_a_16_bit_grey_png_is_scaled_not_clipped(channels, tmp_path):
    from runtime.inputs import load_image

    values = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)
    (tmp_path / "g16.png").write_bytes(_png(values).getvalue())
    x = load_image(tmp_path / "g16.png", (channels, 16, 16), {})
    assert x.shape == (channels, 16, 16)
    np.testing.assert_allclose(x, np.broadcast_to(values / 65535, x.shape), atol=1e-6)
    # 8-bit: the same [0, 1], and with a scale of 1 the same 0..255 as an 8-bit image
    eight = (values // 257).astype(np.uint8)
    (tmp_path / "g8.png").write_bytes(_png(eight).getvalue())
    np.testing.assert_allclose(load_image(tmp_path / "g8.png", (channels, 16, 16), {})[0], eight / 255, atol=1e-6)
    scaled = load_image(tmp_path / "g16.png", (channels, 16, 16), {"scale": 1, "mean": [127.5], "std": [127.5]})
    np.testing.assert_allclose(scaled[0], (values / 257 - 127.5) / 127.5, atol=1e-5)


def test_an_8_bit_rgb_png_is_unchanged(tmp_path):
    from runtime.inputs import load_image

    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
    (tmp_path / "c.png").write_bytes(_png(rgb).getvalue())
    np.testing.assert_allclose(load_image(tmp_path / "c.png", (3, 16, 16), {}), rgb.transpose(2, 0, 1) / 255,
                               atol=1e-6)
    grey = load_image(tmp_path / "c.png", (1, 16, 16), {})  # Pillow's luma, on the same scale
    assert grey.shape == (1, 16, 16) and 0 <= grey.min() and grey.max() <= 1
