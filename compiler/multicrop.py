"""Multi-crop at test time: one spec run on several crops of a larger input, its predictions averaged.

    name: alexnet_10crop
    input: [3, 256, 256]
    multicrop: {spec: alexnet, crops: ten}     # center, ten, {grid: [rows, columns], flip: true},
                                               # googlenet144, or {scales: [...], squares: 3, flip: true}

All inside the graph: the node `crops` cuts the crops (Resize for the scales, Slice; a second
Slice with step -1 flips one) and stacks them on the batch axis, crop by crop; the network runs once on that batch; the
node `multicrop` takes each crop's softmax (or its logits, with `combine: mean_logits`) and
averages them per input. The network's nodes keep their names, so its weights load as they are.

Crops, for an input H x W and the network's h x w (AlexNet's and VGG's test-time scheme):
    center  the centre crop, at top round((H - h) / 2), left round((W - w) / 2) (torchvision's)
    ten     the four corners and the centre, each also flipped left-right
    grid    rows x columns positions spread evenly from corner to corner, each also flipped unless
            `flip: false`
    scales  GoogLeNet's scheme (Szegedy et al. 2015, section 7; `googlenet144` is its 144 crops):
            the input resized so that its shorter side is each scale in turn (the longer side
            floor(scale * long / short), as preprocess's resize), `squares` scale x scale squares
            spread along the longer side (3: left, centre, right; top, centre, bottom when
            portrait), and from each square its four corners, its centre and the whole square
            resized to h x w; each also flipped unless `flip: false`. The resizes are bilinear
            and antialiased (torchvision's Resize, Pillow's bilinear): ONNX Resize, linear, with
            antialias and exclude_outside, which renormalises the filter at the borders as they do.
The network runs once per crop, so its MACs and FLOPs per input are counted that many times, and
so are its outputs in the activation memory.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from .attachments import attach
from .errors import LayerArgError, SpecError
from .ir import INPUT, Expectation, Graph, Node
from .limits import MAX_ELEMENTS, Limits
from .preprocess import resized
from .registry import Layer, arguments, numel
from .wrap import NETWORK_KEYS, refuse, renamed, single_output

CROPS, MEAN = "crops", "multicrop"  # the names of the nodes before and after the network
MAX_CROPS = 1024
GOOGLENET_144 = {"scales": [256, 288, 320, 352], "squares": 3, "flip": True}  # 4 x 3 x 6 x 2 crops


class Cut(NamedTuple):
    """One crop: from the input resized to `scaled` (H, W; None: as it is), the box of `height` x
    `width` at (top, left), resized to the network's h x w if it is not that size, maybe flipped."""

    top: int
    left: int
    height: int
    width: int
    flipped: bool = False
    scaled: tuple | None = None


@arguments
class Crops(Layer):
    """Cut the crops of each input and stack them on the batch axis, crop by crop."""

    cuts: tuple  # a Cut per crop
    size: tuple  # the crops' (h, w): the network's input

    type_name = "crops"
    family = "multicrop"

    @property
    def copies(self) -> int:
        return len(self.cuts)

    def output_shape(self, x):
        return (x[0], *self.size)

    def lower(self, g, ins, shapes, out) -> str:
        (x,), axes = ins, g.const([2, 3])
        width_axis, backwards = g.const([3]), g.const([-1])
        first, last = g.const([-1]), g.const([-(2**63)])  # from the last column back past the first
        scaled, unflipped = {None: x}, {}  # each resize and each box made once, whatever uses it
        crops = []
        for cut in self.cuts:
            if cut.scaled not in scaled:
                scaled[cut.scaled] = _resize(g, x, cut.scaled)
            box = cut._replace(flipped=False)
            if box not in unflipped:
                crop = g.op("Slice", [scaled[cut.scaled], g.const([cut.top, cut.left]),
                                      g.const([cut.top + cut.height, cut.left + cut.width]), axes])
                unflipped[box] = crop if (cut.height, cut.width) == self.size else _resize(g, crop, self.size)
            crop = unflipped[box]
            crops.append(g.op("Slice", [crop, first, last, width_axis, backwards]) if cut.flipped else crop)
        return g.op("Concat", crops, axis=0)


def _resize(g, x: str, size: tuple) -> str:
    """Bilinear to `size` (H, W), antialiased when shrinking, the filter renormalised at the borders
    (exclude_outside): torchvision's Resize and Pillow's bilinear, not ONNX's default edges."""
    # sizes for all four axes, not `axes`: onnxruntime's shape inference (int8 quantisation) misreads those
    sizes = g.op("Concat", [g.op("Slice", [g.op("Shape", [x]), g.const([0]), g.const([2])]), g.const(list(size))],
                 axis=0)
    return g.op("Resize", [x, "", "", sizes], mode="linear", antialias=1, exclude_outside=1)


