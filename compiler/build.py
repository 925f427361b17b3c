"""Compile a spec to an ONNX file: analyse -> weights -> lower -> save.

Models past protobuf's 2 GB limit are written with their weights in a side file
(`<model>.onnx.data`, ONNX external data) instead of failing inside protobuf.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import onnx

from .errors import UsageError
from .infer import Analysis
from .lower import DEFAULT_OPSET, LoweringError, build_model
from .weights import imported, read_weights, seeded

PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_THRESHOLD = 1_900_000_000  # bytes of weights; leaves room for the graph itself


class Progress:
    """A one-line progress bar on stderr, shown only on a terminal and only after a moment."""

    def __init__(self, label: str, delay: float = 0.5, stream=sys.stderr):
        self.label, self.delay, self.stream = label, delay, stream
        self.start = time.monotonic()
        self.shown = False
        self.enabled = stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or time.monotonic() - self.start < self.delay:
            return
        width = 30
        filled = width * done // total
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} layers")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def weights_source(analysis: Analysis, weights: str | None, seed: int):
    if weights:
        return imported(analysis, read_weights(weights), weights)
    return seeded(analysis, seed)


def compile_model(analysis: Analysis, weights: str | None = None, seed: int = 0,
                  opset: int = DEFAULT_OPSET, show_progress: bool = False) -> onnx.ModelProto:
    progress = Progress(f"compiling {analysis.graph.name}") if show_progress else None
    try:
        model = build_model(analysis, weights_source(analysis, weights, seed), opset, progress)
    finally:
        if progress:
            progress.close()
    model.metadata_props.add(key="convspec.weights", value=weights or f"seeded:{seed}")
    extras = analysis.graph.extras
    if "preprocess" in extras:
        model.metadata_props.add(key="convspec.preprocess", value=json.dumps(extras["preprocess"]))
    if "labels" in extras:  # the labels travel inside the model
        model.metadata_props.add(key="convspec.labels", value=json.dumps(read_labels(extras["labels"])))
    return model


def read_labels(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UsageError(f"{path}: cannot read the labels file: {e.strerror}") from None
    return [line.strip() for line in lines if line.strip()]


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def save(model: onnx.ModelProto, path: str) -> list[str]:
    """Write the model; return the files written (two when the weights go to a side file)."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if weight_bytes(model) > EXTERNAL_THRESHOLD:
            data = out.name + ".data"
            onnx.save_model(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data, size_threshold=1024)
            return [str(out), str(out.parent / data)]
        out.write_bytes(model.SerializeToString())
        return [str(out)]
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {e.strerror}") from None
    except ValueError as e:  # protobuf refuses messages past 2 GB
        raise LoweringError(f"the model is too large to serialise ({e}); its weights should have gone to "
                            "external data: please report this") from None
