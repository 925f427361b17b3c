"""Expansion: the spec language's meaning, from a validated document to a flat list of nodes.

Every item of a `layers:` list has one *op* (a layer type, a block, `sequential` or `stages`)
and optional meta keys (name, inputs, expect, when, repeat, rest, frozen). Items are wired in order
unless they name their `inputs`. Names are scoped and dotted: item `conv1` inside block
instance `layer1.0` becomes node `layer1.0.conv1`. Block arguments and `defaults:` are filled in
here; which node a name means, and the order of the nodes, is wiring.py's job, and labels,
preprocess and `frozen:` are attachments.py's.

A block may read its input's shape (`${in.channels}`). Expansion then infers the output shapes
of the nodes made so far that lead to that input, with the layers' own shape rules, when (and
only when) an expression asks: shapes flow forward, from nodes already made, never back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .attachments import attach
from .errors import Diagnostic, LayerArgError, Location, ShapeError, SpecError, did_you_mean, shorten as _short
from .expr import IN, ExprError, InputShape, is_reference, substitute
from .infer import layer_error
from .ir import INPUT, Acceptance, BlockInstance, Expectation, Graph, Node, output_values
from .limits import DEFAULT, Limits
from .registry import REGISTRY
from .schema import GROUP_KEYS, MAX_REPEAT, META_KEYS, validate_args
from .source import MAX_NODES, Map, Seq, Spent, count_nodes
from .wiring import Names, Ref, UndefinedName, topological


MAX_NAME = 1_000  # characters in a layer's dotted name: a copy of a repeat holds its own


def qualify(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@dataclass(frozen=True)
class Scope:
    """What a list of items is expanded in: the block instance it belongs to and what it can see."""

    source: Ref | None  # what `input` names here: the spec's input, or the block's; None with several
    prefix: str = ""  # the dotted name its items' names are qualified with; "" at the top
    params: dict | None = None  # the block's bound arguments; None outside blocks
    chain: tuple[str, ...] = ()  # the blocks being expanded, outermost first: a block may not use itself
    depth: int = 1  # lists open, this one included, against limits.depth
    nearby: tuple[str, ...] = ()  # the names of this list's items, for "did you mean"
    calls: tuple[Diagnostic, ...] = ()  # "note: in block ..." per block instance entered, innermost first
    named: dict[str, Ref] = field(default_factory=dict)  # a block's several inputs (`inputs: [skip, below]`)

    def qualify(self, name: str) -> str:
        return qualify(self.prefix, name)

    def enter(self, prefix: str, source: Ref, **changes) -> Scope:
        """A list nested in this one: a sequential, a stage table, a block's layers."""
        return replace(self, prefix=prefix, source=source, depth=self.depth + 1, nearby=(), **changes)

    def substitute(self, value, where, here):
        """`value` with the block's arguments put in for its `$name` and `${...}`."""
        try:
            return substitute(value, self.params or {})
        except ExprError as e:
            outside = (" (block arguments exist only inside a block)"
                       if not self.params and "argument" in str(e) and "'in." not in str(e)
                       and "$total" not in str(e) else "")
            raise SpecError(f"{e}{outside}", e.where or where, here) from None

    def evaluate(self, value, where, key):
        """A meta key's value (`repeat`, `when`), which may be an expression over the block's arguments."""
        if is_reference(value):
            try:
                return substitute(value, self.params or {})
            except ExprError as e:
                raise SpecError(f"'{key}': {e}", where) from None
        return value


@dataclass(frozen=True)
class Item:
    op: str
    value: object
    meta: Map
    where: Location | None
    name: str  # scope-local name, or a pattern with {i}/{n} when repeated

    @property
    def value_where(self):
        """Where the op's value is written (`dropout: 1.5` -> the 1.5)."""
        return self.meta_at(self.op) if isinstance(self.value, (int, float, str)) else self.where

    def meta_at(self, key):
        return self.meta.value_at.get(key, self.where) if isinstance(self.meta, Map) else self.where


