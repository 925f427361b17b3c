"""Data augmentation: a spec's `augment:` section, checked, and lowered to its own ONNX graph.

The graph prepares training batches; it is separate from the network's. Its inputs are
`images` [N, C, H, W] (pixels scaled to [0, 1]), `seed` and `offset` (int64 scalars: the dataset
index of the batch's first image). Its outputs are `pixels` (augmented, in [0, 1]) and `input`
(the same, normalised as `preprocess:` says: what the network takes).

Randomness is computed inside the graph from the `seed` input (ONNX's RandomUniform takes its
seed as an attribute, so it could not be an input): each draw is a counter-based hash, lowbias32
on uint32, of (seed, image index, transform, slot). An image's draws therefore depend only on the
seed and its index in the dataset, not on the batch it came in.

Geometric transforms (flips, crops, resizes, padding, rotation, shear, affine) compose into one
warp per image: a 3x3 matrix from output pixels to input pixels, sampled once with AffineGrid and
bilinear GridSample, so nothing is blurred twice. Colour transforms follow, in the spec's order,
on the warped image. Each transform is one class here: its arguments (schema and error words),
its size rule, and its lowering. This module imports neither numpy nor onnx (`check` reads it);
`lower_augment` imports onnx when it runs.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import ClassVar

import jsonschema

from .arith import padding_arg, pair
from .errors import SpecError, did_you_mean, shorten
from .limits import MAX_ELEMENTS
from .preprocess import crop_box
from .registry import Kind, arg, arguments
from .source import Map, Seq

MAX_TRANSFORMS = 64
SLOTS = 8  # random numbers each transform may draw per image
MASK32 = 0xFFFFFFFF
# AlexNet's PCA colour shift: the principal components of ImageNet's RGB pixels (in [0, 1]), as
# published with fb.resnet.torch and used by its re-implementations. The columns are eigenvectors.
IMAGENET_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGENVECTORS = ((-0.5675, 0.7192, 0.4009),
                         (-0.5808, -0.0045, -0.8140),
                         (-0.5836, -0.6948, 0.4203))
GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale

TRANSFORMS: dict[str, type["Transform"]] = {}


# -- argument kinds -------------------------------------------------------------------------------
def _range(item: dict) -> dict:
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": 2, "maxItems": 2}]}


_NUM = {"type": "number"}
_NON_NEG = {"type": "number", "minimum": 0}
PROBABILITY = Kind({"type": "number", "minimum": 0, "maximum": 1}, "a probability from 0 to 1")
SIZE = Kind({"anyOf": [{"type": "integer", "minimum": 1},
                       {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2}]},
            "a positive integer or a list [h, w] of them")
PAD = Kind({"anyOf": [{"type": "integer", "minimum": 0},
                      {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2},
                      {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 4, "maxItems": 4}]},
           "an integer >= 0, [h, w] or [top, left, bottom, right]")
DEGREES = Kind(_range(_NUM), "a number of degrees d (meaning [-d, d]) or a range [low, high]")
_ANGLE = {"type": "number", "exclusiveMinimum": -90, "exclusiveMaximum": 90}  # tan(90 degrees) is infinite
SHEAR = Kind({"anyOf": [_ANGLE, {"type": "array", "items": _ANGLE, "minItems": 2, "maxItems": 2},
                        {"type": "array", "items": _ANGLE, "minItems": 4, "maxItems": 4}]},
             "degrees d (x shear in [-d, d]), a range [low, high] (x), or [x_low, x_high, y_low, y_high], "
             "each between -90 and 90")
FACTOR = Kind(_range(_NON_NEG),
              "a number d >= 0 (meaning [max(0, 1 - d), 1 + d]) or a range [low, high] of numbers >= 0")
HUE = Kind(_range({"type": "number", "minimum": -0.5, "maximum": 0.5}),
           "a number h from 0 to 0.5 (meaning [-h, h]) or a range [low, high] within [-0.5, 0.5]")
AREA = Kind({"type": "array", "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
             "minItems": 2, "maxItems": 2}, "a range [low, high] of fractions in (0, 1]")
RATIO = Kind({"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 2, "maxItems": 2},
             "a range [low, high] of positive numbers")
TRANSLATE = Kind({"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "minItems": 2,
                  "maxItems": 2}, "a list [x, y] of fractions of the width and height, from 0 to 1")
STD = Kind({"type": "number", "minimum": 0}, "a number >= 0")
EIGENVALUES = Kind({"type": "array", "items": _NON_NEG, "minItems": 3, "maxItems": 3},
                   "a list of 3 numbers >= 0")
EIGENVECTORS = Kind({"type": "array", "minItems": 3, "maxItems": 3,
                     "items": {"type": "array", "items": _NUM, "minItems": 3, "maxItems": 3}},
                    "a 3x3 list of numbers (rows R, G, B; one eigenvector per column)")


def _symmetric(v):
    return (-float(v), float(v)) if not isinstance(v, (list, tuple)) else tuple(map(float, v))


def _factor(v):
    return (max(0.0, 1.0 - v), 1.0 + v) if not isinstance(v, (list, tuple)) else tuple(map(float, v))


def _shear(v):
    if not isinstance(v, (list, tuple)):
        return (-float(v), float(v), 0.0, 0.0)
    return tuple(map(float, v)) + ((0.0, 0.0) if len(v) == 2 else ())


def _floats(v):
    return tuple(tuple(map(float, row)) if isinstance(row, (list, tuple)) else float(row) for row in v)


# -- the transforms ---------------------------------------------------------------------------------
class Transform:
    """Base of the transform types. Geometric ones give a matrix, colour ones a new image."""

    type_name: ClassVar[str]
    geometric: ClassVar[bool] = False
    fills: ClassVar[bool] = False  # may show what lies outside the image (black): the warp pads with zeros
    rgb: ClassVar[bool] = False  # needs three channels
    p: float = 1.0  # a transform without a `p` argument applies to every image

    def out_size(self, hw: tuple) -> tuple:
        """The output's [h, w] for an input of `hw`; raise ValueError(message, argument) if it cannot."""
        return hw

    def matrix(self, r: "Ops", hw: tuple, out: tuple):
        """(geometric) 3x3 rows mapping an output pixel (x, y, 1) to the input point it samples."""
        raise NotImplementedError

    def colour(self, r: "Ops", x: str) -> str:
        """(colour) the transformed [N, C, H, W] image."""
        raise NotImplementedError

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]

    @classmethod
    def args_schema(cls) -> dict:
        props = {f.name: dict(f.metadata["kind"].schema, description=f.metadata["doc"]) for f in fields(cls)}
        schema = {"type": "object", "properties": props, "additionalProperties": False}
        required = [f.name for f in fields(cls) if f.default is MISSING]
        return dict(schema, required=required) if required else schema


