"""Pooling: max, average, L2 (spatial and across channels), global and adaptive.

No weights and no MACs (MACs count conv and dense work only). FLOPs per output element:
max k*k - 1 comparisons; average k*k (adds and one divide); L2 2*k*k + 1 (squares, adds, a
square root). Global and adaptive pooling read each input element once per window holding it.
"""

from __future__ import annotations

from .. import arith
from ..arith import Window, pair, padding_arg
from ..errors import LayerArgError
from ..registry import (BOOL, GLOBAL, PADDING, POSITIVE_INT, SIZE2, Layer, arg, arguments, numel, register,
                        spatial)
from ._window import pool_padding_check, slide, tiling


@arguments
class _Pool(Layer):
    """Arguments and rules shared by windowed spatial pooling."""

    kernel: tuple = arg(SIZE2, "window size, k or [kh, kw]", convert=pair)
    stride: tuple | None = arg(SIZE2, "step (default: the kernel size)", default=None, convert=pair)
    padding: object = arg(PADDING, "padding: p, [ph, pw], [top, left, bottom, right], 'same' or 'valid'",
                          default=0, convert=padding_arg)
    ceil_mode: bool = arg(BOOL, "round the output size up instead of down (PyTorch's ceil_mode)", default=False)
    shorthand = "kernel"
    flops_per_tap = 1  # per kernel element per output element
    flops_extra = 0  # per output element

    def _slide(self, x):
        stride = self.stride or self.kernel  # PyTorch and Keras: stride defaults to the kernel
        win, out = slide(self, x, self.kernel, stride, self.padding, ceil_mode=self.ceil_mode)
        pool_padding_check(win)
        return win, out

    def output_shape(self, x):
        _, (h, w) = self._slide(x)
        return (x[0], h, w)

    def flops(self, out, x):
        taps = self.kernel[0] * self.kernel[1]
        return numel(out) * (self.flops_per_tap * taps + self.flops_extra)

    def window(self, x):
        return self._slide(x)[0]

    def warnings(self, x):
        win, out = self._slide(x)
        return tiling(x, win, out)

    def _attrs(self):
        return {}

    def _padding_counts(self) -> bool:
        """Whether padded zeros enter the result's divisor (average pooling's count_include_pad)."""
        return False

    def lower(self, g, ins, shapes, out):
        win, sizes = self._slide(shapes[0])
        end, ceil_mode = list(win.end), self.ceil_mode
        if ceil_mode:
            # PyTorch drops a last window that would start in the end padding; ONNX's ceil formula
            # keeps it (onnx's shape inference then disagrees). So write the windows PyTorch keeps
            # as explicit end padding with ceil_mode off: the same windows, the same values, as
            # long as the extra padding is not counted in an average.
            needed = [max(0, (o - 1) * s + k - n - b) for o, s, k, n, b in
                      zip(sizes, win.stride, win.effective_kernel, shapes[0][1:], win.begin)]
            if not self._padding_counts() or all(n <= e for n, e in zip(needed, win.end)):
                end, ceil_mode = needed, False
        return g.op(self.onnx_op, ins, kernel_shape=list(win.kernel), strides=list(win.stride),
                    pads=list(win.begin) + end, ceil_mode=int(ceil_mode), **self._attrs())


@register("maxpool")
class MaxPool(_Pool):
    """Max pooling over each kernel window, per channel."""

    flops_extra = -1  # k*k - 1 comparisons
    onnx_op = "MaxPool"


@register("avgpool")
class AvgPool(_Pool):
    """Average pooling over each kernel window, per channel."""

    count_include_pad: bool = arg(BOOL, "count padded zeros in the divisor (PyTorch's default)", default=True)
    onnx_op = "AveragePool"

    def _attrs(self):
        return {"count_include_pad": int(self.count_include_pad)}

    def _padding_counts(self) -> bool:
        return self.count_include_pad


@register("l2pool")
class L2Pool(_Pool):
    """L2 pooling: the square root of the sum of squares over each window (deck 000)."""

    flops_per_tap = 2
    flops_extra = 1
    onnx_op = "LpPool"

    def _attrs(self):
        return {"p": 2}


