"""The spec front end against hostile specs: budgets that a repeat or an extends chain could
multiply, files that are not files, names that clash in ONNX, and YAML and expression quirks.

tests/hostile/specs/front/ holds one spec per case with the exact error it must get; the tests
below vary each case (other sizes, counts, names and characters) to cover its class.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import compiler.pipeline
from clirun import run_cli

FRONT = Path(__file__).resolve().parent / "hostile" / "specs" / "front"
NODES = "the spec expands to more than 200,000 YAML nodes, counting the block arguments and 'inputs' of every " \
        "copy; are aliases (*name) or a repeat copying a large one?"
ONNX_NAMES = "ONNX keeps layer outputs and weights in one namespace"

# file -> the exact error of `convspec check FILE` (exit 1), run inside tests/hostile/specs/front.
FRONT_ERRORS = {
    "repeat_copies_argument.yaml": f"repeat_copies_argument.yaml:9:5: error: layer 'b1.27': {NODES}",
    "weight_name_clash.yaml": "weight_name_clash.yaml:6:5: error: layer 'c1.weight': the name 'c1.weight' is also "
                              "the key of a weight of layer 'c1' (weight_name_clash.yaml:4:5); "
                              f"{ONNX_NAMES}, so rename the layer",
    "chain_child.yaml": "chain_base.yaml:9:70: error: the spec and the specs it extends expand to more than 200,000 "
                        "YAML nodes; are aliases (*name) repeating a large part of it?",
    "octal.yaml": "octal.yaml:3:21: error: '017' has a leading zero, so YAML 1.1 reads it as the octal number 15; "
                  "write 17, or quote it if it is text",
    "boolean_arithmetic.yaml": "boolean_arithmetic.yaml:6:25: error: layer 'b1.conv1': arithmetic needs numbers, "
                               "got true and 1\nboolean_arithmetic.yaml:8:5: note: in block 'b'",
    "fullwidth_expression.yaml": "fullwidth_expression.yaml:6:25: error: layer 'b1.conv1': '${ｆ * 2}' holds the "
                                 "non-ASCII character 'ｆ' (U+FF46); expressions are ASCII, and block arguments are "
                                 "named with letters, digits and _\nfullwidth_expression.yaml:8:5: note: in block 'b'",
    "fullwidth_argument.yaml": "fullwidth_argument.yaml:4:11: error: 'blocks.b.args' must be a mapping of arguments, "
                               "each named with ASCII letters, digits and _ (not starting with a digit); got {'ｆ': 8}",
}
HELPERS = {"chain_base.yaml"}  # valid alone: chain_child.yaml extends it


def test_the_table_covers_the_folder():
    assert sorted([*FRONT_ERRORS, *HELPERS]) == sorted(p.name for p in FRONT.glob("*.yaml"))
    assert run_cli(FRONT, "check", *HELPERS).returncode == 0


@pytest.mark.parametrize("command, name", [  # chain_child.yaml reads 200,000 YAML nodes first: seconds
    pytest.param(command, name, marks=[pytest.mark.slow] if name == "chain_child.yaml" else [])
    for command in ("check", "summary", "compile") for name in sorted(FRONT_ERRORS)])
def test_hostile_front_spec(name, command, tmp_path):
    out = tmp_path / "model.onnx"
    proc = run_cli(FRONT, command, name, *(["-o", str(out)] if command == "compile" else []), timeout=20)
    assert (proc.returncode, proc.stderr, proc.stdout) == (1, FRONT_ERRORS[name] + "\n", "")
    assert list(tmp_path.iterdir()) == []  # no model, no temporary


def check(tmp_path: Path, text: str, *flags: str, timeout: float = 20, name: str = "spec.yaml"):
    (tmp_path / name).write_text(text)
    return run_cli(tmp_path, "check", name, *flags, timeout=timeout)


# -- item 2: block arguments copied into every instance spend the node budget each time ------------

def _aliased_list(size: int, copies: int) -> str:
    """[&x [1, ...size], *x, ...]: `size * (copies + 1)` numbers after aliases, written in little text."""
    return "[&x [" + ", ".join(["1"] * size) + "]" + ", *x" * copies + "]"


def _block_spec(value: str, repeat: int, wrap: str = "") -> str:
    return (f"input: [3, 8, 8]\nblocks:\n  b:\n    args: {{v: null}}\n    layers:\n      - relu\n"
            f"layers:\n  - b: {{v: {value}}}\n    repeat: {repeat}\n")


@pytest.mark.parametrize("size, copies", [(1000, 60), (200, 20), (5000, 5), (30, 300)])
@pytest.mark.parametrize("repeat", [pytest.param(100, marks=pytest.mark.slow),  # the quick loop: 10,000, which
                                    pytest.param(1000, marks=pytest.mark.slow), 10000])  # once took hours
def test_a_repeat_cannot_multiply_a_large_argument(tmp_path, size, copies, repeat):
    """Before, each copy substituted the whole list again: 61,000 numbers x 100 copies took 12 s, and
    10,000 copies hours. Now each copy spends the list's nodes, and the spec stops at the budget."""
    nodes = size * (copies + 1)
    proc = check(tmp_path, _block_spec(_aliased_list(size, copies), repeat), timeout=15)
    if nodes * repeat < 150_000:  # well under the budget: it is fine
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 1
    assert proc.stderr.startswith("spec.yaml:8:5: error: layer 'b1.") and proc.stderr.endswith(NODES + "\n")
    copy = int(proc.stderr.split("'b1.")[1].split("'")[0])
    assert copy <= 200_000 // nodes  # stopped as soon as the copies spent the budget


