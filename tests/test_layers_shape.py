"""Shape and layout layers: reshape, unflatten, channel_shuffle, split, chunk, pad, crop.

Values: each spec is compiled, run on onnxruntime (CPU) and compared with PyTorch eager
(torch.reshape, nn.Unflatten, torchvision's shufflenetv2.channel_shuffle, torch.split and chunk,
F.pad) or, for crop, numpy slicing written from the definition (centred: the odd extra row or
column cut at the bottom or right). These layers only move values, so the match is exact.
Figures and receptive fields are worked out by hand in the comments; errors are asserted with
their file:line:col.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

import compiler.layers  # noqa: F401  (fills the registry)
from compiler.errors import SpecError
from compiler.lower import lower
from compiler.pipeline import analyse_text
from compiler.report import to_dict, to_table
from compiler.weights import seeded
from reference import import_torchvision

torch = pytest.importorskip("torch", reason="torch is the reference: `pip install torch==2.13.0`")
F = torch.nn.functional


def text(in_shape, *items: str) -> str:
    """Spec text: the input, then each item as YAML lines (indented under `layers:`)."""
    return f"input: {json.dumps(list(in_shape))}\nlayers:\n" + "".join(items)


def item(type_, args=None, name=None, inputs=None) -> str:
    lines = f"  - {type_}: {'null' if args is None else json.dumps(args)}\n"
    if name:
        lines += f"    name: {name}\n"
    if inputs is not None:
        lines += f"    inputs: {json.dumps(inputs)}\n"
    return lines


def run(spec_text: str, x: np.ndarray) -> dict:
    """onnxruntime's outputs, by name, for input x."""
    a = analyse_text(spec_text, "t.yaml")
    model = lower(a, seeded(a)).to_model()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"input": x})))


def randx(*shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, *shape)).astype(np.float32)


def the_only(outputs: dict) -> np.ndarray:
    (value,) = outputs.values()
    return value


# -- values against torch ------------------------------------------------------------------------

@pytest.mark.parametrize("in_shape, shape", [
    ((3, 4, 4), [-1]), ((3, 4, 4), [6, 2, 4]), ((3, 4, 4), [6, -1, 4]), ((48,), [3, 4, -1]),
    ((2, 3, 5), [5, 3, 2]),
])
def test_reshape_matches_torch(in_shape, shape):
    x = randx(*in_shape)
    got = the_only(run(text(in_shape, item("reshape", shape)), x))
    np.testing.assert_array_equal(got, torch.reshape(torch.from_numpy(x), (2, *shape)).numpy())


@pytest.mark.parametrize("args, torch_shape", [(None, (12, 1, 1)), ({"shape": [3, 2, 2]}, (3, 2, 2)),
                                                ({"shape": [-1, 1, 4]}, (3, 1, 4))])
def test_unflatten_after_dense_matches_torch(args, torch_shape):
    x = randx(12)
    got = the_only(run(text((12,), item("unflatten", args)), x))
    np.testing.assert_array_equal(got, torch.nn.Unflatten(1, torch_shape)(torch.from_numpy(x)).numpy())


def _torchvision_channel_shuffle():
    return import_torchvision().models.shufflenetv2.channel_shuffle


@pytest.mark.parametrize("channels, groups", [(6, 2), (6, 3), (12, 4), (5, 1)])
def test_channel_shuffle_interleaves_the_groups(channels, groups):
    """ShuffleNet's definition: channel i of group g (input channel g * C/groups + i) becomes
    output channel i * groups + g."""
    x = randx(channels, 2, 3)
    got = the_only(run(text((channels, 2, 3), item("channel_shuffle", groups)), x))
    per_group = channels // groups
    for g in range(groups):
        for i in range(per_group):
            np.testing.assert_array_equal(got[:, i * groups + g], x[:, g * per_group + i])


@pytest.mark.slow  # importing torchvision takes seconds
@pytest.mark.parametrize("in_shape, groups", [((6, 3, 5), 2), ((6, 4, 4), 3), ((12, 2, 3), 4), ((5, 2, 2), 1)])
def test_channel_shuffle_matches_torchvision(in_shape, groups):
    x = randx(*in_shape)
    got = the_only(run(text(in_shape, item("channel_shuffle", groups)), x))
    want = _torchvision_channel_shuffle()(torch.from_numpy(x), groups).numpy()
    np.testing.assert_array_equal(got, want)
    if groups > 1:
        assert not np.array_equal(got, x)  # it did move the channels


