"""The bundled specs of torchvision's other CNN families (issue #11): their weight keys and shapes
are torchvision's state_dict, key for key, so its weights load by name.

Figures and eager parity are in test_specs.py and test_torchvision_parity.py; this checks the
names and shapes against torchvision's own model definitions (a test reference only, DESIGN.md).
"""

from __future__ import annotations


import pytest

from compiler.errors import SpecError
from compiler.pipeline import analyse, analyse_text
from reference import import_torchvision

MODELS = ["squeezenet1_0", "squeezenet1_1", "wide_resnet50_2", "inception_v3", "regnet_x_400mf",
          "mnasnet1_0", "fcn_resnet50"]
# constructor arguments that make torchvision's model the bundled spec's (as in the parity test)
CONSTRUCTOR = {"inception_v3": {"aux_logits": False, "init_weights": False},
               "fcn_resnet50": {"num_classes": 21, "aux_loss": False, "weights_backbone": None}}


def torchvision_shapes(name: str) -> dict:
    torchvision = import_torchvision()
    models = torchvision.models.segmentation if name.startswith("fcn_") else torchvision.models
    model = getattr(models, name)(weights=None, **CONSTRUCTOR.get(name, {}))
    return {key: tuple(t.shape) for key, t in model.state_dict().items() if not key.endswith("num_batches_tracked")}


def spec_shapes(name: str) -> dict:
    a = analyse(name)
    return {f"{f.node.name}.{w.name}": tuple(w.shape)
            for f in a.layers for w in f.node.layer.weights(*f.input_shapes)}


@pytest.mark.slow  # importing torchvision takes seconds
@pytest.mark.parametrize("name", MODELS)
def test_weight_keys_and_shapes_are_torchvisions(name):
    expected = torchvision_shapes(name)
    got = spec_shapes(name)
    assert sorted(set(expected) - set(got)) == [], "keys torchvision has and the spec lacks"
    assert sorted(set(got) - set(expected)) == [], "keys the spec has and torchvision lacks"
    assert got == expected


def test_a_name_may_hold_a_hyphen_as_regnets_do():
    a = analyse_text("""
input: [3, 8, 8]
layers:
  - conv: {filters: 4, kernel: 1}
    name: block1.block1-{i}.f.a
    repeat: 2
""")
    assert [f.node.name for f in a.layers] == ["block1.block1-0.f.a", "block1.block1-1.f.a"]


@pytest.mark.parametrize("name", ["block 1", "a/b", "a..b", "a.", "caf\u00e9"])
def test_other_characters_in_a_name_are_still_refused(name):
    with pytest.raises(SpecError, match="letters, digits, _ and -"):
        analyse_text(f"input: [3, 8, 8]\nlayers:\n  - relu:\n    name: \"{name}\"\n")
