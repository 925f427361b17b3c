"""Elementwise activations. Shape in = shape out, no weights, no MACs.

FLOPs per element (a convention, stated once here): relu 1 (a max), leaky_relu 2 (a multiply
and a max), sigmoid 4 (negate, exp, add, divide), tanh 5, softmax 5 (max, subtract, exp, sum,
divide), linear 0. conv and dense reuse these for their `activation` shorthand.

An activation is a registered subclass of `Activation` in this module: that alone makes it one
of the names conv and dense accept for `activation:`.
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import LayerArgError
from ..registry import NON_NEGATIVE_INT, NUMBER, REGISTRY, Layer, arg, enum, numel, register


class Activation(Layer):
    flops_per_element: ClassVar[int]
    onnx_op: ClassVar[str | None] = None

    def output_shape(self, x):
        return x

    def lower(self, g, ins, shapes, out):
        return g.op(self.onnx_op, ins)

    def flops(self, out, x):
        return self.flops_per_element * numel(out)


@register("relu")
class ReLU(Activation):
    """Rectified linear unit, max(0, x)."""

    flops_per_element = 1
    onnx_op = "Relu"
    relu_like = True


@register("leaky_relu")
class LeakyReLU(Activation):
    """Leaky ReLU, x if x > 0 else alpha * x."""

    alpha: float = arg(NUMBER, "slope for x < 0", default=0.01)
    flops_per_element = 2
    shorthand = "alpha"
    relu_like = True

    def lower(self, g, ins, shapes, out):
        return g.op("LeakyRelu", ins, alpha=float(self.alpha))


@register("sigmoid")
class Sigmoid(Activation):
    """Logistic sigmoid, 1 / (1 + exp(-x))."""

    flops_per_element = 4
    onnx_op = "Sigmoid"


@register("tanh")
class Tanh(Activation):
    """Hyperbolic tangent."""

    flops_per_element = 5
    onnx_op = "Tanh"


@register("softmax")
class Softmax(Activation):
    """Softmax over one axis (0, the channels or features, by default)."""

    axis: int = arg(NON_NEGATIVE_INT, "axis of the [C, H, W] or [features] shape, batch excluded", default=0)
    flops_per_element = 5

    def output_shape(self, x):
        if self.axis >= len(x):
            raise LayerArgError(f"axis {self.axis} is out of range for a {len(x)}-axis input {list(x)}; "
                                f"use 0 to {len(x) - 1}", arg="axis")
        return x

    def lower(self, g, ins, shapes, out):
        return g.op("Softmax", ins, axis=self.axis + 1)  # ONNX counts the batch axis


@register("linear")
class Linear(Activation):
    """Identity activation, f(x) = x (Keras' 'linear')."""

    flops_per_element = 0

    def lower(self, g, ins, shapes, out):
        return ins[0]


# What conv and dense accept for `activation:`: every activation registered above, in order.
ACTIVATION = enum(*(name for name, cls in REGISTRY.items() if issubclass(cls, Activation)))


class Activated(Layer):
    """A layer with an optional `activation:` on its output (conv, dense), run with its defaults.

    Each type declares the argument itself, `arg(ACTIVATION, ...)`, where its argument order puts it.
    """

    def _activation(self) -> Activation | None:
        return None if self.activation is None else REGISTRY[self.activation]()

    @property
    def relu_like(self) -> bool:
        act = self._activation()
        return act is not None and act.relu_like

    def _activate(self, g, value: str) -> str:
        act = self._activation()
        return value if act is None else act.lower(g, [value], None, None)

    def _activation_flops(self, out) -> int:
        act = self._activation()
        return 0 if act is None else act.flops(out, out)