@pytest.mark.parametrize("in_shape, sizes", [((8, 3, 3), [2, 6]), ((7, 2, 5), [1, 4, 2]), ((10,), [3, 7])])
def test_split_matches_torch(in_shape, sizes):
    x = randx(*in_shape)
    got = run(text(in_shape, item("split", sizes, name="s")), x)
    want = torch.split(torch.from_numpy(x), sizes, dim=1)
    assert list(got) == [f"s.{k}" for k in range(len(sizes))]
    for k, part in enumerate(want):
        np.testing.assert_array_equal(got[f"s.{k}"], part.numpy())


@pytest.mark.parametrize("channels, chunks", [(8, 2), (10, 3), (7, 4), (5, 5)])
def test_chunk_matches_torch(channels, chunks):
    x = randx(channels, 2, 3)
    got = run(text((channels, 2, 3), item("chunk", chunks, name="c")), x)
    want = torch.chunk(torch.from_numpy(x), chunks, dim=1)
    assert len(want) == chunks and list(got) == [f"c.{k}" for k in range(chunks)]
    for k, part in enumerate(want):
        np.testing.assert_array_equal(got[f"c.{k}"], part.numpy())


@pytest.mark.slow  # importing torchvision takes seconds
def test_chunk_feeds_later_layers_by_name():
    """ShuffleNet v2's stride-1 unit: x1, x2 = x.chunk(2); concat(x1, branch2(x2)); channel_shuffle."""
    spec = text((8, 4, 4), item("chunk", 2, name="c"), item("relu", name="r", inputs="c.1"),
                item("concat", name="cat", inputs=["c.0", "r"]), item("channel_shuffle", 2))
    x = randx(8, 4, 4)
    x1, x2 = torch.from_numpy(x).chunk(2, dim=1)
    want = _torchvision_channel_shuffle()(torch.cat([x1, F.relu(x2)], dim=1), 2).numpy()
    np.testing.assert_array_equal(the_only(run(spec, x)), want)


@pytest.mark.parametrize("args, torch_pad, mode, value", [
    (1, (1, 1, 1, 1), "constant", 0.0),
    ({"padding": [1, 2]}, (2, 2, 1, 1), "constant", 0.0),  # [h, w]: F.pad lists the last axis first
    ({"padding": [1, 2, 0, 3], "value": -1.5}, (2, 3, 1, 0), "constant", -1.5),  # [top, left, bottom, right]
    ({"padding": [2, 1, 3, 4], "mode": "reflect"}, (1, 4, 2, 3), "reflect", None),
    ({"padding": 3, "mode": "replicate"}, (3, 3, 3, 3), "replicate", None),
    ({"padding": [0, 5, 6, 0], "mode": "replicate"}, (5, 0, 0, 6), "replicate", None),  # wider than the map
])
def test_pad_matches_torch(args, torch_pad, mode, value):
    x = randx(3, 4, 5)
    got = the_only(run(text((3, 4, 5), item("pad", args)), x))
    want = F.pad(torch.from_numpy(x), torch_pad, mode=mode, **({"value": value} if value is not None else {}))
    np.testing.assert_array_equal(got, want.numpy())


@pytest.mark.parametrize("in_shape, args, rows, cols", [
    ((2, 8, 8), {"size": [4, 4]}, (2, 6), (2, 6)),  # centred: (8 - 4) / 2 = 2
    ((2, 7, 8), {"size": [4, 5]}, (1, 5), (1, 6)),  # odd: floor(3/2) = 1 above, 2 below
    ((2, 9, 6), {"size": 3, "offset": [5, 0]}, (5, 8), (0, 3)),
    ((1, 5, 5), {"size": [5, 5]}, (0, 5), (0, 5)),
])
def test_crop_matches_slicing(in_shape, args, rows, cols):
    x = randx(*in_shape)
    got = the_only(run(text(in_shape, item("crop", args)), x))
    np.testing.assert_array_equal(got, x[:, :, rows[0]:rows[1], cols[0]:cols[1]])


