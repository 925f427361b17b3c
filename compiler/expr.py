"""Block-argument substitution: `$name` and `${expression}` inside block bodies.

Expressions are parsed with Python's `ast` and walked here; nothing is ever passed to eval.
Allowed: integers, floats, booleans, strings, argument names, + - * / // %, comparisons,
and/or/not, and `a if cond else b`. No calls, attributes, subscripts or powers. Arithmetic takes
numbers only (true is not 1), comparisons take two numbers, two strings or two booleans, and an
expression is ASCII: Python would read a fullwidth `ｆ` as the argument `f`.

Inside a block, `in.channels`, `in.height` and `in.width` read the shape of the block's input
(`in.skip.channels`: of its input `skip`, in a block with several).
`in` is a Python keyword, so `in.` is renamed before parsing, and its shape is asked for (from
expansion, which infers it) only when an expression reads it.
"""

from __future__ import annotations

import ast
import io
import operator
import re
import tokenize
from functools import lru_cache

from .errors import shorten

MAX_LENGTH = 200
MAX_MAGNITUDE = 10**15

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_NAME = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")  # fullmatch: `$` would allow a final newline
IN = "in"  # the scope key of a block's input shape: a keyword, so no argument can be named so
_IN = "__in__"  # what `in.` is renamed to for Python's parser
DIMENSIONS = ("channels", "height", "width")
COPY_NUMBERS = ("i", "k", "total")  # what a repeat's copy knows of its place (expand.py sets them)


class InputShape:
    """What `in.` reads: the shape of a block's input, asked for only when an expression uses it
    (`shape` raises ExprError when it is not known there). A block with several named inputs
    (`inputs: [skip, below]`) has one per name, read as `in.skip.channels`."""

    def __init__(self, shape=None, named: dict | None = None):
        self._shape = shape
        self._named = named or {}

    def of(self, name: str, dimension: str):
        """`in.<name>.<dimension>`: one input's shape, in a block with several."""
        if not self._named:
            raise ExprError(f"'in.{name}.{dimension}': this block has one input; write in.{dimension}")
        if name not in self._named:
            raise ExprError(f"'in.{name}': the block's inputs are {', '.join(self._named)}; write "
                            f"in.<input>.{dimension} with one of them")
        return InputShape(self._named[name]).get(dimension)

    def get(self, dimension: str):
        if self._named:
            example = next(iter(self._named))
            raise ExprError(f"'in.{dimension}': this block has several inputs ({', '.join(self._named)}); "
                            f"read one's shape, like in.{example}.{dimension}")
        if dimension not in DIMENSIONS:
            raise ExprError(f"'in.{dimension}' is not a dimension of the block's input; use in.channels, "
                            "in.height or in.width")
        shape = self._shape()
        axis = DIMENSIONS.index(dimension)
        if axis >= len(shape):
            raise ExprError(f"'in.{dimension}': the block's input is {list(shape)}, which has no {dimension} "
                            "(only a [C, H, W] input has a height and a width)")
        return shape[axis]


class ExprError(ValueError):
    where = None  # the position of the failing value, when substitute() knows it


def is_reference(value) -> bool:
    return isinstance(value, str) and value.startswith("$")


def evaluate(text: str, scope: dict):
    """Value of `$name` or `${expr}` with block arguments `scope`."""
    if not text.isascii():  # ast.parse folds identifiers with NFKC: `${ｆ}` would quietly mean `${f}`
        char = next(c for c in text if not c.isascii())
        raise ExprError(f"'{text}' holds the non-ASCII character '{char}' (U+{ord(char):04X}); expressions are "
                        "ASCII, and block arguments are named with letters, digits and _")
    match = _NAME.fullmatch(text)
    if match:
        return _lookup(match.group(1), scope)
    if not (text.startswith("${") and text.endswith("}")):
        raise ExprError(f"'{text}' is neither $name nor ${{expression}}")
    return _eval(_parse(text[2:-1].strip()), scope)


@lru_cache(maxsize=1024)
def _parse(source: str):
    """A block body is expanded once per use, so each expression is parsed once and reused."""
    if len(source) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters")
    try:
        return ast.parse(_rename_in(source), mode="eval").body
    except (SyntaxError, tokenize.TokenError) as e:
        raise ExprError(f"cannot parse '{source}': {getattr(e, 'msg', None) or e.args[0]}") from None


