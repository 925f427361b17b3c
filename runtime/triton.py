"""A Triton Inference Server model repository for one ONNX model: DIR/<name>/1/model.onnx + config.pbtxt."""

from __future__ import annotations

import re
from pathlib import Path

from compiler.errors import RunError

from .model import Model, dims

KINDS = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}
TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8"}  # onnx's FLOAT, and UINT8 for a --raw-input model's pixels
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # fullmatch: `$` would let a final newline into a folder name


def quoted(text: str) -> str:
    """A protobuf text-format string: ONNX names are any text, and a raw quote or newline in one
    would let a model add lines of its own to config.pbtxt (`backend: "python"`). Every byte that
    is not printable ASCII, and the quote and backslash, become octal escapes, as protobuf's own
    CEscape writes them."""
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\{b:03o}"
                         for b in text.encode("utf-8")) + '"'


def _dims(value) -> list[int]:
    """Triton writes a dynamic size as -1."""
    return [-1 if d is None else d for d in dims(value)]


def config_text(model, name: str, max_batch: int = 64, instances: int = 1, kind: str = "auto") -> str:
    """config.pbtxt: inputs and outputs with their dims, dynamic batching, an instance group.

    With a dynamic batch axis Triton batches (max_batch_size > 0, dims without the batch); a
    model whose batch is fixed gets max_batch_size 0 and its full dims.
    """
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    batched = all(_dims(v)[:1] == [-1] for v in inputs + list(graph.output))

    def tensor(value):
        dims = _dims(value)[1:] if batched else _dims(value)
        kind = TYPES.get(value.type.tensor_type.elem_type, "TYPE_FP32")
        return f'  {{ name: {quoted(value.name)}, data_type: {kind}, dims: [ {", ".join(map(str, dims))} ] }}'

    lines = [f"name: {quoted(name)}", 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch if batched else 0}",
             "input [", ",\n".join(tensor(v) for v in inputs), "]",
             "output [", ",\n".join(tensor(v) for v in graph.output), "]"]
    if batched:
        lines.append("dynamic_batching { max_queue_delay_microseconds: 100 }")
    lines.append(f"instance_group [ {{ count: {instances}, kind: {KINDS[kind]} }} ]")
    return "\n".join(lines) + "\n"


def repository_paths(directory: str, name: str) -> tuple[str, str]:
    """Where a model called `name` goes in a repository: (DIR/name/1/model.onnx, DIR/name/config.pbtxt)."""
    if not NAME.fullmatch(name):
        raise RunError(f"'{name}' cannot name a Triton model: use letters, digits, '_', '.' and '-' "
                       "(--name sets it)")
    root = Path(directory) / name
    return str(root / "1" / "model.onnx"), str(root / "config.pbtxt")


def export(model: Model, directory: str, name: str | None = None, max_batch: int = 64, instances: int = 1,
           kind: str = "auto", force: bool = False) -> list[str]:
    """Write `model` and its config.pbtxt into the repository at `directory`, as one unit; return the files."""
    info = model.info  # a damaged model (a negative size, absurd metadata) is refused before anything is written
    name = name or info.name
    model_path, config_path = repository_paths(directory, name)
    return model.write(model_path, force, {config_path: config_text(model.proto, name, max_batch, instances, kind)})