@pytest.mark.parametrize("value", [
    # a wide list with a reference: rebuilt in every copy
    pytest.param("[$n, " + ", ".join(["1"] * 20_000) + "]", marks=pytest.mark.slow),
    "{" + ", ".join(f"k{i}: $n" for i in range(10_000)) + "}",
    _aliased_list(2000, 9).replace("[1,", "[$n,", 1),
])
def test_arguments_holding_references_count_too(tmp_path, value):
    spec = (f"input: [3, 8, 8]\nblocks:\n  inner:\n    args: {{v: null}}\n    layers: [relu]\n"
            f"  outer:\n    args: {{n: 1}}\n    layers:\n      - inner: {{v: {value}}}\n"
            f"layers:\n  - outer: {{n: 2}}\n    repeat: 10000\n")
    proc = check(tmp_path, spec, timeout=15)
    assert proc.returncode == 1 and proc.stderr.endswith(f"{NODES}\nspec.yaml:11:5: note: in block 'outer' (n: 2)\n"), \
        proc.stderr


def test_many_declared_arguments_count_in_every_instance(tmp_path):
    names = [f"a{i}" for i in range(20_000)]
    spec = (f"input: [3, 8, 8]\nblocks:\n  b:\n    args: {{{', '.join(f'{n}: 1' for n in names)}}}\n"
            f"    layers: [relu]\nlayers:\n  - b: null\n    repeat: 10000\n")
    proc = check(tmp_path, spec, timeout=15)
    assert proc.returncode == 1 and proc.stderr.endswith(NODES + "\n"), proc.stderr


@pytest.mark.parametrize("repeat", [1000, pytest.param(10000, marks=pytest.mark.slow)])
def test_small_arguments_and_passed_references_stay_cheap(tmp_path, repeat):
    """What real specs do: a few numbers per block, and `$v` handing a value on (shared, not copied)."""
    spec = (f"input: [3, 8, 8]\nblocks:\n  inner:\n    args: {{w: null, k: 1}}\n    layers: [relu]\n"
            f"  outer:\n    args: {{v: null}}\n    layers:\n      - inner: {{w: $v, k: 2}}\n"
            f"        repeat: {repeat}\n"
            f"layers:\n  - outer: {{v: {_aliased_list(1000, 49)}}}\n")
    proc = check(tmp_path, spec, timeout=30)
    assert (proc.returncode, proc.stderr) == (0, "")


@pytest.mark.parametrize("width, repeat", [pytest.param(20_000, 1000, marks=pytest.mark.slow), (2_000, 10_000),
                                           pytest.param(100_000, 3, marks=pytest.mark.slow)])
