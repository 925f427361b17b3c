"""Figures measured with PyTorch from outside the project, one row per model, one shape.

tests/data/torchvision_figures.json (torchvision 0.28's classic models; its "source" field says how)
and tests/data/modern_figures.json (a copy of ../shared/reference/modern_figures.json: the rest of
torchvision's CNNs, FCN and a U-Net) are read into the same row form:
params_trainable, params_non_trainable, macs, input_shape, output_shape.
"""

from __future__ import annotations

import json
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
