"""Wiring: which node each written name means, and an order in which every input comes first.

Expansion writes references (`Ref`) as it goes and defines names in a `Names`; an item may name a
later one, so references are resolved only after the whole spec is expanded. A name is either a
node or an alias of another reference (a block's output, a skipped item, a repeat's last copy).

A reference resolves to a value: a node's name, or `node.k` for output k of a node with several
outputs (split, chunk); `name.k` also works through an alias (a block ending in a split).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import Location, SpecError, did_you_mean
from .ir import INPUT, Node, output_values


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
        self.outputs: dict[str, int] = {}  # node -> its number of outputs, where more than one

    def define(self, name: str, where, outputs: int = 1) -> None:
        if name in self.defined:
            first = self.defined[name]
            at = f" (first defined at line {first.line})" if first else ""
            raise SpecError(f"duplicate layer name '{name}'{at}", where, name)
        # `s.0` names output 0 of a split `s`: no layer may be called so as well
        head, k = _output_of(name)
        taken = [(head, name)] if head is not None and k < self.outputs.get(head, 0) else []
        taken += [(name, v) for v in (f"{name}.{k}" for k in range(outputs if outputs > 1 else 0)) if v in self.defined]
        if taken:
            node, value = taken[0]
            raise SpecError(f"the name '{value}' is taken by output {value.rsplit('.', 1)[1]} of '{node}', "
                            f"which has {self.outputs.get(node, outputs)} outputs; rename the layer", where, name)
        self.defined[name] = where
        if outputs > 1:
            self.outputs[name] = outputs

    def alias(self, name: str, ref: Ref, where) -> None:
        self.define(name, where)
        self.aliases[name] = ref

    def resolve(self, ref: Ref, whole: bool = False) -> str:
        """The value a reference names: a node, or `node.k` for one output of a node with several.

        A bare name of a node with several outputs is an error where one input is needed; with
        `whole` it stands for the node itself (its expectations, the list of graph outputs).
        """
        target, ref = self._follow(ref)
        if target != INPUT and target not in self.defined:
            head, k = _output_of(target)
            if head is None or not (head == INPUT or head in self.defined or head in self.aliases):
                self._undefined(ref)
            node = self.resolve(replace(ref, target=head), whole=True)
            count, written = self.outputs.get(node, 1), ref.text.rpartition(".")[0] or head
            if count == 1:
                raise SpecError(f"'{ref.text}' names output {k} of '{written}', which has one output; "
                                f"write '{written}'", ref.where, ref.owner)
            if k >= count:
                raise SpecError(f"'{ref.text}' names output {k} of '{written}', which has {count} outputs: "
                                f"{_listed(written, count)}", ref.where, ref.owner)
            return f"{node}.{k}"
        if target in self.outputs and not whole:
            raise SpecError(f"'{ref.text}' has {self.outputs[target]} outputs; name the one this layer takes "
                            f"in `inputs:` ({_listed(ref.text, self.outputs[target])})", ref.where, ref.owner)
        return target

    def values(self, node: str) -> tuple[str, ...]:
        """Every value a node makes: itself, or `node.0`, `node.1`..."""
        return tuple(f"{node}.{k}" for k in range(self.outputs[node])) if node in self.outputs else (node,)

    def _follow(self, ref: Ref) -> tuple[str, Ref]:
        """What a reference names after its aliases (remembered: chains can be long), and the
        reference that names it last, for messages."""
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
        return target, ref

    @staticmethod
    def _undefined(ref: Ref):
        hint = did_you_mean(ref.text, ref.nearby)
        if not hint:
            shown = [INPUT] + [n for n in ref.nearby if n != ref.text][:12]
            hint = f"; the names here are: {', '.join(shown)}"
        raise UndefinedName(f"undefined name '{ref.text}'{hint}", ref.where, ref.owner)


class UndefinedName(SpecError):
    """A name no item defines (so far: a block's `in.` reads names while the spec is expanded)."""


def _output_of(name: str) -> tuple[str | None, int]:
    """`s.1` -> ('s', 1); a name that does not end in a number -> (None, 0)."""
    head, _, tail = name.rpartition(".")
    return (head, int(tail)) if head and tail.isdigit() and len(tail) < 10 else (None, 0)


def _listed(name: str, count: int) -> str:
    return ", ".join(f"{name}.{k}" for k in range(min(count, 3))) + (f" ... {name}.{count - 1}" if count > 3 else "")


def topological(nodes: list[Node]) -> tuple[Node, ...]:
    """Order nodes so inputs come first, keeping the written order where it is free; report cycles."""
    by_value = {v: n for n in nodes for v in output_values(n)}  # each value -> the node making it
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    order: list[Node] = []
    for root in nodes:
        if state.get(root.name):
            continue
        stack = [(root, iter(root.inputs))]
        state[root.name] = 1
        while stack:  # iterative: a chain of thousands of layers must not hit the recursion limit
            node, pending = stack[-1]
            for value in pending:
                if value not in by_value or state.get(by_value[value].name) == 2:
                    continue
                name = by_value[value].name
                if state.get(name) == 1:
                    path = [n.name for n, _ in stack]
                    cycle = path[path.index(name):] + [name]
                    raise SpecError(f"the layers form a cycle: {' -> '.join(cycle)}; "
                                    "a layer cannot depend on its own output", by_value[value].where, name)
                state[name] = 1
                stack.append((by_value[value], iter(by_value[value].inputs)))
                break
            else:
                stack.pop()
                state[node.name] = 2
                order.append(node)
    return tuple(order)