def transform(name: str):
    def wrap(cls):
        cls = arguments(cls)
        cls.type_name = name
        TRANSFORMS[name] = cls
        return cls

    return wrap


def _gate(default: float):
    return arg(PROBABILITY, f"probability of applying it to an image (default {default})", default=default)


@transform("hflip")
class HFlip(Transform):
    """Mirror left to right (AlexNet's horizontal reflections)."""

    geometric = True
    p: float = _gate(0.5)

    def matrix(self, r, hw, out):
        return ((-1.0, 0.0, float(hw[1])), (0.0, 1.0, 0.0))


@transform("vflip")
class VFlip(Transform):
    """Mirror top to bottom."""

    geometric = True
    p: float = _gate(0.5)

    def matrix(self, r, hw, out):
        return ((1.0, 0.0, 0.0), (0.0, -1.0, float(hw[0])))


@transform("random_crop")
class RandomCrop(Transform):
    """A crop of `size` at a random whole-pixel position, of the image padded with zeros by `padding`."""

    geometric = True
    size: tuple = arg(SIZE, "crop size, s or [h, w]", convert=pair)
    padding: tuple = arg(PAD, "zeros added around the image first: p, [h, w] or [top, left, bottom, right]",
                         default=0, convert=padding_arg)

    @property
    def fills(self):
        return any(self.padding)

    def padded(self, hw):
        top, left, bottom, right = self.padding
        return hw[0] + top + bottom, hw[1] + left + right

    def out_size(self, hw):
        room = self.padded(hw)
        if self.size[0] > room[0] or self.size[1] > room[1]:
            raise ValueError(f"the crop {list(self.size)} is larger than the {'padded ' if any(self.padding) else ''}"
                             f"image {list(room)}; crop less or pad more", "size")
        return self.size

    def matrix(self, r, hw, out):
        room = self.padded(hw)
        top, left = self.padding[:2]
        # a whole pixel from 0 to room - size, each with probability 1 / (room - size + 1)
        dy = r.sub(r.floor(r.mul(r.uniform(1), float(room[0] - out[0] + 1))), float(top))
        dx = r.sub(r.floor(r.mul(r.uniform(2), float(room[1] - out[1] + 1))), float(left))
        return ((1.0, 0.0, dx), (0.0, 1.0, dy))


@transform("center_crop")
class CenterCrop(Transform):
    """The centre `size` of the image (torchvision's rounding of the offset)."""

    geometric = True
    size: tuple = arg(SIZE, "crop size, s or [h, w]", convert=pair)

    def out_size(self, hw):
        if self.size[0] > hw[0] or self.size[1] > hw[1]:
            raise ValueError(f"the crop {list(self.size)} is larger than the image {list(hw)}; crop less, "
                             "or pad first", "size")
        return self.size

    def matrix(self, r, hw, out):
        top, left, _, _ = crop_box(hw, out)
        return ((1.0, 0.0, float(left)), (0.0, 1.0, float(top)))


