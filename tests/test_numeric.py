"""Numeric correctness of the ONNX lowering: onnxruntime against independent numpy references.

Every registered layer type is compiled from a tiny spec, given random (non-trivial) weights
through `compiler.weights.imported`, run with onnxruntime's CPUExecutionProvider on a random
batch of 2, and compared with a reference written here from the published semantics, which the
specs follow (PyTorch's unless a layer's docstring says otherwise):
  - conv: cross-correlation over explicitly zero-padded input, weights [F, C/groups, kh, kw];
    'same' is TensorFlow's (out = ceil(n/s), the odd pad pixel at the end);
  - pooling: PyTorch's output size, ceil_mode included ("the last window must start inside the
    input or the left padding"); max ignores padding; avg divides by the window clipped to the
    padded input (count_include_pad true) or by the input pixels it holds (false); L2 is the
    square root of the sum of squares of the input pixels in the window;
  - adaptive pooling bins floor(i*n/o) .. ceil((i+1)*n/o);
  - LRN: b_c = a_c / (k + alpha/size * sum_{c-size//2 .. c+(size-1)//2} a^2)^beta (PyTorch);
  - LCN: as written in compiler/layers/norm.py's docstring;
  - BatchNorm: (x - mean) / sqrt(var + eps) * weight + bias;
  - zero_pad_shortcut: x[:, :, ::s, ::s], channels zero padded, extra//2 before, the rest after.

The references compute in float64 and never call convspec's arithmetic (compiler.arith) nor
onnxruntime; ONNX's own reference evaluator is a second oracle for a few cases.
Tolerances are rtol = atol = 1e-5 throughout: the sums are short (at most ~100 float32 terms of
order 1), so float32 rounding stays near 1e-6.
"""

from __future__ import annotations

import ast
import json
import math
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

import compiler.layers  # noqa: F401  (fills the registry)
from compiler.errors import ShapeError
from compiler.lower import lower
from compiler.pipeline import analyse_text
from compiler.registry import REGISTRY
from compiler.weights import imported, seeded

TOL = dict(rtol=1e-5, atol=1e-5)


# ============================================================================================
# building and running


def spec(in_shape, *layers) -> str:
    """Spec text. Each layer is (type, args) or (type, args, name, inputs); the last is `t`."""
    lines = [f"input: {json.dumps(list(in_shape))}", "layers:"]
    for i, layer in enumerate(layers):
        type_, args = layer[0], layer[1]
        name = layer[2] if len(layer) > 2 else ("t" if i == len(layers) - 1 else f"l{i}")
        inputs = layer[3] if len(layer) > 3 else None
        lines.append(f"  - {type_}: {'null' if args is None else json.dumps(args)}")
        lines.append(f"    name: {name}")
        if inputs is not None:
            lines.append(f"    inputs: {json.dumps(inputs)}")
    return "\n".join(lines) + "\n"


def compile_spec(text: str, arrays: dict):
    a = analyse_text(text, "t.yaml")
    return a, lower(a, imported(a, arrays, "test")).to_model()


def run_ort(model, x: np.ndarray, name: str = "t") -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return sess.run([name], {"input": x})[0]


def run_reference_evaluator(model, x: np.ndarray, name: str = "t") -> np.ndarray:
    return ReferenceEvaluator(model).run([name], {"input": x})[0]


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randx(rng, in_shape) -> np.ndarray:
    return rng.standard_normal((2, *in_shape)).astype(np.float32)


def kernel(rng, shape) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)


def vector(rng, n, scale=0.5) -> np.ndarray:
    return (rng.standard_normal(n) * scale).astype(np.float32)


def check(text, arrays, x, expected, tol=TOL, oracle=False):
    """Compile, run with onnxruntime, compare with the numpy reference (and the shape inferred)."""
    a, model = compile_spec(text, arrays)
    t = next(f for f in a.layers if f.node.name == "t")
    assert (x.shape[0], *t.output_shape) == expected.shape, "inferred shape differs from the reference's"
    got = run_ort(model, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **tol)
    if oracle:
        np.testing.assert_allclose(run_reference_evaluator(model, x), expected, **tol)
    return got




# ============================================================================================
# numpy references (float64)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def explicit_pads(padding, hw, k, s, d=(1, 1)):
    """(top, left, bottom, right). 'same' is TensorFlow's: out = ceil(n/s), odd pad at the end."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        begin, end = [], []
        for n, kk, ss, dd in zip(hw, k, s, d):
            out = -(-n // ss)
            total = max((out - 1) * ss + dd * (kk - 1) + 1 - n, 0)
            begin.append(total // 2)
            end.append(total - total // 2)
        return (begin[0], begin[1], end[0], end[1])
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[1], padding[0], padding[1])
    return tuple(padding)


def conv_ref(x, w, b=None, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Cross-correlation of zero-padded x with w [F, C/groups, kh, kw], as torch.nn.Conv2d."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    assert cg * groups == c
    t, l, bo, r = pads
    xp = np.zeros((n, c, h + t + bo, wd + l + r))
    xp[:, :, t:t + h, l:l + wd] = x
    (sh, sw), (dh, dw) = stride, dilation
    oh = (h + t + bo - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + l + r - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, f, oh, ow))
    fg = f // groups
    for g in range(groups):
        xs, ws = xp[:, g * cg:(g + 1) * cg], w[g * fg:(g + 1) * fg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
                out[:, g * fg:(g + 1) * fg] += np.einsum("nchw,fc->nfhw", patch, ws[:, :, i, j])
    if b is not None:
        out += b.astype(np.float64)[None, :, None, None]
    return out


def softmax_ref(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


ACT = {
    None: lambda x: x,
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x, a=0.01: np.where(x > 0, x, a * x),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": lambda x: softmax_ref(x, 1),  # channels or features: axis 1 with the batch
}

# The published formulas, with PyTorch's constants (the torch cross-check below confirms them).
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
_erf = np.vectorize(math.erf)


def hardsigmoid_ref(x):
    return np.clip(x + 3, 0, 6) / 6


def softplus_ref(x, beta=1.0, threshold=20.0):
    return np.where(beta * x > threshold, x, np.logaddexp(0, beta * x) / beta)


def elu_ref(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


NEW_ACT = {
    "relu6": lambda x: np.clip(x, 0, 6),
    "hardtanh": lambda x, lo=-1.0, hi=1.0: np.clip(x, lo, hi),
    "hardsigmoid": hardsigmoid_ref,
    "hardswish": lambda x: x * hardsigmoid_ref(x),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    "elu": elu_ref,
    "selu": lambda x: SELU_SCALE * elu_ref(x, SELU_ALPHA),
    "softplus": softplus_ref,
    "mish": lambda x: x * np.tanh(np.logaddexp(0, x)),
}


def pool_len(n, k, s, begin, end, ceil_mode):
    """PyTorch's pooling_output_shape, with ceil_mode's 'start inside input or left padding' rule."""
    numer = n + begin + end - k + ((s - 1) if ceil_mode else 0)
    out = numer // s + 1
    if ceil_mode and (out - 1) * s >= n + begin:
        out -= 1
    return out


def pool_ref(kind, x, k, s, pads, ceil_mode=False, count_include_pad=True):
    """kind: max, avg, l2. Loops over output pixels; windows in input coordinates."""
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    t, l, b, r = pads
    oh, ow = pool_len(h, k[0], s[0], t, b, ceil_mode), pool_len(w, k[1], s[1], l, r, ceil_mode)
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        h0 = i * s[0] - t
        h1 = min(h0 + k[0], h + b)  # clipped to the padded input (PyTorch's pool_size)
        for j in range(ow):
            w0 = j * s[1] - l
            w1 = min(w0 + k[1], w + r)
            win = x[:, :, max(h0, 0):min(h1, h), max(w0, 0):min(w1, w)]
            assert win.size, "a window holding no input pixel"
            if kind == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            elif kind == "l2":
                out[:, :, i, j] = np.sqrt((win ** 2).sum(axis=(2, 3)))
            else:
                divisor = (h1 - h0) * (w1 - w0) if count_include_pad else win.shape[2] * win.shape[3]
                out[:, :, i, j] = win.sum(axis=(2, 3)) / divisor
    return out


def bins(n, o):
    return [(math.floor(i * n / o), math.ceil((i + 1) * n / o)) for i in range(o)]


def adaptive_ref(kind, x, out_hw):
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    out = np.empty((n, c, *out_hw))
    reduce = np.max if kind == "max" else np.mean
    for i, (h0, h1) in enumerate(bins(h, out_hw[0])):
        for j, (w0, w1) in enumerate(bins(w, out_hw[1])):
            out[:, :, i, j] = reduce(x[:, :, h0:h1, w0:w1], axis=(2, 3))
    return out


def lrn_ref(x, size, alpha, beta, k):
    """PyTorch's local_response_norm: channels c - size//2 .. c + (size-1)//2, divisor size."""
    x = x.astype(np.float64)
    sq, c = x ** 2, x.shape[1]
    out = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c - 1, ch + (size - 1) // 2)
        out[:, ch] = x[:, ch] / (k + alpha / size * sq[:, lo:hi + 1].sum(axis=1)) ** beta
    return out


