"""Convolutions: conv, depthwise_conv, separable_conv, spatial_separable_conv, conv_transpose.

Counting conventions (the figures papers and torchvision quote):
  MACs  = output elements x (input channels / groups) x kernel height x kernel width,
          summed over both parts of a separable convolution; for conv_transpose every multiply
          of the scatter: input elements x (out channels / groups) x kh x kw
  FLOPs = 2 x MACs, plus one add per output element for the bias, plus the activation's FLOPs.
Weight layout is PyTorch's and ONNX's: [out_channels, in_channels / groups, kh, kw], and for
conv_transpose [in_channels, out_channels / groups, kh, kw]. Seeded init takes the fan-in from
the second axis for both (compiler/weights.py), which is PyTorch's convention for ConvTranspose2d too.
"""

from __future__ import annotations

from fractions import Fraction

from ..arith import Step, Window, pair, padding_arg
from ..errors import LayerArgError
from ..registry import (BOOL, NON_NEGATIVE_INT, PADDING, POSITIVE_INT, SIZE2, Kind, Weight, arg, arguments, numel,
                        register, spatial)
from ._window import slide, tiling
from .activation import ACTIVATION, Activated


@arguments
class _Convolution(Activated):
    """What every convolution shares: its window arguments, bias, activation, and the rules built on them.

    A subclass gives `_out_channels(c)`, `weights` and `macs`.
    """

    kernel: tuple = arg(SIZE2, "window size, k or [kh, kw]", convert=pair)
    stride: tuple = arg(SIZE2, "step, s or [sh, sw]", default=1, convert=pair)
    padding: object = arg(PADDING, "zero padding: p, [ph, pw], [top, left, bottom, right], 'same' or 'valid'",
                          default=0, convert=padding_arg)
    bias: bool = arg(BOOL, "add a learned bias per output channel", default=True)
    activation: str | None = arg(ACTIVATION, "activation applied to the output", default=None)
    dilation = (1, 1)  # a field in the types that take it

    def _slide(self, x):
        return slide(self, x, self.kernel, self.stride, self.padding, self.dilation)

    def output_shape(self, x):
        _, (h, w) = self._slide(x)
        return (self._out_channels(x[0]), h, w)

    def flops(self, out, x):
        return 2 * self.macs(out, x) + (numel(out) if self.bias else 0) + self._activation_flops(out)

    def window(self, x):
        return self._slide(x)[0]

    def warnings(self, x):
        return tiling(x, *self._slide(x))

    def _conv(self, g, inputs, win: Window, group=1):
        return g.op("Conv", inputs, kernel_shape=list(win.kernel), strides=list(win.stride),
                    pads=list(win.pads), dilations=list(win.dilation), group=group)

    def _bias(self, g, name="bias"):
        return [g.weight(name)] if self.bias else []


@arguments
class _Dilated(_Convolution):
    dilation: tuple = arg(SIZE2, "spacing between kernel taps", default=1, convert=pair)