@transform("random_resized_crop")
class RandomResizedCrop(Transform):
    """A crop of random area and aspect ratio, resized to `size` (Inception's scale augmentation)."""

    geometric = True
    size: tuple = arg(SIZE, "output size, s or [h, w]", convert=pair)
    scale: tuple = arg(AREA, "range of the crop's area, as a fraction of the image's", default=(0.08, 1.0),
                       convert=tuple)
    ratio: tuple = arg(RATIO, "range of the crop's aspect ratio, width / height (drawn log-uniformly)",
                       default=(0.75, 4 / 3), convert=tuple)

    def out_size(self, hw):
        return self.size

    def matrix(self, r, hw, out):
        h, w = float(hw[0]), float(hw[1])
        area = r.mul(r.between(r.uniform(1), *self.scale), h * w)
        aspect = r.exp(r.between(r.uniform(2), math.log(self.ratio[0]), math.log(self.ratio[1])))
        # One draw, no rejection: a crop wider or taller than the image is cut to fit.
        cw = r.min(r.sqrt(r.mul(area, aspect)), w)
        ch = r.min(r.sqrt(r.div(area, aspect)), h)
        left = r.mul(r.uniform(3), r.sub(w, cw))
        top = r.mul(r.uniform(4), r.sub(h, ch))
        return ((r.div(cw, float(out[1])), 0.0, left), (0.0, r.div(ch, float(out[0])), top))


@transform("resize")
class Resize(Transform):
    """Resize to `size`, bilinear (no antialiasing: shrink by at most 2x per step for a clean result)."""

    geometric = True
    size: tuple = arg(SIZE, "output size, s or [h, w]", convert=pair)

    def out_size(self, hw):
        return self.size

    def matrix(self, r, hw, out):
        return ((hw[1] / out[1], 0.0, 0.0), (0.0, hw[0] / out[0], 0.0))


@transform("pad")
class Pad(Transform):
    """Add a border of zeros."""

    geometric = True
    fills = True
    padding: tuple = arg(PAD, "p, [h, w] or [top, left, bottom, right]", convert=padding_arg)

    def out_size(self, hw):
        top, left, bottom, right = self.padding
        return hw[0] + top + bottom, hw[1] + left + right

    def matrix(self, r, hw, out):
        return ((1.0, 0.0, -float(self.padding[1])), (0.0, 1.0, -float(self.padding[0])))


def affine_matrix(r: "Ops", hw, angle, translate, scale, shear_x, shear_y):
    """torchvision's affine (angle clockwise, degrees; shear in degrees; about the image's centre),
    inverted: the output-to-input map, built as its _get_inverse_affine_matrix does."""
    rot, sx, sy = (r.mul(a, math.pi / 180) for a in (angle, shear_x, shear_y))
    cos_sy = r.cos(sy)
    rs = r.sub(rot, sy)
    a = r.div(r.cos(rs), cos_sy)
    b = r.sub(r.neg(r.div(r.mul(r.cos(rs), r.tan(sx)), cos_sy)), r.sin(rot))
    c = r.div(r.sin(rs), cos_sy)
    d = r.add(r.neg(r.div(r.mul(r.sin(rs), r.tan(sx)), cos_sy)), r.cos(rot))
    inv = [[r.div(d, scale), r.div(r.neg(b), scale)], [r.div(r.neg(c), scale), r.div(a, scale)]]
    cx, cy = hw[1] / 2, hw[0] / 2
    tx, ty = translate
    # input = centre + inv @ (output - centre - translate)
    ox = r.sub(cx, r.add(r.mul(inv[0][0], r.add(cx, tx)), r.mul(inv[0][1], r.add(cy, ty))))
    oy = r.sub(cy, r.add(r.mul(inv[1][0], r.add(cx, tx)), r.mul(inv[1][1], r.add(cy, ty))))
    return ((inv[0][0], inv[0][1], ox), (inv[1][0], inv[1][1], oy))


@transform("rotate")
class Rotate(Transform):
    """Rotate about the centre by a random angle, counter-clockwise (torchvision's rotate); corners fill with zeros."""

    geometric = True
    fills = True
    degrees: tuple = arg(DEGREES, "angle range in degrees, counter-clockwise", convert=_symmetric)
    p: float = _gate(1.0)

    def matrix(self, r, hw, out):
        angle = r.between(r.uniform(1), *self.degrees)
        return affine_matrix(r, hw, r.neg(angle), (0.0, 0.0), 1.0, 0.0, 0.0)


@transform("shear")
class Shear(Transform):
    """Shear about the centre by random angles (torchvision's affine shear); what leaves fills with zeros."""

    geometric = True
    fills = True
    degrees: tuple = arg(SHEAR, "x shear d or [low, high], or [x_low, x_high, y_low, y_high], in degrees",
                         convert=_shear)
    p: float = _gate(1.0)

    def matrix(self, r, hw, out):
        x_lo, x_hi, y_lo, y_hi = self.degrees
        return affine_matrix(r, hw, 0.0, (0.0, 0.0), 1.0, r.between(r.uniform(1), x_lo, x_hi),
                             r.between(r.uniform(2), y_lo, y_hi))