@register("l2pool_channels")
class L2PoolChannels(Layer):
    """L2 pooling across channels: sqrt of the sum of squares over `size` neighbouring channels (deck 000's 'over features')."""

    size: int = arg(POSITIVE_INT, "number of neighbouring channels pooled together")
    stride: int | None = arg(POSITIVE_INT, "step along the channels (default: size, disjoint groups)", default=None)
    shorthand = "size"

    def _stride(self):
        return self.stride or self.size

    def output_shape(self, x):
        c = x[0]
        if self.size > c:
            raise LayerArgError(f"size {self.size} is larger than the {c} input channels; "
                                f"use a size <= {c}", arg="size")
        return (arith.output_size(c, self.size, self._stride(), 0, 0),) + tuple(x[1:])

    def flops(self, out, x):
        return numel(out) * (2 * self.size + 1)

    def warnings(self, x):
        lost = arith.unread(x[0], self.size, self._stride(), 0, 0, self.output_shape(x)[0])
        if not lost:
            return []
        return [(f"groups of {self.size} channels at stride {self._stride()} do not tile {x[0]} channels: "
                 + (f"channel {lost[0]} is" if len(lost) == 1 else f"channels {lost[0]}-{lost[-1]} are")
                 + " never read; use a size and stride that divide evenly",
                 "size")]

    def lower(self, g, ins, shapes, out):
        # Pool over the channel axis by making it the first pooled axis of a one-channel volume.
        one = g.const([1])
        rank = len(shapes[0])
        volume = g.op("Unsqueeze", [ins[0], one])
        pooled = g.op("LpPool", [volume], p=2, kernel_shape=[self.size] + [1] * (rank - 1),
                      strides=[self._stride()] + [1] * (rank - 1))
        return g.op("Squeeze", [pooled, one])


_KEEPDIMS = "keep the output as [C, 1, 1] (false gives [C], as Keras does)"


@arguments
class _GlobalPool(Layer):
    keepdims: bool = arg(BOOL, _KEEPDIMS, default=True)

    def output_shape(self, x):
        c, _, _ = spatial(x, self)
        return (c, 1, 1) if self.keepdims else (c,)

    def flops(self, out, x):
        return numel(x)

    def window(self, x):
        return GLOBAL

    def lower(self, g, ins, shapes, out):
        y = g.op(self.onnx_op, ins)
        return y if self.keepdims else g.op("Flatten", [y], axis=1)


@register("global_avgpool")
class GlobalAvgPool(_GlobalPool):
    """Global average pooling: one mean per channel."""

    onnx_op = "GlobalAveragePool"


@register("global_maxpool")
class GlobalMaxPool(_GlobalPool):
    """Global max pooling: one maximum per channel."""

    onnx_op = "GlobalMaxPool"


