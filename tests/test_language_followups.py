"""Follow-ups to the spec language: copies numbered across a list's repeats (`$k`, `$total`),
EfficientNet's stochastic depth against torchvision, and blocks with several inputs (U-Net)."""

from __future__ import annotations

import json

import pytest

from clirun import run_cli
from compiler.errors import SpecError
from compiler.pipeline import analyse_text
from reference import import_torchvision


def rates(text):
    """Each stochastic_depth layer's drop rate, by name."""
    return {f.node.name: f.node.layer.rate for f in analyse_text(text, "t.yaml").layers
            if f.node.layer.type_name == "stochastic_depth"}


# -- $k and $total: a copy's number across the repeats of its list -------------------------------------

def test_k_counts_copies_across_the_repeats_of_a_list_and_total_is_their_number():
    got = rates("""
input: [4, 8, 8]
layers:
  - stochastic_depth: {rate: "${0.2 * k / total}"}
    repeat: 2
  - relu                          # not a repeat: not counted
  - stochastic_depth: {rate: "${0.2 * k / total}"}
    repeat: 3
""")
    # torchvision's EfficientNet: 0.2 * block_id / total_blocks, 5 blocks
    assert got == {"stochastic_depth1.0": 0.0, "stochastic_depth1.1": 0.2 * 1 / 5,
                   "stochastic_depth2.0": 0.2 * 2 / 5, "stochastic_depth2.1": 0.2 * 3 / 5,
                   "stochastic_depth2.2": 0.2 * 4 / 5}


@pytest.mark.parametrize("naming", ["name: s{n}", "name: s\n      number_from: 1"])
def test_k_counts_across_the_rows_of_a_stage_table_numbered_per_row_or_across(naming):
    got = rates(f"""
input: [4, 8, 8]
layers:
  - stages:
      block: stochastic_depth
      {naming}
      args: {{rate: "${{0.1 * k / (total - 1)}}"}}   # ConvNeXt's form: 0 to 0.1 over the blocks
      table:
        - {{repeat: 2}}
        - {{repeat: 1}}
        - {{repeat: 2, rate: "${{i / 10}}"}}        # $i still numbers the copies of the row
""")
    assert sorted(got.values()) == sorted([0.1 * 0 / 4, 0.1 * 1 / 4, 0.1 * 2 / 4, 0 / 10, 1 / 10])


def test_a_repeat_skipped_by_when_makes_no_copies_to_count():
    got = rates("""
input: [4, 8, 8]
layers:
  - stochastic_depth: {rate: "${k / 10}"}
    repeat: 4
    when: false
  - stochastic_depth: {rate: "${total / 10}"}
    repeat: 2
""")
    assert got == {"stochastic_depth2.0": 0.2, "stochastic_depth2.1": 0.2}


def test_k_outside_a_copy_is_an_unknown_argument_at_its_position():
    with pytest.raises(SpecError) as e:
        analyse_text("input: [4, 8, 8]\nlayers:\n  - dropout: {rate: $k}\n", "t.yaml")
    assert str(e.value) == ("t.yaml:3:21: error: layer 'dropout1': unknown block argument 'k' (arguments here: "
                            "none); $i, $k and $total exist only in the arguments of a repeat's copies (the "
                            "copy's number in its repeat, across the repeats of its list or stage table, and how "
                            "many copies those make)")


# -- EfficientNet's stochastic depth, rate by rate, against torchvision --------------------------------

def _torchvision():
    return import_torchvision()


def _torchvision_rates(model):
    """The drop rate of each (Fused)MBConv that uses it: torchvision applies stochastic depth only
    with the shortcut (`use_res_connect`)."""
    return {f"{name}.stochastic_depth": block.stochastic_depth.p for name, block in model.named_modules()
            if hasattr(block, "use_res_connect") and block.use_res_connect}