@transform("affine")
class Affine(Transform):
    """Rotation, translation, scaling and shear in one (torchvision's RandomAffine; angle clockwise)."""

    geometric = True
    fills = True
    degrees: tuple = arg(DEGREES, "angle range in degrees, clockwise", default=0, convert=_symmetric)
    translate: tuple = arg(TRANSLATE, "largest shift [x, y] as fractions of the width and height",
                           default=(0, 0), convert=tuple)
    scale: tuple = arg(RATIO, "range of the zoom factor", default=(1, 1), convert=tuple)
    shear: tuple = arg(SHEAR, "x shear d or [low, high], or [x_low, x_high, y_low, y_high], in degrees",
                       default=0, convert=_shear)
    p: float = _gate(1.0)

    def matrix(self, r, hw, out):
        angle = r.between(r.uniform(1), *self.degrees)
        mx, my = self.translate[0] * hw[1], self.translate[1] * hw[0]
        tx, ty = r.between(r.uniform(2), -mx, mx), r.between(r.uniform(3), -my, my)
        zoom = r.between(r.uniform(4), *self.scale)
        sx = r.between(r.uniform(5), *self.shear[:2])
        sy = r.between(r.uniform(6), *self.shear[2:])
        return affine_matrix(r, hw, angle, (tx, ty), zoom, sx, sy)


@transform("brightness")
class Brightness(Transform):
    """Multiply by a random factor (torchvision's adjust_brightness), clipped to [0, 1]."""

    factor: tuple = arg(FACTOR, "range of the factor; 0.4 means [0.6, 1.4]", convert=_factor)
    p: float = _gate(1.0)

    def colour(self, r, x):
        return r.clip(r.mul(x, r.per_image(r.between(r.uniform(1), *self.factor))))


@transform("contrast")
class Contrast(Transform):
    """Blend with the image's mean grey by a random factor (torchvision's adjust_contrast), clipped."""

    factor: tuple = arg(FACTOR, "range of the factor; 0.4 means [0.6, 1.4]", convert=_factor)
    p: float = _gate(1.0)

    def colour(self, r, x):
        mean = r.g.op("ReduceMean", [r.gray(x), r.g.const([1, 2, 3])], keepdims=1)
        return r.clip(r.blend(x, mean, r.per_image(r.between(r.uniform(1), *self.factor))))


@transform("saturation")
class Saturation(Transform):
    """Blend with the image's grey version by a random factor (torchvision's adjust_saturation), clipped."""

    rgb = True
    factor: tuple = arg(FACTOR, "range of the factor; 0.4 means [0.6, 1.4]", convert=_factor)
    p: float = _gate(1.0)

    def colour(self, r, x):
        return r.clip(r.blend(x, r.gray(x), r.per_image(r.between(r.uniform(1), *self.factor))))


@transform("hue")
class Hue(Transform):
    """Shift the hue by a random fraction of the colour circle (torchvision's adjust_hue, through HSV)."""

    rgb = True
    shift: tuple = arg(HUE, "range of the shift; 0.1 means [-0.1, 0.1]", convert=_symmetric)
    p: float = _gate(1.0)

    def colour(self, r, x):
        return r.hue(x, r.per_image(r.between(r.uniform(1), *self.shift)))


@transform("grayscale")
class Grayscale(Transform):
    """Replace the colour by its grey (luma), in all three channels."""

    rgb = True
    p: float = _gate(0.1)

    def colour(self, r, x):
        return r.g.op("Expand", [r.gray(x), r.g.op("Shape", [x])])


@transform("pca_color")
class PcaColor(Transform):
    """AlexNet's colour shift: add sum_i alpha_i lambda_i v_i to every pixel, alpha_i ~ N(0, std)."""

    rgb = True
    std: float = arg(STD, "standard deviation of alpha (AlexNet: 0.1)", default=0.1)
    eigenvalues: tuple = arg(EIGENVALUES, "lambda: the RGB covariance's eigenvalues (default: ImageNet's)",
                             default=IMAGENET_EIGENVALUES, convert=_floats)
    eigenvectors: tuple = arg(EIGENVECTORS, "v: its eigenvectors, one per column (default: ImageNet's)",
                              default=IMAGENET_EIGENVECTORS, convert=_floats)
    p: float = _gate(1.0)

    def colour(self, r, x):
        alphas = [r.mul(r.normal(1 + 2 * i, 2 + 2 * i), self.std * self.eigenvalues[i]) for i in range(3)]
        shift = [r.add(r.add(r.mul(alphas[0], self.eigenvectors[c][0]), r.mul(alphas[1], self.eigenvectors[c][1])),
                       r.mul(alphas[2], self.eigenvectors[c][2])) for c in range(3)]
        rgb = r.g.op("Concat", [r.g.op("Unsqueeze", [s, r.g.const([1])]) for s in shift], axis=1)
        return r.g.op("Add", [x, r.g.op("Unsqueeze", [rgb, r.g.const([2, 3])])])


# -- the section ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Augment:
    """A checked `augment:` section."""

    channels: int
    size: tuple  # [h, w] the images come in at
    out: tuple  # [h, w] of the augmented images: the network's input
    transforms: tuple  # Transform instances, geometric first
    sizes: tuple  # (in, out) [h, w] of each transform
    normalise: tuple  # (scale * 255, mean, std): pixels in [0, 1] -> the network's input

    @property
    def fills(self) -> bool:
        return any(t.fills for t in self.transforms if t.geometric)


SECTION_KEYS = {"size": "the [h, w] images are resized to before augmenting (default: the input's)",
                "transforms": "the transforms, in order: geometric ones first, then colour ones"}


