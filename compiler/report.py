"""The per-layer report: a table like torchinfo's and Keras' summary(), or JSON, CSV, Markdown.

The JSON keys are a stable interface (DESIGN.md): name, input_shape, output_shape,
params {total, trainable, non_trainable}, macs, flops, and layers [{name, type, inputs,
output_shape, params, macs, flops, receptive_field}]. Keys may be added, never renamed: a layer
with several outputs (split, chunk) adds `output_shapes`, one per output; its `output_shape` is
all of them as one. Each layer also has its `args`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import fields

from .errors import printable
from .infer import Analysis, LayerFigures


def human(n: int) -> str:
    """Three significant digits with a metric suffix: 61.1 M, 1.14 G, 34.9 K, 760."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            value = n / scale
            digits = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{digits}f} {suffix}"
    return f"{n:,}"


def human_bytes(n: int) -> str:
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {suffix}"
    return f"{n} B"


def shape_text(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def rf_text(f: LayerFigures) -> str:
    rf = f.receptive_field
    if rf is None:
        return "-"
    h, w = rf.as_dict()["size"]  # a fractional size (after upsampling) prints as a decimal
    return str(h) if h == w else f"{h}x{w}"


def layer_shape_text(f: LayerFigures) -> str:
    """A layer's output; a split's outputs one by one: [2, 4, 4] + [6, 4, 4]."""
    return " + ".join(shape_text(s) for s in f.output_shapes)


def output_shape(a: Analysis):
    shapes = a.output_shapes
    return list(shapes[0]) if len(shapes) == 1 else [list(s) for s in shapes]


# -- JSON -------------------------------------------------------------------------------------
def arguments(layer) -> dict:
    """The layer's arguments, normalised, defaults filled in: what a training tool needs of the
    layers that act only while training (stochastic_depth's rate and mode, dropout's rate)."""
    return {f.name: list(v) if isinstance(v, tuple) else v
            for f in fields(layer) for v in [getattr(layer, f.name)]}


def to_dict(a: Analysis) -> dict:
    g = a.graph
    return {
        "name": g.name,
        "path": g.path,
        **g.meta,
        "input_shape": list(g.input_shape),
        "output_shape": output_shape(a),
        "outputs": list(g.outputs),
        "params": {"total": a.params, "trainable": a.trainable, "non_trainable": a.non_trainable},
        "macs": a.macs,
        "flops": a.flops,
        "memory": {"activation_bytes": a.activation_bytes, "weight_bytes": a.weight_bytes},
        "layers": [
            {
                "name": f.node.name,
                "type": f.node.type,
                "args": arguments(f.node.layer),
                "inputs": list(f.node.inputs),
                "output_shape": list(f.output_shape),
                "params": f.params,
                "trainable_params": f.trainable,
                "non_trainable_params": f.non_trainable,
                "macs": f.macs,
                "flops": f.flops,
                "receptive_field": f.receptive_field.as_dict() if f.receptive_field else None,
                **({"output_shapes": [list(s) for s in f.output_shapes]} if len(f.output_shapes) > 1 else {}),
            }
            for f in a.layers
        ],
        "warnings": [d.line() for d in a.warnings],  # one line each; the block notes are on stderr
        **({"members": members(a)} if a.graph.members else {}),
    }


def members(a: Analysis) -> list[dict]:
    """An ensemble's members with their own figures, which add up to the ensemble's."""
    out = []
    for m in a.graph.members:
        mine = [f for f in a.layers if f.node.name.startswith(m.name + ".")]
        out.append({"name": m.name, "spec": m.spec, "output": m.output,
                    "params": sum(f.params for f in mine), "trainable": sum(f.trainable for f in mine),
                    "macs": sum(f.macs for f in mine), "flops": sum(f.flops for f in mine)})
    return out


def to_json(a: Analysis) -> str:
    return json.dumps(to_dict(a), indent=2)


# -- CSV --------------------------------------------------------------------------------------
CSV_COLUMNS = ["name", "type", "inputs", "output_shape", "params", "trainable_params", "non_trainable_params",
               "macs", "flops", "rf_size", "rf_jump", "rf_start"]


def to_csv(a: Analysis) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for f in a.layers:
        rf = f.receptive_field
        pair = (lambda v: "x".join(str(x) for x in v)) if rf else (lambda v: "")
        writer.writerow([f.node.name, f.node.type, " ".join(f.node.inputs), "x".join(map(str, f.output_shape)),
                         f.params, f.trainable, f.non_trainable, f.macs, f.flops,
                         pair(rf.as_dict()["size"]) if rf else "", pair(rf.as_dict()["jump"]) if rf else "",
                         pair(rf.as_dict()["start"]) if rf else ""])
    return out.getvalue()


# -- table and Markdown: for a terminal -------------------------------------------------------
def terminal(lines: list[str]) -> str:
    """Lines for a terminal, each escaped: a title or name from a file may hold a terminal escape or
    a newline that forges a line of its own. JSON and CSV are for programs and keep values exact."""
    return "".join(printable(line) + "\n" for line in lines)


def _relative(name: str, scope: str) -> str:
    """An input's name as seen from inside the node's own block: inception3a.branch1 -> branch1."""
    return name[len(scope):] if scope and name.startswith(scope) else name


def _rows(a: Analysis, exact: bool):
    branching = a.branching
    header = ["Layer", "Type"] + (["Inputs"] if branching else []) + ["Output shape", "Params", "MACs", "RF"]
    rows = []
    for f in a.layers:
        scope = f.node.name.rsplit(".", 1)[0] + "." if "." in f.node.name else ""
        inputs = [", ".join(_relative(n, scope) for n in f.node.inputs)] if branching else []
        params = f"{f.params:,}" if exact else (human(f.params) if f.params else "0")
        macs = f"{f.macs:,}" if exact else (human(f.macs) if f.macs else "0")
        rows.append([f.node.name, f.node.type] + inputs + [layer_shape_text(f), params, macs, rf_text(f)])
    numeric = {header.index(c) for c in ("Params", "MACs", "RF")}
    return header, rows, numeric


def _exact_and_human(n: int) -> str:
    return f"{n:,} ({human(n)})" if n >= 1000 else f"{n:,}"


def _totals(a: Analysis) -> list[tuple[str, str]]:
    return [(f"Member {m['name']}", f"{m['spec']}, {human(m['params'])} params, {human(m['macs'])} MACs")
            for m in members(a)] + [
        ("Total params", _exact_and_human(a.params)),
        ("Trainable params", _exact_and_human(a.trainable)),
        ("Non-trainable params", _exact_and_human(a.non_trainable)),
        ("MACs", _exact_and_human(a.macs)),
        ("FLOPs", _exact_and_human(a.flops)),
        ("Activation memory", f"{human_bytes(a.activation_bytes)} (float32, batch 1, every output kept)"),
        ("Weight memory", f"{human_bytes(a.weight_bytes)} (float32)"),
    ]


def aligned(header: list[str], rows: list[list[str]], numeric) -> list[str]:
    """Columns padded to their widest cell, numbers right-aligned; a rule under the header."""
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header), "-" * (sum(widths) + 2 * (len(widths) - 1))] + [line(r) for r in rows]


