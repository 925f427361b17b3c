"""Every error a user can make: where it is reported, what it says, and the exit code.

The contract (DESIGN.md, "Every error points at file:line:col and says what to change"):
each message is `path:line:col: error: layer 'NAME': message` on stderr (the layer part when a
layer is known), an invalid spec exits 1, usage and I/O problems exit 2, and no Python traceback
ever reaches the user. Specs are written to tmp_path and the CLI runs (in-process) there, so
the paths in messages are the bare file names.

The YAML texts below start on line 1 (no leading newline); columns are 1-based.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clirun import run_cli
from compiler.errors import SpecError

ROOT = Path(__file__).resolve().parent.parent
SPEC = "spec.yaml"


def check(tmp_path: Path, text: str, *flags: str, name: str = SPEC, timeout: float = 30):
    (tmp_path / name).write_text(text, encoding="utf-8")
    return run_cli(tmp_path, "check", name, *flags, timeout=timeout)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """`check` every case of a table in one run (one file per case, named after its id).

    One run per table keeps the suite fast; each case is still reported under its own path,
    and a case that crashed the run or exited 2 fails every test of its table.
    """
    cache = {}

    def run(table):
        key = id(table)
        if key not in cache:
            folder = tmp_path_factory.mktemp("batch")
            names = []
            for case in table:
                (folder / f"{case.id}.yaml").write_text(case.values[0], encoding="utf-8")
                names.append(f"{case.id}.yaml")
            cache[key] = run_cli(folder, "check", *names)
        return cache[key]

    return run


def case_file(request) -> str:
    return f"{request.node.callspec.id}.yaml"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": error: " in line]


def assert_error(proc, line: int, col: int, layer: str | None, *phrases: str, path: str = SPEC, code: int = 1):
    """Some error line starts `path:line:col: error: [layer 'X': ]` and contains every phrase."""
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stderr}"
    prefix = f"{path}:{line}:{col}: error: " + (f"layer '{layer}': " if layer else "")
    candidates = [ln for ln in error_lines(proc.stderr) if ln.startswith(prefix)]
    assert candidates, f"no error line starts with {prefix!r}:\n{proc.stderr}"
    assert any(all(p in ln for p in phrases) for ln in candidates), \
        f"no error line at {prefix!r} contains {phrases!r}:\n{proc.stderr}"
    return candidates


# -- argument and layer-type errors ---------------------------------------------------------

ARGUMENT_ERRORS = [
    pytest.param("""\
input: [3, 32, 32]
layers:
  - conv2d: {filters: 8, kernel: 3}
""", 3, 5, None, ["unknown layer type 'conv2d'", "did you mean 'conv'?"], id="unknown-layer-type"),
    pytest.param("""\
input: [3, 32, 32]
layers:
  - conv: {filter: 8, kernel: 3}
""", 3, 12, "conv1", ["unknown argument 'filter'", "did you mean 'filters'?"], id="unknown-argument"),
    pytest.param("""\
input: [3, 32, 32]
layers:
  - conv: {kernel: 3}
""", 3, 11, "conv1", ["missing the required argument", "'filters'"], id="missing-argument"),
    pytest.param("""\
input: [3, 32, 32]
layers:
  - conv: {filters: 8, kernel: big}
""", 3, 32, "conv1", ["'kernel'", "a positive integer or a list [h, w]", "got 'big'"], id="wrong-type"),
    pytest.param("""\
input: [3, 32, 32]
layers:
  - conv: {filters: 0, kernel: 3}
""", 3, 21, "conv1", ["'filters'", "a positive integer", "got 0"], id="filters-zero"),
    pytest.param("""\
input: [3, 32, 32]
layers:
  - flatten
  - dropout: {rate: 1.5}
""", 4, 21, "dropout1", ["'rate'", "[0, 1)", "got 1.5"], id="dropout-rate-out-of-range"),
    pytest.param("""\
input: [3, 32, 32]
layers:
  - conv: {filters: 8, kernel: 3, padding: -1}
""", 3, 44, "conv1", ["'padding'", "'same' or 'valid'", "got -1"], id="negative-padding"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 8, kernel: 3, stride: [1, 2, 3]}
""", 3, 43, "conv1", ["'stride'", "[h, w]", "got [1, 2, 3]"], id="stride-three-values"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 8, kernel: 3, activation: relux}
""", 3, 47, "conv1", ["'activation'", "'relu'", "got 'relux'"], id="unknown-activation"),
]


@pytest.mark.parametrize("text, line, col, layer, phrases", ARGUMENT_ERRORS)
def test_argument_errors(batch, request, text, line, col, layer, phrases):
    proc = batch(ARGUMENT_ERRORS)
    assert_error(proc, line, col, layer, *phrases, path=case_file(request))
    assert proc.stdout == ""  # no spec of the table is reported valid


# -- shape errors (inference) ---------------------------------------------------------------

SHAPE_ERRORS = [
    pytest.param("""\