def test_an_inputs_list_counts_in_every_copy(tmp_path, width, repeat):
    names = ", ".join(["input"] * width)
    spec = (f"input: [3, 8, 8]\nblocks:\n  b:\n    layers:\n      - add: null\n        inputs: [{names}]\n"
            f"layers:\n  - b: null\n    repeat: {repeat}\n")
    proc = check(tmp_path, spec, timeout=15)
    assert proc.returncode == 1 and proc.stderr.startswith("spec.yaml:6:17: error: layer 'b1."), proc.stderr
    assert proc.stderr.endswith(f".add1': {NODES}\nspec.yaml:8:5: note: in block 'b'\n")


@pytest.mark.parametrize("length, repeat", [(1_000_000, 10_000), (1_001, 2),
                                            pytest.param(600, 10_000, marks=pytest.mark.slow)])
def test_a_long_name_is_refused_before_its_copies_are_made(tmp_path, length, repeat):
    """A 1 MB name in a block repeated 3,000 times took 3 GB; a dotted name is at most 1,000 characters."""
    spec = (f"input: [3, 8, 8]\nblocks:\n  b:\n    layers:\n      - relu: null\n        name: {'a' * length}\n"
            f"layers:\n  - b: null\n    name: stage\n    repeat: {repeat}\n")
    proc = check(tmp_path, spec, timeout=15)
    full = len("stage.0.") + length
    if full <= 1000:
        assert (proc.returncode, proc.stderr) == (0, "")
        return
    assert (proc.returncode, proc.stderr) == (1, f"spec.yaml:6:15: error: layer '{('stage.0.' + 'a' * length)[:60]} ...': "
                                                 f"the layer's dotted name is {full:,} characters long, more than "
                                                 "1,000; use shorter names\nspec.yaml:8:5: note: in block 'b'\n")


# -- item 10: a layer named like a weight --------------------------------------------------------

@pytest.mark.parametrize("layers, error", [
    ("  - conv: {filters: 4, kernel: 3}\n    name: c1\n  - relu: null\n    name: c1.weight\n",
     "spec.yaml:5:5: error: layer 'c1.weight': the name 'c1.weight' is also the key of a weight of layer 'c1' "
     f"(spec.yaml:3:5); {ONNX_NAMES}, so rename the layer"),
    ("  - relu: null\n    name: features.0.bias\n  - conv: {filters: 4, kernel: 3}\n    name: features.0\n",
     "spec.yaml:3:5: error: layer 'features.0.bias': the name 'features.0.bias' is also the key of a weight of "
     f"layer 'features.0' (spec.yaml:5:5); {ONNX_NAMES}, so rename the layer"),
    ("  - batchnorm: null\n    name: bn\n  - relu: null\n    name: bn.running_var\n",
     "spec.yaml:5:5: error: layer 'bn.running_var': the name 'bn.running_var' is also the key of a weight of "
     f"layer 'bn' (spec.yaml:3:5); {ONNX_NAMES}, so rename the layer"),
    ("  - flatten\n  - dense: 10\n    name: fc\n  - relu: null\n    name: fc.weight\n",
     "spec.yaml:6:5: error: layer 'fc.weight': the name 'fc.weight' is also the key of a weight of layer 'fc' "
     f"(spec.yaml:4:5); {ONNX_NAMES}, so rename the layer"),
    ("  - separable_conv: {filters: 4, kernel: 3}\n    name: a\n  - conv: {filters: 4, kernel: 3}\n"
     "    name: a.depthwise\n",
     "spec.yaml:5:5: error: layer 'a.depthwise': its weight 'a.depthwise.weight' has the same key as a weight of "
     f"layer 'a' (spec.yaml:3:5); {ONNX_NAMES}, so rename one of the layers"),
])
def test_a_layer_named_like_a_weight_is_refused(tmp_path, layers, error):
    proc = check(tmp_path, "input: [3, 16, 16]\nlayers:\n" + layers)
    assert (proc.returncode, proc.stderr) == (1, error + "\n")


@pytest.mark.parametrize("repeat", [1, 3])
def test_a_clash_inside_repeated_blocks_names_the_copy(tmp_path, repeat):
    spec = ("input: [3, 16, 16]\nblocks:\n  b:\n    layers:\n      - conv: {filters: 3, kernel: 1}\n"
            "        name: c\n      - relu: null\n        name: c.bias\n"
            f"layers:\n  - b: null\n    name: layer\n    repeat: {repeat}\n")
    proc = check(tmp_path, spec)
    assert (proc.returncode, proc.stderr) == (1, "spec.yaml:7:9: error: layer 'layer.0.c.bias': the name "
                                                 "'layer.0.c.bias' is also the key of a weight of layer 'layer.0.c' "
                                                 f"(spec.yaml:5:9); {ONNX_NAMES}, so rename the layer\n")


