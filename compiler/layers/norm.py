"""Normalisation: batchnorm, layernorm, groupnorm, instancenorm, lrn (local response), lcn
(local contrast); and layer_scale, the learned per-channel scale that ConvNeXt puts after them.

FLOPs per element at inference: batchnorm 2 (scale and shift, the statistics folded);
layernorm, groupnorm and instancenorm 5 (the mean's add, subtract, square, the variance's add,
multiply by the inverse deviation; the one square root per group is not counted), plus 2 with
`affine` (scale and shift), and instancenorm with running statistics 2, as batchnorm;
layer_scale 1 (a multiply);
lrn 2*size + 3 (squares and sum over the channel window, then scale, power and divide);
lcn with w = size*size window taps (times the channels when across_channels):
subtractive w + 1, divisive 2w + 2, full 3w + 3.

The affine weights are PyTorch's: `weight` (the scale, initially 1) and `bias` (the shift,
initially 0), one per channel, so torchvision's state_dicts load by name.
"""

from __future__ import annotations

from ..arith import Step, Window
from ..errors import LayerArgError
from ..registry import (BOOL, NUMBER, POSITIVE_INT, POSITIVE_NUMBER, Layer, Weight, arg, enum, numel, register,
                        spatial)


@register("batchnorm")
class BatchNorm(Layer):
    """Batch normalisation over the channels (or features); running statistics are non-trainable."""

    eps: float = arg(POSITIVE_NUMBER, "added to the variance", default=1e-5)
    momentum: float = arg(NUMBER, "running-statistics momentum (training only, recorded)", default=0.1)

    def output_shape(self, x):
        return x

    def weights(self, x):
        c = (x[0],)
        return [Weight("weight", c, role="scale"), Weight("bias", c, role="shift"),
                Weight("running_mean", c, trainable=False, role="mean"),
                Weight("running_var", c, trainable=False, role="var")]

    def flops(self, out, x):
        return 2 * numel(out)

    def lower(self, g, ins, shapes, out):
        names = [g.weight(w) for w in ("weight", "bias", "running_mean", "running_var")]
        return g.op("BatchNormalization", [ins[0]] + names, epsilon=float(self.eps))


def _affine(c: int) -> list[Weight]:
    return [Weight("weight", (c,), role="scale"), Weight("bias", (c,), role="shift")]


def _per_channel(g, name: str, out) -> str:
    """A [C] weight shaped to broadcast over a [C, H, W] (or [C]) value with its batch axis."""
    return g.op("Reshape", [g.weight(name), g.const([-1] + [1] * (len(out) - 1))])


def _filled(g, value: float, n: int) -> str:
    """n copies of `value` made at run time: a fixed-size constant however large n is."""
    return g.op("Expand", [g.const([value], dtype="float32"), g.const([n])])


def _whole_map(x):
    """Receptive-field step of a layer whose every output reads the whole map through its statistics,
    at the same size: a window of 2n - 1 centred on each output, which covers the map from any pixel."""
    return Step(tuple(2 * (n - 1) for n in x[1:]), (1, 1), (0, 0)) if len(x) == 3 else None


class _Statistics(Layer):
    """Normalises with statistics of each sample (not of the batch): the same in training and inference."""

    def output_shape(self, x):
        return x

    def weights(self, x):
        return _affine(x[0]) if self.affine else []

    def flops(self, out, x):
        return numel(out) * (5 + (2 if self.affine else 0))

    def _scale_and_shift(self, g, value, out):
        if not self.affine:
            return value
        scaled = g.op("Mul", [value, _per_channel(g, "weight", out)])
        return g.op("Add", [scaled, _per_channel(g, "bias", out)])


@register("layernorm")
class LayerNorm(_Statistics):
    """Layer normalisation over the channels at each pixel (ConvNeXt's LayerNorm2d), or over the features.

    y = (x - mean) / sqrt(var + eps) * weight + bias, mean and (biased) variance over the C values
    of one pixel of a [C, H, W] map, or over the F values of a [F] vector: PyTorch's
    nn.LayerNorm(C) on channels-last data, which is what ConvNeXt applies (eps 1e-6 there).
    """

    eps: float = arg(POSITIVE_NUMBER, "added to the variance (ConvNeXt: 1e-6)", default=1e-5)
    affine: bool = arg(BOOL, "learn a per-channel scale `weight` and shift `bias` (PyTorch's elementwise_affine)",
                       default=True)

    def lower(self, g, ins, shapes, out):
        c, spatial_map = shapes[0][0], len(shapes[0]) == 3
        # ONNX normalises the last axes: move the channels last and back. Its Scale input is
        # required; without affine it is ones (and the shift is left out).
        x = g.op("Transpose", ins, perm=[0, 2, 3, 1]) if spatial_map else ins[0]
        scale_shift = [g.weight("weight"), g.weight("bias")] if self.affine else [_filled(g, 1.0, c)]
        y = g.op("LayerNormalization", [x] + scale_shift, axis=-1, epsilon=float(self.eps))
        return g.op("Transpose", [y], perm=[0, 3, 1, 2]) if spatial_map else y