def _rename_in(source: str) -> str:
    """`in.channels` -> `__in__.channels`: Python parses `in` only as an operator."""
    if "in" not in source:
        return source
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for k, token in enumerate(tokens[:-1]):
        if token.type == tokenize.NAME and token.string == IN and tokens[k + 1].string == ".":
            tokens[k] = token._replace(string=_IN)
    return tokenize.untokenize(tokens)


def _lookup(name, scope):
    if name not in scope or name == IN:
        known = ", ".join(sorted(k for k in scope if k != IN)) or "none"
        copy = ("; $i, $k and $total exist only in the arguments of a repeat's copies (the copy's number in its "
                "repeat, across the repeats of its list or stage table, and how many copies those make)"
                if name in COPY_NUMBERS else "")
        raise ExprError(f"unknown block argument '{name}' (arguments here: {known}){copy}")
    return scope[name]


def _input(dimension: str, scope, name: str | None = None):
    """`in.channels` (or `in.<name>.channels`): the block's input shape, which exists only inside a block."""
    if IN not in scope:
        written = f"in.{name}.{dimension}" if name else f"in.{dimension}"
        raise ExprError(f"'{written}' reads the shape of a block's input, so it can be used only inside a "
                        "block's layers (in their arguments, `when` and `repeat`)")
    return scope[IN].of(name, dimension) if name else scope[IN].get(dimension)


def _number(value):
    if _is_number(value) and abs(value) > MAX_MAGNITUDE:
        raise ExprError(f"value {value} is out of range")
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value) -> str:
    """What a comparison may pair: numbers with numbers, strings with strings, booleans with booleans."""
    return "number" if _is_number(value) else "string" if isinstance(value, str) else \
        "boolean" if isinstance(value, bool) else "other"


def _show(value) -> str:
    """A value as the spec writes it: true, not True."""
    return ("true" if value else "false") if isinstance(value, bool) else shorten(value)


def _eval(node, scope):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return _number(node.value)
    if isinstance(node, ast.Name):
        if node.id in ("true", "false"):
            return node.id == "true"
        return _lookup(node.id, scope)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == _IN:
        return _input(node.attr, scope)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
            and isinstance(node.value.value, ast.Name) and node.value.value.id == _IN:  # in.skip.channels
        return _input(node.attr, scope, node.value.attr)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, scope), _eval(node.right, scope)
        if not (_is_number(left) and _is_number(right)):  # no 'a' * 10**9, and true is not 1
            raise ExprError(f"arithmetic needs numbers, got {_show(left)} and {_show(right)}")
        try:
            return _number(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ExprError("division by zero") from None
        except TypeError:
            raise ExprError(f"cannot apply {type(node.op).__name__} to {left!r} and {right!r}") from None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        value = _eval(node.operand, scope)
        if isinstance(node.op, ast.Not):
            return not value
        if not _is_number(value):
            raise ExprError(f"a sign needs a number, got {_show(value)}")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare):
        left = _eval(node.left, scope)
        for op, right_node in zip(node.ops, node.comparators):
            if type(op) not in _COMPARE:
                raise ExprError(f"operator {type(op).__name__} is not allowed")
            right = _eval(right_node, scope)
            # Only like with like: `true == 1` would hold in Python, and lists would compare
            # element by element, at a cost the node budget does not see.
            if _kind(left) != _kind(right) or _kind(left) == "other" or \
                    (_kind(left) == "boolean" and type(op) not in (ast.Eq, ast.NotEq)):
                raise ExprError(f"cannot compare {_show(left)} with {_show(right)}: compare two numbers, two "
                                "strings, or two booleans with == or !=")
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, scope) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.IfExp):
        return _eval(node.body, scope) if _eval(node.test, scope) else _eval(node.orelse, scope)
    raise ExprError(f"'{ast.unparse(node)}' is not allowed in an expression "
                    "(only numbers, argument names, arithmetic, comparisons and 'a if c else b')")


def substitute(value, scope: dict):
    """Replace every $-string inside a YAML value (recursively), keeping positions."""
    from .source import Map, Seq

    if is_reference(value):
        return evaluate(value, scope)
    if isinstance(value, Map):
        out = Map((k, _at(value.value_at.get(k), substitute, v, scope)) for k, v in value.items())
        out.where, out.key_at, out.value_at = value.where, value.key_at, value.value_at
        return out
    if isinstance(value, Seq):
        out = Seq(_at(at, substitute, v, scope) for v, at in zip(value, value.item_at))
        out.where, out.item_at = value.where, value.item_at
        return out
    return value


def _at(where, fn, *args):
    """Call fn, tagging an ExprError with the innermost position it came from."""
    try:
        return fn(*args)
    except ExprError as e:
        e.where = e.where or where
        raise
