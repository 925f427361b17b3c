"""Compile a spec to an ONNX file: analyse -> weights -> lower -> save.

`save` streams the weights to disk one tensor at a time, writing the protobuf wire format of
each initializer itself, so compiling VGG-19 (575 MB of weights) needs about its size in
memory, not three copies. Past protobuf's 2 GB limit the weights go to a side file (ONNX
external data) instead of failing inside protobuf. It is named after the model and its own
content, `<model>.onnx.<first 16 hex digits of its sha256>.data`, and the model, which names it,
is renamed into place last: a model can only ever name the data written with it, so a Ctrl-C or
a concurrent compile between the two renames leaves the old model on its old data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .infer import Analysis
from .lower import DEFAULT_OPSET, Lowered, lower
from .output import replacing
from .progress import Progress
from .weights import imported, read_weight_files, seeded

EXTERNAL_THRESHOLD = 1_900_000_000  # bytes of weights past which they go to a side file (2 GB limit)


def compile_spec(analysis: Analysis, weights: str | list[str] | None = None, seed: int = 0,
                 opset: int = DEFAULT_OPSET, show_progress: bool = False, strict_weights: bool = True,
                 warn=None, precision: str = "fp32") -> Lowered:
    """Lower with seeded or imported weights; the weights stay arrays (see `save`).

    `precision` "fp16" converts weights and arithmetic to float16 (compiler/half.py), keeping
    the model's input and outputs float32.

    Imported weights that do not fit are an error with `strict_weights`; otherwise they are
    seeded instead, and `warn(message)` hears which.
    """
    files = [weights] if isinstance(weights, str) else list(weights or [])  # FILE, or MEMBER=FILE for an ensemble
    if files:
        source = imported(analysis, read_weight_files(analysis, files), ", ".join(files), strict_weights, seed, warn)
    else:
        source = seeded(analysis, seed)
    progress = Progress(f"compiling {analysis.graph.name}") if show_progress else None
    try:
        lowered = lower(analysis, source, opset, progress)
    finally:
        if progress:
            progress.close()
    meta = lowered.model.metadata_props
    # the file's name only: the same weights give the same bytes however the path was spelled
    meta.add(key="convspec.weights", value=", ".join(map(_file_name, files)) if files else f"seeded:{seed}")
    attached = analysis.graph.attachments
    if attached.frozen:  # for training tools: which weights to keep fixed
        frozen = [w.key(f.node.name) for f in analysis.layers if f.node.name in attached.frozen
                  for w in f.node.layer.weights(*f.input_shapes)]
        meta.add(key="convspec.frozen", value=json.dumps(frozen))
    if attached.preprocess is not None:
        meta.add(key="convspec.preprocess", value=json.dumps(attached.preprocess))
    if attached.labels is not None:  # the labels travel inside the model
        meta.add(key="convspec.labels", value=json.dumps(attached.labels))
    if precision == "fp16":
        from .half import to_fp16

        lowered = to_fp16(lowered, {f.node.name for f in analysis.layers if f.node.layer.fp32})
    return lowered


def _file_name(ref: str) -> str:
    """A weights file's name without its folder (`a=w/a.npz` -> `a=a.npz`): the same weights give
    the same bytes however the path was spelled."""
    member, sep, path = ref.partition("=")
    return f"{member}={Path(path).name}" if sep and not Path(ref).exists() else Path(ref).name


# -- writing ------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _dtype(array: np.ndarray) -> int:
    """TensorProto's type of a weight array: FLOAT, or FLOAT16 after `--precision fp16`."""
    return helper.np_dtype_to_tensor_dtype(array.dtype)


def _tensor_head(name: str, array: np.ndarray) -> bytes:
    """TensorProto fields before raw_data: dims (1), data_type (2), name (8), raw_data's key and length (9)."""
    encoded = name.encode()
    head = b"".join(_key(1, 0) + _varint(d) for d in array.shape)
    head += _key(2, 0) + _varint(_dtype(array)) + _key(8, 2) + _varint(len(encoded)) + encoded
    return head + _key(9, 2) + _varint(array.nbytes)


def save(lowered: Lowered, path: str, force: bool = False, companions: dict | None = None) -> list[str]:
    """Write the model; return the files written (two when the weights go to a side file).

    `companions` maps more paths to their text (a Triton config): they are written in the same
    unit. The files appear complete or not at all (see `output.replacing`).
    """
    extra = {Path(k): v for k, v in (companions or {}).items()}
    out = Path(path)
    data = [data_file(out, lowered.weights)] if lowered.weight_bytes > EXTERNAL_THRESHOLD else []
    with replacing([*extra, *data, out], force) as temps:  # the model last
        for temp, text in zip(temps, extra.values()):
            temp.write_text(text, encoding="utf-8")
        if data:
            _save_external(lowered, temps[-1], temps[-2], data[0].name)
        else:
            _save_inline(lowered, temps[-1])
    return [str(out)] + [str(p) for p in data] + [str(p) for p in extra]


def data_file(path, weights) -> Path:
    """Where a model's external data go: beside it, named after it and after their own bytes."""
    digest = hashlib.sha256()
    for _, array in weights:
        digest.update(memoryview(array).cast("B"))
    return Path(path).with_name(f"{Path(path).name}.{digest.hexdigest()[:16]}.data")


def leftover_data(path, written) -> list[Path]:
    """Side files named after the model at `path` (this scheme's, or the earlier `<model>.data`)
    that it does not use: the weights of the models it replaced. They are kept, never removed, for
    a concurrent compile's model may be about to name one."""
    out = Path(path)
    ours = re.compile(re.escape(out.name) + r"(\.[0-9a-f]{16})?\.data")
    try:
        names = sorted(e.name for e in os.scandir(out.parent) if ours.fullmatch(e.name))
    except OSError:
        return []
    return [p for p in (out.with_name(n) for n in names) if str(p) not in written]


def _save_inline(lowered: Lowered, out: Path) -> None:
    """ModelProto = its other fields + the graph field (7), whose initializers (5) we append ourselves.

    Protobuf allows a message's fields in any order, so the weights can follow the rest of the
    graph; each is written straight from its numpy buffer.
    """
    shell = onnx.ModelProto()
    shell.CopyFrom(lowered.model)
    graph = shell.graph.SerializeToString()
    shell.ClearField("graph")
    heads = [_tensor_head(key, array) for key, array in lowered.weights]
    sizes = [len(h) + a.nbytes for h, (_, a) in zip(heads, lowered.weights)]
    graph_size = len(graph) + sum(len(_key(5, 2)) + len(_varint(n)) + n for n in sizes)
    with open(out, "wb") as f:
        f.write(shell.SerializeToString())
        f.write(_key(7, 2) + _varint(graph_size))
        f.write(graph)
        for head, size, (_, array) in zip(heads, sizes, lowered.weights):
            f.write(_key(5, 2) + _varint(size) + head)
            f.write(memoryview(array).cast("B"))


def _save_external(lowered: Lowered, out: Path, data: Path, data_name: str) -> None:
    """The weights in `data`, which the model names `data_name` (its final name, beside it)."""
    model = onnx.ModelProto()
    model.CopyFrom(lowered.model)
    offset = 0
    with open(data, "wb") as f:
        for key, array in lowered.weights:
            tensor = TensorProto(name=key, data_type=_dtype(array), dims=array.shape,
                                 data_location=TensorProto.EXTERNAL)
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(array.nbytes))):
                tensor.external_data.add(key=k, value=v)
            model.graph.initializer.append(tensor)
            f.write(memoryview(array).cast("B"))
            offset += array.nbytes
    out.write_bytes(model.SerializeToString())