@arguments
class _AdaptivePool(Layer):
    """Pool to a fixed output size; bins follow PyTorch: floor(i*n/out) to ceil((i+1)*n/out)."""

    output_size: tuple = arg(SIZE2, "output size, s or [h, w]", convert=pair)
    shorthand = "output_size"

    def output_shape(self, x):
        c, _, _ = spatial(x, self)
        return (c,) + self.output_size

    def flops(self, out, x):
        rows = arith.pooled_cover(x[1], self.output_size[0])
        cols = arith.pooled_cover(x[2], self.output_size[1])
        return x[0] * rows * cols

    def window(self, x):
        # Exact when the output divides the input; otherwise the largest bin, at the mean step.
        kernel, stride = [], []
        for n, o in zip(x[1:], self.output_size):
            kernel.append(arith.pooled_widest(n, o))
            stride.append(max(n // o, 1))
        return Window(tuple(kernel), tuple(stride), (1, 1), (0, 0), (0, 0))

    def lower(self, g, ins, shapes, out):
        (_, h, w), (oh, ow) = shapes[0], self.output_size
        if h % oh == 0 and w % ow == 0:  # equal bins: one plain pooling
            return g.op(self.pool_op, ins, kernel_shape=[h // oh, w // ow], strides=[h // oh, w // ow])
        # Otherwise one axis at a time (a rectangle's mean or max is that of its rows' means or
        # maxima), the one that leaves the smaller tensor first: then no intermediate is larger
        # than both the input and the output.
        axes = [(2, h, oh), (3, w, ow)]
        if oh * w > h * ow:
            axes.reverse()
        value = ins[0]
        for axis, n, o in axes:
            if n % o == 0:
                value = _pool_along(g, self.pool_op, value, axis, n // o, n // o)
            else:
                value = self._bins(g, value, axis, -(-n // o), *_bin_bounds(g, n, o))
        return value

    def _bins(self, g, x, axis, k, start, end):
        """Pool `x` over the bins [start, end) along `axis`; every bin is k or k + 1 <= 2k long."""
        raise NotImplementedError


def _pool_along(g, op, x, axis, kernel, stride):
    """Pool along one spatial axis only (2: height, 3: width)."""
    kernel_shape, strides = [1, 1], [1, 1]
    kernel_shape[axis - 2], strides[axis - 2] = kernel, stride
    return g.op(op, [x], kernel_shape=kernel_shape, strides=strides)


def _bin_bounds(g, n, o):
    """PyTorch's adaptive bins [floor(i*n/o), ceil((i+1)*n/o)), i < o, as two int64 vectors.

    They are computed when the model runs, from a Range: a fixed number of nodes and scalar
    constants however large o is (the model file does not grow with the bins).
    """
    i = g.op("Range", [g.const(0), g.const(o), g.const(1)])

    def floor_times_n_over_o(j):  # j*(n//o) + j*(n%o)//o: no product reaches n*o, which may pass int64
        return g.op("Add", [g.op("Mul", [j, g.const(n // o)]),
                            g.op("Div", [g.op("Mul", [j, g.const(n % o)]), g.const(o)])])

    start = floor_times_n_over_o(i)
    # ceil((i+1)*n/o) = n - floor((o-1-i)*n/o): the same floor, mirrored.
    end = g.op("Sub", [g.const(n), floor_times_n_over_o(g.op("Sub", [g.const(o - 1), i]))])
    return start, end


@register("adaptive_avgpool")
class AdaptiveAvgPool(_AdaptivePool):
    """Adaptive average pooling to a fixed output size (PyTorch's AdaptiveAvgPool2d)."""

    pool_op = "AveragePool"

    def _bins(self, g, x, axis, k, start, end):
        # The mean of the k-window at each bin's start; a bin one longer adds its last element:
        # (k*mean + last) / (k + 1).
        mean = g.op("Gather", [_pool_along(g, "AveragePool", x, axis, k, 1), start], axis=axis)
        last = g.op("Gather", [x, g.op("Sub", [end, g.const(1)])], axis=axis)
        longer = g.op("Greater", [g.op("Sub", [end, start]), g.const(k)])
        if axis == 2:
            longer = g.op("Unsqueeze", [longer, g.const([1])])  # [o, 1]: one flag per row, across the width
        k_f, k1_f = g.const(float(k), dtype="float32"), g.const(float(k + 1), dtype="float32")
        longer_mean = g.op("Div", [g.op("Add", [g.op("Mul", [mean, k_f]), last]), k1_f])
        return g.op("Where", [longer, longer_mean, mean])


@register("adaptive_maxpool")
class AdaptiveMaxPool(_AdaptivePool):
    """Adaptive max pooling to a fixed output size (PyTorch's AdaptiveMaxPool2d)."""

    pool_op = "MaxPool"

    def _bins(self, g, x, axis, k, start, end):
        # A bin [s, e) with k <= e - s <= 2k is the union of the k-windows at s and at e - k.
        m = _pool_along(g, "MaxPool", x, axis, k, 1)
        last = g.op("Sub", [end, g.const(k)])
        return g.op("Max", [g.op("Gather", [m, start], axis=axis), g.op("Gather", [m, last], axis=axis)])
