"""`convspec diagram`: the SVG is parsed back and checked as a picture (every layer a box, no two
boxes overlapping, every edge running down from its source's bottom to its target's top, the
shapes on the edges); the PNG is the same picture, read back with Pillow. Shapes, block counts
and totals are checked against figures from outside the project: hand arithmetic, the papers'
block counts, torchvision's modules and the reference figures."""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from clirun import ROOT, run_cli
from compiler.layout import layered
from reference import REFERENCE, import_torchvision

SVG = "{http://www.w3.org/2000/svg}"

# A residual block used twice, a branch that merges, and names XML must escape in the title.
RESIDUAL = """\
name: tiny
title: 'a <b> & "c"'
input: [3, 32, 32]
blocks:
  res:
    args: {filters: null}
    layers:
      - conv: {filters: $filters, kernel: 3, padding: 1}
        name: conv1
      - relu
      - conv: {filters: $filters, kernel: 3, padding: 1}
        name: conv2
      - add:
        inputs: [input, conv2]
layers:
  - conv: {filters: 16, kernel: 3, padding: 1}
    name: stem
  - res: {filters: 16}
    name: block1
  - res: {filters: 16}
    name: block2
  - maxpool: 2
    name: pool
  - flatten
  - dense: 10
    name: fc
"""
# By hand: 3x3 convs with padding 1 keep 32x32; the 2x2 pool halves it; 16*16*16 = 4096 features.
HAND_SHAPES = {"stem": "16x32x32", "block1.conv1": "16x32x32", "block1.add1": "16x32x32", "pool": "16x16x16",
               "flatten1": "4096", "fc": "10", "<input>": "3x32x32"}


def parse(path: Path):
    """(svg root, {name: (left, top, right, bottom)}, [(from, to, shape, points, tip)]); the terminals
    are named <input> and <output> here (a layer may be called output: lenet5's is)."""
    root = ET.parse(path).getroot()
    boxes, edges, names = {}, [], {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            r = g.find(f"{SVG}rect")
            left, top = float(r.get("x")), float(r.get("y"))
            name = box_name(g)
            assert name not in boxes
            names[g.get("data-id")] = name
            boxes[name] = (left, top, left + float(r.get("width")), top + float(r.get("height")))
            assert g.get("data-name") in "".join(t.text for t in g.iter(f"{SVG}text"))  # the name is on the box
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "edge":
            points = [tuple(map(float, p.split(","))) for p in g.find(f"{SVG}polyline").get("points").split()]
            tip = tuple(map(float, g.find(f"{SVG}polygon").get("points").split()[0].split(",")))
            label = "".join(t.text for t in g.iter(f"{SVG}text"))
            assert label == g.get("data-shape")  # the shape is written on the edge, not only in an attribute
            edges.append((names[g.get("data-from")], names[g.get("data-to")], label, points, tip))
    return root, boxes, edges


def box_name(g) -> str:
    return f"<{g.get('data-name')}>" if g.get("data-kind") in ("input", "output") else g.get("data-name")


def assert_drawing(boxes, edges):
    names = list(boxes)
    for i, a in enumerate(names):  # no two boxes overlap
        for b in names[i + 1:]:
            (l1, t1, r1, b1), (l2, t2, r2, b2) = boxes[a], boxes[b]
            assert r1 <= l2 or r2 <= l1 or b1 <= t2 or b2 <= t1, f"{a} overlaps {b}"
    for source, target, _, points, tip in edges:  # from a bottom, down, into a top (the SVG rounds to 0.1)
        left, _, right, bottom = boxes[source]
        assert points[0][1] == pytest.approx(bottom, abs=0.15) and left <= points[0][0] <= right, (source, target)
        t_left, t_top, t_right, _ = boxes[target]
        assert tip[1] == pytest.approx(t_top, abs=0.15) and t_left <= tip[0] <= t_right, (source, target)
        ys = [y for _, y in points] + [tip[1]]
        assert ys == sorted(ys), f"{source} -> {target} goes up"


def draw(tmp_path, spec: str, name: str, *flags) -> Path:
    out = tmp_path / name
    result = run_cli(tmp_path, "diagram", spec, "-o", str(out), *flags)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}")
    return out