class Expander:
    """Expands one spec's items into nodes, keeping what is made so far."""

    def __init__(self, doc: Map, limits: Limits = DEFAULT, spent: Spent | None = None):
        self.limits = limits
        self.spent = spent if spent is not None else Spent()  # the spec's node budget, shared with load()
        self.blocks = doc.get("blocks") or Map()
        for name in self.blocks:
            if name in REGISTRY or name in GROUP_KEYS or name in META_KEYS or name == INPUT:
                raise SpecError(f"a block cannot be called '{name}': that name is taken by the spec language; "
                                "choose another", self.blocks.key_at[name])
        _check_types(doc, self.blocks)
        self.defaults = doc.get("defaults") or Map()
        self.names = Names()
        self.nodes: list[tuple[Node, tuple[Ref, ...]]] = []  # inputs still references: a name may come later
        self.made: dict[str, tuple[Node, tuple[Ref, ...]]] = {}  # the same, by name
        self.shapes: dict[str, tuple] = {INPUT: tuple(doc["input"])}  # inferred on demand, for `in.`
        self.expectations: list[tuple[Expectation, Ref]] = []
        self.acceptances: list[Acceptance] = []
        self.frozen: set[str] = set()  # nodes made by items marked `frozen: true`
        self.instances: list[BlockInstance] = []  # every block use, for diagrams
        self.expanded = 0  # items so far, against limits.expanded_items

    # -- lists ---------------------------------------------------------------------------
    def sequence(self, items: Seq, scope: Scope, indexed: bool, table: bool = False) -> Ref:
        """Expand a list of items; return a reference to its output (its last item's).

        The copies of the list's repeats (in a stage table, of its rows) are counted across the
        list: a copy's arguments read its number there as `$k`, and the count as `$total`.
        """
        if scope.depth > self.limits.depth:  # blocks within blocks nest without nesting the YAML: bound both
            chain = scope.chain
            route = " -> ".join(chain[:3] + ("...",) + chain[-2:] if len(chain) > 6 else chain)
            raise SpecError(f"blocks and groups nest more than {self.limits.depth} deep"
                            + (f" (blocks {route})" if chain else "") + "; --max-depth raises the limit", items.where)
        parsed = self._parse_items(items, scope, indexed)
        scope = replace(scope, nearby=tuple(n for it in parsed for n in self._instance_names(it, scope))
                        + tuple(scope.named))
        copies = [self._copies(item, scope, table) for item in parsed]
        previous, first, total = scope.source, 0, sum(copies)
        for item, count in zip(parsed, copies):
            previous = self.item(item, scope, previous, (first, total) if count else None)
            first += count
        return previous

    def _copies(self, item: Item, scope: Scope, table: bool) -> int:
        """The copies an item adds to its list's count: a repeat's, or in a stage table one per
        item (a row numbered across the rows is unrolled into items of one copy each)."""
        if "repeat" not in item.meta:
            return 1 if table else 0
        if "when" in item.meta and not self._keep(item.meta, scope, item.where):
            return 0
        times = scope.evaluate(item.meta["repeat"], item.meta_at("repeat"), "repeat")
        valid = isinstance(times, int) and not isinstance(times, bool) and 1 <= times <= MAX_REPEAT
        return times if valid else 0  # _repeat reports an invalid one

    def _parse_items(self, items: Seq, scope: Scope, indexed: bool) -> list[Item]:
        parsed, taken, counters = [], {}, {}
        explicit = {raw.get("name") for raw in items if isinstance(raw, Map)}
        position = 0  # in a sequential, as in an nn.Sequential built from a list: kept items only
        for index, raw in enumerate(items):
            where = items.item_at[index]
            if isinstance(raw, str):
                op, value, meta = raw, None, Map()
                meta.where = where
            else:
                ops = [k for k in raw if k not in META_KEYS]
                if len(ops) != 1:
                    what = "no layer type" if not ops else f"{len(ops)} layer types ({', '.join(ops)})"
                    raise SpecError(f"a layer item needs exactly one layer type key, found {what}; "
                                    "put each layer in its own list item", where)
                op = ops[0]
                value = raw[op]
                meta = raw
            name = meta.get("name")
            if name is None and indexed:
                if "when" in meta and not self._keep(meta, scope, where):
                    continue  # left out of the group: it takes no position, and nothing can name it
                name, position = str(position), position + 1
            elif name is None:
                name = self._auto_name(op, counters, taken, explicit)
            if name == INPUT:
                raise SpecError("'input' is reserved for the input of the spec or block; choose another name",
                                meta.value_at.get("name", where))
            if name in scope.named:
                raise SpecError(f"'{name}' names one of the block's inputs ({', '.join(scope.named)}); choose "
                                "another name", meta.value_at.get("name", where), scope.qualify(name))
            if name in taken:
                raise SpecError(f"duplicate name '{name}' (first used at line {taken[name].line}); "
                                "names must be unique within their block", meta.value_at.get("name", where),
                                scope.qualify(name))
            taken[name] = meta.value_at.get("name", where) if isinstance(meta, Map) else where
            parsed.append(Item(op, value, meta, where, name))
        return parsed

    @staticmethod
    def _keep(meta: Map, scope: Scope, where) -> bool:
        """An item's `when`, evaluated."""
        keep = scope.evaluate(meta["when"], meta.value_at.get("when", where), "when")
        if not isinstance(keep, bool):
            raise SpecError(f"'when' must be true or false, got {keep!r}", meta.value_at.get("when", where))
        return keep

    @staticmethod
    def _auto_name(op, counters, taken, explicit) -> str:
        """Keras-style names: conv1, conv2, maxpool1... skipping names given explicitly."""
        while True:
            counters[op] = counters.get(op, 0) + 1
            name = f"{op}{counters[op]}"
            if name not in taken and name not in explicit:
                return name

    def _instance_names(self, item: Item, scope: Scope) -> list[str]:
        if "repeat" not in item.meta or not any(m in item.name for m in ("{i}", "{n}")):
            return [item.name]
        times = scope.evaluate(item.meta["repeat"], item.meta_at("repeat"), "repeat")
        if not isinstance(times, int) or not 1 <= times <= MAX_REPEAT:
            return []  # _repeat reports it
        self._count(times, item.where, item.name)  # naming the copies costs as much as making them
        return [item.name.format(i=i, n=i + 1) for i in range(times)]

    def _spend(self, nodes: int, where, here: str) -> None:
        """What a block instance or a copy binds anew (arguments, `inputs`) is charged to the node budget."""
        self.spent.nodes += nodes
        if self.spent.nodes > MAX_NODES:
            raise SpecError(f"the spec expands to more than {MAX_NODES:,} YAML nodes, counting the block arguments "
                            "and 'inputs' of every copy; are aliases (*name) or a repeat copying a large one?",
                            where, here)

    def _count(self, items: int, where, here: str) -> None:
        self.expanded += items
        if self.expanded > self.limits.expanded_items:
            raise SpecError(f"the spec expands to more than {self.limits.expanded_items:,} items; reduce the "
                            "repeats (--max-layers raises the limit)", where, here)

    # -- items ---------------------------------------------------------------------------
    def item(self, item: Item, scope: Scope, previous: Ref, numbered: tuple[int, int] | None = None) -> Ref:
        """Expand one item; `numbered` is (`$k` of its first copy, `$total`) when it makes copies."""
        here = scope.qualify(item.name)
        out = Ref(here, item.name, item.where)
        self._count(1, item.where, here)
        if len(here) > MAX_NAME:  # every copy and every node inside one repeats the name: bound it
            raise SpecError(f"the layer's dotted name is {len(here):,} characters long, more than {MAX_NAME:,}; "
                            "use shorter names", item.meta_at("name"), here[:60] + " ...")
        if "repeat" not in item.meta:
            if "rest" in item.meta:
                raise SpecError("'rest' overrides the copies after the first of a repeat; this item has no "
                                "'repeat'", item.meta_at("rest"), here)
            if "{i}" in item.name or "{n}" in item.name:
                raise SpecError("{i} and {n} in a name number the copies of a repeat; this item has no 'repeat'",
                                item.meta_at("name"), here)
        if "when" in item.meta:
            if not self._keep(item.meta, scope, item.where):  # skipped: it passes its input on, under its own name
                self.names.alias(here, self._inputs(item, scope, previous)[0], item.where)
                return out
        inputs = self._inputs(item, scope, previous)
        start = len(self.nodes)
        if "repeat" in item.meta:
            out = self._repeat(item, scope, inputs, numbered)
        elif numbered:  # a stage table's copy, unrolled: its number in its row was kept on the item
            self.op(item, item.value, here, inputs,
                    _numbered(scope, i=getattr(item.meta, "copy", 0), k=numbered[0], total=numbered[1]))
        else:
            self.op(item, item.value, here, inputs, scope)
        if item.meta.get("frozen"):
            self.frozen.update(n.name for n, _ in self.nodes[start:])
        if "accept" in item.meta:
            kinds = item.meta["accept"]
            self.acceptances.append(Acceptance(tuple([kinds] if isinstance(kinds, str) else kinds),
                                               tuple(n.name for n, _ in self.nodes[start:]), item.meta_at("accept"),
                                               here))
        if "expect" in item.meta:
            produced = tuple(n.name for n, _ in self.nodes[start:])
            self.expectations.append((
                Expectation(here, "", produced, dict(item.meta["expect"]),
                            item.meta_at("expect"), item.meta["expect"].value_at),
                out))
        return out

    def _inputs(self, item: Item, scope: Scope, previous: Ref) -> tuple[Ref, ...]:
        if "inputs" not in item.meta:  # the previous item's output; an error about it points here
            if previous is None:
                raise SpecError(f"block '{scope.chain[-1]}' has several inputs ({', '.join(scope.named)}), so its "
                                f"first item says which it takes, like `inputs: {next(iter(scope.named))}`",
                                item.where, scope.qualify(item.name))
            return (replace(previous, where=item.where, owner=scope.qualify(item.name)),)
        names = item.meta["inputs"]
        names = [names] if isinstance(names, str) else list(names)
        self._spend(len(names), item.meta_at("inputs"), scope.qualify(item.name))  # each copy has its own list
        where = item.meta_at("inputs")
        positions = getattr(item.meta["inputs"], "item_at", None) or [where] * len(names)
        owner = scope.qualify(item.name)
        return tuple(Ref(self._target(text, at, scope, owner), text, at, scope.nearby, owner)
                     for text, at in zip(names, positions))

    @staticmethod
    def _target(text: str, where, scope: Scope, owner: str) -> str:
        """The qualified name a written input means: the block's input(s), or an item of the scope."""
        if text in scope.named:
            return scope.named[text].target
        if text != INPUT:
            return scope.qualify(text)
        if scope.source is None:
            raise SpecError(f"block '{scope.chain[-1]}' has several inputs; name one of them "
                            f"({', '.join(scope.named)}), not 'input'", where, owner)
        return scope.source.target

    def _repeat(self, item: Item, scope: Scope, inputs: tuple[Ref, ...], numbered: tuple[int, int]) -> Ref:
        times = scope.evaluate(item.meta["repeat"], item.meta_at("repeat"), "repeat")
        if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= MAX_REPEAT:
            raise SpecError(f"'repeat' must be an integer from 1 to {MAX_REPEAT}, got {_short(times)}",
                            item.meta_at("repeat"))
        pattern = any(m in item.name for m in ("{i}", "{n}"))
        rest = item.meta.get("rest")
        if rest is not None and not isinstance(item.value, (Map, type(None))):
            raise SpecError(f"'rest' overrides arguments, so write {item.op}'s arguments as a mapping "
                            f"(like `{item.op}: {{...}}`), not {_short(item.value)}", item.meta_at("rest"),
                            scope.qualify(item.name))
        current = inputs
        last = None
        for i in range(times):
            local = item.name.format(i=i, n=i + 1) if pattern else f"{item.name}.{i}"
            here = scope.qualify(local)
            value = item.value if i == 0 or rest is None else _merge(item.value or Map(), rest, item.meta_at("rest"))
            # `$i` in a copy's arguments is its number, as `{i}` in its name (ConvNeXt's rising drop
            # rates); `$k` its number across the list's repeats (EfficientNet's)
            self.op(item, value, here, current, _numbered(scope, i=i, k=numbered[0] + i, total=numbered[1]))
            last = Ref(here, local, item.where)
            current = (last,)
        if not pattern:
            self.names.alias(scope.qualify(item.name), last, item.where)
            return Ref(scope.qualify(item.name), item.name, item.where)
        return last

    # -- ops -----------------------------------------------------------------------------
    def op(self, item: Item, value, here: str, inputs: tuple[Ref, ...], scope: Scope) -> None:
        """Make node(s) `here` from the item's op with `value` (a repeat's later copies differ by `rest`)."""
        op, where = item.op, item.where
        if op == "sequential":
            items = _seq(value, where, "sequential")
            out = self.sequence(items, scope.enter(here, self._single(op, inputs, where)), indexed=True)
            self.names.alias(here, out, where)
        elif op == "stages":
            # The stages land in the enclosing scope: layer1..layer4, not stages1.layer1.
            items = _stage_items(value, where, self.limits.expanded_items - self.expanded)
            out = self.sequence(items, scope.enter(scope.prefix, self._single(op, inputs, where)), indexed=False,
                                table=True)
            self.names.alias(here, out, where)
        elif op in self.blocks:
            self._block(item, value, here, inputs, scope)
        elif op in REGISTRY:
            self._layer(item, value, here, inputs, scope)
        else:  # _check_types reports these up front; kept for a type that appears by another road
            raise _unknown_type(op, where, self.blocks)

    def _single(self, op, inputs, where) -> Ref:
        if len(inputs) != 1:
            raise SpecError(f"'{op}' takes one input, got {len(inputs)}", where)
        return inputs[0]

    def _layer(self, item: Item, value, here: str, inputs: tuple[Ref, ...], scope: Scope) -> None:
        op, where = item.op, item.where
        cls = REGISTRY[op]
        args = self._args(cls, item, value, here, scope)
        if cls.variadic and len(inputs) < 2:
            raise SpecError(f"{op} merges two or more inputs, got {len(inputs)}; "
                            "list them with `inputs: [a, b]`", where, here)
        if cls.second_input and len(inputs) > 2:
            raise SpecError(f"{op} takes one input, or two where the second is {cls.second_input}; got "
                            f"{len(inputs)} ({', '.join(r.text for r in inputs)})", where, here)
        if not cls.variadic and not cls.second_input and len(inputs) != 1:
            raise SpecError(f"{op} takes one input, got {len(inputs)} ({', '.join(r.text for r in inputs)}); "
                            "merge them first with an add or concat layer", where, here)
        if len(self.nodes) >= self.limits.layers:
            raise SpecError(f"the spec expands to more than {self.limits.layers:,} layers; reduce the repeats "
                            "(--max-layers raises the limit)", where, here)
        try:
            layer = cls.from_args(args)
        except LayerArgError as e:
            raise SpecError(str(e), args.value_at.get(e.arg, where), here) from None
        node = Node(here, layer, (), where, dict(args.value_at), scope.calls)
        self.names.define(here, where, layer.outputs())
        self.nodes.append((node, inputs))
        self.made[here] = (node, inputs)

    def _args(self, cls, item: Item, value, here: str, scope: Scope) -> Map:
        """The layer's arguments: shorthand spelled out, `defaults:` under them, block arguments put in."""
        where, value_where = item.where, item.value_where or item.where
        if value is None:
            args = Map()
        elif isinstance(value, Map):
            args = value
        elif cls.shorthand:  # `maxpool: 2`, `maxpool: [2, 3]`: the one main argument
            args = Map({cls.shorthand: value})
            args.value_at[cls.shorthand] = value_where
        elif not cls.arguments():
            raise SpecError(f"{cls.type_name} takes no arguments; write `- {cls.type_name}`", value_where, here)
        else:
            example = f"{cls.type_name}: {{{cls.shorthand or cls.arguments()[0].name}: ...}}"
            raise SpecError(f"{cls.type_name} needs a mapping of arguments, like `{example}`", value_where, here)
        args.where = args.where or where
        base = self.defaults.get(cls.type_name)
        if base:
            args = _merge(base, args, where)
        args = scope.substitute(args, where, here)
        validate_args(cls.type_name, args, here, args.where or where)
        return args

    def _block(self, item: Item, value, here: str, inputs: tuple[Ref, ...], scope: Scope) -> None:
        op, where = item.op, item.where
        if op in scope.chain:
            raise SpecError(f"block '{op}' uses itself (through {' -> '.join(scope.chain + (op,))})", where, here)
        block = self.blocks[op]
        declared = block.get("args") or Map()
        if IN in declared:
            raise SpecError(f"block '{op}' cannot have an argument called '{IN}': `in.channels`, `in.height` and "
                            "`in.width` read the block's input shape; choose another name", declared.key_at[IN])
        given = value if isinstance(value, Map) else Map()
        if value is not None and not isinstance(value, Map):
            raise SpecError(f"block '{op}' takes a mapping of arguments, got {value!r}", where, here)
        # Every instance (a repeat's copy, a use inside another block) binds its own arguments,
        # so each spends a node per argument plus the nodes of the values given, before the copy
        # is made: a large value cannot ride a repeat past the node budget. Layer arguments need
        # no charge: each is checked right after substitution, and a valid one is a few numbers.
        self._spend(len(declared) + count_nodes(list(given.values()), self.spent.nodes_left()) - 1, where, here)
        given = scope.substitute(given, where, here)
        for key in given:
            if key not in declared:
                hint = did_you_mean(key, declared) or f"; its arguments are: {', '.join(declared) or 'none'}"
                raise SpecError(f"unknown argument '{key}' for block '{op}'{hint}", given.key_at.get(key, where), here)
        bound = {}
        for key, default in declared.items():
            if key in given:
                bound[key] = given[key]
            elif default is None:
                raise SpecError(f"block '{op}' needs the argument '{key}'", where, here)
            else:
                bound[key] = default
        names = block.get("inputs") or ()
        if names and len(inputs) != len(names):
            raise SpecError(f"block '{op}' takes {len(names)} inputs ({', '.join(names)}), got {len(inputs)} "
                            f"({', '.join(r.text for r in inputs)}); list {len(names)} layers, in that order, with "
                            f"`inputs: [...]`", item.meta_at("inputs"), here)
        named_inputs = dict(zip(names, inputs))
        source = None if names else self._single(op, inputs, where)
        bound[IN] = InputShape(named={n: (lambda r=r: self.shape(r)) for n, r in named_inputs.items()}) if names \
            else InputShape(lambda: self.shape(source))
        shown = ", ".join(f"{key}: {_yaml(value)}" for key, value in list(given.items())[:6])
        shown += ", ..." if len(given) > 6 else ""
        # The instance as the user wrote it: where a child spec `set:` one of its arguments, that line.
        written = next((at for at in given.value_at.values() if at and where and at.path != where.path), where)
        note = Diagnostic("note", f"in block '{op}'" + (f" ({shown})" if shown else ""), written)
        inner = scope.enter(here, source, params=bound, chain=scope.chain + (op,), calls=(note,) + scope.calls,
                            named=named_inputs)
        start = len(self.nodes)
        try:
            out = self.sequence(block["layers"], inner, indexed=False)
        except ShapeError:  # a layer's, found by `in.`: it carries the notes of where that layer is
            raise
        except SpecError as e:  # an error inside the body names the instance the user wrote, C-compiler style
            raise e.noted((note,))
        self.instances.append(BlockInstance(here, op, tuple(n.name for n, _ in self.nodes[start:])))
        if block.get("output") == INPUT:  # a block that passes its input through
            out = self._single(op, inputs, where)
        elif block.get("output") in named_inputs:  # one of its inputs, passed through
            out = named_inputs[block["output"]]
        elif "output" in block:
            named = tuple(it["name"] for it in block["layers"] if isinstance(it, Map) and "name" in it)
            out = Ref(qualify(here, block["output"]), block["output"], block.value_at["output"], named, here)
        self.names.alias(here, out, where)

    def shape(self, ref: Ref) -> tuple:
        """The output shape of what `ref` names, inferred from the nodes made so far (for `in.`).

        A name defined later (a forward reference) has no shape yet: ExprError, which the
        expression reading `in.` reports at its own position.
        """
        todo, visiting = [ref], set()
        while todo:
            ref = todo[-1]
            try:
                name = self.names.resolve(ref)
            except UndefinedName:  # other errors (a split's bare name) are the reference's own
                raise ExprError(f"the block's input shape is not known here: it depends on '{ref.text}', which is "
                                "defined after this point; `in.` needs the layers before the block to come first "
                                "in the spec") from None
            if name in self.shapes:
                todo.pop()
                continue
            # a split's value `s.k` is made by node `s` (node names may hold dots: look the whole name up first)
            node, refs = self.made[name if name in self.made else name.rpartition(".")[0]]
            waiting = [r for r in refs if self._resolved(r) not in self.shapes]
            if waiting and name not in visiting:
                visiting.add(name)
                todo.extend(waiting)
                continue
            if waiting:  # a cycle through names defined later: wiring reports it
                raise ExprError(f"the block's input shape is not known here: '{name}' takes its own output as "
                                "input")
            names = [self.names.resolve(r) for r in refs]
            ins = tuple(self.shapes[n] for n in names)
            try:
                self.shapes.update(zip(output_values(node), node.layer.output_shapes(*ins)))
            except LayerArgError as e:
                raise layer_error(node, names, ins, e) from None
            todo.pop()
        return self.shapes[self.names.resolve(ref)]

    def _resolved(self, ref: Ref) -> str | None:
        try:
            return self.names.resolve(ref)
        except SpecError:
            return None


