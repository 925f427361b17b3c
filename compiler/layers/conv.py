"""Convolutions: conv, depthwise_conv, separable_conv, spatial_separable_conv.

Counting conventions (the figures papers and torchvision quote):
  MACs  = output elements x (input channels / groups) x kernel height x kernel width,
          summed over both parts of a separable convolution
  FLOPs = 2 x MACs, plus one add per output element for the bias, plus the activation's FLOPs.
Weight layout is PyTorch's and ONNX's: [out_channels, in_channels / groups, kh, kw].
"""

from __future__ import annotations

from ..arith import Window, pair, padding_arg
from ..errors import LayerArgError
from ..registry import BOOL, PADDING, POSITIVE_INT, SIZE2, Weight, arg, arguments, numel, register
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
