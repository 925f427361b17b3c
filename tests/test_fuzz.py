"""Property-based fuzzing of the front end and the compiler (hypothesis).

The property, for any input: convspec either succeeds, or raises a `ConvspecError` whose every
rendered line reads `path:line:col: error: ...` (exit code 1: a spec's contents are never a
usage error). Never another exception, never a hang, never a runaway allocation; and what it
accepts is sane (positive sizes, finite arguments, non-negative counts; the compiled model
passes the ONNX checker and runs to the shapes convspec inferred).

Inputs come from four sources:
  1. bundled specs mutated at the byte level (truncated, spliced, bytes flipped, numbers and
     words replaced, tabs and invalid UTF-8 inserted), read through a file as the CLI does;
  2. bundled specs mutated as YAML data (a value replaced by a hostile one, a key deleted or
     renamed, a list item duplicated), dumped back and analysed as text;
  3. specs generated from scratch from the layer registry (mostly valid arguments), some of
     which are also compiled to ONNX and run on onnxruntime;
  4. a few byte-mutated files through the CLI's own entry (`cli.main`), one run per example.

Defaults are deterministic (`derandomize=True`, no example database) and run in seconds.
For a deeper local hunt:
    FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz.py -x -p no:cacheprovider
FUZZ_EXAMPLES sets max_examples of the analysis tests (the compile and CLI tests take a
fraction of it); FUZZ_RANDOM=1 draws new examples on each run instead of the fixed ones;
FUZZ_SPECS=all mutates every bundled spec, not only the small and medium ones; FUZZ_IGNORE=REGEX
lets failures whose text matches REGEX pass, to hunt past a known bug until it is fixed.
"""

from __future__ import annotations

import copy
import math
import os
import re
import tempfile
import time
from dataclasses import MISSING, fields
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
yaml = pytest.importorskip("yaml")

from hypothesis import HealthCheck, Phase, example, given, settings  # noqa: E402
from hypothesis.control import currently_in_test_context  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from clirun import TimedOut, hard_limit, run_cli  # noqa: E402
from compiler.errors import ConvspecError, UsageError  # noqa: E402
from compiler.pipeline import analyse, analyse_text  # noqa: E402
from compiler.registry import REGISTRY  # noqa: E402
from compiler.report import FORMATS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# -- settings -----------------------------------------------------------------------------------
_DEEP = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
_RANDOM = os.environ.get("FUZZ_RANDOM", "") not in ("", "0")
_IGNORE = os.environ.get("FUZZ_IGNORE", "")  # a regex: failures it matches pass (to hunt past known bugs)

BUDGET_S = 5.0  # wall clock per example, asserted
HARD_S = 10.0  # an example still running after this is stopped and reported as a hang
DEADLINE_MS = 5000


def examples(default: int, share: float = 1.0, least: int = 1) -> int:
    """max_examples: `default`, or `share` of FUZZ_EXAMPLES for a deeper run."""
    return max(least, int(_DEEP * share)) if _DEEP else default


