"""Data augmentation (`augment:`, compiler/augment.py): its graph against outside references.

The references: a numpy implementation of the random numbers (lowbias32 on uint32, as
documented) and of bilinear sampling; torchvision's functional transforms (rotate, affine, crops,
resize, flips, brightness, contrast, saturation, hue, grayscale) in PyTorch eager; and the
published ImageNet PCA components. Ranges are checked statistically on many small images, with
fixed seeds, so every bound is met or missed the same way on every run.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from clirun import run_cli
from compiler.augment import lower_augment
from compiler.pipeline import analyse_text
from reference import import_torchvision

torch = pytest.importorskip("torch", reason="torch is not installed: `pip install torch==2.13.0` runs these")

IMAGENET_EIGENVALUES = np.array([0.2175, 0.0188, 0.0045])  # fb.resnet.torch's ImageNet PCA (pixels in [0, 1])
IMAGENET_EIGENVECTORS = np.array([[-0.5675, 0.7192, 0.4009],
                                  [-0.5808, -0.0045, -0.8140],
                                  [-0.5836, -0.6948, 0.4203]])


def _tf():
    import_torchvision()
    import torchvision.transforms.functional as TF
    from torchvision.transforms.functional import InterpolationMode, _get_inverse_affine_matrix

    return TF, InterpolationMode.BILINEAR, _get_inverse_affine_matrix


# -- the numpy reference of the random numbers ------------------------------------------------------
def lowbias32(x):
    x = np.asarray(x, np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        return x ^ (x >> np.uint32(16))


def uniform(seed: int, index, transform: int, slot: int) -> np.ndarray:
    """float32 in [0, 1): 24 bits of lowbias32(key ^ lowbias32(transform * 8 + slot + 1)),
    key = lowbias32(lowbias32(seed) ^ index)."""
    key = lowbias32(lowbias32(np.uint32(seed)) ^ np.asarray(index, np.uint32))
    h = lowbias32(key ^ lowbias32(np.uint32(transform * 8 + slot + 1)))
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)


def between(u, lo, hi):
    return np.float32(u) * np.float32(hi - lo) + np.float32(lo)


def normal(seed, index, transform, slot_a, slot_b):
    u1, u2 = uniform(seed, index, transform, slot_a), uniform(seed, index, transform, slot_b)
    return np.sqrt(-2 * np.log(1 - u1.astype(np.float64))) * np.cos(2 * np.pi * u2)


# -- running the graph ---------------------------------------------------------------------------------
def spec(transforms: str, input_shape=(3, 8, 8), size=None, extra: str = "") -> str:
    size_line = f"  size: {list(size)}\n" if size else ""
    return (f"name: aug\ninput: {list(input_shape)}\n{extra}augment:\n{size_line}  transforms:\n"
            + "".join(f"    - {t}\n" for t in transforms.split(";")) + "layers:\n  - relu\n")


def augmenter(text: str):
    plan = analyse_text(text, "aug.yaml").graph.attachments.augment
    model = lower_augment(plan, "aug")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def run(images, seed=0, offset=0, output="pixels"):
        feeds = {"images": np.ascontiguousarray(images, np.float32), "seed": np.array(seed, np.int64),
                 "offset": np.array(offset, np.int64)}
        return session.run([output], feeds)[0]

    return run


def ramps(n: int, h: int, w: int) -> np.ndarray:
    """Channels: the column index, the row index, ones. Bilinear sampling of a ramp is exact, so
    the output reads back the input point each output pixel sampled."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.broadcast_to(np.stack([x, y, np.ones_like(x)]), (n, 3, h, w))


