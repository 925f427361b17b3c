"""The whole front half in one call: SPEC -> load -> validate -> expand -> infer."""

from __future__ import annotations

from pathlib import Path

from .ensemble import compose as ensemble
from .expand import expand
from .infer import Analysis, infer
from .inherit import extend, spec_file
from .errors import ShapeError, SpecError
from .ir import Graph
from .limits import DEFAULT, MAX_ELEMENTS, Limits
from .multicrop import compose as multicrop
from .onnxfile import onnx_graph
from .registry import numel
from .schema import validate
from .source import Spent, load, read_text
from .zoo import referenced_file, resolve_spec


def display_path(path: Path) -> str:
    """Paths in messages: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def graph_of(text: str, path: str, limits: Limits = DEFAULT, spent: Spent | None = None,
             chain: tuple = ()) -> Graph:
    """`spent`: what reading `text` used of the spec's budgets (the bytes of its file).
    `chain`: the wrapper specs (ensembles, multi-crops) this one is a member of."""
    spent = spent if spent is not None else Spent(bytes=len(text.encode("utf-8", "surrogatepass")))
    doc = load(text, path, limits, spent)
    validate(doc, path)
    doc, sources = extend(doc, path, validate, limits, spent)  # a spec without `extends` comes back as it is
    wrapper = next((k for k in WRAPPERS if k in doc), None)
    if wrapper:  # a network made of other specs (its own, or its base's): they are read through `member`
        return WRAPPERS[wrapper](doc, path, Members(path, limits, spent, chain + (path,)), limits)
    _check_input_size(doc)
    return expand(doc, path, sources, limits, spent)


WRAPPERS = {"ensemble": ensemble, "multicrop": multicrop}  # top-level key -> how it composes its members
MAX_NESTING = 4  # wrappers inside wrappers (a multi-crop of an ensemble is 2)


class Members:
    """Reads the specs a wrapper spec names, as one spec: they share its byte and node budgets."""

    def __init__(self, path: str, limits: Limits, spent: Spent, chain: tuple):
        self.path, self.limits, self.spent, self.chain = path, limits, spent, chain

    def __call__(self, ref: str, key: str, where) -> Graph:
        """The graph of the spec `ref` (a bundled name or a path relative to the wrapper), or of
        a compiled model (an .onnx path): one node that runs it whole."""
        written_in = getattr(where, "path", None) or self.path  # an extended base's members: relative to the base
        if ref.endswith(".onnx"):
            found = referenced_file(ref, written_in, key, where, self.limits)
            return onnx_graph(found, where, display_path(found))
        found = spec_file(ref, written_in, where, self.limits, key)
        shown = display_path(found)
        seen = [Path(p).resolve() for p in self.chain]
        if found.resolve() in seen:
            loop = self.chain[seen.index(found.resolve()):] + (shown,)
            raise SpecError(f"'{key}' makes a loop: {' -> '.join(loop)}", where)
        if len(self.chain) > MAX_NESTING:
            raise SpecError(f"wrapper specs nest more than {MAX_NESTING} deep: {' -> '.join(self.chain)}", where)
        return graph_of(read_text(found, self.limits, self.spent), shown, self.limits, self.spent, self.chain)


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
