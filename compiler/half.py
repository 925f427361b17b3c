"""fp16: weights and arithmetic in float16 for the CUDA provider; the input and outputs stay float32.

onnxruntime's own converter (`onnxruntime.transformers.float16`) rewrites the graph, but it is
handed the graph without its weights: each weight is declared as a graph input of its shape, so
the converter types it float16 and inserts a Cast wherever a node kept in float32 uses it. The
weights themselves are converted here, one array at a time, and `compiler.build.save` still
streams them to disk as float16 initializers. Compiling in fp16 therefore costs the float32
weights plus the largest array's float16 copy, not a whole in-memory model: VGG-19 peaks at
808 MB (fp32: 621 MB) and writes 287 MB instead of 575 MB.

Kept in float32 (and cast around): the converter's own list (Range, Max, Min, TopK, ...), and
every node of a layer type that says `fp32 = True` (LRN: it sums squares, and |x| past 256
overflows float16's 65504). The converter keeps a node's arithmetic in float32 but stores its
output in float16 again, so a layer of several nodes (LCN's x*x, then its means) cannot be kept
float32 this way: LCN runs in float16, and overflows past |x| ~ 256.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from .errors import LoweringError
from .lower import Lowered

FP16_MAX = float(np.finfo(np.float16).max)  # 65504


def to_fp16(lowered: Lowered, fp32_nodes: set[str] = frozenset()) -> Lowered:
    """The same model with float16 weights and arithmetic; `fp32_nodes` are spec node names whose
    ONNX nodes stay float32. The float32 arrays in `lowered.weights` are replaced as it goes."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.ModelProto()
    model.CopyFrom(lowered.model)
    graph = model.graph
    io = [v.name for v in (*graph.input, *graph.output)]
    graph.input.extend(helper.make_tensor_value_info(key, TensorProto.FLOAT, a.shape) for key, a in lowered.weights)
    blocked = [n.name for n in graph.node if n.name.split("/")[0] in fp32_nodes]
    model = convert_float_to_float16(model, keep_io_types=io, node_block_list=blocked)
    graph = model.graph
    inputs = [v for v in graph.input if v.name in io]  # the weights become initializers again when saved
    graph.ClearField("input")
    graph.input.extend(inputs)
    nodes = _topological(_unique(graph.node), {*io, *(key for key, _ in lowered.weights),
                                            *(t.name for t in graph.initializer)})
    graph.ClearField("node")
    graph.node.extend(nodes)
    values = _unique(graph.value_info)
    graph.ClearField("value_info")
    graph.value_info.extend(values)
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "convspec.precision": "fp16"})
    weights = lowered.weights
    for i, (key, array) in enumerate(weights):  # in place: each float32 array is freed once converted
        weights[i] = (key, half(array))
    return Lowered(model, weights)


def half(array: np.ndarray) -> np.ndarray:
    """float32 -> float16, rounded to nearest; values past float16's range become its largest finite
    value rather than inf. (The converter's `convert_np_to_float16` also does this, but with four
    full-size float32 temporaries: VGG-19's 411 MB fc6 weight cost a gigabyte more at peak.)"""
    with np.errstate(over="ignore", invalid="ignore"):
        out = array.astype(np.float16)
    # fmax/fmin skip NaN, and make no temporary in the usual case (nothing to clamp)
    if array.size and (np.fmax.reduce(array, axis=None) > FP16_MAX or np.fmin.reduce(array, axis=None) < -FP16_MAX):
        overflow = np.isinf(out) & np.isfinite(array)
        out[overflow] = np.copysign(FP16_MAX, array[overflow])
    return out


def _unique(items) -> list:
    """Each name once. The converter gives every float32 node its own Cast of a float16 input, all
    named after that input: two LRNs reading one value get two identical Casts (and value infos)."""
    seen = {}
    for item in items:
        if seen.setdefault(item.name, item) != item:
            raise LoweringError(f"fp16: the converted graph has two different nodes or values named '{item.name}'")
    return list(seen.values())


def _topological(nodes: list, available: set) -> list:
    """Producers before consumers, otherwise in their order: the converter appends its Casts last."""
    ordered = []
    while nodes:
        waiting = []
        for node in nodes:
            if all(not name or name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(nodes):
            raise LoweringError(f"fp16: the converted graph has a cycle or an undefined input at '{nodes[0].name}'")
        nodes = waiting
    return ordered
