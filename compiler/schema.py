"""The spec's JSON Schema, generated from the layer registry, and validation against it.

`spec_schema()` is what `convspec schema` prints and what the bundled specs' modeline points
at, so editors complete and check specs. `validate()` checks a loaded document's structure
with the same generator (layer arguments are checked per layer by expansion, after block
arguments are substituted) and turns jsonschema's errors into positioned, plain messages.
"""

from __future__ import annotations

import re
from functools import lru_cache

import jsonschema

from . import layers as _layers  # noqa: F401  (fills the registry the schema is generated from)
from .augment import section_schema as augment_schema
from .errors import Diagnostic, SpecError, did_you_mean, shorten
from .registry import (BOOL, NON_NEGATIVE_INT, NUMBER, POSITIVE_INT, POSITIVE_NUMBER, REGISTRY, SIZE2, WARNING_KINDS,
                       Kind)
from .source import Map, locate

# Dotted segments of letters, digits, _ and - (RegNet's block1-0); `{i}`/`{n}` number repeats.
NAME_PATTERN = r"^(?:[A-Za-z0-9_-]|\{[in]\})+(?:\.(?:[A-Za-z0-9_-]|\{[in]\})+)*$"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"  # a block's name, a block argument's name
EXPRESSION = {"type": "string", "pattern": r"^\$", "description": "a block argument: $name or ${expression}"}
META_KEYS = ("name", "inputs", "expect", "when", "repeat", "rest", "frozen", "accept")
GROUP_KEYS = ("sequential", "stages")
SCHEMA_URL = "https://convspec.dev/schema/spec.json"
MAX_REPEAT = 10_000  # copies per repeat