def _numbered(scope: Scope, **numbers: int) -> Scope:
    """The scope of a copy's arguments: its numbers (`$i`, `$k`, `$total`) over the block's arguments."""
    return replace(scope, params={**(scope.params or {}), **numbers})


# Other names for a registered type, from papers and frameworks. A spelling guess would lead
# astray here ('swish' is nearest to 'hardswish', a different function), so they are named.
SYNONYMS = {"swish": "silu", "clip": "hardtanh", "fc": "dense", "bn": "batchnorm", "deconv": "conv_transpose",
            "interpolate": "upsample", "drop_path": "stochastic_depth"}


def _wired(node: Node, refs, names) -> Node:
    """The node with its inputs resolved; a wiring error inside a block instance says which
    instance, as the expansion's own errors do."""
    try:
        return replace(node, inputs=tuple(names.resolve(r) for r in refs))
    except SpecError as e:
        raise e.noted(node.notes) from None


def _unknown_type(op: str, where, blocks) -> SpecError:
    if SYNONYMS.get(op.lower()) in REGISTRY and op not in blocks:
        return SpecError(f"unknown layer type '{op}'; convspec calls it '{SYNONYMS[op.lower()]}' "
                         f"(see `convspec layers`)", where)
    hint = did_you_mean(op, list(REGISTRY) + list(blocks) + list(GROUP_KEYS)) or "; run `convspec layers` for the list"
    return SpecError(f"unknown layer type '{op}'{hint}", where)


