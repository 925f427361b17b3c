"""Fully connected layers.

MACs = in_features x units; FLOPs = 2 x MACs + units for the bias + the activation's FLOPs.
Weight layout is PyTorch's: [units, in_features].
"""

from __future__ import annotations

from ..errors import LayerArgError
from ..registry import BOOL, POSITIVE_INT, Weight, arg, register
from .activation import ACTIVATION, Activated


@register("dense")
class Dense(Activated):
    """Fully connected (linear) layer: every output unit sees every input feature."""

    units: int = arg(POSITIVE_INT, "number of output units (neurons)")
    bias: bool = arg(BOOL, "add a learned bias per unit", default=True)
    activation: str | None = arg(ACTIVATION, "activation applied to the output", default=None)
    shorthand = "units"

    def output_shape(self, x):
        if len(x) != 1:
            raise LayerArgError(f"dense needs a flat [features] input, got {list(x)}; "
                                "add `- flatten` (or a global pooling layer) before it")
        return (self.units,)

    def weights(self, x):
        ws = [Weight("weight", (self.units, x[0]))]
        if self.bias:
            ws.append(Weight("bias", (self.units,), role="bias"))
        return ws

    def macs(self, out, x):
        return x[0] * self.units

    def flops(self, out, x):
        return 2 * self.macs(out, x) + (self.units if self.bias else 0) + self._activation_flops(out)

    def lower(self, g, ins, shapes, out):
        bias = [g.weight("bias")] if self.bias else []
        return self._activate(g, g.op("Gemm", [ins[0], g.weight("weight")] + bias, transB=1))
