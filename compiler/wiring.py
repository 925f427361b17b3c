"""Wiring: which node each written name means, and an order in which every input comes first.

Expansion writes references (`Ref`) as it goes and defines names in a `Names`; an item may name a
later one, so references are resolved only after the whole spec is expanded. A name is either a
node or an alias of another reference (a block's output, a skipped item, a repeat's last copy).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Location, SpecError, did_you_mean
from .ir import INPUT, Node


@dataclass(frozen=True)
class Ref:
    """A reference to a name, qualified by the scope it was written in."""

    target: str
    text: str
    where: Location | None
    nearby: tuple = ()  # names visible where it was written, for "did you mean"
    owner: str | None = None  # the layer that wrote it


class Names:
    """Every name a spec defines: nodes, and aliases that stand for another reference."""

    def __init__(self):
        self.defined: dict[str, Location | None] = {}
        self.aliases: dict[str, Ref] = {}
        self.resolved: dict[str, str] = {}  # alias -> node, filled as references resolve

    def define(self, name: str, where) -> None:
        if name in self.defined:
            first = self.defined[name]
            at = f" (first defined at line {first.line})" if first else ""
            raise SpecError(f"duplicate layer name '{name}'{at}", where, name)
        self.defined[name] = where

    def alias(self, name: str, ref: Ref, where) -> None:
        self.define(name, where)
        self.aliases[name] = ref

    def resolve(self, ref: Ref) -> str:
        """The node a reference names, following aliases (and remembering them: chains can be long)."""
        target, path, seen = ref.target, [], set()
        while target in self.aliases and target not in self.resolved:
            if target in seen:
                raise SpecError(f"the names form a cycle through skipped layers: {' -> '.join(path + [target])}; "
                                "a layer cannot take its own output as input", ref.where, ref.owner)
            seen.add(target)
            path.append(target)
            ref = self.aliases[target]
            target = ref.target
        target = self.resolved.get(target, target)
        if target == INPUT or target in self.defined:
            for name in path:
                self.resolved[name] = target
            return target
        hint = did_you_mean(ref.text, ref.nearby)
        if not hint:
            shown = [INPUT] + [n for n in ref.nearby if n != ref.text][:12]
            hint = f"; the names here are: {', '.join(shown)}"
        raise SpecError(f"undefined name '{ref.text}'{hint}", ref.where, ref.owner)


def topological(nodes: list[Node]) -> tuple[Node, ...]:
    """Order nodes so inputs come first, keeping the written order where it is free; report cycles."""
    by_name = {n.name: n for n in nodes}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    order: list[Node] = []
    for root in nodes:
        if state.get(root.name):
            continue
        stack = [(root, iter(root.inputs))]
        state[root.name] = 1
        while stack:  # iterative: a chain of thousands of layers must not hit the recursion limit
            node, pending = stack[-1]
            for name in pending:
                if name not in by_name or state.get(name) == 2:
                    continue
                if state.get(name) == 1:
                    path = [n.name for n, _ in stack]
                    cycle = path[path.index(name):] + [name]
                    raise SpecError(f"the layers form a cycle: {' -> '.join(cycle)}; "
                                    "a layer cannot depend on its own output", by_name[name].where, name)
                state[name] = 1
                stack.append((by_name[name], iter(by_name[name].inputs)))
                break
            else:
                stack.pop()
                state[node.name] = 2
                order.append(node)
    return tuple(order)
