"""Inference: walk the graph once, in order, and compute every node's figures.

For each node: output shape, parameters (trainable and not), MACs, FLOPs and receptive field,
plus the warnings its layer raises (`--strict` makes them errors) and the `expect:` checks.

Receptive field, per spatial axis, with k the dilated kernel, s the stride, p the begin pad:
    size' = size + (k - 1) * jump;  jump' = jump * s;  start' = start + ((k - 1)/2 - p) * jump
where start is the input coordinate (0-based pixel centres) of the centre of the first
output's field. Merges take the union of their inputs' fields (crop's second input only gives a
size). Upsampling layers give a
stride below 1 as a Fraction (arith.Step), so jumps and sizes stay exact: after a 2x upsample
the jump is 1/2, and a 3x3 conv there adds 2 * 1/2 = 1 input pixel to the size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import Diagnostic, LayerArgError, ShapeError, SpecError
from .ir import INPUT, Graph, Node, output_values
from .limits import DEFAULT, MAX_ELEMENTS, Limits
from .registry import GLOBAL, WARNING_KINDS, numel

BYTES_PER_VALUE = 4  # float32 activations and weights


@dataclass(frozen=True)
class ReceptiveField:
    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]

    def as_dict(self) -> dict:
        return {key: [_num(v) for v in getattr(self, key)] for key in ("size", "jump", "start")}


@dataclass(frozen=True)
class LayerFigures:
    node: Node
    input_shapes: tuple
    output_shape: tuple  # for a layer with several outputs, all of them as one (a split's input)
    trainable: int
    non_trainable: int
    macs: int
    flops: int
    receptive_field: ReceptiveField | None
    output_shapes: tuple = ()  # one per output value: (output_shape,) unless the layer has several

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable


@dataclass(frozen=True)
class Analysis:
    graph: Graph
    layers: tuple[LayerFigures, ...]
    warnings: tuple[Diagnostic, ...]
    notes: tuple[Diagnostic, ...] = ()  # warnings that an item's `accept:` acknowledges

    @property
    def trainable(self) -> int:
        return sum(f.trainable for f in self.layers)

    @property
    def non_trainable(self) -> int:
        return sum(f.non_trainable for f in self.layers)

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable

    @property
    def macs(self) -> int:
        return sum(f.macs for f in self.layers)

    @property
    def flops(self) -> int:
        return sum(f.flops for f in self.layers)

    @property
    def output_shapes(self) -> tuple:
        by_value = {v: s for f in self.layers for v, s in zip(output_values(f.node), f.output_shapes)}
        return tuple(by_value[o] for o in self.graph.outputs)

    @property
    def activation_bytes(self) -> int:
        """Input plus every node's output (each of its copies: a multi-crop's, one per crop), float32,
        batch 1: what a forward pass keeps if nothing is freed."""
        outputs = sum(f.node.layer.copies * numel(f.output_shape) for f in self.layers)
        return BYTES_PER_VALUE * (numel(self.graph.input_shape) + outputs)

    @property
    def weight_bytes(self) -> int:
        return BYTES_PER_VALUE * self.params

    @property
    def branching(self) -> bool:
        """True when some layer is not simply fed by the layer before it."""
        previous = INPUT
        for f in self.layers:
            if f.node.inputs != (previous,):
                return True
            previous = f.node.name
        return False


def _check_params(node, total_params: int, limits: Limits) -> None:
    """A typo (`filters: 4096000`) fails here, before any weight is made."""
    if total_params > limits.params:
        raise SpecError(f"the spec has {total_params:,} parameters up to this layer, more than the limit of "
                        f"{limits.params:,}; check the sizes, or raise the limit with --max-params",
                        node.where, node.name)


def _check_keys(node, weights, owners: dict) -> None:
    """Each weight key (`c1.weight`) must name nothing else: ONNX gives layer outputs and weights
    one namespace, and onnxruntime refuses a model where a layer is called like another's weight."""
    for w in weights:
        key = w.key(node.name)
        other = owners.setdefault(key, node)
        why = "ONNX keeps layer outputs and weights in one namespace"
        if key == node.name:  # a weight held by the enclosing block (Weight.on_block), keyed like the layer
            raise SpecError(f"the layer's name '{key}' is also the key of its own weight, which belongs to the "
                            f"enclosing block; {why}, so rename the layer (say, '{key.rsplit('.', 1)[0]}.gamma')",
                            node.where, node.name)
        if other is node:
            continue
        if other.name == key:  # a layer named like this weight: point at the layer to rename
            raise SpecError(f"the name '{key}' is also the key of a weight of layer '{node.name}' ({node.where}); "
                            f"{why}, so rename the layer", other.where, other.name)
        fix = ("it belongs to the enclosing block, which holds one, so give one of the layers a block of its own"
               if w.on_block else f"{why}, so rename one of the layers")
        raise SpecError(f"its weight '{key}' has the same key as a weight of layer '{other.name}' ({other.where}); "
                        f"{fix}", node.where, node.name)


