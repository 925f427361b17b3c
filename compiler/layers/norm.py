"""Normalisation: batchnorm, lrn (local response), lcn (local contrast).

FLOPs per element at inference: batchnorm 2 (scale and shift, the statistics folded);
lrn 2*size + 3 (squares and sum over the channel window, then scale, power and divide);
lcn with w = size*size window taps (times the channels when across_channels):
subtractive w + 1, divisive 2w + 2, full 3w + 3.
"""

from __future__ import annotations

from ..arith import Window
from ..errors import LayerArgError
from ..registry import BOOL, NUMBER, POSITIVE_INT, POSITIVE_NUMBER, Layer, Weight, arg, enum, numel, register, spatial


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