def to_table(a: Analysis) -> str:
    header, rows, numeric = _rows(a, exact=False)
    body = aligned(header, rows, numeric)
    rule_width = len(body[1])
    g = a.graph
    title = f"{g.name}: {g.meta['title']}" if "title" in g.meta else g.name
    out = [title, f"Input: {shape_text(g.input_shape)}", "=" * rule_width] + body + ["=" * rule_width]
    label_width = max(len(k) for k, _ in _totals(a))
    out += [f"{k + ':':<{label_width + 1}} {v}" for k, v in _totals(a)]
    out.append(f"{'Output:':<{label_width + 1}} {', '.join(shape_text(s) for s in a.output_shapes)}")
    return terminal(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(a: Analysis) -> str:
    header, rows, numeric = _rows(a, exact=True)
    g = a.graph
    out = [f"### {g.name}" + (f": {g.meta['title']}" if "title" in g.meta else ""), "",
           f"Input: `{shape_text(g.input_shape)}`", "",
           "| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
    out += ["", "| Total | |", "|---|---:|"]
    out += [f"| {k} | {v} |" for k, v in _totals(a)]
    out.append(f"| Output | {', '.join(shape_text(s) for s in a.output_shapes)} |")
    return terminal(out)


def zoo_table(entries: list[dict]) -> str:
    header = ["Name", "Input", "Params", "MACs", "Title"]
    rows = [[e["name"], "x".join(map(str, e["input_shape"])), human(e["params"]), human(e["macs"]), e["title"]]
            for e in entries]
    return terminal(aligned(header, rows, {2, 3}))


FORMATS = {"table": to_table, "json": lambda a: to_json(a) + "\n", "csv": to_csv, "markdown": to_markdown}
