"""`extends:`: a spec built on another one (a bundled name or a path relative to the spec).

The child may change the input size and any top-level key, add or override blocks and
defaults, `replace:` top-level layers by name (a new head keeps the old name unless it gives
one), `append:` layers at the end, and `set:` single nested values by their path
(`layers/stages/stages/table/2/repeat: 23`). The base's `expect:` figures, title and description are
dropped: they describe the base, and a new head or input size changes them. The merge happens before validation and
expansion, so the rest of the pipeline sees one ordinary spec, with every value still pointing
at the file it came from.
"""

from __future__ import annotations

from pathlib import Path

from .errors import SpecError, did_you_mean
from .limits import DEFAULT, Limits
from .source import Map, Seq, Spent, load, read_text
from .zoo import SPECS_DIR, bundled, referenced_file

MAX_CHAIN = 8  # specs in one extends chain
CHILD_ONLY = ("extends", "replace", "append", "set")


def extend(doc: Map, path: str, validate, limits: Limits = DEFAULT, spent: Spent | None = None,
           chain: tuple = ()) -> tuple[Map, tuple[str, ...]]:
    """The document with its base merged in (recursively), and every file it is made of: `path`,
    then its bases'. `validate(doc, path)` checks each file.

    The chain is one spec: `spent` holds what the files read so far used of its byte and node
    budgets, and takes each base's. Merging valid specs gives a valid one, so the merged document
    needs no second validation: a chain costs what its files cost.
    `chain` holds the files extended so far, so a loop is named rather than followed.
    """
    spent = spent if spent is not None else Spent()
    if "extends" not in doc:
        for key in CHILD_ONLY[1:]:
            if key in doc:
                raise SpecError(f"'{key}' changes the spec named by 'extends', and this spec extends none; "
                                "add `extends: BASE`, or write the layers out", doc.key_at[key])
        return doc, (path,)
    where = doc.value_at["extends"]
    chain = chain + (path,)
    base_path = spec_file(doc["extends"], path, where, limits)
    shown = str(base_path)
    seen = [Path(p).resolve() for p in chain]
    if base_path.resolve() in seen:
        if len(chain) == 1:
            raise SpecError("a spec cannot extend itself", where)
        loop = chain[seen.index(base_path.resolve()):] + (shown,)
        raise SpecError(f"'extends' makes a loop: {' -> '.join(loop)}", where)
    if len(chain) >= MAX_CHAIN:
        raise SpecError(f"'extends' chains more than {MAX_CHAIN} specs: {' -> '.join(chain)} -> ...", where)
    base = load(read_text(base_path, limits, spent), shown, limits, spent)
    validate(base, shown)
    base, sources = extend(base, shown, validate, limits, spent, chain)
    merged = _merge(_without_expectations(base), doc)
    if "set" in doc:  # a value set by path may not fit where it lands: check the whole again
        for text, value in doc["set"].items():
            merged = _set_path(merged, text, value, doc["set"].key_at[text], doc["set"].value_at[text])
        validate(merged, path)
    return merged, (path,) + sources