input: [3, 5, 5]
layers:
  - conv: {filters: 4, kernel: 7}
""", 3, 32, "conv1", ["kernel 7 is larger than the padded input height 5", "floor((5 - 7)/1) + 1 = -1",
                      "use a smaller kernel, more padding"], id="kernel-larger-than-input"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 4, kernel: 3, groups: 2}
""", 3, 43, "conv1", ["input channels 3 are not divisible by groups 2", "use a groups value that divides 3"],
        id="channels-not-divisible-by-groups"),
    pytest.param("""\
input: [4, 8, 8]
layers:
  - conv: {filters: 3, kernel: 3, groups: 2}
""", 3, 21, "conv1", ["filters 3 are not divisible by groups 2", "use a multiple of 2"],
        id="filters-not-divisible-by-groups"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 8, kernel: 3, padding: 1}
    name: a
  - conv: {filters: 16, kernel: 3, padding: 1}
    name: b
  - add:
    inputs: [a, b]
""", 7, 5, "add1", ["channel mismatch", "input #1 has 8 channels but input #2 has 16", "1x1 conv",
                    "'a' [8, 8, 8]", "'b' [16, 8, 8]"], id="add-channel-mismatch"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 8, kernel: 3, padding: 1}
    name: a
  - conv: {filters: 8, kernel: 3, stride: 2, padding: 1}
    name: b
    inputs: input
  - concat:
    inputs: [a, b]
""", 8, 5, "concat1", ["spatial mismatch", "input #1 is 8x8 but input #2 is 4x4", "strides and padding"],
        id="concat-spatial-mismatch"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 8, kernel: 3}
  - dense: 10
""", 4, 5, "dense1", ["dense needs a flat [features] input, got [8, 6, 6]", "add `- flatten`"],
        id="dense-after-conv"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 4, kernel: 3, padding: 1}
  - add:
    inputs: conv1
""", 4, 5, "add1", ["two or more inputs, got 1", "inputs: [a, b]"], id="add-with-one-input"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 4, kernel: 3, padding: 1}
  - relu:
    inputs: [conv1, conv1]
""", 4, 5, "relu1", ["relu takes one input, got 2", "merge them first"], id="two-inputs-to-relu"),
]


@pytest.mark.parametrize("text, line, col, layer, phrases", SHAPE_ERRORS)
def test_shape_errors(batch, request, text, line, col, layer, phrases):
    proc = batch(SHAPE_ERRORS)
    assert_error(proc, line, col, layer, *phrases, path=case_file(request))
    assert proc.stdout == ""


NON_TILING = """\
input: [1, 7, 7]
layers:
  - conv: {filters: 1, kernel: 3, stride: 3}
"""


def test_non_tiling_window_warns_but_passes(tmp_path):
    proc = check(tmp_path, NON_TILING)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ": warning: " in ln]
    assert len(warnings) == 1, proc.stderr
    assert warnings[0].startswith(f"{SPEC}:3:43: warning: layer 'conv1': ")
    assert "(7 - 3)/3 + 1 = 2.33" in warnings[0]
    assert "row 6 and column 6" in warnings[0]          # the input row and column never read
    assert "change the padding or the stride" in warnings[0]
    assert error_lines(proc.stderr) == []
    assert "ok: 1 layer" in proc.stdout


def test_non_tiling_window_is_an_error_under_strict(tmp_path):
    proc = check(tmp_path, NON_TILING, "--strict")
    assert_error(proc, 3, 43, "conv1", "(7 - 3)/3 + 1 = 2.33", "--strict")
    assert ": warning: " not in proc.stderr
    assert proc.stdout == ""


def test_tiling_window_gives_no_warning(tmp_path):
    # (7 - 3)/2 + 1 = 3 exactly: the --strict check must not fire on a window that fits.
    proc = check(tmp_path, NON_TILING.replace("stride: 3", "stride: 2"), "--strict")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


# -- wiring and naming ----------------------------------------------------------------------

WIRING_ERRORS = [
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 8, kernel: 3, padding: 1}
    name: branch
  - relu:
    inputs: brnch
""", 6, 13, None, ["undefined name 'brnch'", "did you mean 'branch'?"], id="undefined-input"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 8, kernel: 3, padding: 1}
    name: branch
  - add:
    inputs: [input, brnch]
