"""Fully connected layers.

MACs = in_features x units (per pixel with `per_pixel`); FLOPs = 2 x MACs + units for the bias
(per pixel) + the activation's FLOPs. Weight layout is PyTorch's: [units, in_features].
"""

from __future__ import annotations

from ..errors import LayerArgError
from ..registry import BOOL, POSITIVE_INT, Weight, arg, numel, register
from .activation import ACTIVATION, Activated


@register("dense")
class Dense(Activated):
    """Fully connected (linear) layer: every output unit sees every input feature.

    With `per_pixel`, the same layer maps the C channels of each pixel of a [C, H, W] map to
    `units` channels: PyTorch's nn.Linear on channels-last data (ConvNeXt's pointwise layers),
    a 1x1 convolution whose weight keeps nn.Linear's [units, C] layout, so it loads by name.
    """

    units: int = arg(POSITIVE_INT, "number of output units (neurons)")
    bias: bool = arg(BOOL, "add a learned bias per unit", default=True)
    activation: str | None = arg(ACTIVATION, "activation applied to the output", default=None)
    per_pixel: bool = arg(BOOL, "apply to the channels at each pixel of a [C, H, W] map", default=False)
    shorthand = "units"

    def output_shape(self, x):
        if self.per_pixel:
            if len(x) != 3:
                raise LayerArgError(f"per_pixel needs a [C, H, W] input, got {list(x)}; "
                                    "leave it out for a flat [features] input", arg="per_pixel")
            return (self.units,) + tuple(x[1:])
        if len(x) != 1:
            raise LayerArgError(f"dense needs a flat [features] input, got {list(x)}; "
                                "add `- flatten` (or a global pooling layer) before it, "
                                "or give `per_pixel: true` to apply it at every pixel")
        return (self.units,)

    def weights(self, x):
        ws = [Weight("weight", (self.units, x[0]))]
        if self.bias:
            ws.append(Weight("bias", (self.units,), role="bias"))
        return ws

    def macs(self, out, x):
        return numel(x) * self.units

    def flops(self, out, x):
        return 2 * self.macs(out, x) + (numel(out) if self.bias else 0) + self._activation_flops(out)

    def lower(self, g, ins, shapes, out):
        bias = [g.weight("bias")] if self.bias else []
        if self.per_pixel:  # a 1x1 conv: the [units, C] weight gains its two kernel axes
            kernel = g.op("Reshape", [g.weight("weight"), g.const([self.units, -1, 1, 1])])
            return self._activate(g, g.op("Conv", [ins[0], kernel] + bias, kernel_shape=[1, 1]))
        return self._activate(g, g.op("Gemm", [ins[0], g.weight("weight")] + bias, transB=1))
