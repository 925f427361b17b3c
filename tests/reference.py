"""Figures measured with PyTorch from outside the project, one row per model, one shape.

tests/data/torchvision_figures.json (torchvision 0.28's classic models; its "source" field says how)
and tests/data/modern_figures.json (a copy of ../shared/reference/modern_figures.json: the rest of
torchvision's CNNs, FCN and a U-Net) are read into the same row form:
params_trainable, params_non_trainable, macs, input_shape, output_shape.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

DATA = Path(__file__).parent / "data"


def _modern_row(row: dict) -> dict:
    return {"params_trainable": row["params_trainable"],
            "params_non_trainable": row["params_total"] - row["params_trainable"],
            "macs": row["macs"], "input_shape": row["input"], "output_shape": row["out"]}


CLASSIC = json.loads((DATA / "torchvision_figures.json").read_text())["models"]
MODERN = {name: _modern_row(row) for name, row in json.loads((DATA / "modern_figures.json").read_text()).items()}
REFERENCE = {**CLASSIC, **MODERN}
# models in the reference that torchvision does not define (no parity test is possible)
NOT_IN_TORCHVISION = {"unet"}


def import_torchvision():
    """torchvision, the test reference, or the test skipped with how to install it.

    torchvision 0.28's package import fails on CPU torch until its module
    `torchvision._meta_registrations` is replaced by an empty one (DESIGN.md); after that its
    model definitions and transforms work.
    """
    import pytest

    pytest.importorskip("torch", reason="torch is not installed: `pip install torch==2.13.0` runs these")
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    try:
        import torchvision
    except ImportError as e:
        pytest.skip(f"torchvision is not importable ({e}): `pip install --no-deps torchvision==0.28.0`")
    return torchvision