def _check_types(doc: Map, blocks: Map) -> None:
    """Every unknown layer type in the spec, each at its item, in one report: the top-level
    layers, every block's (used or not), sequential groups and stage tables."""
    unknown, todo = [], [doc.get("layers")] + [b.get("layers") for b in blocks.values() if isinstance(b, Map)]
    while todo:
        items = todo.pop()
        if not isinstance(items, Seq):
            continue
        for raw, where in zip(items, items.item_at):
            ops = [raw] if isinstance(raw, str) else [k for k in raw if k not in META_KEYS] \
                if isinstance(raw, Map) else []
            if len(ops) != 1:
                continue  # expansion says what is wrong with it
            op = ops[0]
            value = raw.get(op) if isinstance(raw, Map) else None
            if op == "sequential":
                todo.append(value)
            elif op == "stages" and isinstance(value, Map) and isinstance(value.get("block"), str):
                if value["block"] not in REGISTRY and value["block"] not in blocks:
                    unknown.append(_unknown_type(value["block"], value.value_at["block"], blocks))
            elif op not in REGISTRY and op not in blocks and op not in GROUP_KEYS:
                unknown.append(_unknown_type(op, where, blocks))
    if unknown:
        found = sorted((e.diagnostics[0] for e in unknown), key=lambda d: (d.where.path, d.where.line, d.where.col))
        raise SpecError.many(found)