def _check_elements(node, out) -> None:
    if numel(out) > MAX_ELEMENTS:
        raise ShapeError(f"the output {list(out)} has {numel(out):,} elements per sample, more than "
                         f"{MAX_ELEMENTS:,} (64 GiB of float32); check the input size and the layer's arguments",
                         node.where, node.name)


def _num(x):
    """An int when whole, else a float (a Fraction from upsampling prints and serialises as one)."""
    return int(x) if float(x).is_integer() else float(x)


def infer(graph: Graph, strict: bool = False, limits: Limits = DEFAULT) -> Analysis:
    """Every layer's figures, checked against `limits.params` before anything is allocated."""
    shapes = {INPUT: graph.input_shape}
    total = 0
    fields = {INPUT: ReceptiveField((1, 1), (1, 1), (0.0, 0.0)) if len(graph.input_shape) == 3 else None}
    figures, warnings = [], []
    owners = {node.name: node for node in graph.nodes}  # ONNX value and initializer names: one namespace
    for node in graph.nodes:
        ins = tuple(shapes[name] for name in node.inputs)
        layer = node.layer
        try:
            out = layer.output_shape(*ins)
            parts = layer.output_shapes(*ins)
            _check_elements(node, out)  # before anything that walks the output (adaptive bins)
            weights = layer.weights(*ins)
            macs = layer.macs(out, *ins)
            flops = layer.flops(out, *ins)
            step = layer.window(*ins)
            for message, arg in layer.warnings(*ins):
                warnings.append((node, Diagnostic("warning", message, node.arg_at.get(arg, node.where), node.name,
                                                  node.notes)))
        except LayerArgError as e:
            raise layer_error(node, node.inputs, ins, e) from None
        _check_keys(node, weights, owners)
        total += sum(w.size for w in weights)
        _check_params(node, total, limits)
        shapes.update(zip(output_values(node), parts))
        try:
            rf = _receptive_field([fields[n] for n in node.inputs], ins, step)
        except OverflowError:  # strides multiplying past 1e308
            raise ShapeError("the receptive field grows past what a float can hold; check the strides",
                             node.where, node.name) from None
        fields.update((v, rf) for v in output_values(node))
        # Keras' convention: a frozen layer's weights count as non-trainable.
        trainable = 0 if node.name in graph.attachments.frozen else sum(w.size for w in weights if w.trainable)
        figures.append(LayerFigures(node, ins, out, trainable, sum(w.size for w in weights) - trainable,
                                    macs, flops, rf, parts))

    warnings, notes = _accept(graph, warnings)
    warnings.extend(_unused(graph))
    analysis = Analysis(graph, tuple(figures), tuple(warnings), tuple(notes))
    _check_expectations(analysis)
    if strict and warnings:
        raise SpecError.many([replace(w, severity="error", message=w.message + " (an error under --strict)")
                              for w in warnings])
    return analysis


def layer_error(node: Node, names, ins, e: LayerArgError) -> ShapeError:
    """A layer rule's complaint, located at the argument at fault, with the inputs when there are several."""
    message = str(e)
    if len(ins) > 1:
        listed = ", ".join(f"#{i} '{n}' {list(s)}" for i, (n, s) in enumerate(zip(names, ins), 1))
        message += f" (inputs: {listed})"
    return ShapeError(message, node.arg_at.get(e.arg, node.where), node.name).noted(node.notes)


