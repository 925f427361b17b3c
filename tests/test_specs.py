"""Golden figures for every bundled spec.

torchvision rows (and the U-Net's) come from tests/reference.py (measured with PyTorch from
torchvision 0.28's own model definitions), the paper rows from the papers and decks.
"""

from pathlib import Path

import pytest

from compiler.pipeline import analyse
from compiler.zoo import bundled
from reference import REFERENCE as TORCHVISION

# name: (trainable, non_trainable, macs, output shape), from outside the project
PUBLISHED = {
    # resnet50 (torchvision) with fc 2048->1000 (2,049,000) replaced by 2048->10 (20,490); layers
    # frozen count as non-trainable: trainable = layer4 (14,964,736) + fc
    "resnet50_10class": (14_985_226, 25_610_152 - 2_049_000 + 20_490 - 14_985_226, None, (10,)),
    # Deck 000's table: conv1 34,944 + conv2 614,656 + conv3 885,120 + conv4 1,327,488
    # + conv5 884,992 + fc6 37,752,832 + fc7 16,781,312 + fc8 4,097,000
    "alexnet_paper": (62_378_344, 0, None, (1000,)),
    # LeNet-5 with a full C3: 156 + 2,416 + 48,120 + 10,164 + 850
    "lenet5": (61_706, 0, 416_520, (10,)),
    "inception_cost": (None, 0, 120_422_400 + 12_443_648, None),
    "cs231n_conv_example": (760, 0, None, (10, 32, 32)),
    "deck002_cnn": (None, 0, None, (100, 32, 32)),
    "shared_weights_example": (10_000, 0, None, (100, 191, 191)),
    # Deck 000's perceptron: n weights and a bias b, n + 1 with our n = 784
    "perceptron": (784 + 1, 0, None, (1,)),
    # Deck 000's 2-hidden-layer network: sizes are ours (784-300-100-10), so nothing published
    "mlp": (None, 0, None, (10,)),
    # Deck 001's Keras exercise as its solution notebook fills it (tensorchiefs/dl_course_2020,
    # 05_cnn_edge_lover_sol): model.summary() "Total params: 30", dense output (None, 2)
    "deck001_keras_cnn": (30, 0, None, (2,)),
    # Zeiler & Fergus 2013 Fig. 3 gives the layer sizes but no parameter or operation count
    "zfnet": (None, 0, None, (1000,)),
    # Lin et al. 2013 (CIFAR-10): no count in the paper; 10 class maps averaged to 10 scores
    "nin": (None, 0, None, (10,)),
    # Szegedy et al. 2015 Table 1 rounds its params and ops (per-module MACs are in the spec)
    "googlenet_paper": (None, 0, None, (1000,)),
    # torchvision's resnet34 less its three projection shortcuts (1x1 conv + BatchNorm in
    # layer2.0, layer3.0, layer4.0); the paper rounds the plain net to "3.6 billion" mult-adds
    "plain34": (TORCHVISION["resnet34"]["params_trainable"] - (64 * 128 + 128 * 256 + 256 * 512)
                - 2 * (128 + 256 + 512),
                TORCHVISION["resnet34"]["params_non_trainable"] - 2 * (128 + 256 + 512),
                TORCHVISION["resnet34"]["macs"] - (64 * 128 * 28 * 28 + 128 * 256 * 14 * 14 + 256 * 512 * 7 * 7),
                (1000,)),
    # He et al. 2016 CIFAR-10 ResNet-56: the issue's 853,018 trainable (the paper's Table 6:
    # 0.85M); non-trainable computed, BatchNorm running stats of 2,032 channels
    "resnet56_cifar": (853_018, 4_064, None, (10,)),
    # Howard et al. 2017 Table 8: 569M mult-adds (the issue's exact 568,740,352), 4.2M params;
    # Keras' MobileNet() summary: trainable 4,231,976, non-trainable 21,888
    "mobilenet_v1": (4_231_976, 21_888, 568_740_352, (1000,)),
    # Deck 004's ensemble: its members' torchvision figures, added up
    "resnet18_ensemble": tuple(sum(TORCHVISION[n][key] for n in ("resnet18", "vgg11_bn", "densenet121"))
                               for key in ("params_trainable", "params_non_trainable", "macs")) + ((1000,),),
    # Krizhevsky et al. 2012's ten crops on torchvision's AlexNet: its params, its MACs ten times
    "alexnet_10crop": (TORCHVISION["alexnet"]["params_trainable"], 0, 10 * TORCHVISION["alexnet"]["macs"], (1000,)),
    # GoogLeNet's ILSVRC 2014 test-time scheme: 4 scales x 3 squares x 6 crops x 2 mirrors
    "googlenet_144crop": (TORCHVISION["googlenet"]["params_trainable"], TORCHVISION["googlenet"]["params_non_trainable"],
                          144 * TORCHVISION["googlenet"]["macs"], (1000,)),
}
# Every bundled spec named like a torchvision model must match it exactly.
TORCHVISION_SPECS = sorted(p.stem for p in bundled() if p.stem in TORCHVISION)


