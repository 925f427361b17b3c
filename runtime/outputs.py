"""A run's outputs: the lines that show them, and the .npy or .npz file that keeps them."""

from __future__ import annotations

import numpy as np

from compiler.errors import UsageError, printable
from compiler.output import check_writable, replacing


def refuse_early(path: str, force: bool) -> None:
    """Before any work: refuse to overwrite a file whose name is already final."""
    if path.endswith((".npy", ".npz")):
        check_writable([path], force)


def target(path: str, count: int, force: bool) -> str:
    """Where `count` outputs go: one as .npy, several as one .npz; like numpy, add a missing suffix."""
    if path.endswith(".npy") and count > 1:
        raise UsageError(f"{path}: the model has {count} outputs, which go to one .npz file; name it .npz")
    suffix = ".npy" if count == 1 else ".npz"
    path = path if path.endswith(suffix) else path + suffix
    check_writable([path], force)
    return path


def save(path: str, outputs: dict, force: bool) -> None:
    """`outputs` (name -> array) to `path` from `target`, written atomically."""
    with replacing([path], force) as (temp,):
        with open(temp, "wb") as f:
            if len(outputs) == 1:
                np.save(f, next(iter(outputs.values())))
            else:
                np.savez(f, **outputs)


def describe(outputs: dict, labels: list, top: int) -> list[str]:
    """One line per output, or per sample of a class-score output: its top classes, named by `labels`."""
    lines = []
    for name, y in outputs.items():
        if y.size == 0:
            lines.append(f"{name}: shape {list(y.shape)}, empty")
        elif y.ndim == 2 and y.shape[1] > 1:
            for i, row in enumerate(y):
                best = np.argsort(-row, kind="stable")[:top]
                ranked = ", ".join(f"{k} {labels[k]!r} {row[k]:.4g}" if k < len(labels) else f"{k} {row[k]:.4g}"
                                   for k in best)
                lines.append(f"{name}[{i}] top-{len(best)}: {ranked}")
        else:
            lines.append(f"{name}: shape {list(y.shape)}, min {y.min():.4g}, mean {y.mean():.4g}, max {y.max():.4g}")
    return [printable(line) for line in lines]  # names and labels from an ONNX file may hold terminal escapes
