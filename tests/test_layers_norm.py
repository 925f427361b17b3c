"""The normalisation and regularisation layers of ConvNeXt's era against PyTorch.

Each layer type is compiled from a tiny spec, given random weights by name (torch modules'
state_dict keys), run on onnxruntime's CPU provider and compared with torch eager:
  - layernorm: torchvision's LayerNorm2d (ConvNeXt's: nn.LayerNorm over the channels of each
    pixel) for a [C, H, W] map, F.layer_norm for a [F] vector;
  - groupnorm: nn.GroupNorm; instancenorm: nn.InstanceNorm2d (eval, running statistics or not);
  - dense with per_pixel: nn.Linear on channels-last data;
  - layer_scale and stochastic_depth: inside torchvision's own CNBlock, loaded from its state_dict.
Parameter counts are the torch modules'. Errors are checked for their file:line:col and advice.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from clirun import run_cli
from compiler.errors import SpecError
from compiler.lower import lower
from compiler.pipeline import analyse_text
from compiler.weights import imported
from reference import import_torchvision

torch = pytest.importorskip("torch", reason="torch is not installed: `pip install torch==2.13.0` runs these")
F = torch.nn.functional


def torchvision():
    return import_torchvision()


def spec(in_shape, *layers) -> str:
    """A spec whose layers are (type, args[, name]); the last is named `t` unless named."""
    lines = [f"input: {json.dumps(list(in_shape))}", "layers:"]
    for i, layer in enumerate(layers):
        name = layer[2] if len(layer) > 2 else ("t" if i == len(layers) - 1 else f"l{i}")
        lines += [f"  - {layer[0]}: {json.dumps(layer[1])}", f"    name: {name}"]
    return "\n".join(lines) + "\n"


def run(text: str, state: dict, x) -> tuple:
    """Compile with the arrays of `state` (a torch state_dict), run on onnxruntime; (output, analysis)."""
    a = analyse_text(text, "t.yaml")
    arrays = {k: v.detach().numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    model = lower(a, imported(a, arrays, "torch")).to_model()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0], a


def perturbed(module, seed=0):
    """The module in eval mode with every parameter and buffer drawn at random (scales around 1,
    variances positive), so a weight in the wrong place shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if tensor.dtype.is_floating_point:
                low, high = (0.5, 1.5) if name.endswith(("weight", "running_var", "layer_scale")) else (-0.5, 0.5)
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return module.eval()


def prefixed(prefix: str, module) -> dict:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2 + 0.5


def expect_close(got, expected, tol=1e-5):
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=tol, atol=tol)


def trainable(module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- layernorm ----------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [1e-6, 1e-5])
def test_layernorm_channels_is_convnext_layernorm2d(eps):
    module = perturbed(torchvision().models.convnext.LayerNorm2d(6, eps=eps))
    x = randn(2, 6, 5, 7)
    got, a = run(spec((6, 5, 7), ("layernorm", {"eps": eps})), prefixed("t", module), x)
    expect_close(got, module(x))
    assert a.trainable == trainable(module) == 12 and a.macs == 0
    assert a.layers[0].receptive_field.size == (1, 1)  # per pixel: no spatial reach