def lcn_ref(x, size, mode, across, eps):
    """norm.py's docstring: means over the size x size window's in-image pixels (and channels)."""
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    half = size // 2

    def local_mean(v):
        out = np.empty((n, 1 if across else c, h, w))
        for i in range(h):
            for j in range(w):
                block = v[:, :, max(i - half, 0):i + half + 1, max(j - half, 0):j + half + 1]
                out[:, :, i, j] = block.mean(axis=(1, 2, 3))[:, None] if across else block.mean(axis=(2, 3))
        return out

    mean = local_mean(x)
    if mode == "subtractive":
        return x - mean
    mean_square = local_mean(x * x)
    if mode == "divisive":
        return x / np.sqrt(mean_square + eps)
    return (x - mean) / np.sqrt(mean_square - mean ** 2 + eps)


def bn_ref(x, weight, bias, mean, var, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    f = lambda v: v.astype(np.float64).reshape(shape)  # noqa: E731
    return (x.astype(np.float64) - f(mean)) / np.sqrt(f(var) + eps) * f(weight) + f(bias)


# ============================================================================================
# convolutions

CONV_ROWS = [
    ("k3", {"filters": 4, "kernel": 3}, (3, 7, 8)),
    ("k3-pad1", {"filters": 4, "kernel": 3, "padding": 1}, (3, 7, 8)),
    ("k5-s2-pad2", {"filters": 3, "kernel": 5, "stride": 2, "padding": 2}, (2, 11, 10)),
    ("k3x2-s2x3", {"filters": 3, "kernel": [3, 2], "stride": [2, 3]}, (2, 10, 11)),
    ("k1-s2", {"filters": 5, "kernel": 1, "stride": 2}, (3, 7, 8)),
    ("dilation2", {"filters": 3, "kernel": 3, "dilation": 2, "padding": 2}, (2, 9, 9)),
    ("dilation2x1-s2-same", {"filters": 3, "kernel": 3, "dilation": [2, 1], "stride": 2, "padding": "same"},
     (2, 9, 10)),
    ("dilation3-s2", {"filters": 2, "kernel": 3, "dilation": 3, "stride": 2}, (1, 15, 15)),
    ("groups2", {"filters": 6, "kernel": 3, "groups": 2, "padding": 1}, (4, 6, 6)),
    ("groups3-dilated", {"filters": 3, "kernel": 3, "groups": 3, "dilation": 2}, (6, 7, 8)),
    ("groups=channels", {"filters": 8, "kernel": 3, "groups": 4, "stride": 2}, (4, 7, 7)),
    ("pad-tlbr", {"filters": 3, "kernel": 3, "padding": [1, 0, 2, 1]}, (2, 6, 7)),
    ("pad-tlbr-s2", {"filters": 3, "kernel": [3, 4], "stride": 2, "padding": [0, 2, 1, 0]}, (2, 7, 9)),
    ("pad-hw", {"filters": 3, "kernel": 3, "padding": [2, 1]}, (2, 5, 6)),
    ("same-s1-k3", {"filters": 4, "kernel": 3, "padding": "same"}, (3, 6, 7)),
    ("same-s1-k4-odd-pad", {"filters": 2, "kernel": 4, "padding": "same"}, (2, 6, 7)),
    ("same-s2-k3-even-in", {"filters": 3, "kernel": 3, "stride": 2, "padding": "same"}, (2, 8, 9)),
    ("same-s2-k4", {"filters": 3, "kernel": 4, "stride": 2, "padding": "same"}, (2, 9, 9)),
    ("same-s2-k5", {"filters": 3, "kernel": 5, "stride": 2, "padding": "same"}, (2, 10, 10)),
    ("valid", {"filters": 3, "kernel": 2, "stride": 2, "padding": "valid"}, (2, 7, 7)),
    ("no-bias", {"filters": 3, "kernel": 3, "bias": False, "padding": 1}, (2, 5, 5)),
] + [
    (f"act-{act}", {"filters": 4, "kernel": 3, "padding": 1, "activation": act}, (3, 5, 6))
    for act in ("relu", "leaky_relu", "sigmoid", "tanh", "softmax", "linear")
] + [
    ("act-relu-no-bias-s2", {"filters": 4, "kernel": 3, "stride": 2, "bias": False, "activation": "relu"}, (3, 7, 7)),
]


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in CONV_ROWS], ids=[r[0] for r in CONV_ROWS])
def test_conv(args, in_shape):
    rng = rng_for("conv", args, in_shape)
    k, s, d = pair(args["kernel"]), pair(args.get("stride", 1)), pair(args.get("dilation", 1))
    g, f, c = args.get("groups", 1), args["filters"], in_shape[0]
    arrays = {"t.weight": kernel(rng, (f, c // g, *k))}
    if args.get("bias", True):
        arrays["t.bias"] = vector(rng, f)
    x = randx(rng, in_shape)
    pads = explicit_pads(args.get("padding", 0), in_shape[1:], k, s, d)
    y = conv_ref(x, arrays["t.weight"], arrays.get("t.bias"), s, pads, d, g)
    check(spec(in_shape, ("conv", args)), arrays, x, ACT[args.get("activation")](y))


DEPTHWISE_ROWS = [
    ("k3-pad1", {"kernel": 3, "padding": 1}, (3, 6, 6)),
    ("mult2-s2", {"kernel": 3, "multiplier": 2, "stride": 2}, (3, 7, 8)),
    ("dilation2-same", {"kernel": 3, "dilation": 2, "padding": "same"}, (2, 7, 7)),
    ("same-s2-odd-pad", {"kernel": 3, "stride": 2, "padding": "same"}, (2, 8, 8)),
    ("pad-tlbr-mult3", {"kernel": [2, 3], "multiplier": 3, "padding": [1, 0, 0, 2]}, (2, 5, 6)),
    ("no-bias-relu", {"kernel": 3, "bias": False, "activation": "relu"}, (4, 5, 5)),
]


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in DEPTHWISE_ROWS], ids=[r[0] for r in DEPTHWISE_ROWS])
def test_depthwise_conv(args, in_shape):
    rng = rng_for("dw", args, in_shape)
    k, s, d = pair(args["kernel"]), pair(args.get("stride", 1)), pair(args.get("dilation", 1))
    c, m = in_shape[0], args.get("multiplier", 1)
    arrays = {"t.weight": kernel(rng, (c * m, 1, *k))}
    if args.get("bias", True):
        arrays["t.bias"] = vector(rng, c * m)
    x = randx(rng, in_shape)
    pads = explicit_pads(args.get("padding", 0), in_shape[1:], k, s, d)
    y = conv_ref(x, arrays["t.weight"], arrays.get("t.bias"), s, pads, d, groups=c)
    check(spec(in_shape, ("depthwise_conv", args)), arrays, x, ACT[args.get("activation")](y))


SEPARABLE_ROWS = [
    ("k3", {"filters": 5, "kernel": 3}, (3, 6, 6)),
    ("mult2-s2-same", {"filters": 4, "kernel": 3, "multiplier": 2, "stride": 2, "padding": "same"}, (3, 8, 9)),
    ("dilation2-pad2", {"filters": 3, "kernel": 3, "dilation": 2, "padding": 2}, (2, 7, 7)),
    ("pad-tlbr", {"filters": 3, "kernel": [3, 2], "padding": [0, 1, 2, 0]}, (2, 5, 6)),
    ("no-bias-tanh", {"filters": 4, "kernel": 3, "bias": False, "activation": "tanh"}, (3, 5, 5)),
]


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in SEPARABLE_ROWS], ids=[r[0] for r in SEPARABLE_ROWS])
def test_separable_conv(args, in_shape):
    """Keras' SeparableConv2D: depthwise (channel c feeds outputs c*m .. c*m+m-1), then 1x1."""
    rng = rng_for("sep", args, in_shape)
    k, s, d = pair(args["kernel"]), pair(args.get("stride", 1)), pair(args.get("dilation", 1))
    c, m, f = in_shape[0], args.get("multiplier", 1), args["filters"]
    arrays = {"t.depthwise.weight": kernel(rng, (c * m, 1, *k)),
              "t.pointwise.weight": kernel(rng, (f, c * m, 1, 1))}
    if args.get("bias", True):
        arrays["t.pointwise.bias"] = vector(rng, f)
    x = randx(rng, in_shape)
    pads = explicit_pads(args.get("padding", 0), in_shape[1:], k, s, d)
    mid = conv_ref(x, arrays["t.depthwise.weight"], None, s, pads, d, groups=c)
    y = np.einsum("nchw,fc->nfhw", mid, arrays["t.pointwise.weight"][:, :, 0, 0].astype(np.float64))
    if "t.pointwise.bias" in arrays:
        y += arrays["t.pointwise.bias"][None, :, None, None]
    check(spec(in_shape, ("separable_conv", args)), arrays, x, ACT[args.get("activation")](y))


