"""Weights: a seeded initialisation, or arrays imported from a file, keyed by node names.

Keys are `<node name>.<weight name>` (`layer1.0.conv1.weight`), torchvision's state_dict keys
for the specs that follow torchvision. Seeded weights are He-normal for ReLU networks and
Glorot-uniform for tanh and sigmoid ones; BatchNorm starts as the identity (scale 1, shift 0,
mean 0, variance 1) and biases at 0. Each key draws from its own generator, seeded by the
seed and the key, so a weight does not change when another layer is added or removed.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

from .arrays import Stored, read_npz, read_safetensors
from .errors import SpecError, UsageError, os_reason
from .pth import read_pth
from .infer import Analysis, LayerFigures


def initialisation(analysis: Analysis) -> str:
    """'he' when the network uses ReLU anywhere, else 'glorot' (tanh, sigmoid, or none)."""
    return "he" if any(f.node.layer.relu_like for f in analysis.layers) else "glorot"


def _fans(shape) -> tuple[int, int]:
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def seeded(analysis: Analysis, seed: int = 0):
    """A function giving one node's seeded arrays, made on demand (peak memory stays low)."""
    scheme = initialisation(analysis)

    def weights_for(figures: LayerFigures) -> dict:
        out = {}
        for w in figures.node.layer.weights(*figures.input_shapes):
            if w.role == "fixed":  # an .onnx member's: it brings its own
                continue
            key = w.key(figures.node.name)
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
            elif w.role == "slope":  # PReLU's, as torch.nn.PReLU initialises it
                array = np.full(w.shape, 0.25, np.float32)
            elif w.role == "layer_scale":  # ConvNeXt's, as torchvision's CNBlock initialises it
                array = np.full(w.shape, 1e-6, np.float32)
            else:  # bias, shift, mean
                array = np.zeros(w.shape, np.float32)
            out[key] = array
        return out

    return weights_for


# -- import ------------------------------------------------------------------------------------
# Weight files come from strangers: the readers (arrays.py, pth.py) check sizes against the file
# before they allocate or reshape, and a damaged file is a one-line error naming the file.
def read_weights(path: str) -> dict:
    """Arrays by key, as `Stored` (read when wanted), from .npz, .safetensors or a .pt/.pth state_dict."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{path}: no such file" if not p.exists() else f"{path}: is not a file")
    readers = {".npz": read_npz, ".safetensors": read_safetensors, ".pt": read_pth, ".pth": read_pth}
    if p.suffix not in readers:
        raise UsageError(f"{path}: unknown weights format '{p.suffix}'; use .npz, .safetensors, .pt or .pth")
    try:
        return readers[p.suffix](p)
    except MemoryError:
        raise UsageError(f"{path}: too large to read into memory") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {os_reason(e)}") from None


def read_weight_files(analysis: Analysis, refs: list[str]) -> dict:
    """`--weights FILE` and, for an ensemble, `--weights MEMBER=FILE`, as one mapping keyed by the
    model's node names: a member's file is keyed by the member's own, and gets its prefix."""
    members = [m.name for m in analysis.graph.members]
    arrays: dict = {}
    for ref in refs:
        member, sep, path = ref.partition("=")
        if not sep or Path(ref).exists() or not re.fullmatch(r"[A-Za-z0-9_.]+", member):  # a dot: a nested one
            member, path = "", ref
        elif member not in members:
            known = f"its members are {', '.join(members)}" if members else "it is not an ensemble"
            outer, _, inner = member.partition(".")
            if inner and outer in members:  # a member's own member: through its file, keyed as that member's
                known += f"; give '{outer}' a file keyed by its own names ({inner}.*)"
            raise UsageError(f"--weights {ref}: '{analysis.graph.name}' has no member '{member}'; {known}")
        if member and any(f.node.name.startswith(f"{member}.") and f.node.type == "onnx" for f in analysis.layers):
            raise UsageError(f"--weights {ref}: the member '{member}' is a compiled model and keeps its own weights")
        prefix = f"{member}." if member else ""
        for key, array in read_weights(path).items():
            if prefix + key in arrays:
                raise UsageError(f"--weights {ref}: the key '{prefix + key}' comes from another --weights file too")
            arrays[prefix + key] = array
    return arrays


