"""convspec's command line: thin glue over compiler/ and runtime/.

Exit codes: 0 success, 1 invalid spec (or a model or input convspec refuses), 2 usage or I/O
error, 3 internal error (a bug), 130 interrupted by Ctrl-C (SIGINT), 143 stopped by SIGTERM: the
shell's 128 + the signal's number, whatever the command and however early the signal comes.
Every message is `path:line:col: severity: message` on stderr; no traceback reaches a user
(set CONVSPEC_DEBUG=1 to see one for an internal error).
"""

from __future__ import annotations

# Only modules the interpreter has loaded already: a Ctrl-C while this module is imported (the
# `convspec` entry point imports it before main runs) cannot come from a slow import.
import os
import sys


def _count(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high], refused with a usage error (exit 2) otherwise."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: use an integer {bound}")
        return value

    return parse


def _limit_args(p) -> None:
    """The bounds on an untrusted spec (compiler/limits.py), each raisable from the command line."""
    from compiler.limits import DEFAULT, MAX_DEPTH

    g = p.add_argument_group("limits on a spec (every spec is treated as untrusted)")
    g.add_argument("--max-spec-bytes", type=_count(1), default=DEFAULT.spec_bytes, metavar="N",
                   help=f"largest spec file (default {DEFAULT.spec_bytes:,})")
    g.add_argument("--max-depth", type=_count(1, MAX_DEPTH), default=DEFAULT.depth, metavar="N",
                   help=f"deepest nesting of YAML mappings and lists (default {DEFAULT.depth}, at most {MAX_DEPTH})")
    g.add_argument("--max-layers", type=_count(1), default=DEFAULT.layers, metavar="N",
                   help=f"most layers after expansion (default {DEFAULT.layers:,})")
    g.add_argument("--max-params", type=_count(1), default=DEFAULT.params, metavar="N",
                   help=f"most parameters, checked before any weight is made (default {DEFAULT.params:,})")
    g.add_argument("--allow-outside-paths", action="store_true",
                   help="let extends: and labels: name files outside the spec's folder and the bundled library")


def _limits(args):
    from compiler.limits import Limits

    return Limits(spec_bytes=args.max_spec_bytes, depth=args.max_depth, layers=args.max_layers,
                  params=args.max_params, outside_paths=args.allow_outside_paths)


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
            a = analyse(ref, args.strict, _limits(args))
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

    a = analyse(args.spec, args.strict, _limits(args))
    _print_warnings(a)
    for note in a.notes:  # the warnings an `accept:` acknowledges
        print(note.render(), file=sys.stderr)
    sys.stdout.write(FORMATS[args.format](a))
    return 0


def cmd_zoo(args) -> int:
    import json

    from compiler.errors import ConvspecError
    from compiler.pipeline import analyse, display_path
    from compiler.report import zoo_table
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
    sys.stdout.write(zoo_table(entries))
    return failed


def cmd_schema(args) -> int:
    import json

    from compiler.schema import spec_schema

    print(json.dumps(spec_schema(), indent=2))
    return 0


def cmd_layers(args) -> int:
    import json

    from compiler.docgen import layer_rows, layers_markdown, layers_text

    if args.format == "json":
        print(json.dumps(layer_rows(), indent=2))
    else:
        print(layers_markdown() if args.format == "markdown" else layers_text())
    return 0


def cmd_diagram(args) -> int:
    from compiler.diagram import diagram
    from compiler.diagram_png import require_pillow, to_png
    from compiler.diagram_svg import to_svg
    from compiler.errors import UsageError
    from compiler.output import check_writable, write_bytes
    from compiler.pipeline import analyse

    renderers = {".svg": lambda scene: to_svg(scene).encode("utf-8"),
                 ".png": lambda scene: to_png(scene, collapsed=args.collapse)}
    check_writable([args.output], args.force)  # before the work, not after it
    kind = os.path.splitext(args.output)[1].lower()
    if kind not in renderers:
        raise UsageError(f"{args.output}: cannot tell the picture's format from "
                         f"{repr(kind) if kind else 'a name without an extension'}; end it with .svg or .png")
    if kind == ".png":
        require_pillow()
    analysis = analyse(args.spec, limits=_limits(args))
    _print_warnings(analysis)
    scene = diagram(analysis, collapse=args.collapse)
    write_bytes(args.output, renderers[kind](scene), args.force)
    boxes = sum(1 for g in scene.groups if g.kind == "node")
    print(f"wrote {args.output}: {analysis.graph.name}, {boxes} boxes, {scene.width:.0f} x {scene.height:.0f} px")
    return 0