def spec_file(ref: str, child: str, where, limits: Limits, key: str = "extends") -> Path:
    """A file path (`base.yaml`, `nets/base.yaml`) is relative to the child's folder; a bare
    name (`resnet50`) is a bundled spec. `key` names what refers to it, in messages."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        return referenced_file(ref, child, key, where, limits)
    bundled_path = SPECS_DIR / f"{ref}.yaml"
    try:
        found = bundled_path.is_file()
    except (OSError, ValueError):  # a name too long for a path, a NUL byte
        found = False
    if not found:
        hint = did_you_mean(ref, [p.stem for p in bundled()]) or "; run `convspec zoo` for the list"
        raise SpecError(f"'{key}' names '{ref}', which is not a bundled spec (a file needs its .yaml suffix){hint}",
                        where)
    return bundled_path


def _merge(base: Map, child: Map) -> Map:
    out = _copy(base)
    for key, value in child.items():
        if key in CHILD_ONLY:
            continue
        if key in ("defaults", "blocks") and key in out:
            merged = _copy(out[key])
            for name, entry in value.items():
                if key == "defaults" and name in merged:  # per layer type: the child's arguments win
                    entry = _overlay(merged[name], entry)
                _set(merged, name, entry, value, name)
            _set(out, key, merged, child, key)
        else:
            _set(out, key, value, child, key)
    if "layers" not in out:  # a wrapper (ensemble, multicrop): its members bring the layers
        for key in ("replace", "append"):
            if key in child:
                raise SpecError(f"'{key}' changes the base's layers, and the base has none (its network is made of "
                                "other specs); change it with `set:` or its own keys", child.key_at[key])
        return out
    layers = _copy(out["layers"])
    for name, item in (child.get("replace") or {}).items():
        names = [it.get("name") if isinstance(it, Map) else None for it in layers]
        if name not in names:
            hint = did_you_mean(name, [n for n in names if n]) or "; only named top-level layers can be replaced"
            raise SpecError(f"'replace' names '{name}', which is not a top-level layer of the base spec{hint}",
                            child["replace"].key_at[name])
        index = names.index(name)
        new = _copy(item) if isinstance(item, Map) else _single(item, child["replace"].value_at[name])
        if "name" not in new:  # the new head keeps the name, so weights and references still match
            new["name"] = name
            new.value_at["name"] = child["replace"].key_at[name]
        layers[index], layers.item_at[index] = new, child["replace"].value_at[name]
    for k, item in enumerate(child.get("append") or []):
        layers.append(item)
        layers.item_at.append(child["append"].item_at[k])
    _set(out, "layers", layers, out, "layers")
    return out


def _set_path(doc: Map, text: str, value, key_at, value_at) -> Map:
    """`doc` with the value at the path `text` replaced: segments split by `/`; in a list, a number
    is a 0-based index, and in a list of layers a name picks the layer. Only what exists can be
    set, so a typo cannot add a key the base never had. The path's containers are copied."""
    parts = text.split("/")
    out = node = _copy(doc)
    for depth, part in enumerate(parts):
        here = "/".join(parts[:depth]) or "the spec"
        if isinstance(node, Map):
            if part not in node:
                hint = did_you_mean(part, list(node)) or f"; its keys are: {', '.join(node) or 'none'}"
                raise SpecError(f"'set' path '{text}': {here} has no '{part}'{hint}", key_at)
            key = part
        elif isinstance(node, Seq):
            names = [it.get("name") if isinstance(it, Map) else None for it in node]
            if part.isdigit() and int(part) < len(node):
                key = int(part)
            elif part in names:
                key = names.index(part)
            else:
                known = [n for n in names if isinstance(n, str)]
                hint = did_you_mean(part, known) or (f"; its named items are: {', '.join(known)}" if known else "")
                raise SpecError(f"'set' path '{text}': {here} is a list of {len(node)} (0 to {len(node) - 1}), "
                                f"with no item '{part}'{hint}", key_at)
        else:
            raise SpecError(f"'set' path '{text}': {here} is the value {node!r}, which has nothing inside it; "
                            f"set '{here}' itself", key_at)
        if depth == len(parts) - 1:
            _put(node, key, value, value_at, key_at)
        else:
            child = _copy(node[key])
            _put(node, key, child, None, None)
            node = child
    return out


def _put(container, key, value, value_at, key_at) -> None:
    """Store into a Map or Seq, keeping (or, with value_at, moving) its position."""
    container[key] = value
    if value_at is None:
        return
    if isinstance(container, Map):
        container.value_at[key], container.key_at[key] = value_at, key_at
    else:
        container.item_at[key] = value_at


def _single(item, where) -> Map:
    """`fc: relu` written as a bare type name."""
    out = Map({item: None})
    out.where = where
    out.value_at[item] = where
    return out


def _without_expectations(doc: Map) -> Map:
    """The base minus what describes only itself: its figures, title and description."""
    out = _copy(doc)
    for key in ("expect", "title", "description"):
        out.pop(key, None)
    if "layers" in out:
        _set(out, "layers", _strip(out["layers"]), doc, "layers")
    if "blocks" in out:
        blocks = _copy(out["blocks"])
        for name, block in blocks.items():
            if isinstance(block, Map) and "layers" in block:
                fixed = _copy(block)
                _set(fixed, "layers", _strip(block["layers"]), block, "layers")
                blocks[name] = fixed
        _set(out, "blocks", blocks, doc, "blocks")
    return out


def _strip(items: Seq) -> Seq:
    out = Seq()
    out.where = items.where
    for item, at in zip(items, items.item_at):
        if isinstance(item, Map):
            item = _copy(item)
            item.pop("expect", None)
            if isinstance(item.get("sequential"), Seq):
                item["sequential"] = _strip(item["sequential"])
        out.append(item)
        out.item_at.append(at)
    return out


def _overlay(base, top):
    if not isinstance(base, Map) or not isinstance(top, Map):
        return top
    out = _copy(base)
    for key in top:
        _set(out, key, top[key], top, key)
    return out


def _copy(value):
    if isinstance(value, Map):
        out = Map(value)
        out.where, out.key_at, out.value_at = value.where, dict(value.key_at), dict(value.value_at)
        return out
    if isinstance(value, Seq):
        out = Seq(value)
        out.where, out.item_at = value.where, list(value.item_at)
        return out
    return value


def _set(target: Map, key, value, source: Map, source_key) -> None:
    target[key] = value
    if source_key in source.value_at:
        target.value_at[key] = source.value_at[source_key]
        target.key_at[key] = source.key_at[source_key]
