"""The whole front half in one call: SPEC -> load -> validate -> expand -> infer."""

from __future__ import annotations

from pathlib import Path

from .expand import expand
from .infer import Analysis, infer
from .inherit import extend
from .errors import ShapeError
from .ir import Graph
from .limits import DEFAULT, MAX_ELEMENTS, Limits
from .registry import numel
from .schema import validate
from .source import Spent, load, read_text
from .zoo import resolve_spec


def display_path(path: Path) -> str:
    """Paths in messages: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def graph_of(text: str, path: str, limits: Limits = DEFAULT, spent: Spent | None = None) -> Graph:
    """`spent`: what reading `text` used of the spec's budgets (the bytes of its file)."""
    spent = spent if spent is not None else Spent(bytes=len(text.encode("utf-8", "surrogatepass")))
    doc = load(text, path, limits, spent)
    validate(doc, path)
    doc, sources = extend(doc, path, validate, limits, spent)  # a spec without `extends` comes back as it is
    _check_input_size(doc)
    return expand(doc, path, sources, limits, spent)


def _check_input_size(doc) -> None:
    """Layers' outputs are bounded as they are inferred; the input itself is bounded here, where
    its position is known (the merged spec's: a child may shrink its base's input)."""
    shape = doc["input"]
    if numel(shape) > MAX_ELEMENTS:
        raise ShapeError(f"'input' {list(shape)} has {numel(shape):,} elements per sample, more than "
                         f"{MAX_ELEMENTS:,} (64 GiB of float32); use a smaller input",
                         doc.value_at.get("input", doc.where))


def load_graph(ref: str, limits: Limits = DEFAULT) -> Graph:
    path = resolve_spec(ref)
    spent = Spent()
    return graph_of(read_text(path, limits, spent), display_path(path), limits, spent)


def analyse(ref: str, strict: bool = False, limits: Limits = DEFAULT) -> Analysis:
    return infer(load_graph(ref, limits), strict, limits)


def analyse_text(text: str, path: str = "<spec>", strict: bool = False, limits: Limits = DEFAULT) -> Analysis:
    """For tests and tools: analyse YAML text that is not in a file."""
    return infer(graph_of(text, path, limits), strict, limits)
