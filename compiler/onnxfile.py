"""An .onnx file as one node of a graph (an ensemble's member), and what `check` and `summary`
need to know of it, read without onnx: its input and output shapes, its weights' sizes, its
opset and its metadata. Only lowering it (`compile`) loads it with onnx and inlines its graph.

An ensemble may name a compiled model as a member. `check` and `summary` never import onnx (they
start fast), so this reads the few fields it needs straight from the protobuf wire format,
skipping everything else (the weights' bytes included) by seeking: a 500 MB model costs a few
reads. Every length is checked against the file, so a damaged file is an error, not a hang.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import LoweringError, SpecError
from .ir import INPUT, Graph, Node
from .registry import GLOBAL, Layer, Weight, arguments

FLOAT = 1  # TensorProto.FLOAT
FLOATING = {FLOAT, 10, 11, 16}  # FLOAT16, DOUBLE, BFLOAT16: the weights of an fp16 model count as params too
MAX_ITEMS = 10_000_000  # fields in one message: far above any real model, short of a runaway file


@dataclass
class Header:
    opset: int = 0
    inputs: list = field(default_factory=list)  # (name, elem_type, dims); dims: int, or None where dynamic
    outputs: list = field(default_factory=list)
    initializers: dict = field(default_factory=dict)  # name -> (elem_type, dims)
    metadata: dict = field(default_factory=dict)

    @property
    def data_inputs(self) -> list:
        return [i for i in self.inputs if i[0] not in self.initializers]


class _Reader:
    def __init__(self, f, size: int, where, path: str):
        self.f, self.size, self.where, self.path = f, size, where, path

    def fail(self, why: str):
        raise SpecError(f"'{self.path}' is not a readable ONNX model ({why})", self.where)

    def varint(self, end: int) -> int:
        shift = value = 0
        while True:
            if self.f.tell() >= end or shift > 63:
                self.fail("a number runs past its message")
            byte = self.f.read(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def fields(self, end: int):
        """(number, wire type, value): an int for varints, (start, length) for the rest; the
        caller reads a length-delimited field it wants, and this skips whatever it left."""
        for _ in range(MAX_ITEMS):
            if self.f.tell() >= end:
                return
            key = self.varint(end)
            number, wire = key >> 3, key & 7
            if wire == 0:
                yield number, wire, self.varint(end)
                continue
            length = {1: 8, 5: 4}.get(wire)
            if wire == 2:
                length = self.varint(end)
            if length is None:
                self.fail(f"wire type {wire}")
            start = self.f.tell()
            if start + length > end:
                self.fail("a field runs past its message")
            yield number, wire, (start, length)
            self.f.seek(start + length)
        self.fail("too many fields")

    def text(self, span) -> str:
        self.f.seek(span[0])
        return self.f.read(span[1]).decode("utf-8", "replace")


def read_header(path, where=None, shown: str | None = None) -> Header:
    """The header of the ONNX model at `path`; a SpecError at `where` if it cannot be read."""
    shown = shown or str(path)
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(0)
            return _model(_Reader(f, size, where, shown), size)
    except OSError as e:
        raise SpecError(f"cannot read '{shown}': {e.strerror or e}", where) from None


def _model(r: _Reader, size: int) -> Header:
    header, graph = Header(), None
    for number, wire, value in r.fields(size):
        if number == 7 and wire == 2:
            graph = value
        elif number == 8 and wire == 2:  # opset_import: {domain, version}
            domain, version = "", 0
            for n, w, v in r.fields(sum(value)):
                domain = r.text(v) if n == 1 and w == 2 else domain
                version = v if n == 2 and w == 0 else version
            if domain in ("", "ai.onnx"):
                header.opset = version
        elif number == 14 and wire == 2:  # metadata_props: {key, value}
            entry = {n: r.text(v) for n, w, v in r.fields(sum(value)) if w == 2}
            header.metadata[entry.get(1, "")] = entry.get(2, "")
    if graph is None or not header.opset:
        r.fail("no graph or no opset")
    r.f.seek(graph[0])
    for number, wire, value in r.fields(sum(graph)):
        if wire != 2:
            continue
        if number == 5:  # initializer: dims (1), data_type (2), name (8)
            dims, kind, name = [], 0, ""
            for n, w, v in r.fields(sum(value)):
                if n == 1:
                    dims += [v] if w == 0 else _packed(r, v)
                kind = v if n == 2 and w == 0 else kind
                name = r.text(v) if n == 8 and w == 2 else name
            header.initializers[name] = (kind, tuple(dims))
        elif number in (11, 12):
            (header.inputs if number == 11 else header.outputs).append(_value_info(r, value))
    return header


def _packed(r: _Reader, span) -> list:
    r.f.seek(span[0])
    out, end = [], sum(span)
    while r.f.tell() < end:
        out.append(r.varint(end))
    return out


def _value_info(r: _Reader, span) -> tuple:
    """(name, elem_type, dims) of a ValueInfoProto: name (1), type (2) -> tensor_type (1) ->
    elem_type (1), shape (2) -> dim (1) -> dim_value (1) or dim_param (2)."""
    name, kind, dims = "", 0, []
    for n, w, v in r.fields(sum(span)):
        if n == 1 and w == 2:
            name = r.text(v)
        elif n == 2 and w == 2:
            for n2, w2, v2 in r.fields(sum(v)):
                if n2 != 1 or w2 != 2:
                    continue
                for n3, w3, v3 in r.fields(sum(v2)):
                    kind = v3 if n3 == 1 and w3 == 0 else kind
                    if n3 == 2 and w3 == 2:
                        for n4, w4, v4 in r.fields(sum(v3)):
                            if n4 == 1 and w4 == 2:
                                sizes = [value for n5, w5, value in r.fields(sum(v4)) if n5 == 1 and w5 == 0]
                                dims.append(sizes[0] if sizes else None)
    return name, kind, tuple(dims)


# -- an .onnx file as one node of a graph ---------------------------------------------------------
@arguments
class OnnxModel(Layer):
    """A compiled model, whole, as one node: its figures from its header, its graph inlined when lowered."""

    file: str
    input_shape: tuple
    output_shape_: tuple
    floats: tuple  # (name, shape) of its floating-point initializers: its parameters
    model_macs: int | None  # from its convspec metadata; None for a model convspec did not compile
    model_flops: int = 0  # likewise (0 from a convspec before this figure was written)

    type_name = "onnx"
    family = "ensemble"

    def output_shape(self, x):
        return self.output_shape_

    def weights(self, x) -> list:
        return [Weight(name, shape, role="fixed") for name, shape in self.floats]

    def macs(self, out, x) -> int:
        return self.model_macs or 0

    def flops(self, out, x) -> int:
        return self.model_flops

    def window(self, x):
        return GLOBAL  # not known from the header: every output may see the whole input

    def warnings(self, x) -> list:
        if self.model_macs is None:
            return [(f"'{self.file}' was not compiled by convspec, so its MACs are unknown and count as 0", None)]
        return []

    def lower(self, g, ins, shapes, out) -> str:
        import numpy as np
        import onnx
        from onnx import numpy_helper, version_converter

        try:
            model = onnx.load(self.file)
        except Exception as e:  # protobuf's DecodeError, a missing external data file, ...
            raise LoweringError(f"cannot load '{self.file}': {e}") from None
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if opset != g.opset:
            try:
                model = version_converter.convert_version(model, g.opset)
            except Exception as e:
                raise LoweringError(f"'{self.file}' is opset {opset} and does not convert to opset {g.opset} ({e}); "
                                    f"compile with --opset {opset}") from None
        graph = model.graph
        weights = {t.name for t in graph.initializer}
        data_input = next(i.name for i in graph.input if i.name not in weights)
        # its weights are keyed <node>.<name>, as a spec's; its other values <node>/<name>
        value = {name: f"{g.node}.{name}" for name in weights}
        value[data_input], value[""] = ins[0], ""
        for t in graph.initializer:
            try:
                array = numpy_helper.to_array(t)
            except Exception as e:  # a type numpy has no form for, data that does not fit the dims
                raise LoweringError(f"'{self.file}': cannot read its tensor '{t.name}' ({e})") from None
            if array.dtype == np.float32:
                g.weights.append((value[t.name], np.ascontiguousarray(array)))
            else:  # integer constants (shapes, indices) stay constants
                g.initializers.append(numpy_helper.from_array(array, value[t.name]))
        for k, node in enumerate(graph.node):
            if node.domain not in ("", "ai.onnx") or any(a.type in (a.GRAPH, a.GRAPHS) for a in node.attribute):
                raise LoweringError(f"'{self.file}' has a node '{node.name or node.op_type}' ({node.domain or 'onnx'}"
                                    f".{node.op_type}) with a custom domain or a subgraph, which an ensemble cannot "
                                    "take in")
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[:] = [value.setdefault(v, f"{g.node}/{v}") for v in node.input]
            copy.output[:] = [value.setdefault(v, f"{g.node}/{v}") for v in node.output]
            copy.name = f"{g.node}/{node.name}" if node.name else f"{g.node}/#{k}_{node.op_type}"  # unique
            g.nodes.append(copy)
        return value[graph.output[0].name]


def onnx_node_layer(path, where, shown: str) -> OnnxModel:
    """The layer of an ensemble member given as an .onnx file: one float input and output, sizes known."""
    header = read_header(path, where, shown)
    inputs, outputs = header.data_inputs, header.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise SpecError(f"'{shown}' has {len(inputs)} inputs and {len(outputs)} outputs; an ensemble member takes "
                        "one and gives one", where)
    for what, (name, kind, dims) in (("input", inputs[0]), ("output", outputs[0])):
        if kind != FLOAT:
            raise SpecError(f"the {what} '{name}' of '{shown}' is not float32; an ensemble member takes and gives "
                            "float32 (compile it without --raw-input)", where)
        if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
            shape = ["?" if d is None else d for d in dims]
            raise SpecError(f"the {what} '{name}' of '{shown}' is {shape}; an ensemble member needs a batch axis and "
                            "fixed sizes after it", where)
    if outputs[0][2][0] != inputs[0][2][0]:  # a fixed size where the input has the batch: not one output per input
        shape = lambda dims: ["?" if d is None else d for d in dims]  # noqa: E731
        raise SpecError(f"the output '{outputs[0][0]}' of '{shown}' is {shape(outputs[0][2])}, whose first axis is not "
                        f"the batch of its input {shape(inputs[0][2])}; an ensemble member gives one output per input",
                        where)
    floats = tuple((name, dims) for name, (kind, dims) in header.initializers.items() if kind in FLOATING)
    return OnnxModel(file=str(path), input_shape=tuple(inputs[0][2][1:]), output_shape_=tuple(outputs[0][2][1:]),
                     floats=floats,
                     model_macs=_count(header.metadata.get("convspec.macs")),
                     model_flops=_count(header.metadata.get("convspec.flops")) or 0)


def _count(text: str | None) -> int | None:
    """A figure from a model's metadata: a whole number below 2^63, else unknown (a damaged file)."""
    return int(text) if text and text.isdigit() and len(text) < 19 else None


def onnx_graph(path, where, shown: str) -> Graph:
    """An .onnx file as a graph of one node, `model`, named after the file: a member like a spec's graph."""
    layer = onnx_node_layer(path, where, shown)
    name = Path(path).stem
    return Graph(name, shown, {}, layer.input_shape, (Node("model", layer, (INPUT,), where),), ("model",))
