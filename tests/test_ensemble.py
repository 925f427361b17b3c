"""Ensembles (compiler/ensemble.py): one model whose output combines its members' outputs.

The reference is numpy: each member is compiled and run on its own, and its outputs are
combined with the textbook formula of each mode; the ensemble, compiled with the same members'
weights (`--weights MEMBER=FILE`), must give the same numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from clirun import run_cli
from compiler.pipeline import analyse

ROOT = Path(__file__).resolve().parent.parent

# a second architecture on LeNet-5's input and output: the members need not be alike
SMALL = """name: small
input: [1, 32, 32]
layers:
  - conv: {filters: 4, kernel: 5, stride: 2, activation: relu}
  - global_avgpool
  - flatten
  - dense: 10
    name: head
"""


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def combined(outputs: list, mode: str, weights: list) -> np.ndarray:
    """The combination of the members' outputs as the docs define it, in float64."""
    w = np.asarray(weights, np.float64) / sum(weights)
    outputs = [o.astype(np.float64) for o in outputs]
    if mode == "mean_softmax":
        return sum(wi * softmax(o) for wi, o in zip(w, outputs))
    if mode == "mean_logits":
        return sum(wi * o for wi, o in zip(w, outputs))
    if mode == "max":
        return np.max([softmax(o) for o in outputs], axis=0)
    votes = [np.eye(o.shape[1])[o.argmax(axis=1)] for o in outputs]  # vote
    return sum(wi * v for wi, v in zip(w, votes))


