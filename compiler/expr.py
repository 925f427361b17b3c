"""Block-argument substitution: `$name` and `${expression}` inside block bodies.

Expressions are parsed with Python's `ast` and walked here; nothing is ever passed to eval.
Allowed: integers, floats, booleans, strings, argument names, + - * / // %, comparisons,
and/or/not, and `a if cond else b`. No calls, attributes, subscripts or powers.
"""

from __future__ import annotations

import ast
import operator
import re
from functools import lru_cache

from .errors import shorten

MAX_LENGTH = 200
MAX_MAGNITUDE = 10**15

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_NAME = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")  # fullmatch: `$` would allow a final newline


class ExprError(ValueError):
    where = None  # the position of the failing value, when substitute() knows it


def is_reference(value) -> bool:
    return isinstance(value, str) and value.startswith("$")


def evaluate(text: str, scope: dict):
    """Value of `$name` or `${expr}` with block arguments `scope`."""
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
        return ast.parse(source, mode="eval").body
    except SyntaxError as e:
        raise ExprError(f"cannot parse '{source}': {e.msg}") from None


def _lookup(name, scope):
    if name not in scope:
        known = ", ".join(sorted(scope)) or "none"
        raise ExprError(f"unknown block argument '{name}' (arguments here: {known})")
    return scope[name]


def _number(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_MAGNITUDE:
        raise ExprError(f"value {value} is out of range")
    return value


def _eval(node, scope):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return _number(node.value)
    if isinstance(node, ast.Name):
        if node.id in ("true", "false"):
            return node.id == "true"
        return _lookup(node.id, scope)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, scope), _eval(node.right, scope)
        if not all(isinstance(v, (int, float)) for v in (left, right)):  # no 'a' * 10**9
            raise ExprError(f"arithmetic needs numbers, got {shorten(left)} and {shorten(right)}")
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
        if not isinstance(value, (int, float)):
            raise ExprError(f"a sign needs a number, got {shorten(value)}")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare):
        left = _eval(node.left, scope)
        for op, right_node in zip(node.ops, node.comparators):
            if type(op) not in _COMPARE:
                raise ExprError(f"operator {type(op).__name__} is not allowed")
            right = _eval(right_node, scope)
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError:
                raise ExprError(f"cannot compare {shorten(left)} with {shorten(right)}") from None
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
