"""Window arithmetic shared by convolution and pooling: pure integer functions over any rank.

Output size follows PyTorch (and ONNX with explicit pads):
    out = floor((n + pad_begin + pad_end - dilation*(k-1) - 1) / stride) + 1
With ceil_mode the floor becomes a ceiling, and, as in PyTorch, a last window that would start
in the end padding is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def pair(value) -> tuple[int, int]:
    """An int or a [h, w] list -> (h, w)."""
    if isinstance(value, (list, tuple)):
        return (int(value[0]), int(value[1]))
    return (int(value), int(value))


def padding_arg(value):
    """Normalise a padding argument: 'same'/'valid' stay strings; numbers become (t, l, b, r)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        if len(value) == 2:
            return (value[0], value[1], value[0], value[1])
        return tuple(int(v) for v in value)
    return (int(value),) * 4


@dataclass(frozen=True)
class Window:
    """One sliding window per spatial axis, resolved against a concrete input size.

    `begin` and `end` are the explicit pads, so `same` and `valid` never reach later stages.
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    begin: tuple[int, ...]
    end: tuple[int, ...]
    ceil_mode: bool = False

    @property
    def effective_kernel(self) -> tuple[int, ...]:
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def pads(self) -> tuple[int, ...]:
        """ONNX order: all begins, then all ends ([top, left, bottom, right] in 2-D)."""
        return self.begin + self.end

    # The receptive-field step (see Step): a window reads k_eff - 1 steps past its first input,
    # and its first output is centred (k_eff - 1)/2 - pad_begin input pixels in.
    @property
    def span(self) -> tuple:
        return tuple(e - 1 for e in self.effective_kernel)

    @property
    def offset(self) -> tuple:
        return tuple((e - 1) / 2 - b for e, b in zip(self.effective_kernel, self.begin))


@dataclass(frozen=True)
class Step:
    """A receptive-field step that is no sliding window (upsampling, transposed convolution).

    Per axis, in input pixels: `span`, how many steps past its first input one output reads;
    `stride`, the distance between neighbouring outputs (a Fraction below 1 when the layer
    upsamples, so jumps stay exact); `offset`, the centre of the first output's field.
    """

    span: tuple
    stride: tuple
    offset: tuple


def resolve(padding, size, kernel, stride, dilation, ceil_mode=False) -> Window:
    """Turn a padding argument into explicit pads for an input of `size` (one int per axis)."""
    rank = len(size)
    eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if padding == "valid":
        begin = end = (0,) * rank
    elif padding == "same":
        # TensorFlow/Keras 'same': output ceil(n/stride); odd extra padding goes at the end
        # (ONNX SAME_UPPER). With stride 1 this equals PyTorch's padding='same'.
        totals = [max((math.ceil(n / s) - 1) * s + e - n, 0) for n, s, e in zip(size, stride, eff)]
        begin = tuple(t // 2 for t in totals)
        end = tuple(t - t // 2 for t in totals)
    else:
        begin, end = tuple(padding[:rank]), tuple(padding[rank:])
    return Window(tuple(kernel), tuple(stride), tuple(dilation), begin, end, ceil_mode)


def output_size(n: int, k_eff: int, stride: int, begin: int, end: int, ceil_mode: bool = False) -> int:
    """Number of window positions along one axis (may be <= 0 when the window does not fit)."""
    span = n + begin + end - k_eff
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= n + begin:  # PyTorch: the last window must start inside the input
        out -= 1
    return out


def output_sizes(size, window: Window) -> tuple[int, ...]:
    return tuple(
        output_size(n, e, s, b, en, window.ceil_mode)
        for n, e, s, b, en in zip(size, window.effective_kernel, window.stride, window.begin, window.end)
    )


def unread(n: int, k_eff: int, stride: int, begin: int, end: int, out: int) -> range:
    """Input indices (0-based, unpadded) that no window reads: the slide's (7-3)/3+1 = 2.33 case."""
    covered = (out - 1) * stride + k_eff  # in padded coordinates
    first = max(covered - begin, 0)
    return range(first, n) if first < n else range(0)


def pooled_cover(n: int, out: int) -> int:
    """The sum of the widths of adaptive pooling's bins, floor(i*n/out) .. ceil((i+1)*n/out) for i
    below out, without listing them: n + out - gcd(n, out).

    Bin i spans ceil((r_i + n) / out) positions where r_i = i*n mod out; the ceiling adds one
    exactly when out does not divide r_i + n, which happens for all but gcd(n, out) of the bins.
    """
    return n + out - math.gcd(n, out)


def pooled_widest(n: int, out: int) -> int:
    """The widest of those bins: ceil((n + out - gcd(n, out)) / out), from the largest r_i."""
    return -(-(n + out - math.gcd(n, out)) // out)
