"""Layers that only move or pass data: flatten, dropout, stochastic_depth, identity, zero_pad_shortcut.

None has weights, MACs or FLOPs.
"""

from __future__ import annotations

from ..arith import Window
from ..errors import LayerArgError
from ..registry import GLOBAL, POSITIVE_INT, RATE, Layer, arg, enum, numel, register, spatial


@register("flatten")
class Flatten(Layer):
    """Flatten [C, H, W] to [C*H*W] in channel-major order (PyTorch's and ONNX's)."""

    def output_shape(self, x):
        return (numel(x),)

    def window(self, x):
        return GLOBAL if len(x) == 3 else None

    def lower(self, g, ins, shapes, out):
        return g.op("Flatten", ins, axis=1)


class _PassThrough(Layer):
    """The identity at inference (all that is compiled): the value passes unchanged."""

    def output_shape(self, x):
        return x

    def lower(self, g, ins, shapes, out):
        return ins[0]


@register("dropout")
class Dropout(_PassThrough):
    """Dropout: zeroes a fraction of units while training; the identity at inference."""

    rate: float = arg(RATE, "fraction of units dropped while training", default=0.5)
    shorthand = "rate"


@register("stochastic_depth")
class StochasticDepth(_PassThrough):
    """Stochastic depth (torchvision.ops.StochasticDepth): drops a residual branch while training; the identity at inference.

    `rate` and `mode` only matter to training; they are kept with the layer (the JSON summary's
    `args`) and lowered to nothing.
    """

    rate: float = arg(RATE, "probability of dropping the branch while training")
    mode: str = arg(enum("row", "batch"), "'row': each sample drops its branch on its own; 'batch': all at once",
                    default="row")
    shorthand = "rate"


@register("identity")
class Identity(_PassThrough):
    """Passes its input through unchanged (a named tap or an explicit shortcut)."""


@register("zero_pad_shortcut")
class ZeroPadShortcut(Layer):
    """ResNet option A shortcut: subsample by `stride`, then pad the channels with zeros to `channels`."""

    channels: int = arg(POSITIVE_INT, "output channels; the extra ones are zeros, split evenly before and after")
    stride: int = arg(POSITIVE_INT, "spatial subsampling step (keeps every stride-th row and column)", default=2)
    shorthand = "channels"

    def output_shape(self, x):
        c, h, w = spatial(x, self)
        if self.channels < c:
            raise LayerArgError(f"channels {self.channels} is fewer than the {c} input channels; "
                                "a zero-padding shortcut can only add channels", arg="channels")
        s = self.stride
        return (self.channels, -(-h // s), -(-w // s))

    def window(self, x):
        return Window((1, 1), (self.stride,) * 2, (1, 1), (0, 0), (0, 0))

    def lower(self, g, ins, shapes, out):
        c, s = shapes[0][0], self.stride
        big = 2**62  # "to the end" for Slice
        sub = g.op("Slice", [ins[0], g.const([0, 0]), g.const([big, big]), g.const([2, 3]), g.const([s, s])])
        extra = self.channels - c
        before, after = extra // 2, extra - extra // 2
        return g.op("Pad", [sub, g.const([0, before, 0, 0, 0, after, 0, 0])], mode="constant")