def test_crop_to_a_second_input_as_unet_copies_and_crops():
    """U-Net: the 64x64 encoder map cropped centrally to the 56x56 up-convolved map, then joined:
    (64 - 56) / 2 = 4 rows and columns cut on each side."""
    spec = text((2, 64, 64),
                item("conv", {"filters": 3, "kernel": 9, "bias": False}, name="deep"),  # 64 - 8 = 56
                item("crop", None, name="skip", inputs=["input", "deep"]),
                item("concat", name="t", inputs=["skip", "deep"]))
    a = analyse_text(spec, "t.yaml")
    assert a.output_shapes == ((5, 56, 56),)
    x = randx(2, 64, 64)
    got = the_only(run(spec, x))
    np.testing.assert_array_equal(got[:, :2], x[:, :, 4:60, 4:60])


# -- figures and receptive fields -----------------------------------------------------------------

def figures(spec_text, name):
    return next(f for f in analyse_text(spec_text, "t.yaml").layers if f.node.name == name)


@pytest.mark.parametrize("type_, args, in_shape", [
    ("reshape", [-1], (3, 4, 4)), ("unflatten", None, (6,)), ("channel_shuffle", 2, (4, 3, 3)),
    ("split", [1, 3], (4, 3, 3)), ("chunk", 2, (4, 3, 3)), ("pad", 2, (4, 3, 3)),
    ("crop", {"size": 2}, (4, 3, 3)),
])
def test_no_params_macs_or_flops(type_, args, in_shape):
    f = figures(text(in_shape, item(type_, args, name="t")), "t")
    assert (f.params, f.macs, f.flops) == (0, 0, 0)


def test_split_reports_each_output():
    a = analyse_text(text((8, 3, 3), item("split", [2, 6], name="s")), "t.yaml")
    f = a.layers[0]
    assert f.output_shapes == ((2, 3, 3), (6, 3, 3)) and f.output_shape == (8, 3, 3)
    assert a.graph.outputs == ("s.0", "s.1") and a.output_shapes == ((2, 3, 3), (6, 3, 3))
    row = to_dict(a)["layers"][0]
    assert row["output_shapes"] == [[2, 3, 3], [6, 3, 3]] and row["output_shape"] == [8, 3, 3]
    assert "[2, 3, 3] + [6, 3, 3]" in to_table(a)


def test_receptive_fields_of_pad_and_crop():
    # a 3x3 conv after pad 1: the first output is centred on input pixel -1 + 1 = 0, size 3;
    # after crop at offset 2 (and a 3x3 conv): centred on 2 + 1 = 3
    spec = text((1, 8, 8), item("pad", [1, 2, 1, 2], name="p"), item("conv", {"filters": 1, "kernel": 3}, name="c"),
                item("crop", {"size": 4, "offset": [2, 1]}, name="k"), item("conv", {"filters": 1, "kernel": 3},
                                                                            name="c2"))
    rf = {n: figures(spec, n).receptive_field for n in ("p", "c", "k", "c2")}
    assert (rf["p"].size, rf["p"].start) == ((1, 1), (-1.0, -2.0))
    assert (rf["c"].size, rf["c"].start) == ((3, 3), (0.0, -1.0))
    # crop keeps rows 2.. of c: their centres are 2 + 0 and 1 - 1 on the input
    assert (rf["k"].size, rf["k"].start) == ((3, 3), (2.0, 0.0))
    assert (rf["c2"].size, rf["c2"].jump, rf["c2"].start) == ((5, 5), (1, 1), (3.0, 1.0))


def test_crop_like_takes_its_field_from_the_first_input_only():
    # the second input (a 5x5 conv's output) gives the size, not a union of fields
    spec = text((1, 9, 9), item("conv", {"filters": 1, "kernel": 5}, name="deep"),
                item("crop", None, name="t", inputs=["input", "deep"]))
    rf = figures(spec, "t").receptive_field
    assert (rf.size, rf.start) == ((1, 1), (2.0, 2.0))  # (9 - 5) / 2 = 2


def test_reshape_that_keeps_the_map_is_pointwise_and_one_that_moves_it_covers_it():
    moved = figures(text((4, 5, 6), item("reshape", [2, -1, 6], name="t")), "t")  # [2, 10, 6]: rows move
    kept = figures(text((4, 5, 6), item("reshape", [4, 5, -1], name="t")), "t")
    assert moved.receptive_field.size == (5, 6) and kept.receptive_field.size == (1, 1)


# -- wiring of several outputs --------------------------------------------------------------------

def test_a_block_ending_in_a_split_is_addressed_as_block_dot_k():
    spec = """input: [6, 4, 4]
blocks:
  halves:
    layers:
      - relu
      - chunk: 2
        name: parts
layers:
  - halves:
    name: h
  - add:
    inputs: [h.1, h.0]
"""
    a = analyse_text(spec, "t.yaml")
    assert a.layers[-1].node.inputs == ("h.parts.1", "h.parts.0")
    assert a.output_shapes == ((3, 4, 4),)