def _accept(graph: Graph, raised) -> tuple[list, list]:
    """Split the layers' warnings into those still to report and those an `accept:` acknowledges
    (kept as notes). An acceptance that acknowledges nothing is an error: the reason has gone."""
    accepted, stale = {}, []
    for acceptance in graph.acceptances:
        for kind in acceptance.kinds:
            matched = [w for node, w in raised if node.name in acceptance.nodes and node.layer.warning_kind == kind]
            if not matched:
                stale.append(Diagnostic("error", f"'accept: {kind}' acknowledges {WARNING_KINDS[kind]}, but no layer "
                                        "of this item raises that warning now; remove the 'accept'",
                                        acceptance.where, acceptance.subject))
            accepted.update((id(w), w) for w in matched)
    if stale:
        raise SpecError.many(stale)
    notes = [replace(w, severity="note", message=w.message + " (accepted)") for w in accepted.values()]
    return [w for _, w in raised if id(w) not in accepted], notes


def _receptive_field(inputs, shapes, step) -> ReceptiveField | None:
    if any(f is None for f in inputs):
        return None
    if len(inputs) > 1 and step is None:  # a merge; with a step (crop), a second input only gives a size
        return _union(inputs)
    rf, x = inputs[0], shapes[0]
    if step is None:
        return rf
    if step == GLOBAL:
        span, stride, offset = [n - 1 for n in x[1:]], x[1:], [(n - 1) / 2 for n in x[1:]]
    else:
        span, stride, offset = step.span, step.stride, step.offset
    size, jump, start = [], [], []
    for r, j, s0, k, s, o in zip(rf.size, rf.jump, rf.start, span, stride, offset):
        size.append(_exact(r + k * j))
        jump.append(_exact(j * s))
        start.append(float(s0 + o * j))
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def _exact(x):
    """An int when whole (Fractions appear only after upsampling), else the Fraction itself."""
    return int(x) if x == int(x) else x


def _union(fields) -> ReceptiveField:
    size, jump, start = [], [], []
    for axis in range(2):
        lo = min(f.start[axis] - (f.size[axis] - 1) / 2 for f in fields)
        hi = max(f.start[axis] + (f.size[axis] - 1) / 2 for f in fields)
        size.append(_num(round(hi - lo, 9) + 1))
        jump.append(max(f.jump[axis] for f in fields))
        start.append((lo + hi) / 2)
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def _unused(graph: Graph) -> list[Diagnostic]:
    """Layers whose output never reaches a graph output are almost always a wiring mistake."""
    needed, stack = set(), list(graph.outputs)
    by_value = {v: n for n in graph.nodes for v in output_values(n)}
    while stack:
        value = stack.pop()
        if value not in by_value or by_value[value].name in needed:
            continue
        needed.add(by_value[value].name)
        stack.extend(by_value[value].inputs)
    return [Diagnostic("warning", "its output reaches no graph output; wire it in with `inputs:` "
                       "or list it under `outputs:`", n.where, n.name)
            for n in graph.nodes if n.name not in needed]


def _check_expectations(analysis: Analysis) -> None:
    by_name = {f.node.name: f for f in analysis.layers}
    failures = []
    for exp in analysis.graph.expectations:
        group = [by_name[n] for n in exp.nodes]
        out = by_name[exp.output] if exp.output in by_name else None
        actual = {
            "params": sum(f.params for f in group),
            "trainable": sum(f.trainable for f in group),
            "non_trainable": sum(f.non_trainable for f in group),
            "macs": sum(f.macs for f in group),
            "flops": sum(f.flops for f in group),
            "output": list(out.output_shape if out else analysis.graph.input_shape),
        }
        if out and len(out.output_shapes) > 1:  # a split: its values, as the summary shows them, never one shape
            actual["output"] = " + ".join(str(list(shape)) for shape in out.output_shapes)
        rf = out.receptive_field if out else None
        actual["receptive_field"] = list(rf.size) if rf else None
        for key, wanted in exp.values.items():
            got = actual[key]
            if key == "receptive_field" and isinstance(wanted, int):
                wanted = [wanted, wanted]
            if key == "output":
                wanted = list(wanted)
            if got != wanted:
                failures.append(Diagnostic(
                    "error", f"expect failed: {key} is {_show(got)}, the spec expects {_show(wanted)}; "
                    "fix the layer's arguments, or the expectation if it is the one that is wrong",
                    exp.value_at.get(key, exp.where), exp.subject))
    if failures:
        raise SpecError.many(failures)


def _show(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)