# -- item 11: an extends chain is one spec; the spec must be a file --------------------------------

def _chain(folder: Path, sizes: list[int]) -> str:
    """Files s0 <- s1 <- ... each padded to about `size` bytes with a description; returns the last."""
    for k, size in enumerate(sizes):
        head = "input: [3, 8, 8]\nlayers: [relu]\n" if k == 0 else f"extends: s{k - 1}.yaml\n"
        (folder / f"s{k}.yaml").write_text(head + "description: '" + "x" * size + "'\n")
    return f"s{len(sizes) - 1}.yaml"


@pytest.mark.parametrize("sizes, flags, stop", [
    ([1_100_000] * 3, (), 1),  # each under the 2,000,000 bytes; two are over
    ([700_000] * 3, (), 0),
    ([9_000] * 4, ("--max-spec-bytes", "30000"), 0),
    ([20_000, 5_000, 5_000, 5_000], ("--max-spec-bytes", "30000"), 0),
])
def test_the_size_limit_is_for_the_whole_chain(tmp_path, sizes, flags, stop):
    top = _chain(tmp_path, sizes)
    proc = run_cli(tmp_path, "check", top, *flags, timeout=20)
    limit = int(flags[1]) if flags else 2_000_000
    total = sum(len((tmp_path / f"s{k}.yaml").read_bytes()) for k in range(stop, len(sizes)))
    assert proc.returncode == 1
    assert proc.stderr == (f"s{stop}.yaml:1:1: error: the spec and the specs it extends are {total:,} bytes; "
                           f"the limit is {limit:,} (--max-spec-bytes raises it)\n")
    whole = sum(len((tmp_path / f"s{k}.yaml").read_bytes()) for k in range(len(sizes)))
    assert run_cli(tmp_path, "check", top, "--max-spec-bytes", str(whole)).returncode == 0


@pytest.mark.parametrize("files", [2, 5])
def test_each_file_of_a_chain_is_validated_once(tmp_path, monkeypatch, files):
    """The merged document is not validated again: a chain costs what its files cost."""
    calls = []
    real = compiler.pipeline.validate
    monkeypatch.setattr(compiler.pipeline, "validate", lambda doc, path: calls.append(path) or real(doc, path))
    assert run_cli(tmp_path, "check", _chain(tmp_path, [10] * files)).returncode == 0
    assert sorted(calls) == [f"s{k}.yaml" for k in range(files)]


@pytest.mark.parametrize("per_file, files, fails", [(70_000, 3, True), (45_000, 4, False),
                                                     pytest.param(45_000, 5, True, marks=pytest.mark.slow)])
