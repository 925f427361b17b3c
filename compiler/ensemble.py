"""Ensembles: several specs sharing one input, compiled into one model that combines their outputs.

    name: resnet18_ensemble
    ensemble:
      members: [resnet18, vgg11_bn, {spec: nets/mine.yaml, name: mine}, compiled.onnx]
      combine: mean_softmax        # mean_logits, max, vote
      weights: [1, 1, 2]           # optional, one per member

A compiled model (.onnx) is one node, `<member>.model` (compiler/onnxfile.py). Each member's
nodes are named `<member>.<node>` (`resnet18.layer1.0.conv1`), so the members
keep their own weights (`compile --weights resnet18=FILE`), and their figures add up: the
ensemble's params and MACs are the sums of its members'. One node, `ensemble`, combines their
outputs over the class axis (axis 1 of the batch):

    mean_softmax  sum_i w_i softmax(x_i) / sum_i w_i          (the default)
    mean_logits   sum_i w_i x_i / sum_i w_i
    max           max_i softmax(x_i), element by element     (weights do not apply)
    vote          sum_i w_i onehot(argmax x_i) / sum_i w_i     (each class's share of the votes)
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from .attachments import attach
from .errors import LayerArgError, SpecError
from .ir import BlockInstance, Expectation, Graph, Member, Node
from .limits import Limits
from .registry import Layer, arguments, numel
from .wrap import NETWORK_KEYS, prefixer, refuse, renamed, single_output

COMBINE = "ensemble"  # the name of the node that combines the members' outputs: the model's output
MEMBER_NAME = re.compile(r"[A-Za-z0-9_]+")  # it prefixes the member's layer names and weight keys


@arguments
class Combine(Layer):
    """Combine the members' outputs into one prediction (not a layer a spec can name)."""

    mode: str = "mean_softmax"
    shares: tuple = ()  # each input's weight, summing to 1

    type_name = "combine"
    family = "ensemble"
    variadic = True

    def output_shape(self, *ins):
        if any(s != ins[0] for s in ins):
            raise LayerArgError("an ensemble's members must give outputs of one shape to combine them; give every "
                                "member the same classes")
        if len(ins[0]) not in (1, 3):
            raise LayerArgError(f"an ensemble combines class scores, [classes] or [classes, H, W]; the members "
                                f"give {list(ins[0])}")
        return ins[0]

    def flops(self, out, *ins) -> int:
        """Per value of each member: 3 for its softmax (exp, sum, divide), 2 to weigh it and add."""
        per_value = {"mean_softmax": 5, "mean_logits": 2, "max": 4, "vote": 2}[self.mode]
        return per_value * numel(out) * len(ins)

    def lower(self, g, ins, shapes, out) -> str:
        if self.mode == "max":
            return g.op("Max", [g.op("Softmax", [x], axis=1) for x in ins])
        if self.mode == "mean_softmax":
            terms = [g.op("Softmax", [x], axis=1) for x in ins]
        elif self.mode == "vote":  # argmax ties go to the first class, as numpy's
            on_off = g.const([0.0, 1.0], "float32")
            terms = [g.op("OneHot", [g.op("ArgMax", [x], axis=1, keepdims=0), g.const(out[0]), on_off], axis=1)
                     for x in ins]
        else:
            terms = list(ins)
        return g.op("Sum", [g.op("Mul", [t, g.const(w, "float32")]) for t, w in zip(terms, self.shares)])