def fitted_maps(out: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Per image, the 2x3 map (output pixel centre -> input point, both in edge coordinates)
    fitted by least squares to the ramps read back from a region of the output."""
    ys, xs = np.mgrid[0:out.shape[2], 0:out.shape[3]] + 0.5
    design = np.stack([xs[rows, cols].ravel(), ys[rows, cols].ravel(), np.ones(xs[rows, cols].size)], 1)
    targets = np.stack([out[:, 0, rows, cols].reshape(len(out), -1),
                        out[:, 1, rows, cols].reshape(len(out), -1)], 2) + 0.5
    return np.stack([np.linalg.lstsq(design, t, rcond=None)[0].T for t in targets])


def ks_uniform(values, lo, hi) -> float:
    """Kolmogorov-Smirnov distance of the sample from uniform on [lo, hi]."""
    v = np.sort((np.asarray(values, np.float64) - lo) / (hi - lo))
    n = len(v)
    return max(np.max(np.arange(1, n + 1) / n - v), np.max(v - np.arange(n) / n))


KS_1PCT = 1.63  # / sqrt(n): the Kolmogorov distribution's 99% point


# -- the random numbers ----------------------------------------------------------------------------------
def test_draws_match_the_numpy_generator_and_are_uniform():
    # brightness [0, 2] on grey 0.5 gives 0.5 * 2u = u: the graph's first draw of transform 0, slot 1
    run = augmenter(spec("brightness: {factor: [0, 2]}", (1, 2, 2)))
    n = 4096
    u = run(np.full((n, 1, 2, 2), 0.5), seed=7)[:, 0, 0, 0]
    np.testing.assert_allclose(u, uniform(7, np.arange(n), 0, 1), atol=1e-7)
    assert ks_uniform(u, 0, 1) < KS_1PCT / math.sqrt(n)
    other = run(np.full((n, 1, 2, 2), 0.5), seed=8)[:, 0, 0, 0]
    assert abs(np.corrcoef(u, other)[0, 1]) < 4 / math.sqrt(n)  # another seed, another stream
    # an image's draws depend on the seed and its index in the dataset, not on its batch
    np.testing.assert_array_equal(run(np.full((5, 1, 2, 2), 0.5), seed=7, offset=1000)[:, 0, 0, 0], u[1000:1005])


def test_seed_beyond_32_bits_wraps_and_is_an_input():
    run = augmenter(spec("brightness: {factor: [0, 2]}", (1, 2, 2)))
    grey = np.full((3, 1, 2, 2), 0.5)
    np.testing.assert_array_equal(run(grey, seed=2**32 + 5), run(grey, seed=5))
    assert not np.array_equal(run(grey, seed=5), run(grey, seed=6))


# -- ranges, statistically -----------------------------------------------------------------------------------
def test_flip_frequency_is_p():
    n, p = 2000, 0.3
    out = augmenter(spec(f"hflip: {{p: {p}}}", (3, 4, 6)))(ramps(n, 4, 6), seed=3)
    column = out[:, 0, 0, 0]  # the input column that output column 0 shows
    flipped = np.abs(column - 5) < 1e-4
    assert np.all(flipped | (np.abs(column) < 1e-4))
    np.testing.assert_array_equal(flipped, uniform(3, np.arange(n), 0, 0) < np.float32(p))
    assert abs(flipped.sum() - n * p) < 4.5 * math.sqrt(n * p * (1 - p))  # binomial bound


def test_rotation_angles_lie_in_range_and_spread_uniformly():
    n, lo, hi = 1000, -20.0, 35.0
    out = augmenter(spec(f"rotate: {{degrees: [{lo}, {hi}]}}", (3, 16, 16)))(ramps(n, 16, 16), seed=11)
    maps = fitted_maps(out, slice(6, 10), slice(6, 10))
    # the map rotates output to input clockwise on screen: the input rotated counter-clockwise
    angles = np.degrees(np.arctan2(maps[:, 1, 0], maps[:, 0, 0]))
    assert angles.min() >= lo - 1e-3 and angles.max() <= hi + 1e-3
    assert ks_uniform(angles, lo, hi) < KS_1PCT / math.sqrt(n)
    np.testing.assert_allclose(np.linalg.det(maps[:, :, :2]), 1, atol=1e-4)  # a rotation, no zoom
    np.testing.assert_allclose(angles, between(uniform(11, np.arange(n), 0, 1), lo, hi), atol=1e-3)


def test_random_crop_offsets_cover_every_position_evenly():
    n, pad = 1800, 2
    out = augmenter(spec(f"random_crop: {{size: 12, padding: {pad}}}", (3, 12, 12), size=(16, 16)))(
        ramps(n, 16, 16), seed=5)
    dx, dy = np.rint(out[:, 0, 6, 6] - 6), np.rint(out[:, 1, 6, 6] - 6)  # the crop's offset in the unpadded image
    np.testing.assert_allclose(out[:, :2, 6, 6] - 6, np.stack([dx, dy], 1), atol=1e-4)  # whole pixels
    for d in (dx, dy):
        assert set(np.unique(d)) == set(range(-pad, 16 - 12 + pad + 1))  # every position
        counts = np.bincount((d + pad).astype(int))
        expected = n / len(counts)
        assert ((counts - expected) ** 2 / expected).sum() < 26.1  # chi-square, 8 dof, 0.1%
    # the padding is zeros: output column 0 reads input column dx, outside the image when dx < 0
    np.testing.assert_allclose(out[:, 2, 6, 0], (dx >= 0).astype(np.float32), atol=1e-4)


def test_random_resized_crop_areas_and_ratios_lie_in_range():
    n = 600
    out = augmenter(spec("random_resized_crop: {size: 8, scale: [0.1, 0.5], ratio: [0.75, 1.333]}", (3, 8, 8),
                         size=(32, 32)))(ramps(n, 32, 32), seed=2)
    maps = fitted_maps(out, slice(1, 7), slice(1, 7))
    width, height = maps[:, 0, 0] * 8, maps[:, 1, 1] * 8
    area = width * height / 32**2
    assert area.min() >= 0.1 - 1e-4 and area.max() <= 0.5 + 1e-4
    assert ks_uniform(area, 0.1, 0.5) < KS_1PCT / math.sqrt(n)
    ratio = width / height
    assert ratio.min() >= 0.75 - 1e-4 and ratio.max() <= 1.333 + 1e-4
    assert ks_uniform(np.log(ratio), math.log(0.75), math.log(1.333)) < KS_1PCT / math.sqrt(n)
    left, top = maps[:, 0, 2], maps[:, 1, 2]
    assert left.min() >= -1e-4 and (left + width).max() <= 32 + 1e-3  # inside the image
    assert top.min() >= -1e-4 and (top + height).max() <= 32 + 1e-3


def test_affine_shifts_and_zooms_lie_in_range():
    n = 800
    out = augmenter(spec("affine: {translate: [0.25, 0.125], scale: [0.8, 1.25]}", (3, 16, 16)))(
        ramps(n, 16, 16), seed=6)
    maps = fitted_maps(out, slice(7, 9), slice(7, 9))  # the centre, inside the image at any of these
    zoom = 1 / maps[:, 0, 0]  # input = centre + (output - centre - shift) / zoom
    np.testing.assert_allclose(maps[:, 1, 1], maps[:, 0, 0], atol=1e-4)
    np.testing.assert_allclose(maps[:, [0, 1], [1, 0]], 0, atol=1e-4)  # no rotation, no shear
    shift = 8 * (zoom[:, None] - 1) - zoom[:, None] * maps[:, :, 2]  # the offset is 8 - (8 + shift) / zoom
    assert zoom.min() >= 0.8 - 1e-4 and zoom.max() <= 1.25 + 1e-4
    assert ks_uniform(zoom, 0.8, 1.25) < KS_1PCT / math.sqrt(n)
    for axis, largest in ((0, 0.25 * 16), (1, 0.125 * 16)):
        assert np.abs(shift[:, axis]).max() <= largest + 1e-3
        assert ks_uniform(shift[:, axis], -largest, largest) < KS_1PCT / math.sqrt(n)


def test_brightness_factors_follow_the_range():
    n = 2000
    out = augmenter(spec("brightness: {factor: 0.4, p: 0.5}", (3, 2, 2)))(np.full((n, 3, 2, 2), 0.5), seed=9)
    factor = out[:, 0, 0, 0] / 0.5
    applied = uniform(9, np.arange(n), 0, 0) < np.float32(0.5)
    np.testing.assert_array_equal(factor[~applied], 1)
    assert factor.min() >= 0.6 - 1e-6 and factor.max() <= 1.4 + 1e-6
    assert ks_uniform(factor[applied], 0.6, 1.4) < KS_1PCT / math.sqrt(applied.sum())


def test_pca_colour_alphas_are_normal_with_the_published_components():
    n = 4000
    out = augmenter(spec("pca_color", (3, 2, 2)))(np.full((n, 3, 2, 2), 0.5), seed=4)
    shift = out[:, :, 0, 0] - 0.5  # = V @ (alpha * lambda) (Krizhevsky et al. 2012, section 4.1)
    alpha = np.linalg.solve(IMAGENET_EIGENVECTORS, shift.T).T / IMAGENET_EIGENVALUES
    assert np.all(np.abs(alpha.mean(0)) < 4 * 0.1 / math.sqrt(n))
    assert np.all(np.abs(alpha.std(0) / 0.1 - 1) < 4 / math.sqrt(2 * n))
    expected = np.stack([normal(4, np.arange(n), 0, 1 + 2 * i, 2 + 2 * i) * 0.1 for i in range(3)], 1)
    np.testing.assert_allclose(alpha, expected, atol=2e-3)  # float32 shifts, divided by small eigenvalues


# -- each transform against torchvision ------------------------------------------------------------------------
def image(seed: int, c: int = 3, h: int = 10, w: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).random((1, c, h, w), dtype=np.float32)


def torch_of(x):
    return torch.from_numpy(np.ascontiguousarray(x[0]))


@pytest.mark.slow  # importing torchvision takes seconds
@pytest.mark.parametrize("transform, reference", [
    ("hflip: {p: 1}", lambda TF, B, t: TF.hflip(t)),
    ("vflip: {p: 1}", lambda TF, B, t: TF.vflip(t)),
    ("rotate: {degrees: [30, 30]}", lambda TF, B, t: TF.rotate(t, 30.0, interpolation=B)),
    ("rotate: {degrees: [-75, -75]}", lambda TF, B, t: TF.rotate(t, -75.0, interpolation=B)),
    ("shear: {degrees: [15, 15]}", lambda TF, B, t: TF.affine(t, 0.0, [0, 0], 1.0, [15.0, 0.0], interpolation=B)),
    ("shear: {degrees: [0, 0, 10, 10]}", lambda TF, B, t: TF.affine(t, 0.0, [0, 0], 1.0, [0.0, 10.0], interpolation=B)),
    ("affine: {degrees: [12, 12], scale: [1.2, 1.2], shear: [10, 10, -5, -5]}",
     lambda TF, B, t: TF.affine(t, 12.0, [0, 0], 1.2, [10.0, -5.0], interpolation=B)),
    ("brightness: {factor: [1.3, 1.3]}", lambda TF, B, t: TF.adjust_brightness(t, 1.3)),
    ("contrast: {factor: [0.6, 0.6]}", lambda TF, B, t: TF.adjust_contrast(t, 0.6)),
    ("saturation: {factor: [1.5, 1.5]}", lambda TF, B, t: TF.adjust_saturation(t, 1.5)),
    ("hue: {shift: [0.2, 0.2]}", lambda TF, B, t: TF.adjust_hue(t, 0.2)),
    ("hue: {shift: [-0.45, -0.45]}", lambda TF, B, t: TF.adjust_hue(t, -0.45)),
    ("grayscale: {p: 1}", lambda TF, B, t: TF.rgb_to_grayscale(t, num_output_channels=3)),
])
def test_transform_matches_torchvision(transform, reference):
    TF, bilinear, _ = _tf()
    x = image(1)
    x[0, :, 2, 3] = 0.4  # a grey pixel: hue and saturation's special case
    ours = augmenter(spec(transform, (3, 10, 12)))(x)
    np.testing.assert_allclose(ours[0], reference(TF, bilinear, torch_of(x)).numpy(), atol=1e-5)


@pytest.mark.slow  # importing torchvision takes seconds
@pytest.mark.parametrize("transform, size, reference", [
    ("center_crop: {size: [6, 7]}", (15, 13), lambda TF, t: TF.center_crop(t, [6, 7])),
    ("pad: {padding: [1, 2, 3, 0]}", (6, 10), lambda TF, t: TF.pad(t, [2, 1, 0, 3])),  # torchvision: l, t, r, b
    ("resize: {size: [6, 7]}", (9, 11), lambda TF, t: TF.resize(t, [6, 7], antialias=False)),
    ("resize: {size: [18, 23]}", (7, 9), lambda TF, t: TF.resize(t, [18, 23], antialias=False)),
])
def test_size_changes_match_torchvision(transform, size, reference):
    TF, _, _ = _tf()
    x = image(2, h=size[0], w=size[1])
    want = reference(TF, torch_of(x)).numpy()
    ours = augmenter(spec(transform, (3, *want.shape[1:]), size=size))(x)
    np.testing.assert_allclose(ours[0], want, atol=1e-5)


# -- the whole pipeline against a numpy reference -------------------------------------------------------------
PIPELINE = ("random_crop: {size: [10, 11], padding: 2};hflip;rotate: {degrees: 25, p: 0.7};"
            "brightness: {factor: 0.4};contrast: {factor: 0.4, p: 0.5};saturation: {factor: 0.5};"
            "hue: {shift: 0.1};grayscale: {p: 0.3};pca_color")


def bilinear(img: np.ndarray, m: np.ndarray, out_hw, zeros: bool) -> np.ndarray:
    """Sample [C, H, W] at m @ (x + 0.5, y + 0.5, 1) (edge coordinates) for every output pixel."""
    c, h, w = img.shape
    ys, xs = np.mgrid[0:out_hw[0], 0:out_hw[1]] + 0.5
    xi = m[0, 0] * xs + m[0, 1] * ys + m[0, 2] - 0.5
    yi = m[1, 0] * xs + m[1, 1] * ys + m[1, 2] - 0.5
    if not zeros:
        xi, yi = np.clip(xi, 0, w - 1), np.clip(yi, 0, h - 1)
    x0, y0 = np.floor(xi).astype(int), np.floor(yi).astype(int)
    fx, fy = xi - x0, yi - y0
    out = np.zeros((c, *out_hw))
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            out += np.where(inside, img[:, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0) * wy * wx
    return out


def reference_pipeline(images: np.ndarray, seed: int, TF, inverse_affine) -> np.ndarray:
    """PIPELINE, image by image: its draws from the numpy generator, the warp composed in pixel
    coordinates (torchvision's inverse affine matrix for the rotation), torchvision's hue."""
    out = []
    for i, img in enumerate(images.astype(np.float64)):
        u = lambda k, s: uniform(seed, i, k, s)  # noqa: E731
        dy = np.floor(np.float32(u(0, 1)) * np.float32(16 + 4 - 10 + 1)) - 2
        dx = np.floor(np.float32(u(0, 2)) * np.float32(14 + 4 - 11 + 1)) - 2
        warp = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], float)
        if u(1, 0) < np.float32(0.5):
            warp = warp @ np.array([[-1, 0, 11], [0, 1, 0], [0, 0, 1]])
        if u(2, 0) < np.float32(0.7):
            angle = float(between(u(2, 1), -25, 25))
            inv = np.array(inverse_affine([0.0, 0.0], -angle, [0.0, 0.0], 1.0, [0.0, 0.0])).reshape(2, 3)
            centre = np.array([[1, 0, 5.5], [0, 1, 5], [0, 0, 1]])  # image centre, edge coordinates
            warp = warp @ centre @ np.vstack([inv, [0, 0, 1]]) @ np.linalg.inv(centre)
        x = bilinear(img, warp, (10, 11), zeros=True)
        gray = lambda v: 0.2989 * v[0] + 0.587 * v[1] + 0.114 * v[2]  # noqa: E731
        x = np.clip(x * between(u(3, 1), 0.6, 1.4), 0, 1)
        if u(4, 0) < np.float32(0.5):
            f = between(u(4, 1), 0.6, 1.4)
            x = np.clip(f * x + (1 - f) * gray(x).mean(), 0, 1)
        f = between(u(5, 1), 0.5, 1.5)
        x = np.clip(f * x + (1 - f) * gray(x), 0, 1)
        x = TF.adjust_hue(torch.from_numpy(x.astype(np.float32)), float(between(u(6, 1), -0.1, 0.1))).double().numpy()
        if u(7, 0) < np.float32(0.3):
            x = np.broadcast_to(gray(x), x.shape)
        alpha = np.array([normal(seed, i, 8, 1 + 2 * k, 2 + 2 * k) * 0.1 for k in range(3)])
        out.append(x + (IMAGENET_EIGENVECTORS @ (alpha * IMAGENET_EIGENVALUES))[:, None, None])
    return np.stack(out)


@pytest.mark.slow  # importing torchvision takes seconds
def test_whole_pipeline_equals_the_numpy_reference():
    TF, _, inverse_affine = _tf()
    images = np.random.default_rng(3).random((24, 3, 16, 14), dtype=np.float32)
    run = augmenter(spec(PIPELINE, (3, 10, 11), size=(16, 14)))
    want = reference_pipeline(images, 1234, TF, inverse_affine)
    np.testing.assert_allclose(run(images, seed=1234), want, atol=1e-5)
    assert not np.allclose(run(images, seed=1235), want, atol=1e-2)  # the seed is an input


def test_input_is_normalised_as_preprocess_says():
    pre = "preprocess: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}\n"
    run = augmenter(spec("hflip: {p: 1}", (3, 4, 5), extra=pre))
    x = image(4, h=4, w=5)
    mean, std = np.array([0.485, 0.456, 0.406])[:, None, None], np.array([0.229, 0.224, 0.225])[:, None, None]
    want = (x[:, :, :, ::-1] - mean) / std
    np.testing.assert_allclose(run(x, output="input"), want, atol=1e-5)


# -- errors: located, saying what to change -------------------------------------------------------------------
@pytest.mark.parametrize("transforms, input_shape, size, words, line", [
    ("hflop", (3, 8, 8), None, "unknown transform 'hflop'; did you mean 'hflip'?", 5),
    ("hflip: {p: 1.5}", (3, 8, 8), None, "argument 'p' of hflip must be a probability from 0 to 1; got 1.5", 5),
    ("hflip: {q: 1}", (3, 8, 8), None, "unknown argument 'q' for hflip", 5),
    ("random_crop: {padding: 1}", (3, 8, 8), None, "random_crop is missing the required argument 'size'", 5),
    ("brightness: {factor: 0.2};hflip", (3, 8, 8), None, "'hflip' follows the colour transform 'brightness'", 6),
    ("hue: {shift: 0.1}", (1, 8, 8), None, "'hue' needs a colour image, but the input has 1 channel", 5),
    ("rotate: {degrees: [10, -10]}", (3, 8, 8), None, "the range [10, -10] runs backwards; write [-10, 10]", 5),
    ("random_crop: {size: 10}", (3, 8, 8), None, "the crop [10, 10] is larger than the image [8, 8]", 5),
    ("random_crop: {size: 6}", (3, 8, 8), None, "the transforms make 6x6 images, but the input is 8x8", 5),
    ("hflip", (3, 8, 8), (9, 9), "the transforms make 9x9 images, but the input is 8x8", 5),
    ("hflip: {p: .nan}", (3, 8, 8), None, "'.nan' is not a finite number", 5),
    ("rotate: {degrees: [.inf, 1]}", (3, 8, 8), None, "'.inf' is not a finite number", 5),
    ("shear: {degrees: [0, 0, -90, 10]}", (3, 8, 8), None, "each between -90 and 90; got [0, 0, -90, 10]", 5),
    ("resize: {size: 8.0}", (3, 8, 8), None, "argument 'size' of resize must be a positive integer", 5),
    ("brightness: {factor: [1, 1.0e+7]}", (3, 8, 8), None, "holds a number beyond 1e+06", 5),
    ("hflip: {p: true}", (3, 8, 8), None, "argument 'p' of hflip must be a probability from 0 to 1; got True", 5),
    ("hflip", (3, 8, 8), (100000, 100000), "'augment.size' [100000, 100000] makes 30,000,000,000 values", 3),  # line 4
])
def test_bad_sections_fail_check_with_a_located_message(tmp_path, transforms, input_shape, size, words, line):
    path = tmp_path / "bad.yaml"
    path.write_text(spec(transforms, input_shape, size))
    result = run_cli(tmp_path, "check", "bad.yaml")
    assert result.returncode == 1
    assert words in result.stderr, result.stderr
    assert result.stderr.startswith(f"bad.yaml:{line + (1 if size else 0)}:"), result.stderr


def test_an_unknown_section_key_is_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\ninput: [3, 8, 8]\naugment:\n  sizes: 8\n  transforms: [hflip]\n"
                                       "layers: [relu]\n")
    result = run_cli(tmp_path, "check", "bad.yaml")
    assert result.returncode == 1 and "bad.yaml:4:3: error: unknown key 'sizes' in 'augment'; did you mean 'size'?" \
        in result.stderr, result.stderr


# -- the command line --------------------------------------------------------------------------------------------
@pytest.fixture
def photos(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for k in range(5):
        pixels = (rng.random((9, 7, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"p{k}.png")
        paths.append(pixels)
    (tmp_path / "spec.yaml").write_text(spec("hflip: {p: 1};brightness: {factor: 0.3}", (3, 9, 7),
                                             extra="preprocess: {mean: [0.5], std: [0.25]}\n"))
    return tmp_path, paths


def test_compile_augment_writes_a_graph_with_seed_and_offset_inputs(photos):
    folder, pixels = photos
    result = run_cli(folder, "compile", "spec.yaml", "--augment", "-o", "aug.onnx")
    assert result.returncode == 0, result.stderr
    session = ort.InferenceSession(str(folder / "aug.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("images", "tensor(float)"), ("seed", "tensor(int64)"), ("offset", "tensor(int64)")]
    x = (pixels[0].transpose(2, 0, 1)[None] / 255).astype(np.float32)
    out = session.run(["pixels"], {"images": x, "seed": np.array(3), "offset": np.array(2)})[0]
    factor = between(uniform(3, 2, 1, 1), 0.7, 1.3)
    np.testing.assert_allclose(out, np.clip(x[:, :, :, ::-1] * factor, 0, 1), atol=1e-6)
    # `run` and `bench` take networks: the augmentation graph is pointed to `augment run`
    result = run_cli(folder, "run", "aug.onnx")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("apply it with `convspec augment run SPEC IMAGES... -o OUT.npz`")


def test_preview_writes_a_grid_of_samples(photos):
    from PIL import Image

    folder, pixels = photos
    result = run_cli(folder, "augment", "preview", "spec.yaml", "p0.png", "-n", "5", "-o", "grid.png", "--seed", "3")
    assert result.returncode == 0, result.stderr
    grid = np.asarray(Image.open(folder / "grid.png"))
    assert grid.shape == (2 + 2 * (9 + 2), 2 + 3 * (7 + 2), 3)  # 3 columns, 2 rows, 2-pixel gaps
    for k in range(5):
        top, left = 2 + (k // 3) * 11, 2 + (k % 3) * 9
        factor = between(uniform(3, k, 1, 1), 0.7, 1.3)
        want = np.rint(np.clip(pixels[0][:, ::-1] / 255 * factor, 0, 1) * 255)
        assert np.abs(grid[top:top + 9, left:left + 7].astype(int) - want).max() <= 1


def test_run_augments_in_batches_independent_of_the_batch_size(photos):
    folder, pixels = photos
    names = [f"p{k}.png" for k in range(5)]
    assert run_cli(folder, "augment", "run", "spec.yaml", *names, "-o", "a.npz", "--batch", "2").returncode == 0
    result = run_cli(folder, "augment", "run", "spec.yaml", ".", "-o", "b.npz", "--batch", "3", "--progress")
    assert result.returncode == 0, result.stderr
    assert "5/5 images" in result.stderr  # --progress shows the bar though stderr is no terminal
    a, b = np.load(folder / "a.npz")["input"], np.load(folder / "b.npz")["input"]
    np.testing.assert_array_equal(a, b)
    factors = between(uniform(0, np.arange(5), 1, 1), 0.7, 1.3)
    want = (np.clip(np.stack(pixels)[:, :, ::-1].transpose(0, 3, 1, 2) / 255 * factors[:, None, None, None], 0, 1)
            - 0.5) / 0.25
    np.testing.assert_allclose(a, want, atol=1e-5)
    assert "augmenting" not in run_cli(folder, "augment", "run", "spec.yaml", "p0.png", "-o", "c.npz").stderr


@pytest.mark.parametrize("args, code, words", [
    (("augment", "run", "spec.yaml", "missing.png", "-o", "o.npz"), 2, "missing.png: no such file"),
    (("augment", "run", "spec.yaml", "broken.png", "-o", "o.npz"), 2, "broken.png: cannot read the image"),
    (("augment", "run", "spec.yaml", "p0.png", "-o", "o.npy"), 2, "the output is an .npz file"),
    (("augment", "run", "spec.yaml", "p0.png", "-o", "p1.png.npz", "--max-output-bytes", "100"), 2,
     "more than the limit of 100"),
    (("augment", "run", "spec.yaml", "p0.png", "p1.png", "-o", "o.npz", "--max-output-bytes", "2000"), 2,
     "use a smaller --batch"),  # the output fits; a batch in and out does not
    (("augment", "preview", "big.yaml", "p0.png", "-o", "g.png", "-n", "1024"), 2, "use a smaller -n"),
    (("augment", "preview", "spec.yaml", "p0.png", "-o", "p1.png"), 2, "p1.png"),  # exists: --force replaces
    (("augment", "preview", "plain.yaml", "p0.png", "-o", "g.png"), 1, "the spec has no 'augment:' section"),
    (("compile", "spec.yaml", "--augment", "-o", "a.onnx", "--opset", "19"), 2, "--augment needs --opset 20"),
    (("compile", "spec.yaml", "--augment", "-o", "a.onnx", "--quantize", "int8"), 2, "--quantize is for the network"),
])
def test_cli_errors_are_clear(photos, args, code, words):
    folder, _ = photos
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "plain.yaml").write_text("name: plain\ninput: [3, 9, 7]\nlayers: [relu]\n")
    (folder / "big.yaml").write_text(spec("hflip", (3, 256, 256)))
    result = run_cli(folder, *args)
    assert result.returncode == code, result.stderr
    assert words in result.stderr, result.stderr


def test_bundled_alexnet_paper_augments_as_the_paper_does(tmp_path):
    from PIL import Image

    Image.fromarray((np.random.default_rng(1).random((300, 280, 3)) * 255).astype(np.uint8)).save(tmp_path / "i.png")
    result = run_cli(tmp_path, "augment", "run", "alexnet_paper", "i.png", "i.png", "-o", "a.npz")
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "a.npz")["input"].shape == (2, 3, 227, 227)


def test_docs_name_every_transform_and_argument():
    from dataclasses import fields

    from compiler.augment import TRANSFORMS

    text = (Path(__file__).resolve().parent.parent / "docs" / "spec.md").read_text()
    section = text[text.index("## Data augmentation"):text.index("## Conventions")]
    rows = {line.split("|")[1]: line for line in section.splitlines() if line.startswith("| `")}
    for name, cls in TRANSFORMS.items():
        row = next((r for key, r in rows.items() if f"`{name}`" in key), None)
        assert row, f"docs/spec.md's augment table has no row for {name}"
        for f in fields(cls):
            assert f"`{f.name}`" in row, f"docs/spec.md: {name}'s row does not name its argument {f.name}"


def test_check_reads_the_section_without_numpy_or_onnx(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parent.parent
    probe = ("import sys, runpy\nseen = []\n"
             "class Spy:\n    def find_spec(self, name, path=None, target=None):\n"
             "        seen.append(name)\n        return None\n"
             "sys.meta_path.insert(0, Spy())\nsys.argv = ['convspec', 'check', 'alexnet_paper']\n"
             f"try:\n    runpy.run_path({str(root / 'cli.py')!r}, run_name='__main__')\n"
             "except SystemExit as e:\n    print('CODE', e.code, file=sys.stderr)\n"
             "print('IMPORTS', ' '.join(seen), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "CODE 0" in proc.stderr, proc.stderr
    names = next(line for line in proc.stderr.splitlines() if line.startswith("IMPORTS")).split()
    assert "compiler.augment" in names
    assert not {"numpy", "onnx", "onnxruntime"} & set(names)


def test_preview_without_pillow_says_how_to_install_it(photos, monkeypatch):
    folder, _ = photos
    monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` raises ImportError
    result = run_cli(folder, "augment", "preview", "spec.yaml", "p0.png", "-o", "g.png")
    assert result.returncode == 2 and "needs Pillow: pip install pillow" in result.stderr, result.stderr