def section_schema() -> dict:
    """The JSON Schema of `augment:` (for editors; `plan` checks it with its own words)."""
    item = {"anyOf": [{"enum": list(TRANSFORMS)},
                      {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
                       "properties": {name: {"anyOf": [cls.args_schema(), {"type": "null"}],
                                             "description": cls.summary()} for name, cls in TRANSFORMS.items()}}],
            "description": "a transform: `name`, or `name: {arguments}`"}
    return {"type": "object", "description": "data augmentation at training time: `convspec compile --augment`",
            "additionalProperties": False, "required": ["transforms"],
            "properties": {"size": dict(SIZE.schema, description=SECTION_KEYS["size"]),
                           "transforms": {"type": "array", "items": item, "minItems": 1,
                                          "maxItems": MAX_TRANSFORMS, "description": SECTION_KEYS["transforms"]}}}


def plan(section, input_shape: tuple, preprocess: dict | None) -> Augment:
    """Check `augment:` against the spec's input; every error names the key or transform at fault."""
    where = section.where if isinstance(section, (Map, Seq)) else None
    if not isinstance(section, Map):
        raise SpecError(f"'augment' must be a mapping with 'transforms' (and 'size'); got {shorten(section)}", where)
    for key in section:
        if key not in SECTION_KEYS:
            hint = did_you_mean(str(key), SECTION_KEYS) or f"; allowed: {', '.join(SECTION_KEYS)}"
            raise SpecError(f"unknown key '{key}' in 'augment'{hint}", section.key_at.get(key, where))
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise SpecError(f"'augment' transforms images, but the input is {list(input_shape)}; an image input is "
                        "[1 or 3, H, W]", where)
    channels, height, width = input_shape
    size = (height, width)
    if "size" in section:
        _check(SIZE, section["size"], "'augment.size'", section.value_at["size"])
        size = pair(section["size"])
        if channels * size[0] * size[1] > MAX_ELEMENTS:
            raise SpecError(f"'augment.size' {list(size)} makes {channels * size[0] * size[1]:,} values per image, "
                            f"more than {MAX_ELEMENTS:,}; use a smaller size", section.value_at["size"])
    items = section.get("transforms")
    if not isinstance(items, Seq) or not 1 <= len(items) <= MAX_TRANSFORMS:
        raise SpecError(f"'augment.transforms' must be a list of 1 to {MAX_TRANSFORMS} transforms, like "
                        f"[hflip, {{random_crop: {{size: 224}}}}]; got {shorten(items)}",
                        section.value_at.get("transforms", where))
    transforms, sizes, hw, colour_seen = [], [], size, None
    for k, item in enumerate(items):
        at = items.item_at[k]
        t, arg_at = _transform(item, at, k)
        if t.geometric and colour_seen:
            raise SpecError(f"'{t.type_name}' follows the colour transform '{colour_seen}'; put geometric transforms "
                            "first (they form one warp, applied before the colour transforms)", at)
        if t.rgb and channels != 3:
            raise SpecError(f"'{t.type_name}' needs a colour image, but the input has {channels} channel; remove it",
                            at)
        if not t.geometric:
            colour_seen = t.type_name
        try:
            out = tuple(t.out_size(hw))
        except ValueError as e:
            message, name = e.args
            raise SpecError(f"transform '{t.type_name}': {message}", arg_at.get(name, at)) from None
        sizes.append((hw, out))
        transforms.append(t)
        hw = out
    if tuple(hw) != (height, width):
        raise SpecError(f"the transforms make {hw[0]}x{hw[1]} images, but the input is {height}x{width}; end with a "
                        f"crop or resize to {height}x{width} (or set augment.size)", section.value_at["transforms"])
    pre = preprocess or {}
    scale = float(pre.get("scale", 1 / 255)) * 255  # the network's input is (pixel * scale - mean) / std
    mean, std = (tuple(float(v) for v in pre.get(key, [d])) for key, d in (("mean", 0.0), ("std", 1.0)))
    return Augment(channels, size, tuple(hw), tuple(transforms), tuple(sizes), (scale, mean, std))


# JSON Schema counts 8.0 (and 1e30) as an integer; a size of 8.0 is a mistake worth naming.
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=(
    jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, v: isinstance(v, int) and not isinstance(v, bool))))
LARGEST = 1e6  # any number in the section: beyond it float32 arithmetic (and sense) ends


def _check(kind: Kind, value, subject: str, where) -> None:
    # no boolean is a number to jsonschema; the loader has refused .nan and .inf already
    if not _Validator(kind.schema).is_valid(value):
        raise SpecError(f"{subject} must be {kind.expects}; got {shorten(value)}", where)
    if any(abs(v) > LARGEST for v in _numbers(value)):
        raise SpecError(f"{subject} holds a number beyond {LARGEST:g}; got {shorten(value)}", where)


def _numbers(value):
    return [x for v in value for x in _numbers(v)] if isinstance(value, list) else [value]


