"""Multi-crop at test time: one spec run on several crops of a larger input, its predictions averaged.

    name: alexnet_10crop
    input: [3, 256, 256]
    multicrop: {spec: alexnet, crops: ten}     # center, ten, or {grid: [rows, columns], flip: true}

All inside the graph: the node `crops` cuts the crops (Slice; a second Slice with step -1 flips
one) and stacks them on the batch axis, crop by crop; the network runs once on that batch; the
node `multicrop` takes each crop's softmax (or its logits, with `combine: mean_logits`) and
averages them per input. The network's nodes keep their names, so its weights load as they are.

Crops, for an input H x W and the network's h x w (AlexNet's and VGG's test-time scheme):
    center  the centre crop, at top round((H - h) / 2), left round((W - w) / 2) (torchvision's)
    ten     the four corners and the centre, each also flipped left-right
    grid    rows x columns positions spread evenly from corner to corner, each also flipped unless
            `flip: false`
The network runs once per crop, so its MACs and FLOPs per input are counted that many times.
"""

from __future__ import annotations

from dataclasses import replace

from .attachments import attach
from .errors import SpecError
from .ir import INPUT, Expectation, Graph, Node
from .limits import Limits
from .registry import Layer, arguments, numel
from .wrap import NETWORK_KEYS, refuse, renamed, single_output

CROPS, MEAN = "crops", "multicrop"  # the names of the nodes before and after the network
MAX_CROPS = 1024


@arguments
class Crops(Layer):
    """Cut the crops of each input and stack them on the batch axis, crop by crop."""

    boxes: tuple  # (top, left, flipped) per crop
    size: tuple  # the crops' (h, w)

    type_name = "crops"
    family = "multicrop"

    def output_shape(self, x):
        return (x[0], *self.size)

    def lower(self, g, ins, shapes, out) -> str:
        (x,), (h, w) = ins, self.size
        axes, width_axis, backwards = g.const([2, 3]), g.const([3]), g.const([-1])
        first, last = g.const([-1]), g.const([-(2**63)])  # from the last column back past the first
        crops = []
        for top, left, flipped in self.boxes:
            crop = g.op("Slice", [x, g.const([top, left]), g.const([top + h, left + w]), axes])
            if flipped:
                crop = g.op("Slice", [crop, first, last, width_axis, backwards])
            crops.append(crop)
        return g.op("Concat", crops, axis=0)


@arguments
class CropMean(Layer):
    """Average each input's predictions over its crops (the batch holds crop 0 of every input, then crop 1...)."""

    count: int
    mode: str = "mean_softmax"

    type_name = "crop_mean"
    family = "multicrop"

    def output_shape(self, x):
        return x

    def flops(self, out, x) -> int:
        """Per value of each crop: 3 for its softmax (exp, sum, divide), 1 to add it to the mean."""
        return (4 if self.mode == "mean_softmax" else 1) * self.count * numel(out)

    def lower(self, g, ins, shapes, out) -> str:
        x = g.op("Softmax", [ins[0]], axis=1) if self.mode == "mean_softmax" else ins[0]
        by_crop = g.op("Reshape", [x, g.const([self.count, -1, *out])])
        return g.op("ReduceMean", [by_crop, g.const([0])], keepdims=0)


class PerInput:
    """A network layer as the multi-crop runs it: once per crop, so its MACs and FLOPs per input
    are `count` times its own. Everything else is the layer's."""

    def __init__(self, layer: Layer, count: int):
        self._layer, self._count = layer, count

    def macs(self, out, *ins) -> int:
        return self._count * self._layer.macs(out, *ins)

    def flops(self, out, *ins) -> int:
        return self._count * self._layer.flops(out, *ins)

    def __getattr__(self, name):
        return getattr(self._layer, name)


def boxes(crops, big: tuple, small: tuple) -> tuple:
    """(top, left, flipped) of each crop of size `small` in an input of size `big` (both (H, W))."""
    (height, width), (h, w) = big, small
    if crops == "center":
        return ((int(round((height - h) / 2.0)), int(round((width - w) / 2.0)), False),)
    if crops == "ten":
        corners = [(0, 0), (0, width - w), (height - h, 0), (height - h, width - w),
                   (int(round((height - h) / 2.0)), int(round((width - w) / 2.0)))]
        return tuple((t, l, f) for f in (False, True) for t, l in corners)
    rows, columns = [crops["grid"]] * 2 if isinstance(crops["grid"], int) else crops["grid"]
    flips = (False, True) if crops.get("flip", True) else (False,)
    tops, lefts = _spread(height - h, rows), _spread(width - w, columns)
    return tuple((t, l, f) for f in flips for t in tops for l in lefts)


