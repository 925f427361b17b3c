"""convspec's command line: thin glue over compiler/ (and, later, runtime/).

Exit codes: 0 success, 1 invalid spec, 2 usage or I/O error, 3 internal error (a bug).
Every message is `path:line:col: severity: message` on stderr; no traceback reaches a user
(set CONVSPEC_DEBUG=1 to see one for an internal error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _print_warnings(analysis) -> None:
    for w in analysis.warnings:
        print(w.render(), file=sys.stderr)


def cmd_check(args) -> int:
    from compiler.errors import ConvspecError
    from compiler.pipeline import analyse
    from compiler.report import human

    worst = 0
    for ref in args.specs:
        try:
            a = analyse(ref, strict=args.strict)
        except ConvspecError as e:
            print(e.render(), file=sys.stderr)
            worst = max(worst, e.exit_code)
            continue
        _print_warnings(a)
        if not args.quiet:
            print(f"{a.graph.path}: ok: {len(a.layers)} layer{'s' if len(a.layers) != 1 else ''}, {human(a.params)} params, {human(a.macs)} MACs")
    return worst


def cmd_summary(args) -> int:
    from compiler.pipeline import analyse
    from compiler.report import FORMATS

    a = analyse(args.spec, strict=args.strict)
    _print_warnings(a)
    sys.stdout.write(FORMATS[args.format](a))
    return 0


def cmd_zoo(args) -> int:
    from compiler.errors import ConvspecError
    from compiler.pipeline import analyse, display_path
    from compiler.report import human
    from compiler.zoo import bundled

    entries, failed = [], 0
    for path in bundled():
        try:
            a = analyse(str(path))
        except ConvspecError as e:
            print(e.render(), file=sys.stderr)
            failed = 1
            continue
        entries.append({"name": a.graph.name, "path": display_path(path), "title": a.graph.meta.get("title", ""),
                        "params": a.params, "macs": a.macs, "input_shape": list(a.graph.input_shape)})
    if args.format == "json":
        print(json.dumps(entries, indent=2))
        return failed
    header = ["Name", "Input", "Params", "MACs", "Title"]
    rows = [[e["name"], "x".join(map(str, e["input_shape"])), human(e["params"]), human(e["macs"]), e["title"]]
            for e in entries]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(c.rjust(w) if i in (2, 3) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return failed


def cmd_schema(args) -> int:
    from compiler.schema import spec_schema

    print(json.dumps(spec_schema(), indent=2))
    return 0


def cmd_layers(args) -> int:
    from compiler.docgen import layer_rows, layers_markdown

    if args.format == "json":
        print(json.dumps(layer_rows(), indent=2))
    elif args.format == "markdown":
        print(layers_markdown())
    else:
        for row in layer_rows():
            print(f"{row['type']:<24} {row['summary']}")
            for a in row["arguments"]:
                default = "required" if a["required"] else f"default {json.dumps(a['default'])}"
                print(f"    {a['name']:<18} {a['expects']}; {default}. {a['doc']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from compiler import __version__

    p = argparse.ArgumentParser(prog="convspec", description="Declarative CNN specs: check, summarise, list.")
    p.add_argument("--version", action="version", version=f"convspec {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("check", help="validate specs and verify their expect: figures")
    c.add_argument("specs", nargs="+", metavar="SPEC", help="a YAML file or a bundled spec name")
    c.add_argument("--strict", action="store_true", help="treat warnings (such as a non-tiling window) as errors")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing for valid specs")
    c.set_defaults(run=cmd_check)

    s = sub.add_parser("summary", help="per-layer shapes, params, MACs and receptive fields")
    s.add_argument("spec", metavar="SPEC")
    s.add_argument("--format", choices=["table", "json", "csv", "markdown"], default="table")
    s.add_argument("--strict", action="store_true", help="treat warnings as errors")
    s.set_defaults(run=cmd_summary)

    z = sub.add_parser("zoo", help="list the bundled specs")
    z.add_argument("--format", choices=["table", "json"], default="table")
    z.set_defaults(run=cmd_zoo)

    sub.add_parser("schema", help="print the spec JSON Schema").set_defaults(run=cmd_schema)

    ly = sub.add_parser("layers", help="list the layer types and their arguments")
    ly.add_argument("--format", choices=["table", "json", "markdown"], default="table")
    ly.set_defaults(run=cmd_layers)
    return p


def main(argv=None) -> int:
    from compiler.errors import ConvspecError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ConvspecError as e:
        print(e.render(), file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        sys.stderr.close()  # `convspec summary x | head` is not an error
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: say so plainly, without a traceback
        if os.environ.get("CONVSPEC_DEBUG"):
            raise
        print(f"convspec: internal error: {type(e).__name__}: {e} "
              "(this is a bug; rerun with CONVSPEC_DEBUG=1 and report the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
