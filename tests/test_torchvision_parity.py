"""Parity with torchvision: the same random weights give the same outputs.

For every bundled spec named like a torchvision model: give torchvision's model random weights
and perturbed BatchNorm statistics, save its state_dict as .pth and as .safetensors, compile
the spec with each, and compare onnxruntime (CPU) with PyTorch eager to 1e-4 relative, on a batch
of two and on its first sample alone (the batch axis is dynamic). The compiled file also gets
test_compile's checks (onnx's checker and shape inference), which test_compile then leaves out
for these specs. torchvision is a test reference only (see DESIGN.md); without torch these tests
skip, and test_compile checks these specs on its own compile instead.
"""

from __future__ import annotations


import numpy as np
import onnxruntime as ort
import pytest

from compiler.build import compile_spec, save
from compiler.pipeline import analyse
from compiler.zoo import bundled
from reference import NOT_IN_TORCHVISION, REFERENCE, import_torchvision
from test_compile import assert_sound
from weightfiles import write_safetensors

torch = pytest.importorskip("torch", reason="torch is not installed: `pip install torch==2.13.0` runs these")


def _torchvision():
    return import_torchvision()


SPECS = sorted(p.stem for p in bundled() if p.stem in REFERENCE and p.stem not in NOT_IN_TORCHVISION)

# constructor arguments that make torchvision's model the bundled spec's: no auxiliary heads
CONSTRUCTOR = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
    "fcn_resnet50": {"num_classes": 21, "aux_loss": False, "weights_backbone": None},
}
NORMS = ("BatchNorm2d", "BatchNorm1d", "LayerNorm", "LayerNorm2d", "GroupNorm", "InstanceNorm2d")


def torchvision_model(name: str):
    """torchvision's model with its normalisation and layer scales perturbed off their initial 1s
    and 0s, so that a weight loaded into the wrong place shows in the outputs."""
    torchvision = _torchvision()
    models = torchvision.models.segmentation if name.startswith("fcn_") else torchvision.models
    model = getattr(models, name)(weights=None, **CONSTRUCTOR.get(name, {}))
    generator = torch.Generator().manual_seed(0)

    def perturb(tensor, low, high):
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ in NORMS:
                for tensor_name, (low, high) in {"weight": (0.5, 1.5), "bias": (-0.5, 0.5),
                                                 "running_mean": (-0.2, 0.2), "running_var": (0.5, 1.5)}.items():
                    if getattr(module, tensor_name, None) is not None:
                        perturb(getattr(module, tensor_name), low, high)
            if getattr(module, "layer_scale", None) is not None:  # ConvNeXt's, initially 1e-6
                perturb(module.layer_scale, 0.5, 1.5)
    return model.eval()


def eager(model, x):
    with torch.no_grad():
        out = model(x)
    return (out["out"] if isinstance(out, dict) else out).numpy()  # segmentation models return a dict


@pytest.mark.slow
@pytest.mark.parametrize("name", SPECS)
def test_onnx_matches_pytorch_eager(tmp_path, name):
    model = torchvision_model(name)
    state = model.state_dict()
    torch.save(state, tmp_path / "w.pth")
    write_safetensors(tmp_path / "w.safetensors",
                      {k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")})
    a = analyse(name)
    from_pth = compile_spec(a, weights=str(tmp_path / "w.pth"))
    from_safetensors = compile_spec(a, weights=str(tmp_path / "w.safetensors"))
    assert [key for key, _ in from_pth.weights] == [key for key, _ in from_safetensors.weights]
    for (key, x), (_, y) in zip(from_pth.weights, from_safetensors.weights):
        assert np.array_equal(x, y), f"{name}: {key} differs between the .pth and the .safetensors file"
    (path,) = save(from_pth, str(tmp_path / "m.onnx"))
    assert_sound(a, from_pth, path)

    x = torch.randn(2, *a.graph.input_shape, generator=torch.Generator().manual_seed(1))
    expected = eager(model, x)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for batch in (2, 1):
        outputs = session.run(None, {"input": x[:batch].numpy()})
        assert [y.shape for y in outputs] == [(batch, *shape) for shape in a.output_shapes]
        got, want = outputs[0], expected[:batch]
        relative = np.abs(got - want).max() / np.abs(want).max()
        assert relative < 1e-4, f"{name}, batch {batch}: max |onnx - torch| / max |torch| = {relative:.2e}"
