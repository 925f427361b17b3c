"""Load YAML safely, keeping the source position of every key and value.

Safe YAML only (no tags that build objects), and bounded: file size, nesting depth and the
number of nodes after aliases are expanded (no "billion laughs"). Mappings and lists come back
as `Map` and `Seq`, plain dict and list subclasses that also know where each entry came from.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import Location, SpecError, UsageError, shorten
from .limits import DEFAULT, Limits

MAX_NODES = 200_000  # YAML nodes after aliases are expanded ("billion laughs")


@dataclass
class Spent:
    """What one spec has used so far of the bounds that cover it as a whole.

    An `extends` chain is one spec: its files share the byte and node budgets, so a chain costs no
    more than one file may. Block arguments and `inputs` lists count their nodes again in every
    copy that binds them (expand.py), so no repeat multiplies a large value past the node budget.
    """

    bytes: int = 0
    nodes: int = 0

    def nodes_left(self) -> int:
        return MAX_NODES - self.nodes


def loader_class(base: type) -> type:
    """Safe YAML, plus YAML 1.2's exponent floats: `alpha: 1e-4` is a number, not the string '1e-4'."""
    loader = type("Loader", (base,), {})
    loader.add_implicit_resolver("tag:yaml.org,2002:float",
                                 re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
    return loader


_Loader = loader_class(getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml where PyYAML has it
_scalars = yaml.constructor.SafeConstructor()


class Map(dict):
    """A YAML mapping: `where` is its own position, `key_at`/`value_at` those of its entries."""

    where: Location | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.key_at: dict = {}
        self.value_at: dict = {}


class Seq(list):
    """A YAML sequence: `where` is its own position, `item_at[i]` that of item i."""

    where: Location | None = None

    def __init__(self, *args):
        super().__init__(*args)
        self.item_at: list = []


def position(node, path: str) -> Location:
    mark = node.start_mark
    return Location(path, mark.line + 1, mark.column + 1)


def read_text(path: Path, limits: Limits = DEFAULT, spent: Spent | None = None) -> str:
    """The spec's text. Whatever bytes it holds, a problem with them is a positioned SpecError.

    `spent` carries the bytes already read for the same spec (the files it extends) and takes
    this file's: the size limit is for the whole chain.
    """
    shown = str(path)
    spent = spent if spent is not None else Spent()
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below, like a device.
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise UsageError(f"{path}: is a directory, expected a YAML spec")
            if not stat.S_ISREG(mode):
                raise UsageError(f"{path}: is not a regular file (a FIFO, a device or a socket); "
                                 "a spec must be a file")
            room = limits.spec_bytes - spent.bytes
            data = f.read(room + 1)  # at most the limit: the file may grow while it is read
            if len(data) > room:  # report the true size where the file has one
                _check_size(spent.bytes + max(os.fstat(f.fileno()).st_size, len(data)), limits, shown, spent.bytes)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected a YAML spec") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:  # a NUL byte in the path
        raise UsageError(f"{path}: cannot read: {e}") from None
    spent.bytes += len(data)
    return decode(data, shown)


def _check_size(size: int, limits: Limits, path: str, before: int = 0) -> None:
    """`before`: the bytes of the specs that extend this one, read first."""
    if size > limits.spec_bytes:
        what = "the spec and the specs it extends are" if before else "the spec is"
        raise SpecError(f"{what} {size:,} bytes; the limit is {limits.spec_bytes:,} "
                        "(--max-spec-bytes raises it)", Location(path, 1, 1))


def decode(data: bytes, path: str) -> str:
    """UTF-8 text (a byte-order mark is dropped); a bad byte is reported at its line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        before = data[:start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        raise SpecError(f"the spec is not UTF-8 text: byte 0x{data[start]:02x} at offset {start} cannot be "
                        "decoded (save the file as UTF-8)", Location(path, line, col)) from None


def load(text: str, path: str, limits: Limits = DEFAULT, spent: Spent | None = None) -> Map:
    """Parse one YAML document into Map/Seq/scalars with positions.

    `spent` carries the nodes of the specs that extend this one, and takes this one's.
    """
    spent = spent if spent is not None else Spent()
    _check_size(len(text.encode("utf-8", "surrogatepass")), limits, path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates: only text built in memory has them
        before = text[:e.start]
        raise SpecError("the spec holds a character that is not valid Unicode (a lone surrogate)",
                        Location(path, before.count("\n") + 1, e.start - before.rfind("\n"))) from None
    try:
        has_aliases = _check_depth(text, path, limits.depth)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        raise _yaml_error(e, text, path, limits.depth) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (NUL, other controls)
        before = text[:e.position]
        where = Location(path, before.count("\n") + 1, e.position - before.rfind("\n"))
        code = e.character if isinstance(e.character, int) else ord(e.character)
        raise SpecError(f"invalid YAML: the character U+{code:04X} is not allowed in YAML text; remove it",
                        where) from None
    except yaml.YAMLError as e:
        raise SpecError(f"invalid YAML: {e}", Location(path, 1, 1)) from None
    if node is None:
        raise SpecError("the spec is empty; it needs at least 'input' and 'layers'", Location(path, 1, 1))
    before = spent.nodes
    try:
        doc = _convert(node, path, 0, spent, limits.depth)
    except _TooManyNodes as e:
        why = ("are aliases (*name) repeating a large part of it?" if has_aliases else
               "write long stacks with 'repeat' or 'stages' rather than an item per layer")
        what = "the spec and the specs it extends" if before else "the spec"
        verb = ("expand to" if has_aliases else "have") if before else ("expands to" if has_aliases else "has")
        raise SpecError(f"{what} {verb} more than {MAX_NODES:,} YAML nodes; " + why, e.where) from None
    if not isinstance(doc, Map):
        raise SpecError("the spec must be a mapping with 'input' and 'layers' at the top level", position(node, path))
    return doc


def _check_depth(text: str, path: str, limit: int) -> bool:
    """Refuse deep nesting from the parser's event stream, before the (recursive) composer sees it.

    Returns whether the text uses aliases, for the message when there are too many nodes.
    """
    depth, has_aliases = -1, False  # the top-level mapping is level 0, as in _convert
    for event in yaml.parse(text, Loader=_Loader):
        has_aliases = has_aliases or isinstance(event, yaml.AliasEvent)
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > limit:
                mark = event.start_mark
                raise SpecError(_too_deep(limit), Location(path, mark.line + 1, mark.column + 1))
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    return has_aliases


class _TooManyNodes(Exception):
    def __init__(self, where: Location):
        self.where = where


def _yaml_error(e: yaml.MarkedYAMLError, text: str, path: str, depth_limit: int) -> SpecError:
    """A parser error as one positioned sentence, with the construct it was inside."""
    lines = text.splitlines()
    mark = e.problem_mark or e.context_mark
    if e.context_mark and (mark is None or mark.line >= len(lines)):
        mark = e.context_mark  # "end of file" is no place to point at: point at what was left open
    where = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path, 1, 1)
    if "nesting depth" in (e.problem or ""):
        # libyaml (PyYAML 6.0.4 on) stops deep flow nesting itself, before our own check sees an
        # event: the spec is refused either way, so say it in our words, at the parser's position.
        return SpecError(f"{_too_deep(depth_limit)}; the YAML parser stopped at: {e.problem}", where)
    line = lines[mark.line] if mark and mark.line < len(lines) else ""
    expression = _unquoted_expression(line, mark.column if mark else 0)
    if expression:  # `{filters: ${a}}`: YAML took the expression's `{` for a nested mapping
        start, text = expression
        flow = "mapping {...}" if "mapping" in (e.context or "") else "list [...]"
        return SpecError(f"invalid YAML: the expression {text} is unquoted inside a flow {flow}, so YAML reads its "
                         f"'{{' as the start of a mapping; quote it: \"{text}\"",
                         Location(path, mark.line + 1, start + 1))
    message = e.problem or "invalid YAML"
    if e.context:  # "while parsing a flow mapping at line 3: did not find expected ',' or '}'"
        at = f" at line {e.context_mark.line + 1}" if e.context_mark else ""
        joint = ", " if message.startswith("but ") else ": "
        message = f"{e.context}{at}{joint}{message}"
    if "\t" in line[: len(line) - len(line.lstrip())] or "\t" in line:
        message += "; tabs cannot indent YAML, use spaces"
    return SpecError(f"invalid YAML: {message}", where)


def _unquoted_expression(line: str, column: int) -> tuple[int, str] | None:
    """The `${...}` (its column and text) written unquoted at or just before `column` of `line`."""
    for match in re.finditer(r"\$\{[^{}]*\}?", line):
        quoted = line[:match.start()].count('"') % 2 or line[:match.start()].count("'") % 2
        if match.start() <= column <= match.end() and not quoted:
            return match.start(), match.group()
    return None


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _too_deep(limit: int) -> str:
    return f"the spec nests deeper than {limit} levels (--max-depth raises the limit)"


def _convert(node, path: str, depth: int, spent: Spent, limit: int):
    spent.nodes += 1
    if spent.nodes > MAX_NODES:
        raise _TooManyNodes(position(node, path))
    if depth > limit:
        raise SpecError(_too_deep(limit), position(node, path))
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise SpecError(f"YAML tag '{node.tag}' is not allowed: a spec is plain data (mappings, lists, "
                        "strings, numbers, booleans)", position(node, path))
    if isinstance(node, yaml.MappingNode):
        out = Map()
        out.where = position(node, path)
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SpecError("YAML merge keys ('<<') are not supported; use 'defaults' or a block instead",
                                position(key_node, path))
            key = _convert(key_node, path, depth + 1, spent, limit)
            if not isinstance(key, str):
                raise SpecError(f"keys must be strings, got {key!r}", position(key_node, path))
            if key in out:
                raise SpecError(f"duplicate key '{key}' (first at line {out.key_at[key].line})", position(key_node, path))
            out[key] = _convert(value_node, path, depth + 1, spent, limit)
            out.key_at[key] = position(key_node, path)
            out.value_at[key] = position(value_node, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        out = Seq()
        out.where = position(node, path)
        for item in node.value:
            out.append(_convert(item, path, depth + 1, spent, limit))
            out.item_at.append(position(item, path))
        return out
    return _scalar(node, path)


_SCALAR_TAGS = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null")}
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_INT, _FLOAT, _STR = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:str"
MAX_INTEGER = 2**63 - 1  # what ONNX (int64) can hold; larger is a typo, not a size
_LEADING_ZERO = re.compile(r"^([-+]?)0[0-9_]+$")


def _scalar(node, path: str):
    """A string, number, boolean or null. A date stays the text it was written as."""
    if node.tag == _TIMESTAMP:  # `name: 2024-01-01` stays a string, as in JSON
        return node.value
    zero = None if node.style else _LEADING_ZERO.match(node.value)  # plain: libyaml says "", PyYAML None
    if zero:  # YAML 1.1 reads `017` as octal 15 and `019` as text; YAML 1.2 and people read 17 and 19
        sign, digits = zero.group(1), node.value[len(zero.group(1)):].replace("_", "")
        octal = node.tag == _INT and not set(digits) - set("01234567")  # `!!int 019` is no octal either
        read = (f", so YAML 1.1 reads it as the octal number {int(sign + digits, 8)}" if octal else
                ", so YAML 1.1 reads it as text" if node.tag == _STR else "")
        raise SpecError(f"{shorten(node.value)} has a leading zero{read}; write {sign + (digits.lstrip('0') or '0')}, "
                        "or quote it if it is text", position(node, path))
    if node.tag in (_INT, _FLOAT) and ":" in node.value:  # YAML 1.1's base 60: `3:3` would mean 183
        raise SpecError(f"{shorten(node.value)} is a base-60 number in YAML 1.1; convspec does not read those "
                        "(quote it if it is text)", position(node, path))
    if node.tag not in _SCALAR_TAGS:
        raise SpecError(f"YAML tag '{node.tag}' is not allowed: a spec is plain data (mappings, lists, "
                        "strings, numbers, booleans)", position(node, path))
    try:
        value = _scalars.construct_object(node)
    # PyYAML's constructors trust their input: `!!int ''` raises IndexError, `!!bool x` KeyError,
    # an integer of thousands of digits ValueError. Any of them means the value is malformed.
    except (yaml.YAMLError, ValueError, IndexError, KeyError, TypeError) as e:
        raise SpecError(f"invalid value {shorten(node.value)}: {getattr(e, 'problem', None) or e}",
                        position(node, path)) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{shorten(node.value)} is not a finite number; use a finite value", position(node, path))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise SpecError(f"the integer {shorten(node.value)} is too large (the limit is 2**63 - 1)",
                        position(node, path))
    return value


def count_nodes(value, limit: int) -> int:
    """The YAML nodes of a loaded value, counted as load() counts them (a mapping's keys too);
    counting stops once past `limit`, so it costs no more than the budget it is checked against."""
    count, todo = 0, [value]
    while todo and count <= limit:
        value = todo.pop()
        count += 1
        if isinstance(value, dict):
            count += len(value)
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)
    return count


def locate(doc, path_parts, fallback: Location | None = None) -> Location | None:
    """The position of the value at `path_parts` (keys and indices) inside a loaded document."""
    where = getattr(doc, "where", fallback)
    node = doc
    for part in path_parts:
        if isinstance(node, Map) and part in node:
            where, node = node.value_at[part], node[part]
        elif isinstance(node, Seq) and isinstance(part, int) and 0 <= part < len(node):
            where, node = node.item_at[part], node[part]
        else:
            break
    return where
