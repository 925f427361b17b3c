"""A model as runtime takes it, whatever made it, and what running it needs to know about it."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from compiler.errors import RunError
from compiler.preprocess import RAW_KEY
from compiler.output import replacing

FLOAT, UINT8 = 1, 2  # onnx.TensorProto.FLOAT, .UINT8
MAX_RANK = 32  # numpy's arrays have at most 64 axes; an image model needs 4
MAX_ELEMENTS = 2**34  # a fixed-size input, as a spec's tensors are bounded (compiler/infer.py): 64 GiB of float32
MAX_METADATA_NUMBER = 3.4e38  # float32's range: preprocess numbers apply to float32 pixels


@dataclass(frozen=True)
class Model:
    """An ONNX model to run or export, from an .onnx file or from a compiler that hands it over.

    onnxruntime opens `path` when there is one; otherwise runtime chooses between `serialize()`
    and the files `write` leaves in a temporary folder (see runtime.session).
    """

    proto: object  # an onnx.ModelProto: inputs, outputs, metadata; its weights may be left out
    write: Callable[..., list]  # write(path, force=False, companions=None) -> the files written, as one unit
    weight_bytes: int = 0
    serialize: Callable[[], bytes] | None = None  # the whole model as one protobuf message
    path: str | None = None  # an .onnx file onnxruntime can read as it is

    @property
    def info(self) -> ModelInfo:
        return read_info(self.proto)


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
    raw_size: tuple | None = None  # a model compiled with --raw-input (uint8 [N, H, W, C]): an image size for random input


def dims(value) -> list:
    """A tensor's sizes, None where dynamic; ONNX has no negative size, so one means a damaged file."""
    sizes = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    if any(s is not None and s < 0 for s in sizes):
        raise RunError(f"the model's tensor '{value.name}' has a negative size in its shape {_shape(sizes)}; "
                       "the file is damaged", exit_code=1)
    return sizes


def _shape(sizes) -> str:
    return "[" + ", ".join("?" if s is None else str(s) for s in sizes) + "]"


def read_info(model) -> ModelInfo:
    """From an onnx.ModelProto; its first graph input (not an initializer) is the data input."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs:
        raise RunError("the model has no input to feed", exit_code=1)
    first = inputs[0]
    meta = {p.key: p.value for p in model.metadata_props}
    if "convspec.augment" in meta:  # its inputs are images, a seed and an offset, not one batch to classify
        raise RunError("the model is an augmentation graph (compile --augment), not a network; apply it with "
                       "`convspec augment run SPEC IMAGES... -o OUT.npz`", exit_code=2)
    raw = _metadata(meta, RAW_KEY, None, lambda v: isinstance(v, dict) and isinstance(v.get("size"), list)
                    and len(v["size"]) == 2 and all(type(x) is int and 0 < x <= 2**16 for x in v["size"]))
    if raw and first.type.tensor_type.elem_type != UINT8:
        raise RunError(f"the model's metadata '{RAW_KEY}' says it takes raw pixels, but its input '{first.name}' is "
                       "not uint8; re-export the model or remove that entry", exit_code=1)
    if not raw and first.type.tensor_type.elem_type != FLOAT:
        raise RunError(f"the model's input '{first.name}' is not float32; convspec runs float32 models only",
                       exit_code=1)
    sizes = dims(first)
    for value in graph.output:
        dims(value)
    if not sizes:
        raise RunError(f"the model's input '{first.name}' has no batch axis", exit_code=1)
    if len(sizes) > MAX_RANK:
        raise RunError(f"the model's input '{first.name}' has {len(sizes)} axes; convspec takes at most {MAX_RANK}",
                       exit_code=1)
    known = math.prod(s for s in sizes if s is not None)
    if known > MAX_ELEMENTS:
        raise RunError(f"the model's input '{first.name}' of shape {_shape(sizes)} has {known:,} elements, more "
                       f"than {MAX_ELEMENTS:,} (64 GiB of float32); the file is damaged or not meant to run here",
                       exit_code=1)
    return ModelInfo(
        name=meta.get("convspec.spec", graph.name) or "model",
        input_name=first.name,
        input_shape=tuple(sizes[1:]),
        output_names=[o.name for o in graph.output],
        fixed_batch=sizes[0],
        macs=_metadata(meta, "convspec.macs", 0, lambda v: type(v) is int and 0 <= v < 2**63),
        labels=_metadata(meta, "convspec.labels", [], lambda v: isinstance(v, list)
                         and all(isinstance(x, str) for x in v)),
        preprocess=_metadata(meta, "convspec.preprocess", {}, _valid_preprocess),
        raw_size=tuple(raw["size"]) if raw else None,
    )


def _metadata(meta: dict, key: str, default, valid):
    """A JSON value from the model's metadata; a damaged one (any file may be edited) is an error."""
    if key not in meta:
        return default
    try:
        value = json.loads(meta[key])
    except (ValueError, RecursionError):  # not JSON, an integer of thousands of digits, or nested too deep
        value = None
    if not valid(value):
        raise RunError(f"the model's metadata '{key}' is damaged ({meta[key][:60]!r}); re-export the model "
                       "or remove that entry", exit_code=1)
    return value