@pytest.mark.parametrize("name", TORCHVISION_SPECS)
def test_matches_torchvision(name):
    ref = TORCHVISION[name]
    a = analyse(name)
    assert a.trainable == ref["params_trainable"]
    assert a.non_trainable == ref["params_non_trainable"]
    assert a.macs == ref["macs"]
    assert tuple(a.graph.input_shape) == tuple(ref["input_shape"])
    assert a.output_shapes == (tuple(ref["output_shape"]),)


def test_the_core_torchvision_specs_are_bundled():
    assert {"vgg16", "resnet18", "resnet50", "resnet152", "googlenet"} <= set(TORCHVISION_SPECS)


def test_issue_figures():
    """The figures the core issue names, written out independently of the reference file."""
    figures = {"vgg16": (138_357_544, 15_470_264_320), "resnet18": (11_689_512, 1_814_073_344),
               "resnet50": (25_557_032, 4_089_184_256), "googlenet": (6_624_904, 1_498_376_192)}
    for name, (params, macs) in figures.items():
        a = analyse(name)
        assert (a.trainable, a.macs) == (params, macs), name


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_figures(name):
    trainable, non_trainable, macs, output = PUBLISHED[name]
    a = analyse(name)
    if trainable is not None:
        assert a.trainable == trainable
    assert a.non_trainable == non_trainable
    if macs is not None:
        assert a.macs == macs
    if output is not None:
        assert a.output_shapes[0] == output


def test_every_bundled_spec_has_a_golden_row():
    names = {p.stem for p in bundled()}
    assert names == set(PUBLISHED) | set(TORCHVISION_SPECS)


@pytest.mark.parametrize("path", bundled(), ids=lambda p: p.stem)
def test_bundled_spec_is_clean(path):
    """Valid, expectations met, no warnings even under --strict, and a modeline for editors."""
    a = analyse(str(path), strict=True)
    assert a.warnings == ()
    first = path.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=convspec.schema.json"
    assert a.graph.meta.get("title") and a.graph.meta.get("paper")
    assert a.graph.name == path.stem


def test_torchvision_names():
    """Node names are torchvision's state_dict prefixes (the weight keys of the next stage)."""
    names = {n.name for n in analyse("resnet50").graph.nodes}
    for key in ["conv1", "bn1", "layer1.0.conv1", "layer1.0.downsample.0", "layer1.0.downsample.1",
                "layer4.2.bn3", "fc"]:
        assert key in names
    assert "layer1.1.downsample.0" not in names
    names = {n.name for n in analyse("googlenet").graph.nodes}
    for key in ["conv1.conv", "conv1.bn", "inception3a.branch1.conv", "inception3a.branch2.1.bn",
                "inception5b.branch4.1.conv", "fc"]:
        assert key in names
    names = {n.name for n in analyse("vgg16").graph.nodes}
    assert {"features.0", "features.28", "classifier.0", "classifier.6"} <= names


def test_resnet152_is_as_short_as_resnet18(tmp_path):
    """A stage table makes depth a number: ResNet-152 is resnet50.yaml with another row of repeats."""
    text = (Path(__file__).parent.parent / "specs" / "resnet50.yaml").read_text()
    text = text.replace("repeat: 4, planes: 128", "repeat: 8, planes: 128")
    text = text.replace("repeat: 6, planes: 256", "repeat: 36, planes: 256")
    text = text.replace("name: resnet50", "name: resnet152")
    text = text[: text.index("\nexpect:")] + "\n"
    spec = tmp_path / "resnet152.yaml"
    spec.write_text(text)
    a = analyse(str(spec))
    ref = TORCHVISION["resnet152"]
    assert (a.trainable, a.non_trainable, a.macs) == (ref["params_trainable"], ref["params_non_trainable"], ref["macs"])