def test_listed_outputs_by_bare_name_give_every_part():
    spec = text((6, 4, 4), item("split", [1, 5], name="s"), item("relu", name="r", inputs="s.1")) + "outputs: [s, r]\n"
    assert analyse_text(spec, "t.yaml").graph.outputs == ("s.0", "s.1", "r")


ERRORS = [
    # (items, message with its line:col)
    (item("split", [2, 6], name="s") + item("relu", inputs="s.5"),
     "t.yaml:6:13: error: layer 'relu1': 's.5' names output 5 of 's', which has 2 outputs: s.0, s.1"),
    (item("split", [2, 6], name="s") + item("relu", inputs="s"),
     "t.yaml:6:13: error: layer 'relu1': 's' has 2 outputs; name the one this layer takes in `inputs:` (s.0, s.1)"),
    (item("split", [2, 6], name="s") + item("relu"),  # wired by default: the message points at the relu
     "t.yaml:5:5: error: layer 'relu1': 's' has 2 outputs; name the one this layer takes in `inputs:` (s.0, s.1)"),
    (item("chunk", 4, name="s") + item("concat", inputs=["s.0", "s.1", "s.2", "s.3", "s.4"]),
     "t.yaml:6:42: error: layer 'concat1': 's.4' names output 4 of 's', which has 4 outputs: s.0, s.1, s.2 ... s.3"),
    (item("relu", name="r") + item("relu", inputs="r.0"),
     "t.yaml:6:13: error: layer 'relu1': 'r.0' names output 0 of 'r', which has one output; write 'r'"),
    (item("split", [2, 6], name="s") + item("relu", name="s.1"),
     "t.yaml:5:5: error: layer 's.1': the name 's.1' is taken by output 1 of 's', which has 2 outputs; "
     "rename the layer"),
    (item("relu", inputs="x.0"), "t.yaml:4:13: error: layer 'relu1': undefined name 'x.0'; the names here are: input, relu1"),
    (item("split", [2, 5]), "t.yaml:3:5: error: layer 'split1': the sizes [2, 5] add up to 7, but the input has 8; "
     "make them add up to 8"),
    (item("split", [8]), "t.yaml:3:5: error: layer 'split1': argument 'sizes' of split must be a list of 2 to "
     "1,024 positive integers; got [8]"),
    (item("chunk", 5), "t.yaml:3:12: error: layer 'chunk1': 8 channels do not make 5 chunks of ceil(8/5) = 2: "
     "the last would be empty; use split with explicit sizes"),
    (item("channel_shuffle", {"groups": 3}), "t.yaml:3:33: error: layer 'channel_shuffle1': 8 channels do not "
     "split into 3 equal groups; use a number of groups that divides the channels"),
    (item("pad", {"padding": 6, "mode": "reflect"}), "t.yaml:3:22: error: layer 'pad1': reflect padding 6 must be "
     "less than the input height 6 (PyTorch's rule: a mirror reads inside the map); pad less, or use mode "
     "replicate or constant"),
    (item("pad", {"padding": 1, "mode": "replicate", "value": 2}), "t.yaml:3:55: error: layer 'pad1': value "
     "applies to mode constant only; remove it, or use mode constant"),
    (item("crop", {"size": [7, 2]}), "t.yaml:3:20: error: layer 'crop1': the crop height 7 is more than the input "
     "height 6; crop to at most 6, or pad instead"),
    (item("crop", {"size": 3, "offset": [4, 0]}), "t.yaml:3:33: error: layer 'crop1': offset 4 plus the crop "
     "height 3 passes the input height 6; use an offset of at most 3"),
    (item("crop"), "t.yaml:3:5: error: layer 'crop1': crop needs size: [h, w], or a second input to take the size "
     "from (inputs: [map, like])"),
    (item("crop", {"size": 2}, inputs=["input", "input"]), "t.yaml:3:20: error: layer 'crop1': crop takes its "
     "size from its second input or from size, not both; remove size, or the second input (inputs: #1 'input' "
     "[8, 6, 6], #2 'input' [8, 6, 6])"),
    (item("crop", inputs=["input", "input", "input"]), "t.yaml:3:5: error: layer 'crop1': crop takes one input, "
     "or two where the second is the map whose height and width it crops to; got 3 (input, input, input)"),
    (item("reshape", [5, -1, 2]), "t.yaml:3:5: error: layer 'reshape1': the input [8, 6, 6] holds 288 values, "
     "which the sizes [5, -1, 2] cannot hold: 288 is not a multiple of 10"),
    (item("reshape", {"shape": [8, 6, 5]}), "t.yaml:3:24: error: layer 'reshape1': shape [8, 6, 5] holds 240 "
     "values but the input [8, 6, 6] holds 288; the sizes must multiply to the same count (a -1 works one out)"),
    (item("reshape", [-1, -1, 2]), "t.yaml:3:5: error: layer 'reshape1': shape [-1, -1, 2] has more than one -1; "
     "only one size can be worked out"),
    (item("reshape", [144, 2]), "t.yaml:3:5: error: layer 'reshape1': reshape shape [144, 2] has two axes; a "
     "shape is [features] or [C, H, W]"),
    (item("reshape", [0, -1]), "t.yaml:3:15: error: layer 'reshape1': argument 'shape' of reshape must be a shape "
     "without the batch, [features] or [C, H, W], of positive integers and at most one -1; got [0, -1]"),
    (item("unflatten"), "t.yaml:3:5: error: layer 'unflatten1': unflatten takes a [features] input, got [8, 6, 6]; "
     "use reshape for a [C, H, W] one"),
]


