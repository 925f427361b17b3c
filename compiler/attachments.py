"""Attachments: a spec's labels, preprocess, augment, frozen layers and source files, read and checked.

They are not part of the graph, but travel with the model (ir.Attachments). Each is checked
at `check` time, against the expanded graph, so a bad one is found before `compile`.
"""

from __future__ import annotations

from .augment import plan as augment_plan
from .errors import Location, SpecError, did_you_mean, os_reason
from .ir import Attachments
from .limits import DEFAULT, Limits
from .source import Map
from .zoo import referenced_file


def attach(doc: Map, input_shape: tuple, names: list[str], frozen_items: set[str], sources: tuple[str, ...],
           limits: Limits = DEFAULT) -> Attachments:
    """The attachments of a spec whose graph has the nodes `names`; `frozen_items` are those that
    items marked `frozen: true` produced."""
    preprocess = labels = None
    if "preprocess" in doc:
        _check_preprocess(doc["preprocess"], input_shape)
        preprocess = _plain(doc["preprocess"])
    if "labels" in doc:  # relative to the spec that names it, like an include
        where = doc.value_at["labels"]
        labels = _read_labels(referenced_file(doc["labels"], where.path, "labels", where, limits), where, limits)
    frozen = frozen_items | _frozen(doc, names)
    augment = augment_plan(doc["augment"], input_shape, preprocess) if "augment" in doc else None
    return Attachments(labels, preprocess, frozenset(frozen), tuple(sources), augment)


def _read_labels(path, where: Location, limits: Limits) -> tuple[str, ...]:
    """The class labels, one per line (read now, so `check` finds a bad labels file, not `compile`)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limits.spec_bytes + 1)
    except OSError as e:
        raise SpecError(f"cannot read the labels file '{path}': {os_reason(e)}", where) from None
    if len(data) > limits.spec_bytes:
        raise SpecError(f"the labels file '{path}' is larger than {limits.spec_bytes:,} bytes "
                        "(--max-spec-bytes raises the limit)", where)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError(f"the labels file '{path}' is not UTF-8 text (byte {e.start}); save it as UTF-8", where) from None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _check_preprocess(pre: Map, input_shape: tuple) -> None:
    """What `convspec run` does to an image must fit the input: [C, H, W], C mean and std values."""
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise SpecError(f"'preprocess' describes an image, but the input is {list(input_shape)}; an image input is "
                        "[1 or 3, H, W]", pre.where)
    channels, height, width = input_shape
    for key in ("mean", "std"):
        if key in pre and len(pre[key]) not in (1, channels):
            raise SpecError(f"'preprocess.{key}' has {len(pre[key])} values; the input has {channels} channel"
                            f"{'s, so give 3 (or 1 for all)' if channels > 1 else ', so give 1'}", pre.value_at[key])
    resize, crop = pre.get("resize"), pre.get("crop")
    if crop is not None:  # the centre crop sets the size, from the resized image (or the image itself)
        final, key = _pair(crop), "crop"
    elif isinstance(resize, int):
        raise SpecError(f"'preprocess.resize: {resize}' sets the shorter side, so the size depends on the image; add "
                        f"'crop: [{height}, {width}]' to cut the input's size from it", pre.value_at["resize"])
    elif resize is not None:
        final, key = list(resize), "resize"
    else:
        return  # every image is resized to the input's size
    if final != [height, width]:
        raise SpecError(f"'preprocess.{key}' is {final}, but the input is {height}x{width}; {key} to the input's size "
                        f"(or leave {key} out)", pre.value_at[key])
    if crop is not None and resize is not None:
        fits = max(final) <= resize if isinstance(resize, int) else final[0] <= resize[0] and final[1] <= resize[1]
        if not fits:
            raise SpecError(f"'preprocess.resize' {resize} leaves too little to crop {final} from; resize to at least "
                            f"{max(final) if isinstance(resize, int) else final}", pre.value_at["resize"])


def _pair(value) -> list:
    return [value, value] if isinstance(value, int) else list(value)


def _frozen(doc: Map, names: list[str]) -> set[str]:
    """Top-level `frozen:` entries are layer names or dotted prefixes (`layer1` freezes layer1.*)."""
    entries = doc.get("frozen") or []
    wanted = set(entries)
    out, used = set(), set()
    for name in names:  # each name against its own prefixes: linear, however long the list
        parts = name.split(".")
        hits = wanted.intersection(".".join(parts[:k]) for k in range(1, len(parts) + 1))
        if hits:
            out.add(name)
            used |= hits
    for k, entry in enumerate(entries):
        if entry not in used:
            prefixes = {n.split(".")[0] for n in names} | set(names)
            hint = did_you_mean(entry, prefixes) or "; it must be a layer name or a dotted prefix of some"
            raise SpecError(f"'frozen' names '{entry}', which matches no layer{hint}", entries.item_at[k])
    return out


def _plain(value):
    """Map/Seq -> dict/list (for metadata that leaves the compiler)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
