"""Multi-crop at test time (compiler/multicrop.py): crops cut inside the graph, predictions averaged.

The reference: crops cut with numpy slicing (and, where torch is installed, torchvision's own
`ten_crop`), run through the plain network compiled with the same seed, their softmax outputs
averaged in numpy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from clirun import run_cli
from compiler.pipeline import analyse
from reference import import_torchvision

H, W = 37, 40  # around LeNet-5's 32x32: odd margins, so the centre's rounding shows


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ok(cwd, *args):
    proc = run_cli(cwd, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A folder with LeNet-5 compiled (seed 5), its input batch, and a function running it."""
    d = tmp_path_factory.mktemp("multicrop")
    ok(d, "compile", "lenet5", "-o", "plain.onnx", "--seed", "5")
    x = np.random.default_rng(1).standard_normal((3, 1, H, W), dtype=np.float32) * 2
    np.save(d / "x.npy", x)

    def run_plain(crops: list) -> list:
        np.save(d / "crops.npy", np.concatenate(crops))
        ok(d, "run", "plain.onnx", "--input", "crops.npy", "-o", "crops_out.npy", "--force")
        return np.split(np.load(d / "crops_out.npy"), len(crops))

    return d, x, run_plain


def multicrop(d, crops: str, combine: str = "mean_softmax") -> np.ndarray:
    (d / "mc.yaml").write_text(f"name: mc\ninput: [1, {H}, {W}]\nmulticrop:\n  spec: lenet5\n  crops: {crops}\n"
                               f"  combine: {combine}\n")
    ok(d, "compile", "mc.yaml", "-o", "mc.onnx", "--seed", "5", "--force")
    ok(d, "run", "mc.onnx", "--input", "x.npy", "-o", "mc.npy", "--force")
    return np.load(d / "mc.npy")


def cut(x, top, left, flip=False):
    crop = x[:, :, top:top + 32, left:left + 32]
    return np.ascontiguousarray(crop[:, :, :, ::-1] if flip else crop)


def test_ten_crops_average_the_networks_probabilities_on_numpy_crops(plain):
    d, x, run_plain = plain
    corners = [(0, 0), (0, W - 32), (H - 32, 0), (H - 32, W - 32), (2, 4)]  # centre: round(5 / 2), 8 / 2
    crops = [cut(x, t, l, f) for f in (False, True) for t, l in corners]
    want = np.mean([softmax(y) for y in run_plain(crops)], axis=0)
    got = multicrop(d, "ten")
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


@pytest.mark.slow  # importing torchvision
def test_the_crops_are_torchvisions_ten_crop(plain):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    functional = import_torchvision().transforms.functional

    d, x, run_plain = plain
    crops = [c.numpy() for c in functional.ten_crop(torch.from_numpy(x), [32, 32])]
    want = np.mean([softmax(y) for y in run_plain(crops)], axis=0)
    np.testing.assert_allclose(multicrop(d, "ten"), want, atol=1e-6, rtol=0)
    centre = functional.center_crop(torch.from_numpy(x), [32, 32]).numpy()
    np.testing.assert_allclose(multicrop(d, "center"), softmax(run_plain([centre])[0]), atol=1e-6, rtol=0)


def test_a_grid_without_flips_averages_logits_when_asked(plain):
    d, x, run_plain = plain
    # rows at 0 and 5, columns at 0, 4 and 8: spread evenly from corner to corner
    crops = [cut(x, t, l) for t in (0, H - 32) for l in (0, 4, W - 32)]
    want = np.mean(run_plain(crops), axis=0)
    np.testing.assert_allclose(multicrop(d, "{grid: [2, 3], flip: false}", "mean_logits"), want, atol=1e-5, rtol=0)


def test_macs_count_every_crop_and_params_stay_the_networks(tmp_path):
    (tmp_path / "mc.yaml").write_text("input: [1, 36, 36]\nmulticrop: {spec: lenet5, crops: {grid: 3}}\n")
    report = json.loads(ok(tmp_path, "summary", "mc.yaml", "--format", "json").stdout)
    # LeNet-5: 61,706 params and 416,520 MACs (test_specs' published row); a 3x3 grid, flipped: 18 crops
    assert (report["params"]["total"], report["macs"]) == (61_706, 18 * 416_520)
    assert report["input_shape"] == [1, 36, 36] and report["output_shape"] == [10]
    a = analyse("alexnet_10crop")
    assert a.macs == 10 * analyse("alexnet").macs and a.params == analyse("alexnet").params