def compose(doc, path: str, member, limits: Limits) -> Graph:
    """The flat graph of an ensemble spec; `member(ref, key, where)` reads a member's graph."""
    refuse(doc, NETWORK_KEYS + ("input", "multicrop"), "an ensemble spec (its members bring their layers and input)")
    spec = doc["ensemble"]
    items = spec["members"]
    mode = spec.get("combine", "mean_softmax")
    weights = list(spec.get("weights", [1.0] * len(items)))
    if "weights" in spec and mode == "max":
        raise SpecError("'ensemble.weights' do not apply to combine: max; remove them or choose mean_softmax, "
                        "mean_logits or vote", spec.value_at["weights"])
    if len(weights) != len(items):
        raise SpecError(f"'ensemble.weights' has {len(weights)} values for {len(items)} members; give one per member",
                        spec.value_at["weights"])

    nodes, expectations, members, frozen, sources, attached = [], [], [], set(), [path], []
    blocks = []  # each member's block instances, then the member itself: a diagram collapses it to one box
    first = None
    for k, item in enumerate(items):
        where = items.item_at[k]
        ref, name = (item, None) if isinstance(item, str) else (item["spec"], item.get("name"))
        graph = member(ref, "ensemble.members", where)
        name = name or graph.name
        if not MEMBER_NAME.fullmatch(name):
            raise SpecError(f"the member '{ref}' is called '{name}', which cannot prefix its layers' names; give it "
                            "a `name:` of letters, digits and _", where)
        if any(m.name == name for m in members):
            raise SpecError(f"two members are called '{name}'; give each a different `name:` "
                            f"(`{{spec: {ref}, name: {name}_2}}`)", where)
        if first is None:
            first = graph
        elif graph.input_shape != first.input_shape:
            raise SpecError(f"the member '{name}' takes input {list(graph.input_shape)}, but '{members[0].name}' takes "
                            f"{list(first.input_shape)}; an ensemble's members share one input", where)
        rename = prefixer(name)
        member_nodes, member_expectations = renamed(graph, rename)
        output = rename(single_output(graph, where, "the member"))
        nodes += member_nodes
        expectations += member_expectations
        frozen |= {rename(n) for n in graph.attachments.frozen}
        sources += graph.attachments.sources
        attached.append(graph.attachments)
        members.append(Member(name, graph.name, output))
        blocks += [BlockInstance(rename(b.name), b.block, tuple(map(rename, b.nodes))) for b in graph.blocks]
        blocks.append(BlockInstance(name, graph.name, tuple(n.name for n in member_nodes)))
    if len(nodes) + 1 > limits.layers:
        raise SpecError(f"the ensemble has {len(nodes) + 1:,} layers, more than the limit of {limits.layers:,}; "
                        "raise it with --max-layers", doc.value_at["ensemble"])

    total = sum(weights)
    combine = Combine(mode=mode, shares=tuple(w / total for w in weights))
    nodes.append(Node(COMBINE, combine, tuple(m.output for m in members), doc.value_at["ensemble"],
                      {"combine": spec.value_at.get("combine", spec.where)}))
    name = doc.get("name") or path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if "expect" in doc:
        expectations.append(Expectation(name, COMBINE, tuple(n.name for n in nodes), dict(doc["expect"]),
                                        doc.value_at["expect"], doc["expect"].value_at))
    attachments = attach(doc, first.input_shape, [n.name for n in nodes], frozen, tuple(sources), limits)
    attachments = _inherited(attachments, attached, doc.value_at["ensemble"])
    meta = {k: doc[k] for k in ("title", "paper", "description") if k in doc}
    return Graph(name, path, meta, first.input_shape, tuple(nodes), (COMBINE,), tuple(expectations), attachments,
                 blocks=tuple(blocks), members=tuple(members))


def _inherited(own, members: list, where):
    """The ensemble's labels and preprocess: its own, else its members' (those that declare one must agree)."""
    labels = own.labels if own.labels is not None else next((a.labels for a in members if a.labels), None)
    preprocess = own.preprocess
    if preprocess is None:
        declared = {json.dumps(a.preprocess, sort_keys=True): a.preprocess for a in members if a.preprocess}
        if len(declared) > 1:
            raise SpecError("the members preprocess their images differently; give the ensemble a `preprocess:` "
                            "of its own", where)
        preprocess = next(iter(declared.values()), None)
    return replace(own, labels=labels, preprocess=preprocess)
