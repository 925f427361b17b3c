"""Preprocessing (compiler/preprocess.py, runtime/inputs.py): `preprocess:` applied by `convspec run`
to an image with Pillow, and by a `compile --raw-input` model inside its graph.

References: torchvision's transforms (Resize, CenterCrop, ToTensor, Normalize) on the same PIL
image for the Pillow path, and numpy arithmetic for the sizes; the graph's steps must agree with
the Pillow path to within the two bilinear resizes' difference.
"""

from __future__ import annotations


import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from clirun import run_cli
from compiler.build import compile_spec
from compiler.pipeline import analyse_text
from compiler.preprocess import crop_box, raw_input, resized
from runtime.inputs import load_image
from reference import import_torchvision

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet's, as torchvision's models use
SPEC = """name: tiny
input: [3, 24, 24]
preprocess: {resize: 28, crop: 24, mean: %s, std: %s%s}
layers:
  - conv: {filters: 4, kernel: 4, stride: 2, activation: relu}
  - global_avgpool
  - flatten
  - dense: 5
""" % (MEAN, STD, "%s")


def spec(extra: str = "") -> str:
    return SPEC % extra


def picture(height: int, width: int, path) -> None:
    """A smooth picture (gradients and a disc), as photographs mostly are: bilinear filters that
    differ in their antialiasing differ little on it."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 255 * x / width
    green = 255 * y / height
    blue = np.where((x - width / 2) ** 2 + (y - height / 3) ** 2 < (height / 4) ** 2, 220.0, 40.0)
    Image.fromarray(np.stack([red, green, blue], axis=2).round().astype(np.uint8)).save(path)


def test_sizes_follow_torchvisions_arithmetic():
    # Resize(256) of 500x375 (H x W): the shorter side 375 -> 256, the longer int(256 * 500 / 375) = 341
    assert resized((500, 375), 256) == (341, 256)
    assert resized((375, 500), 256) == (256, 341) and resized((300, 300), 256) == (256, 256)
    assert resized((37, 50), [24, 30]) == (24, 30)
    # CenterCrop: top int(round((H - h) / 2.0)), half to even: (29 - 24) / 2 = 2.5 -> 2, (31 - 24) / 2 = 3.5 -> 4
    assert crop_box((29, 31), 24) == (2, 4, 24, 24)
    assert crop_box((256, 341), [224, 224]) == (16, 58, 224, 224)


@pytest.mark.slow  # importing torchvision
def test_run_reads_an_image_as_torchvisions_transforms_do(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    transforms = import_torchvision().transforms

    picture(50, 70, tmp_path / "p.png")
    got = load_image(tmp_path / "p.png", (3, 24, 24), {"resize": 28, "crop": 24, "mean": MEAN, "std": STD})
    pipeline = transforms.Compose([transforms.Resize(28), transforms.CenterCrop(24), transforms.ToTensor(),
                                   transforms.Normalize(MEAN, STD)])
    with Image.open(tmp_path / "p.png") as image:
        want = pipeline(image.convert("RGB")).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    bgr = load_image(tmp_path / "p.png", (3, 24, 24), {"resize": 28, "crop": 24, "channels": "BGR"})
    np.testing.assert_allclose(bgr, transforms.Compose(pipeline.transforms[:3])(Image.open(tmp_path / "p.png")
                                                                                  .convert("RGB")).numpy()[::-1],
                               atol=1e-6, rtol=0)
    del torch


def preprocessed(lowered, pixels: np.ndarray) -> np.ndarray:
    """The raw-input model's preprocessed pixels: the value the network reads, made an output."""
    model = lowered.to_model()
    model.graph.output.append(onnx.helper.make_tensor_value_info("input/preprocess", onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["input/preprocess"], {"input": pixels})[0]


@pytest.mark.parametrize("extra,size", [("", (50, 70)), ("", (71, 40)), (", channels: BGR", (45, 45)),
                                        (", scale: 0.5", (33, 29))])
def test_the_graphs_preprocessing_agrees_with_the_pillow_path(tmp_path, extra, size):
    picture(*size, tmp_path / "p.png")
    a = analyse_text(spec(extra))
    pre = a.graph.attachments.preprocess
    lowered = raw_input(compile_spec(a, seed=0), pre, a.graph.input_shape)
    pixels = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))[None]
    got = preprocessed(lowered, pixels)[0]
    want = load_image(tmp_path / "p.png", (3, 24, 24), pre)
    assert got.shape == want.shape == (3, 24, 24)
    # both are bilinear and antialiased, but Pillow rounds its result to 8 bits (up to half a level)
    # and its filter differs a little from onnxruntime's: the tolerance is in 8-bit levels
    scale = pre.get("scale", 1 / 255) * 255 / min(STD)
    # (measured: at most 0.8 of a level, 0.17 on average); a crop one pixel off moves 3.6 levels here
    assert np.abs(got - want).max() < 1.5 * scale / 255, np.abs(got - want).max()
    assert np.abs(got - want).mean() < 0.3 * scale / 255


