"""The whole front half in one call: SPEC -> load -> validate -> expand -> infer."""

from __future__ import annotations

from pathlib import Path

from .expand import expand
from .infer import Analysis, infer
from .inherit import extend
from .ir import Graph
from .limits import DEFAULT, Limits
from .schema import validate
from .source import load, read_text
from .zoo import resolve_spec


def display_path(path: Path) -> str:
    """Paths in messages: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def graph_of(text: str, path: str, limits: Limits = DEFAULT) -> Graph:
    doc = load(text, path, limits)
    validate(doc, path)
    sources = (path,)
    if "extends" in doc:
        doc, sources = extend(doc, path, validate, limits)
        validate(doc, path)  # the merged spec, as one
    return expand(doc, path, sources, limits)


def load_graph(ref: str, limits: Limits = DEFAULT) -> Graph:
    path = resolve_spec(ref)
    shown = display_path(path)
    return graph_of(read_text(path, limits), shown, limits)


def analyse(ref: str, strict: bool = False, limits: Limits = DEFAULT) -> Analysis:
    return infer(load_graph(ref, limits), strict, limits)


def analyse_text(text: str, path: str = "<spec>", strict: bool = False, limits: Limits = DEFAULT) -> Analysis:
    """For tests and tools: analyse YAML text that is not in a file."""
    return infer(graph_of(text, path, limits), strict, limits)
