"""Parity with torchvision: the same random weights give the same outputs.

For every bundled spec named like a torchvision model: give torchvision's model random weights
and perturbed BatchNorm statistics, save its state_dict as .pth and as .safetensors, compile
the spec with each, and compare onnxruntime (CPU) with PyTorch eager to 1e-4 relative.
torchvision is a test reference only (see DESIGN.md); without torch these tests skip.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from compiler.build import compile_spec, save
from compiler.pipeline import analyse
from compiler.zoo import bundled
from weightfiles import write_safetensors

torch = pytest.importorskip("torch", reason="torch is not installed: `pip install torch==2.13.0` runs these")


def _torchvision():
    # torchvision 0.28's package import fails on CPU torch until this module is stubbed (DESIGN.md).
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    try:
        import torchvision
    except ImportError as e:
        pytest.skip(f"torchvision is not importable ({e}): `pip install --no-deps torchvision==0.28.0`")
    return torchvision


REFERENCE = json.loads((Path(__file__).parent / "data" / "torchvision_figures.json").read_text())["models"]
SPECS = sorted(p.stem for p in bundled() if p.stem in REFERENCE)


def torchvision_model(name: str):
    torchvision = _torchvision()
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_mean.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model.eval()


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

    x = torch.randn(2, *a.graph.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    relative = np.abs(got - expected).max() / np.abs(expected).max()
    assert relative < 1e-4, f"{name}: max |onnx - torch| / max |torch| = {relative:.2e}"
