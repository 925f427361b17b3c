"""Layers that rearrange values without computing on them: reshape, unflatten, channel_shuffle,
split, chunk, pad, crop. Each follows a PyTorch op (named in its docstring).

None has weights or MACs, and none does arithmetic, so their FLOPs are 0 (pad's constant is
written, not computed). Receptive field: reshape and unflatten mix positions (a map rearranged
into another covers the whole input, like flatten) unless they keep H and W; channel_shuffle,
split and chunk move channels only (pointwise); pad and crop move the map by their first row and
column (arith.Step with span 0, stride 1, offset -top or +top).

split and chunk make several outputs: node `s` gives `s.0`, `s.1`... (compiler/wiring.py).
"""

from __future__ import annotations

from ..arith import Step, padding_arg, pair
from ..errors import LayerArgError
from ..registry import (GLOBAL, NON_NEGATIVE_INT, NUMBER, POSITIVE_INT, SIZE2, Kind, Layer, arg, enum, numel,
                        register, spatial)

SHAPE = Kind({"type": "array", "items": {"type": "integer", "minimum": -1, "not": {"const": 0}},
              "minItems": 1, "maxItems": 3},
             "a shape without the batch, [features] or [C, H, W], of positive integers and at most one -1")
MAX_PARTS = 1024  # the values one split or chunk makes: each is wired by name, so they are bounded like layers
PARTS = Kind({"type": "integer", "minimum": 2, "maximum": MAX_PARTS}, f"an integer from 2 to {MAX_PARTS:,}")
SIZES = Kind({"type": "array", "items": POSITIVE_INT.schema, "minItems": 2, "maxItems": MAX_PARTS},
             f"a list of 2 to {MAX_PARTS:,} positive integers")
SIDES = Kind({"anyOf": [NON_NEGATIVE_INT.schema,
                        {"type": "array", "items": NON_NEGATIVE_INT.schema, "minItems": 2, "maxItems": 2},
                        {"type": "array", "items": NON_NEGATIVE_INT.schema, "minItems": 4, "maxItems": 4}]},
             "an integer >= 0, [h, w] or [top, left, bottom, right]")
OFFSET = Kind({"type": "array", "items": NON_NEGATIVE_INT.schema, "minItems": 2, "maxItems": 2},
              "a list [top, left] of integers >= 0")