ERRORS = [
    ("input: [1, 30, 40]\nmulticrop: {spec: lenet5}\n", 1, 8,
     "the input [1, 30, 40] cannot be cut into the crops [1, 32, 32] that 'lenet5' takes; give 1 channels and "
     "at least 32x32"),
    ("input: [3, 40, 40]\nmulticrop: {spec: lenet5}\n", 1, 8, "cannot be cut into the crops [1, 32, 32]"),
    ("input: [784]\nmulticrop: {spec: mlp}\n", 1, 8, "multi-crop cuts images"),
    ("multicrop: {spec: lenet5}\n", 1, 1, "a multicrop spec needs an 'input', larger than its network's"),
    ("input: [1, 40, 40]\nmulticrop: {spec: lenet5, crops: {grid: [40, 40]}}\n", 2, 34,
     "the grid makes 3,200 crops, more than 1,024; use a coarser grid"),
    ("input: [1, 40, 40]\nmulticrop: {spec: lenet5, crops: eleven}\n", 2, 34,
     "'multicrop.crops' must be 'center', 'ten', 'googlenet144', {grid: [rows, columns], flip: true|false} or "
     "{scales: [shorter sides], squares: 3, flip: true|false}; got 'eleven'"),
    ("input: [1, 40, 40]\nmulticrop: {spec: lenet5, crops: {scales: [34, 30]}}\n", 2, 48,
     "the scale 30 makes 30x30 squares, too small for the 32x32 crops that 'lenet5' takes; give scales of at least 32"),
    ("input: [1, 40, 40]\nmulticrop: {spec: lenet5, crops: {scales: [40, 48], squares: 50}}\n", 2, 34,
     "the scales make 1,200 crops, more than 1,024; use fewer scales or squares"),
    ("input: [1, 40, 40]\nmulticrop: {spec: lenet5, crops: {scales: [40], grid: 2}}\n", 2, 34,
     "'multicrop.crops' must be "),
    ("input: [1, 40, 40]\nmulticrop: {spec: net.yaml}\n", 2, 19,
     "the network 'net' has a layer called 'crops', a name the multi-crop needs for its own; rename that layer"),
    ("input: [1, 40, 40]\nmulticrop: {spec: lenet5}\nlayers: [relu]\n", 3, 1,
     "'layers' does not belong in a multicrop spec"),
]


@pytest.mark.parametrize("text,line,col,message", ERRORS, ids=[e[3][:40] for e in ERRORS])
def test_a_bad_multicrop_is_a_located_error(tmp_path, text, line, col, message):
    (tmp_path / "net.yaml").write_text("input: [1, 32, 32]\nlayers:\n  - relu:\n    name: crops\n")
    (tmp_path / "m.yaml").write_text(text)
    proc = run_cli(tmp_path, "check", "m.yaml")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"m.yaml:{line}:{col}: error: "), proc.stderr
    assert message in proc.stderr


def test_a_multicrop_may_wrap_an_ensemble_but_not_itself(tmp_path):
    (tmp_path / "e.yaml").write_text("ensemble:\n  members: [lenet5, {spec: lenet5, name: b}]\n")
    (tmp_path / "m.yaml").write_text("input: [1, 36, 36]\nmulticrop: {spec: e.yaml, crops: ten}\n")
    report = json.loads(ok(tmp_path, "summary", "m.yaml", "--format", "json").stdout)
    # two LeNet-5 (61,706 params, 416,520 MACs each), each run on ten crops
    assert (report["params"]["total"], report["macs"]) == (2 * 61_706, 10 * 2 * 416_520)
    assert [(m["name"], m["macs"]) for m in report["members"]] == [("lenet5", 10 * 416_520), ("b", 10 * 416_520)]
    (tmp_path / "self.yaml").write_text("input: [1, 36, 36]\nmulticrop: {spec: self.yaml}\n")
    proc = run_cli(tmp_path, "check", "self.yaml")
    assert proc.returncode == 1
    assert proc.stderr.startswith("self.yaml:2:19: error: 'multicrop.spec' makes a loop: self.yaml -> self.yaml")