# The kinds of the document's own keys, built on the registry's argument kinds: each key's schema
# and the words an error uses for it ("'repeat' must be ..."), declared together once.
_SHAPE = {"type": "array", "items": POSITIVE_INT.schema, "minItems": 1}
_COUNT = Kind(NON_NEGATIVE_INT.schema, f"a count ({NON_NEGATIVE_INT.expects})")
_TEXT = Kind({"type": "string"}, "a string")
_LAYERS = Kind({"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1}, "a non-empty list of layers")
_NAMES = Kind({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
              "a layer name or a list of layer names")
_HW = Kind(SIZE2.schema, "a positive integer or [h, w]")
KEYS = {
    "input": Kind(dict(_SHAPE, maxItems=3, **{"not": {"minItems": 2, "maxItems": 2}}),
                  "a list [C, H, W] or [features] of positive integers"),
    "layers": _LAYERS,
    "sequential": _LAYERS,  # its words; its schema leaves an empty group to expansion
    "name": Kind({"type": "string", "pattern": NAME_PATTERN},
                 "a name made of letters, digits, _ and -, in dotted parts (layer1.0.conv1); "
                 "{i} or {n} number the copies of a repeat"),
    "inputs": _NAMES,
    "outputs": _NAMES,
    "when": Kind({"anyOf": [BOOL.schema, EXPRESSION]}, f"{BOOL.expects}, or a block expression ($name or ${{...}})"),
    "repeat": Kind(dict(POSITIVE_INT.schema, maximum=MAX_REPEAT),
                   f"an integer from 1 to {MAX_REPEAT} (or, in a layer item, a block expression)"),
    "rest": Kind({"type": "object"}, "a mapping of argument overrides"),
    "accept": Kind({"anyOf": [{"enum": list(WARNING_KINDS)},
                              {"type": "array", "items": {"enum": list(WARNING_KINDS)}, "minItems": 1}]},
                   "a kind of warning, or a list of them: "
                   + ", ".join(f"'{k}' ({v})" for k, v in WARNING_KINDS.items())),
    # Argument names are what `$name` and `${...}` can say: ASCII identifiers, so a fullwidth `ｆ`
    # is refused here rather than folded into `f` by the expression parser.
    "args": Kind({"type": "object", "propertyNames": {"pattern": IDENTIFIER}},
                 "a mapping of arguments, each named with ASCII letters, digits and _ (not starting with a digit)"),
    "block": Kind(_TEXT.schema, "the name of a block or layer type"),
    "append": Kind({"type": "array", "items": {"$ref": "#/$defs/item"}}, "a list of layers"),
    "output": Kind(_SHAPE, "a shape, [C, H, W] or [features]"),
    "params": _COUNT,
    "number_from": _COUNT,
    "trainable": _COUNT,
    "non_trainable": _COUNT,
    "macs": _COUNT,
    "flops": _COUNT,
    "receptive_field": _HW,
    "title": _TEXT,
    "paper": _TEXT,
    "description": _TEXT,
    "labels": Kind(_TEXT.schema, "the path of a labels file (a string)"),
    "extends": Kind(_TEXT.schema, "a bundled spec name or a path to a spec"),
    "resize": _HW,
    "crop": _HW,
    "channels": Kind({"enum": ["RGB", "BGR"]}, "'RGB' or 'BGR'"),
    "scale": NUMBER,
    "mean": Kind({"type": "array", "items": NUMBER.schema, "minItems": 1}, "a list of numbers, one per channel"),
    "std": Kind({"type": "array", "items": POSITIVE_NUMBER.schema, "minItems": 1},
                "a list of positive numbers, one per channel"),
    # ensembles and multi-crops (compiler/ensemble.py, compiler/multicrop.py)
    "members": Kind({"type": "array", "minItems": 1, "items": {"anyOf": [
        {"type": "string"},
        {"type": "object", "required": ["spec"], "additionalProperties": False,
         "properties": {"spec": {"type": "string"}, "name": {"type": "string", "pattern": r"^[A-Za-z0-9_]+$"}}}]}},
        "a non-empty list of specs: each a bundled name or a path, or {spec: ..., name: ...}"),
    "spec": Kind({"type": "string"}, "a bundled spec name or a path to a spec"),
    "combine": Kind({"enum": ["mean_softmax", "mean_logits", "max", "vote"]},
                    "one of 'mean_softmax', 'mean_logits', 'max', 'vote'"),
    "weights": Kind({"type": "array", "items": POSITIVE_NUMBER.schema, "minItems": 1},
                    "a list of positive numbers, one per member"),
    "crops": Kind({"anyOf": [{"enum": ["center", "ten", "googlenet144"]},
                             {"type": "object", "required": ["grid"], "additionalProperties": False,
                              "properties": {"grid": SIZE2.schema, "flip": BOOL.schema}},
                             {"type": "object", "required": ["scales"], "additionalProperties": False,
                              "properties": {"scales": {"type": "array", "items": POSITIVE_INT.schema, "minItems": 1},
                                             "squares": POSITIVE_INT.schema, "flip": BOOL.schema}}]},
                  "'center', 'ten', 'googlenet144', {grid: [rows, columns], flip: true|false} or "
                  "{scales: [shorter sides], squares: 3, flip: true|false}"),
}
SPEC_NAME = Kind({"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$"}, "a name made of letters, digits, _, . and -")


def _key(name: str, description: str) -> dict:
    """The schema of the document key `name`, with its description."""
    return dict(KEYS[name].schema, description=description)


def _expect_schema() -> dict:
    return {
        "type": "object",
        "description": "figures that `convspec check` verifies",
        "additionalProperties": False,
        "properties": {
            "output": _key("output", "output shape, [C, H, W] or [features]"),
            "params": _key("params", "total parameters (trainable and non-trainable)"),
            "trainable": _key("trainable", "trainable parameters"),
            "non_trainable": _key("non_trainable", "non-trainable parameters (BatchNorm running statistics)"),
            "macs": _key("macs", "multiply-accumulates of conv and dense layers"),
            "flops": _key("flops", "floating-point operations"),
            "receptive_field": _key("receptive_field", "receptive field size, s or [h, w]"),
        },
    }


def _with_expressions(schema: dict) -> dict:
    """Inside blocks, any argument may be $name or ${expression}."""
    out = dict(schema)
    out["properties"] = {k: {"anyOf": [v, EXPRESSION], "description": v.get("description", "")}
                         for k, v in schema["properties"].items()}
    return out


def _layer_value(cls) -> dict:
    """What may follow `type:` in a layer item: arguments, null, or the shorthand scalar."""
    # Nothing is required here: `defaults:` may supply it. Expansion checks the merged arguments.
    options = [_with_expressions(cls.args_schema(partial=True)), {"type": "null"}]
    if cls.shorthand:
        field = {f.name: f for f in cls.arguments()}[cls.shorthand]
        options.append(field.metadata["kind"].schema)
        options.append(EXPRESSION)
    return {"anyOf": options, "description": cls.summary()}


@lru_cache(maxsize=2)
def spec_schema(detailed: bool = True) -> dict:
    """The spec's JSON Schema. `detailed` adds every layer type's arguments (for editors)."""
    item_props = {
        "name": _key("name", "stable dotted name of the layer (the key of its weights)"),
        "inputs": _key("inputs", "names of the layers feeding this one (default: the previous layer)"),
        "expect": {"$ref": "#/$defs/expect"},
        "when": _key("when", "include the layer only if true; a skipped layer passes its input through"),
        "repeat": {"anyOf": [KEYS["repeat"].schema, EXPRESSION],
                   "description": "stack this many copies, named <name>.0, <name>.1, ..."},
        "rest": _key("rest", "argument overrides for every copy after the first"),
        "frozen": {"type": "boolean", "description": "keep this item's weights fixed when training (recorded in "
                                                     "the model's metadata; counted as non-trainable)"},
        "accept": _key("accept", "warnings known and accepted for this item's layers (kept as notes; "
                                 "--strict passes); an accept that no warning needs is an error"),
        "sequential": {"type": "array", "items": {"$ref": "#/$defs/item"},  # expansion refuses an empty group
                       "description": "a group whose unnamed layers are named by position (0, 1, ...)"},
        "stages": {"$ref": "#/$defs/stages"},
    }
    if detailed:
        for type_name, cls in REGISTRY.items():
            item_props[type_name] = _layer_value(cls)
    item = {
        "type": ["string", "object"],
        "description": "a layer: `type: {arguments}` plus name, inputs, expect...; or a bare type name",
        "properties": item_props,
        # Blocks are named by the spec, so any other key may be one; expansion checks it.
        "additionalProperties": ({"anyOf": [{"type": "object"}, {"type": "null"}],
                                  "description": "a block defined under `blocks:`, with its arguments"}
                                 if detailed else True),
        "minProperties": 1,
    }
    stages = {
        "type": "object",
        "description": "a stage table: one repeated block per row",
        "required": ["block", "table"],
        "additionalProperties": False,
        "properties": {
            "block": _key("block", "the block (or layer type) every stage repeats"),
            "name": _key("name", "stage name pattern, {n} 1-based or {i} 0-based (default stage{n})"),
            "args": _key("args", "arguments common to every stage"),
            "rest": _key("rest", "overrides for every block after the first of a stage"),
            "number_from": _key("number_from", "number the copies across the rows from this number, "
                                               "<name>.<number> (torchvision's flat Sequential), not per row"),
            "table": {"type": "array", "minItems": 1, "description": "one row per stage: repeat plus arguments",
                      "items": {"type": "object", "required": ["repeat"],
                                "properties": {"repeat": KEYS["repeat"].schema,
                                               "rest": _key("rest", "this row's overrides for its copies after "
                                                                    "the first (over the table's `rest`)")}}},
        },
    }
    block = {
        "type": "object",
        "required": ["layers"],
        "additionalProperties": False,
        "properties": {
            "args": _key("args", "block arguments and their defaults (null: required)"),
            "layers": _key("layers", "the block's layers; `input` names the block's input"),
            "output": {"type": "string", "description": "the layer whose output is the block's (default: the last)"},
            "inputs": {**BLOCK_INPUTS.schema,
                       "description": "names for a block's several inputs, in the order an instance's `inputs:` "
                                      "gives them (default: one, `input`)"},
            "description": KEYS["description"].schema,
        },
        "description": "a reusable, parameterised group of layers",
    }
    defaults = {
        "type": "object",
        "description": "default arguments per layer type",
        "additionalProperties": False,
        "properties": {name: cls.args_schema(partial=True) for name, cls in REGISTRY.items()},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_URL,
        "title": "convspec CNN spec",
        "type": "object",
        # A spec that extends another may leave input and layers to its base; an ensemble or a
        # multi-crop takes them from the specs it wraps.
        "if": {"not": {"anyOf": [{"required": [key]} for key in ("extends", "ensemble", "multicrop")]}},
        "then": {"required": ["input", "layers"]},
        "additionalProperties": False,
        "properties": {
            "name": dict(SPEC_NAME.schema, description="the spec's name"),
            "title": _key("title", "one-line title"),
            "paper": _key("paper", "the publication it follows"),
            "description": KEYS["description"].schema,
            "input": _key("input", "input shape without the batch: [C, H, W] or [features]"),
            "defaults": defaults,
            "blocks": {"type": "object", "additionalProperties": block,
                       "propertyNames": {"pattern": IDENTIFIER},
                       "description": "reusable blocks, used like layer types"},
            "layers": _key("layers", "the layers, in order"),
            "outputs": _key("outputs", "the graph's outputs (default: the last layer)"),
            "expect": {"$ref": "#/$defs/expect"},
            "extends": _key("extends", "a bundled spec name or a path (relative to this spec) "
                                       "that this spec builds on"),
            "replace": {"type": "object", "additionalProperties": {"$ref": "#/$defs/item"},
                        "description": "with extends: top-level layers of the base to replace, by name"},
            "append": _key("append", "with extends: layers added after the base's"),
            "set": {"type": "object", "propertyNames": {"pattern": r"^[^/]+(?:/[^/]+)*$"},
                    "description": "with extends: single values of the base to change, by their path "
                                   "(`layers/stages/stages/table/2/repeat: 23`): keys, 0-based list indices "
                                   "and layer names, split by /"},
            "frozen": {"type": "array", "items": {"type": "string"},
                       "description": "layer names (or dotted prefixes) whose weights stay fixed when training"},
            "labels": _key("labels", "a text file of class labels, one per line, relative to the spec"),
            # its transforms' arguments are checked by compiler/augment.py, in its own words
            "augment": augment_schema() if detailed else {"type": "object"},
            "ensemble": {
                "type": "object",
                "description": "one model made of several specs sharing the input, their outputs combined",
                "required": ["members"],
                "additionalProperties": False,
                "properties": {
                    "members": _key("members", "the specs: bundled names or paths, or {spec, name}"),
                    "combine": _key("combine", "mean_softmax (default), mean_logits, max (of the "
                                               "probabilities) or vote (the share of votes per class)"),
                    "weights": _key("weights", "one weight per member, for mean_softmax, mean_logits and vote"),
                },
            },
            "multicrop": {
                "type": "object",
                "description": "run one spec on several crops of a larger input and average its predictions",
                "required": ["spec"],
                "additionalProperties": False,
                "properties": {
                    "spec": _key("spec", "the network: a bundled name or a path"),
                    "crops": _key("crops", "center, ten (4 corners + centre, each also flipped), "
                                           "{grid: [rows, columns], flip: true|false}, googlenet144 or "
                                           "{scales: [shorter sides], squares: 3, flip: true|false} (GoogLeNet's: "
                                           "per scale and square, 4 corners + centre + the whole square)"),
                    "combine": {"enum": ["mean_softmax", "mean_logits"],
                                "description": "average the probabilities (default) or the logits"},
                },
            },
            "preprocess": {
                "type": "object",
                "description": "how `convspec run` turns an image into the input",
                "additionalProperties": False,
                "properties": {
                    "resize": _key("resize", "N: the shorter side to N, keeping the aspect ratio; [h, w]: to "
                                             "exactly h x w (default: the input's [h, w]); bilinear"),
                    "crop": _key("crop", "then cut the centre [h, w] (or N x N): the input's size"),
                    "channels": _key("channels", "the channel order the network expects (default RGB)"),
                    "scale": _key("scale", "multiply pixel values by this (default 1/255)"),
                    "mean": _key("mean", "subtract per channel, after scaling"),
                    "std": _key("std", "divide per channel, after subtracting the mean"),
                },
            },
        },
        "$defs": {"item": item, "stages": stages, "expect": _expect_schema()},
    }


def _is_integer(checker, instance) -> bool:
    # JSON Schema counts 8.0 as an integer; a filter count of 8.0 is a mistake worth naming.
    return isinstance(instance, int) and not isinstance(instance, bool)


@lru_cache(maxsize=None)
def python_pattern(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern in Python's syntax: its `$` ends the text, where Python's
    `$` also matches before a final newline and would let the name 'evil\\n' through."""
    return re.sub(r"\\.|\[(?:\\.|[^\]])*\]|\$", lambda m: r"\Z" if m.group() == "$" else m.group(), pattern)


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not re.search(python_pattern(pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


@lru_cache(maxsize=None)
def _validator(key):
    return _Validator(spec_schema(False) if key == "spec" else REGISTRY[key].args_schema())


def validate(doc: Map, path: str) -> None:
    """Check the document's structure; raise SpecError listing every problem with its position."""
    problems = _unique([_diagnostic(e, doc, path) for e in _validator("spec").iter_errors(doc)])
    if problems:
        problems.sort(key=lambda d: (d.where.line, d.where.col) if d.where else (0, 0))
        raise SpecError.many(problems)


def validate_args(type_name: str, args: Map, layer: str, fallback) -> None:
    """Check one layer's (substituted) arguments against its type's schema fragment."""
    key = (type_name, _frozen(args))
    if key in _VALID:  # the copies of a repeat share their arguments: validate them once
        return
    problems = _unique([_diagnostic(e, args, fallback.path if fallback else "", layer, type_name, fallback)
                        for e in _validator(type_name).iter_errors(args)])
    if problems:
        raise SpecError.many(problems)
    if len(_VALID) >= 10_000:
        _VALID.clear()
    _VALID.add(key)


_VALID: set = set()  # (type, frozen arguments) already found valid


def _frozen(value):
    """A hashable form that tells apart what the schema tells apart (True from 1, 1 from 1.0)."""
    if isinstance(value, dict):
        return tuple(sorted((repr(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return type(value), value


# What each document key must be, in the words an error uses ("'repeat' must be ..."): the kinds
# above, and the words for the keys whose value is a structure the schema spells out.
EXPECTS = {name: kind.expects for name, kind in KEYS.items()} | {
    "defaults": "a mapping from layer type to default arguments",
    "blocks": "a mapping from block name to {args, layers}",
    "table": "a non-empty list of rows, each {repeat: N, ...arguments}",
    "expect": "a mapping of expected figures (" + ", ".join(_expect_schema()["properties"]) + ")",
    "replace": "a mapping from a top-level layer name to the layer that replaces it",
    "set": "a mapping from a path into the base spec (like layers/stages/stages/table/2/repeat) to its new value",
    "frozen": "true or false on a layer; at the top level, a list of layer names or dotted prefixes",
    "preprocess": "a mapping with resize, crop, channels, scale, mean and std",
    "augment": "a mapping with 'transforms' (a list) and optionally 'size' ([h, w])",
}
BLOCK_INPUTS = Kind({"type": "array", "items": {"type": "string", "pattern": IDENTIFIER, "not": {"const": "input"}},
                     "minItems": 2, "uniqueItems": True},
                    "a list of two or more different names for the block's inputs, each of ASCII letters, digits "
                    "and _ (not 'input'), like [skip, below]")
BLOCK = ("a mapping from block name (letters, digits and _, not starting with a digit) to a block: "
         "{layers: [...], args: {...}, output: name}")


def _item_name(doc, parts):
    """The `name:` of the innermost layer item on the path of an error, if it has one."""
    node, name = doc, None
    for previous, part in zip([None] + parts, parts):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if previous in ("layers", "sequential") and isinstance(node, Map) and isinstance(node.get("name"), str):
            name = node["name"]
    return name


def _diagnostic(err, doc, path, layer=None, type_name=None, fallback=None, parts=None) -> Diagnostic:
    parts = list(err.absolute_path) if parts is None else parts
    if type_name is None and len(parts) >= 3 and parts[0] == "defaults" and parts[1] in REGISTRY:
        # defaults.conv.kernel: an argument, worded as one
        return _diagnostic(err, doc[parts[0]][parts[1]], path, None, parts[1], locate(doc, parts[:2]), parts[2:])
    if layer is None and type_name is None and parts[-1:] != ["name"]:
        layer = _item_name(doc, parts)
    where = locate(doc, parts, fallback)
    owner = f"{type_name}" if type_name else _describe(parts)
    if err.validator == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        key = extra[0]
        container = doc
        for p in parts:
            container = container[p]
        if isinstance(container, Map) and key in container.key_at:
            where = container.key_at[key]
        noun = "argument" if type_name else "key"
        if not allowed:
            return Diagnostic("error", f"unknown argument '{key}': {owner} takes no arguments", where, layer)
        hint = did_you_mean(key, allowed) or f"; allowed: {', '.join(allowed)}"
        return Diagnostic("error", f"unknown {noun} '{key}' for {owner}{hint}", where, layer)
    if err.validator == "required":  # jsonschema reports each missing key; say them all once
        missing = [k for k in err.validator_value if k not in err.instance]
        props = err.schema.get("properties", {})
        noun = "argument" if type_name else "key"
        listed = ", ".join(f"'{k}' ({props[k]['description']})" if props.get(k, {}).get("description")
                           else f"'{k}'" for k in missing)
        plural = "s" if len(missing) > 1 else ""
        return Diagnostic("error", f"{owner} is missing the required {noun}{plural} {listed}", where, layer)
    subject = f"argument '{parts[0]}' of {type_name}" if type_name and parts else f"'{_describe(parts)}'"
    if type_name and parts:
        field = {f.name: f for f in REGISTRY[type_name].arguments()}.get(parts[0])
        expects = field.metadata["kind"].expects if field else None
        value = err.instance if len(parts) == 1 else args_value(doc, parts[:1])
    else:
        keys = [i for i, p in enumerate(parts) if isinstance(p, str)]
        key_index = keys[-1] if keys else None
        key = parts[key_index] if key_index is not None else None
        expects = SPEC_NAME.expects if parts == ["name"] else EXPECTS.get(key)
        if parts[:1] == ["blocks"] and len(parts) <= 2:
            expects = BLOCK
        if parts[:1] == ["blocks"] and parts[2:3] == ["inputs"]:
            expects = BLOCK_INPUTS.expects
        if parts[:1] == ["replace"] and len(parts) == 2:
            expects = "a layer item, like `{dense: 10}`"
        value = args_value(doc, parts[: key_index + 1]) if key_index is not None else err.instance
        if key_index is not None:
            subject = f"'{_describe(parts[: key_index + 1])}'"
            where = locate(doc, parts[: key_index + 1], fallback)
    if expects:
        return Diagnostic("error", f"{subject} must be {expects}; got {shorten(value)}", where, layer)
    return Diagnostic("error", f"{subject}: {err.message}", where, layer)


def args_value(doc, parts):
    node = doc
    for p in parts:
        node = node[p]
    return node


def _unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return list(dict.fromkeys(diagnostics))


def _describe(parts) -> str:
    if not parts:
        return "the spec"
    out = str(parts[0])
    for p in parts[1:]:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out