@register("groupnorm")
class GroupNorm(_Statistics):
    """Group normalisation: the channels in `groups` groups, each normalised over its channels and pixels.

    y = (x - mean) / sqrt(var + eps) * weight + bias, per sample, mean and (biased) variance over
    the C/groups channels (and all pixels) of each group; weight and bias per channel
    (PyTorch's nn.GroupNorm). groups 1 normalises over all of [C, H, W]; groups C is instancenorm.
    """

    groups: int = arg(POSITIVE_INT, "number of groups; must divide the channels")
    eps: float = arg(POSITIVE_NUMBER, "added to the variance", default=1e-5)
    affine: bool = arg(BOOL, "learn a per-channel scale `weight` and shift `bias`", default=True)
    shorthand = "groups"

    def output_shape(self, x):
        if x[0] % self.groups:
            raise LayerArgError(f"{x[0]} channels are not divisible into {self.groups} groups; "
                                f"use a groups value that divides {x[0]}", arg="groups")
        return x

    def window(self, x):
        return _whole_map(x)

    def lower(self, g, ins, shapes, out):
        # Each group as one channel of a [N, groups, C/groups*H*W] value, which ONNX's
        # InstanceNormalization normalises over its last axis; then back to the input's shape.
        grouped = g.op("Reshape", [ins[0], g.const([0, self.groups, -1])])
        y = g.op("InstanceNormalization", [grouped, _filled(g, 1.0, self.groups), _filled(g, 0.0, self.groups)],
                 epsilon=float(self.eps))
        y = g.op("Reshape", [y, g.op("Shape", ins)])
        return self._scale_and_shift(g, y, out)


@register("instancenorm")
class InstanceNorm(_Statistics):
    """Instance normalisation: each channel of each sample normalised over its pixels (PyTorch's InstanceNorm2d).

    y = (x - mean) / sqrt(var + eps) * weight + bias, mean and (biased) variance over H x W.
    As in PyTorch, `affine` and `track_running_stats` are off by default; with running
    statistics, inference uses them instead (non-trainable `running_mean`, `running_var`).
    """

    eps: float = arg(POSITIVE_NUMBER, "added to the variance", default=1e-5)
    affine: bool = arg(BOOL, "learn a per-channel scale `weight` and shift `bias`", default=False)
    track_running_stats: bool = arg(BOOL, "keep running statistics and normalise with them at inference",
                                    default=False)
    momentum: float = arg(NUMBER, "running-statistics momentum (training only, recorded)", default=0.1)

    def output_shape(self, x):
        return spatial(x, self)

    def weights(self, x):
        running = [Weight("running_mean", (x[0],), trainable=False, role="mean"),
                   Weight("running_var", (x[0],), trainable=False, role="var")]
        return super().weights(x) + (running if self.track_running_stats else [])

    def flops(self, out, x):
        return 2 * numel(out) if self.track_running_stats else super().flops(out, x)

    def window(self, x):
        return None if self.track_running_stats else _whole_map(x)

    def lower(self, g, ins, shapes, out):
        c = shapes[0][0]
        scale, shift = ([g.weight("weight"), g.weight("bias")] if self.affine
                        else [_filled(g, 1.0, c), _filled(g, 0.0, c)])
        if self.track_running_stats:
            stats = [g.weight("running_mean"), g.weight("running_var")]
            return g.op("BatchNormalization", [ins[0], scale, shift] + stats, epsilon=float(self.eps))
        return g.op("InstanceNormalization", [ins[0], scale, shift], epsilon=float(self.eps))


@register("layer_scale")
class LayerScale(Layer):
    """A learned scale per channel (or feature), y = gamma * x: ConvNeXt's layer scale, held by its block.

    Its weight is torchvision's CNBlock parameter `layer_scale`, shaped [C, 1, 1] for a [C, H, W]
    input ([F] for a vector), initially 1e-6 (ConvNeXt's). torchvision keeps it on the block
    itself, not on a module of its own, so its key is `<block>.layer_scale`: the node's name less
    its last part (node `features.1.0.gamma` holds `features.1.0.layer_scale`).
    """

    def output_shape(self, x):
        return x

    def weights(self, x):
        return [Weight("layer_scale", (x[0],) + (1,) * (len(x) - 1), role="layer_scale", on_block=True)]

    def flops(self, out, x):
        return numel(out)

    def lower(self, g, ins, shapes, out):
        return g.op("Mul", [ins[0], g.weight("layer_scale")])


