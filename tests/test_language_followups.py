"""Follow-ups to the spec language: copies numbered across a list's repeats (`$k`, `$total`),
EfficientNet's stochastic depth against torchvision, and blocks with several inputs (U-Net)."""

from __future__ import annotations

import json
import sys
import types

import pytest

from clirun import run_cli
from compiler.errors import SpecError
from compiler.pipeline import analyse_text


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
        - {{repeat: 2}}
""")
    assert sorted(got.values()) == [0.1 * k / 4 for k in range(5)]


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
    pytest.importorskip("torch", reason="torch is not installed")
    # torchvision 0.28's package import fails on CPU torch until this module is stubbed (DESIGN.md).
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    return pytest.importorskip("torchvision")


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