SPATIAL_SEPARABLE_ROWS = [
    ("k3x5", {"filters": 4, "kernel": [3, 5]}, (2, 8, 9)),
    ("k3-mid3-s2-same", {"filters": 4, "kernel": 3, "mid": 3, "stride": 2, "padding": "same"}, (2, 8, 9)),
    ("pad-tlbr-s2x1", {"filters": 3, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 2, 0, 1]}, (2, 7, 6)),
    ("pad1-s2x3", {"filters": 2, "kernel": [2, 3], "stride": [2, 3], "padding": 1, "mid": 5}, (3, 7, 10)),
    ("no-bias-sigmoid", {"filters": 3, "kernel": 3, "bias": False, "activation": "sigmoid"}, (2, 5, 6)),
]


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in SPATIAL_SEPARABLE_ROWS],
                         ids=[r[0] for r in SPATIAL_SEPARABLE_ROWS])
def test_spatial_separable_conv(args, in_shape):
    """A kh x 1 conv then a 1 x kw conv == one kh x kw conv with the rank-1 kernel sum_m H[f,m,j] V[m,c,i]."""
    rng = rng_for("ssep", args, in_shape)
    k, s = pair(args["kernel"]), pair(args.get("stride", 1))
    c, f = in_shape[0], args["filters"]
    mid = args.get("mid") or f
    arrays = {"t.vertical.weight": kernel(rng, (mid, c, k[0], 1)),
              "t.horizontal.weight": kernel(rng, (f, mid, 1, k[1]))}
    if args.get("bias", True):
        arrays["t.horizontal.bias"] = vector(rng, f)
    full = np.einsum("fmj,mci->fcij", arrays["t.horizontal.weight"][:, :, 0, :].astype(np.float64),
                     arrays["t.vertical.weight"][:, :, :, 0].astype(np.float64))
    x = randx(rng, in_shape)
    pads = explicit_pads(args.get("padding", 0), in_shape[1:], k, s)
    y = conv_ref(x, full, arrays.get("t.horizontal.bias"), s, pads)
    check(spec(in_shape, ("spatial_separable_conv", args)), arrays, x, ACT[args.get("activation")](y))


# ============================================================================================
# windowed pooling

POOL_SHAPES = [
    ("k2", {"kernel": 2}, (3, 6, 6)),
    ("k2-odd-in", {"kernel": 2}, (2, 7, 5)),
    ("k3-s2-p1", {"kernel": 3, "stride": 2, "padding": 1}, (2, 9, 9)),
    ("k3-s1-p1", {"kernel": 3, "stride": 1, "padding": 1}, (2, 5, 6)),
    ("k3x2-s2x1", {"kernel": [3, 2], "stride": [2, 1]}, (2, 8, 7)),
    ("pad-tlbr", {"kernel": [3, 2], "stride": [2, 1], "padding": [1, 0, 0, 1]}, (2, 8, 7)),
    ("pad-hw", {"kernel": 3, "stride": 2, "padding": [1, 0]}, (2, 7, 8)),
    ("same-s2-odd-pad", {"kernel": 3, "stride": 2, "padding": "same"}, (2, 8, 9)),
    ("same-s1", {"kernel": 3, "stride": 1, "padding": "same"}, (2, 5, 5)),
    ("k3-s2-ceil-112", {"kernel": 3, "stride": 2, "ceil_mode": True}, (2, 112, 112)),
    ("k3-s2-ceil-6", {"kernel": 3, "stride": 2, "ceil_mode": True}, (2, 6, 7)),
    ("k2-s2-p1-ceil-5", {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 5, 5)),
    ("k3-s2-p1-ceil-8", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 8, 8)),
    ("k2-s2-p1-ceil-6", {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 6, 6)),
    ("k3-s3-ceil-tlbr", {"kernel": 3, "stride": 3, "padding": [1, 0, 0, 1], "ceil_mode": True}, (2, 8, 7)),
]
POOL_KINDS = {"maxpool": "max", "avgpool": "avg", "l2pool": "l2"}

# Rows where PyTorch's clipped divisor (count_include_pad true, a ceil_mode window running past
# the padded input) could differ from an implementation dividing by the whole kernel.
POOL_ROWS = [(t, i + ("-exclude-pad" if extra else ""), dict(a, **extra), s)
             for t in POOL_KINDS for (i, a, s) in POOL_SHAPES
             for extra in ([{}, {"count_include_pad": False}] if t == "avgpool" else [{}])]


@pytest.mark.parametrize("type_,args,in_shape", [(r[0], r[2], r[3]) for r in POOL_ROWS],
                         ids=[f"{r[0]}-{r[1]}" for r in POOL_ROWS])
def test_pool(type_, args, in_shape):
    rng = rng_for(type_, args, in_shape)
    k = pair(args["kernel"])
    s = pair(args.get("stride") or args["kernel"])
    pads = explicit_pads(args.get("padding", 0), in_shape[1:], k, s)
    x = randx(rng, in_shape)
    y = pool_ref(POOL_KINDS[type_], x, k, s, pads, args.get("ceil_mode", False),
                 args.get("count_include_pad", True))
    check(spec(in_shape, (type_, args)), {}, x, y)


L2POOL_CHANNELS_ROWS = [
    ("size2", {"size": 2}, (4, 3, 5)),
    ("size3-stride1", {"size": 3, "stride": 1}, (5, 3, 4)),
    ("size3-stride2", {"size": 3, "stride": 2}, (7, 2, 3)),
    ("size3-stride2-untiled", {"size": 3, "stride": 2}, (6, 2, 3)),
    ("size=stride=3", {"size": 3, "stride": 3}, (6, 2, 2)),
    ("size=C", {"size": 5}, (5, 3, 3)),
    ("features-size2", {"size": 2}, (8,)),
    ("features-size3-stride1", {"size": 3, "stride": 1}, (7,)),
]


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in L2POOL_CHANNELS_ROWS],
                         ids=[r[0] for r in L2POOL_CHANNELS_ROWS])
def test_l2pool_channels(args, in_shape):
    rng = rng_for("l2c", args, in_shape)
    size, stride = args["size"], args.get("stride") or args["size"]
    x = randx(rng, in_shape)
    n_out = (in_shape[0] - size) // stride + 1
    x64 = x.astype(np.float64)
    y = np.stack([np.sqrt((x64[:, o * stride:o * stride + size] ** 2).sum(axis=1)) for o in range(n_out)], axis=1)
    check(spec(in_shape, ("l2pool_channels", args)), {}, x, y)


GLOBAL_ROWS = [(t, keep, shape) for t in ("global_avgpool", "global_maxpool")
               for keep in (True, False) for shape in ((3, 5, 7), (2, 1, 1))]


