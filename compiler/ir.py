"""The flat graph IR that expansion produces and inference consumes. Frozen, typed, no YAML."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Location
from .registry import Layer

INPUT = "input"  # the reserved name of the spec's (or a block's) input


@dataclass(frozen=True)
class Node:
    name: str  # stable dotted name, e.g. layer1.0.conv1; weight keys are <name>.<weight>
    layer: Layer  # typed, normalised arguments and the rules of its type
    inputs: tuple[str, ...]  # node names, or "input" for the spec's input
    where: Location | None = None  # the layer item in the spec
    arg_at: dict = field(default_factory=dict, compare=False)  # argument -> Location
    notes: tuple = field(default=(), compare=False)  # note Diagnostics: the block instances it is in, innermost first

    @property
    def type(self) -> str:
        return self.layer.type_name


def output_values(node: Node) -> tuple[str, ...]:
    """The values a node makes: its name, or `name.0`, `name.1`... for a layer with several outputs."""
    count = node.layer.outputs()
    return (node.name,) if count == 1 else tuple(f"{node.name}.{k}" for k in range(count))


@dataclass(frozen=True)
class Expectation:
    """An `expect:` mapping: figures that `check` verifies for one layer item or the whole spec."""

    subject: str  # what the messages call it
    output: str  # the node whose output shape and receptive field are checked
    nodes: tuple[str, ...]  # the nodes whose params, MACs and FLOPs are summed
    values: dict
    where: Location | None = None
    value_at: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Acceptance:
    """An item's `accept:`: warnings of these kinds from the nodes it made are known and kept as
    notes; an acceptance that no warning needs is an error, so it cannot outlive its reason."""

    kinds: tuple[str, ...]
    nodes: tuple[str, ...]
    where: Location | None = None
    subject: str = ""  # the item's name, for messages


@dataclass(frozen=True)
class BlockInstance:
    """One use of a `blocks:` entry: what a diagram draws as one box when collapsed."""

    name: str  # its dotted name, e.g. layer1.0; its nodes' names start with it
    block: str  # the block's name in `blocks:`, e.g. bottleneck
    nodes: tuple[str, ...]  # the nodes it made, those of the instances nested in it included


@dataclass(frozen=True)
class Attachments:
    """What travels with the model beyond its graph: how to feed it, what its outputs mean, which
    weights stay fixed, and the files it was written in. Compiling writes them into its metadata."""

    labels: tuple[str, ...] | None = None  # None when the spec names no labels file
    preprocess: dict | None = None  # what `convspec run` does to an image first
    frozen: frozenset = frozenset()  # node names whose weights stay fixed when training
    sources: tuple[str, ...] = ()  # the spec's file, then its bases' (extends), for the digest
    augment: object = None  # an augment.Augment: the training-time data augmentation, its own graph


@dataclass(frozen=True)
class Member:
    """One network of an ensemble: its nodes are named `<name>.<its own node name>`."""

    name: str
    spec: str  # the spec's own name
    output: str  # its output node, prefixed


@dataclass(frozen=True)
class Graph:
    name: str
    path: str
    meta: dict  # title, paper, description
    input_shape: tuple
    nodes: tuple[Node, ...]  # in topological order
    outputs: tuple[str, ...]
    expectations: tuple[Expectation, ...] = ()
    attachments: Attachments = Attachments()
    acceptances: tuple[Acceptance, ...] = ()
    blocks: tuple[BlockInstance, ...] = ()  # inner instances before the ones they are nested in
    members: tuple[Member, ...] = ()  # an ensemble's members (compiler/ensemble.py); () otherwise