def _yaml(value) -> str:
    """A value as the spec writes it (true, not True), cut to a readable length; a large list or
    mapping is not spelled out (a note is made for every block instance, so it must stay cheap)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)) and count_nodes(value, 8) > 8:
        return "[...]" if isinstance(value, list) else "{...}"
    return _short(value, 30)


def _seq(value, where, op) -> Seq:
    if not isinstance(value, Seq) or not value:
        raise SpecError(f"'{op}' takes a non-empty list of layers", where)
    return value


def _merge(base: Map, top, where) -> Map:
    """`top` over `base`, keeping each value's source position."""
    if not isinstance(top, Map):
        return top if top is not None else base
    out = Map(base)
    out.value_at, out.key_at = dict(base.value_at), dict(base.key_at)
    out.update(top)
    out.value_at.update(top.value_at)
    out.key_at.update(top.key_at)
    out.where = top.where or where
    return out


def _stage_items(table: Map, where, room: int) -> Seq:
    """A stage table is shorthand for one repeated item per row; `rest` (the table's, under the
    row's) changes the copies after the first of each row.

    With `number_from`, copies are numbered across the rows instead (features.1 ... features.17,
    torchvision's flat Sequential), so each copy becomes an item of its own, named `<name>.<k>`.
    `room` is what the item budget has left: the copies are counted before they are made.
    """
    rows = table["table"]
    flat = table.get("number_from")
    pattern = table.get("name", "stage{n}")
    if flat is not None:
        if "{n}" in pattern or "{i}" in pattern or "name" not in table:
            raise SpecError(f"with 'number_from', 'name' is the prefix of every copy (like `name: features`, giving "
                            f"features.{flat}, features.{flat + 1}, ...), without {{n}} or {{i}}",
                            table.value_at.get("name", table.key_at["number_from"]))
        total = sum(row["repeat"] for row in rows)
        if total > room:
            raise SpecError(f"the stage table makes {total:,} copies, more than the {room:,} items left of the "
                            "limit; reduce the repeats (--max-layers raises the limit)", table.key_at["table"])
    block = table["block"]
    items, number = Seq(), flat
    for k, row in enumerate(rows):
        at = rows.item_at[k]
        own = Map((key, v) for key, v in row.items() if key not in ("repeat", "rest"))
        own.value_at = {key: row.value_at[key] for key in own}
        args = _merge(table.get("args") or Map(), own, at)
        rest = _merge(table.get("rest") or Map(), row.get("rest"), at) if "rest" in table or "rest" in row else None
        rest_at = row.value_at["rest"] if "rest" in row else table.value_at.get("rest")
        if flat is None:
            item = _row_item(block, args, at, repeat=row["repeat"], repeat_at=row.value_at["repeat"],
                             name=pattern.format(n=k + 1, i=k), name_at=table.value_at.get("name", at))
            if rest is not None:
                item["rest"], item.value_at["rest"] = rest, rest_at
            items.append(item)
            items.item_at.append(at)
            continue
        for copy in range(row["repeat"]):
            value = args if copy == 0 or rest is None else _merge(args, rest, rest_at)
            items.append(_row_item(block, value, at, name=f"{pattern}.{number}", name_at=table.value_at["name"]))
            items[-1].copy = copy  # `$i`, as in a repeat's copies
            items.item_at.append(at)
            number += 1
    return items