@pytest.mark.slow  # importing torchvision
@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_v2_s"])
def test_efficientnet_drop_rates_are_torchvisions_block_by_block(name, tmp_path):
    model = getattr(_torchvision().models, name)(weights=None)
    result = run_cli(tmp_path, "summary", name, "--format", "json")
    assert result.returncode == 0, result.stderr
    layers = json.loads(result.stdout)["layers"]
    got = {layer["name"]: layer["args"]["rate"] for layer in layers if layer["type"] == "stochastic_depth"}
    want = _torchvision_rates(model)
    assert len(want) == {"efficientnet_b0": 9, "efficientnet_v2_s": 35}[name]
    assert got == want
    assert all(layer["args"]["mode"] == "row" for layer in layers if layer["type"] == "stochastic_depth")
    # placed as torchvision's forward applies it: on the branch, right before the residual add
    adds = {layer["name"]: layer["inputs"] for layer in layers if layer["type"] == "add"}
    assert {name.rsplit(".", 1)[0] for name in adds} == {sd.rsplit(".", 1)[0] for sd in want}
    assert all(adds[sd.rsplit(".", 1)[0] + ".add1"][0] == sd for sd in want)


# -- blocks with several inputs ------------------------------------------------------------------------

JOIN = """\
input: [2, 6, 6]
blocks:
  join:                     # U-Net's copy and crop, then concatenate
    inputs: [across, below]
    layers:
      - crop:
        name: skip
        inputs: [across, below]
      - concat:
        inputs: [skip, below]
layers:
  - maxpool: 2
    name: pool
  - join:
    name: j
    inputs: [input, pool]
"""


def _run(spec_text, x):
    import numpy as np
    import onnxruntime as ort

    from compiler.lower import lower
    from compiler.weights import seeded

    a = analyse_text(spec_text, "t.yaml")
    session = ort.InferenceSession(lower(a, seeded(a)).to_model().SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return a, np.asarray(session.run(None, {"input": x})[0])


def test_a_block_with_two_inputs_crops_one_to_the_other_and_joins_them_as_numpy_does():
    import numpy as np

    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)
    a, got = _run(JOIN, x)
    pooled = x.reshape(1, 2, 3, 2, 3, 2).max(axis=(3, 5))
    centre = x[:, :, 1:4, 1:4]          # (6 - 3) // 2 = 1 row and column cut above and left
    np.testing.assert_array_equal(got, np.concatenate([centre, pooled], axis=1))
    assert [(f.node.name, f.node.inputs) for f in a.layers] == [
        ("pool", ("input",)), ("j.skip", ("input", "pool")), ("j.concat1", ("j.skip", "pool"))]


def test_in_reads_each_named_inputs_shape():
    a = analyse_text("""
input: [3, 8, 8]
blocks:
  mix:
    inputs: [a, b]
    layers:
      - conv: {filters: "${in.a.channels + in.b.channels}", kernel: 1}
        inputs: b
layers:
  - conv: {filters: 5, kernel: 3, padding: 1}
    name: c
  - mix:
    inputs: [input, c]
""", "t.yaml")
    assert a.layers[-1].output_shape == (8, 8, 8) and a.layers[-1].params == 8 * 5 + 8


def error(spec_text):
    with pytest.raises(SpecError) as e:
        analyse_text(spec_text, "t.yaml")
    return str(e.value)


def test_an_instance_giving_too_few_inputs_is_an_error_at_its_inputs_with_the_block_notes():
    spec_text = JOIN.replace("""layers:
  - maxpool: 2""", """  outer:
    layers:
      - join:
        name: j
        inputs: input
layers:
  - outer:
    name: o
  - maxpool: 2""")
    assert error(spec_text) == (
        "t.yaml:15:17: error: layer 'o.j': block 'join' takes 2 inputs (across, below), got 1 (input); list 2 "
        "layers, in that order, with `inputs: [...]`\n"
        "t.yaml:17:5: note: in block 'outer'")