""", 6, 21, None, ["undefined name 'brnch'", "did you mean 'branch'?"], id="undefined-input-in-list"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 8, kernel: 3, padding: 1}
    name: c
  - relu
  - conv: {filters: 8, kernel: 3, padding: 1}
    name: c
""", 7, 11, None, ["duplicate name 'c'", "first used at line 4", "unique"], id="duplicate-name"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - relu:
    name: a
    inputs: b
  - relu:
    name: b
    inputs: a
""", 3, 5, "a", ["cycle", "a -> b -> a", "cannot depend on its own output"], id="cycle"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - relu:
    name: a
    inputs: a
""", 3, 5, "a", ["cycle", "a -> a"], id="self-loop"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - relu:
    name: input
""", 4, 11, None, ["'input' is reserved", "choose another name"], id="reserved-name"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - relu
outputs: rleu1
""", 4, 10, None, ["undefined name 'rleu1'", "did you mean 'relu1'?"], id="undefined-output"),
]


@pytest.mark.parametrize("text, line, col, layer, phrases", WIRING_ERRORS)
def test_wiring_errors(batch, request, text, line, col, layer, phrases):
    proc = batch(WIRING_ERRORS)
    assert_error(proc, line, col, layer, *phrases, path=case_file(request))
    assert proc.stdout == ""


def test_undefined_input_names_the_layer_that_uses_it(tmp_path):
    proc = check(tmp_path, WIRING_ERRORS[0].values[0])
    assert_error(proc, 6, 13, "relu1", "undefined name 'brnch'")


def test_undefined_input_without_close_match_lists_the_names(tmp_path):
    proc = check(tmp_path, """\
input: [3, 8, 8]
layers:
  - conv: {filters: 8, kernel: 3, padding: 1}
  - relu:
    inputs: zzz
""")
    lines = assert_error(proc, 5, 13, None, "undefined name 'zzz'")
    assert any("conv1" in ln for ln in lines), proc.stderr  # say which names exist


def test_duplicate_name_error_names_the_layer(tmp_path):
    proc = check(tmp_path, WIRING_ERRORS[2].values[0])
    assert_error(proc, 7, 11, "c", "duplicate name 'c'")


# -- expect ---------------------------------------------------------------------------------

def test_failed_layer_expect_shows_actual_and_expected(tmp_path):
    proc = check(tmp_path, """\
input: [3, 32, 32]
layers:
  - conv: {filters: 8, kernel: 5}
    expect: {output: [8, 30, 30], params: 608}
""")
    assert_error(proc, 4, 22, "conv1", "expect failed", "[8, 28, 28]", "[8, 30, 30]")
    assert len(error_lines(proc.stderr)) == 1  # params 608 (5*5*3*8 + 8) is right


def test_every_failed_expect_is_reported_at_its_value(tmp_path):
    proc = check(tmp_path, """\
input: [3, 8, 8]
layers:
  - conv: {filters: 4, kernel: 3}
    name: c
    expect: {output: [4, 6, 6], params: 100, macs: 1}
""")
    assert_error(proc, 5, 41, "c", "params is 112", "expects 100")
    assert_error(proc, 5, 52, "c", "macs is 3,888", "expects 1")
    assert len(error_lines(proc.stderr)) == 2


def test_failed_spec_expect_names_the_spec(tmp_path):
    proc = check(tmp_path, """\
name: tiny
input: [3, 32, 32]
layers:
  - conv: {filters: 8, kernel: 5}
expect:
  params: 600
""")
    assert_error(proc, 6, 11, "tiny", "expect failed", "params is 608", "expects 600")


# -- document structure and YAML ------------------------------------------------------------

