"""Transfer learning (deck 004): extends, replace, append, frozen, and loading what still fits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clirun import run_cli
from compiler.build import compile_spec
from compiler.errors import SpecError
from compiler.pipeline import analyse
from compiler.weights import seeded

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text, name="child.yaml") -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def test_extends_replaces_the_head_keeping_its_name(tmp_path):
    a = analyse(write(tmp_path, "extends: resnet18\nname: r18_5\ninput: [3, 64, 64]\n"
                                "replace:\n  fc: {dense: 5}\nappend:\n  - softmax\n"))
    names = [f.node.name for f in a.layers]
    assert names[-2:] == ["fc", "softmax1"]
    assert a.output_shapes == ((5,),)
    assert a.layers[names.index("layer4.1.conv2")].output_shape == (512, 2, 2)  # the new input size
    base = analyse("resnet18")
    assert a.trainable == base.trainable - 512 * 1000 - 1000 + 512 * 5 + 5


def test_base_expectations_are_dropped(tmp_path):
    """resnet18 expects [1000] outputs and 7x7 maps at 224; they no longer hold and are not checked.

    At 96x96 every map is 3/7 the side of the 224 one (48, 24, 12, 6, 3), so the convolutions'
    MACs are torchvision's resnet18 figure less its fc layer, times 9/49: 1,813,561,344 * 9/49."""
    a = analyse(write(tmp_path, "extends: resnet18\ninput: [3, 96, 96]\nreplace:\n  fc: {dense: 3}\n"))
    assert a.graph.expectations == ()
    assert a.output_shapes == ((3,),)
    assert a.layers[[f.node.name for f in a.layers].index("layer4.1.bn2")].output_shape == (512, 3, 3)
    assert a.trainable == 11_689_512 - (512 * 1000 + 1000) + (512 * 3 + 3) == 11_178_051
    assert a.macs == (1_814_073_344 - 512 * 1000) * 9 // 49 + 512 * 3 == 333_104_640


def test_extends_a_path_relative_to_the_spec(tmp_path):
    write(tmp_path, "input: [1, 8, 8]\nlayers:\n  - conv: {filters: 2, kernel: 3}\n    name: c\n"
                    "  - flatten\n  - dense: 4\n    name: head\n", "base.yaml")
    a = analyse(write(tmp_path, "extends: base.yaml\nreplace:\n  head: {dense: 7}\n"))
    assert a.output_shapes == ((7,),)


@pytest.mark.parametrize("text, message", [
    ("extends: resnet18\nreplace:\n  fcc: {dense: 5}\n", "'replace' names 'fcc'.*did you mean 'fc'"),
    ("extends: child.yaml\n", "cannot extend itself"),
    ("extends: no_such_spec\n", "not a bundled spec"),
    ("extends: resnet18\nfrozen: [layer9]\n", "'frozen' names 'layer9', which matches no layer"),
])
def test_extends_errors(tmp_path, text, message):
    with pytest.raises(Exception, match=message):
        analyse(write(tmp_path, text))


def test_frozen_layers_are_recorded_and_count_as_non_trainable():
    a = analyse("resnet50_10class")
    frozen = {f.node.name for f in a.layers if f.node.name in a.graph.attachments.frozen}
    assert "layer3.5.conv3" in frozen and "layer4.0.conv1" not in frozen and "fc" not in frozen
    assert a.trainable == sum(f.params for f in a.layers if f.node.name.startswith(("layer4.", "fc"))
                              and f.node.type != "batchnorm") + sum(
        f.trainable for f in a.layers if f.node.name.startswith("layer4.") and f.node.type == "batchnorm")
    meta = {p.key: p.value for p in compile_spec(a).to_model().metadata_props}
    keys = json.loads(meta["convspec.frozen"])
    assert "conv1.weight" in keys and "layer3.5.bn3.running_var" in keys and "fc.weight" not in keys


def test_item_level_frozen(tmp_path):
    a = analyse(write(tmp_path, "input: [4]\nlayers:\n  - dense: 3\n    frozen: true\n  - dense: 2\n"))
    assert (a.trainable, a.non_trainable) == (2 * 3 + 2, 4 * 3 + 3)


@pytest.mark.slow  # ResNet-50's 25 M weights, written and compiled three times
def test_weights_that_still_fit_are_loaded(tmp_path):
    base = analyse("resnet50")
    arrays = {}
    for f in base.layers:
        arrays.update(seeded(base, 9)(f))
    np.savez(tmp_path / "r50.npz", **arrays)
    child = analyse("resnet50_10class")
    notes = []
    model = compile_spec(child, weights=str(tmp_path / "r50.npz"), strict_weights=False, warn=notes.append).to_model()
    assert notes == ["loaded 265 of 267 weight tensors from " + str(tmp_path / "r50.npz") + ", the rest seeded; "
                     "shape mismatches (2): fc.weight: file [1000, 2048], spec [10, 2048], "
                     "fc.bias: file [1000], spec [10]"]
    loaded = {t.name: t for t in model.graph.initializer}
    from onnx import numpy_helper

    np.testing.assert_array_equal(numpy_helper.to_array(loaded["layer2.0.conv2.weight"]), arrays["layer2.0.conv2.weight"])
    assert numpy_helper.to_array(loaded["fc.weight"]).shape == (10, 2048)
    with pytest.raises(SpecError, match="shape mismatches"):
        compile_spec(child, weights=str(tmp_path / "r50.npz"), strict_weights=True).to_model()

    cli = ["compile", "resnet50_10class", "-o", str(tmp_path / "m.onnx"), "--force", "--weights", str(tmp_path / "r50.npz")]
    lenient = run_cli(tmp_path, *cli)
    assert lenient.returncode == 0 and "warning: loaded 265 of 267" in lenient.stderr
    strict = run_cli(tmp_path, *cli, "--strict-weights")
    assert strict.returncode == 1 and "do not fit the spec 'resnet50_10class'" in strict.stderr


def test_metadata_of_a_spec_that_extends_another():
    import hashlib

    a = analyse("resnet50_10class")
    meta = {p.key: p.value for p in compile_spec(a).to_model().metadata_props}
    specs = ROOT / "specs"
    expected = hashlib.sha256((specs / "resnet50_10class.yaml").read_bytes() + (specs / "resnet50.yaml").read_bytes())
    assert meta["convspec.spec_sha256"] == expected.hexdigest()  # a change to the base changes it too
    assert meta["convspec.title"].startswith("Deck 004's transfer learning")


def test_the_base_title_is_not_inherited(tmp_path):
    a = analyse(write(tmp_path, "extends: lenet5\nname: mine\n"))
    assert "title" not in a.graph.meta and a.graph.meta["paper"].startswith("LeCun")