@pytest.mark.parametrize("body, message", [
    ("      - relu\n", "t.yaml:6:9: error: layer 'j.relu1': block 'join' has several inputs (across, below), so its "
                       "first item says which it takes, like `inputs: across`"),
    ("      - relu:\n        inputs: input\n",
     "t.yaml:7:17: error: layer 'j.relu1': block 'join' has several inputs; name one of them (across, below), "
     "not 'input'"),
    ("      - relu:\n        name: below\n        inputs: across\n",
     "t.yaml:7:15: error: layer 'j.below': 'below' names one of the block's inputs (across, below); choose "
     "another name"),
    ("      - conv: {filters: \"${in.channels}\", kernel: 1}\n        inputs: across\n",
     "t.yaml:6:25: error: layer 'j.conv1': 'in.channels': this block has several inputs (across, below); read "
     "one's shape, like in.across.channels"),
    ("      - conv: {filters: \"${in.left.channels}\", kernel: 1}\n        inputs: across\n",
     "t.yaml:6:25: error: layer 'j.conv1': 'in.left': the block's inputs are across, below; write "
     "in.<input>.channels with one of them"),
])
def test_inside_a_block_with_several_inputs(body, message):
    spec_text = ("input: [2, 6, 6]\nblocks:\n  join:\n    inputs: [across, below]\n    layers:\n" + body
                 + "layers:\n  - maxpool: 2\n    name: pool\n  - join:\n    name: j\n    inputs: [input, pool]\n")
    assert error(spec_text).split("\n")[0] == message


@pytest.mark.parametrize("names", ["[a]", "[input, b]", "[a, a]", "[a.b, c]"])
def test_block_inputs_are_two_or_more_different_plain_names(names):
    message = error(f"input: [2, 6, 6]\nblocks:\n  join:\n    inputs: {names}\n    layers:\n      - relu\n"
                    "layers:\n  - relu\n")
    assert message.startswith("t.yaml:4:13: error: 'blocks.join.inputs' must be a list of two or more different "
                              "names for the block's inputs")


def test_a_blocks_output_may_name_one_of_its_inputs():
    spec_text = JOIN.replace("    inputs: [across, below]\n", "    inputs: [across, below]\n    output: across\n", 1)
    a = analyse_text(spec_text + "  - relu:\n    inputs: j\n", "t.yaml")
    assert a.layers[-1].node.inputs == ("input",) and a.layers[-1].output_shape == (2, 6, 6)


@pytest.mark.parametrize("written, named", [("swish", "silu"), ("clip", "hardtanh"), ("fc", "dense"),
                                            ("drop_path", "stochastic_depth")])
def test_other_frameworks_names_for_a_type_name_convspecs(written, named):
    """A spelling guess would send 'swish' to 'hardswish', a different function (PyTorch's
    nn.SiLU is the swish of Ramachandran et al.): a known synonym is named instead."""
    with pytest.raises(SpecError) as e:
        analyse_text(f"input: [3, 8, 8]\nlayers:\n  - {written}\n")
    assert str(e.value) == (f"<spec>:3:5: error: unknown layer type '{written}'; convspec calls it '{named}' "
                            "(see `convspec layers`)")


def test_a_wiring_error_inside_a_block_names_the_instance():
    """Names are resolved after expansion; an undefined one inside a block body still says which
    instance it is in, as the expansion's own errors do."""
    text = ("input: [3, 8, 8]\nblocks:\n  res:\n    args: {c: 4}\n    layers:\n"
            "      - conv: {filters: $c, kernel: 3, padding: 1}\n        name: a\n"
            "      - add:\n        inputs: [a, b]\nlayers:\n  - conv: {filters: 4, kernel: 1}\n"
            "  - res: {c: 4}\n    name: r1\n")
    with pytest.raises(SpecError) as e:
        analyse_text(text)
    assert str(e.value).splitlines() == [
        "<spec>:9:21: error: layer 'r1.add1': undefined name 'b'; the names here are: input, a, add1",
        "<spec>:12:5: note: in block 'res' (c: 4)"]
