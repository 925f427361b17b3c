"""The architecture diagram: an analysed graph -> boxes and labelled edges -> a scene of shapes.

A box per layer (or, collapsed, per block instance), its name over its type, parameters and MACs;
an edge per input, labelled with the shape it carries; the spec's input and outputs as boxes too.
layout.py places them; the scene is a list of plain shapes (rectangles, lines, text) that
diagram_svg.py and diagram_png.py draw the same way, so the SVG and the PNG are one picture.
Text is measured as monospace (0.6 em a character): the SVG asks for a monospace font, and the
PNG's font is no wider, so text fits its box in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from .infer import Analysis
from .ir import INPUT, output_values
from .layout import layered
from .report import human

CHAR_EM = 0.6  # a monospace character's advance, in em
TITLE_SIZE, TEXT_SIZE, LABEL_SIZE = 13.0, 12.0, 11.0
LINE = 1.35  # line height, in em
PAD_X, PAD_Y = 10.0, 5.0
ARROW = 7.0  # length of an arrowhead
INK, EDGE, LABEL_INK = "#1f2328", "#57606a", "#424a53"
FRAME_FILL, FRAME_EDGE, FRAME_PAD = "#f3f6f9", "#b6c2cf", 6.0  # a block's frame, expanded

# Fills say what a box does, from its figures, not from a list of layer names.
FILLS = {"input": "#efe3f7", "output": "#efe3f7", "block": "#dff3dc", "weighted": "#dce9fb",
         "merge": "#fde8c8", "norm": "#ececec", "plain": "#ffffff"}


# -- the scene: what both renderers draw ----------------------------------------------------------
@dataclass(frozen=True)
class Rect:
    left: float
    top: float
    width: float
    height: float
    fill: str
    stroke: str
    stroke_width: float = 1.0
    radius: float = 4.0


@dataclass(frozen=True)
class Text:
    x: float  # the centre of the line of text
    y: float
    text: str
    size: float
    bold: bool = False
    color: str = INK


@dataclass(frozen=True)
class Line:
    points: tuple
    color: str = EDGE
    width: float = 1.2


@dataclass(frozen=True)
class Polygon:
    points: tuple
    fill: str = EDGE


@dataclass(frozen=True)
class Group:
    """A node or an edge: its shapes, and attributes that say what it is (in the SVG, for tools)."""

    kind: str  # "node" or "edge"
    attrs: dict
    shapes: tuple


@dataclass(frozen=True)
class Scene:
    width: float
    height: float
    title: str
    groups: tuple


# -- what is drawn ----------------------------------------------------------------------------
@dataclass
class _Box:
    name: str
    kind: str  # a key of FILLS
    lines: list  # (text, size, bold)
    params: int = 0
    macs: int = 0


def text_width(text: str, size: float) -> float:
    return len(text) * CHAR_EM * size


def _figures(params: int, macs: int) -> list[str]:
    return ([f"{human(params)} params"] if params else []) + ([f"{human(macs)} MACs"] if macs else [])


def shape_label(shape) -> str:
    return "x".join(map(str, shape))


def collapsed_instances(analysis: Analysis) -> list:
    """The block instances drawn as one box each: the outermost ones. An instance that holds all the
    others (DenseNet's `features`) is opened instead, and so on down, so the picture is never one box."""
    instances = [b for b in analysis.graph.blocks if b.nodes]

    def outermost(among):
        return [b for b in among if not any(b.name.startswith(o.name + ".") for o in among if o is not b)]

    chosen = outermost(instances)
    while len(chosen) == 1:
        inside = [b for b in instances if b.name.startswith(chosen[0].name + ".")]
        if not inside:
            break
        chosen = outermost(inside)
    return chosen


def diagram(analysis: Analysis, collapse: bool = False) -> Scene:
    graph = analysis.graph
    figures = {f.node.name: f for f in analysis.layers}
    boxes = [_Box("input", "input", [("input", TITLE_SIZE, True)])]
    unit = {INPUT: 0}  # node name -> its box
    for instance in collapsed_instances(analysis) if collapse else ():
        params = sum(figures[n].params for n in instance.nodes)
        macs = sum(figures[n].macs for n in instance.nodes)
        count = f"{len(instance.nodes)} layer{'s' if len(instance.nodes) != 1 else ''}"
        lines = [(instance.name, TITLE_SIZE, True), (f"{instance.block} · {count}", TEXT_SIZE, False)]
        lines += [(" · ".join(_figures(params, macs)), TEXT_SIZE, False)] if params or macs else []
        for n in instance.nodes:
            unit[n] = len(boxes)
        boxes.append(_Box(instance.name, "block", lines, params, macs))
    for f in analysis.layers:
        if f.node.name in unit:
            continue
        unit[f.node.name] = len(boxes)
        details = " · ".join([f.node.type] + _figures(f.params, f.macs))
        boxes.append(_Box(f.node.name, _kind(f), [(f.node.name, TITLE_SIZE, True), (details, TEXT_SIZE, False)],
                          f.params, f.macs))
    # A collapsed box takes the place of its first node, for the layout's first order.
    first = {}
    for i, f in enumerate(analysis.layers):
        first.setdefault(unit[f.node.name], i + 1)
    order = sorted(range(len(boxes)), key=lambda b: first.get(b, 0))
    renumber = {old: new for new, old in enumerate(order)}
    boxes = [boxes[old] for old in order]
    unit = {name: renumber[b] for name, b in unit.items()}

    shapes = {INPUT: graph.input_shape, **{n: f.output_shape for n, f in figures.items()}}
    for f in analysis.layers:  # a split's values `s.0`, `s.1` leave the box of node `s`, each with its shape
        for value, shape in zip(output_values(f.node), f.output_shapes):
            unit.setdefault(value, unit[f.node.name])
            shapes.setdefault(value, shape)
    edges, seen = [], set()  # (source box, target box, the source node whose output it carries)
    for f in analysis.layers:
        for source in f.node.inputs:
            edge = (unit[source], unit[f.node.name], source)
            if edge[0] != edge[1] and edge not in seen:
                seen.add(edge)
                edges.append(edge)
    for k, out in enumerate(graph.outputs):
        name = "output" if len(graph.outputs) == 1 else f"output {k + 1}"
        boxes.append(_Box(name, "output", [(name, TITLE_SIZE, True)]))
        edges.append((unit[out], len(boxes) - 1, out))
    title = f"{graph.name}: {graph.meta['title']}" if graph.meta.get("title") else graph.name
    # Expanded, the blocks that --collapse would draw as one box are framed instead.
    frames = [(b.name, b.block, sorted({unit[n] for n in b.nodes})) for b in collapsed_instances(analysis)] \
        if not collapse else []
    return _scene(title, boxes, edges, shapes, frames)


def _kind(f) -> str:
    if f.node.layer.variadic:
        return "merge"
    return "weighted" if f.macs else "norm" if f.params else "plain"


def _box_size(box: _Box) -> tuple[float, float]:
    width = max(text_width(text, size) for text, size, _ in box.lines) + 2 * PAD_X
    height = sum(size * LINE for _, size, _ in box.lines) + 2 * PAD_Y
    return max(width, 60.0), height


def _label_size(text: str) -> tuple[float, float]:
    return text_width(text, LABEL_SIZE) + 8, LABEL_SIZE * LINE + 2


def _scene(title: str, boxes, edges, shapes, frames) -> Scene:
    labels = [shape_label(shapes[source]) for _, _, source in edges]
    placement = layered([_box_size(b) for b in boxes], [(u, v) for u, v, _ in edges],
                        [_label_size(t) for t in labels])
    groups = []
    for name, block, members in frames:  # first, so they lie behind the boxes and edges
        corners = [placement.boxes[m] for m in members]
        inside = set(members)  # its edges too: a skip connection runs inside its block's frame
        xs = [x for (u, v, _), points in zip(edges, placement.edges) if u in inside and v in inside for x, _ in points]
        left = min([c[0] for c in corners] + xs) - FRAME_PAD
        top = min(c[1] for c in corners) - FRAME_PAD
        right = max([c[0] + c[2] for c in corners] + xs) + FRAME_PAD
        bottom = max(c[1] + c[3] for c in corners) + FRAME_PAD
        groups.append(Group("block", {"name": name, "block": block},
                            (Rect(left, top, right - left, bottom - top, FRAME_FILL, FRAME_EDGE, 1.0, 8.0),)))
    for (u, v, _), text, points, (lx, ly) in zip(edges, labels, placement.edges, placement.labels):
        (x0, y0), (x1, y1) = points[-2], points[-1]
        length = max(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5, 1e-9)
        dx, dy = (x1 - x0) / length, (y1 - y0) / length
        base = (x1 - dx * ARROW, y1 - dy * ARROW)  # the line stops where the arrowhead starts
        head = ((x1, y1), (base[0] - dy * ARROW / 2, base[1] + dx * ARROW / 2),
                (base[0] + dy * ARROW / 2, base[1] - dx * ARROW / 2))
        w, h = _label_size(text)
        groups.append(Group("edge", {"from": f"n{u}", "to": f"n{v}", "shape": text}, (
            Line(tuple(points[:-1]) + (base,)), Polygon(head),
            Rect(lx - w / 2, ly - h / 2, w, h, "#ffffff", "#d0d7de", 1.0, h / 2),
            Text(lx, ly, text, LABEL_SIZE, color=LABEL_INK))))
    for k, (box, (left, top, width, height)) in enumerate(zip(boxes, placement.boxes)):
        shapes_ = [Rect(left, top, width, height, FILLS[box.kind], INK, 1.6 if box.kind == "block" else 1.0,
                        height / 2 if box.kind in ("input", "output") else 4.0)]
        y = top + PAD_Y
        for text, size, bold in box.lines:
            shapes_.append(Text(left + width / 2, y + size * LINE / 2, text, size, bold))
            y += size * LINE
        # a box's id, not its name, ties edges to it: a layer may be called "output" too
        attrs = {"id": f"n{k}", "name": box.name, "kind": box.kind, "params": box.params, "macs": box.macs}
        groups.append(Group("node", attrs, tuple(shapes_)))
    return Scene(placement.width, placement.height, title, tuple(groups))