def fuzz_settings(default: int, share: float = 1.0, least: int = 1, deadline: int = DEADLINE_MS):
    """The default run reports a failure as found, unshrunk (shrinking takes from 30 s to minutes, and
    REPRODUCERS holds the minimal inputs); a FUZZ_EXAMPLES run shrinks what it finds."""
    phases = list(Phase) if _DEEP else [p for p in Phase if p not in (Phase.shrink, Phase.explain)]
    return settings(
        max_examples=examples(default, share, least),
        deadline=deadline,
        phases=phases,
        derandomize=not _RANDOM,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


DEFAULT_SPECS = ["lenet5", "mlp", "perceptron", "alexnet_paper", "nin", "resnet18", "cs231n_conv_example",
                 "deck002_cnn", "mobilenet_v1", "resnet56_cifar", "googlenet", "resnet34", "inception_cost",
                 "deck001_keras_cnn", "shared_weights_example"]  # resnet34 extends resnet18
if os.environ.get("FUZZ_SPECS") == "all":
    SPEC_NAMES = sorted(p.stem for p in SPECS.glob("*.yaml"))
else:
    SPEC_NAMES = [n for n in DEFAULT_SPECS if (SPECS / f"{n}.yaml").exists()]


@lru_cache(maxsize=None)
def spec_bytes(name: str) -> bytes:
    return (SPECS / f"{name}.yaml").read_bytes()


@lru_cache(maxsize=None)
def spec_data(name: str):
    return yaml.safe_load(spec_bytes(name).decode("utf-8"))


# -- guards: time and memory ----------------------------------------------------------------------
class Runaway(BaseException):
    """A hang or a runaway allocation. A BaseException, so that neither convspec's own handlers
    nor hypothesis' shrinker (which would re-run the hang many times) catch it: the test stops
    at once, with the input that caused it in the message."""


@pytest.fixture(scope="module", autouse=True)
def memory_cap():
    """Cap the heap at its current size + 1 GiB while these tests run, so that a spec which makes
    convspec allocate without bound fails with MemoryError instead of exhausting the machine."""
    try:
        import resource

        status = Path("/proc/self/status").read_text()
        data_kb = int(re.search(r"^VmData:\s+(\d+) kB", status, re.M).group(1))
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        cap = data_kb * 1024 + (1 << 30)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    except (ImportError, OSError, AttributeError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def event(name: str) -> None:
    """Count outcomes in `--hypothesis-show-statistics` (outside a hypothesis test: nothing)."""
    if currently_in_test_context():
        hypothesis.event(name)


def shown(value, limit: int = 4000) -> str:
    """An input for a failure message: text as it reads, other control characters escaped."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c == "\n" or c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text)} characters in all)"


def guarded(fn, *args, what, hard: float = HARD_S, budget: float = BUDGET_S, **kwargs):
    """fn(*args), or the ConvspecError it raised; time-checked; anything else fails the example."""
    start = time.monotonic()
    try:
        with hard_limit(hard):
            try:
                result = fn(*args, **kwargs)
            except ConvspecError as e:
                result = e
    except TimedOut as e:
        raise Runaway(f"hang: {e} on this input:\n{shown(what)}") from None
    except MemoryError:
        raise Runaway(f"runaway allocation (MemoryError past a 1 GiB cap) on this input:\n{shown(what)}") from None
    elapsed = time.monotonic() - start
    assert elapsed < budget, f"took {elapsed:.1f} s (the budget is {budget:g} s) on:\n{shown(what)}"
    return result


# -- the property -------------------------------------------------------------------------------
LINE = re.compile(r"^(?P<path>\S(?:.*?)):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning|note): "
                  r"(?P<message>\S.*)$")


def check_error(err: ConvspecError, what) -> None:
    """Every line of the rendered error is `path:line:col: error: message`, or a note about the one before
    (the block instance it is in); exit code 1."""
    text = err.render()
    assert text, f"{type(err).__name__} renders as nothing on:\n{shown(what)}"
    assert str(err) == text
    assert not isinstance(err, UsageError) and err.exit_code == 1, \
        f"a spec's contents gave {type(err).__name__} (exit {err.exit_code}), not an invalid-spec error:\n" \
        f"{text}\n--- on:\n{shown(what)}"
    for k, line in enumerate(text.split("\n"), 1):
        m = LINE.match(line)
        assert m and (m["severity"] == "error" or k > 1 and m["severity"] == "note"), \
            f"line {k} of the message is not `path:line:col: error: message` (or a note after one): {line!r}\n" \
            f"--- whole message:\n{text}\n" \
            f"--- on:\n{shown(what)}"
        assert int(m["line"]) >= 1 and int(m["col"]) >= 1, line
        if m["path"].endswith("spec.yaml") and isinstance(what, (str, bytes)):  # the input's own lines
            assert int(m["line"]) <= _line_breaks(what) + 2, f"line {m['line']} is past the end of:\n{shown(what)}"


def _line_breaks(text) -> int:
    """An upper bound of the line breaks YAML sees (\n, \r, NEL, LS, PS)."""
    if isinstance(text, bytes):
        return sum(text.count(b) for b in (b"\n", b"\r", b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9"))
    return sum(text.count(c) for c in "\n\r\x85\u2028\u2029")


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (tuple, list)):
        return all(_finite(v) for v in value)
    return True


def check_analysis(a, what) -> None:
    """What convspec accepts must be sane, and every report of it must render."""
    def size_ok(shape):
        return (isinstance(shape, tuple) and len(shape) in (1, 3)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape))

    assert size_ok(a.graph.input_shape), f"input shape {a.graph.input_shape} accepted on:\n{shown(what)}"
    for f in a.layers:
        layer = f.node.layer
        assert size_ok(f.output_shape), \
            f"layer '{f.node.name}' ({f.node.type}) accepted with output shape {f.output_shape} on:\n{shown(what)}"
        for fld in fields(layer):
            value = getattr(layer, fld.name)
            assert _finite(value), \
                f"layer '{f.node.name}' accepted {fld.name}={value!r}, which is not finite, on:\n{shown(what)}"
        for count in (f.trainable, f.non_trainable, f.macs, f.flops):
            assert isinstance(count, int) and count >= 0, f"layer '{f.node.name}': count {count!r} on:\n{shown(what)}"
        rf = f.receptive_field
        if rf is not None:
            # positive; exact fractions below 1 once an upsample or a transposed conv has divided the jump
            assert all(isinstance(s, (int, Fraction)) and s > 0 for s in rf.size + rf.jump), (f.node.name, rf)
            assert all(math.isfinite(s) for s in rf.start), (f.node.name, rf)
    preprocess = a.graph.attachments.preprocess or {}
    assert all(_finite(v) for v in preprocess.values()), f"preprocess {preprocess} accepted on:\n{shown(what)}"
    if len(a.graph.input_shape) == 3:  # `convspec run` normalises [C, H, W] by channel: one value or C
        for key in ("mean", "std"):
            assert len(preprocess.get(key, [0])) in (1, a.graph.input_shape[0]), \
                f"preprocess.{key} {preprocess[key]} accepted for {a.graph.input_shape[0]} channels on:\n{shown(what)}"
    for w in a.warnings:
        m = LINE.match(w.line())
        assert m and m["severity"] == "warning", f"warning not positioned: {w.render()!r} on:\n{shown(what)}"
    for fmt, render in FORMATS.items():
        assert isinstance(render(a), str), fmt
    assert a.activation_bytes > 0 and a.weight_bytes >= 0


def holds(fn, *args, what, hard: float = HARD_S, budget: float = BUDGET_S):
    """The property for one input: success (sane) or a clean positioned error. Returns the result."""
    try:
        result = guarded(fn, *args, what=what, hard=hard, budget=budget)
        if isinstance(result, ConvspecError):
            event(f"refused: {type(result).__name__}")
            check_error(result, what)
        else:
            event("accepted")
            check_analysis(result, what)
            if result.warnings:  # --strict turns each warning into a positioned error
                strict = guarded(fn, *args, what=what, hard=hard, budget=budget, strict=True)
                assert isinstance(strict, ConvspecError), f"warnings, yet --strict accepts:\n{shown(what)}"
                check_error(strict, what)
        return result
    except BaseException as e:
        if ignored(e):
            return ConvspecError("ignored (FUZZ_IGNORE)")
        raise


def ignored(e: BaseException) -> bool:
    return bool(_IGNORE) and not isinstance(e, KeyboardInterrupt) and bool(re.search(_IGNORE, f"{type(e).__name__}: {e}"))


# -- 1. byte-level mutations of bundled specs --------------------------------------------------------
TOKENS = [b":", b": ", b"- ", b"-", b"{", b"}", b"[", b"]", b",", b"&a ", b"*a", b"!!python/object:os.system ",
          b"!!binary ", b"!!set ", b"!!str ", b"!!int ", b"!!float ", b"!foo ", b"\t", b"\n", b"  ", b"'", b'"',
          b"#", b"|", b">", b"$x", b"${", b"}", b"${1/0}", b"<<: ", b"---\n", b"...\n", b"%YAML 1.1\n", b"? ",
          b"\x00", b"\xef\xbb\xbf", b"\r", b"\r\n", b"\xc3", b"\xff", b"\xfe", b"\xed\xa0\x80", b"\xe2\x80\xa8",
          b"\xc2\x85", b"\\", b"%", b"@", b"`", b"~", b"null", b"true", b"{i}", b"{n}", b".", b"input", b"layers",
          b"name: ", b"inputs: ", b"repeat: ", b"when: ", b"rest: ", b"expect: ", b"frozen: ", b"extends: "]
NUMBERS = [b"0", b"-1", b"-0", b"1", b"2", b"1e400", b"-1e400", b"1000000000000000000000000000000",
           b"9223372036854775807", b"9223372036854775808", b"2147483648", b"1000000000", b"65536",
           b"0x10", b"0o7", b"1_000", b"3.5", b"0.0", b"1e-300", b".nan", b".inf", b"-.inf", b"~", b"null", b"''",
           b"abc", b"[1, 2]", b"[1, 2, 3, 4]", b"[0, 0]", b"{a: 1}", b"true", b"1e3", b"007", b"+5", b"$x",
           b"${1/0}", b"${x}", b"'${1e308 * 10}'", b"{}", b"[]"]
WORDS = sorted({*REGISTRY, "sequential", "stages", "input", "layers", "name", "inputs", "expect", "when", "repeat",
                "rest", "frozen", "blocks", "args", "defaults", "outputs", "extends", "replace", "append", "table",
                "block", "output", "labels", "preprocess", "same", "valid", "true", "false", "null", "$planes",
                "layer1", "conv1", "x", ""})

_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:e-?\d+)?")
_WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")


@st.composite
def byte_mutation(draw, data: bytes) -> bytes:
    n = len(data)
    pos = st.integers(0, n)
    kind = draw(st.sampled_from(["truncate", "delete", "insert", "token", "duplicate", "flip", "byte", "number",
                                 "word", "tab", "indent", "swap_lines", "dup_line"]))
    if kind == "truncate":
        return data[:draw(pos)]
    if kind == "delete":
        i = draw(pos)
        return data[:i] + data[i + draw(st.integers(1, 40)):]
    if kind == "insert":
        i = draw(pos)
        return data[:i] + draw(st.binary(min_size=1, max_size=12)) + data[i:]
    if kind == "token":
        i = draw(pos)
        return data[:i] + draw(st.sampled_from(TOKENS)) + data[i:]
    if kind == "duplicate":
        i, j, k = draw(pos), draw(pos), draw(pos)
        i, j = min(i, j), max(i, j)
        return data[:k] + data[i:j][:4000] + data[k:]
    if kind in ("flip", "byte") and n:
        i = draw(st.integers(0, n - 1))
        b = data[i] ^ (1 << draw(st.integers(0, 7))) if kind == "flip" else draw(st.integers(0, 255))
        return data[:i] + bytes([b]) + data[i + 1:]
    if kind in ("number", "word"):
        matches = list((_NUMBER if kind == "number" else _WORD).finditer(data))
        if not matches:
            return data
        m = draw(st.sampled_from(matches))
        new = draw(st.sampled_from(NUMBERS)) if kind == "number" else draw(st.sampled_from(WORDS)).encode()
        return data[:m.start()] + new + data[m.end():]
    lines = data.split(b"\n")
    k = draw(st.integers(0, len(lines) - 1))
    if kind == "tab":
        lines[k] = b"\t" + lines[k].lstrip(b" ") if draw(st.booleans()) else lines[k].replace(b"  ", b"\t", 1)
    elif kind == "indent":
        lines[k] = b"  " + lines[k] if draw(st.booleans()) else lines[k][2:]
    elif kind == "swap_lines":
        j = draw(st.integers(0, len(lines) - 1))
        lines[k], lines[j] = lines[j], lines[k]
    elif kind == "dup_line":
        lines.insert(k, lines[k])
    return b"\n".join(lines)


@st.composite
def mutated_spec_bytes(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(SPEC_NAMES))
    data = spec_bytes(name)
    for _ in range(draw(st.integers(1, 4))):
        data = draw(byte_mutation(data))
    return name, data


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def analyse_bytes(folder: Path, data: bytes):
    """Through a file, as `convspec check` reads it (any bytes, not only UTF-8)."""
    path = folder / "spec.yaml"
    path.write_bytes(data)
    return holds(analyse, str(path), what=data)


@pytest.mark.slow
@fuzz_settings(400)
@given(spec=mutated_spec_bytes())
def test_byte_mutated_specs(folder, spec):
    analyse_bytes(folder, spec[1])


@pytest.mark.parametrize("data", [b"", b"\n", b" ", b"\xff", b"\xfe\xff", b"\xef\xbb\xbf", b"\x00", b"\t",
                                  b"---\n---\n", b"input: [3]\n\xff\n", b"input: [3, \xc3(]\n",
                                  b"\xef\xbb\xbfinput: [3]\nlayers: [relu]\n", b"input: [3]\r\nlayers: [relu]\r\n",
                                  b"input: [3]\nlayers: [relu]\n\x00", b"\xed\xa0\x80: 1\n", b"%YAML 1.1\n",
                                  b"input: [3]\nlayers:\n\t- relu\n",
                                  # a billion laughs: aliases that expand to 10**9 nodes
                                  b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                                  + b"".join(b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n"
                                             % ((k,) * 2 + (k - 1,) * 10) for k in range(ord("b"), ord("j")))
                                  + b"input: [3]\nlayers: [relu]\n",
                                  b"input: [3]\nlayers: " + b"[" * 10000 + b"]" * 10000 + b"\n",  # deep nesting
                                  b"input: [3]\nlayers:\n" + b"  - relu\n" * 300000,  # past the size limit
                                  b"input: [3]\nname: '" + b"x" * 100000 + b"'\nlayers: [relu]\n"],
                         ids=lambda d: d[:40].decode("latin-1").encode("unicode_escape").decode() or "empty")
def test_fixed_odd_bytes(folder, data):
    analyse_bytes(folder, data)


# -- reproducers of what the fuzzers found ----------------------------------------------------------
# Each is the property above on one input, minimised by hand. They fail until the bug is fixed,
# then guard against its return. (The fuzz tests below may find the same bugs on their own.)
S63 = 2**63 - 1
REPRODUCERS = [
    # a control character: the message had a second, unpositioned line, and pointed at 1:1, not 3:9
    pytest.param("input: [3]\nlayers:\n  - relu\x00\n", "analyse", id="control-character"),
    # an explicit scalar tag with a value its constructor cannot take: IndexError, KeyError
    pytest.param("input: [!!int '']\nlayers: [relu]\n", "analyse", id="tag-int-empty"),
    pytest.param("input: [!!int -]\nlayers: [relu]\n", "analyse", id="tag-int-sign"),
    pytest.param("input: [!!float '']\nlayers: [relu]\n", "analyse", id="tag-float-empty"),
    pytest.param("input: [!!bool x]\nlayers: [relu]\n", "analyse", id="tag-bool-word"),
    # a key with a line break is echoed raw: the diagnostic spans two lines
    pytest.param('"a\\nb": 1\ninput: [3]\nlayers: [relu]\n', "analyse", id="newline-in-key"),
    pytest.param('input: [3]\nlayers:\n  - "re\\nlu"\n', "analyse", id="newline-in-layer-type"),
    pytest.param('input: [3]\nlayers: [relu]\noutputs: "a\\nb"\n', "analyse", id="newline-in-outputs"),
    # adaptive pooling to a huge size: the FLOPs count builds 10**9 bins before any size check
    pytest.param("input: [1, 8, 8]\nlayers:\n  - adaptive_avgpool: 1000000000\n", "analyse",
                 id="adaptive-pool-huge-output"),
    # strides multiply into the receptive field's jump, an int too large for a float: OverflowError
    pytest.param(f"input: [1, 1, 1]\nlayers:\n  - maxpool: {{kernel: 1, stride: {S63}}}\n    repeat: 20\n",
                 "analyse", id="receptive-field-jump-overflow"),
    # work that no limit bounds: 10,000 skipped items named r{i}, each listing its 10,000 copy names
    # for "did you mean" (25 s; 100 such items take 40 min) ...
    pytest.param("input: [3]\nblocks:\n  s:\n    layers:\n      - relu:\n        name: 'r{i}'\n        repeat: 10000\n"
                 "        when: false\nlayers:\n  - s:\n    repeat: 10000\n", "analyse", id="skipped-repeat-names-slow"),
    # ... and a top-level `frozen:` list, each entry matched against every layer: 10,000 x 10,000 (19 s)
    pytest.param("input: [3]\nlayers:\n  - relu:\n    name: r\n    repeat: 10000\nfrozen: [" + ", ".join(["r"] * 10000)
                 + "]\n", "analyse", id="frozen-quadratic", marks=pytest.mark.slow),  # 10,000 layers: seconds
    # accepted, but `convspec run x.png` then fails with an internal error (exit 3): numpy cannot broadcast
    pytest.param("input: [3, 4, 4]\npreprocess: {mean: [0.5, 0.5]}\nlayers: [relu]\n", "analyse",
                 id="preprocess-mean-length"),
    # accepted and compiled, but onnxruntime refuses to run it
    pytest.param("input: [4]\nlayers:\n  - lrn\n", "compile", id="lrn-on-flat-input"),
    pytest.param("input: [3, 4, 4]\nlayers:\n  - lrn: {alpha: 0.0}\n", "compile", id="lrn-alpha-zero"),
    pytest.param("input: [3, 4, 4]\nlayers:\n  - lrn: {beta: -0.5}\n", "compile", id="lrn-beta-negative"),
    # ... or runs to NaN: (k + alpha/size * sum x^2) ** -beta with k < 0
    pytest.param("input: [1, 1, 1]\nlayers:\n  - lrn: {k: -1.0}\n", "compile", id="lrn-k-negative"),
]


@pytest.mark.parametrize("text, stage", REPRODUCERS)
def test_reproducer(text, stage):
    # each is a small input: 2 s is plenty once fixed, and a hang costs 2.5 s here, not 10
    a = holds(analyse_text, text, "spec.yaml", what=text, hard=2.5, budget=2.0)
    if stage == "compile" and not isinstance(a, ConvspecError):
        compile_and_run(a, text)


# -- 2. structure-level mutations --------------------------------------------------------------------
_NAN, _INF = float("nan"), float("inf")
HOSTILE = [10**30, -10**30, 2**63, 2**63 - 1, 2**31, 10**9, 65536, -1, 0, 1, 2, 7, 1.5, 0.0, -0.5, 1e-300, 1e300,
           _NAN, _INF, -_INF, "", " ", "same", "valid", "relu", "conv", "input", "x", "a.b", "{i}", "a{n}", "1abc",
           "$x", "$", "${}", "${1/0}", "${x**x}", "${a}", "${1e308*10}", "${1e400}", "${-1}", "${0}", "${'a' * 3}",
           "${__import__('os')}", "${(lambda: 1)()}", "${[1] * 10}", "${" + "(" * 150 + "1" + ")" * 150 + "}",
           "${" + "-" * 190 + "1}", "${not not not 0}", "${99999999 * 99999999 * 99999999}", "${1 < 2 < 3}",
           "${1 if 0 else 2}", "${1 // 0.0}", "${1e300 / 1e-300}", "${'a' < 1}", "${" + "1+" * 100 + "1}",
           "../x.yaml", "resnet18", "lenet5", "specs/lenet5.yaml", "spec.yaml", "/dev/null", "nothere",
           None, True, False, [], {}, [1, 2], [1, 2, 3], [1, 2, 3, 4], [0, 0], [3, 0, 4], [-1, 2],
           [1.5, 2], [None], [[1]], {"a": 1}, {"conv": None}, {"relu": None}, {"dense": 3}, {"1": 2},
           {"repeat": 3}, {"name": "x"}, ["relu"], ["relu", "relu"], [{"conv": {"filters": 2, "kernel": 1}}]]

scalar_values = st.one_of(
    st.sampled_from(HOSTILE),
    st.integers(-3, 100),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(WORDS),
)
hostile_values = st.recursive(
    scalar_values,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=6),
                                                                inner, max_size=3),
    max_leaves=8,
)


def paths_of(doc, prefix=()):
    """Every position in a YAML document: () for the whole, then keys and indices."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths_of(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths_of(v, prefix + (i,))


def at(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def fresh(value):
    """A drawn value as a copy: HOSTILE's lists and dicts must never be mutated (nor shared)."""
    return copy.deepcopy(value)


@st.composite
def mutated_spec_data(draw):
    name = draw(st.sampled_from(SPEC_NAMES))
    doc = copy.deepcopy(spec_data(name))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(paths_of(doc))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "replace", "tweak", "tweak", "delete", "duplicate",
                                   "rename", "wrap", "insert"]))
        if not path:  # the whole document
            doc = fresh(draw(hostile_values)) if op == "replace" else doc
            continue
        parent, key = at(doc, path[:-1]), path[-1]
        if op == "tweak" and isinstance(parent[key], int) and not isinstance(parent[key], bool):
            v = parent[key]  # a number that still passes the schema more often than not
            parent[key] = draw(st.sampled_from([0, 1, 2, 3, v - 1, v + 1, 2 * v, v // 2, 1000 * v, 2**31, 2**40,
                                                2**62, 2**63 - 1]))
        elif op in ("replace", "tweak"):
            parent[key] = fresh(draw(hostile_values))
        elif op == "delete":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif op == "rename" and isinstance(parent, dict):
            new = draw(st.sampled_from(WORDS))
            parent[new] = parent.pop(key)
        elif op == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {draw(st.sampled_from(WORDS)): parent[key]}
        elif op == "insert" and isinstance(parent, list):
            parent.insert(key, fresh(draw(hostile_values)))
        elif op == "insert" and isinstance(parent, dict):
            parent[draw(st.sampled_from(WORDS))] = fresh(draw(hostile_values))
    return name, doc