# -- compile, run, bench, export: these import onnx and onnxruntime, check and summary never do --
def _model(ref: str, args):
    """For runtime/: an .onnx file as it is, or a spec compiled with seeded or --weights weights."""
    if ref.endswith(".onnx"):
        if args.weights:
            _warn("--weights applies to a spec; the .onnx file keeps its own weights")
        from runtime.model import read_model

        return read_model(ref)
    from functools import partial

    from compiler.build import compile_spec, save
    from compiler.pipeline import analyse
    from runtime.model import Model

    analysis = analyse(ref, limits=_limits(args))
    _print_warnings(analysis)
    lowered = compile_spec(analysis, args.weights, args.seed, show_progress=True,
                           strict_weights=args.strict_weights, warn=_warn, precision=args.precision)
    return Model(lowered.model, partial(save, lowered), lowered.weight_bytes,
                 lambda: lowered.to_model().SerializeToString())


def _warn(message: str) -> None:
    from compiler.errors import printable

    print(printable(f"warning: {message}"), file=sys.stderr)  # keys and names from files, escaped


def _session(model, args):
    """A session on the chosen device; one line on stderr says which provider runs it."""
    from runtime.session import open_session

    session = open_session(model, args.device, args.threads)
    print(session.describe(), file=sys.stderr)
    return session


def cmd_compile(args) -> int:
    from compiler.build import compile_spec, leftover_data, save
    from compiler.errors import UsageError
    from compiler.output import check_writable
    from compiler.pipeline import analyse
    from compiler.report import human, human_bytes

    if args.augment:
        return _compile_augment(args)
    if args.calibration and not args.quantize:
        raise UsageError("--calibration is for --quantize int8")
    if args.quantize and args.precision != "fp32":  # int8 is calibrated against the float32 model
        raise UsageError(f"--quantize int8 and --precision {args.precision} exclude each other; choose one")
    check_writable([args.output], args.force)  # before the work, not after it
    analysis = analyse(args.spec, limits=_limits(args))
    _print_warnings(analysis)
    shape = analysis.graph.input_shape
    if args.raw_input and (len(shape) != 3 or shape[0] not in (1, 3)):
        raise UsageError(f"--raw-input makes a model take images, but '{analysis.graph.name}' takes {list(shape)}; "
                         "an image input is [1 or 3, H, W]")
    calibration = args.quantize and _calibration(args, analysis)  # a bad file fails before the work
    lowered = compile_spec(analysis, args.weights, args.seed, args.opset, show_progress=True,
                           strict_weights=args.strict_weights, warn=_warn, precision=args.precision)
    if args.quantize:
        lowered = _quantized(lowered, *calibration)
    if args.raw_input:  # after the network is final: the pixels' steps stay float32
        from compiler.preprocess import raw_input

        lowered = raw_input(lowered, analysis.graph.attachments.preprocess or {}, analysis.graph.input_shape)
    written = save(lowered, args.output, args.force)
    for stale in leftover_data(args.output, written):  # the weights of a model it replaced
        _warn(f"{stale} is left from an earlier model; {args.output} does not use it, so it can be deleted")
    # a quantised model keeps its (int8) weights inside the graph
    weight_bytes = lowered.weight_bytes or sum(t.ByteSize() for t in lowered.model.graph.initializer)
    print(f"wrote {', '.join(written)}: {analysis.graph.name}, {human(analysis.params)} params, "
          f"{human_bytes(weight_bytes)} of weights, opset {args.opset}")
    return 0