@pytest.mark.parametrize("type_,keepdims,in_shape", GLOBAL_ROWS,
                         ids=[f"{t}-keep{k}-{'x'.join(map(str, s))}" for t, k, s in GLOBAL_ROWS])
def test_global_pool(type_, keepdims, in_shape):
    rng = rng_for(type_, keepdims, in_shape)
    x = randx(rng, in_shape)
    reduce = np.mean if type_ == "global_avgpool" else np.max
    y = reduce(x.astype(np.float64), axis=(2, 3), keepdims=keepdims)
    check(spec(in_shape, (type_, {"keepdims": keepdims})), {}, x, y)


ADAPTIVE_SIZES = [
    ("10to3", 3, (2, 10, 10)),
    ("7to5", 5, (2, 7, 7)),
    ("8x10to3x4", [3, 4], (2, 8, 10)),
    ("8to4", 4, (2, 8, 8)),
    ("8x9to4x3-divides", [4, 3], (2, 8, 9)),
    ("8x10to4x3-mixed", [4, 3], (2, 8, 10)),
    ("6to1", 1, (3, 6, 5)),
    ("5to5", 5, (2, 5, 5)),
    ("3x4to5x6-upsample", [5, 6], (2, 3, 4)),
    # non-uniform and large: bins of two lengths, overlapping, more bins than inputs
    ("1x3to1x1000", [1, 1000], (3, 1, 3)),
    ("10to7", 7, (2, 10, 10)),
    ("7to3", 3, (2, 7, 7)),
    ("10x9to7x3-one-axis-divides", [7, 3], (2, 10, 9)),
    ("5x300to300x7", [300, 7], (1, 5, 300)),
    ("1000x2to999x3", [999, 3], (2, 1000, 2)),
]
ADAPTIVE_ROWS = [(t, i, o, s) for t in ("adaptive_avgpool", "adaptive_maxpool") for (i, o, s) in ADAPTIVE_SIZES]


@pytest.mark.parametrize("type_,out,in_shape", [(r[0], r[2], r[3]) for r in ADAPTIVE_ROWS],
                         ids=[f"{r[0]}-{r[1]}" for r in ADAPTIVE_ROWS])
def test_adaptive_pool(type_, out, in_shape):
    rng = rng_for(type_, out, in_shape)
    x = randx(rng, in_shape)
    y = adaptive_ref("avg" if type_ == "adaptive_avgpool" else "max", x, pair(out))
    check(spec(in_shape, (type_, {"output_size": out})), {}, x, y)


# ============================================================================================
# normalisation

BN_ROWS = [
    ("chw", {}, (3, 4, 5)),
    ("chw-eps1e-3", {"eps": 1e-3}, (4, 3, 3)),
    ("features", {}, (6,)),
]


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in BN_ROWS], ids=[r[0] for r in BN_ROWS])
def test_batchnorm(args, in_shape):
    rng = rng_for("bn", args, in_shape)
    c = in_shape[0]
    arrays = {"t.weight": rng.uniform(0.5, 1.5, c).astype(np.float32) * rng.choice([-1, 1], c).astype(np.float32),
              "t.bias": vector(rng, c),
              "t.running_mean": vector(rng, c),
              "t.running_var": rng.uniform(0.3, 2.0, c).astype(np.float32)}
    x = randx(rng, in_shape)
    y = bn_ref(x, arrays["t.weight"], arrays["t.bias"], arrays["t.running_mean"], arrays["t.running_var"],
               args.get("eps", 1e-5))
    check(spec(in_shape, ("batchnorm", args)), arrays, x, y)


LRN_ROWS = [
    ("defaults", {}, (7, 3, 4)),
    ("size3-big-alpha", {"size": 3, "alpha": 2.0, "beta": 0.5, "k": 2.0}, (6, 3, 3)),
    ("size5-alexnet-scaled", {"size": 5, "alpha": 5.0, "beta": 0.75, "k": 2.0}, (8, 2, 3)),
    ("size1", {"size": 1, "alpha": 1.0, "beta": 0.75, "k": 1.0}, (3, 2, 2)),
    ("size7>C", {"size": 7, "alpha": 3.0, "beta": 0.6, "k": 1.0}, (3, 3, 3)),
]


def _rows(rows):
    """(id, *values) tuples and pytest.params with the id first -> params with ids."""
    out = []
    for r in rows:
        if hasattr(r, "marks"):  # a pytest.param (itself a tuple)
            out.append(pytest.param(*r.values[1:], marks=r.marks, id=r.values[0]))
        else:
            out.append(pytest.param(*r[1:], id=r[0]))
    return out


@pytest.mark.parametrize("args,in_shape", _rows(LRN_ROWS))
def test_lrn(args, in_shape):
    rng = rng_for("lrn", args, in_shape)
    x = randx(rng, in_shape)
    y = lrn_ref(x, args.get("size", 5), args.get("alpha", 1e-4), args.get("beta", 0.75), args.get("k", 1.0))
    check(spec(in_shape, ("lrn", args)), {}, x, y)


@pytest.mark.parametrize("size", [2, 4])
def test_lrn_even_size_is_refused(size):
    """ONNX's LRN (and onnxruntime) accept odd sizes only, and an even window has no centre."""
    with pytest.raises(ShapeError, match=f"size must be odd .* got {size}"):
        analyse_text(spec((6, 2, 3), ("lrn", {"size": size})), "t.yaml")


LCN_ROWS = [(f"{mode}-{'across' if across else 'per-channel'}-size{size}",
             {"size": size, "mode": mode, "across_channels": across}, shape)
            for mode in ("full", "subtractive", "divisive")
            for across in (True, False)
            for size, shape in ((3, (3, 7, 8)), (5, (2, 6, 6)))] + [
    ("full-across-size9>image", {"size": 9, "mode": "full", "across_channels": True}, (3, 5, 6)),
    ("full-eps1e-2", {"size": 3, "eps": 1e-2}, (2, 4, 4)),
    ("divisive-across-size1", {"size": 1, "mode": "divisive"}, (3, 3, 4)),
    ("subtractive-across-size1", {"size": 1, "mode": "subtractive"}, (3, 3, 4)),
    ("shorthand-defaults", 5, (3, 6, 7)),
]


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in LCN_ROWS], ids=[r[0] for r in LCN_ROWS])
def test_lcn(args, in_shape):
    """Full mode computes E[x^2] - E[x]^2 in float32; on these sizes (variances near 1) the
    cancellation stays far inside 1e-5 (measured: 5e-7 absolute at most)."""
    rng = rng_for("lcn", args, in_shape)
    full = {"size": args} if isinstance(args, int) else args
    x = randx(rng, in_shape)
    y = lcn_ref(x, full.get("size", 9), full.get("mode", "full"), full.get("across_channels", True),
                full.get("eps", 1e-4))
    check(spec(in_shape, ("lcn", args)), {}, x, y)


# ============================================================================================
# activations and pass-through layers

ELEMENTWISE_ROWS = [
    ("relu", None, ACT["relu"]),
    ("leaky_relu", None, ACT["leaky_relu"]),
    ("leaky_relu", {"alpha": 0.2}, lambda x: np.where(x > 0, x, 0.2 * x)),
    ("leaky_relu", 0.3, lambda x: np.where(x > 0, x, 0.3 * x)),
    ("leaky_relu", {"alpha": -0.5}, lambda x: np.where(x > 0, x, -0.5 * x)),
    ("sigmoid", None, ACT["sigmoid"]),
    ("tanh", None, ACT["tanh"]),
    ("linear", None, lambda x: x),
    ("relu6", None, NEW_ACT["relu6"]),
    ("hardtanh", None, NEW_ACT["hardtanh"]),
    ("hardtanh", {"min_val": -0.5, "max_val": 2}, lambda x: np.clip(x, -0.5, 2)),
    ("hardsigmoid", None, NEW_ACT["hardsigmoid"]),
    ("hardswish", None, NEW_ACT["hardswish"]),
    ("silu", None, NEW_ACT["silu"]),
    ("gelu", None, NEW_ACT["gelu"]),
    ("gelu", {"approximate": "tanh"}, NEW_ACT["gelu_tanh"]),
    ("elu", None, NEW_ACT["elu"]),
    ("elu", 0.5, lambda x: elu_ref(x, 0.5)),
    ("selu", None, NEW_ACT["selu"]),
    ("softplus", None, NEW_ACT["softplus"]),
    ("softplus", {"beta": 2, "threshold": 1}, lambda x: softplus_ref(x, 2, 1)),
    ("mish", None, NEW_ACT["mish"]),
    ("dropout", None, lambda x: x),
    ("dropout", 0.3, lambda x: x),
    ("identity", None, lambda x: x),
]
ELEMENTWISE_CASES = [(t, a, f, s) for t, a, f in ELEMENTWISE_ROWS for s in ((3, 4, 5), (7,))]