@pytest.mark.parametrize("items, message", ERRORS, ids=[m.split("error: ")[1][:40] for _, m in ERRORS])
def test_errors_are_located_and_say_what_to_change(items, message):
    with pytest.raises(SpecError) as e:
        analyse_text(text((8, 6, 6), items), "t.yaml")
    assert str(e.value) == message


# -- the 2015 U-Net against a PyTorch one written from the paper ------------------------------------

class TorchUNet(torch.nn.Module):
    """Ronneberger et al. 2015, Figure 1, with the spec's names as its state_dict keys."""

    def __init__(self):
        super().__init__()
        nn = torch.nn

        def double(cin, c):
            return nn.ModuleDict({"conv1": nn.Conv2d(cin, c, 3), "conv2": nn.Conv2d(c, c, 3)})

        widths = [64, 128, 256, 512, 1024]
        for level, (cin, c) in enumerate(zip([1] + widths[:3], widths[:4]), 1):
            self.add_module(f"down{level}", double(cin, c))
        self.bottom = double(512, 1024)
        for level, c in enumerate([512, 256, 128, 64], 1):
            self.add_module(f"up{level}", nn.ModuleDict({"up": nn.ConvTranspose2d(2 * c, c, 2, 2),
                                                         "conv": double(2 * c, c)}))
        self.out = nn.Conv2d(64, 2, 1)

    @staticmethod
    def twice(block, x):
        return F.relu(block["conv2"](F.relu(block["conv1"](x))))

    def forward(self, x):
        skips = []
        for level in range(1, 5):
            x = self.twice(getattr(self, f"down{level}"), x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.twice(self.bottom, x)
        for level in range(1, 5):
            step, skip = getattr(self, f"up{level}"), skips[-level]
            x = step["up"](x)
            top, left = (skip.shape[2] - x.shape[2]) // 2, (skip.shape[3] - x.shape[3]) // 2
            skip = skip[:, :, top:top + x.shape[2], left:left + x.shape[3]]
            x = self.twice(step["conv"], torch.cat([skip, x], dim=1))
        return self.out(x)


@pytest.mark.slow  # 31 M weights, twice
def test_unet_spec_matches_a_torch_unet(tmp_path):
    """The bundled spec on a 188x188 tile (the smallest that the paper's crops allow: 4x4 out),
    with the torch model's weights loaded by name."""
    from compiler.pipeline import analyse
    from compiler.weights import imported

    (tmp_path / "small.yaml").write_text("extends: unet\nname: small\ninput: [1, 188, 188]\n")
    a = analyse(str(tmp_path / "small.yaml"))
    assert a.output_shapes == ((2, 4, 4),)
    torch.manual_seed(0)
    model = TorchUNet().eval()
    assert sum(p.numel() for p in model.parameters()) == a.params == 31_030_658
    arrays = {k: v.numpy() for k, v in model.state_dict().items()}
    onnx_model = lower(a, imported(a, arrays, "torch")).to_model()
    x = randx(1, 188, 188)
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["out"], {"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
