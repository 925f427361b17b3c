"""Merges of two or more inputs: add (residual connections), mul (squeeze-and-excitation gates,
layer scale) and concat (Inception, DenseNet).

add and mul broadcast as numpy and ONNX do: shapes of one rank, and along each axis the sizes
agree or are 1 (a [C, 1, 1] gate stretches over a [C, H, W] map).

FLOPs: an elementwise merge (add, mul) does inputs - 1 operations per output element (of the
broadcast shape); concat only copies.
"""

from __future__ import annotations

from functools import reduce
from typing import ClassVar

from ..errors import LayerArgError
from ..registry import NON_NEGATIVE_INT, Layer, arg, numel, register


def _describe(shape) -> str:
    return "x".join(map(str, shape[1:])) if len(shape) == 3 else str(list(shape))


class Elementwise(Layer):
    """An elementwise merge: inputs of one rank that broadcast, folded by a binary ONNX op.

    A new one is a registered subclass that names its `onnx_op` (Add, Mul, Max, ...) and says in
    its docstring what it computes. Binary ops rather than n-ary ones (Sum): onnxruntime's int8
    quantiser turns Add and Mul into QLinearAdd and QLinearMul, and leaves Sum in float.
    """

    variadic = True
    onnx_op: ClassVar[str]

    def output_shape(self, *ins):
        for i, x in enumerate(ins[1:], start=2):
            for j, y in enumerate(ins[:i - 1], start=1):
                self._check_pair(j, y, i, x)
        return tuple(max(sizes) for sizes in zip(*ins))  # pairwise compatible: the one size other than 1

    def _check_pair(self, j, y, i, x):
        # Same rank only: the batch axis ONNX puts in front must stay aligned.
        if len(x) != len(y):
            raise LayerArgError(f"input #{i} has shape {list(x)} but input #{j} has {list(y)}; "
                                f"{self.type_name} needs inputs of the same rank")
        clash = [a for a, (m, n) in enumerate(zip(y, x)) if m != n and 1 not in (m, n)]
        if 0 in clash:
            raise LayerArgError(
                f"channel mismatch: input #{j} has {y[0]} channels but input #{i} has {x[0]}; "
                "project the shortcut with a 1x1 conv (or a zero_pad_shortcut) to the same channels")
        if clash:
            raise LayerArgError(
                f"spatial mismatch: input #{j} is {_describe(y)} but input #{i} is {_describe(x)}; "
                "give the shortcut the same stride as the main path")

    def flops(self, out, *ins):
        return (len(ins) - 1) * numel(out)

    def lower(self, g, ins, shapes, out):
        return reduce(lambda a, b: g.op(self.onnx_op, [a, b]), ins)


@register("add")
class Add(Elementwise):
    """Elementwise sum of its inputs (a residual connection), broadcast."""

    onnx_op = "Add"


@register("mul")
class Mul(Elementwise):
    """Elementwise product of its inputs, broadcast (a [C, 1, 1] gate times a [C, H, W] map)."""

    onnx_op = "Mul"


@register("concat")
class Concat(Layer):
    """Concatenation along an axis (0, the channels, by default); all other sizes must match."""

    axis: int = arg(NON_NEGATIVE_INT, "axis of the [C, H, W] or [features] shape to join along", default=0)
    variadic = True

    def output_shape(self, *ins):
        first = ins[0]
        if self.axis >= len(first):
            raise LayerArgError(f"axis {self.axis} is out of range for inputs of rank {len(first)}", arg="axis")
        for i, x in enumerate(ins[1:], start=2):
            if len(x) != len(first):
                raise LayerArgError(f"input #{i} has shape {list(x)} but input #1 has {list(first)}; "
                                    "concat needs inputs of the same rank")
            others = [d for a, d in enumerate(x) if a != self.axis]
            if others != [d for a, d in enumerate(first) if a != self.axis]:
                what = "spatial mismatch" if self.axis == 0 and len(x) == 3 else "size mismatch"
                raise LayerArgError(
                    f"{what}: input #1 is {_describe(first)} but input #{i} is {_describe(x)}; "
                    f"every input must match except along axis {self.axis} "
                    "(check the strides and padding of each branch)")
        total = sum(x[self.axis] for x in ins)
        return tuple(total if a == self.axis else d for a, d in enumerate(first))

    def lower(self, g, ins, shapes, out):
        return g.op("Concat", ins, axis=self.axis + 1)  # ONNX counts the batch axis
