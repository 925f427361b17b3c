"""The layer registry: every layer type is one class in one module of `compiler/layers/`.

A layer class declares, side by side:
  - its arguments, as dataclass fields made with `arg()` (JSON Schema fragment, doc, default,
    converter), so the schema, `convspec layers` and the docs table all come from here;
  - its rules: `output_shape`, `weights` (names, shapes, trainable or not), `macs`, `flops`,
    `window` (the receptive-field step) and `warnings`;
  - its ONNX lowering, `lower`, written with the exact ONNX attribute names.

`@register("name")` turns the class into a frozen, keyword-only dataclass and refuses duplicate
names. Arguments shared by several types (a window's kernel, stride, padding) live in an
`@arguments` base class, so each is declared once.
Instances are the normalised, typed form of one layer's arguments.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import ClassVar

from .errors import LayerArgError

Shape = tuple  # (C, H, W) or (features,), never the batch

REGISTRY: dict[str, type["Layer"]] = {}

GLOBAL = "global"  # a window() result: every output depends on the whole input map

# The kinds of warning a layer raises, which an item's `accept:` acknowledges by name.
WARNING_KINDS = {"untiled": "a window (conv, pool, channel pool) that does not tile its input"}


@dataclass(frozen=True)
class Kind:
    """A reusable argument type: its JSON Schema and the words an error uses for it."""

    schema: dict
    expects: str


POSITIVE_INT = Kind({"type": "integer", "minimum": 1}, "a positive integer")
NON_NEGATIVE_INT = Kind({"type": "integer", "minimum": 0}, "an integer >= 0")
BOOL = Kind({"type": "boolean"}, "true or false")
NUMBER = Kind({"type": "number"}, "a number")
POSITIVE_NUMBER = Kind({"type": "number", "exclusiveMinimum": 0}, "a number > 0")
RATE = Kind({"type": "number", "minimum": 0, "exclusiveMaximum": 1}, "a number in [0, 1)")
SIZE2 = Kind(
    {"anyOf": [POSITIVE_INT.schema,
               {"type": "array", "items": POSITIVE_INT.schema, "minItems": 2, "maxItems": 2}]},
    "a positive integer or a list [h, w] of them",
)
PADDING = Kind(
    {"anyOf": [NON_NEGATIVE_INT.schema,
               {"type": "array", "items": NON_NEGATIVE_INT.schema, "minItems": 2, "maxItems": 2},
               {"type": "array", "items": NON_NEGATIVE_INT.schema, "minItems": 4, "maxItems": 4},
               {"enum": ["same", "valid"]}]},
    "an integer >= 0, [h, w], [top, left, bottom, right], 'same' or 'valid'",
)


def enum(*values) -> Kind:
    return Kind({"enum": list(values)}, "one of " + ", ".join(repr(v) for v in values))


def arg(kind: Kind, doc: str, default=MISSING, convert=None):
    """A layer argument: its kind, a one-line doc, a default (none = required), a converter."""
    meta = {"kind": kind, "doc": doc, "convert": convert}
    return field(metadata=meta) if default is MISSING else field(default=default, metadata=meta)


@dataclass(frozen=True)
class Weight:
    """One weight tensor of a layer. Its key is `<node name>.<name>`, as in torchvision.

    `on_block`: the tensor is held by the enclosing block, as torchvision's CNBlock holds its
    `layer_scale` directly (no module of its own): the key is then `<block name>.<name>`, the
    node's name less its last dotted part (`features.1.0.gamma` -> `features.1.0.layer_scale`;
    a node without a dot holds it under its own name, `gamma.layer_scale`).
    """

    name: str
    shape: tuple
    trainable: bool = True
    role: str = "kernel"  # kernel, bias, scale, shift, mean, var, slope, layer_scale: how it is initialised; fixed: read from a file
    on_block: bool = False

    @property
    def size(self) -> int:
        return numel(self.shape)

    def key(self, node: str) -> str:
        owner = node.rsplit(".", 1)[0] if self.on_block and "." in node else node
        return f"{owner}.{self.name}"


class Layer:
    """Base of all layer types. Rules receive the input shapes (one argument per input)."""

    type_name: ClassVar[str]
    family: ClassVar[str]  # the registry module it lives in, for docs
    shorthand: ClassVar[str | None] = None  # `dense: 4096` means `dense: {units: 4096}`
    variadic: ClassVar[bool] = False  # merges (add, concat) take two or more inputs
    second_input: ClassVar[str | None] = None  # what an optional second input is for (crop: the size to crop to)
    relu_like: ClassVar[bool] = False  # ends in relu or the like: seeded kernels are He-, not Glorot-initialised
    fp32: ClassVar[bool] = False  # stays float32 in an fp16 model (compiler/half.py): float16 would overflow
    warning_kind: ClassVar[str] = "untiled"  # what its warnings() are, in WARNING_KINDS: so far, only untiled windows
    copies: ClassVar[int] = 1  # outputs of its shape it makes per input: a multi-crop's network runs once per crop

    # -- rules (override what applies) -------------------------------------------------
    def output_shape(self, *ins: Shape) -> Shape:
        """The node's output; for a layer with several outputs, all of them as one (a split's input)."""
        raise NotImplementedError

    def outputs(self) -> int:
        """How many values the node makes; later items address value k of node `s` as `s.k`."""
        return 1

    def output_shapes(self, *ins: Shape) -> tuple[Shape, ...]:
        """One shape per output value."""
        return (self.output_shape(*ins),)

    def weights(self, *ins: Shape) -> list[Weight]:
        return []

    def macs(self, out: Shape, *ins: Shape) -> int:
        return 0

    def flops(self, out: Shape, *ins: Shape) -> int:
        return 0

    def window(self, *ins: Shape):
        """Receptive-field step: an arith.Window, GLOBAL, or None for a pointwise layer."""
        return None

    def warnings(self, *ins: Shape) -> list[tuple[str, str | None]]:
        """(message, argument) pairs that `check` reports, and `--strict` turns into errors."""
        return []

    def lower(self, g, ins: list[str], shapes: tuple, out: Shape) -> str:
        """Emit ONNX nodes through the Builder `g` (compiler/lower.py); return the output value.

        `ins` are the input value names, `shapes` their shapes without the batch; a layer with
        several outputs returns a list of values, one per output. It emits a fixed
        number of nodes and of constant elements whatever the sizes (never one per output bin or
        row), so a model's size is bounded by the limits `check` enforces: nodes by --max-layers,
        weights by --max-params (tests/test_hostile_pool.py holds every type to this).
        """
        raise NotImplementedError(f"{self.type_name} has no ONNX lowering")

    # -- construction ------------------------------------------------------------------
    @classmethod
    def arguments(cls):
        """Required arguments first, then the optional ones, each in declaration order."""
        return sorted(fields(cls), key=lambda f: f.default is not MISSING)

    @classmethod
    def from_args(cls, args: dict) -> "Layer":
        """Build from already schema-validated arguments, normalising each one once."""
        values = {}
        for f in fields(cls):
            value = args[f.name] if f.name in args else f.default
            _check_magnitude(f.name, value, sizes=f.metadata["kind"].schema.get("type") != "number")
            convert = f.metadata["convert"]
            values[f.name] = convert(value) if convert and value is not None else value
        return cls(**values)

    @classmethod
    def args_schema(cls, partial: bool = False) -> dict:
        """The JSON Schema of this type's argument mapping (`partial`: nothing required)."""
        props = {}
        for f in fields(cls):
            kind = f.metadata["kind"]
            props[f.name] = dict(kind.schema, description=f.metadata["doc"])
            if f.default is not MISSING and f.default is not None:
                props[f.name]["default"] = f.default
        schema = {"type": "object", "properties": props, "additionalProperties": False}
        required = [f.name for f in fields(cls) if f.default is MISSING]
        if required and not partial:
            schema["required"] = required
        return schema

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]