@pytest.mark.parametrize("type_,args,ref,in_shape", ELEMENTWISE_CASES,
                         ids=[f"{t}-{json.dumps(a)}-{len(s)}d" for t, a, _, s in ELEMENTWISE_CASES])
def test_elementwise(type_, args, ref, in_shape):
    rng = rng_for(type_, args, in_shape)
    x = randx(rng, in_shape) * np.float32(3)
    check(spec(in_shape, (type_, args)), {}, x, ref(x.astype(np.float64)))


# torch.nn.functional is the reference for the constants: (type, args, torch function). Inputs
# span +-30, past softplus' threshold and where exp overflows float16, plus exact +-3 and +-6.
TORCH_ROWS = [
    ("relu6", None, lambda F, x: F.relu6(x)),
    ("hardtanh", None, lambda F, x: F.hardtanh(x)),
    ("hardtanh", {"min_val": -0.5, "max_val": 2}, lambda F, x: F.hardtanh(x, -0.5, 2)),
    ("hardsigmoid", None, lambda F, x: F.hardsigmoid(x)),
    ("hardswish", None, lambda F, x: F.hardswish(x)),
    ("silu", None, lambda F, x: F.silu(x)),
    ("gelu", None, lambda F, x: F.gelu(x)),
    ("gelu", {"approximate": "tanh"}, lambda F, x: F.gelu(x, approximate="tanh")),
    ("elu", None, lambda F, x: F.elu(x)),
    ("elu", 0.5, lambda F, x: F.elu(x, 0.5)),
    ("selu", None, lambda F, x: F.selu(x)),
    ("softplus", None, lambda F, x: F.softplus(x)),
    ("softplus", {"beta": 2, "threshold": 1}, lambda F, x: F.softplus(x, 2, 1)),
    ("mish", None, lambda F, x: F.mish(x)),
]


@pytest.mark.parametrize("type_,args,fn", TORCH_ROWS, ids=[f"{t}-{json.dumps(a)}" for t, a, _ in TORCH_ROWS])
def test_activation_matches_torch(type_, args, fn):
    torch = pytest.importorskip("torch")
    rng = rng_for("torch", type_, args)
    x = np.concatenate([rng.uniform(-30, 30, 200), rng.standard_normal(200) * 3,
                        [-6, -3, 0, 3, 6, 20, -20, 20.5]]).astype(np.float32).reshape(2, -1)
    want = fn(torch.nn.functional, torch.from_numpy(x.astype(np.float64))).numpy()
    check(spec((x.shape[1],), (type_, args)), {}, x, want)


def test_prelu_per_channel():
    rng = rng_for("prelu")
    slope = vector(rng, 3)
    x = randx(rng, (3, 4, 5))
    x64 = x.astype(np.float64)
    check(spec((3, 4, 5), ("prelu", None)), {"t.weight": slope}, x,
          np.where(x64 > 0, x64, slope.astype(np.float64)[None, :, None, None] * x64))


def test_prelu_shared_and_flat():
    x = randx(rng_for("prelu-shared"), (6,))
    x64 = x.astype(np.float64)
    check(spec((6,), ("prelu", {"shared": True})), {"t.weight": np.array([-0.3], np.float32)}, x,
          np.where(x64 > 0, x64, -0.3 * x64))
    slope = vector(rng_for("prelu-flat"), 6)
    check(spec((6,), ("prelu", None)), {"t.weight": slope}, x, np.where(x64 > 0, x64, slope * x64))


def test_prelu_matches_torch_and_seeds_its_slope():
    torch = pytest.importorskip("torch")
    module = torch.nn.PReLU(3).double()
    assert module.weight.tolist() == [0.25] * 3  # torch's initial slope, which seeding gives too
    a = analyse_text(spec((3, 4, 5), ("prelu", None)), "t.yaml")
    assert seeded(a, 0)(a.layers[0])["t.weight"].tolist() == [0.25] * 3
    with torch.no_grad():
        module.weight.copy_(torch.tensor([0.1, -0.2, 0.7]))
    x = randx(rng_for("prelu-torch"), (3, 4, 5))
    state = {f"t.{k}": v.float().numpy() for k, v in module.state_dict().items()}  # torch's key: weight
    check(spec((3, 4, 5), ("prelu", None)), state, x, module(torch.from_numpy(x).double()).detach().numpy())


SOFTMAX_ROWS = [
    ("features", None, (6,), 0),
    ("features-axis0", {"axis": 0}, (9,), 0),
    ("chw-channels", None, (4, 3, 5), 0),
    ("chw-axis1", {"axis": 1}, (4, 3, 5), 1),
    ("chw-axis2", {"axis": 2}, (4, 3, 5), 2),
]


@pytest.mark.parametrize("args,in_shape,axis", [r[1:] for r in SOFTMAX_ROWS], ids=[r[0] for r in SOFTMAX_ROWS])
def test_softmax(args, in_shape, axis):
    rng = rng_for("softmax", args, in_shape)
    x = randx(rng, in_shape) * np.float32(3)
    check(spec(in_shape, ("softmax", args)), {}, x, softmax_ref(x, axis + 1))


@pytest.mark.parametrize("in_shape", [(3, 4, 5), (2, 1, 1), (7,)])
def test_flatten(in_shape):
    x = randx(rng_for("flatten", in_shape), in_shape)
    check(spec(in_shape, ("flatten", None)), {}, x, x.reshape(2, -1).astype(np.float64))


DENSE_ROWS = [
    ("units4", {"units": 4}, (7,)),
    ("shorthand", 3, (5,)),
    ("no-bias", {"units": 4, "bias": False}, (6,)),
    ("one-in", {"units": 5}, (1,)),
] + [(f"act-{act}", {"units": 5, "activation": act}, (8,))
     for act in ("relu", "leaky_relu", "sigmoid", "tanh", "softmax", "linear")]


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in DENSE_ROWS], ids=[r[0] for r in DENSE_ROWS])
def test_dense(args, in_shape):
    full = {"units": args} if isinstance(args, int) else args
    rng = rng_for("dense", args, in_shape)
    arrays = {"t.weight": kernel(rng, (full["units"], in_shape[0]))}
    if full.get("bias", True):
        arrays["t.bias"] = vector(rng, full["units"])
    x = randx(rng, in_shape)
    y = x.astype(np.float64) @ arrays["t.weight"].astype(np.float64).T + arrays.get("t.bias", 0)
    check(spec(in_shape, ("dense", args)), arrays, x, ACT[full.get("activation")](y))


def test_dense_after_flatten():
    """dense on a flattened [C, H, W]: features in channel-major order, as PyTorch's view(N, -1)."""
    rng = rng_for("dense-after-flatten")
    arrays = {"t.weight": kernel(rng, (3, 24)), "t.bias": vector(rng, 3)}
    x = randx(rng, (2, 3, 4))
    y = x.reshape(2, -1).astype(np.float64) @ arrays["t.weight"].T.astype(np.float64) + arrays["t.bias"]
    check(spec((2, 3, 4), ("flatten", None), ("dense", 3)), arrays, x, y)


ZERO_PAD_ROWS = [
    ("s2-odd-extra5", {"channels": 8, "stride": 2}, (3, 7, 9)),
    ("s2-even-extra", {"channels": 8, "stride": 2}, (4, 6, 6)),
    ("s3-extra3", {"channels": 5, "stride": 3}, (2, 7, 8)),
    ("extra1-after", {"channels": 4, "stride": 2}, (3, 5, 5)),
    ("s1-no-extra", {"channels": 3, "stride": 1}, (3, 4, 5)),
    ("shorthand-default-stride", 6, (3, 5, 4)),
]


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in ZERO_PAD_ROWS], ids=[r[0] for r in ZERO_PAD_ROWS])
def test_zero_pad_shortcut(args, in_shape):
    full = {"channels": args} if isinstance(args, int) else args
    rng = rng_for("zps", args, in_shape)
    x = randx(rng, in_shape)
    s, extra = full.get("stride", 2), full["channels"] - in_shape[0]
    sub = x[:, :, ::s, ::s].astype(np.float64)
    before = extra // 2
    y = np.zeros((2, full["channels"], *sub.shape[2:]))
    y[:, before:before + in_shape[0]] = sub
    check(spec(in_shape, ("zero_pad_shortcut", args)), {}, x, y)