def _calibration(args, analysis):
    """(inputs, where they came from): --calibration read by runtime/, or seeded noise, with a warning."""
    from compiler.limits import INPUT_BYTES
    from compiler.quantize import GENERATED_SAMPLES, generated_calibration
    from runtime.inputs import calibration_set

    shape, preprocess = analysis.graph.input_shape, analysis.graph.attachments.preprocess or {}
    if args.calibration:
        return calibration_set(args.calibration, shape, preprocess, INPUT_BYTES), os.path.basename(args.calibration)
    _warn(f"no --calibration: int8 scales are fitted to {GENERATED_SAMPLES} samples of seeded random noise, not "
          "to real inputs, so the accuracy on real data is unknown; pass --calibration DIR (images) or FILE.npz")
    return generated_calibration(shape, args.seed), f"generated:{args.seed}"


def _quantized(lowered, inputs, source: str):
    from compiler.lower import Lowered
    from compiler.quantize import describe, quantize

    _import_uninterrupted(("onnxruntime", "onnxruntime.quantization"))  # compile's NATIVE leaves them out
    model, figures = quantize(lowered.to_model(), inputs, source)
    print(describe(figures))
    return Lowered(model, [])  # the weights, now int8, stay inside the model


def cmd_run(args) -> int:
    from runtime import outputs
    from runtime.inputs import load_input, load_raw_input, random_input

    if args.output:
        outputs.refuse_early(args.output, args.force)
    model = _model(args.model, args)
    info = model.info
    target = args.output and outputs.target(args.output, len(info.output_names), args.force)
    if args.input and info.raw_size:  # a --raw-input model preprocesses the pixels itself
        x = load_raw_input(args.input, info.input_shape[-1], args.max_input_bytes, info.preprocess)
    elif args.input:  # read the input first: a bad file fails before the session is built
        x = load_input(args.input, info.input_shape, info.preprocess, args.max_input_bytes)
    else:
        x = random_input(info, args.batch, args.seed)
    session = _session(model, args)
    results = dict(zip(info.output_names, session.watch(lambda: session.run({info.input_name: x}), args.timeout)))
    if target:
        outputs.save(target, results, args.force)
    for line in outputs.describe(results, info.labels, args.top):
        print(line)
    return 0


def cmd_bench(args) -> int:
    import json

    from runtime.bench import benchmark, describe
    from runtime.inputs import random_input

    model = _model(args.model, args)
    info = model.info
    feeds = {info.input_name: random_input(info, args.batch, args.seed)}
    result = benchmark(_session(model, args), feeds, info, args.batch, args.warmup, args.runs, args.timeout)
    print(json.dumps(result, indent=2) if args.format == "json" else "\n".join(describe(result)))
    return 0


def cmd_export(args) -> int:
    from compiler.output import check_writable
    from runtime.triton import export, repository_paths

    if args.name:  # the paths are known: refuse to overwrite before the work, not after it
        check_writable(repository_paths(args.triton, args.name), args.force)
    written = export(_model(args.model, args), args.triton, args.name, args.max_batch, args.instances, args.kind,
                     args.force)
    print(f"wrote {', '.join(written)}")
    return 0


# -- augment: the spec's augment: section, its own ONNX graph (compiler/augment.py, runtime/augment.py) --
def _augment_model(args):
    """(the spec's augment plan, its ONNX model) for `compile --augment` and `augment`."""
    from compiler.augment import lower_augment
    from compiler.errors import Location, SpecError, UsageError
    from compiler.lower import opset_ir_version
    from compiler.pipeline import analyse

    opset = getattr(args, "opset", 21)
    opset_ir_version(opset)  # an opset out of range is refused before the work
    if opset < 20:
        raise UsageError(f"--augment needs --opset 20 or later (AffineGrid came in opset 20); got {opset}")
    analysis = analyse(args.spec, limits=_limits(args))
    plan = analysis.graph.attachments.augment
    if plan is None:
        raise SpecError("the spec has no 'augment:' section to compile; add one (docs/spec.md, "
                        "\"Data augmentation\")", Location(analysis.graph.path, 1, 1))
    return plan, lower_augment(plan, analysis.graph.name, opset)


