"""Elementwise activations. Shape in = shape out, no MACs, no weights but prelu's slopes.

FLOPs per element (a convention, stated once here): exp, log and erf count 1 each, tanh 5.
relu 1 (a max), leaky_relu and prelu 2 (a multiply and a max), relu6 and hardtanh 2 (a max and a
min), hardsigmoid 4 (multiply, add, max, min), hardswish 5 (hardsigmoid and a multiply),
sigmoid 4 (negate, exp, add, divide), silu 5 (sigmoid and a multiply), tanh 5, gelu 5 (scale,
erf, add, multiply, halve) or 13 with `approximate: tanh` (cube 2, multiply-add 2, scale 1,
tanh 5, add, multiply, halve), elu 4 (compare, exp, subtract, multiply), selu 5 (elu and the
scale), softplus 6 (scale, exp, add, log, divide, compare with the threshold), mish 9 (exp,
add, log, tanh 5, multiply), softmax 5 (max, subtract, exp, sum, divide), linear 0. conv and
dense reuse these for their `activation` shorthand.

Constants are PyTorch's (torch.nn.functional), which tests/test_numeric.py checks against.

An activation is a registered subclass of `Activation` in this module: that alone makes it one
of the names conv and dense accept for `activation:` (unless it has weights of its own: prelu).
"""

from __future__ import annotations

import math
from typing import ClassVar

from ..errors import LayerArgError
from ..registry import (BOOL, NON_NEGATIVE_INT, NUMBER, POSITIVE_NUMBER, REGISTRY, Layer, Weight, arg, enum,
                        numel, register)


class Activation(Layer):
    flops_per_element: ClassVar[int]
    onnx_op: ClassVar[str | None] = None
    learned: ClassVar[bool] = False  # has weights: a layer of its own, not an `activation:` of conv/dense

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


# relu_like (He initialisation) goes to the rectifier-shaped: about zero for x < 0 and x for x > 0,
# so they halve the variance as He's derivation assumes. The bounded (hardtanh, hardsigmoid),
# and selu (made for LeCun's 1/fan_in, closer to Glorot than to He) keep Glorot.


def _scalar(g, value: float) -> str:
    return g.const(value, dtype="float32")


@register("relu6")
class ReLU6(Activation):
    """ReLU capped at 6, min(max(0, x), 6) (MobileNet)."""

    flops_per_element = 2
    relu_like = True

    def lower(self, g, ins, shapes, out):
        return g.op("Clip", [ins[0], _scalar(g, 0.0), _scalar(g, 6.0)])


@register("hardtanh")
class Hardtanh(Activation):
    """Hard tanh, x clipped to [min_val, max_val]."""

    min_val: float = arg(NUMBER, "lower bound", default=-1.0)
    max_val: float = arg(NUMBER, "upper bound", default=1.0)
    flops_per_element = 2

    def output_shape(self, x):
        if self.min_val > self.max_val:
            raise LayerArgError(f"min_val {self.min_val} is above max_val {self.max_val}; "
                                "give min_val <= max_val", arg="min_val")
        return x

    def lower(self, g, ins, shapes, out):
        return g.op("Clip", [ins[0], _scalar(g, self.min_val), _scalar(g, self.max_val)])


@register("hardsigmoid")
class Hardsigmoid(Activation):
    """Hard sigmoid, relu6(x + 3) / 6 (PyTorch's; Keras' old one had slope 0.2)."""

    flops_per_element = 4

    def lower(self, g, ins, shapes, out):
        return g.op("HardSigmoid", ins, alpha=1 / 6, beta=0.5)


@register("hardswish")
class Hardswish(Activation):
    """Hard swish, x * relu6(x + 3) / 6 (MobileNetV3)."""

    flops_per_element = 5
    onnx_op = "HardSwish"
    relu_like = True


@register("silu")
class SiLU(Activation):
    """Sigmoid linear unit (swish), x * sigmoid(x)."""

    flops_per_element = 5
    relu_like = True

    def lower(self, g, ins, shapes, out):
        return g.op("Mul", [ins[0], g.op("Sigmoid", ins)])