# ============================================================================================
# merges


def test_add_two():
    x = randx(rng_for("add2"), (3, 4, 5))
    text = spec((3, 4, 5), ("relu", None, "b1", "input"), ("add", None, "t", ["input", "b1"]))
    x64 = x.astype(np.float64)
    check(text, {}, x, x64 + np.maximum(x64, 0))


def test_add_three():
    x = randx(rng_for("add3"), (3, 4, 5))
    text = spec((3, 4, 5), ("sigmoid", None, "b1", "input"), ("tanh", None, "b2", "input"),
                ("add", None, "t", ["input", "b1", "b2"]))
    x64 = x.astype(np.float64)
    check(text, {}, x, x64 + 1 / (1 + np.exp(-x64)) + np.tanh(x64))


def test_add_features_four():
    rng = rng_for("add4")
    arrays = {"b1.weight": kernel(rng, (5, 5)), "b1.bias": vector(rng, 5)}
    x = randx(rng, (5,))
    text = spec((5,), ("dense", 5, "b1", "input"), ("tanh", None, "b2", "b1"),
                ("add", None, "t", ["input", "b1", "b2", "b1"]))
    x64 = x.astype(np.float64)
    d = x64 @ arrays["b1.weight"].T.astype(np.float64) + arrays["b1.bias"]
    check(text, arrays, x, x64 + 2 * d + np.tanh(d))


@pytest.mark.parametrize("type_,op", [("add", np.add), ("mul", np.multiply)])
def test_merge_broadcasts_a_gate(type_, op):
    """A squeeze-and-excitation gate: the map times (or plus) its [C, 1, 1] global average."""
    x = randx(rng_for("gate", type_), (3, 4, 5))
    text = spec((3, 4, 5), ("global_avgpool", {"keepdims": True}, "g", "input"),
                ("hardsigmoid", None, "s", "g"), (type_, None, "t", ["s", "input"]))
    x64 = x.astype(np.float64)
    check(text, {}, x, op(hardsigmoid_ref(x64.mean(axis=(2, 3), keepdims=True)), x64))


def test_mul_three():
    x = randx(rng_for("mul3"), (3, 4, 5))
    text = spec((3, 4, 5), ("sigmoid", None, "b1", "input"), ("tanh", None, "b2", "input"),
                ("mul", None, "t", ["input", "b1", "b2"]))
    x64 = x.astype(np.float64)
    check(text, {}, x, x64 / (1 + np.exp(-x64)) * np.tanh(x64), oracle=True)


def test_concat_channels():
    rng = rng_for("concat0")
    arrays = {"b1.weight": kernel(rng, (2, 3, 1, 1)), "b1.bias": vector(rng, 2)}
    x = randx(rng, (3, 5, 6))
    text = spec((3, 5, 6), ("conv", {"filters": 2, "kernel": 1}, "b1", "input"),
                ("concat", None, "t", ["input", "b1"]))
    b1 = conv_ref(x, arrays["b1.weight"], arrays["b1.bias"])
    check(text, arrays, x, np.concatenate([x, b1], axis=1))


def test_concat_channels_three_reordered():
    rng = rng_for("concat0-3")
    arrays = {"b1.weight": kernel(rng, (4, 2, 3, 3)), "b1.bias": vector(rng, 4)}
    x = randx(rng, (2, 5, 5))
    text = spec((2, 5, 5), ("conv", {"filters": 4, "kernel": 3, "padding": 1}, "b1", "input"),
                ("relu", None, "b2", "input"), ("concat", {"axis": 0}, "t", ["b1", "input", "b2"]))
    b1 = conv_ref(x, arrays["b1.weight"], arrays["b1.bias"], pads=(1, 1, 1, 1))
    check(text, arrays, x, np.concatenate([b1, x, np.maximum(x, 0)], axis=1))


@pytest.mark.parametrize("axis,k", [(1, [3, 1]), (2, [1, 2])], ids=["height", "width"])
def test_concat_spatial_axis(axis, k):
    rng = rng_for("concat-spatial", axis)
    arrays = {"b1.weight": kernel(rng, (2, 2, *k)), "b1.bias": vector(rng, 2)}
    x = randx(rng, (2, 6, 5))
    text = spec((2, 6, 5), ("conv", {"filters": 2, "kernel": k}, "b1", "input"),
                ("concat", {"axis": axis}, "t", ["input", "b1"]))
    b1 = conv_ref(x, arrays["b1.weight"], arrays["b1.bias"])
    check(text, arrays, x, np.concatenate([x, b1], axis=axis + 1))


def test_concat_features():
    rng = rng_for("concat-features")
    arrays = {"b1.weight": kernel(rng, (3, 6)), "b1.bias": vector(rng, 3),
              "b2.weight": kernel(rng, (4, 6)), "b2.bias": vector(rng, 4)}
    x = randx(rng, (6,))
    text = spec((6,), ("dense", 3, "b1", "input"), ("dense", 4, "b2", "input"),
                ("concat", {"axis": 0}, "t", ["input", "b1", "b2"]))
    x64 = x.astype(np.float64)
    d1 = x64 @ arrays["b1.weight"].T.astype(np.float64) + arrays["b1.bias"]
    d2 = x64 @ arrays["b2.weight"].T.astype(np.float64) + arrays["b2.bias"]
    check(text, arrays, x, np.concatenate([x64, d1, d2], axis=1))


# ============================================================================================
# a chain, and a second oracle


def test_resnet_like_chain():
    """conv -> batchnorm -> relu -> maxpool, plus an option-A shortcut added back: the values
    flow through several lowered layers, each with non-trivial weights and statistics."""
    rng = rng_for("chain")
    c, f = 3, 6
    arrays = {"conv.weight": kernel(rng, (f, c, 3, 3)),
              "bn.weight": rng.uniform(0.5, 1.5, f).astype(np.float32), "bn.bias": vector(rng, f),
              "bn.running_mean": vector(rng, f), "bn.running_var": rng.uniform(0.3, 2.0, f).astype(np.float32)}
    x = randx(rng, (c, 9, 9))
    text = spec((c, 9, 9),
                ("conv", {"filters": f, "kernel": 3, "stride": 2, "padding": 1, "bias": False}, "conv", "input"),
                ("batchnorm", None, "bn", "conv"), ("relu", None, "r", "bn"),
                ("zero_pad_shortcut", {"channels": f, "stride": 2}, "sc", "input"),
                ("add", None, "t", ["r", "sc"]))
    y = conv_ref(x, arrays["conv.weight"], None, (2, 2), (1, 1, 1, 1))
    y = np.maximum(bn_ref(y, arrays["bn.weight"], arrays["bn.bias"], arrays["bn.running_mean"],
                          arrays["bn.running_var"], 1e-5), 0)
    sc = np.zeros_like(y)
    sc[:, 1:4] = x[:, :, ::2, ::2]
    check(text, arrays, x, y + sc)