def _spread(room: int, count: int) -> list[int]:
    """`count` offsets from 0 to `room`, evenly spaced (the middle one when there is one)."""
    if count == 1:
        return [int(round(room / 2.0))]
    return [int(round(k * room / (count - 1))) for k in range(count)]


def compose(doc, path: str, member, limits: Limits) -> Graph:
    """The flat graph of a multi-crop spec; `member(ref, key, where)` reads the network's graph."""
    refuse(doc, NETWORK_KEYS + ("ensemble",), "a multicrop spec (its network brings the layers)")
    spec = doc["multicrop"]
    if "input" not in doc:
        raise SpecError("a multicrop spec needs an 'input', larger than its network's (for example [3, 256, 256] "
                        "around a 224x224 network)", doc.key_at["multicrop"])
    big, where_input = tuple(doc["input"]), doc.value_at["input"]
    net = member(spec["spec"], "multicrop.spec", spec.value_at["spec"])
    small = net.input_shape
    if len(small) != 3 or len(big) != 3:
        raise SpecError(f"multi-crop cuts images: the input and the network's input must be [C, H, W]; here they are "
                        f"{list(big)} and {list(small)} ('{net.name}')", where_input)
    if big[0] != small[0] or big[1] < small[1] or big[2] < small[2]:
        raise SpecError(f"the input {list(big)} cannot be cut into the crops {list(small)} that '{net.name}' takes; "
                        f"give {small[0]} channels and at least {small[1]}x{small[2]}", where_input)
    crops = spec.get("crops", "ten")
    cut = boxes(crops, big[1:], small[1:])
    if len(cut) > MAX_CROPS:
        raise SpecError(f"the grid makes {len(cut):,} crops, more than {MAX_CROPS:,}; use a coarser grid",
                        spec.value_at["crops"])
    taken = {n.name for n in net.nodes} & {CROPS, MEAN}
    if taken:
        raise SpecError(f"the network '{net.name}' has a layer called '{sorted(taken)[0]}', a name the multi-crop "
                        "needs for its own; rename that layer", spec.value_at["spec"])

    output = single_output(net, spec.value_at["spec"], "the network")
    nodes, expectations = renamed(net, lambda name: CROPS if name == INPUT else name)
    nodes = [replace(n, layer=PerInput(n.layer, len(cut))) for n in nodes]
    # the network's own expect: figures hold per crop; its MACs and FLOPs are counted per input here
    expectations = [replace(e, values={k: v for k, v in e.values.items() if k not in ("macs", "flops")})
                    for e in expectations]
    mode = spec.get("combine", "mean_softmax")
    nodes = [Node(CROPS, Crops(boxes=cut, size=small[1:]), (INPUT,), doc.value_at["multicrop"],
                  {"boxes": spec.value_at.get("crops", spec.where)}),
             *nodes,
             Node(MEAN, CropMean(count=len(cut), mode=mode), (output,), doc.value_at["multicrop"])]
    if len(nodes) > limits.layers:
        raise SpecError(f"the multi-crop has {len(nodes):,} layers, more than the limit of {limits.layers:,}; "
                        "raise it with --max-layers", doc.value_at["multicrop"])
    name = doc.get("name") or path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if "expect" in doc:
        expectations.append(Expectation(name, MEAN, tuple(n.name for n in nodes), dict(doc["expect"]),
                                        doc.value_at["expect"], doc["expect"].value_at))
    attachments = attach(doc, big, [n.name for n in nodes], set(net.attachments.frozen),
                         (path, *net.attachments.sources), limits)
    attachments = replace(attachments, labels=attachments.labels or net.attachments.labels,
                          preprocess=attachments.preprocess or _widened(net.attachments.preprocess, big))
    meta = {k: doc[k] for k in ("title", "paper", "description") if k in doc}
    return Graph(name, path, meta, big, tuple(nodes), (MEAN,), tuple(expectations), attachments,
                 blocks=net.blocks, members=net.members)


def _widened(preprocess: dict | None, big: tuple) -> dict | None:
    """The network's preprocessing, ending at the multi-crop's larger input instead of the network's."""
    if not preprocess:
        return preprocess
    out = dict(preprocess)
    out["crop" if "crop" in out else "resize"] = list(big[1:])
    return out