DOCUMENT_ERRORS = [
    pytest.param("""\
input: [3, 32, 32]
layer:
  - conv: {filters: 8, kernel: 5}
""", 2, 1, ["unknown key 'layer'", "did you mean 'layers'?"], id="unknown-top-level-key"),
    pytest.param("""\
input: [3, 32, 32]
layers:
  - conv: {filters: 8, kernel: 5}
expekt: {params: 1}
""", 4, 1, ["unknown key 'expekt'", "did you mean 'expect'?"], id="unknown-top-level-key-2"),
    pytest.param("""\
layers:
  - relu
""", 1, 1, ["missing the required key", "'input'"], id="missing-input"),
    pytest.param("""\
input: [3, 32, 32]
layers:
  - conv: {filters: 8, kernel: 5}
   - relu
""", 4, 4, ["invalid YAML"], id="yaml-bad-indentation"),
    pytest.param("""\
input: [3, 32, 32]
layers:
  - conv: {filters: 8, kernel: 5}
  - relu
  bad: [1, 2
""", 5, 3, ["invalid YAML"], id="yaml-bad-key"),
    pytest.param("""\
input: [3, 8, 8]
layers:
\t- relu
""", 3, 1, ["invalid YAML"], id="yaml-tab-indent"),
    pytest.param("""\
input: [3, 32, 32]
layers:
  - conv: {filters: 8, kernel: 5}
input: [3, 64, 64]
""", 4, 1, ["duplicate key 'input'", "first at line 1"], id="duplicate-top-level-key"),
    pytest.param("""\
input: [3, 32, 32]
layers:
  - conv: {filters: 8, kernel: 5, filters: 4}
""", 3, 35, ["duplicate key 'filters'", "first at line 3"], id="duplicate-argument-key"),
    pytest.param("", 1, 1, ["empty", "'input' and 'layers'"], id="empty-file"),
    pytest.param("# nothing but a comment\n\n", 1, 1, ["empty"], id="comment-only-file"),
    pytest.param("""\
- conv: {filters: 8, kernel: 5}
""", 1, 1, ["must be a mapping", "'input' and 'layers'"], id="top-level-list"),
    pytest.param("just a string\n", 1, 1, ["must be a mapping"], id="top-level-scalar"),
    pytest.param("""\
input: [3, 8, 8]
base: &base {filters: 8, kernel: 3}
layers:
  - conv: {<<: *base, padding: 1}
""", 4, 12, ["merge keys", "not supported"], id="yaml-merge-key"),
    pytest.param("""\
input: [3, 8, 8]
? [a, b]
: 1
layers: [relu]
""", 2, 3, ["keys must be strings"], id="non-string-key"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 8, kernel: 3}
    relu:
""", 3, 5, ["exactly one layer type", "its own list item"], id="two-types-in-one-item"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: 4, kernel: 3}
    expect: {outputs: [4, 6, 6]}
""", 4, 14, ["unknown key 'outputs'", "did you mean 'output'?"], id="unknown-expect-key"),
]


@pytest.mark.parametrize("text, line, col, phrases", DOCUMENT_ERRORS)
def test_document_errors(batch, request, text, line, col, phrases):
    proc = batch(DOCUMENT_ERRORS)
    assert_error(proc, line, col, None, *phrases, path=case_file(request))
    assert proc.stdout == ""


def test_non_utf8_file_is_refused_without_a_traceback(tmp_path):
    (tmp_path / SPEC).write_bytes(b"input: [3, 8, 8]\nlayers: [relu]\nname: \"\xff\xfe\"\n")
    proc = run_cli(tmp_path, "check", SPEC)
    assert proc.returncode in (1, 2), proc.stderr
    assert "UTF-8" in proc.stderr


def test_unclosed_flow_mapping_points_at_its_opening_line(tmp_path):
    proc = check(tmp_path, """\
input: [3, 32, 32]
layers:
  - conv: {filters: 8, kernel: 5
  - relu
""")
    assert proc.returncode == 1
    assert re.search(rf"^{SPEC}:3:\d+: error: ", proc.stderr, re.M) or "line 3" in proc.stderr, proc.stderr


def test_second_document_message_is_a_sentence(tmp_path):
    proc = check(tmp_path, "input: [3, 8, 8]\nlayers: [relu]\n---\ninput: [1]\n")
    (line,) = assert_error(proc, 3, 1, None, "invalid YAML")
    assert "invalid YAML: but" not in line
    assert "single document" in line or "one document" in line


# -- blocks ---------------------------------------------------------------------------------

BLOCK = """\
input: [3, 8, 8]
blocks:
  unit:
    args: {width: null, stride: 1}
    layers:
      - conv: {filters: $width, kernel: 3, stride: $stride, padding: 1}
      - relu
layers:
"""