def dump(doc) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)


@pytest.mark.slow
@fuzz_settings(400)
@given(spec=mutated_spec_data())
def test_structure_mutated_specs(spec):
    text = dump(spec[1])
    holds(analyse_text, text, "spec.yaml", what=text)


# -- 3. specs generated from the registry --------------------------------------------------------------
# Upper ends of "valid-ish" integer arguments, by argument name; sizes stay small so most specs fit.
SPAN = {"filters": 12, "units": 24, "channels": 12, "multiplier": 3, "groups": 4, "kernel": 5, "stride": 3,
        "dilation": 2, "size": 5, "output_size": 4, "axis": 3, "mid": 8, "padding": 2}
TYPES = sorted(REGISTRY)


def from_schema(schema: dict, name: str):
    """A strategy for values a registry argument's JSON Schema accepts (small ones)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema(s, name) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "integer":
        low = schema.get("minimum", 0)
        small = st.integers(low, low + SPAN.get(name, 4))
        return st.one_of(small, small, small, small, small, small, small, small, small, st.integers(low, 2**40))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -4.0))
        high = schema.get("maximum", schema.get("exclusiveMaximum", 4.0))
        return st.floats(low, high, exclude_min="exclusiveMinimum" in schema,
                         exclude_max="exclusiveMaximum" in schema, allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(schema["items"], name), min_size=schema.get("minItems", 0),
                        max_size=schema.get("maxItems", 4))
    if kind == "null":
        return st.none()
    raise AssertionError(f"no strategy for the schema of '{name}': {schema}")


def argument_value(fld, hostile_pct: int):
    valid = from_schema(fld.metadata["kind"].schema, fld.name)

    @st.composite
    def value(draw):
        if hostile_pct and draw(st.integers(0, 99)) < hostile_pct:
            return draw(scalar_values)
        return draw(valid)

    return value()


@st.composite
def layer_args(draw, cls, hostile_pct: int) -> dict:
    args = {}
    for fld in cls.arguments():
        required = fld.default is MISSING
        if required or draw(st.integers(0, 2)) == 0:
            if required and hostile_pct and draw(st.integers(0, 99)) < hostile_pct:
                continue  # a missing required argument
            args[fld.name] = draw(argument_value(fld, hostile_pct))
    if hostile_pct and draw(st.integers(0, 99)) < hostile_pct:
        args[draw(st.sampled_from(WORDS))] = draw(scalar_values)  # an unknown (or duplicate) argument
    return args


@st.composite
def generated_spec(draw, hostile_pct: int = 5, max_layers: int = 6) -> dict:
    """A small spec built from the registry: mostly valid arguments, sometimes a hostile one."""
    if draw(st.integers(0, 3)) == 0:
        shape = [draw(st.integers(1, 64))]
    else:
        shape = [draw(st.integers(1, 8)), draw(st.integers(1, 32)), draw(st.integers(1, 32))]
    spec: dict = {"input": shape}
    items, names, values = [], ["input"], ["input"]  # values: what `inputs:` can name (a split's `l3.0`)
    split = []  # the values of the item before, where it has several (split, chunk): the next takes one
    for i in range(draw(st.integers(1, max_layers))):
        type_name = draw(st.sampled_from(TYPES))
        cls = REGISTRY[type_name]
        args = draw(layer_args(cls, hostile_pct))
        style = draw(st.integers(0, 3))
        if not args and style == 0 and not split:
            item = type_name  # a bare type name
        elif cls.shorthand and list(args) == [cls.shorthand] and style <= 1:
            item = {type_name: args[cls.shorthand]}
        else:
            item = {type_name: args or None}
        if isinstance(item, dict):
            item["name"] = f"l{i}"
            if cls.variadic:
                item["inputs"] = draw(st.lists(st.sampled_from(values), min_size=2, max_size=3))
            elif split or i and draw(st.integers(0, 5)) == 0:
                item["inputs"] = draw(st.sampled_from(split or values))
            if cls.second_input and draw(st.integers(0, 2)) == 0:  # crop to another value's size
                item["inputs"] = [item.get("inputs", values[-1]), draw(st.sampled_from(values))]
            if draw(st.integers(0, 7)) == 0:
                item["repeat"] = draw(st.integers(1, 3))
            if draw(st.integers(0, 9)) == 0:
                item["when"] = draw(st.booleans())
            if draw(st.integers(0, 9)) == 0:
                item["frozen"] = draw(st.booleans())
            if draw(st.integers(0, 9)) == 0:
                item["expect"] = {"output": draw(st.lists(st.integers(1, 40), min_size=1, max_size=3))}
            names.append(f"l{i}")
            count = _outputs(cls, args)
            split = [f"l{i}.{k}" for k in range(min(count, 4))] if count > 1 else []
            values += split or [f"l{i}"]
        items.append(item)
    plain = all(not isinstance(it, dict) or "inputs" not in it for it in items)
    if plain and len(items) > 1 and draw(st.integers(0, 4)) == 0:  # a run of items as a sequential group
        i = draw(st.integers(0, len(items) - 1))
        j = draw(st.integers(i + 1, len(items)))
        items[i:j] = [{"sequential": items[i:j], "name": "g"}]  # its layers become g.l1, g.l2...
    if len(names) > 1 and draw(st.integers(0, 7)) == 0:
        spec["frozen"] = draw(st.lists(st.sampled_from(names[1:] + ["g", "b"]), min_size=1, max_size=3))
    if len(shape) == 3 and draw(st.integers(0, 7)) == 0:  # how `convspec run` reads an image
        numbers = st.floats(0.01, 2.0)
        spec["preprocess"] = draw(st.fixed_dictionaries({}, optional={
            "resize": st.just(shape[1:]), "scale": numbers,
            "mean": st.lists(numbers, min_size=1, max_size=4), "std": st.lists(numbers, min_size=1, max_size=4)}))
    if draw(st.integers(0, 4)) == 0:  # some arguments as defaults for their type
        type_name = draw(st.sampled_from(TYPES))
        defaults = draw(layer_args(REGISTRY[type_name], 0))
        if defaults:
            spec["defaults"] = {type_name: defaults}
    if draw(st.integers(0, 3)) == 0:
        spec["blocks"], items = draw(as_block(items))
    spec["layers"] = items
    if len(names) > 2 and draw(st.integers(0, 7)) == 0 and "blocks" not in spec:
        spec["outputs"] = draw(st.lists(st.sampled_from(names[1:]), min_size=1, max_size=2, unique=True))
    return spec


def _outputs(cls, args: dict) -> int:
    """How many values a generated layer makes (1 where its arguments do not build)."""
    try:
        count = cls.from_args(args).outputs()
    except Exception:
        return 1
    return count if isinstance(count, int) else 1  # a missing argument stays dataclasses.MISSING


@st.composite
def as_block(draw, items: list):
    """The same layers as a block whose integer arguments are block parameters, used once or repeated."""
    params, layers = {}, []
    for item in items:
        if isinstance(item, dict):
            item = dict(item)
            op = next(iter(item))
            args = item[op]
            if isinstance(args, dict):
                args = dict(args)
                for key, value in args.items():
                    if isinstance(value, int) and not isinstance(value, bool) and draw(st.booleans()):
                        p = f"p{len(params)}"
                        params[p] = value
                        args[key] = draw(st.sampled_from([f"${p}", f"${{{p}}}", f"${{{p} + 0}}", f"${{{p} * 1}}",
                                                          f"${{{p} // 1}}", f"${{{p} if {p} > 0 else 1}}"]))
            elif isinstance(args, int) and not isinstance(args, bool) and draw(st.booleans()):
                p = f"p{len(params)}"
                params[p] = args
                args = f"${p}"
            item[op] = args
        layers.append(item)
    block = {"layers": layers}
    given = {}
    if params:
        block["args"] = {p: (v if draw(st.booleans()) else None) for p, v in params.items()}
        given = {p: v for p, v in params.items() if block["args"][p] is None or draw(st.booleans())}
    use = {"blk": given or None, "name": "b"}
    if draw(st.integers(0, 3)) == 0:
        use["repeat"] = draw(st.integers(1, 3))
    return {"blk": block}, [use]


@pytest.mark.slow
@fuzz_settings(400)
@given(spec=generated_spec())
def test_generated_specs(spec):
    text = dump(spec)
    holds(analyse_text, text, "spec.yaml", what=text)


# -- 3b. ... compiled to ONNX, checked, and run -----------------------------------------------------
SMALL_PARAMS = 1_000_000
SMALL_MACS = 50_000_000
SMALL_ACTIVATIONS = 64 << 20  # bytes at batch 1: pad, upsample and conv_transpose grow maps without MACs


@lru_cache(maxsize=None)
def onnx_tools():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    np = pytest.importorskip("numpy")
    from compiler.build import compile_spec

    return onnx, ort, np, lambda a: compile_spec(a).to_model()


def compile_and_run(a, text):
    """Compile; the model passes the ONNX checker (with shape inference) and runs to the inferred shapes."""
    onnx, ort, np, to_model = onnx_tools()
    model = guarded(to_model, a, what=text)
    if isinstance(model, ConvspecError):
        event(f"compile refused: {type(model).__name__}")
        check_error(model, text)
        return
    event("compiled")
    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    ort.set_default_logger_severity(4)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (1, 2):
        x = rng.standard_normal((batch, *a.graph.input_shape)).astype(np.float32)
        outputs = session.run(None, {"input": x})
        for name, y, shape in zip(a.graph.outputs, outputs, a.output_shapes):
            assert y.shape == (batch, *shape), \
                f"output '{name}': onnxruntime gives {list(y.shape)}, convspec inferred {[batch, *shape]} on:\n{text}"
            assert np.isfinite(y).all(), f"output '{name}' is not finite on:\n{text}"


@pytest.mark.slow
@fuzz_settings(40, share=0.05, least=10)
@given(spec=generated_spec(hostile_pct=0, max_layers=4))
def test_generated_specs_compile(spec):
    text = dump(spec)
    a = holds(analyse_text, text, "spec.yaml", what=text)
    if isinstance(a, ConvspecError) or a.params > SMALL_PARAMS or a.macs > SMALL_MACS \
            or a.activation_bytes > SMALL_ACTIVATIONS:
        return
    start = time.monotonic()
    try:
        compile_and_run(a, text)
    except BaseException as e:
        if ignored(e):
            return
        raise
    assert time.monotonic() - start < BUDGET_S, f"compiling and running took too long on:\n{text}"


# -- 4. through the real CLI -------------------------------------------------------------------------------
CLI_LINE = re.compile(r"^\S.*:\d+:\d+: (error|warning): \S")


@pytest.mark.slow
@fuzz_settings(2, share=0.005, least=2, deadline=20000)
@given(files=st.lists(mutated_spec_bytes().map(lambda s: s[1]), min_size=6, max_size=6))
@example(files=[b"\xff\xfe", b"", b"input: [3]\n\x00layers: [relu]\n", b"\tinput: [3]\n",
                b"input: [3]\nlayers:\n  - conv: {filters: 2, kernel: 1e400}\n",
                b"input: [3, 8, 8]\nlayers:\n  - conv: {filters: 2, kernel: 3}\n"])
def test_cli_check(folder, files):
    run = Path(tempfile.mkdtemp(dir=folder))
    names = []
    for k, data in enumerate(files):
        (run / f"f{k}.yaml").write_bytes(data)
        names.append(f"f{k}.yaml")
    try:
        check_cli(run, names, files)
    except BaseException as e:
        if not ignored(e):
            raise


def check_cli(run: Path, names: list[str], files: list[bytes]) -> None:
    proc = run_cli(run, "check", *names, timeout=60)  # asserts: no traceback, no internal error
    assert proc.returncode in (0, 1), f"exit {proc.returncode}\n{proc.stderr}\n{files!r}"
    for k, line in enumerate(proc.stderr.splitlines(), 1):
        assert CLI_LINE.match(line), \
            f"line {k} of stderr is not `path:line:col: error: message`: {line!r}\n{proc.stderr}\n{files!r}"
    for line in proc.stdout.splitlines():
        assert re.match(r"^f\d\.yaml: ok: ", line), line
    oks = {line.split(":")[0] for line in proc.stdout.splitlines()}
    assert (proc.returncode == 0) == (len(oks) == len(files)), proc.stdout + proc.stderr