def _transform(item, at, k: int):
    """One list item: `name` or `{name: {arguments}}` -> (Transform, argument -> Location)."""
    if isinstance(item, str):
        name, args = item, Map()
    elif isinstance(item, Map) and len(item) == 1:
        name, args = next(iter(item.items()))
        at = item.key_at.get(name, at)
        args = Map() if args is None else args
    else:
        raise SpecError(f"'augment.transforms[{k}]' must be a transform name or {{name: {{arguments}}}} with one "
                        f"name; got {shorten(item)}", at)
    if name not in TRANSFORMS:
        hint = did_you_mean(str(name), TRANSFORMS) or f"; the transforms are {', '.join(TRANSFORMS)}"
        raise SpecError(f"unknown transform '{name}'{hint}", at)
    cls = TRANSFORMS[name]
    if not isinstance(args, Map):
        first = fields(cls)[0].name  # `pad: 4` most likely meant its first argument
        raise SpecError(f"the arguments of '{name}' must be a mapping, like {{{first}: {shorten(args)}}}; got "
                        f"{shorten(args)}", at)
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in args.items():
        if key not in known:
            hint = did_you_mean(str(key), known) or f"; its arguments are {', '.join(known)}"
            raise SpecError(f"unknown argument '{key}' for {name}{hint}", args.key_at.get(key, at))
        f = known[key]
        _check(f.metadata["kind"], value, f"argument '{key}' of {name}", args.value_at.get(key, at))
        values[key] = value
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in values]
    if missing:
        f = known[missing[0]]
        raise SpecError(f"{name} is missing the required argument '{f.name}' ({f.metadata['doc']})", at)
    typed = {}
    for f in fields(cls):
        value = values.get(f.name, f.default)
        convert = f.metadata["convert"]
        typed[f.name] = convert(value) if convert and value is not None else value
    arg_at = {key: args.value_at.get(key, at) for key in values}
    _check_ranges(name, typed, arg_at, at)
    return cls(**typed), arg_at


def _check_ranges(name: str, typed: dict, arg_at: dict, at) -> None:
    """A range [low, high] must not run backwards; the error points at it."""
    for key, value in typed.items():
        if key in ("degrees", "factor", "shift", "scale", "ratio", "shear") and isinstance(value, tuple):
            for lo, hi in zip(value[::2], value[1::2]):
                if lo > hi:
                    raise SpecError(f"argument '{key}' of {name}: the range [{lo:g}, {hi:g}] runs backwards; "
                                    f"write [{hi:g}, {lo:g}]", arg_at.get(key, at))