BLOCK_ERRORS = [
    pytest.param(BLOCK + "  - unit: {width: 8, strde: 2}\n", 9, 22, "unit1",
                 ["unknown argument 'strde' for block 'unit'", "did you mean 'stride'?"], id="unknown-block-argument"),
    pytest.param(BLOCK + "  - unit: {stride: 2}\n", 9, 5, "unit1",
                 ["block 'unit' needs the argument 'width'"], id="missing-block-argument"),
    pytest.param("""\
input: [3, 8, 8]
blocks:
  unit:
    args: {width: null}
    layers:
      - conv: {filters: $widht, kernel: 3, padding: 1}
      - relu
layers:
  - unit: {width: 8}
""", 6, 25, "unit1.conv1", ["unknown block argument 'widht'", "width"], id="undefined-dollar-name"),
    pytest.param("""\
input: [3, 8, 8]
layers:
  - conv: {filters: $width, kernel: 3, padding: 1}
""", 3, 21, "conv1", ["unknown block argument 'width'", "only inside a block"], id="dollar-name-outside-block"),
    pytest.param("""\
input: [3, 8, 8]
blocks:
  unit:
    layers:
      - conv: {filters: 8, kernel: 3, padding: 1}
      - unit
layers:
  - unit
""", 6, 9, "unit1.unit1", ["block 'unit' uses itself", "unit -> unit"], id="block-uses-itself"),
    pytest.param("""\
input: [3, 8, 8]
blocks:
  a:
    layers:
      - b
  b:
    layers:
      - relu
      - a
layers:
  - a
""", 9, 9, "a1.b1.a1", ["block 'a' uses itself", "a -> b -> a"], id="blocks-use-each-other"),
    pytest.param(BLOCK + "  - unit: {width: 2.5}\n", 6, 25, "unit1.conv1",
                 ["'filters'", "a positive integer", "got 2.5"], id="substituted-value-checked"),
    pytest.param("""\
input: [3, 8, 8]
blocks:
  unit:
    args: {width: null}
    layers:
      - conv: {filters: "${width ** 2}", kernel: 3}
layers:
  - unit: {width: 8}
""", 6, 25, "unit1.conv1", ["is not allowed in an expression"], id="power-not-allowed"),
    pytest.param("""\
input: [3, 8, 8]
blocks:
  unit:
    args: {width: null}
    layers:
      - conv: {filters: "${__import__('os').getpid()}", kernel: 3}
layers:
  - unit: {width: 8}
""", 6, 25, "unit1.conv1", ["is not allowed in an expression"], id="call-not-allowed"),
    pytest.param("""\
input: [3, 8, 8]
blocks:
  unit:
    args: {width: null}
    layers:
      - conv: {filters: "${width // 0}", kernel: 3}
layers:
  - unit: {width: 8}
""", 6, 25, "unit1.conv1", ["division by zero"], id="division-by-zero"),
]


@pytest.mark.parametrize("text, line, col, layer, phrases", BLOCK_ERRORS)
def test_block_errors(batch, request, text, line, col, layer, phrases):
    proc = batch(BLOCK_ERRORS)
    assert_error(proc, line, col, layer, *phrases, path=case_file(request))
    assert proc.stdout == ""


def test_undefined_dollar_name_points_at_the_value(tmp_path):
    proc = check(tmp_path, BLOCK_ERRORS[2].values[0])
    assert_error(proc, 6, 25, "unit1.conv1", "unknown block argument 'widht'")


# -- repeat, when, names: schema-level values -----------------------------------------------

def test_repeat_zero_is_refused(tmp_path):
    proc = check(tmp_path, """\
input: [3, 8, 8]
layers:
  - conv: {filters: 8, kernel: 3, padding: 1}
    repeat: 0
""")
    assert_error(proc, 4, 13, None, "repeat", "got 0")


def test_repeat_zero_through_a_block_argument_is_refused(tmp_path):
    proc = check(tmp_path, """\
input: [3, 8, 8]
blocks:
  unit:
    args: {n: 1}
    layers:
      - conv: {filters: 8, kernel: 3, padding: 1}
        repeat: $n
layers:
  - unit: {n: 0}
""")
    assert_error(proc, 7, 17, None, "'repeat' must be an integer from 1 to 10000", "got 0")


SCHEMA_WORDING = [
    pytest.param("  - relu:\n    repeat: 0\n", 13, ["integer", "got 0"], ["stack this many copies"], id="repeat-0"),
    pytest.param("  - relu:\n    repeat: 10001\n", 13, ["10000"], ["stack this many copies"], id="repeat-10001"),
    pytest.param("  - relu:\n    when: 3\n", 11, ["true or false"], ["must be include"], id="when-not-boolean"),
    pytest.param("  - relu:\n    name: 'a b'\n", 11, ["'a b'"], ["^(?:", "does not match"], id="name-with-space"),
]


@pytest.mark.parametrize("item, col, wanted, unwanted", SCHEMA_WORDING)
def test_item_key_errors_say_what_is_allowed(tmp_path, item, col, wanted, unwanted):
    proc = check(tmp_path, "input: [3, 8, 8]\nlayers:\n" + item)
    (line,) = assert_error(proc, 4, col, None)
    for w in wanted:
        assert w in line, line
    for u in unwanted:
        assert u not in line, line


def test_unknown_argument_of_a_type_without_arguments(tmp_path):
    proc = check(tmp_path, "input: [3, 8, 8]\nlayers:\n  - relu: {inplace: true}\n")
    (line,) = assert_error(proc, 3, 12, "relu1", "unknown argument 'inplace'")
    assert not line.rstrip().endswith("allowed:"), line