@register("gelu")
class GELU(Activation):
    """Gaussian error linear unit, x * Phi(x); `approximate: tanh` is Hendrycks' tanh formula.

    Lowered as the formula (ONNX's Gelu op exists only from opset 20).
    """

    approximate: str = arg(enum("none", "tanh"), "'none' (exact, with erf) or 'tanh' (the approximation)",
                           default="none")
    relu_like = True

    @property
    def flops_per_element(self):
        return 13 if self.approximate == "tanh" else 5

    def lower(self, g, ins, shapes, out):
        x = ins[0]
        if self.approximate == "tanh":  # tanh(sqrt(2/pi) * (x + 0.044715 x^3))
            cube = g.op("Mul", [g.op("Mul", [x, x]), x])
            inner = g.op("Add", [x, g.op("Mul", [cube, _scalar(g, 0.044715)])])
            phi2 = g.op("Tanh", [g.op("Mul", [inner, _scalar(g, math.sqrt(2 / math.pi))])])
        else:  # erf(x / sqrt(2))
            phi2 = g.op("Erf", [g.op("Mul", [x, _scalar(g, 1 / math.sqrt(2))])])
        return g.op("Mul", [g.op("Mul", [x, g.op("Add", [phi2, _scalar(g, 1.0)])]), _scalar(g, 0.5)])


@register("elu")
class ELU(Activation):
    """Exponential linear unit, x if x > 0 else alpha * (exp(x) - 1)."""

    alpha: float = arg(NUMBER, "scale of the negative part", default=1.0)
    flops_per_element = 4
    shorthand = "alpha"
    relu_like = True

    def lower(self, g, ins, shapes, out):
        return g.op("Elu", ins, alpha=float(self.alpha))


@register("selu")
class SELU(Activation):
    """Scaled ELU, scale * elu(x, alpha), with the self-normalising constants (PyTorch's)."""

    flops_per_element = 5

    def lower(self, g, ins, shapes, out):
        return g.op("Selu", ins, alpha=1.6732632423543772, gamma=1.0507009873554805)


@register("softplus")
class Softplus(Activation):
    """Softplus, log(1 + exp(beta * x)) / beta, and x where beta * x > threshold (PyTorch's)."""

    beta: float = arg(POSITIVE_NUMBER, "sharpness", default=1.0)
    threshold: float = arg(NUMBER, "above this, beta * x is passed through linearly", default=20.0)
    flops_per_element = 6
    relu_like = True

    def lower(self, g, ins, shapes, out):
        # ONNX Softplus has neither beta nor PyTorch's threshold; Where keeps both exact.
        bx = g.op("Mul", [ins[0], _scalar(g, self.beta)])
        smooth = g.op("Div", [g.op("Softplus", [bx]), _scalar(g, self.beta)])
        return g.op("Where", [g.op("Greater", [bx, _scalar(g, self.threshold)]), ins[0], smooth])


@register("mish")
class Mish(Activation):
    """Mish, x * tanh(softplus(x))."""

    flops_per_element = 9
    onnx_op = "Mish"  # from opset 18, the oldest convspec emits
    relu_like = True


@register("prelu")
class PReLU(Activation):
    """Parametric ReLU, x if x > 0 else a * x, a learned (one per channel, or one `shared`)."""

    shared: bool = arg(BOOL, "one slope for all channels instead of one per channel", default=False)
    flops_per_element = 2
    learned = True
    relu_like = True  # He et al. introduced He initialisation for PReLU

    def weights(self, x):
        # torch.nn.PReLU's `weight`, [1] or [C], initialised to 0.25
        return [Weight("weight", (1 if self.shared else x[0],), role="slope")]

    def lower(self, g, ins, shapes, out):
        # ONNX broadcasts the slope from the right: [C] becomes [C, 1, 1] for a [C, H, W] input.
        slope = g.op("Reshape", [g.weight("weight"), g.const([-1] + [1] * (len(out) - 1))])
        return g.op("PRelu", [ins[0], slope])


# What conv and dense accept for `activation:`: every activation registered above without weights, in order.
ACTIVATION = enum(*(name for name, cls in REGISTRY.items() if issubclass(cls, Activation) and not cls.learned))


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