@arguments
class CropMean(Layer):
    """Average each input's predictions over its crops (the batch holds crop 0 of every input, then crop 1...)."""

    count: int
    mode: str = "mean_softmax"

    type_name = "crop_mean"
    family = "multicrop"

    def output_shape(self, x):
        if len(x) != 1:  # maps from different crop positions (and mirrored ones) do not line up pixel by pixel
            raise LayerArgError(f"multi-crop averages class scores, [classes]; the network gives {list(x)}, whose "
                                "pixels differ in place from crop to crop; run the network on the whole input instead")
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
        self.copies = count * layer.copies  # its output, once per crop

    def macs(self, out, *ins) -> int:
        return self._count * self._layer.macs(out, *ins)

    def flops(self, out, *ins) -> int:
        return self._count * self._layer.flops(out, *ins)

    def __getattr__(self, name):
        return getattr(self._layer, name)


def crop_count(crops) -> int:
    """How many crops `crops` makes, known before any is listed (a grid may claim billions)."""
    if crops in ("center", "ten"):
        return 1 if crops == "center" else 10
    crops, flips = _named(crops), 2 if _named(crops).get("flip", True) else 1
    if "grid" in crops:
        rows, columns = _grid(crops)
        return rows * columns * flips
    return len(crops["scales"]) * crops.get("squares", 3) * 6 * flips


def cuts(crops, big: tuple, small: tuple) -> tuple[Cut, ...]:
    """The Cut of each crop of size `small` in an input of size `big` (both (H, W))."""
    (height, width), (h, w) = big, small
    if crops == "center":
        return (Cut(*_centre(big, small), h, w),)
    if crops == "ten":
        places, flips = _five(big, small), (False, True)
    else:
        crops = _named(crops)
        if "grid" in crops:
            rows, columns = _grid(crops)
            places = [Cut(t, l, h, w) for t in _spread(height - h, rows) for l in _spread(width - w, columns)]
        else:
            places = [cut for scale in crops["scales"] for cut in _squares(big, small, scale, crops.get("squares", 3))]
        flips = (False, True) if crops.get("flip", True) else (False,)
    return tuple(place._replace(flipped=f) for f in flips for place in places)


def _named(crops):
    """A named scheme as its mapping."""
    return GOOGLENET_144 if crops == "googlenet144" else crops


def _grid(crops) -> tuple:
    """(rows, columns) of a grid: `grid: n` is n x n."""
    return (crops["grid"], crops["grid"]) if isinstance(crops["grid"], int) else tuple(crops["grid"])


def _centre(big: tuple, small: tuple) -> tuple:
    """(top, left) of the centre crop, rounded as torchvision rounds."""
    return tuple(int(round((n - m) / 2.0)) for n, m in zip(big, small))


def _five(big: tuple, small: tuple, top: int = 0, left: int = 0, scaled=None) -> list[Cut]:
    """The four corners and the centre of an area of size `big` at (top, left)."""
    (height, width), (h, w) = big, small
    corners = [(0, 0), (0, width - w), (height - h, 0), (height - h, width - w), _centre(big, small)]
    return [Cut(top + t, left + l, h, w, scaled=scaled) for t, l in corners]


def _squares(big: tuple, small: tuple, scale: int, count: int) -> list[Cut]:
    """GoogLeNet's six crops of each of `count` squares of the input resized to shorter side `scale`:
    the squares spread along the longer side, then each square's five crops and the whole square."""
    height, width = size = resized(big, scale)
    scaled = None if size == tuple(big) else size
    tops, lefts = (_spread(height - scale, count), [0]) if height > width else ([0], _spread(width - scale, count))
    return [cut for top in tops for left in lefts
            for cut in (*_five((scale, scale), small, top, left, scaled), Cut(top, left, scale, scale, scaled=scaled))]


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
    if crop_count(crops) > MAX_CROPS:
        grid = "grid" in crops
        raise SpecError(f"the {'grid makes' if grid else 'scales make'} {crop_count(crops):,} crops, more than "
                        f"{MAX_CROPS:,}; use {'a coarser grid' if grid else 'fewer scales or squares'}",
                        spec.value_at["crops"])
    if isinstance(crops, dict) and "scales" in crops:
        _check_scales(crops["scales"], big, small, net.name)
    cut = cuts(crops, big[1:], small[1:])
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
    nodes = [Node(CROPS, Crops(cuts=cut, size=small[1:]), (INPUT,), doc.value_at["multicrop"],
                  {"cuts": spec.value_at.get("crops", spec.where)}),
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


def _check_scales(scales, big: tuple, small: tuple, network: str) -> None:
    """Each scale's square must hold the network's crops, and the resized input must fit in memory."""
    for scale, where in zip(scales, scales.item_at):
        if scale < max(small[1:]):
            raise SpecError(f"the scale {scale} makes {scale}x{scale} squares, too small for the {small[1]}x{small[2]} "
                            f"crops that '{network}' takes; give scales of at least {max(small[1:])}", where)
        height, width = resized(big[1:], scale)
        if big[0] * height * width > MAX_ELEMENTS:
            raise SpecError(f"the scale {scale} resizes the input to {big[0]}x{height}x{width}, more than "
                            f"{MAX_ELEMENTS:,} values; use a smaller scale", where)


def _widened(preprocess: dict | None, big: tuple) -> dict | None:
    """The network's preprocessing, ending at the multi-crop's larger input instead of the network's."""
    if not preprocess:
        return preprocess
    out = dict(preprocess)
    out["crop" if "crop" in out else "resize"] = list(big[1:])
    return out