def _compile_augment(args) -> int:
    from compiler.errors import UsageError
    from compiler.output import check_writable, write_bytes

    for flag, given in (("--weights", args.weights), ("--quantize", args.quantize),
                        ("--calibration", args.calibration), ("--precision fp16", args.precision != "fp32")):
        if given:
            raise UsageError(f"{flag} is for the network; --augment writes the augmentation graph, which has no "
                             "weights")
    if args.raw_input:
        raise UsageError("--raw-input is for the network; the augmentation graph takes images [N, C, H, W] "
                         "with pixels in [0, 1]")
    if args.seed:
        _warn("--seed seeds a network's weights; the augmentation's seed is an input of its graph, given at each run")
    check_writable([args.output], args.force)
    plan, model = _augment_model(args)
    write_bytes(args.output, model.SerializeToString(), args.force)
    print(f"wrote {args.output}: augmentation of {args.spec}, {len(plan.transforms)} transforms, "
          f"[{plan.channels}, {plan.size[0]}, {plan.size[1]}] -> [{plan.channels}, {plan.out[0]}, {plan.out[1]}], "
          f"opset {args.opset}; inputs images, seed, offset; outputs pixels, input")
    return 0


def _check_batch_bytes(images: int, plan, limit: int, fix: str) -> None:
    """A batch's images in and out of the augmentation graph, as float32, must fit `limit`."""
    from compiler.errors import UsageError

    size = 4 * images * plan.channels * (plan.size[0] * plan.size[1] + plan.out[0] * plan.out[1])
    if size > limit:
        raise UsageError(f"{images} images of {plan.size[0]}x{plan.size[1]} make {size:,} bytes of float32 in and "
                         f"out of the augmentation, more than the limit of {limit:,}; {fix}")


def _augment_session(args):
    from runtime.model import Model

    plan, proto = _augment_model(args)
    model = Model(proto, lambda *a, **k: [], serialize=proto.SerializeToString)
    return plan, _session(model, args)


def cmd_augment_preview(args) -> int:
    from compiler.errors import UsageError
    from compiler.limits import INPUT_BYTES
    from compiler.output import check_writable, write_bytes
    from runtime.augment import augment, grid_png, image_paths, read_images

    if not args.output.lower().endswith(".png"):
        raise UsageError(f"{args.output}: the grid is written as PNG; end the name with .png")
    check_writable([args.output], args.force)
    paths = image_paths([args.image])
    plan, session = _augment_session(args)
    _check_batch_bytes(args.n, plan, INPUT_BYTES, "use a smaller -n")
    image = read_images(paths[:1], (plan.channels, *plan.size))
    pixels, _ = augment(session, image.repeat(args.n, axis=0), args.seed)
    write_bytes(args.output, grid_png(pixels), args.force)
    print(f"wrote {args.output}: {args.n} augmentations of {args.image} (seed {args.seed})")
    return 0


def cmd_augment_run(args) -> int:
    import numpy as np

    from compiler.errors import UsageError
    from compiler.output import check_writable, replacing
    from compiler.progress import Progress
    from runtime.augment import augment_all, image_paths

    if not args.output.endswith(".npz"):
        raise UsageError(f"{args.output}: the output is an .npz file (its array 'input' feeds `convspec run --input`)")
    check_writable([args.output], args.force)
    paths = image_paths(args.images)
    plan, session = _augment_session(args)
    size = 4 * len(paths) * plan.channels * plan.out[0] * plan.out[1]
    if size > args.max_output_bytes:
        raise UsageError(f"{len(paths)} images make {size:,} bytes of float32 inputs, more than the limit of "
                         f"{args.max_output_bytes:,}; augment fewer per call, or raise --max-output-bytes")
    _check_batch_bytes(min(args.batch, len(paths)), plan, args.max_output_bytes, "use a smaller --batch")
    progress = Progress("augmenting", "images", delay=0, enabled=True if args.progress else None, rate=True)
    try:
        inputs = augment_all(session, paths, (plan.channels, *plan.size), args.seed, args.batch, progress)
    finally:
        progress.close()
    with replacing([args.output], args.force) as (temp,):
        with open(temp, "wb") as f:
            np.savez(f, input=inputs)
    print(f"wrote {args.output}: 'input' {list(inputs.shape)}, {len(paths)} images augmented (seed {args.seed})")
    return 0


