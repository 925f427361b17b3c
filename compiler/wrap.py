"""What the wrapper specs (ensembles, multi-crops) share: the keys they may have, and their
members' graphs renamed into one flat graph.

A wrapper spec holds no layers of its own. Its members are whole specs, read by the pipeline;
their nodes, expectations and frozen layers keep pointing at the members' files, so an error in
a member is reported where it is written.
"""

from __future__ import annotations

from dataclasses import replace

from .errors import SpecError
from .ir import INPUT, Graph

# a wrapper takes its network from the specs it names
NETWORK_KEYS = ("layers", "blocks", "defaults", "outputs", "extends", "replace", "append")


def refuse(doc, keys, what: str) -> None:
    """A key that has no meaning in this wrapper is an error at the key."""
    for key in keys:
        if key in doc:
            raise SpecError(f"'{key}' does not belong in {what}; remove it", doc.key_at[key])


def renamed(graph: Graph, rename) -> tuple[list, list]:
    """The graph's nodes and expectations with every node name (and `input`) passed through `rename`."""
    nodes = [replace(n, name=rename(n.name), inputs=tuple(rename(i) for i in n.inputs)) for n in graph.nodes]
    expectations = [replace(e, subject=rename(e.subject),
                            output=rename(e.output), nodes=tuple(rename(n) for n in e.nodes))
                    for e in graph.expectations]
    return nodes, expectations


def prefixer(prefix: str):
    """`name` -> `prefix.name`; the spec's input stays the input."""
    return lambda name: name if name == INPUT else f"{prefix}.{name}"


def single_output(graph: Graph, where, what: str) -> str:
    if len(graph.outputs) != 1:
        raise SpecError(f"{what} '{graph.name}' has {len(graph.outputs)} outputs ({', '.join(graph.outputs)}); "
                        "a wrapper combines specs with one output each", where)
    return graph.outputs[0]