def test_shorthand_value_error_points_at_the_value(tmp_path):
    proc = check(tmp_path, "input: [3, 32, 32]\nlayers:\n  - flatten\n  - dropout: 1.5\n")
    assert_error(proc, 4, 14, "dropout1", "'rate'", "got 1.5")


def test_shorthand_value_out_of_range_is_an_error(tmp_path):
    proc = check(tmp_path, "input: [3, 32, 32]\nlayers:\n  - flatten\n  - dropout: 1.5\n")
    assert proc.returncode == 1
    (line,) = error_lines(proc.stderr)
    assert re.match(rf"{SPEC}:4:\d+: error: layer 'dropout1': .*'rate'.*\[0, 1\).*got 1\.5", line), line


def test_float_filters_do_not_leak_floats(tmp_path):
    proc = check(tmp_path, "input: [3, 8, 8]\nlayers:\n  - conv: {filters: 8.0, kernel: 3}\n")
    if proc.returncode == 1:
        assert_error(proc, 3, 21, "conv1", "'filters'", "integer")
    else:
        assert proc.returncode == 0
        assert "224 params" in proc.stdout and "224.0" not in proc.stdout, proc.stdout


# -- safety: tags, aliases, nesting, size ----------------------------------------------------

TAGGED = [
    pytest.param("input: [3, 8, 8]\nname: !!python/object/apply:os.system [\"touch pwned\"]\nlayers:\n  - relu\n",
                 2, 7, id="tag-on-name"),
    pytest.param("input: !!python/object/apply:os.system [\"touch pwned\"]\nlayers:\n  - relu\n",
                 1, 8, id="tag-on-input"),
    pytest.param("!!python/object/apply:os.system [\"touch pwned\"]\n", 1, 1, id="tag-on-document"),
    pytest.param("input: [3, 8, 8]\nlayers:\n  - conv: !!python/object/apply:os.system {filters: 8, kernel: 3}\n",
                 3, 11, id="tag-on-arguments"),
    pytest.param("input: [3, 8, 8]\nname: !!python/name:os.system x\nlayers:\n  - relu\n", 2, 7, id="name-tag"),
    pytest.param("input: [3, 8, 8]\nlayers: !!python/object/new:list\n  - relu\n", 2, 9, id="tag-on-layers"),
]


def test_python_tags_are_never_executed(tmp_path):
    names = []
    for case in TAGGED:
        (tmp_path / f"{case.id}.yaml").write_text(case.values[0])
        names.append(f"{case.id}.yaml")
    proc = run_cli(tmp_path, "check", *names)
    assert not (tmp_path / "pwned").exists()
    assert proc.returncode == 1, proc.stderr  # every tagged file is refused
    for case in TAGGED:  # every file was read and reported, none crashed the run
        assert f"{case.id}.yaml" in proc.stdout + proc.stderr, case.id


@pytest.mark.parametrize("text, line, col", [TAGGED[0], TAGGED[4]])
def test_python_tag_is_refused_as_invalid(tmp_path, text, line, col):
    proc = check(tmp_path, text)
    assert_error(proc, line, col, None)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("text, line, col", [
    TAGGED[0],
    pytest.param("input: !!python/object/apply:os.system [3, 8, 8]\nlayers:\n  - relu\n", 1, 8,
                 id="tag-on-valid-input"),
    pytest.param("input: [3, 8, 8]\nlayers:\n  - conv: !!python/object/apply:dict {filters: 8, kernel: 3}\n",
                 3, 11, id="tag-on-valid-arguments"),
    TAGGED[5],
])
def test_python_tags_on_collections_are_refused(tmp_path, text, line, col):
    proc = check(tmp_path, text)
    assert_error(proc, line, col, None, "tag")


