"""Weights: a seeded initialisation, or arrays imported from a file, keyed by node names.

Keys are `<node name>.<weight name>` (`layer1.0.conv1.weight`), torchvision's state_dict keys
for the specs that follow torchvision. Seeded weights are He-normal for ReLU networks and
Glorot-uniform for tanh and sigmoid ones; BatchNorm starts as the identity (scale 1, shift 0,
mean 0, variance 1) and biases at 0. Each key draws from its own generator, seeded by the
seed and the key, so a weight does not change when another layer is added or removed.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from .errors import SpecError, UsageError
from .infer import Analysis, LayerFigures

RELU_LIKE = {"relu", "leaky_relu"}


def initialisation(analysis: Analysis) -> str:
    """'he' when the network uses ReLU anywhere, else 'glorot' (tanh, sigmoid, or none)."""
    for f in analysis.layers:
        kinds = {f.node.type, getattr(f.node.layer, "activation", None)}
        if kinds & RELU_LIKE:
            return "he"
    return "glorot"


def _fans(shape) -> tuple[int, int]:
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def seeded(analysis: Analysis, seed: int = 0):
    """A function giving one node's seeded arrays, made on demand (peak memory stays low)."""
    scheme = initialisation(analysis)

    def weights_for(figures: LayerFigures) -> dict:
        out = {}
        for w in figures.node.layer.weights(*figures.input_shapes):
            key = f"{figures.node.name}.{w.name}"
            rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
            if w.role == "kernel":
                fan_in, fan_out = _fans(w.shape)
                if scheme == "he":
                    array = rng.standard_normal(w.shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
                else:
                    limit = np.float32(np.sqrt(6.0 / (fan_in + fan_out)))
                    array = rng.uniform(-limit, limit, w.shape).astype(np.float32)
            elif w.role in ("scale", "var"):
                array = np.ones(w.shape, np.float32)
            else:  # bias, shift, mean
                array = np.zeros(w.shape, np.float32)
            out[key] = array
        return out

    return weights_for


# -- import ------------------------------------------------------------------------------------
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: Path) -> dict:
    """Read a .safetensors file with numpy alone: 8-byte header length, JSON header, raw data."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 2 <= n <= len(data) - 8:
        raise UsageError(f"{path}: not a .safetensors file (its header length is wrong)")
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{path}: not a .safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise UsageError(f"{path}: not a .safetensors file (its header is not a mapping)")
    base, out = 8 + n, {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            out[key] = _safetensor(data, base, info)
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{path}: tensor '{key}' is damaged or not understood ({e})") from None
    return out


def _safetensor(data: bytes, base: int, info: dict) -> np.ndarray:
    begin, end = info["data_offsets"]
    if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= len(data) - base):
        raise ValueError(f"offsets {begin}..{end} lie outside the file")
    raw = data[base + begin: base + end]
    if info["dtype"] == "BF16":  # bfloat16 is the top half of a float32
        array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    elif info["dtype"] in _SAFETENSORS_DTYPES:
        array = np.frombuffer(raw, _SAFETENSORS_DTYPES[info["dtype"]])
    else:
        raise ValueError(f"dtype {info['dtype']} cannot be read")
    return array.reshape(info["shape"])


def read_weights(path: str) -> dict:
    """Arrays by key from .npz, .safetensors or a PyTorch .pt/.pth state_dict."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path}: no such file")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (ValueError, OSError) as e:
            raise UsageError(f"{path}: cannot read as .npz: {e}") from None
    if p.suffix == ".safetensors":
        return read_safetensors(p)
    if p.suffix in (".pt", ".pth"):
        from .pth import read_pth

        return read_pth(p)
    raise UsageError(f"{path}: unknown weights format '{p.suffix}'; use .npz, .safetensors, .pt or .pth")


def imported(analysis: Analysis, arrays: dict, source: str, strict: bool = True, seed: int = 0, warn=None):
    """Serve `arrays` by node, checked against the spec's weights.

    Every problem is listed at once: missing keys, unexpected keys, shape mismatches with both
    shapes. With `strict` they are an error. Otherwise everything that fits is loaded, what does
    not (a replaced head, say) gets the seeded initialisation, and `warn(message)` hears which.
    """
    keys_of = {f.node.name: [f"{f.node.name}.{w.name}" for w in f.node.layer.weights(*f.input_shapes)]
               for f in analysis.layers}
    shapes = {f"{f.node.name}.{w.name}": w.shape for f in analysis.layers
              for w in f.node.layer.weights(*f.input_shapes)}
    ignored = {k for k in arrays if k.endswith("num_batches_tracked")}  # a PyTorch counter, not a weight
    missing = [k for k in shapes if k not in arrays]
    unexpected = sorted(k for k in arrays if k not in shapes and k not in ignored)
    mismatched = [k for k, s in shapes.items() if k in arrays and tuple(arrays[k].shape) != tuple(s)]
    problems = []
    for title, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches", [f"{k}: file {list(arrays[k].shape)}, spec {list(shapes[k])}"
                                              for k in mismatched])):
        if keys:
            problems.append(f"{title} ({len(keys)}): " + ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else ""))
    summary = "; ".join(problems)
    if shapes and len(missing) + len(mismatched) == len(shapes):
        raise SpecError(f"none of the weights in {source} fits the spec '{analysis.graph.name}' (is it the right "
                        f"file?): {summary}")
    if problems and strict:
        raise SpecError(f"the weights in {source} do not fit the spec '{analysis.graph.name}': {summary}")
    fresh = set(missing) | set(mismatched)
    fallback = seeded(analysis, seed)

    def weights_for(figures: LayerFigures) -> dict:
        keys = keys_of[figures.node.name]
        initial = fallback(figures) if fresh.intersection(keys) else {}
        return {k: initial[k] if k in fresh else arrays[k] for k in keys}

    if problems and warn:
        warn(f"loaded {len(shapes) - len(fresh)} of {len(shapes)} weight tensors from {source}, "
             f"the rest seeded; {summary}")
    return weights_for