def test_layernorm_channels_is_channels_last_layer_norm():
    """ConvNeXt's block.2: nn.LayerNorm(C) on the permuted map, as torchvision's CNBlock runs it."""
    module = perturbed(torch.nn.LayerNorm(4, eps=1e-6))
    x = randn(2, 4, 3, 3)
    got, _ = run(spec((4, 3, 3), ("layernorm", {"eps": 1e-6})), prefixed("t", module), x)
    expect_close(got, module(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_layernorm_features():
    module = perturbed(torch.nn.LayerNorm(10))
    x = randn(3, 10)
    got, a = run(spec((10,), ("layernorm", {})), prefixed("t", module), x)
    expect_close(got, F.layer_norm(x, (10,), module.weight, module.bias, 1e-5))
    assert a.trainable == trainable(module)


@pytest.mark.parametrize("in_shape", [(5, 4, 4), (9,)])
def test_layernorm_without_affine(in_shape):
    x = randn(2, *in_shape)
    got, a = run(spec(in_shape, ("layernorm", {"affine": False, "eps": 1e-3})), {}, x)
    channels_last = x.movedim(1, -1)
    expect_close(got, F.layer_norm(channels_last, in_shape[:1], eps=1e-3).movedim(-1, 1))
    assert a.params == trainable(torch.nn.LayerNorm(in_shape[0], elementwise_affine=False)) == 0


# -- groupnorm ----------------------------------------------------------------------------

GROUPNORM_ROWS = [  # (channels, groups, affine, input shape)
    (8, 4, True, (8, 5, 6)),
    (6, 1, True, (6, 3, 4)),    # one group: all of [C, H, W]
    (6, 6, False, (6, 4, 4)),   # one channel a group: instancenorm
    (12, 3, True, (12,)),       # a flat input, as nn.GroupNorm takes (N, C)
]


@pytest.mark.parametrize("c, groups, affine, in_shape", GROUPNORM_ROWS)
def test_groupnorm(c, groups, affine, in_shape):
    module = perturbed(torch.nn.GroupNorm(groups, c, eps=1e-4, affine=affine))
    x = randn(2, *in_shape)
    got, a = run(spec(in_shape, ("groupnorm", {"groups": groups, "eps": 1e-4, "affine": affine})),
                 prefixed("t", module), x)
    expect_close(got, module(x))
    assert a.trainable == trainable(module) and a.non_trainable == 0


def test_groupnorm_receptive_field_covers_the_map():
    """Every output reads the whole map through its group's statistics."""
    a = analyse_text(spec((4, 5, 7), ("groupnorm", 2)), "t.yaml")
    (h, w) = a.layers[0].receptive_field.size
    assert h >= 2 * 5 - 1 and w >= 2 * 7 - 1  # a window centred anywhere in the map covers all of it


# -- instancenorm -------------------------------------------------------------------------

@pytest.mark.parametrize("affine, track", [(False, False), (True, False), (False, True), (True, True)])
def test_instancenorm(affine, track):
    module = perturbed(torch.nn.InstanceNorm2d(5, eps=1e-3, affine=affine, track_running_stats=track))
    x = randn(2, 5, 4, 6)
    args = {"eps": 1e-3, "affine": affine, "track_running_stats": track}
    got, a = run(spec((5, 4, 6), ("instancenorm", args)), prefixed("t", module), x)
    expect_close(got, module(x))
    assert a.trainable == trainable(module)
    assert a.non_trainable == sum(b.numel() for k, b in module.named_buffers() if "running" in k)


def test_instancenorm_defaults_are_pytorchs():
    """nn.InstanceNorm2d(C): no affine, no running statistics: no weights at all."""
    a = analyse_text(spec((3, 4, 4), ("instancenorm", None)), "t.yaml")
    module = torch.nn.InstanceNorm2d(3)
    assert a.params == len(module.state_dict()) == 0
    x = randn(2, 3, 4, 4)
    got, _ = run(spec((3, 4, 4), ("instancenorm", None)), {}, x)
    expect_close(got, F.instance_norm(x))


# -- dense per pixel ----------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
def test_dense_per_pixel_is_channels_last_linear(bias):
    module = perturbed(torch.nn.Linear(6, 10, bias=bias))
    x = randn(2, 6, 3, 5)
    got, a = run(spec((6, 3, 5), ("dense", {"units": 10, "per_pixel": True, "bias": bias})), prefixed("t", module), x)
    expect_close(got, module(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
    assert a.trainable == trainable(module)
    assert a.macs == 3 * 5 * 6 * 10  # per pixel, in x out


# -- stochastic depth and layer scale, in torchvision's own CNBlock ---------------------------

CNBLOCK = """\
input: [{dim}, 7, 6]
blocks:
  cnblock:
    args: {{dim: null, rate: 0}}
    layers:
      - depthwise_conv: {{kernel: 7, padding: 3}}
        name: block.0
      - layernorm: {{eps: 1.0e-6}}
        name: block.2
      - dense: {{units: "${{4 * dim}}", per_pixel: true}}
        name: block.3
      - gelu:
        name: block.4
      - dense: {{units: $dim, per_pixel: true}}
        name: block.5
      - layer_scale:
        name: gamma
      - stochastic_depth: {{rate: $rate, mode: row}}
        name: stochastic_depth
      - add:
        inputs: [input, stochastic_depth]
layers:
  - cnblock: {{dim: {dim}, rate: 0.25}}
    name: cn
"""


def test_layer_scale_and_stochastic_depth_in_a_cnblock():
    """torchvision's CNBlock in eval mode (stochastic depth the identity), its state_dict loaded
    by name: the layer scale under the block's own key `layer_scale`, shaped [C, 1, 1]."""
    block = perturbed(torchvision().models.convnext.CNBlock(8, layer_scale=1e-6, stochastic_depth_prob=0.25))
    assert tuple(block.layer_scale.shape) == (8, 1, 1)
    x = randn(2, 8, 7, 6)
    got, a = run(CNBLOCK.format(dim=8), prefixed("cn", block), x)
    expect_close(got, block(x), tol=1e-4)
    assert a.trainable == trainable(block)
    rows = {f.node.name: f for f in a.layers}
    assert rows["cn.gamma"].params == 8 and rows["cn.stochastic_depth"].params == 0


def test_layer_scale_features_and_seed():
    """On a [F] vector the scale is [F]; seeded, it starts at ConvNeXt's 1e-6."""
    gamma = torch.rand(6) + 0.5
    x = randn(3, 6)
    text = "input: [6]\nblocks:\n  b:\n    layers:\n      - layer_scale:\n        name: g\nlayers:\n  - b:\n    name: blk\n"
    got, a = run(text, {"blk.layer_scale": gamma}, x)
    expect_close(got, x * gamma)
    from compiler.weights import seeded
    arrays = seeded(a, 0)(a.layers[0])
    assert list(arrays) == ["blk.layer_scale"] and np.all(arrays["blk.layer_scale"] == np.float32(1e-6))


def test_stochastic_depth_lowers_to_nothing_and_matches_torchvision():
    sd = torchvision().ops.StochasticDepth(0.3, "batch").eval()
    x = randn(2, 3, 4, 4)
    text = spec((3, 4, 4), ("relu", None, "r"), ("stochastic_depth", {"rate": 0.3, "mode": "batch"}))
    got, a = run(text, {}, x)
    expect_close(got, sd(F.relu(x)))
    model = lower(a, imported(a, {}, "none")).to_model()
    assert [n.op_type for n in model.graph.node] == ["Relu", "Identity"]  # Identity: the output's name only


# -- errors: located, with the fix ----------------------------------------------------------

ERRORS = [
    ("input: [6, 4, 4]\nlayers:\n  - groupnorm: 4\n", "3:16",
     ["6 channels are not divisible into 4 groups", "use a groups value that divides 6"]),
    ("input: [6]\nlayers:\n  - instancenorm\n", "3:5",
     ["instancenorm needs a [C, H, W] input, got [6]"]),
    ("input: [6]\nlayers:\n  - dense: {units: 3, per_pixel: true}\n", "3:34",
     ["per_pixel needs a [C, H, W] input, got [6]", "leave it out"]),
    ("input: [6, 4, 4]\nlayers:\n  - dense: 3\n", "3:5",
     ["dense needs a flat [features] input", "per_pixel: true"]),
    ("input: [6, 4, 4]\nlayers:\n  - stochastic_depth: 1.0\n", "3:23",
     ["'rate'", "[0, 1)", "got 1.0"]),
    ("input: [6, 4, 4]\nlayers:\n  - stochastic_depth: {rate: 0.1, mode: rows}\n", "3:41",
     ["'mode'", "'row', 'batch'"]),
    ("input: [6, 4, 4]\nblocks:\n  b:\n    layers:\n      - layer_scale:\n        name: layer_scale\n"
     "layers:\n  - b:\n    name: blk\n", "5:9",
     ["'blk.layer_scale' is also the key of its own weight", "rename the layer", "blk.gamma"]),
    ("input: [6, 4, 4]\nblocks:\n  b:\n    layers:\n      - layer_scale\n      - layer_scale\n"
     "layers:\n  - b:\n    name: blk\n", "6:9",
     ["its weight 'blk.layer_scale' has the same key as a weight of layer 'blk.layer_scale1'",
      "give one of the layers a block of its own"]),
]


@pytest.mark.parametrize("text, where, phrases", ERRORS, ids=[e[2][0][:40] for e in ERRORS])
def test_errors_are_located_and_say_what_to_change(tmp_path, text, where, phrases):
    (tmp_path / "s.yaml").write_text(text)
    proc = run_cli(tmp_path, "check", "s.yaml")
    assert proc.returncode == 1, proc.stderr
    line = next((ln for ln in proc.stderr.splitlines() if ": error: " in ln), "")
    assert line.startswith(f"s.yaml:{where}: error: "), proc.stderr
    for phrase in phrases:
        assert phrase in line, proc.stderr
    assert "Traceback" not in proc.stderr


# -- ConvNeXt-T: stochastic depth as torchvision sets it --------------------------------------

@pytest.mark.slow  # building torchvision's model: about 6 s on a shared machine
def test_stochastic_depth_rates_are_torchvisions_and_shown(tmp_path):
    """convnext_tiny's 18 rates rise as torchvision's (0.1 * k / 17), and `summary --format json`
    shows each block's rate and mode."""
    model = torchvision().models.convnext_tiny(weights=None)
    expected = {name.removesuffix(".stochastic_depth"): (round(m.p, 12), m.mode) for name, m in model.named_modules()
                if type(m).__name__ == "StochasticDepth"}
    proc = run_cli(tmp_path, "summary", "convnext_tiny", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    shown = {row["name"].removesuffix(".stochastic_depth"): (round(row["args"]["rate"], 12), row["args"]["mode"])
             for row in json.loads(proc.stdout)["layers"] if row["type"] == "stochastic_depth"}
    assert len(shown) == 18 and shown == expected


def test_repeat_copy_number_in_arguments():
    """`$i` in a repeated item's arguments is the copy's number: 4, 6, 8 filters; outside a repeat
    it is no argument at all."""
    text = ("input: [3, 8, 8]\nblocks:\n  b:\n    args: {base: null}\n    layers:\n"
            "      - conv: {filters: \"${base + 2 * i}\", kernel: 1}\n        name: c\n        repeat: 3\n"
            "layers:\n  - b: {base: 4}\n    name: blk\n")
    a = analyse_text(text, "t.yaml")
    assert [(f.node.name, f.output_shape[0]) for f in a.layers] == [("blk.c.0", 4), ("blk.c.1", 6), ("blk.c.2", 8)]
    with pytest.raises(SpecError, match=r"6:25: error: layer 'blk.c': unknown block argument 'i'"):
        analyse_text(text.replace("        repeat: 3\n", ""), "t.yaml")


@pytest.mark.parametrize("opset", [18, 24])
def test_layernorm_groupnorm_instancenorm_at_the_oldest_and_newest_opsets(opset):
    """The lowerings use ops of every opset convspec writes (LayerNormalization from 17)."""
    ln, gn = perturbed(torch.nn.LayerNorm(8)), perturbed(torch.nn.GroupNorm(2, 8))
    text = spec((8, 4, 5), ("layernorm", {}, "ln"), ("groupnorm", 2, "gn"), ("instancenorm", None, "t"))
    a = analyse_text(text, "t.yaml")
    model = lower(a, imported(a, {**prefixed("ln", ln), **prefixed("gn", gn)}, "torch"), opset=opset).to_model()
    assert model.opset_import[0].version == opset
    x = randn(2, 8, 4, 5)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = F.instance_norm(gn(ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)))
    expect_close(session.run(None, {"input": x.numpy()})[0], expected)