def test_unknown_local_tag_is_refused(tmp_path):
    proc = check(tmp_path, "input: [3, 8, 8]\nlayers:\n  - conv: {filters: !custom 8, kernel: 3}\n")
    assert_error(proc, 3, 21, None, "tag", "!custom")


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    lines = ["input: [3, 8, 8]", "layers:", "  - relu", "a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.slow  # 10**9 nodes if expanded: a second to reach the budget
def test_billion_laughs_fails_fast(tmp_path):
    # 10**9 leaves if expanded; the loader must stop at its node budget, well within the timeout.
    proc = check(tmp_path, billion_laughs(), timeout=20)
    assert proc.returncode == 1, proc.stderr
    (line,) = error_lines(proc.stderr)
    match = re.match(rf"{SPEC}:(\d+):(\d+): error: .*more than [\d,]+ YAML nodes.*alias", line)
    assert match, line
    assert 4 <= int(match.group(1)) <= 12  # somewhere in the alias lines


@pytest.mark.slow  # 200,001 YAML nodes are read before the budget stops them: seconds
def test_too_many_nodes_without_aliases_does_not_blame_aliases(tmp_path):
    text = "input: [3, 8, 8]\nlayers: [relu]\nnotes: [" + ",".join(["0"] * 200_001) + "]\n"
    proc = check(tmp_path, text, timeout=20)
    assert proc.returncode == 1, proc.stderr
    assert error_lines(proc.stderr) == [f"{SPEC}:3:399987: error: the spec has more than 200,000 YAML nodes; "
                                        "write long stacks with 'repeat' or 'stages' rather than an item per layer"]


def test_aliases_within_budget_are_fine(tmp_path):
    proc = check(tmp_path, """\
input: [3, 8, 8]
blocks: {}
defaults:
  conv: &c {kernel: 3, padding: 1}
layers:
  - conv: {filters: 4}
  - maxpool: *c
""")
    assert proc.returncode == 0, proc.stderr


def nested(depth: int) -> str:
    return "input: [3, 8, 8]\nlayers:\n  - relu\ndescription: " + "[" * depth + "1" + "]" * depth + "\n"


def test_nesting_deeper_than_the_limit_is_refused(tmp_path):
    proc = check(tmp_path, nested(70))
    # The top mapping is level 0 and the value of `description` level 1, at column 14;
    # the first bracket past level 64 is the 65th, at column 14 + 64.
    assert_error(proc, 4, 78, None, "nests deeper than 64 levels")


def test_nesting_at_the_limit_is_not_refused_for_depth(tmp_path):
    proc = check(tmp_path, nested(63))
    assert proc.returncode == 1  # a list is not a string: a schema error, not a depth error
    assert "nests deeper" not in proc.stderr
    assert_error(proc, 4, 14, None, "'description'")


@pytest.mark.parametrize("depth", [1_500, 400_000])
def test_pathological_nesting_fails_cleanly(tmp_path, depth):
    """Whichever layer refuses it first (libyaml stops flow nesting at 1000 levels since PyYAML
    6.0.4; the pure-Python parser leaves it to convspec's own check), the user gets exit 1 and one
    located error about the nesting, on line 4 where the brackets are."""
    proc = check(tmp_path, nested(depth), timeout=60)
    assert proc.returncode == 1, f"exit {proc.returncode}"
    (line,) = error_lines(proc.stderr)
    assert re.match(r"spec\.yaml:4:\d+: error: the spec nests deeper than 64 levels", line), line


def test_pathological_nesting_fails_cleanly_with_the_pure_python_parser(monkeypatch):
    """The same refusal without libyaml, for an install whose PyYAML has no C extension."""
    import yaml

    from compiler import source

    monkeypatch.setattr(source, "_Loader", source.loader_class(yaml.SafeLoader))
    with pytest.raises(SpecError) as caught:
        source.load(nested(5_000), "spec.yaml")
    assert re.match(r"spec\.yaml:4:\d+: error: the spec nests deeper than 64 levels", caught.value.render())


def test_oversized_file_is_refused(tmp_path):
    text = "input: [3, 8, 8]\nlayers: [relu]\n" + "# padding\n" * 210_000
    proc = check(tmp_path, text)
    assert proc.returncode in (1, 2)
    assert "limit" in proc.stderr or "larger than" in proc.stderr


@pytest.mark.slow  # expands to the 200,000-item limit before it stops: seconds
def test_repeat_bomb_is_bounded(tmp_path):
    proc = check(tmp_path, """\
input: [3, 8, 8]
blocks:
  a:
    layers:
      - relu:
        repeat: 10000
  b:
    layers:
      - a:
        repeat: 10000
layers:
  - b:
    repeat: 10000
""", timeout=20)
    assert proc.returncode == 1
    (line,) = error_lines(proc.stderr)
    assert re.match(rf"{SPEC}:5:9: error: layer '[^']+': the spec expands to more than [\d,]+ layers", line), line


# -- the shape of every message --------------------------------------------------------------

def test_several_specs_report_each_error_with_its_own_path(tmp_path):
    (tmp_path / "a.yaml").write_text("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 8}\n")
    (tmp_path / "b.yaml").write_text("input: [3, 8, 8]\nlayers:\n  - relu\n  - relu:\n    inputs: rel\n")
    proc = run_cli(tmp_path, "check", "a.yaml", "b.yaml")
    assert_error(proc, 3, 5, None, "unknown layer type 'conv2d'", path="a.yaml")
    assert_error(proc, 5, 13, None, "undefined name 'rel'", path="b.yaml")


def test_paths_in_subdirectories_are_shown_relative(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.yaml").write_text("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 0, kernel: 3}\n")
    proc = run_cli(tmp_path, "check", "sub/s.yaml")
    assert_error(proc, 3, 21, "conv1", "'filters'", path="sub/s.yaml")


# -- regressions: inputs that once crashed or hung (a review's findings) ---------------------

ADVERSARIAL = [
    pytest.param('input: [3, 8, 8]\nlayers:\n  - stages: {block: relu, name: "layer{x}", table: [{repeat: 2}]}\n',
                 3, 33, "must be a name", id="stage-name-bad-placeholder"),
    pytest.param('input: [3, 8, 8]\nlayers:\n  - stages: {block: relu, name: "layer{", table: [{repeat: 2}]}\n',
                 3, 33, "must be a name", id="stage-name-open-brace"),
    pytest.param("input: [16]\nlayers:\n  - dense: 10\n    repeat: 2\n    rest: {units: 5}\n",
                 5, 11, "write dense's arguments as a mapping", id="rest-with-shorthand"),
    pytest.param("input: [16]\nlayers:\n  - dense: 10\n    rest: {units: 5}\n",
                 4, 11, "this item has no 'repeat'", id="rest-without-repeat"),
    pytest.param("input: [3, 8, 8]\nblocks:\n  b:\n    args: {k: 1}\n    layers:\n"
                 "      - conv: {filters: \"${-'a'}\", kernel: $k}\nlayers: [b]\n",
                 6, 25, "a sign needs a number", id="unary-minus-on-string"),
    pytest.param("input: [3, 8, 8]\nblocks:\n  b:\n    args: {k: 1}\n    layers:\n"
                 "      - relu:\n        when: \"${k < 'x'}\"\nlayers: [b]\n",
                 7, 15, "cannot compare 1 with 'x'", id="compare-number-with-string"),
    pytest.param("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 3, kernel: \"${'aaaaaaaaaa' * 100000000}\"}\n",
                 3, 32, "arithmetic needs numbers", id="string-repeat-bomb"),
    pytest.param("input: [3, 8, 8]\nblocks:\n  relu: {layers: [{conv: {filters: 2, kernel: 1}}]}\nlayers: [relu]\n",
                 3, 3, "a block cannot be called 'relu'", id="block-shadows-a-layer-type"),
    pytest.param("input: [3, 8]\nlayers: [relu]\n", 1, 8, "[C, H, W] or [features]", id="input-of-rank-2"),
    pytest.param("input: [3, 8, 8]\nlayers: [relu]\nblocks: {b: 5}\n", 3, 13, "a mapping from block name",
                 id="block-not-a-mapping"),
    pytest.param("input: [3, 8, 8]\nlayers:\n  - relu:\n    name: \"a{i}\"\n", 4, 11, "this item has no 'repeat'",
                 id="pattern-name-without-repeat"),
    pytest.param("input: [3, 8, 8]\nlayers: [relu]\noutputs: [input]\n", 3, 10, "output is its own input",
                 id="output-is-the-input"),
]


@pytest.mark.parametrize("text, line, col, phrase", ADVERSARIAL)
def test_adversarial_specs_fail_cleanly_and_fast(batch, request, text, line, col, phrase):
    proc = batch(ADVERSARIAL)
    path = case_file(request)
    mine = [ln for ln in error_lines(proc.stderr) if ln.startswith(f"{path}:")]
    assert mine, proc.stderr
    assert phrase in mine[0], mine[0]
    if line is not None:
        assert mine[0].startswith(f"{path}:{line}:{col}: error: "), mine[0]


@pytest.mark.slow  # 200,000 skipped block instances are expanded before the limit stops it: seconds
def test_skipped_items_count_towards_the_item_limit(tmp_path):
    proc = check(tmp_path, "input: [3, 8, 8]\nblocks:\n  a: {layers: [{relu: null, when: false}]}\n"
                           "  b: {layers: [{a: null, repeat: 10000}]}\n  c: {layers: [{b: null, repeat: 10000}]}\n"
                           "layers: [c, relu]\n", timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "more than 200,000 items" in error_lines(proc.stderr)[0], proc.stderr


def test_block_may_pass_its_input_through(tmp_path):
    proc = check(tmp_path, "input: [3, 8, 8]\nblocks:\n  b: {layers: [relu], output: input}\nlayers: [b, relu]\n")
    assert proc.returncode == 0, proc.stderr