def _number(x) -> bool:
    """A finite number within float32's range (JSON gives NaN, Infinity, 1e400 as inf, and 10**400)."""
    return type(x) in (int, float) and abs(x) <= MAX_METADATA_NUMBER


def _valid_preprocess(value) -> bool:
    def numbers(v, positive=False):
        return isinstance(v, list) and all(_number(x) and (x > 0 or not positive) for x in v)

    def size(v):  # resize and crop: N, or [h, w]
        listed = [v] if type(v) is int else v if isinstance(v, list) and len(v) == 2 else None
        return numbers(listed, positive=True) and all(type(x) is int for x in listed)

    if not isinstance(value, dict):
        return False
    return (_number(value.get("scale", 1.0)) and numbers(value.get("mean", []))
            and numbers(value.get("std", []), positive=True) and value.get("channels", "RGB") in ("RGB", "BGR")
            and size(value.get("resize", 1)) and size(value.get("crop", 1)))


def read_model(path: str) -> Model:
    """An .onnx file, checked by onnx's reader; external data beside it must stay inside its folder."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, load_external_data_for_model

    p = Path(path)
    if not p.exists():
        raise RunError(f"{path}: no such file")
    try:
        model = onnx.load(str(p), load_external_data=False)
        # every tensor, in node attributes and subgraphs too (onnx's own walk, pinned with onnx)
        locations = {os.path.normpath(ExternalDataInfo(t).location) for t in _get_all_tensors(model)
                     if t.data_location == onnx.TensorProto.EXTERNAL}
        load_external_data_for_model(model, os.path.dirname(os.path.abspath(p)))  # as onnx.load: refuses one outside
    except Exception as e:  # protobuf's DecodeError, onnx's refusal of external data outside the folder, ...
        raise RunError(f"{path}: not a readable ONNX model ({e})") from None
    if not model.graph.node or not model.opset_import:  # an empty file parses as an empty model
        raise RunError(f"{path}: not an ONNX model (it has no graph or no opset)")
    return Model(model, _copier(p, sorted(locations)), path=str(p))


def _copier(source: Path, locations: list) -> Callable[..., list]:
    """`Model.write` for a file: a byte copy of it and of its external data, which keep their relative places."""

    def write(path, force: bool = False, companions: dict | None = None) -> list:
        extra = dict(companions or {})
        pairs = [(source.parent / loc, Path(path).parent / loc) for loc in locations] + [(source, Path(path))]
        with replacing([*extra, *(target for _, target in pairs)], force) as temps:  # the model last
            for temp, text in zip(temps, extra.values()):
                temp.write_text(text, encoding="utf-8")
            for temp, (origin, _) in zip(temps[len(extra):], pairs):
                shutil.copyfile(origin, temp)
        return [str(pairs[-1][1])] + [str(target) for _, target in pairs[:-1]] + [str(p) for p in extra]

    return write