@register("lrn")
class LRN(Layer):
    """Local response normalisation across channels (AlexNet's NORM layers).

    b_c = a_c / (k + alpha/size * sum of a^2 over `size` neighbouring channels) ** beta,
    the PyTorch and ONNX definition. The AlexNet paper's alpha is not divided by size: to match
    it, multiply its alpha by size.
    """

    size: int = arg(POSITIVE_INT, "number of neighbouring channels summed", default=5)
    # ONNX Runtime refuses alpha or beta <= 0, and k <= 0 can divide by zero: all must be positive.
    alpha: float = arg(POSITIVE_NUMBER, "scale (divided by size, as in PyTorch and ONNX)", default=1e-4)
    beta: float = arg(POSITIVE_NUMBER, "exponent", default=0.75)
    k: float = arg(POSITIVE_NUMBER, "additive constant (ONNX's bias)", default=1.0)
    fp32 = True  # sums a^2: past |a| ~ 256 that overflows float16 (65504), and the output drops to 0

    def output_shape(self, x):
        spatial(x, self)  # across channels of a feature map: [C, H, W]
        if self.size % 2 == 0:  # ONNX's LRN (and onnxruntime) take odd sizes only: a centred window
            raise LayerArgError(f"size must be odd so the window centres on each channel, got {self.size}; "
                                f"use {self.size - 1} or {self.size + 1}", arg="size")
        return x

    def flops(self, out, x):
        return numel(out) * (2 * self.size + 3)

    def lower(self, g, ins, shapes, out):
        return g.op("LRN", ins, size=self.size, alpha=float(self.alpha), beta=float(self.beta), bias=float(self.k))


@register("lcn")
class LCN(Layer):
    """Local contrast normalisation (deck 000): subtract the local mean, divide by the local deviation.

    Over a size x size window centred on each pixel (zero padded, averaged over the pixels
    inside the image) and, with across_channels, over all channels too:
      subtractive: v = x - mean(x)
      divisive:    y = x / sqrt(mean(x^2) + eps)
      full:        y = (x - mean(x)) / sqrt(mean(x^2) - mean(x)^2 + eps)
    """

    size: int = arg(POSITIVE_INT, "window side (odd, so it centres on each pixel)", default=9)
    mode: str = arg(enum("full", "subtractive", "divisive"), "which normalisation", default="full")
    across_channels: bool = arg(BOOL, "pool the statistics over all channels, as in Jarrett et al. 2009",
                                default=True)
    eps: float = arg(POSITIVE_NUMBER, "keeps the divisor away from zero", default=1e-4)
    shorthand = "size"

    def output_shape(self, x):
        spatial(x, self)
        if self.size % 2 == 0:
            raise LayerArgError(f"size must be odd so the window centres on each pixel, got {self.size}; "
                                f"use {self.size - 1} or {self.size + 1}", arg="size")
        return x

    def flops(self, out, x):
        taps = self.size * self.size * (x[0] if self.across_channels else 1)
        per = {"subtractive": taps + 1, "divisive": 2 * taps + 2, "full": 3 * taps + 3}[self.mode]
        return numel(out) * per

    def window(self, x):
        half = self.size // 2
        return Window((self.size,) * 2, (1, 1), (1, 1), (half, half), (half, half))

    def lower(self, g, ins, shapes, out):
        x = ins[0]
        half = self.size // 2

        def local_mean(value):
            # Mean over the channels (when pooled across them), then over the window; the
            # window's divisor counts only the pixels inside the image.
            if self.across_channels:
                value = g.op("ReduceMean", [value, g.const([1])], keepdims=1)
            return g.op("AveragePool", [value], kernel_shape=[self.size] * 2, strides=[1, 1],
                        pads=[half] * 4, count_include_pad=0)

        mean = local_mean(x)
        if self.mode == "subtractive":
            return g.op("Sub", [x, mean])
        eps = g.const([self.eps], dtype="float32")
        mean_square = local_mean(g.op("Mul", [x, x]))
        if self.mode == "divisive":
            return g.op("Div", [x, g.op("Sqrt", [g.op("Add", [mean_square, eps])])])
        variance = g.op("Relu", [g.op("Sub", [mean_square, g.op("Mul", [mean, mean])])])  # >= 0 despite rounding
        return g.op("Div", [g.op("Sub", [x, mean]), g.op("Sqrt", [g.op("Add", [variance, eps])])])
