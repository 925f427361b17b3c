"""Lowering: an inferred graph plus its weights -> an ONNX ModelProto.

Each layer type lowers itself in its registry module (`Layer.lower`), through the small
`Builder` here, which names values after the spec's nodes and sorts attributes and drops None
(so the same spec and seed give the same bytes). The weights stay numpy arrays beside the
graph (`Lowered`): `to_model()` makes one in-memory ModelProto, while `compiler.build.save`
streams them to disk one at a time, so compiling a large model needs little more memory than
its weights.

This module imports onnx; `check` and `summary` never import it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import __version__
from .errors import LoweringError
from .infer import Analysis
from .ir import output_values

DEFAULT_OPSET = 21
OPSETS = range(18, 25)  # what the lowering uses exists from 18; onnxruntime 1.31 loads up to 24
MAX_IR_VERSION = 13  # onnx 1.23 writes 14 by default; onnxruntime 1.31 reads at most 13


class Builder:
    """Collects the ONNX nodes and initializers of one graph, one spec node at a time."""

    def __init__(self, opset: int = DEFAULT_OPSET):
        self.opset = opset  # the model's: a layer that inlines another model converts it to this
        self.nodes: list = []
        self.initializers: list = []  # small constants (axes, pads)
        self.weights: list = []  # (key, float32 array), in order of use
        self.node = ""  # the spec node being lowered
        self._weights: dict = {}
        self._keys: dict = {}
        self._count = 0

    def begin(self, node_name: str, weights: dict, keys: dict | None = None) -> None:
        """Lower the node `node_name`: `weights` are its arrays by key, `keys` its weight names' keys
        (none for the weightless graphs of preprocessing and augmentation)."""
        self.node, self._weights, self._keys, self._count = node_name, weights, keys or {}, 0

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, **attrs):
        """Emit one ONNX node; return the name of its output value (a list of them if `outputs` > 1)."""
        self._count += 1
        name = f"{self.node}/{op_type}_{self._count}"
        values = [name] if outputs == 1 else [f"{name}:{k}" for k in range(outputs)]
        attrs = {k: v for k, v in sorted(attrs.items()) if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), values, name=name, **attrs))
        return name if outputs == 1 else values

    def weight(self, name: str) -> str:
        """The initializer holding this node's weight `name` (its key: `<node>.<name>`, see Weight.key)."""
        key = self._keys[name]
        self.weights.append((key, np.ascontiguousarray(self._weights[key], dtype=np.float32)))
        return key

    def const(self, value, dtype="int64") -> str:
        """A constant input (axes, shapes, pads): an initializer named after the node."""
        self._count += 1
        name = f"{self.node}/const_{self._count}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def finish(self, value, inputs: list[str]) -> None:
        """Make the node's final value carry the node's own name; several values (a split's) carry
        `<node>.0`, `<node>.1`..., the names later layers address them by."""
        if isinstance(value, list):
            names = [f"{self.node}.{k}" for k in range(len(value))]
            if self.nodes and list(self.nodes[-1].output) == value:  # the layer's last op makes them all
                self.nodes[-1].output[:] = names
                self.nodes[-1].name = self.node
            else:
                self.nodes.extend(helper.make_node("Identity", [v], [n], name=n) for v, n in zip(value, names))
            return
        if value in inputs or not self.nodes or self.nodes[-1].output[0] != value:
            self.op("Identity", [value])
        last = self.nodes[-1]
        last.output[0] = self.node
        last.name = self.node


def opset_ir_version(opset: int) -> int:
    if opset not in OPSETS:
        raise LoweringError(f"opset {opset} is not supported; use one from {OPSETS.start} to {OPSETS.stop - 1}")
    return min(helper.find_min_ir_version_for([helper.make_opsetid("", opset)]), MAX_IR_VERSION)


def spec_digest(paths: tuple[str, ...]) -> str:
    """sha256 of the spec's text (and its bases', in order, for a spec that extends another)."""
    digest = hashlib.sha256()
    try:
        for path in paths:
            with open(path, "rb") as f:
                digest.update(f.read())
    except OSError:
        return ""
    return digest.hexdigest()


class Lowered:
    """An ONNX model whose weight initializers are still numpy arrays, kept aside."""

    def __init__(self, model: onnx.ModelProto, weights: list):
        self.model = model  # graph, metadata and small constants; no weights
        self.weights = weights  # [(key, float32 array)]

    @property
    def weight_bytes(self) -> int:
        return sum(a.nbytes for _, a in self.weights)

    def to_model(self) -> onnx.ModelProto:
        """The whole model in memory (for running it; `compiler.build.save` writes without this copy)."""
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        model.graph.initializer.extend(numpy_helper.from_array(a, key) for key, a in self.weights)
        return model


def lower(analysis: Analysis, weights_for, opset: int = DEFAULT_OPSET, progress=None) -> Lowered:
    """Lower an analysed spec; the weights stay arrays beside the graph."""
    ir_version = opset_ir_version(opset)
    graph = analysis.graph
    g = Builder(opset)
    for k, figures in enumerate(analysis.layers):
        node = figures.node
        keys = {w.name: w.key(node.name) for w in node.layer.weights(*figures.input_shapes)}
        g.begin(node.name, weights_for(figures), keys)
        value = node.layer.lower(g, list(node.inputs), figures.input_shapes, figures.output_shape)
        g.finish(value, list(node.inputs))
        if progress:
            progress(k + 1, len(analysis.layers))
    shapes = {v: s for f in analysis.layers for v, s in zip(output_values(f.node), f.output_shapes)}
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *graph.input_shape])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shapes[name]])
               for name in graph.outputs]
    onnx_graph = helper.make_graph(g.nodes, graph.name, inputs, outputs, initializer=g.initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=ir_version, producer_name="convspec", producer_version=__version__)
    metadata = {
        "convspec.spec": graph.name,
        "convspec.spec_sha256": spec_digest(graph.attachments.sources),
        "convspec.version": __version__,
        "convspec.params": str(analysis.params),
        "convspec.params_trainable": str(analysis.trainable),
        "convspec.macs": str(analysis.macs),
        "convspec.flops": str(analysis.flops),
        **{f"convspec.{k}": str(v) for k, v in graph.meta.items()},
    }
    helper.set_model_props(model, metadata)
    model.doc_string = graph.meta.get("title", graph.name)
    return Lowered(model, g.weights)
