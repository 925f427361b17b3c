"""`when` inside a `sequential`: a skipped item takes no position, as a module left out of an
nn.Sequential's list does. torchvision's inverted residuals (MobileNetV3, EfficientNet) build
their `block` this way, so a spec's keys follow theirs only if positions skip the same modules."""

import pytest

from compiler.errors import SpecError
from compiler.pipeline import analyse_text

torch = pytest.importorskip("torch", reason="torch is not installed: `pip install torch==2.13.0` runs these")

SPEC = """
input: [8, 6, 6]
blocks:
  residual:
    args: {expand: null, se: null}
    layers:
      - sequential:
          - conv: {filters: 16, kernel: 1}
            when: $expand
          - conv: {filters: "${16 if expand else 8}", kernel: 3, padding: 1}
          - conv: {filters: 4, kernel: 1}
            when: $se
          - conv: {filters: 8, kernel: 1}
        name: block
layers:
  - residual: {expand: %s, se: %s}
    name: r
"""


def torch_keys(expand: bool, se: bool) -> set[str]:
    """The state_dict keys of the nn.Sequential that torchvision's code would build."""
    nn = torch.nn
    layers = []
    if expand:
        layers.append(nn.Conv2d(8, 16, 1))
    width = 16 if expand else 8
    layers.append(nn.Conv2d(width, width, 3, padding=1))
    if se:
        layers.append(nn.Conv2d(width, 4, 1))
    layers.append(nn.Conv2d(4 if se else width, 8, 1))
    return {f"r.block.{k}" for k in nn.Sequential(*layers).state_dict()}


@pytest.mark.parametrize("expand", [True, False])
@pytest.mark.parametrize("se", [True, False])
def test_skipped_items_take_no_position(expand, se):
    a = analyse_text(SPEC % (str(expand).lower(), str(se).lower()))
    keys = {f"{f.node.name}.{w.name}" for f in a.layers for w in f.node.layer.weights(*f.input_shapes)}
    assert keys == torch_keys(expand, se)


def test_a_named_skipped_item_keeps_its_name():
    """A named item passes its input through under its name, as outside a sequential."""
    a = analyse_text("input: [3, 4, 4]\nlayers:\n  - sequential:\n      - relu\n      - conv: {filters: 2, kernel: 1}\n"
                     "        name: skipped\n        when: false\n      - conv: {filters: 3, kernel: 1}\n"
                     "    name: g\n  - add:\n    inputs: [g.skipped, g.1]\n")
    assert [f.node.name for f in a.layers][:2] == ["g.0", "g.1"]
    assert a.layers[-1].node.inputs == ("g.0", "g.1")  # g.skipped is g.0


def test_a_when_that_is_not_a_boolean_is_located():
    with pytest.raises(SpecError) as e:
        analyse_text("input: [3, 4, 4]\nblocks:\n  b:\n    args: {n: 3}\n    layers:\n      - sequential:\n"
                     "          - relu:\n            when: $n\n          - relu\nlayers:\n  - b\n")
    assert str(e.value).splitlines() == ["<spec>:8:19: error: 'when' must be true or false, got 3",
                                         "<spec>:11:5: note: in block 'b'"]