def imported(analysis: Analysis, arrays: dict, source: str, strict: bool = True, seed: int = 0, warn=None):
    """Serve `arrays` by node, checked against the spec's weights.

    Every problem is listed at once: missing keys, unexpected keys, shape mismatches with both
    shapes, and arrays that are not floating point. With `strict` they are an error. Otherwise
    everything that fits is loaded, what does not (a replaced head, say) gets the seeded
    initialisation, and `warn(message)` hears which. NaN or Inf values are loaded with a
    warning, or refused with `strict`. Floats of any width become float32.
    """
    # Shapes and dtypes come from the files' headers; only the arrays that fit are ever read.
    arrays = {k: v if isinstance(v, Stored) else Stored.of(np.asarray(v)) for k, v in arrays.items()}
    served = {f.node.name: [w for w in f.node.layer.weights(*f.input_shapes) if w.role != "fixed"]
              for f in analysis.layers}  # an .onnx member's weights come from its own file
    keys_of = {name: [w.key(name) for w in ws] for name, ws in served.items()}
    shapes = {w.key(name): w.shape for name, ws in served.items() for w in ws}
    ignored = {k for k in arrays if k.endswith("num_batches_tracked")}  # a PyTorch counter, not a weight
    missing = [k for k in shapes if k not in arrays]
    unexpected = sorted(k for k in arrays if k not in shapes and k not in ignored)
    mismatched = [k for k, s in shapes.items() if k in arrays and tuple(arrays[k].shape) != tuple(s)]
    not_float = [k for k in shapes if k in arrays and k not in mismatched and arrays[k].dtype.kind != "f"]
    problems = _listing([("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", [f"{k}: file {list(arrays[k].shape)}, spec {list(shapes[k])}"
                                               for k in mismatched]),
                         ("not floating point", [f"{k}: {arrays[k].dtype}" for k in not_float])])
    fresh = set(missing) | set(mismatched) | set(not_float)
    if shapes and len(fresh) == len(shapes):
        raise SpecError(f"none of the weights in {source} fits the spec '{analysis.graph.name}' (is it the right "
                        f"file?): {problems}")
    if problems and strict:
        raise SpecError(f"the weights in {source} do not fit the spec '{analysis.graph.name}': {problems}")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, reported below
        values = {k: np.asarray(arrays[k].load(), dtype=np.float32) for k in shapes if k not in fresh}
    bad = {k: int(v.size - np.count_nonzero(np.isfinite(v))) for k, v in values.items()}
    non_finite = _listing([("tensors with NaN or Inf values",
                            [f"{k} ({n} of {values[k].size})" for k, n in bad.items() if n])])
    if non_finite and strict:
        raise SpecError(f"the weights in {source} are not all finite: {non_finite}")
    fallback = seeded(analysis, seed)

    def weights_for(figures: LayerFigures) -> dict:
        keys = keys_of[figures.node.name]
        initial = fallback(figures) if fresh.intersection(keys) else {}
        return {k: initial[k] if k in fresh else values[k] for k in keys}

    if warn and problems:
        warn(f"loaded {len(shapes) - len(fresh)} of {len(shapes)} weight tensors from {source}, "
             f"the rest seeded; {problems}")
    if warn and non_finite:
        warn(f"loaded the weights in {source} as they are, but they are not all finite; {non_finite} "
             "(--strict-weights makes this an error)")
    return weights_for


def _listing(groups) -> str:
    """'missing keys (2): a, b; unexpected keys (1): c', at most 20 keys a group."""
    return "; ".join(f"{title} ({len(keys)}): " + ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else "")
                     for title, keys in groups if keys)
