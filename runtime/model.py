"""What running a model needs to know about it, read from the ONNX file alone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import RuntimeFailure


@dataclass
class ModelInfo:
    name: str
    input_name: str
    input_shape: tuple  # without the batch
    output_names: list
    macs: int = 0
    labels: list = field(default_factory=list)
    preprocess: dict = field(default_factory=dict)


def read_info(model) -> ModelInfo:
    """From an onnx.ModelProto (the graph's first input is the data input)."""
    graph = model.graph
    meta = {p.key: p.value for p in model.metadata_props}
    first = graph.input[0]
    dims = [d.dim_value for d in first.type.tensor_type.shape.dim][1:]
    return ModelInfo(
        name=meta.get("convspec.spec", graph.name),
        input_name=first.name,
        input_shape=tuple(dims),
        output_names=[o.name for o in graph.output],
        macs=int(meta.get("convspec.macs", 0) or 0),
        labels=json.loads(meta["convspec.labels"]) if "convspec.labels" in meta else [],
        preprocess=json.loads(meta["convspec.preprocess"]) if "convspec.preprocess" in meta else {},
    )


def load_onnx(path: str):
    """Read an .onnx file (external data beside it is found by onnx)."""
    import onnx

    p = Path(path)
    if not p.exists():
        raise RuntimeFailure(f"{path}: no such file")
    try:
        return onnx.load(str(p))
    except Exception as e:  # protobuf's DecodeError and friends
        raise RuntimeFailure(f"{path}: not a readable ONNX model ({e})") from None