def ok(cwd, *args):
    proc = run_cli(cwd, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def weights_of(model_path: Path, out: Path) -> Path:
    """A compiled member's weights as an .npz keyed by its own node names."""
    model = onnx.load(str(model_path))
    np.savez(out, **{t.name: numpy_helper.to_array(t) for t in model.graph.initializer if "/" not in t.name})
    return out


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Three members (two LeNet-5 with different seeds, one other network), each run on its own."""
    d = tmp_path_factory.mktemp("members")
    (d / "small.yaml").write_text(SMALL)
    x = np.random.default_rng(0).standard_normal((16, 1, 32, 32), dtype=np.float32) * 3
    np.save(d / "x.npy", x)
    outputs = {}
    for name, spec, seed in (("a", "lenet5", "1"), ("b", "lenet5", "2"), ("c", "small.yaml", "3")):
        ok(d, "compile", spec, "-o", f"{name}.onnx", "--seed", seed)
        weights_of(d / f"{name}.onnx", d / f"{name}.npz")
        ok(d, "run", f"{name}.onnx", "--input", "x.npy", "-o", f"{name}.npy")
        outputs[name] = np.load(d / f"{name}.npy")
    return d, outputs


@pytest.mark.parametrize("mode,weights", [("mean_softmax", None), ("mean_softmax", [1, 2, 0.5]),
                                          ("mean_logits", [3, 1, 1]), ("max", None), ("vote", None),
                                          ("vote", [1, 1.5, 2])])
def test_the_ensemble_combines_its_members_outputs(members, mode, weights):
    d, outputs = members
    spec = d / f"ens_{mode}.yaml"
    spec.write_text("name: ens\nensemble:\n"
                    "  members: [{spec: lenet5, name: a}, {spec: lenet5, name: b}, {spec: small.yaml, name: c}]\n"
                    f"  combine: {mode}\n" + (f"  weights: {weights}\n" if weights else ""))
    ok(d, "compile", spec.name, "-o", "ens.onnx", "--force", "--weights", "a=a.npz", "--weights", "b=b.npz",
       "--weights", "c=c.npz", "--strict-weights")
    ok(d, "run", "ens.onnx", "--input", "x.npy", "-o", "ens.npy", "--force")
    got = np.load(d / "ens.npy")
    want = combined([outputs[k] for k in "abc"], mode, weights or [1, 1, 1])
    assert got.shape == (16, 10)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    if mode == "vote":  # the members disagree somewhere, or the test would prove little
        assert len({tuple(o.argmax(axis=1)) for o in outputs.values()}) > 1


def test_members_seeded_apart_differ_and_a_plain_weights_file_serves_prefixed_keys(members, tmp_path):
    d, outputs = members
    (tmp_path / "small.yaml").write_text(SMALL)
    (tmp_path / "e.yaml").write_text("ensemble:\n  members: [{spec: small.yaml, name: c}]\n  combine: mean_logits\n")
    arrays = dict(np.load(d / "c.npz"))
    np.savez(tmp_path / "all.npz", **{f"c.{k}": v for k, v in arrays.items()})
    ok(tmp_path, "compile", "e.yaml", "-o", "e.onnx", "--weights", "all.npz", "--strict-weights")
    ok(tmp_path, "run", "e.onnx", "--input", str(d / "x.npy"), "-o", "e.npy")
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), outputs["c"], atol=1e-6, rtol=0)
    assert not np.allclose(outputs["a"], outputs["b"])  # two seeds, two members


def test_summary_shows_each_member_and_totals_that_add_up(tmp_path):
    (tmp_path / "small.yaml").write_text(SMALL)
    (tmp_path / "e.yaml").write_text("name: e\nensemble:\n  members: [lenet5, small.yaml]\n")
    proc = ok(tmp_path, "summary", "e.yaml", "--format", "json")
    report = json.loads(proc.stdout)
    # LeNet-5: 61,706 params, 416,520 MACs (test_specs' published row). small: conv 4*(25+1) = 104,
    # dense 4*10+10 = 50; MACs 4*25*14*14 = 19,600 and 40
    assert [(m["name"], m["params"], m["macs"]) for m in report["members"]] == [
        ("lenet5", 61_706, 416_520), ("small", 154, 19_640)]
    assert report["params"]["total"] == 61_706 + 154 and report["macs"] == 416_520 + 19_640
    assert report["output_shape"] == [10] and report["input_shape"] == [1, 32, 32]
    table = ok(tmp_path, "summary", "e.yaml").stdout
    assert "Member lenet5:" in table and "Member small:" in table and "61,860" in table


def test_check_and_summary_of_an_ensemble_import_no_onnx(tmp_path):
    probe = ("import sys\nsys.path.insert(0, sys.argv[1])\nimport cli\n"
             "assert cli.main(['check', 'resnet18_ensemble', 'alexnet_10crop']) == 0\n"
             "assert cli.main(['summary', 'resnet18_ensemble']) == 0\n"
             "print(sorted(n for n in sys.modules if n.split('.')[0] in ('onnx', 'onnxruntime')))\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(ROOT)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_the_bundled_ensemble_adds_up_its_members():
    a = analyse("resnet18_ensemble")
    parts = [analyse(n) for n in ("resnet18", "vgg11_bn", "densenet121")]
    assert a.params == sum(p.params for p in parts) and a.macs == sum(p.macs for p in parts)
    assert {f.node.name for f in a.layers} >= {"resnet18.layer1.0.conv1", "vgg11_bn.features.0",
                                               "densenet121.features.denseblock1.denselayer1.conv1"}


ERRORS = [
    ("ensemble:\n  members: [lenet5, mlp]\n", 2, 21,
     "the member 'mlp' takes input [784], but 'lenet5' takes [1, 32, 32]; an ensemble's members share one input"),
    ("ensemble:\n  members: [lenet5, lenet5]\n", 2, 21,
     "two members are called 'lenet5'; give each a different `name:`"),
    ("ensemble:\n  members: [lenet5, lenet5]\n  weights: [1]\n", 3, 12,
     "'ensemble.weights' has 1 values for 2 members; give one per member"),
    ("ensemble:\n  members: [lenet5]\n  combine: max\n  weights: [2]\n", 4, 12,
     "'ensemble.weights' do not apply to combine: max"),
    ("ensemble:\n  members: [lenet5]\n  combine: median\n", 3, 12,
     "'ensemble.combine' must be one of 'mean_softmax', 'mean_logits', 'max', 'vote'; got 'median'"),
    ("ensemble:\n  members: [lenet5]\ninput: [1, 32, 32]\n", 3, 1,
     "'input' does not belong in an ensemble spec"),
    ("ensemble:\n  members: [lenet6]\n", 2, 13,
     "'ensemble.members' names 'lenet6', which is not a bundled spec"),
    ("ensemble:\n  members: [e.yaml]\n", 2, 13, "'ensemble.members' makes a loop: e.yaml -> e.yaml"),
    ("ensemble:\n  members: [lenet5, {spec: other.yaml, name: o}]\n", 2, 3,
     "an ensemble's members must give outputs of one shape to combine them; give every member the same classes "
     "(inputs: #1 'lenet5.output' [10], #2 'o.fc' [5])"),
]


@pytest.mark.parametrize("text,line,col,message", ERRORS, ids=[e[3][:40] for e in ERRORS])
def test_a_bad_ensemble_is_a_located_error(tmp_path, text, line, col, message):
    (tmp_path / "other.yaml").write_text("input: [1, 32, 32]\nlayers:\n  - flatten\n  - dense: 5\n    name: fc\n")
    (tmp_path / "e.yaml").write_text(text)
    proc = run_cli(tmp_path, "check", "e.yaml")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"e.yaml:{line}:{col}: error: "), proc.stderr
    assert message in proc.stderr


def test_weights_for_a_member_the_ensemble_lacks_is_a_usage_error(tmp_path):
    (tmp_path / "e.yaml").write_text("ensemble:\n  members: [lenet5]\n")
    np.savez(tmp_path / "w.npz", x=np.zeros(1, np.float32))
    proc = run_cli(tmp_path, "compile", "e.yaml", "-o", "e.onnx", "--weights", "other=w.npz")
    assert proc.returncode == 2
    assert "--weights other=w.npz: 'e' has no member 'other'; its members are lenet5" in proc.stderr


# -- members given as compiled models -------------------------------------------------------------
def foreign_model(path, opset: int = 17) -> np.ndarray:
    """A model convspec did not write (Flatten, MatMul, Add at opset 17); returns its matrix and bias."""
    rng = np.random.default_rng(9)
    matrix, bias = rng.standard_normal((1024, 10), dtype=np.float32) * 0.05, rng.standard_normal(10, dtype=np.float32)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Flatten", ["pixels"], ["flat"]), onnx.helper.make_node("MatMul", ["flat", "W"], ["y"]),
         onnx.helper.make_node("Add", ["y", "b"], ["scores"])], "foreign",
        [onnx.helper.make_tensor_value_info("pixels", onnx.TensorProto.FLOAT, ["n", 1, 32, 32])],
        [onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(matrix, "W"), numpy_helper.from_array(bias, "b")])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)], ir_version=8), path)
    return matrix, bias


def test_compiled_models_are_members_too(members):
    d, outputs = members
    matrix, bias = foreign_model(d / "foreign.onnx")
    (d / "mixed.yaml").write_text("name: mixed\nensemble:\n"
                                  "  members: [{spec: lenet5, name: a}, b.onnx, c.onnx, foreign.onnx]\n"
                                  "  weights: [1, 2, 3, 4]\n")
    ok(d, "compile", "mixed.yaml", "-o", "mixed.onnx", "--force", "--weights", "a=a.npz", "--strict-weights")
    ok(d, "run", "mixed.onnx", "--input", "x.npy", "-o", "mixed.npy", "--force")
    x = np.load(d / "x.npy")
    foreign = x.reshape(len(x), -1).astype(np.float64) @ matrix + bias  # numpy runs the foreign model
    want = combined([outputs["a"], outputs["b"], outputs["c"], foreign], "mean_softmax", [1, 2, 3, 4])
    np.testing.assert_allclose(np.load(d / "mixed.npy"), want, atol=1e-6, rtol=0)

    proc = ok(d, "summary", "mixed.yaml", "--format", "json")
    report = json.loads(proc.stdout)
    # a compiled LeNet-5 keeps its figures (its metadata has its MACs); the foreign model's MACs are unknown
    assert [(m["name"], m["params"], m["macs"]) for m in report["members"]] == [
        ("a", 61_706, 416_520), ("b", 61_706, 416_520), ("c", 154, 19_640), ("foreign", 1024 * 10 + 10, 0)]
    assert "'foreign.onnx' was not compiled by convspec, so its MACs are unknown and count as 0" in proc.stderr
    proc = run_cli(d, "compile", "mixed.yaml", "-o", "m2.onnx", "--weights", "b=b.npz")
    assert proc.returncode == 2 and "the member 'b' is a compiled model and keeps its own weights" in proc.stderr


def test_a_bad_onnx_member_is_a_located_error(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + bytes(50))
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", "c", 8, 8])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", "c", 8, 8])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)]), tmp_path / "dyn.onnx")
    for member, message in (("junk.onnx", "'junk.onnx' is not a readable ONNX model (a field runs past its message)"),
                            ("dyn.onnx", "the input 'x' of 'dyn.onnx' is ['?', '?', 8, 8]; an ensemble member needs a "
                                         "batch axis and fixed sizes after it"),
                            ("none.onnx", "'ensemble.members' names 'none.onnx', which does not exist")):
        (tmp_path / "e.yaml").write_text(f"ensemble:\n  members: [lenet5, {member}]\n")
        proc = run_cli(tmp_path, "check", "e.yaml")
        assert proc.returncode == 1
        assert proc.stderr.startswith("e.yaml:2:21: error: ") and message in proc.stderr, proc.stderr


@pytest.mark.slow  # three torchvision models, 153 M parameters
def test_the_bundled_ensemble_is_torchvisions_three_models_averaged(tmp_path):
    """PyTorch eager is the reference: torchvision's resnet18, vgg11_bn and densenet121 with
    random weights and perturbed BatchNorm, their softmax outputs averaged in torch."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from test_torchvision_parity import torchvision_model

    names = ("resnet18", "vgg11_bn", "densenet121")
    models = [torchvision_model(n) for n in names]
    flags = []
    for name, model in zip(names, models):
        torch.save(model.state_dict(), tmp_path / f"{name}.pth")
        flags += ["--weights", f"{name}={name}.pth"]
    ok(tmp_path, "compile", "resnet18_ensemble", "-o", "e.onnx", "--strict-weights", *flags)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    np.save(tmp_path / "x.npy", x.numpy())
    ok(tmp_path, "run", "e.onnx", "--input", "x.npy", "-o", "e.npy")
    with torch.no_grad():
        want = torch.stack([torch.softmax(m(x), dim=1) for m in models]).mean(dim=0).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), want, atol=1e-6, rtol=1e-4)
