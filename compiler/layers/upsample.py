"""Upsampling: resize each channel by a scale or to a size (PyTorch's F.interpolate).

No weights, no MACs. FLOPs per output element: the weighted sum of its taps, 2*taps - 1
(bilinear 4 taps: 7, bicubic 16: 31); nearest copies one value: 0. The tap weights depend on
the row and column only, so computing them is not counted.

Receptive field (arith.Step): an output reads `taps per axis` neighbouring inputs from floor(c),
c being its source coordinate, and neighbouring outputs are 1/scale input pixels apart, so the
jump divides by the scale (exactly, as a Fraction).
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

from ..arith import Step, pair
from ..errors import LayerArgError
from ..registry import BOOL, MAX_ARGUMENT, POSITIVE_NUMBER, SIZE2, Kind, Layer, arg, enum, numel, register, spatial

SCALE2 = Kind({"anyOf": [POSITIVE_NUMBER.schema,
                         {"type": "array", "items": POSITIVE_NUMBER.schema, "minItems": 2, "maxItems": 2}]},
              "a number > 0 or a list [h, w] of them")

# mode -> (taps per axis, ONNX Resize mode)
MODES = {"nearest": (1, "nearest"), "bilinear": (2, "linear"), "bicubic": (4, "cubic")}


def _scale_pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _float32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


@register("upsample")
class Upsample(Layer):
    """Upsampling by `scale` or to `size`: nearest, bilinear or bicubic (PyTorch's F.interpolate)."""

    scale: tuple | None = arg(SCALE2, "factor, s or [sh, sw]; output = floor(input * s), as in PyTorch",
                              default=None, convert=_scale_pair)
    size: tuple | None = arg(SIZE2, "output size, s or [h, w] (give scale or size)", default=None, convert=pair)
    mode: str = arg(enum(*MODES), "interpolation", default="nearest")
    align_corners: bool | None = arg(BOOL, "bilinear and bicubic: corner pixels' centres line up "
                                     "(PyTorch's align_corners; default false)", default=None)
    shorthand = "scale"

    def _sizes(self, x):
        _, h, w = spatial(x, self)
        if (self.scale is None) == (self.size is None):
            raise LayerArgError("give exactly one of scale and size", arg="size" if self.size else "scale")
        if self.align_corners is not None and self.mode == "nearest":
            raise LayerArgError("align_corners applies to bilinear and bicubic only; remove it, "
                                "or choose one of those modes", arg="align_corners")
        # PyTorch: floor(n * scale) in double precision
        out = self.size or tuple(math.floor(n * s) for n, s in zip((h, w), self.scale))
        if min(out) < 1:
            raise LayerArgError(f"the output would be {list(out)} from [{h}, {w}]; use a larger scale",
                                arg="scale")
        if max(out) > MAX_ARGUMENT:
            raise LayerArgError(f"the output would be [{out[0]:.3g}, {out[1]:.3g}] from [{h}, {w}], beyond what "
                                f"ONNX Runtime can compute with; use a smaller scale", arg="scale")
        if self._by_scale(((h, w), out, self.scale)):
            # onnxruntime sizes its output as (int)(float32(scale) * n), which can round below PyTorch's
            ort = tuple(int(_float32(_float32(s) * n)) for n, s in zip((h, w), self.scale))
            if ort != out:
                raise LayerArgError(f"scale {list(self.scale)} gives {list(out)} in PyTorch but {list(ort)} in "
                                    f"onnxruntime's float32 arithmetic; give size: {list(out)} instead", arg="scale")
        return (h, w), out

    def output_shape(self, x):
        return (x[0],) + self._sizes(x)[1]

    def flops(self, out, x):
        taps = MODES[self.mode][0] ** 2
        return numel(out) * (2 * taps - 1 if taps > 1 else 0)

    def _by_scale(self, ins) -> bool:
        """Lower with ONNX `scales`: only where PyTorch maps coordinates by 1/scale and that differs
        from in/out (n * scale not whole). Elsewhere `sizes` fixes the output size exactly."""
        if self.scale is None or self.align_corners:
            return False
        return any(Fraction(str(s)) * n != o for n, o, s in zip(*ins))

    def _step(self, n, o, s):
        """Input pixels between neighbouring outputs, as PyTorch maps them."""
        if self.align_corners:
            return Fraction(n - 1, o - 1) if o > 1 else Fraction(0)
        return 1 / Fraction(str(s)) if self.scale else Fraction(n, o)

    def window(self, x):
        ins, outs = self._sizes(x)
        span = MODES[self.mode][0] - 1
        steps, offsets = [], []
        for n, o, s in zip(ins, outs, self.scale or (None, None)):
            step = self._step(n, o, s)
            # the first output's source coordinate: 0, or half a step less half a pixel
            c0 = 0 if self.mode == "nearest" or self.align_corners else (step - 1) / 2
            steps.append(step)
            offsets.append(math.floor(c0) + Fraction(span, 2))
        return Step((span, span), tuple(steps), tuple(offsets))

    def lower(self, g, ins, shapes, out):
        sizes = self._sizes(shapes[0])
        taps, onnx_mode = MODES[self.mode]
        # scales and sizes name all four axes, not `axes=[2, 3]`: onnxruntime's symbolic shape
        # inference (run before int8 quantisation) ignores `axes` and would make the output 2-D
        if self._by_scale((*sizes, self.scale)):
            targets = ["", g.const([1.0, 1.0, *(float(s) for s in self.scale)], dtype="float32"), ""]
        else:
            batch_channels = g.op("Shape", [ins[0]], end=2)
            targets = ["", "", g.op("Concat", [batch_channels, g.const(list(sizes[1]))], axis=0)]
        if self.mode == "nearest":
            coords = "asymmetric"  # PyTorch's legacy 'nearest': floor(dst / scale)
        else:
            coords = "align_corners" if self.align_corners else "half_pixel"
        return g.op("Resize", [ins[0]] + targets, mode=onnx_mode,
                    coordinate_transformation_mode=coords,
                    nearest_mode="floor" if self.mode == "nearest" else None,
                    cubic_coeff_a=-0.75 if self.mode == "bicubic" else None)  # PyTorch's a
