"""What running a model needs to know about it, read from the ONNX file alone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from compiler.errors import RunError

FLOAT = 1  # onnx.TensorProto.FLOAT


@dataclass
class ModelInfo:
    name: str
    input_name: str
    input_shape: tuple  # without the batch; None where the size is dynamic
    output_names: list
    fixed_batch: int | None = None  # the batch size, when the model fixes it
    macs: int = 0
    labels: list = field(default_factory=list)
    preprocess: dict = field(default_factory=dict)


def _dims(value) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def read_info(model) -> ModelInfo:
    """From an onnx.ModelProto; its first graph input (not an initializer) is the data input."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs:
        raise RunError("the model has no input to feed", exit_code=1)
    first = inputs[0]
    if first.type.tensor_type.elem_type != FLOAT:
        raise RunError(f"the model's input '{first.name}' is not float32; convspec runs float32 models only",
                             exit_code=1)
    dims = _dims(first)
    if not dims:
        raise RunError(f"the model's input '{first.name}' has no batch axis", exit_code=1)
    meta = {p.key: p.value for p in model.metadata_props}
    return ModelInfo(
        name=meta.get("convspec.spec", graph.name) or "model",
        input_name=first.name,
        input_shape=tuple(dims[1:]),
        output_names=[o.name for o in graph.output],
        fixed_batch=dims[0],
        macs=_metadata(meta, "convspec.macs", 0, lambda v: isinstance(v, int) and v >= 0),
        labels=_metadata(meta, "convspec.labels", [], lambda v: isinstance(v, list)
                         and all(isinstance(x, str) for x in v)),
        preprocess=_metadata(meta, "convspec.preprocess", {}, _valid_preprocess),
    )


def _metadata(meta: dict, key: str, default, valid):
    """A JSON value from the model's metadata; a damaged one (any file may be edited) is an error."""
    if key not in meta:
        return default
    try:
        value = json.loads(meta[key])
    except ValueError:
        value = None
    if not valid(value):
        raise RunError(f"the model's metadata '{key}' is damaged ({meta[key][:60]!r}); re-export the model "
                             "or remove that entry", exit_code=1)
    return value


def _valid_preprocess(value) -> bool:
    def numbers(v):
        return isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)

    if not isinstance(value, dict):
        return False
    resize = value.get("resize", 1)
    return (isinstance(value.get("scale", 1.0), (int, float)) and numbers(value.get("mean", []))
            and numbers(value.get("std", [])) and (isinstance(resize, int) or numbers(resize) and len(resize) == 2))


def load_onnx(path: str):
    """Read an .onnx file (external data beside it is found by onnx)."""
    import onnx

    p = Path(path)
    if not p.exists():
        raise RunError(f"{path}: no such file")
    try:
        model = onnx.load(str(p))
    except Exception as e:  # protobuf's DecodeError, onnx's refusal of external data outside the folder, ...
        raise RunError(f"{path}: not a readable ONNX model ({e})") from None
    if not model.graph.node or not model.opset_import:  # an empty file parses as an empty model
        raise RunError(f"{path}: not an ONNX model (it has no graph or no opset)")
    return model


def run(session, feeds: dict) -> list:
    """session.run, with onnxruntime's refusal (wrong rank, type, size) as one clean line."""
    try:
        return session.run(None, feeds)
    except Exception as e:  # onnxruntime's own exception types: a refused input, or a model it cannot compute
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"onnxruntime could not run the model: {first}", exit_code=1) from None