def _target(shape, x, layer, what="input") -> tuple:
    """`shape` with its -1 worked out so that it holds as many values as x; the errors say what to change."""
    if len(shape) == 2:
        raise LayerArgError(f"{layer.type_name} shape {list(shape)} has two axes; a shape is [features] or "
                            "[C, H, W]", arg="shape")
    if list(shape).count(-1) > 1:
        raise LayerArgError(f"shape {list(shape)} has more than one -1; only one size can be worked out",
                            arg="shape")
    n, known = numel(x), numel(d for d in shape if d != -1)
    if -1 in shape:
        if n % known:
            raise LayerArgError(f"the {what} {list(x)} holds {n:,} values, which the sizes {list(shape)} "
                                f"cannot hold: {n:,} is not a multiple of {known:,}", arg="shape")
        shape = tuple(n // known if d == -1 else d for d in shape)
    elif known != n:
        raise LayerArgError(f"shape {list(shape)} holds {known:,} values but the {what} {list(x)} holds {n:,}; "
                            "the sizes must multiply to the same count (a -1 works one out)", arg="shape")
    return tuple(shape)


def _moved(x, out):
    """Receptive field of a reshape: pointwise if it keeps H and W, else the whole map."""
    if len(x) == 3 and not (len(out) == 3 and out[1:] == x[1:]):
        return GLOBAL
    return None


@register("reshape")
class Reshape(Layer):
    """Reshape to `shape` without the batch, one size may be -1 (torch.reshape, in C-order)."""

    shape: tuple = arg(SHAPE, "the output shape without the batch: [features] or [C, H, W]; one size may be -1",
                       convert=tuple)
    shorthand = "shape"

    def output_shape(self, x):
        return _target(self.shape, x, self)

    def window(self, x):
        return _moved(x, self.output_shape(x))

    def lower(self, g, ins, shapes, out):
        return g.op("Reshape", [ins[0], g.const([0, *out])])  # 0: keep the batch


@register("unflatten")
class Unflatten(Layer):
    """Unflatten [features] to [features, 1, 1], or to `shape` (nn.Unflatten), e.g. to convolve after a dense layer."""

    shape: tuple | None = arg(SHAPE, "the output shape, [C, H, W] (default [features, 1, 1]); one size may be -1",
                              default=None, convert=tuple)

    def output_shape(self, x):
        if len(x) != 1:
            raise LayerArgError(f"unflatten takes a [features] input, got {list(x)}; use reshape for a "
                                "[C, H, W] one")
        return _target(self.shape or (x[0], 1, 1), x, self)

    def lower(self, g, ins, shapes, out):
        return g.op("Reshape", [ins[0], g.const([0, *out])])


@register("channel_shuffle")
class ChannelShuffle(Layer):
    """Channel shuffle (ShuffleNet): channel i of group g moves to position i * groups + g."""

    groups: int = arg(POSITIVE_INT, "the groups whose channels are interleaved")
    shorthand = "groups"

    def output_shape(self, x):
        c = spatial(x, self)[0]
        if c % self.groups:
            raise LayerArgError(f"{c} channels do not split into {self.groups} equal groups; "
                                "use a number of groups that divides the channels", arg="groups")
        return x

    def lower(self, g, ins, shapes, out):
        # torchvision's channel_shuffle: view as [groups, C/groups], transpose, view back
        c, h, w = shapes[0]
        grouped = g.op("Reshape", [ins[0], g.const([0, self.groups, c // self.groups, h * w])])
        swapped = g.op("Transpose", [grouped], perm=[0, 2, 1, 3])
        return g.op("Reshape", [swapped, g.const([0, c, h, w])])


class Parts(Layer):
    """A layer that splits its input along the channels (or features) into several outputs."""

    def parts(self, channels: int) -> list[int]:
        """The size of each part; raises when the input does not split so."""
        raise NotImplementedError

    def output_shape(self, x):
        self.parts(x[0])
        return x

    def output_shapes(self, x):
        return tuple((n,) + tuple(x[1:]) for n in self.parts(x[0]))

    def lower(self, g, ins, shapes, out):
        sizes = self.parts(shapes[0][0])
        return g.op("Split", [ins[0], g.const(sizes)], outputs=len(sizes), axis=1)


@register("split")
class Split(Parts):
    """Split the channels (or features) into parts of the given `sizes` (torch.split); outputs `name.0`, `name.1`..."""

    sizes: tuple = arg(SIZES, "the size of each part, in order; they add up to the channels", convert=tuple)
    shorthand = "sizes"

    def outputs(self):
        return len(self.sizes)

    def parts(self, channels):
        if sum(self.sizes) != channels:
            raise LayerArgError(f"the sizes {list(self.sizes)} add up to {sum(self.sizes)}, but the input has "
                                f"{channels}; make them add up to {channels}", arg="sizes")
        return list(self.sizes)


@register("chunk")
class Chunk(Parts):
    """Split the channels (or features) into `chunks` parts (torch.chunk): ceil(C/chunks) each, the last the rest."""

    chunks: int = arg(PARTS, "the number of parts; outputs `name.0` ... `name.<chunks - 1>`")
    shorthand = "chunks"

    def outputs(self):
        return self.chunks

    def parts(self, channels):
        size = -(-channels // self.chunks)
        if size * (self.chunks - 1) >= channels:  # torch.chunk would return fewer parts
            raise LayerArgError(f"{channels} channels do not make {self.chunks} chunks of ceil({channels}/"
                                f"{self.chunks}) = {size}: the last would be empty; use split with explicit sizes",
                                arg="chunks")
        return [size] * (self.chunks - 1) + [channels - size * (self.chunks - 1)]


PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}  # PyTorch's -> ONNX's


@register("pad")
class Pad(Layer):
    """Pad the map: a constant `value`, reflect (mirror without the edge) or replicate the edge (F.pad)."""

    padding: tuple = arg(SIDES, "pixels added: p on every side, [h, w], or [top, left, bottom, right]",
                         convert=padding_arg)
    mode: str = arg(enum(*PAD_MODES), "what the new pixels hold", default="constant")
    value: float = arg(NUMBER, "the constant of mode constant", default=0.0)
    shorthand = "padding"

    def output_shape(self, x):
        c, h, w = spatial(x, self)
        t, l, b, r = self.padding
        if self.value != 0 and self.mode != "constant":
            raise LayerArgError("value applies to mode constant only; remove it, or use mode constant",
                                arg="value")
        if self.mode == "reflect":
            for n, pads, axis in ((h, (t, b), "height"), (w, (l, r), "width")):
                if max(pads) >= n:
                    raise LayerArgError(f"reflect padding {max(pads)} must be less than the input {axis} {n} "
                                        "(PyTorch's rule: a mirror reads inside the map); pad less, or use "
                                        "mode replicate or constant", arg="padding")
        return (c, h + t + b, w + l + r)

    def window(self, x):
        t, l, _, _ = self.padding
        return Step((0, 0), (1, 1), (-t, -l))

    def lower(self, g, ins, shapes, out):
        t, l, b, r = self.padding
        value = g.const(self.value, dtype="float32") if self.mode == "constant" else ""
        return g.op("Pad", [ins[0], g.const([0, 0, t, l, 0, 0, b, r]), value], mode=PAD_MODES[self.mode])


@register("crop")
class Crop(Layer):
    """Crop the map to `size`, or to the size of a second input (U-Net's skips): centred, or at `offset`."""

    size: tuple | None = arg(SIZE2, "the output size, s or [h, w]; without it, the second input's height and width",
                             default=None, convert=pair)
    offset: tuple | None = arg(OFFSET, "the first row and column kept (default: centred, an odd extra "
                               "row or column cut at the bottom or right)", default=None, convert=tuple)
    second_input = "the map whose height and width it crops to"

    def _box(self, x, *like):
        """(top, left, height, width) of the kept region."""
        _, h, w = spatial(x, self)
        if like:
            if self.size is not None:
                raise LayerArgError("crop takes its size from its second input or from size, not both; remove "
                                    "size, or the second input", arg="size")
            size = spatial(like[0], self)[1:]
        elif self.size is None:
            raise LayerArgError("crop needs size: [h, w], or a second input to take the size from "
                                "(inputs: [map, like])")
        else:
            size = self.size
        top, left = self.offset or ((h - size[0]) // 2, (w - size[1]) // 2)
        for n, k, start, axis in ((h, size[0], top, "height"), (w, size[1], left, "width")):
            if k > n:
                raise LayerArgError(f"the crop {axis} {k} is more than the input {axis} {n}; crop to at most "
                                    f"{n}, or pad instead", arg="size")
            if start + k > n:
                raise LayerArgError(f"offset {start} plus the crop {axis} {k} passes the input {axis} {n}; use an "
                                    f"offset of at most {n - k}", arg="offset")
        return top, left, size[0], size[1]

    def output_shape(self, x, *like):
        return (x[0],) + self._box(x, *like)[2:]

    def window(self, x, *like):
        top, left, _, _ = self._box(x, *like)
        return Step((0, 0), (1, 1), (top, left))

    def lower(self, g, ins, shapes, out):
        top, left, h, w = self._box(*shapes)
        return g.op("Slice", [ins[0], g.const([top, left]), g.const([top + h, left + w]), g.const([2, 3])])