# -- lowering -----------------------------------------------------------------------------------------
def hash32(x: int) -> int:
    """lowbias32 (Chris Wellons' integer hash), the function the graph computes on uint32."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


class Ops:
    """ONNX arithmetic on per-image values ([N] float tensors) and Python floats, folded where
    both sides are numbers, plus the draws of the transform being lowered."""

    def __init__(self, g, channels: int, zero: str):
        self.g, self.channels, self.zero = g, channels, zero  # zero: [N] zeros, to broadcast a number
        self.key = ""  # the per-image uint32 hash all draws start from
        self.index = 0  # the transform being lowered

    def uniform(self, slot: int) -> str:
        """[N] uniform numbers in [0, 1): 24 bits of hash(key ^ hash(counter))."""
        counter = hash32(self.index * SLOTS + slot + 1)
        h = self.hash(self.g.op("BitwiseXor", [self.key, self.g.const(counter, "uint32")]))
        bits = self.g.op("BitShift", [h, self.g.const(8, "uint32")], direction="RIGHT")
        return self.mul(self.g.op("Cast", [bits], to=1), 2.0 ** -24)

    def hash(self, x: str) -> str:
        g = self.g
        for shift, factor in ((16, 0x7FEB352D), (15, 0x846CA68B), (16, None)):
            x = g.op("BitwiseXor", [x, g.op("BitShift", [x, g.const(shift, "uint32")], direction="RIGHT")])
            if factor:
                x = g.op("Mul", [x, g.const(factor, "uint32")])  # uint32 wraps modulo 2**32
        return x

    def normal(self, slot_a: int, slot_b: int) -> str:
        """[N] standard normal numbers (Box-Muller on two uniforms)."""
        radius = self.sqrt(self.mul(self.log(self.sub(1.0, self.uniform(slot_a))), -2.0))
        return self.mul(radius, self.cos(self.mul(self.uniform(slot_b), 2 * math.pi)))

    def between(self, u, lo: float, hi: float):
        return lo if lo == hi else self.add(self.mul(u, hi - lo), lo)

    # -- arithmetic, folding constants ---------------------------------------------------------------
    def value(self, v) -> str:
        return v if isinstance(v, str) else self.g.const(float(v), "float32")

    def _binary(self, op, a, b, fold):
        if not isinstance(a, str) and not isinstance(b, str):
            return fold(a, b)
        return self.g.op(op, [self.value(a), self.value(b)])

    def add(self, a, b):
        if b == 0 and not isinstance(b, str):
            return a
        if a == 0 and not isinstance(a, str):
            return b
        return self._binary("Add", a, b, lambda x, y: x + y)

    def sub(self, a, b):
        return a if (b == 0 and not isinstance(b, str)) else self._binary("Sub", a, b, lambda x, y: x - y)

    def mul(self, a, b):
        for x, y in ((a, b), (b, a)):
            if not isinstance(x, str) and x == 0:
                return 0.0
            if not isinstance(x, str) and x == 1:
                return y
        return self._binary("Mul", a, b, lambda x, y: x * y)

    def div(self, a, b):
        return a if (b == 1 and not isinstance(b, str)) else self._binary("Div", a, b, lambda x, y: x / y)

    def neg(self, a):
        return self.mul(a, -1.0)

    def min(self, a, b):
        return self._binary("Min", a, b, min)

    def _unary(self, op, fold, a):
        return fold(a) if not isinstance(a, str) else self.g.op(op, [a])

    def sin(self, a): return self._unary("Sin", math.sin, a)
    def cos(self, a): return self._unary("Cos", math.cos, a)
    def tan(self, a): return self._unary("Tan", math.tan, a)
    def exp(self, a): return self._unary("Exp", math.exp, a)
    def sqrt(self, a): return self._unary("Sqrt", math.sqrt, a)
    def log(self, a): return self._unary("Log", math.log, a)
    def floor(self, a): return self._unary("Floor", math.floor, a)

    # -- images -----------------------------------------------------------------------------------------
    def per_image(self, v) -> str:
        """A per-image value as [N, 1, 1, 1], to scale an image batch."""
        return self.g.op("Unsqueeze", [self.add(self.zero, v) if not isinstance(v, str) else v,
                                       self.g.const([1, 2, 3])])

    def clip(self, x: str) -> str:
        return self.g.op("Clip", [x, self.g.const(0.0, "float32"), self.g.const(1.0, "float32")])

    def blend(self, x: str, other: str, factor: str) -> str:
        """factor * x + (1 - factor) * other."""
        return self.g.op("Add", [self.g.op("Mul", [factor, self.g.op("Sub", [x, other])]), other])

    def split(self, x: str, n: int) -> list[str]:
        """The n channels of x, each [N, 1, H, W]: one Split with n named outputs."""
        out = self.g.op("Split", [x, self.g.const([1] * n)], axis=1)
        self.g.nodes[-1].output[:] = [f"{out}:{i}" for i in range(n)]
        return [f"{out}:{i}" for i in range(n)]

    def gray(self, x: str) -> str:
        """[N, 1, H, W] luma; a one-channel image is its own."""
        if self.channels == 1:
            return x
        r, gr, b = self.split(x, 3)
        g = self.g
        return g.op("Add", [g.op("Add", [self.mul(r, GRAY[0]), self.mul(gr, GRAY[1])]), self.mul(b, GRAY[2])])

    def hue(self, x: str, shift: str) -> str:
        """torchvision's _rgb2hsv, a hue shift modulo 1, and _hsv2rgb, in ONNX ops."""
        g = self.g
        r, gr, b = self.split(x, 3)
        maxc = g.op("Max", [r, gr, b])
        minc = g.op("Min", [r, gr, b])
        equal = g.op("Equal", [maxc, minc])
        one = self.value(1.0)
        span = g.op("Sub", [maxc, minc])
        sat = g.op("Div", [span, g.op("Where", [equal, one, maxc])])
        divisor = g.op("Where", [equal, one, span])
        rc, gc, bc = (g.op("Div", [g.op("Sub", [maxc, c]), divisor]) for c in (r, gr, b))
        is_r = g.op("Equal", [maxc, r])
        is_g = g.op("And", [g.op("Equal", [maxc, gr]), g.op("Not", [is_r])])
        h = g.op("Where", [is_r, g.op("Sub", [bc, gc]),
                           g.op("Where", [is_g, self.add(g.op("Sub", [rc, bc]), 2.0),
                                          self.add(g.op("Sub", [gc, rc]), 4.0)])])
        h = self.fraction(g.op("Add", [self.add(self.div(h, 6.0), 1.0), shift]))
        # back to RGB: sector i of six, fraction f within it
        h6 = self.mul(h, 6.0)
        sector = g.op("Floor", [h6])
        f = g.op("Sub", [h6, sector])
        sector = g.op("Mod", [g.op("Cast", [sector], to=7), g.const(6)])
        v = maxc
        p = self.clip(g.op("Mul", [v, self.sub(1.0, sat)]))
        q = self.clip(g.op("Mul", [v, self.sub(1.0, g.op("Mul", [sat, f]))]))
        t = self.clip(g.op("Mul", [v, self.sub(1.0, g.op("Mul", [sat, self.sub(1.0, f)]))]))
        table = ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))
        out = []
        for row in table:
            value = row[5]
            for i in range(4, -1, -1):
                value = g.op("Where", [g.op("Equal", [sector, g.const(i)]), row[i], value])
            out.append(value)
        return g.op("Concat", out, axis=1)

    def fraction(self, x: str) -> str:
        """x modulo 1, into [0, 1)."""
        return self.g.op("Sub", [x, self.g.op("Floor", [x])])