def arguments(cls):
    """Make a class (a layer type, or a base holding shared arguments) a frozen keyword-only dataclass."""
    return dataclass(frozen=True, kw_only=True)(cls)


MAX_ARGUMENT = 2**31 - 1  # ONNX Runtime's kernels overflow on sizes, strides and pads beyond this
MAX_FLOAT32 = 3.4028234663852886e38  # a number argument becomes a float32 attribute or constant


def _check_magnitude(name: str, value, sizes: bool) -> None:
    """`sizes`: the argument holds integer sizes (any float in it is a number all the same)."""
    for v in value if isinstance(value, (list, tuple)) else (value,):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if (isinstance(v, float) or not sizes) and abs(v) > MAX_FLOAT32:
            raise LayerArgError(f"argument '{name}' is {v:g}, beyond the float32 range the model computes in "
                                f"(at most {MAX_FLOAT32:.4g}); is it a typo?", arg=name)
        if sizes and isinstance(v, int) and abs(v) > MAX_ARGUMENT:
            raise LayerArgError(f"argument '{name}' is {v}, beyond what ONNX Runtime can compute with "
                                f"(at most {MAX_ARGUMENT:,}); is it a typo?", arg=name)


def register(type_name: str):
    """Class decorator: make a frozen dataclass of the layer and add it to the registry."""

    def wrap(cls):
        if type_name in REGISTRY:
            raise ValueError(f"layer type '{type_name}' is registered twice")
        cls = arguments(cls)
        cls.type_name = type_name
        cls.family = cls.__module__.rsplit(".", 1)[-1]
        REGISTRY[type_name] = cls
        return cls

    return wrap


def spatial(x: Shape, layer: Layer) -> Shape:
    """Require a [C, H, W] input; the error says what to add."""
    if len(x) != 3:
        raise LayerArgError(f"{layer.type_name} needs a [C, H, W] input, got {list(x)}; "
                            "it cannot follow a flatten or dense layer")
    return x


def numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