# -- GoogLeNet's scales and squares (Szegedy et al. 2015, section 7) ----------------------------
SCALES = [34, 37, 45]  # around LeNet-5's 32x32: shrinking, the input's own shorter side, enlarging


def torch_resize(x, size):
    """torchvision's Resize: bilinear, antialiased (F.interpolate's antialias=True)."""
    import torch

    return torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(x)), size=tuple(size),
                                           mode="bilinear", align_corners=False, antialias=True).numpy()


def pillow_resize(x, size):
    """Pillow's bilinear on float images (mode F), one channel at a time."""
    from PIL import Image

    return np.array([[np.asarray(Image.fromarray(np.ascontiguousarray(c)).resize(size[::-1], Image.BILINEAR))
                      for c in sample] for sample in x])


def googlenet_crops(x, scales, resize, n=32):
    """The paper's crops of a batch, written from its description: per scale (the shorter side),
    the left, centre and right squares (top, centre, bottom when portrait), from each its four
    corners, its centre and itself resized to n x n; then all of them mirrored."""
    crops = []
    height, width = x.shape[2:]
    for s in scales:
        h, w = s * height // min(height, width), s * width // min(height, width)
        image = resize(x, (h, w))
        assert image.shape[2:] == (h, w)
        if w >= h:
            squares = [image[:, :, :, left:left + s] for left in (0, round((w - s) / 2), w - s)]
        else:
            squares = [image[:, :, top:top + s, :] for top in (0, round((h - s) / 2), h - s)]
        c = round((s - n) / 2)
        for q in squares:
            crops += [q[:, :, :n, :n], q[:, :, :n, s - n:], q[:, :, s - n:, :n], q[:, :, s - n:, s - n:],
                      q[:, :, c:c + n, c:c + n], resize(q, (n, n))]
    return [np.ascontiguousarray(c) for c in crops + [c[:, :, :, ::-1] for c in crops]]


