"""Sliding-window checks shared by convolution and pooling (the arithmetic is in arith.py)."""

from __future__ import annotations

from .. import arith
from ..errors import LayerArgError
from ..registry import spatial

AXES = ("height", "width")


def slide(layer, x, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
    """Resolve the window for input x = [C, H, W]; return (Window, (out_h, out_w)).

    Raises when the (dilated) kernel does not fit in the padded input, which is also the only
    way an output size can reach zero or less.
    """
    _, h, w = spatial(x, layer)
    win = arith.resolve(padding, (h, w), kernel, stride, dilation, ceil_mode)
    for n, e, b, en, axis in zip((h, w), win.effective_kernel, win.begin, win.end, AXES):
        padded = n + b + en
        if e > padded:
            size = f"{e} (dilated)" if e != kernel[AXES.index(axis)] else f"{e}"
            raise LayerArgError(
                f"kernel {size} is larger than the padded input {axis} {padded} ({n} + padding {b}+{en}): "
                f"the output {axis} would be floor(({padded} - {e})/{win.stride[AXES.index(axis)]}) + 1 = "
                f"{(padded - e) // win.stride[AXES.index(axis)] + 1}; "
                "use a smaller kernel, more padding, or fewer downsampling layers before this one",
                arg="kernel",
            )
    return win, arith.output_sizes((h, w), win)


def pool_padding_check(win) -> None:
    """PyTorch and ONNX pooling need pad <= kernel/2, else a window could hold only padding."""
    for k, b, e, axis in zip(win.effective_kernel, win.begin, win.end, AXES):
        if max(b, e) > k // 2:
            raise LayerArgError(f"padding {max(b, e)} on the {axis} is more than half the kernel ({k}); "
                                f"use padding <= {k // 2}", arg="padding")


def tiling(x, win, out) -> list[tuple[str, str]]:
    """The slide's `(7-3)/3+1 = 2.33` case: name the input rows and columns no window reads."""
    parts, formulas = [], []
    if any(s > e for s, e in zip(win.stride, win.effective_kernel)):
        return []  # stride > kernel subsamples by design (a 1x1 stride-2 projection): no border case
    for n, e, s, b, en, o, noun in zip(x[1:], win.effective_kernel, win.stride, win.begin, win.end, out,
                                        ("row", "column")):
        lost = arith.unread(n, e, s, b, en, o)
        if not lost:
            continue
        pad = f" + {b + en}" if b + en else ""
        formulas.append(f"({n}{pad} - {e})/{s} + 1 = {(n + b + en - e) / s + 1:.2f}")
        singular = len(lost) == 1
        if singular:
            parts.append(f"{noun} {lost[0]}")
        else:
            parts.append(f"{noun}s {lost[0]}-{lost[-1]}")
    if not parts:
        return []
    formula = formulas[0] if len(set(formulas)) == 1 else " and ".join(formulas)
    verb = "is" if len(parts) == 1 and singular else "are"
    return [(f"the window does not tile its input: {formula}; input {' and '.join(parts)} (0-based) "
             f"{verb} never read; change the padding or the stride so that the window fits exactly",
             "stride")]
