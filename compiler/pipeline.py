"""The whole front half in one call: SPEC -> load -> validate -> expand -> infer."""

from __future__ import annotations

from pathlib import Path

from .expand import expand
from .infer import Analysis, infer
from .ir import Graph
from .schema import validate
from .source import load, read_text
from .zoo import resolve_spec


def display_path(path: Path) -> str:
    """Paths in messages: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_graph(ref: str) -> Graph:
    path = resolve_spec(ref)
    shown = display_path(path)
    doc = load(read_text(path), shown)
    validate(doc, shown)
    return expand(doc, shown)


def analyse(ref: str, strict: bool = False) -> Analysis:
    return infer(load_graph(ref), strict=strict)


def analyse_text(text: str, path: str = "<spec>", strict: bool = False) -> Analysis:
    """For tests and tools: analyse YAML text that is not in a file."""
    doc = load(text, path)
    validate(doc, path)
    return infer(expand(doc, path), strict=strict)