def _device_args(p) -> None:
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: CUDA when its provider really starts, else the CPU")
    p.add_argument("--threads", type=_count(0, 1024), default=0, help="intra-op threads (default 0: one per core)")
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="stop a run of the model that takes longer (exit 1); default: no limit")


def _seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is out of range: use a number of seconds above 0")
    return value


def _spec_args(p, seed_help: str) -> None:
    """What building a model from a spec takes: its weights, their seed, and the spec's limits."""
    p.add_argument("--weights", metavar="FILE", action="append",
                   help="for a spec: .npz, .safetensors, .pt or .pth keyed by node names (default: seeded); "
                        "for an ensemble, also MEMBER=FILE keyed by that member's names (repeatable)")
    p.add_argument("--strict-weights", action="store_true",
                   help="weights that do not fit the spec are an error (default: seeded instead, with a warning)")
    p.add_argument("--seed", type=_count(0), default=0, help=seed_help)
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                   help="for a spec: fp16 halves the weights and runs faster on CUDA; input and outputs stay float32")
    _limit_args(p)


def _model_args(p) -> None:
    p.add_argument("model", metavar="MODEL|SPEC", help="an .onnx file, a spec file, or a bundled spec name")
    _spec_args(p, "seed of the weights (for a spec) and of random input")