def crops_of(d, model: str, x) -> np.ndarray:
    """The output of a compiled multi-crop's node `crops`: every crop, stacked on the batch axis."""
    import onnx
    import onnxruntime

    m = onnx.load(str(d / model))
    m.graph.output.append(onnx.helper.make_tensor_value_info("crops", onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["crops"], {"input": x})[0]


@pytest.mark.parametrize("reference", ["pillow", pytest.param("torch", marks=pytest.mark.slow)])
@pytest.mark.parametrize("shape", [(37, 50), (50, 37)], ids=["landscape", "portrait"])
def test_scales_and_squares_are_googlenets_crops(plain, tmp_path, shape, reference):
    if reference == "torch":
        pytest.importorskip("torch", reason="torch is not installed")
    d, _, run_plain = plain
    x = np.random.default_rng(2).standard_normal((2, 1, *shape), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "mc.yaml").write_text(f"input: [1, {shape[0]}, {shape[1]}]\n"
                                      f"multicrop: {{spec: lenet5, crops: {{scales: {SCALES}, squares: 3}}}}\n")
    ok(tmp_path, "compile", "mc.yaml", "-o", "mc.onnx", "--seed", "5")
    ok(tmp_path, "run", "mc.onnx", "--input", "x.npy", "-o", "mc.npy")
    want = googlenet_crops(x, SCALES, torch_resize if reference == "torch" else pillow_resize)
    assert len(want) == 3 * 3 * 6 * 2
    np.testing.assert_allclose(crops_of(tmp_path, "mc.onnx", x), np.concatenate(want), atol=2e-5, rtol=0)
    probabilities = np.mean([softmax(y) for y in run_plain(want)], axis=0)
    np.testing.assert_allclose(np.load(tmp_path / "mc.npy"), probabilities, atol=1e-5, rtol=0)


def test_googlenet144_is_four_scales_three_squares_six_crops_mirrored(tmp_path):
    (tmp_path / "mc.yaml").write_text("input: [1, 352, 469]\nmulticrop: {spec: lenet5, crops: googlenet144}\n")
    report = json.loads(ok(tmp_path, "summary", "mc.yaml", "--format", "json").stdout)
    assert report["macs"] == 4 * 3 * 6 * 2 * 416_520  # LeNet-5's MACs per crop (test_specs' published row)


def test_activation_memory_counts_every_crop(tmp_path):
    (tmp_path / "net.yaml").write_text("input: [1, 8, 8]\nlayers:\n  - conv: {filters: 2, kernel: 3}\n"
                                       "  - flatten\n  - dense: 3\n")
    (tmp_path / "mc.yaml").write_text("input: [1, 10, 10]\nmulticrop: {spec: net.yaml, crops: ten}\n")
    report = json.loads(ok(tmp_path, "summary", "mc.yaml", "--format", "json").stdout)
    # float32 values: the 10x10 input; ten 8x8 crops; per crop the conv's 2x6x6, the flatten's 72 and
    # the dense's 3; the averaged 3
    assert report["memory"]["activation_bytes"] == 4 * (100 + 10 * 64 + 10 * (72 + 72 + 3) + 3)


@pytest.mark.slow  # GoogLeNet on 144 crops, in PyTorch and in onnxruntime: about 20 s on two cores
def test_googlenet_144crop_is_torchvisions_googlenet_on_the_papers_crops(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    torchvision = import_torchvision()

    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    with torch.no_grad():  # BatchNorm off its initial statistics, so that a misplaced one shows
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    x = np.random.default_rng(3).random((1, 3, 352, 469), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    ok(tmp_path, "compile", "googlenet_144crop", "-o", "g.onnx", "--weights", "w.pth")
    ok(tmp_path, "run", "g.onnx", "--input", "x.npy", "-o", "g.npy")
    crops = np.concatenate(googlenet_crops(x, [256, 288, 320, 352], torch_resize, n=224))
    # float32 filters summed in another order: 5e-5 at most (a crop one pixel off, or not antialiased: 0.1 and more)
    np.testing.assert_allclose(crops_of(tmp_path, "g.onnx", x), crops, atol=1e-4, rtol=0)
    with torch.no_grad():
        want = softmax(model(torch.from_numpy(crops)).numpy()).mean(axis=0, keepdims=True)
    got = np.load(tmp_path / "g.npy")
    # a random GoogLeNet's probabilities are all near 1/1000: measured from the mean, to 0.1%
    assert np.abs(got - want).max() < 1e-3 * np.abs(want - want.mean()).max()


@pytest.mark.slow  # calibrating: about 4 s
def test_scales_quantise_to_int8(tmp_path):
    """onnxruntime's quantiser infers shapes through the Resize and Slice nodes (it misread Resize's `axes`)."""
    (tmp_path / "mc.yaml").write_text("input: [1, 37, 50]\nmulticrop: {spec: lenet5, crops: {scales: [34, 45]}}\n")
    ok(tmp_path, "compile", "mc.yaml", "-o", "q.onnx", "--quantize", "int8")
    ok(tmp_path, "run", "q.onnx", "--batch", "2", "-o", "q.npy")
    probabilities = np.load(tmp_path / "q.npy")
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=0.01)  # an average of softmaxes, in int8 steps


def test_a_network_that_outputs_maps_is_refused(tmp_path):
    """Crops from different places give maps whose pixels do not line up (and mirrored ones are
    mirrored): averaging them would be wrong, so only class scores are averaged."""
    (tmp_path / "seg.yaml").write_text("name: seg\ninput: [3, 32, 32]\nlayers:\n"
                                       "  - conv: {filters: 4, kernel: 3, padding: 1}\n")
    (tmp_path / "mc.yaml").write_text("name: mc\ninput: [3, 40, 40]\nmulticrop: {spec: seg.yaml, crops: center}\n")
    result = run_cli(tmp_path, "check", "mc.yaml")
    assert result.returncode == 1
    assert result.stderr.startswith("mc.yaml:3:12: error: layer 'multicrop': multi-crop averages class scores, "
                                    "[classes]; the network gives [4, 32, 32]")