def _matmul(r: Ops, a, b):
    """Two 3x3 matrices whose last row is (0, 0, 1), given as their first two rows."""
    return tuple(tuple(r.add(r.add(r.mul(a[i][0], b[0][j]), r.mul(a[i][1], b[1][j])),
                             r.mul(a[i][2], 1.0 if j == 2 else 0.0)) for j in range(3)) for i in range(2))


IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))


def lower_augment(plan: Augment, name: str, opset: int = 21):
    """The augmentation graph as an onnx.ModelProto."""
    from onnx import TensorProto, helper

    from .lower import Builder, opset_ir_version

    g = Builder()
    g.begin("augment.random", {})  # each image's key: hash(hash(seed) ^ its index in the dataset)
    n = g.op("Shape", ["images"], start=0, end=1)
    index = g.op("Add", ["offset", g.op("Range", [g.const(0), g.op("Squeeze", [n]), g.const(1)])])
    to_u32 = lambda v: g.op("Cast", [g.op("BitwiseAnd", [v, g.const(MASK32)])], to=TensorProto.UINT32)  # noqa: E731
    zero = g.op("Cast", [g.op("Mul", [index, g.const(0)])], to=TensorProto.FLOAT)
    r = Ops(g, plan.channels, zero)
    r.key = r.hash(g.op("BitwiseXor", [r.hash(to_u32("seed")), to_u32(index)]))
    x, warp = "images", IDENTITY
    steps = list(enumerate(zip(plan.transforms, plan.sizes)))
    for k, (t, (hw, out)) in steps:  # geometric transforms come first (plan checks it): one warp
        if t.geometric:
            g.begin(f"augment.{k}.{t.type_name}", {})
            r.index = k
            m = t.matrix(r, hw, out)
            if t.p < 1:
                gate = g.op("Less", [r.uniform(0), r.value(t.p)])
                m = tuple(tuple(v if v == e and not isinstance(v, str) else
                                g.op("Where", [gate, r.value(v), r.value(e)]) for v, e in zip(row, identity_row))
                          for row, identity_row in zip(m, IDENTITY))
            warp = _matmul(r, warp, m)  # output -> ... -> input: earlier transforms on the left
    if warp is not IDENTITY:
        x = _resample(g, r, x, warp, plan)
    for k, (t, _) in steps:
        if not t.geometric:
            g.begin(f"augment.{k}.{t.type_name}", {})
            r.index = k
            y = t.colour(r, x)
            if t.p < 1:
                gate = g.op("Unsqueeze", [g.op("Less", [r.uniform(0), r.value(t.p)]), g.const([1, 2, 3])])
                y = g.op("Where", [gate, y, x])
            x = y
    g.begin("augment.output", {})
    g.op("Identity", [x])
    g.nodes[-1].output[0] = "pixels"  # the graph's outputs carry plain names
    scale, mean, std = plan.normalise
    g.op("Div", [g.op("Sub", [g.op("Mul", ["pixels", g.const(scale, "float32")]),
                              g.const([[[m]] for m in mean], "float32")]), g.const([[[s]] for s in std], "float32")])
    g.nodes[-1].output[0] = "input"
    c, (h, w), (oh, ow) = plan.channels, plan.size, plan.out
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", c, h, w]),
              helper.make_tensor_value_info("seed", TensorProto.INT64, []),
              helper.make_tensor_value_info("offset", TensorProto.INT64, [])]
    outputs = [helper.make_tensor_value_info(v, TensorProto.FLOAT, ["batch", c, oh, ow]) for v in ("pixels", "input")]
    graph = helper.make_graph(g.nodes, f"{name}.augment", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=opset_ir_version(opset), producer_name="convspec")
    helper.set_model_props(model, {"convspec.spec": name, "convspec.augment": "1"})
    model.doc_string = f"data augmentation for {name}: images, seed, offset -> pixels, input"
    return model


def _resample(g, r: Ops, x: str, warp, plan: Augment) -> str:
    """Sample `x` through the pixel-space warp: AffineGrid's theta is in normalised coordinates."""
    (h, w), (oh, ow) = plan.size, plan.out
    # normalised output -> output pixels -> (warp) -> input pixels -> normalised input
    to_pixels = ((ow / 2, 0.0, ow / 2), (0.0, oh / 2, oh / 2))
    to_normal = ((2 / w, 0.0, -1.0), (0.0, 2 / h, -1.0))
    theta = _matmul(r, to_normal, _matmul(r, warp, to_pixels))
    entries = [g.op("Unsqueeze", [r.add(r.zero, v) if not isinstance(v, str) else v, g.const([1])])
               for row in theta for v in row]
    theta = g.op("Reshape", [g.op("Concat", entries, axis=1), g.const([-1, 2, 3])])
    size = g.op("Concat", [g.op("Shape", [x], start=0, end=2), g.const([oh, ow])], axis=0)
    grid = g.op("AffineGrid", [theta, size], align_corners=0)
    # A warp that may show what lies outside the image fills it with zeros; one that cannot
    # (flips, crops, resizes) clamps at the border, as a resize does, so edges stay bright.
    return g.op("GridSample", [x, grid], mode="linear", align_corners=0,
                padding_mode="zeros" if plan.fills else "border")