def build_parser() -> argparse.ArgumentParser:
    import argparse

    from compiler import __version__
    from compiler.limits import INPUT_BYTES

    p = argparse.ArgumentParser(prog="convspec",
                                description="Declarative CNN specs: check, summarise, compile to ONNX, run.")
    p.add_argument("--version", action="version", version=f"convspec {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("check", help="validate specs and verify their expect: figures")
    c.add_argument("specs", nargs="+", metavar="SPEC", help="a YAML file or a bundled spec name")
    c.add_argument("--strict", action="store_true", help="treat warnings (such as a non-tiling window) as errors")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing for valid specs")
    _limit_args(c)
    c.set_defaults(run=cmd_check)

    s = sub.add_parser("summary", help="per-layer shapes, params, MACs and receptive fields")
    s.add_argument("spec", metavar="SPEC")
    s.add_argument("--format", choices=["table", "json", "csv", "markdown"], default="table")
    s.add_argument("--strict", action="store_true", help="treat warnings as errors")
    _limit_args(s)
    s.set_defaults(run=cmd_summary)

    z = sub.add_parser("zoo", help="list the bundled specs")
    z.add_argument("--format", choices=["table", "json"], default="table")
    z.set_defaults(run=cmd_zoo)

    sub.add_parser("schema", help="print the spec JSON Schema").set_defaults(run=cmd_schema)

    co = sub.add_parser("compile", help="write the ONNX model of a spec")
    co.add_argument("spec", metavar="SPEC")
    co.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    co.add_argument("--force", action="store_true", help="replace OUT.onnx if it exists")
    co.add_argument("--opset", type=_count(18, 24), default=21, help="ONNX opset, 18 to 24 (default 21)")
    co.add_argument("--quantize", choices=["int8"], help="static int8 quantisation (QDQ, per-channel weights)")
    co.add_argument("--calibration", metavar="DIR|FILE.npz",
                    help="inputs to calibrate --quantize on: a folder of images (read as the spec's preprocess: says) "
                         "or an array file (default: seeded random noise, with a warning)")
    co.add_argument("--augment", action="store_true",
                    help="write the spec's augment: graph (training-time data augmentation) instead of the network")
    co.add_argument("--raw-input", action="store_true",
                    help="take raw pixels, uint8 [N, H, W, C] of any size, and preprocess them in the graph as the "
                         "spec's preprocess: says (resize, crop, channels, scale, mean, std)")
    _spec_args(co, "seed of the initialisation (default 0)")
    co.set_defaults(run=cmd_compile)

    r = sub.add_parser("run", help="run a model or spec on onnxruntime and print its top classes")
    _model_args(r)
    r.add_argument("--input", metavar="FILE", help=".npy, .npz or an image (default: random data from --seed)")
    r.add_argument("--max-input-bytes", type=_count(1), default=INPUT_BYTES, metavar="N",
                   help=f"largest --input, as float32, checked from its header before it is read "
                        f"(default {INPUT_BYTES:,})")
    r.add_argument("--batch", type=_count(1, 65536), default=1, help="batch size of random input")
    r.add_argument("--top", type=_count(1), default=5, help="how many classes to show per sample")
    r.add_argument("-o", "--output", metavar="OUT.npy", help="save the outputs (.npy, or .npz for several)")
    r.add_argument("--force", action="store_true", help="replace the output file if it exists")
    _device_args(r)
    r.set_defaults(run=cmd_run)

    b = sub.add_parser("bench", help="latency percentiles, throughput and GFLOP/s")
    _model_args(b)
    b.add_argument("--batch", type=_count(1, 65536), default=1)
    b.add_argument("--runs", type=_count(1), default=50, help="timed runs (at least; more until 1 s has passed)")
    b.add_argument("--warmup", type=_count(0), default=5)
    b.add_argument("--format", choices=["table", "json"], default="table")
    _device_args(b)
    b.set_defaults(run=cmd_bench)

    e = sub.add_parser("export", help="write a Triton Inference Server model repository")
    _model_args(e)
    e.add_argument("--triton", required=True, metavar="DIR", help="the repository folder")
    e.add_argument("--name", help="the model's name in the repository (default: the spec's)")
    e.add_argument("--max-batch", type=_count(1), default=64, help="Triton's max_batch_size (dynamic-batch models)")
    e.add_argument("--instances", type=_count(1), default=1)
    e.add_argument("--kind", choices=["auto", "gpu", "cpu"], default="auto", help="instance group kind")
    e.add_argument("--force", action="store_true", help="replace the model and config if they exist")
    e.set_defaults(run=cmd_export)

    d = sub.add_parser("diagram", help="draw the architecture, top to bottom, as SVG or PNG")
    d.add_argument("spec", metavar="SPEC")
    d.add_argument("-o", "--output", required=True, metavar="OUT.svg|OUT.png", help="the format follows the extension")
    how = d.add_mutually_exclusive_group()
    how.add_argument("--collapse", action="store_true",
                     help="one box per block instance (an Inception module, a residual block), with its totals")
    how.add_argument("--expand", action="store_true", help="one box per layer (the default)")
    d.add_argument("--force", action="store_true", help="replace the output file if it exists")
    _limit_args(d)
    d.set_defaults(run=cmd_diagram)

    au = sub.add_parser("augment", help="apply the spec's augment: section to images")
    au_sub = au.add_subparsers(dest="augment_command", required=True, metavar="ACTION")
    pv = au_sub.add_parser("preview", help="a grid of augmented samples of one image, as PNG")
    pv.add_argument("spec", metavar="SPEC")
    pv.add_argument("image", metavar="IMAGE")
    pv.add_argument("-n", type=_count(1, 1024), default=16, help="how many samples (default 16)")
    pv.add_argument("-o", "--output", required=True, metavar="GRID.png")
    au_run = au_sub.add_parser("run", help="augment images in batches into an .npz (array 'input')")
    au_run.add_argument("spec", metavar="SPEC")
    au_run.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of them")
    au_run.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    au_run.add_argument("--batch", type=_count(1, 65536), default=32, help="images per run of the graph (default 32)")
    au_run.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is no terminal")
    au_run.add_argument("--max-output-bytes", type=_count(1), default=INPUT_BYTES, metavar="N",
                        help=f"largest output, as float32 (default {INPUT_BYTES:,})")
    for q in (pv, au_run):
        q.add_argument("--seed", type=_count(0, 2**32 - 1), default=0, help="the augmentation's seed (default 0)")
        q.add_argument("--force", action="store_true", help="replace the output file if it exists")
        _device_args(q)
        _limit_args(q)
    pv.set_defaults(run=cmd_augment_preview)
    au_run.set_defaults(run=cmd_augment_run)

    ly = sub.add_parser("layers", help="list the layer types and their arguments")
    ly.add_argument("--format", choices=["table", "json", "markdown"], default="table")
    ly.set_defaults(run=cmd_layers)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt: it unwinds the same way, so a file
    being written is removed rather than left half done, and a model's run is stopped."""


_signals: list = []  # the exception of each signal that came while main() ran


def _catch_signals() -> None:
    """Ctrl-C raises KeyboardInterrupt and SIGTERM Terminated, and both are remembered: a library
    may turn the exception into an error of its own (numpy's and onnxruntime's imports raise an
    ImportError), which is then reported as the interruption it is."""
    import signal

    def interrupted(signum, frame):
        _signals.append(Terminated if signum == signal.SIGTERM else KeyboardInterrupt)
        raise _signals[-1]

    _signals.clear()
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored (nohup, &)
            signal.signal(signal.SIGINT, interrupted)
        signal.signal(signal.SIGTERM, interrupted)
    except ValueError:  # not the main thread (main() called from a tool's worker thread)
        pass


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library's warning (Pillow's, numpy's) as one line, without its source file and line of code."""
    from compiler.errors import printable

    print(printable(f"warning: {message}"), file=sys.stderr)


def main(argv=None) -> int:
    try:
        _catch_signals()  # first: a signal during start-up unwinds like one during the work
        import warnings

        with warnings.catch_warnings():  # put back on return: tests and tools call main() in-process
            warnings.showwarning = _one_line_warning
            return _main(argv)
    except KeyboardInterrupt as e:  # however early it comes; outputs being written were removed on the way out
        terminated = isinstance(e, Terminated)
        print(f"convspec: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130  # the shell's 128 + SIGTERM (15) or SIGINT (2)


# The native libraries a command loads (compile, run, bench and export; check and summary none).
NATIVE = {"compile": ("numpy", "onnx"), "run": ("numpy", "onnx", "onnxruntime"),
          "bench": ("numpy", "onnx", "onnxruntime"), "export": ("numpy", "onnx", "onnxruntime"),
          "augment": ("numpy", "onnx", "onnxruntime")}


def _import_uninterrupted(names) -> None:
    """Import native libraries with Ctrl-C and SIGTERM held back until they are loaded: one that
    comes during a C extension's initialisation can crash the interpreter (seen: a segmentation
    fault in onnxruntime's) or become an ImportError. Held back, it arrives a moment later."""
    import importlib
    import signal

    if not names or not hasattr(signal, "pthread_sigmask"):  # Windows has no signal masks
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        for name in names:
            importlib.import_module(name)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    try:
        _import_uninterrupted(NATIVE.get(args.command, ()))
        return args.run(args)
    except Exception as e:
        if _signals:  # a library turned the signal's exception into one of its own
            raise _signals[-1]() from None
        return _report(e, args.command)


def _report(e: Exception, command: str) -> int:
    """Say what ended `convspec COMMAND` in one line on stderr; return the exit code."""
    from compiler.errors import ConvspecError, os_reason, printable

    if isinstance(e, ConvspecError):
        print(e.render(), file=sys.stderr)
        return e.exit_code
    if isinstance(e, BrokenPipeError):
        sys.stderr.close()  # `convspec summary x | head` is not an error
        return 0
    if isinstance(e, OSError):  # an I/O failure no reader anticipated (a name too long, a full disk): exit 2
        print(printable(f"error: {e.filename or 'convspec'}: {os_reason(e)}"), file=sys.stderr)
        return 2
    if isinstance(e, MemoryError):
        print(f"error: out of memory running `convspec {command}`; is a size in the spec or a file "
              "larger than intended?", file=sys.stderr)
        return 2
    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in ("numpy", "onnx", "onnxruntime"):
        print(f"error: `convspec {command}` needs the {e.name} package, which is missing; "
              "reinstall convspec with its dependencies (pip install -e .)", file=sys.stderr)
        return 2
    if os.environ.get("CONVSPEC_DEBUG"):  # a bug: said plainly, with its traceback only on request
        raise e
    print(printable(f"convspec: internal error: {type(e).__name__}: {e} "
                    "(this is a bug; rerun with CONVSPEC_DEBUG=1 and report the traceback)"), file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