ORACLE_CASES = [
    ("conv-groups-dilation-tlbr", ("conv", {"filters": 4, "kernel": 3, "groups": 2, "dilation": 2,
                                            "stride": 2, "padding": [1, 0, 2, 1]}), (4, 9, 8)),
    ("conv-same-s2", ("conv", {"filters": 3, "kernel": 3, "stride": 2, "padding": "same"}), (2, 8, 9)),
    ("maxpool-ceil", ("maxpool", {"kernel": 3, "stride": 2, "ceil_mode": True}), (2, 8, 9)),
    ("avgpool-exclude-pad", ("avgpool", {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
     (2, 7, 8)),
    ("avgpool-ceil-include-pad", ("avgpool", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
     (2, 8, 8)),
    # l2pool without ceil_mode: onnx 1.23's reference LpPool scales a ceil_mode window running
    # past the input by kernel/(pixels inside) (sqrt(3/2) for 3x3 over 2 rows), so it is no
    # oracle there; onnxruntime sums the pixels inside, as test_pool checks.
    ("l2pool-pad-tlbr", ("l2pool", {"kernel": [3, 2], "stride": [2, 1], "padding": [1, 0, 0, 1]}), (2, 8, 7)),
    ("adaptive_avgpool-10to3", ("adaptive_avgpool", {"output_size": 3}), (2, 10, 10)),
    ("adaptive_maxpool-8x10to3x4", ("adaptive_maxpool", {"output_size": [3, 4]}), (2, 8, 10)),
    # No LRN here: onnx 1.23's reference LRN (onnx/reference/ops/op_lrn.py) loops `for c in
    # range(x.shape[0])`, over the batch instead of the channels, so it is no oracle for it.
    ("lcn-subtractive", ("lcn", {"size": 3, "mode": "subtractive"}), (3, 5, 6)),
    ("zero_pad_shortcut", ("zero_pad_shortcut", {"channels": 8, "stride": 2}), (3, 7, 9)),
    ("l2pool_channels", ("l2pool_channels", {"size": 3, "stride": 2}), (7, 2, 3)),
    ("batchnorm", ("batchnorm", None), (3, 4, 5)),
    ("softmax-chw", ("softmax", {"axis": 1}), (4, 3, 5)),
]


@pytest.mark.parametrize("layer,in_shape", [r[1:] for r in ORACLE_CASES], ids=[r[0] for r in ORACLE_CASES])
def test_onnx_reference_evaluator_agrees(layer, in_shape):
    """onnx.reference.ReferenceEvaluator, run on the same model, also matches the numpy reference."""
    type_, args = layer
    rng = rng_for("oracle", type_, args, in_shape)
    x = randx(rng, in_shape)
    full = args or {}
    arrays = {}
    if type_ == "conv":
        k, s = pair(full["kernel"]), pair(full.get("stride", 1))
        d, g = pair(full.get("dilation", 1)), full.get("groups", 1)
        arrays = {"t.weight": kernel(rng, (full["filters"], in_shape[0] // g, *k)),
                  "t.bias": vector(rng, full["filters"])}
        pads = explicit_pads(full["padding"], in_shape[1:], k, s, d)
        y = conv_ref(x, arrays["t.weight"], arrays["t.bias"], s, pads, d, g)
    elif type_ in POOL_KINDS:
        k, s = pair(full["kernel"]), pair(full.get("stride") or full["kernel"])
        y = pool_ref(POOL_KINDS[type_], x, k, s, explicit_pads(full.get("padding", 0), in_shape[1:], k, s),
                     full.get("ceil_mode", False), full.get("count_include_pad", True))
    elif type_.startswith("adaptive"):
        y = adaptive_ref(type_.split("_")[1][:3], x, pair(full["output_size"]))
    elif type_ == "lcn":
        y = lcn_ref(x, full["size"], full["mode"], True, 1e-4)
    elif type_ == "zero_pad_shortcut":
        y = np.zeros((2, 8, 4, 5))
        y[:, 2:5] = x[:, :, ::2, ::2]
    elif type_ == "l2pool_channels":
        x64 = x.astype(np.float64)
        y = np.stack([np.sqrt((x64[:, o:o + 3] ** 2).sum(axis=1)) for o in (0, 2, 4)], axis=1)
    elif type_ == "batchnorm":
        c = in_shape[0]
        arrays = {"t.weight": rng.uniform(0.5, 1.5, c).astype(np.float32), "t.bias": vector(rng, c),
                  "t.running_mean": vector(rng, c), "t.running_var": rng.uniform(0.3, 2.0, c).astype(np.float32)}
        y = bn_ref(x, *(arrays[f"t.{n}"] for n in ("weight", "bias", "running_mean", "running_var")), 1e-5)
    else:
        y = softmax_ref(x, 2)
    check(spec(in_shape, (type_, args)), arrays, x, y, oracle=True)


@pytest.mark.parametrize("opset", [18, 24])
def test_other_opsets(opset):
    """The ops whose signatures moved between opsets (ReduceMean/ReduceMax axes, Slice, Pad,
    Squeeze, LpPool's ceil_mode) compute the same at the lowest and highest opset offered."""
    shape = (4, 8, 10)
    text = spec(shape, ("lcn", {"size": 3, "mode": "full"}, "lcn", "input"),
                ("adaptive_maxpool", {"output_size": [3, 4]}, "amax", "lcn"),
                ("l2pool_channels", {"size": 2, "stride": 1}, "l2c", "amax"),
                ("zero_pad_shortcut", {"channels": 6, "stride": 2}, "zps", "input"),
                ("l2pool", {"kernel": 3, "stride": 2, "ceil_mode": True}, "l2p", "zps"),
                ("global_avgpool", {"keepdims": False}, "g1", "l2c"),
                ("global_maxpool", {"keepdims": False}, "g2", "l2p"),
                ("concat", None, "cat", ["g1", "g2"]),
                ("softmax", None, "t", "cat"))
    a = analyse_text(text, "t.yaml")
    model = lower(a, imported(a, {}, "test"), opset=opset).to_model()
    assert model.opset_import[0].version == opset
    x = randx(rng_for("opsets"), shape)
    y1 = adaptive_ref("max", lcn_ref(x, 3, "full", True, 1e-4), (3, 4))
    y1 = np.sqrt(y1[:, :-1] ** 2 + y1[:, 1:] ** 2).mean(axis=(2, 3))
    zps = np.zeros((2, 6, 4, 5))
    zps[:, 1:5] = x[:, :, ::2, ::2]
    y2 = pool_ref("l2", zps, (3, 3), (2, 2), (0, 0, 0, 0), ceil_mode=True).max(axis=(2, 3))
    np.testing.assert_allclose(run_ort(model, x), softmax_ref(np.concatenate([y1, y2], axis=1), 1), **TOL)


# ============================================================================================
# determinism, and coverage

DETERMINISM_SPEC = spec((3, 8, 8), ("conv", {"filters": 4, "kernel": 3, "padding": 1}), ("batchnorm", None),
                        ("relu", None), ("global_avgpool", {"keepdims": False}), ("dense", 5))


def _seeded_bytes(seed: int) -> bytes:
    a = analyse_text(DETERMINISM_SPEC, "t.yaml")
    return lower(a, seeded(a, seed)).to_model().SerializeToString()


def test_same_seed_same_bytes_other_seed_other_bytes():
    first, second = _seeded_bytes(0), _seeded_bytes(0)
    assert first == second
    assert _seeded_bytes(1) != first


def test_seeded_model_runs_and_matches_reference():
    """The seeded weights themselves (He-normal kernels, zero biases, identity BatchNorm) also
    give a model that matches the references."""
    a = analyse_text(DETERMINISM_SPEC, "t.yaml")
    weights_for = seeded(a, 3)
    arrays = {k: v for f in a.layers for k, v in weights_for(f).items()}
    model = lower(a, seeded(a, 3)).to_model()
    x = randx(rng_for("seeded"), (3, 8, 8))
    y = conv_ref(x, arrays["l0.weight"], arrays["l0.bias"], pads=(1, 1, 1, 1))
    y = bn_ref(y, *(arrays[f"l1.{n}"] for n in ("weight", "bias", "running_mean", "running_var")), 1e-5)
    y = np.maximum(y, 0).mean(axis=(2, 3))
    y = y @ arrays["t.weight"].T.astype(np.float64) + arrays["t.bias"]
    np.testing.assert_allclose(run_ort(model, x), y, **TOL)


def _test_names_of_layer_families() -> list[str]:
    """The tests of the layer families that have a file of their own (tests/test_layers_*.py),
    read without importing them."""
    return [node.name for path in Path(__file__).parent.glob("test_layers_*.py")
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


def test_every_registered_type_is_covered():
    """Every layer type in the registry has its values checked above, against a numpy reference:
    by a row of a table that names its type, or by a test named after it (test_conv,
    test_concat_channels), here or in a family's own tests/test_layers_*.py. No list of names to keep up to date: a new type without a test fails."""
    tables = POOL_ROWS + GLOBAL_ROWS + ADAPTIVE_ROWS + ELEMENTWISE_ROWS
    by_row = {row[0] for row in tables}
    tests = [name[len("test_"):] for name, f in globals().items() if name.startswith("test_") and callable(f)]
    tests += [name[len("test_"):] for name in _test_names_of_layer_families()]
    by_name = {t for t in REGISTRY if any(n == t or n.startswith(t + "_") for n in tests)}
    missing = sorted(set(REGISTRY) - by_row - by_name)
    assert not missing, f"layer types without a numeric test: {missing}"


# ============================================================================================
# upsampling: numpy references (float64), and torch as a second reference


def conv_transpose_ref(x, w, b, s, pads, op, d, g):
    """Direct scatter: input pixel (i, j) adds w * x at output (i*s - top + a*d, j*s - left + c*d)."""
    n, cin, h, wd = x.shape
    cout_g, (kh, kw) = w.shape[1], w.shape[2:]
    full = ((h - 1) * s[0] + d[0] * (kh - 1) + 1 + op[0], (wd - 1) * s[1] + d[1] * (kw - 1) + 1 + op[1])
    y = np.zeros((n, cout_g * g) + full)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    for ci in range(cin):
        grp = ci // (cin // g)
        for a in range(kh):
            for c in range(kw):
                contrib = np.einsum("nhw,o->nohw", x64[:, ci], w64[ci, :, a, c])
                y[:, grp * cout_g:(grp + 1) * cout_g,
                  a * d[0]:a * d[0] + (h - 1) * s[0] + 1:s[0], c * d[1]:c * d[1] + (wd - 1) * s[1] + 1:s[1]] += contrib
    y = y[:, :, pads[0]:full[0] - pads[2], pads[1]:full[1] - pads[3]]
    return y if b is None else y + b.astype(np.float64)[None, :, None, None]


def resize_ref(x, out, mode, scale=None):
    """PyTorch's nearest (src = floor(dst / scale)) and bilinear (half-pixel, clamped at 0)."""
    y = x.astype(np.float64)
    for axis, (n, o) in enumerate(zip(x.shape[2:], out), start=2):
        step = 1 / scale[axis - 2] if scale else n / o
        dst = np.arange(o)
        if mode == "nearest":
            y = np.take(y, np.minimum(np.floor(dst * step).astype(int), n - 1), axis=axis)
            continue
        src = np.maximum((dst + 0.5) * step - 0.5, 0)
        lo = np.minimum(np.floor(src).astype(int), n - 1)
        hi, t = np.minimum(lo + 1, n - 1), src - lo
        shape = [1] * y.ndim
        shape[axis] = o
        t = t.reshape(shape)
        y = np.take(y, lo, axis=axis) * (1 - t) + np.take(y, hi, axis=axis) * t
    return y


CONV_TRANSPOSE_ROWS = [
    ("unet-k2-s2", {"filters": 4, "kernel": 2, "stride": 2}, (8, 5, 6)),
    ("k3-s2-p1-op1", {"filters": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}, (6, 5, 6)),
    ("groups-dilation-rect", {"filters": 6, "kernel": [3, 4], "stride": [2, 3], "padding": [1, 2],
                              "output_padding": [1, 2], "dilation": [1, 2], "groups": 3}, (6, 4, 5)),
    # output_padding 1 at stride 1, allowed by dilation 2: lowered through the end padding
    ("op-by-dilation", {"filters": 3, "kernel": 3, "padding": 1, "output_padding": 1, "dilation": 2,
                        "bias": False, "activation": "relu"}, (2, 4, 4)),
    ("k4-s2-p1-tlbr", {"filters": 2, "kernel": 4, "stride": 2, "padding": [1, 0, 2, 1]}, (3, 4, 5)),
]


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in CONV_TRANSPOSE_ROWS], ids=[r[0] for r in CONV_TRANSPOSE_ROWS])
def test_conv_transpose(args, in_shape):
    rng = rng_for("convt", args, in_shape)
    k, s, d = pair(args["kernel"]), pair(args.get("stride", 1)), pair(args.get("dilation", 1))
    g, f, c = args.get("groups", 1), args["filters"], in_shape[0]
    p = args.get("padding", 0)
    pads = (p,) * 4 if isinstance(p, int) else tuple(p) * (2 if len(p) == 2 else 1)
    arrays = {"t.weight": kernel(rng, (c, f // g, *k))}
    if args.get("bias", True):
        arrays["t.bias"] = vector(rng, f)
    x = randx(rng, in_shape)
    y = conv_transpose_ref(x, arrays["t.weight"], arrays.get("t.bias"), s, pads, pair(args.get("output_padding", 0)),
                           d, g)
    got = check(spec(in_shape, ("conv_transpose", args)), arrays, x, ACT[args.get("activation")](y))
    torch = pytest.importorskip("torch")
    if len(set(pads)) == 1 or (pads[:2] == pads[2:]):  # PyTorch pads symmetrically
        m = torch.nn.ConvTranspose2d(c, f, k, s, pads[:2], pair(args.get("output_padding", 0)), g,
                                     args.get("bias", True), d)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(arrays["t.weight"]))
            if m.bias is not None:
                m.bias.copy_(torch.from_numpy(arrays["t.bias"]))
            want = m.double()(torch.from_numpy(x).double())
            want = torch.relu(want) if args.get("activation") == "relu" else want
        np.testing.assert_allclose(got, want.numpy(), **TOL)


UPSAMPLE_ROWS = [
    ("nearest-2", {"scale": 2}, (3, 5, 6)),
    ("nearest-frac", {"scale": [1.5, 2.5]}, (2, 5, 6)),
    ("nearest-size", {"size": [7, 11]}, (2, 5, 6)),
    ("bilinear-2", {"scale": 2, "mode": "bilinear"}, (3, 5, 6)),
    ("bilinear-frac", {"scale": 1.3, "mode": "bilinear"}, (2, 5, 6)),
    ("bilinear-size-down", {"size": [3, 4], "mode": "bilinear"}, (2, 5, 6)),
]
TORCH_UPSAMPLE_ROWS = UPSAMPLE_ROWS + [
    ("bilinear-align", {"scale": [2.5, 0.7], "mode": "bilinear", "align_corners": True}, (2, 5, 6)),
    ("bilinear-size-align", {"size": [7, 11], "mode": "bilinear", "align_corners": True}, (2, 5, 6)),
    ("bicubic-2", {"scale": 2, "mode": "bicubic"}, (2, 5, 6)),
    ("bicubic-frac", {"scale": [2.5, 0.7], "mode": "bicubic"}, (2, 5, 6)),
    ("bicubic-align-size", {"size": [7, 11], "mode": "bicubic", "align_corners": True}, (2, 5, 6)),
    ("bicubic-align-false", {"scale": 1.5, "mode": "bicubic", "align_corners": False}, (2, 5, 6)),
]


def _upsample_out(args, in_shape):
    """(scale per axis or None, output size): PyTorch's floor(n * scale) or the size given."""
    if "size" in args:
        return None, tuple(args["size"])
    scale = args["scale"] if isinstance(args["scale"], list) else [args["scale"]] * 2
    return tuple(scale), tuple(math.floor(n * s) for n, s in zip(in_shape[1:], scale))


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in UPSAMPLE_ROWS], ids=[r[0] for r in UPSAMPLE_ROWS])
def test_upsample(args, in_shape):
    x = randx(rng_for("up", args, in_shape), in_shape)
    scale, out = _upsample_out(args, in_shape)
    check(spec(in_shape, ("upsample", args)), {}, x, resize_ref(x, out, args.get("mode", "nearest"), scale))


@pytest.mark.parametrize("args,in_shape", [r[1:] for r in TORCH_UPSAMPLE_ROWS],
                         ids=[r[0] for r in TORCH_UPSAMPLE_ROWS])
def test_upsample_against_torch(args, in_shape):
    torch = pytest.importorskip("torch")
    x = randx(rng_for("up-torch", args, in_shape), in_shape)
    kw = {"mode": args.get("mode", "nearest")}
    if "align_corners" in args:
        kw["align_corners"] = args["align_corners"]
    if "size" in args:
        kw["size"] = tuple(args["size"])
    else:
        kw["scale_factor"] = tuple(args["scale"]) if isinstance(args["scale"], list) else args["scale"]
    want = torch.nn.functional.interpolate(torch.from_numpy(x).double(), **kw).numpy()
    check(spec(in_shape, ("upsample", args)), {}, x, want)