def test_without_resize_the_graph_crops_the_image_as_it_is():
    a = analyse_text("input: [3, 4, 5]\npreprocess: {crop: [4, 5], scale: 1}\nlayers: [relu]\n")
    lowered = raw_input(compile_spec(a), a.graph.attachments.preprocess, a.graph.input_shape)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 9, 8, 3), dtype=np.uint8)
    # numpy: the centre 4x5 of 9x8, top round(2.5) = 2, left round(1.5) = 2, as [N, C, H, W]
    want = pixels[:, 2:6, 2:7, :].transpose(0, 3, 1, 2).astype(np.float32)
    np.testing.assert_array_equal(preprocessed(lowered, pixels), want)


def test_run_gives_the_same_answer_with_a_raw_input_model(tmp_path):
    (tmp_path / "tiny.yaml").write_text(spec())
    picture(60, 80, tmp_path / "p.png")
    for args in (["-o", "plain.onnx"], ["-o", "raw.onnx", "--raw-input"]):
        proc = run_cli(tmp_path, "compile", "tiny.yaml", "--seed", "3", *args)
        assert proc.returncode == 0, proc.stderr
    for model in ("plain", "raw"):
        proc = run_cli(tmp_path, "run", f"{model}.onnx", "--input", "p.png", "-o", f"{model}.npy")
        assert proc.returncode == 0, proc.stderr
    plain, raw = np.load(tmp_path / "plain.npy"), np.load(tmp_path / "raw.npy")
    assert plain.shape == raw.shape == (1, 5)
    np.testing.assert_allclose(raw, plain, atol=0.02 * np.abs(plain).max(), rtol=0)
    # a uint8 array of two pictures, and random pixels at the suggested size, run too
    np.save(tmp_path / "two.npy", np.stack([np.asarray(Image.open(tmp_path / "p.png"))] * 2))
    assert run_cli(tmp_path, "run", "raw.onnx", "--input", "two.npy").returncode == 0
    assert run_cli(tmp_path, "run", "raw.onnx", "--batch", "3").returncode == 0


def test_a_raw_input_model_refuses_float_arrays(tmp_path):
    (tmp_path / "tiny.yaml").write_text(spec())
    assert run_cli(tmp_path, "compile", "tiny.yaml", "-o", "raw.onnx", "--raw-input").returncode == 0
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 24, 24), np.float32))
    proc = run_cli(tmp_path, "run", "raw.onnx", "--input", "x.npy")
    assert proc.returncode == 1
    assert "the model takes raw pixels, uint8 [batch, height, width, 3]" in proc.stderr


def test_raw_input_needs_an_image_input(tmp_path):
    proc = run_cli(tmp_path, "compile", "mlp", "-o", "m.onnx", "--raw-input")
    assert proc.returncode == 2
    assert "--raw-input makes a model take images, but 'mlp' takes [784]" in proc.stderr


ERRORS = [
    ("preprocess: {resize: 28}\n", 2, 22,
     "'preprocess.resize: 28' sets the shorter side, so the size depends on the image; add 'crop: [24, 24]'"),
    ("preprocess: {resize: 28, crop: 20}\n", 2, 32, "'preprocess.crop' is [20, 20], but the input is 24x24"),
    ("preprocess: {resize: 20, crop: 24}\n", 2, 22,
     "'preprocess.resize' 20 leaves too little to crop [24, 24] from; resize to at least 24"),
    ("preprocess: {resize: [30, 20], crop: 24}\n", 2, 22, "leaves too little to crop [24, 24] from"),
    ("preprocess: {channels: RBG}\n", 2, 24, "'preprocess.channels' must be 'RGB' or 'BGR'; got 'RBG'"),
]


@pytest.mark.parametrize("text,line,col,message", ERRORS, ids=[e[3][:40] for e in ERRORS])
def test_a_bad_preprocess_is_a_located_error(tmp_path, text, line, col, message):
    (tmp_path / "p.yaml").write_text("input: [3, 24, 24]\n" + text + "layers: [relu]\n")
    proc = run_cli(tmp_path, "check", "p.yaml")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"p.yaml:{line}:{col}: error: "), proc.stderr
    assert message in proc.stderr


def test_a_raw_input_model_exports_to_triton_with_uint8_pixels(tmp_path):
    (tmp_path / "tiny.yaml").write_text(spec())
    assert run_cli(tmp_path, "compile", "tiny.yaml", "-o", "raw.onnx", "--raw-input").returncode == 0
    proc = run_cli(tmp_path, "export", "raw.onnx", "--triton", "repo", "--name", "tiny")
    assert proc.returncode == 0, proc.stderr
    config = (tmp_path / "repo" / "tiny" / "config.pbtxt").read_text()
    assert '{ name: "input", data_type: TYPE_UINT8, dims: [ -1, -1, 3 ] }' in config
    assert '{ name: "dense1", data_type: TYPE_FP32, dims: [ 5 ] }' in config


def test_a_strip_that_the_resize_would_blow_up_is_refused(tmp_path):
    (tmp_path / "tiny.yaml").write_text(spec())
    assert run_cli(tmp_path, "compile", "tiny.yaml", "-o", "raw.onnx", "--raw-input").returncode == 0
    Image.new("RGB", (2_000_000, 1)).save(tmp_path / "strip.png")  # resize 28: 56,000,000 x 28 pixels
    proc = run_cli(tmp_path, "run", "raw.onnx", "--input", "strip.png")
    assert proc.returncode == 1
    assert "resizes the 2000000x1 image to 56000000x28; crop it nearer to square first" in proc.stderr