def _row_item(block, args, at, name, name_at, repeat=None, repeat_at=None) -> Map:
    item = Map({block: args, "name": name})
    item.value_at = {block: at, "name": name_at}
    if repeat is not None:
        item["repeat"], item.value_at["repeat"] = repeat, repeat_at
    item.where = at
    return item


def expand(doc: Map, path: str, sources: tuple[str, ...], limits: Limits = DEFAULT,
           spent: Spent | None = None) -> Graph:
    """Flatten a validated document into a Graph whose nodes are in topological order.

    `sources` are the files the document was read from: the spec's own, then its bases'.
    `spent` holds the nodes they used; block instances spend more (Expander._block).
    """
    ex = Expander(doc, limits, spent)
    last = ex.sequence(doc["layers"], Scope(Ref(INPUT, INPUT, doc.where)), indexed=False)
    names = ex.names
    name = doc.get("name") or path.rsplit("/", 1)[-1].rsplit(".", 1)[0]

    nodes = [_wired(node, refs, names) for node, refs in ex.nodes]
    outputs_raw = doc.get("outputs")
    # a layer with several outputs, last or listed by its bare name, gives the graph all of them
    if outputs_raw is None:
        outputs = names.values(names.resolve(last, whole=True))
    else:
        written = [outputs_raw] if isinstance(outputs_raw, str) else list(outputs_raw)
        outputs = tuple(v for n in written
                        for v in names.values(names.resolve(Ref(n, n, doc.value_at["outputs"], tuple(names.defined)),
                                                            whole=True)))
    if INPUT in outputs:
        raise SpecError("the spec's output is its own input: no layer is used; check `outputs:` and the "
                        "items skipped with `when:`", doc.value_at.get("outputs", doc.where))

    expectations = [replace(e, output=names.resolve(ref, whole=True)) for e, ref in ex.expectations]
    if "expect" in doc:
        expectations.append(Expectation(name, outputs[0], tuple(n.name for n in nodes), dict(doc["expect"]),
                                        doc.value_at["expect"], doc["expect"].value_at))
    meta = {k: doc[k] for k in ("title", "paper", "description") if k in doc}
    input_shape = tuple(doc["input"])
    attachments = attach(doc, input_shape, [n.name for n in nodes], ex.frozen, sources, limits)
    return Graph(name, path, meta, input_shape, topological(nodes), outputs, tuple(expectations), attachments,
                 blocks=tuple(ex.instances), acceptances=tuple(ex.acceptances))