class _Grouped(_Dilated):
    """A single kernel bank applied in groups (conv and depthwise_conv)."""

    def _groups(self, c):
        return self.groups

    def output_shape(self, x):
        c, f, g = x[0], self._out_channels(x[0]), self._groups(x[0])
        if c % g:
            raise LayerArgError(f"input channels {c} are not divisible by groups {g}; "
                                f"use a groups value that divides {c}", arg="groups")
        if f % g:
            raise LayerArgError(f"filters {f} are not divisible by groups {g}; "
                                f"use a multiple of {g}", arg="filters")
        return super().output_shape(x)

    def weights(self, x):
        c = x[0]
        f = self._out_channels(c)
        ws = [Weight("weight", (f, c // self._groups(c)) + self.kernel)]
        if self.bias:
            ws.append(Weight("bias", (f,), role="bias"))
        return ws

    def macs(self, out, x):
        return numel(out) * (x[0] // self._groups(x[0])) * self.kernel[0] * self.kernel[1]

    def lower(self, g, ins, shapes, out):
        x = shapes[0]
        y = self._conv(g, [ins[0], g.weight("weight")] + self._bias(g), self._slide(x)[0], self._groups(x[0]))
        return self._activate(g, y)


@register("conv")
class Conv(_Grouped):
    """2-D convolution: `filters` kernels of size `kernel` slid over the input."""

    filters: int = arg(POSITIVE_INT, "number of output channels (filters)")
    groups: int = arg(POSITIVE_INT, "grouped convolution: channels are split into this many groups", default=1)

    def _out_channels(self, c):
        return self.filters


@register("depthwise_conv")
class DepthwiseConv(_Grouped):
    """Depthwise convolution: one kernel per input channel (groups = channels)."""

    multiplier: int = arg(POSITIVE_INT, "output channels per input channel", default=1)

    def _groups(self, c):
        return c

    def _out_channels(self, c):
        return c * self.multiplier


@register("separable_conv")
class SeparableConv(_Dilated):
    """Depthwise-separable convolution: a depthwise conv, then a 1x1 pointwise conv (Keras' SeparableConv2D).

    The bias is on the pointwise conv only, as in Keras.
    """

    filters: int = arg(POSITIVE_INT, "output channels of the pointwise conv")
    multiplier: int = arg(POSITIVE_INT, "depthwise output channels per input channel", default=1)

    def _out_channels(self, c):
        return self.filters

    def weights(self, x):
        mid = x[0] * self.multiplier
        ws = [Weight("depthwise.weight", (mid, 1) + self.kernel),
              Weight("pointwise.weight", (self.filters, mid, 1, 1))]
        if self.bias:
            ws.append(Weight("pointwise.bias", (self.filters,), role="bias"))
        return ws

    def macs(self, out, x):
        mid = x[0] * self.multiplier
        pixels = out[1] * out[2]
        return pixels * mid * self.kernel[0] * self.kernel[1] + pixels * mid * self.filters

    def lower(self, g, ins, shapes, out):
        x = shapes[0]
        depthwise = self._conv(g, [ins[0], g.weight("depthwise.weight")], self._slide(x)[0], group=x[0])
        pointwise = Window((1, 1), (1, 1), (1, 1), (0, 0), (0, 0))
        y = self._conv(g, [depthwise, g.weight("pointwise.weight")] + self._bias(g, "pointwise.bias"), pointwise)
        return self._activate(g, y)


@register("spatial_separable_conv")
class SpatialSeparableConv(_Convolution):
    """Spatially separable convolution: a kh x 1 conv, then a 1 x kw conv (deck 003's rank-1 kernel).

    Together they read exactly one kh x kw window, so shape and receptive field are those of a
    kh x kw conv. The bias is on the second conv only.
    """

    filters: int = arg(POSITIVE_INT, "output channels")
    mid: int | None = arg(POSITIVE_INT, "channels between the two convs (default: filters)", default=None)

    def _out_channels(self, c):
        return self.filters

    def _mid(self):
        return self.mid or self.filters

    def weights(self, x):
        kh, kw = self.kernel
        ws = [Weight("vertical.weight", (self._mid(), x[0], kh, 1)),
              Weight("horizontal.weight", (self.filters, self._mid(), 1, kw))]
        if self.bias:
            ws.append(Weight("horizontal.bias", (self.filters,), role="bias"))
        return ws

    def macs(self, out, x):
        kh, kw = self.kernel
        h_out, w_in = out[1], x[2]  # the first conv strides and pads the height only
        first = h_out * w_in * self._mid() * x[0] * kh
        second = h_out * out[2] * self.filters * self._mid() * kw
        return first + second

    def lower(self, g, ins, shapes, out):
        win = self._slide(shapes[0])[0]
        # The kh x 1 half strides and pads the height only, the 1 x kw half the width only.
        vertical = Window((win.kernel[0], 1), (win.stride[0], 1), (1, 1), (win.begin[0], 0), (win.end[0], 0))
        horizontal = Window((1, win.kernel[1]), (1, win.stride[1]), (1, 1), (0, win.begin[1]), (0, win.end[1]))
        v = self._conv(g, [ins[0], g.weight("vertical.weight")], vertical)
        y = self._conv(g, [v, g.weight("horizontal.weight")] + self._bias(g, "horizontal.bias"), horizontal)
        return self._activate(g, y)


OUTPUT_PADDING = Kind({"anyOf": [NON_NEGATIVE_INT.schema,
                                 {"type": "array", "items": NON_NEGATIVE_INT.schema, "minItems": 2, "maxItems": 2}]},
                      "an integer >= 0 or a list [h, w] of them")


@register("conv_transpose")
class ConvTranspose(_Dilated):
    """Transposed convolution (PyTorch's ConvTranspose2d): each input pixel scatters a kernel, stride apart.

    Output size per axis: (n - 1)*stride - pad_begin - pad_end + dilation*(k - 1) + output_padding + 1.
    """

    filters: int = arg(POSITIVE_INT, "number of output channels")
    groups: int = arg(POSITIVE_INT, "grouped transposed convolution", default=1)
    output_padding: tuple = arg(OUTPUT_PADDING, "extra rows and columns at the end of the output, "
                                "p or [ph, pw], each below the stride or the dilation", default=0, convert=pair)

    def _pads(self):
        if isinstance(self.padding, str):
            raise LayerArgError(f"padding '{self.padding}' is for conv; give conv_transpose numbers, "
                                "as PyTorch's ConvTranspose2d takes", arg="padding")
        return self.padding[:2], self.padding[2:]

    def output_shape(self, x):
        c, h, w = spatial(x, self)
        for n, what in ((c, "input channels"), (self.filters, "filters")):
            if n % self.groups:
                raise LayerArgError(f"{what} {n} are not divisible by groups {self.groups}; "
                                    f"use a groups value that divides both", arg="groups")
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= max(s, d):  # PyTorch's rule: else the extra row would lie beyond every tap
                raise LayerArgError(f"output_padding {op} must be smaller than the stride ({s}) or the "
                                    f"dilation ({d})", arg="output_padding")
        begin, end = self._pads()
        for op, s, e in zip(self.output_padding, self.stride, end):
            if op - min(op, e) >= s:  # see lower: what the end padding cannot absorb must be below the stride
                raise LayerArgError(f"output_padding {op} with stride {s} and end padding {e}: onnxruntime "
                                    "needs output_padding below the stride (or taken from the padding); "
                                    "use more padding or a smaller output_padding", arg="output_padding")
        out = tuple((n - 1) * s - b - e + d * (k - 1) + op + 1 for n, s, b, e, d, k, op in
                    zip((h, w), self.stride, begin, end, self.dilation, self.kernel, self.output_padding))
        if min(out) < 1:
            raise LayerArgError(f"the output would be {list(out)}: the padding removes more than the "
                                "transposed convolution adds; use less padding", arg="padding")
        return (self.filters,) + out

    def weights(self, x):
        ws = [Weight("weight", (x[0], self.filters // self.groups) + self.kernel)]
        if self.bias:
            ws.append(Weight("bias", (self.filters,), role="bias"))
        return ws

    def macs(self, out, x):
        return numel(x) * (self.filters // self.groups) * self.kernel[0] * self.kernel[1]

    def window(self, x):
        # Outputs are 1/stride input pixels apart; one reads at most ceil(k_eff/stride) inputs,
        # and output 0's kernel centre lies at input (pad_begin - (k_eff - 1)/2) / stride.
        begin, _ = self._pads()
        k_eff = [d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation)]
        return Step(tuple(-(-e // s) - 1 for e, s in zip(k_eff, self.stride)),
                    tuple(Fraction(1, s) for s in self.stride),
                    tuple(Fraction(2 * b - e + 1, 2 * s) for b, e, s in zip(begin, k_eff, self.stride)))

    def warnings(self, x):
        return []

    def lower(self, g, ins, shapes, out):
        begin, end = self._pads()
        # Explicit pads and output_padding, no output_shape and auto_pad NOTSET: onnxruntime's
        # size is then PyTorch's formula above. Its output_padding must be below the stride (even
        # where PyTorch's dilation allows more), and an extra end row is the same as one less end
        # pad, so the end padding takes up as much of it as it can.
        taken = [min(op, e) for op, e in zip(self.output_padding, end)]
        y = g.op("ConvTranspose", [ins[0], g.weight("weight")] + self._bias(g), kernel_shape=list(self.kernel),
                 strides=list(self.stride), pads=list(begin) + [e - t for e, t in zip(end, taken)],
                 dilations=list(self.dilation), group=self.groups,
                 output_padding=[op - t for op, t in zip(self.output_padding, taken)])
        return self._activate(g, y)