def test_every_layer_is_a_box_and_every_edge_runs_down_with_its_shape(tmp_path):
    (tmp_path / "tiny.yaml").write_text(RESIDUAL)
    root, boxes, edges = parse(draw(tmp_path, "tiny.yaml", "tiny.svg"))
    layers = {"stem", "block1.conv1", "block1.relu1", "block1.conv2", "block1.add1",
              "block2.conv1", "block2.relu1", "block2.conv2", "block2.add1", "pool", "flatten1", "fc"}
    assert set(boxes) == layers | {"<input>", "<output>"}
    assert_drawing(boxes, edges)
    shape_from = {source: shape for source, _, shape, _, _ in edges}
    for name, shape in HAND_SHAPES.items():
        assert shape_from[name] == shape, name
    pairs = {(s, t) for s, t, *_ in edges}
    assert {("stem", "block1.conv1"), ("stem", "block1.add1"), ("block1.conv2", "block1.add1")} <= pairs  # the skip
    assert len(edges) == 15  # 12 layers' inputs, the two merges' second inputs, and the output
    assert root.find(f"{SVG}title").text == 'tiny: a <b> & "c"'  # escaped, so the file parses at all


def test_collapsed_blocks_are_one_box_each_with_their_totals(tmp_path):
    (tmp_path / "tiny.yaml").write_text(RESIDUAL)
    root, boxes, edges = parse(draw(tmp_path, "tiny.yaml", "tiny.svg", "--collapse"))
    assert set(boxes) == {"<input>", "stem", "block1", "block2", "pool", "flatten1", "fc", "<output>"}
    assert_drawing(boxes, edges)
    block1 = next(g for g in root.iter(f"{SVG}g") if g.get("data-name") == "block1")
    assert int(block1.get("data-params")) == 2 * (3 * 3 * 16 * 16 + 16)  # two 3x3 convs, 16 -> 16, with bias
    assert int(block1.get("data-macs")) == 2 * (32 * 32 * 16 * 3 * 3 * 16)
    assert [t.text for t in block1.iter(f"{SVG}text")][:2] == ["block1", "res · 4 layers"]  # what it is, what it holds
    assert {(s, t, shape) for s, t, shape, *_ in edges if s == "block1"} == {("block1", "block2", "16x32x32")}