def test_the_node_budget_is_for_the_whole_chain(tmp_path, per_file, files, fails):
    for k in range(files):
        head = "input: [3, 8, 8]\nlayers: [relu]\n" if k == 0 else f"extends: s{k - 1}.yaml\n"
        big = _aliased_list(1000, per_file // 1000 - 2)
        (tmp_path / f"s{k}.yaml").write_text(head + f"blocks:\n  b{k}:\n    layers: [relu]\n    args: {{v: {big}}}\n")
    proc = run_cli(tmp_path, "check", f"s{files - 1}.yaml")
    if not fails:
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 1
    assert proc.stderr.endswith(": error: the spec and the specs it extends expand to more than 200,000 YAML nodes; "
                                "are aliases (*name) repeating a large part of it?\n"), proc.stderr


NOT_A_FILE = "is not a regular file (a FIFO, a device or a socket); a spec must be a file"


@pytest.mark.parametrize("command", ["check", "summary", "compile"])
def test_a_fifo_as_the_spec_is_refused_without_waiting(tmp_path, command):
    os.mkfifo(tmp_path / "spec.yaml")  # nobody writes to it: opening it to read would block
    extra = ["-o", str(tmp_path / "m.onnx")] if command == "compile" else []
    proc = run_cli(tmp_path, command, "spec.yaml", *extra, timeout=10)
    assert (proc.returncode, proc.stderr) == (2, f"error: spec.yaml: {NOT_A_FILE}\n")


@pytest.mark.parametrize("path", ["/dev/null", "/dev/zero", "/dev/urandom"])
def test_a_device_as_the_spec_is_refused(tmp_path, path):
    proc = run_cli(tmp_path, "check", path, timeout=10)
    assert (proc.returncode, proc.stderr) == (2, f"error: {path}: {NOT_A_FILE}\n")


def test_a_directory_keeps_its_message(tmp_path):
    (tmp_path / "d.yaml").mkdir()
    proc = run_cli(tmp_path, "check", "d.yaml")
    assert (proc.returncode, proc.stderr) == (2, "error: d.yaml: is a directory, expected a YAML spec\n")


@pytest.mark.parametrize("key, target, col", [("extends", "base.yaml", 10), ("labels", "labels.txt", 9)])
def test_a_fifo_named_by_the_spec_is_refused(tmp_path, key, target, col):
    os.mkfifo(tmp_path / target)
    text = (f"extends: {target}\n" if key == "extends" else f"input: [3, 8, 8]\nlabels: {target}\nlayers: [relu]\n")
    proc = check(tmp_path, text, timeout=10)
    line = 1 if key == "extends" else 2
    assert (proc.returncode, proc.stderr) == (1, f"spec.yaml:{line}:{col}: error: '{key}' names '{target}', which "
                                                 "is not a regular file (a directory, a FIFO or a device)\n")


# -- item 12: YAML 1.1's octal, booleans in arithmetic, characters that NFKC folds -----------------

@pytest.mark.parametrize("written, read, decimal", [
    ("017", "the octal number 15", "17"), ("-017", "the octal number -15", "-17"), ("+0_10", "the octal number 8", "+10"),
    ("00", "the octal number 0", "0"), ("0017", "the octal number 15", "17"),
    ("019", "text", "19"), ("08", "text", "8"),
])
@pytest.mark.parametrize("where", ["filters", "input", "repeat"])
def test_a_leading_zero_is_refused(tmp_path, written, read, decimal, where):
    lines = {"filters": ("input: [3, 8, 8]\nlayers:\n  - conv: {{filters: {}, kernel: 3}}\n", 3, 21),
             "input": ("input: [3, {}, 8]\nlayers: [relu]\n", 1, 12),
             "repeat": ("input: [3, 8, 8]\nlayers:\n  - relu: null\n    repeat: {}\n", 4, 13)}
    text, line, col = lines[where]
    proc = check(tmp_path, text.format(written))
    assert (proc.returncode, proc.stderr) == (1, f"spec.yaml:{line}:{col}: error: '{written}' has a leading zero, so "
                                                 f"YAML 1.1 reads it as {read}; write {decimal}, or quote it if it is "
                                                 "text\n")


@pytest.mark.parametrize("text, number", [("0", True), ("10", True), ("0x1F", True), ("0.5", True),
                                          ("'017'", False), ('"017"', False)])
def test_other_numbers_and_quoted_text_are_read_as_before(tmp_path, text, number):
    proc = check(tmp_path, f"input: [3, 8, 8]\nlayers: [relu]\ntitle: {text}\n")
    assert proc.returncode == (1 if number else 0)  # a title must be text
    assert "leading zero" not in proc.stderr


@pytest.mark.parametrize("expression, args, error", [
    ("${true + 1}", "{}", "arithmetic needs numbers, got true and 1"),
    ("${8 * (wide + 1)}", "{wide: true}", "arithmetic needs numbers, got true and 1"),
    ("${c - false}", "{c: 8}", "arithmetic needs numbers, got 8 and false"),
    ("${c * flag}", "{c: 8, flag: false}", "arithmetic needs numbers, got 8 and false"),
    ("${-flag}", "{flag: true}", "a sign needs a number, got true"),
    ("${8 if flag == 1 else 4}", "{flag: true}",
     "cannot compare true with 1: compare two numbers, two strings, or two booleans with == or !="),
    ("${8 if flag > false else 4}", "{flag: true}",
     "cannot compare true with false: compare two numbers, two strings, or two booleans with == or !="),
    ("${8 if v == v else 4}", "{v: [1, 2]}",
     "cannot compare [1, 2] with [1, 2]: compare two numbers, two strings, or two booleans with == or !="),
])
def test_booleans_are_not_numbers_in_expressions(tmp_path, expression, args, error):
    spec = (f"input: [3, 8, 8]\nblocks:\n  b:\n    args: {args}\n    layers:\n"
            f"      - conv: {{filters: \"{expression}\", kernel: 3}}\nlayers:\n  - b\n")
    proc = check(tmp_path, spec)
    assert (proc.returncode, proc.stderr) == (1, f"spec.yaml:6:25: error: layer 'b1.conv1': {error}\n"
                                                 "spec.yaml:8:5: note: in block 'b'\n")


@pytest.mark.parametrize("expression, args", [
    ("${8 if flag == true else 4}", "{flag: true}"), ("${8 if flag != false else 4}", "{flag: true}"),
    ("${8 if pad == 'same' else 4}", "{pad: same}"), ("${c * 2 if c >= 4.0 else c}", "{c: 4}"),
    ("${c + 1 if not flag else c}", "{c: 7, flag: false}"),
])
def test_like_with_like_still_works(tmp_path, expression, args):
    spec = (f"input: [3, 8, 8]\nblocks:\n  b:\n    args: {args}\n    layers:\n"
            f"      - conv: {{filters: \"{expression}\", kernel: 3}}\nlayers:\n  - b\n")
    assert check(tmp_path, spec).returncode == 0


# Each of these is read by Python as an ASCII name (NFKC): `ｆ` and `𝐟` and `ᶠ` as f, `ﬁ` as fi.
FOLDING = [("ｆ", "f"), ("𝐟", "f"), ("ᶠ", "f"), ("ﬁ", "fi"), ("ｃ", "c")]


@pytest.mark.parametrize("char, folded", FOLDING)
@pytest.mark.parametrize("form", ["${{{} * 2}}", "${{2 + {}}}", "${}"])
def test_an_expression_is_ascii(tmp_path, char, folded, form):
    expression = form.format(char)
    spec = (f"input: [3, 8, 8]\nblocks:\n  b:\n    args: {{{folded}: 4}}\n    layers:\n"
            f"      - conv: {{filters: \"{expression}\", kernel: 3}}\nlayers:\n  - b\n")
    proc = check(tmp_path, spec)
    assert (proc.returncode, proc.stderr) == (1, f"spec.yaml:6:25: error: layer 'b1.conv1': '{expression}' holds the "
                                                 f"non-ASCII character '{char}' (U+{ord(char):04X}); expressions are "
                                                 "ASCII, and block arguments are named with letters, digits and _\n"
                                                 "spec.yaml:8:5: note: in block 'b'\n")


@pytest.mark.parametrize("char, folded", FOLDING)
def test_names_are_kept_exactly_or_refused(tmp_path, char, folded):
    """Nowhere else does a name fold: each of these is refused, never read as its ASCII look-alike."""
    bad = char + "1"
    cases = {
        "argument": f"input: [3, 8, 8]\nblocks:\n  b:\n    args: {{{bad}: 4}}\n    layers: [relu]\nlayers:\n  - b\n",
        "block": f"input: [3, 8, 8]\nblocks:\n  {bad}:\n    layers: [relu]\nlayers:\n  - {bad}\n",
        "layer name": f"input: [3, 8, 8]\nlayers:\n  - relu: null\n    name: {bad}\n",
        "layer type": f"input: [3, 8, 8]\nlayers:\n  - {char}onv: {{filters: 4, kernel: 3}}\n",
        "argument key": f"input: [3, 8, 8]\nlayers:\n  - conv: {{{char}ilters: 4, kernel: 3}}\n",
        "inputs": f"input: [3, 8, 8]\nlayers:\n  - relu: null\n    name: {folded}1\n  - relu: null\n"
                  f"    inputs: [{bad}]\n",
        "outputs": f"input: [3, 8, 8]\nlayers:\n  - relu: null\n    name: {folded}1\noutputs: [{bad}]\n",
    }
    for what, text in cases.items():
        proc = check(tmp_path, text)
        assert proc.returncode == 1, (what, proc.stdout)
        assert bad in proc.stderr or f"{char}" in proc.stderr, (what, proc.stderr)