@pytest.mark.parametrize("spec, blocks", [
    # the papers' counts: nine Inception modules (and torchvision's conv-bn-relu stem as three blocks);
    # ResNet-50's 3 + 4 + 6 + 3 bottlenecks; DenseNet-121's four dense blocks and three transitions
    ("googlenet", ["conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b",
                   "inception4c", "inception4d", "inception4e", "inception5a", "inception5b"]),
    ("resnet50", [f"layer{s + 1}.{i}" for s, n in enumerate((3, 4, 6, 3)) for i in range(n)]),
    ("densenet121", [f"features.denseblock{i}" for i in range(1, 5)] + [f"features.transition{i}" for i in range(1, 4)]),
])
def test_collapse_draws_the_block_instances_of_the_bundled_networks(tmp_path, spec, blocks):
    root, boxes, edges = parse(draw(tmp_path, spec, f"{spec}.svg", "--collapse"))
    drawn = {g.get("data-name"): g for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    assert sorted(n for n, g in drawn.items() if g.get("data-kind") == "block") == sorted(blocks)
    assert_drawing(boxes, edges)
    ref = REFERENCE[spec]  # every layer is counted once, in its block's box or its own
    assert sum(int(g.get("data-params")) for g in drawn.values()) == ref["params_trainable"] + ref["params_non_trainable"]
    assert sum(int(g.get("data-macs")) for g in drawn.values()) == ref["macs"]
    assert [s for s, t, *_ in edges if t == "<output>"] and boxes["<output>"][1] == max(b[1] for b in boxes.values())


@pytest.mark.slow  # importing torch takes seconds
def test_a_collapsed_box_holds_what_torchvision_s_module_holds(tmp_path):
    torchvision = import_torchvision()
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    root, _, _ = parse(draw(tmp_path, "googlenet", "g.svg", "--collapse"))
    for g in root.iter(f"{SVG}g"):
        if g.get("data-kind") == "block":
            module = model.get_submodule(g.get("data-name"))
            count = sum(p.numel() for p in module.parameters())
            count += sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked"))
            assert int(g.get("data-params")) == count, g.get("data-name")


def test_expanded_blocks_are_framed_around_their_layers_only(tmp_path):
    root, boxes, _ = parse(draw(tmp_path, "resnet50", "r.svg"))
    frames = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "block":
            r = g.find(f"{SVG}rect")
            left, top = float(r.get("x")), float(r.get("y"))
            frames[g.get("data-name")] = (left, top, left + float(r.get("width")), top + float(r.get("height")))
            assert g.get("data-block") == "bottleneck"
    assert sorted(frames) == sorted(f"layer{s + 1}.{i}" for s, n in enumerate((3, 4, 6, 3)) for i in range(n))
    for name, (left, top, right, bottom) in frames.items():
        for box, (l2, t2, r2, b2) in boxes.items():
            inside = left <= l2 and r2 <= right and top <= t2 and b2 <= bottom
            apart = right <= l2 or r2 <= left or bottom <= t2 or b2 <= top
            assert inside if box.startswith(name + ".") else apart, (name, box)


def test_googlenet_expanded_shows_branches_and_merges(tmp_path):
    _, boxes, edges = parse(draw(tmp_path, "googlenet", "g.svg"))
    assert len(boxes) == 197 + 2
    assert_drawing(boxes, edges)
    into = {}
    for source, target, shape, _, _ in edges:
        into.setdefault(target, []).append((source, shape))
    # torchvision's inception3a: 64 + 128 + 32 + 32 channels at 28x28 are concatenated into 256
    assert sorted(shape for _, shape in into["inception3a.concat1"]) == \
        ["128x28x28", "32x28x28", "32x28x28", "64x28x28"]
    assert {shape for source, shape in edges_from(edges, "maxpool2")} == {"192x28x28"}
    assert len(edges_from(edges, "maxpool2")) == 4  # the four branches
    # the four branches sit side by side, their first layers in one row, left to right
    firsts = [boxes[n] for n in ("inception3a.branch1.conv", "inception3a.branch2.0.conv",
                                 "inception3a.branch3.0.conv", "inception3a.branch4.0")]
    assert len({top for _, top, _, _ in firsts}) == 1
    assert all(a[2] <= b[0] for a, b in zip(firsts, firsts[1:]))


def edges_from(edges, name):
    return [(t, shape) for s, t, shape, _, _ in edges if s == name]


def test_the_png_is_the_same_picture(tmp_path):
    from PIL import Image

    (tmp_path / "tiny.yaml").write_text(RESIDUAL)
    root, boxes, _ = parse(draw(tmp_path, "tiny.yaml", "tiny.svg", "--collapse"))
    png = draw(tmp_path, "tiny.yaml", "tiny.png", "--collapse")
    with Image.open(png) as image:
        assert image.format == "PNG"
        width, height = float(root.get("width")), float(root.get("height"))
        assert image.size == (math.ceil(width), math.ceil(height))
        pixels = image.convert("RGB")
        fills = {box_name(g): g.find(f"{SVG}rect").get("fill") for g in root.iter(f"{SVG}g")
                 if g.get("class") == "node"}
        for name, (left, top, right, bottom) in boxes.items():  # inside each box, left of its text: its fill
            colour = "#%02x%02x%02x" % pixels.getpixel((int(left) + 7, int((top + bottom) / 2)))
            assert colour == fills[name], name


def test_errors_are_one_line_with_the_exit_codes_of_design_md(tmp_path):
    (tmp_path / "tiny.yaml").write_text(RESIDUAL)
    (tmp_path / "a_file").write_text("")
    (tmp_path / "taken.svg").write_text("mine")
    cases = [
        (["-o", "net.jpg"], 2, "end it with .svg or .png"),
        (["-o", "net"], 2, "end it with .svg or .png"),
        (["-o", "a_file/net.svg"], 2, "is a file, not a folder"),
        (["-o", "taken.svg"], 2, "exists; pass --force"),
        (["-o", "sub/"], 2, "names a folder"),
        (["-o", "x.svg", "--collapse", "--expand"], 2, "not allowed with"),
    ]
    for args, code, words in cases:
        result = run_cli(tmp_path, "diagram", "tiny.yaml", *args)
        assert result.returncode == code and words in result.stderr, (args, result.stderr)
    assert (tmp_path / "taken.svg").read_text() == "mine"
    (tmp_path / "bad.yaml").write_text(RESIDUAL.replace("kernel: 3, padding: 1}\n    name: stem", "kernel: 64}\n    name: stem"))
    result = run_cli(tmp_path, "diagram", "bad.yaml", "-o", "bad.svg")
    assert result.returncode == 1 and "bad.yaml:" in result.stderr and "stem" in result.stderr
    assert not (tmp_path / "bad.svg").exists()
    assert run_cli(tmp_path, "diagram", "tiny.yaml", "-o", "taken.svg", "--force").returncode == 0


def test_a_png_without_pillow_is_refused_before_the_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL raises ImportError
    monkeypatch.setitem(sys.modules, "PIL.ImageDraw", None)
    result = run_cli(tmp_path, "diagram", "lenet5", "-o", "net.png")
    assert result.returncode == 2 and "needs Pillow" in result.stderr and "pip install pillow" in result.stderr
    assert run_cli(tmp_path, "diagram", "lenet5", "-o", "net.svg").returncode == 0  # SVG needs nothing


def test_diagram_imports_neither_onnx_nor_onnxruntime(tmp_path):
    code = ("import sys, cli; code = cli.main(['diagram', 'lenet5', '-o', 'n.svg']); "
            "print(code, sorted(m for m in ('onnx', 'onnxruntime', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.split("\n")[-2] == "0 []", out.stderr


# -- the layout on its own ---------------------------------------------------------------------
def test_layout_of_a_diamond_with_a_long_edge():
    # 0 -> 1 -> 2 -> 3 and 0 -> 3: the long edge goes round the chain, the chain stays straight
    sizes = [(80.0, 30.0)] * 4
    edges = [(0, 1), (1, 2), (2, 3), (0, 3)]
    p = layered(sizes, edges, [(40.0, 14.0)] * 4)
    centres = [left + w / 2 for left, _, w, _ in p.boxes]
    assert centres[0] == pytest.approx(centres[1]) == pytest.approx(centres[2]) == pytest.approx(centres[3])
    tops = [top for _, top, _, _ in p.boxes]
    assert tops == sorted(tops) and len(set(tops)) == 4
    long = p.edges[3]
    assert all(x > centres[1] + 40 for x, _ in long[1:-1])  # beside the boxes it passes, not through them
    assert p.width >= max(left + w for left, _, w, _ in p.boxes) and p.height >= max(t + h for _, t, _, h in p.boxes)


def test_layout_refuses_a_cycle():
    with pytest.raises(ValueError, match="cycle"):
        layered([(10.0, 10.0)] * 2, [(0, 1), (1, 0)], [(5.0, 5.0)] * 2)


@pytest.mark.slow  # every bundled spec, both ways: about 10 s
def test_every_bundled_spec_draws_cleanly_both_ways(tmp_path):
    from compiler.zoo import bundled

    for path in bundled():
        for flags in ((), ("--collapse",)):
            _, boxes, edges = parse(draw(tmp_path, str(path), f"{path.stem}{len(flags)}.svg", *flags))
            assert_drawing(boxes, edges)


def _segments_cross(p, q, r, s) -> bool:
    def side(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    return side(p, q, r) * side(p, q, s) < 0 and side(r, s, p) * side(r, s, q) < 0


def test_layout_undoes_crossings_that_the_numbering_would_make():
    # 0 fans out to 1 and 2; 1 feeds 4 and 2 feeds 3: in the numbering's order the two edges cross
    sizes = [(60.0, 20.0)] * 5
    edges = [(0, 1), (0, 2), (2, 3), (1, 4)]
    p = layered(sizes, edges, [(30.0, 12.0)] * 4)
    segments = [(a, b) for line in p.edges for a, b in zip(line, line[1:])]
    assert not any(_segments_cross(*s, *t) for i, s in enumerate(segments) for t in segments[i + 1:])
    left = {k: p.boxes[k][0] for k in range(5)}
    assert (left[1] < left[2]) == (left[4] < left[3])
