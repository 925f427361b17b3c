"""The command line as scripts use it: the stable commands, formats and exit codes of DESIGN.md.

Exit codes: 0 success, 1 invalid spec, 2 usage or I/O error. Runs call `cli.main(argv)` in this
process (tests/clirun.py), a few start a real process where the process is what is tested, and
no run may print a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from clirun import run_cli, run_process

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
NAMES = [p.stem for p in SPECS]

ALEXNET_PARAMS = 62_378_344
RESNET50_TRAINABLE, RESNET50_NON_TRAINABLE = 25_557_032, 53_120  # torchvision's resnet50
RESNET50_MACS = 4_089_184_256


VALID = "input: [3, 8, 8]\nlayers:\n  - conv: {filters: 4, kernel: 3, padding: 1}\n  - relu\n"
INVALID = "input: [3, 8, 8]\nlayers:\n  - conv: {filters: 3, kernel: 3}\n  - add:\n    inputs: [conv1, input]\n"


@pytest.fixture(scope="module")
def alexnet_json(tmp_path_factory):
    proc = run_cli(tmp_path_factory.mktemp("json"), "summary", "alexnet_paper", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# -- check ----------------------------------------------------------------------------------

def test_check_every_bundled_spec_by_name(tmp_path):
    assert len(NAMES) >= 10
    proc = run_cli(tmp_path, "check", *NAMES)
    assert proc.returncode == 0, proc.stderr
    assert ": error:" not in proc.stderr
    ok = [line for line in proc.stdout.splitlines() if ": ok: " in line]
    assert len(ok) == len(NAMES), proc.stdout
    for line, path in zip(ok, SPECS):
        assert line.startswith(f"{path}: ok: "), line


@pytest.mark.slow  # the whole library again; `check` by name keeps it in the quick loop
def test_check_every_bundled_spec_by_path(tmp_path):
    proc = run_cli(ROOT, "check", *(f"specs/{p.name}" for p in SPECS))
    assert proc.returncode == 0, proc.stderr
    ok = [line for line in proc.stdout.splitlines() if ": ok: " in line]
    assert [line.split(": ok: ")[0] for line in ok] == [f"specs/{p.name}" for p in SPECS]


def test_check_ok_line_gives_layers_params_and_macs(tmp_path):
    proc = run_cli(tmp_path, "check", "alexnet_paper")
    assert proc.returncode == 0
    assert proc.stdout.strip().endswith("ok: 16 layers, 62.4 M params, 1.14 G MACs")


def test_check_quiet_prints_nothing_for_valid_specs(tmp_path):
    proc = run_cli(tmp_path, "check", "-q", "lenet5", "resnet18")
    assert proc.returncode == 0
    assert proc.stdout == "" and proc.stderr == ""


def test_check_several_specs_one_invalid(tmp_path):
    (tmp_path / "good.yaml").write_text(VALID)
    (tmp_path / "bad.yaml").write_text(INVALID)
    proc = run_cli(tmp_path, "check", "good.yaml", "bad.yaml", "lenet5")
    assert proc.returncode == 1, proc.stderr
    ok = [line.split(": ok: ")[0] for line in proc.stdout.splitlines() if ": ok: " in line]
    assert ok == ["good.yaml", str(ROOT / "specs" / "lenet5.yaml")]  # the ones after the bad one too
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1
    assert errors[0].startswith("bad.yaml:4:5: error: layer 'add1': spatial mismatch")


def test_check_usage_error_wins_over_invalid_spec(tmp_path):
    (tmp_path / "bad.yaml").write_text(INVALID)
    proc = run_cli(tmp_path, "check", "bad.yaml", "missing.yaml", "lenet5")
    assert proc.returncode == 2
    assert "bad.yaml:4:5: error:" in proc.stderr
    assert "missing.yaml: no such file" in proc.stderr
    assert "lenet5.yaml: ok:" in proc.stdout


def test_check_strict_turns_warnings_into_errors(tmp_path):
    (tmp_path / "t.yaml").write_text("input: [1, 7, 7]\nlayers:\n  - maxpool: {kernel: 3, stride: 3}\n")
    loose = run_cli(tmp_path, "check", "t.yaml")
    assert loose.returncode == 0
    assert "t.yaml:3:34: warning: layer 'maxpool1': the window does not tile its input" in loose.stderr
    strict = run_cli(tmp_path, "check", "--strict", "t.yaml")
    assert strict.returncode == 1
    assert "t.yaml:3:34: error: layer 'maxpool1': the window does not tile its input" in strict.stderr


# -- usage and I/O errors: exit 2 -------------------------------------------------------------

@pytest.mark.parametrize("args, phrases", [
    pytest.param(["check", "alexnet_papr"], ["'alexnet_papr'", "did you mean 'alexnet_paper'?"],
                 id="unknown-name-did-you-mean"),
    pytest.param(["summary", "resnet5"], ["'resnet5'", "did you mean 'resnet50'?"], id="summary-unknown-name"),
    pytest.param(["check", "xyzzy"], ["'xyzzy'", "convspec zoo"], id="unknown-name-no-match"),
    pytest.param(["check", "nowhere.yaml"], ["nowhere.yaml", "no such file"], id="missing-file"),
    pytest.param(["check", "sub/nowhere.yml"], ["sub/nowhere.yml", "no such file"], id="missing-file-in-dir"),
    pytest.param(["summary", "nowhere.yaml"], ["nowhere.yaml", "no such file"], id="summary-missing-file"),
    pytest.param(["check", "."], ["is a directory"], id="directory"),
], )
def test_usage_and_io_errors_exit_2(tmp_path, args, phrases):
    proc = run_cli(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "error" in line
    for p in phrases:
        assert p in line, line


@pytest.mark.parametrize("args, phrase", [
    pytest.param([], "required: COMMAND", id="no-arguments"),
    pytest.param(["check"], "required: SPEC", id="check-without-spec"),
    pytest.param(["frobnicate"], "invalid choice", id="unknown-command"),
    pytest.param(["summary", "alexnet_paper", "--format", "xml"], "invalid choice: 'xml'", id="bad-format"),
    pytest.param(["check", "--bogus", "alexnet_paper"], "unrecognized arguments: --bogus", id="bad-flag"),
    pytest.param(["zoo", "--format", "csv"], "invalid choice: 'csv'", id="zoo-bad-format"),
])
def test_bad_command_lines_print_usage_and_exit_2(tmp_path, args, phrase):
    proc = run_cli(tmp_path, *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("usage: convspec")
    assert phrase in proc.stderr


def test_version(tmp_path):
    proc = run_cli(tmp_path, "--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("convspec ")


@pytest.mark.parametrize("text, code, stream, line", [
    (VALID, 0, "stdout", "spec.yaml: ok: 2 layers"),
    (INVALID, 1, "stderr", "spec.yaml:4:5: error: layer 'add1': spatial mismatch"),
    (None, 2, "stderr", "error: spec.yaml: no such file"),
], ids=["valid", "invalid", "missing"])
def test_a_real_process_exits_with_the_documented_code(tmp_path, text, code, stream, line):
    """The exit status as a shell sees it, from a fresh interpreter (the other tests call main())."""
    if text is not None:
        (tmp_path / "spec.yaml").write_text(text)
    proc = run_process(tmp_path, "check", "spec.yaml")
    assert proc.returncode == code, proc.stderr
    assert getattr(proc, stream).startswith(line), getattr(proc, stream)


def test_installed_entry_point(tmp_path):
    script = Path(sys.executable).parent / "convspec"
    if not script.exists():
        pytest.skip("the package is not installed in this interpreter's environment")
    proc = subprocess.run([str(script), "check", "lenet5"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "lenet5.yaml: ok: 8 layers" in proc.stdout


# -- summary ----------------------------------------------------------------------------------

def test_summary_json_has_the_design_keys(alexnet_json):
    d = alexnet_json
    for key in ("name", "input_shape", "output_shape", "params", "macs", "flops", "layers"):
        assert key in d, key
    assert d["name"] == "alexnet_paper"
    assert d["input_shape"] == [3, 227, 227]
    assert d["output_shape"] == [1000]
    assert d["params"] == {"total": ALEXNET_PARAMS, "trainable": ALEXNET_PARAMS, "non_trainable": 0}
    assert isinstance(d["macs"], int) and isinstance(d["flops"], int)
    assert d["flops"] > 2 * d["macs"] > 0
    for layer in d["layers"]:
        for key in ("name", "type", "inputs", "output_shape", "params", "macs", "flops", "receptive_field"):
            assert key in layer, (layer["name"], key)
    assert sum(layer["params"] for layer in d["layers"]) == ALEXNET_PARAMS
    assert sum(layer["macs"] for layer in d["layers"]) == d["macs"]
    assert sum(layer["flops"] for layer in d["layers"]) == d["flops"]


def test_summary_json_alexnet_layers(alexnet_json):
    layers = {layer["name"]: layer for layer in alexnet_json["layers"]}
    conv1 = layers["conv1"]
    assert conv1["type"] == "conv"
    assert conv1["inputs"] == ["input"]
    assert conv1["output_shape"] == [96, 55, 55]          # (227 - 11)/4 + 1 = 55
    assert conv1["params"] == 34_944                       # (11*11*3)*96 + 96
    assert conv1["macs"] == 55 * 55 * 96 * 11 * 11 * 3
    assert conv1["receptive_field"]["size"] == [11, 11]
    assert conv1["receptive_field"]["jump"] == [4, 4]
    assert layers["pool1"]["output_shape"] == [96, 27, 27]
    assert layers["pool3"]["output_shape"] == [256, 6, 6]
    assert layers["fc6"]["inputs"] == ["flatten1"]
    assert layers["fc6"]["params"] == 9216 * 4096 + 4096
    assert [layer["name"] for layer in alexnet_json["layers"]][-1] == "fc8"


def test_summary_csv_one_row_per_layer(tmp_path, alexnet_json):
    proc = run_cli(tmp_path, "summary", "alexnet_paper", "--format", "csv")
    assert proc.returncode == 0
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["name"] for r in rows] == [layer["name"] for layer in alexnet_json["layers"]]
    conv1 = rows[0]
    assert conv1["type"] == "conv"
    assert conv1["output_shape"] == "96x55x55"
    assert int(conv1["params"]) == 34_944
    assert sum(int(r["params"]) for r in rows) == ALEXNET_PARAMS
    assert sum(int(r["macs"]) for r in rows) == alexnet_json["macs"]


def test_summary_markdown_is_a_table(tmp_path):
    proc = run_cli(tmp_path, "summary", "alexnet_paper", "--format", "markdown")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| Layer |"))
    assert set(lines[header + 1].replace("|", "").replace(":", "")) == {"-"}
    body = [line for line in lines[header + 2:] if line.startswith("| ")]
    assert any(line.startswith("| conv1 | conv | [96, 55, 55] | 34,944 |") for line in body), proc.stdout
    assert "62,378,344" in proc.stdout


def test_summary_table_exact_and_human_figures(tmp_path):
    proc = run_cli(tmp_path, "summary", "alexnet_paper")
    assert proc.returncode == 0
    out = proc.stdout
    assert "62,378,344 (62.4 M)" in out
    assert "1,135,256,096 (1.14 G)" in out
    conv1 = next(line for line in out.splitlines() if line.startswith("conv1 "))
    assert conv1.split()[2:] == ["[96,", "55,", "55]", "34.9", "K", "105", "M", "11"]
    fc6 = next(line for line in out.splitlines() if line.startswith("fc6 "))
    assert "37.8 M" in fc6


def test_summary_shows_inputs_column_for_branching_specs(tmp_path):
    proc = run_cli(tmp_path, "summary", "resnet18")
    assert proc.returncode == 0
    assert "Inputs" in proc.stdout.splitlines()[3]
    add = next(line for line in proc.stdout.splitlines() if line.startswith("layer2.0.add1 "))
    # inputs are named as seen from inside the block: layer2.0.bn2 -> bn2
    assert add.split()[2:4] == ["bn2,", "downsample.1"]
    stem = next(line for line in proc.stdout.splitlines() if line.startswith("layer1.0.conv1 "))
    assert stem.split()[2] == "maxpool"  # outside the block: the full name


def test_summary_of_an_invalid_spec_exits_1(tmp_path):
    (tmp_path / "bad.yaml").write_text(INVALID)
    proc = run_cli(tmp_path, "summary", "bad.yaml", "--format", "json")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("bad.yaml:4:5: error: layer 'add1': ")


def test_summary_warnings_go_to_stderr(tmp_path):
    (tmp_path / "t.yaml").write_text("input: [1, 7, 7]\nlayers:\n  - conv: {filters: 1, kernel: 3, stride: 3}\n")
    proc = run_cli(tmp_path, "summary", "t.yaml", "--format", "json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["layers"][0]["output_shape"] == [1, 2, 2]
    assert "t.yaml:3:43: warning: layer 'conv1':" in proc.stderr
    strict = run_cli(tmp_path, "summary", "--strict", "t.yaml")
    assert strict.returncode == 1
    assert "t.yaml:3:43: error: layer 'conv1':" in strict.stderr


def test_summary_does_not_import_onnx(tmp_path):
    # Record every import attempt, whether or not onnx is installed here.
    probe = (
        "import sys, runpy\n"
        "seen = []\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        seen.append(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Spy())\n"
        f"sys.argv = ['convspec', 'summary', 'resnet50', '--format', 'json']\n"
        "try:\n"
        f"    runpy.run_path({str(ROOT / 'cli.py')!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "sys.stdout.flush()\n"
        "print('\\nIMPORTS', code, ' '.join(seen), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    report = next(line for line in proc.stderr.splitlines() if line.startswith("IMPORTS "))
    _, code, *names = report.split()
    assert code == "0"
    assert "yaml" in names and "compiler.infer" in names  # the spy does see the imports
    # numpy too: it costs ~40 ms of start-up and only the compile path needs it
    assert not [n for n in names if n.split(".")[0] in ("onnx", "onnxruntime", "runtime", "numpy")], names
    assert json.loads(proc.stdout)["params"]["total"] == RESNET50_TRAINABLE + RESNET50_NON_TRAINABLE


# -- zoo --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo_json(tmp_path_factory):
    proc = run_cli(tmp_path_factory.mktemp("zoo"), "zoo", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow  # the whole library again; `check` by name keeps it in the quick loop
def test_zoo_json_lists_every_bundled_spec(zoo_json):
    assert isinstance(zoo_json, list)
    assert sorted(e["name"] for e in zoo_json) == sorted(NAMES)
    for entry in zoo_json:
        assert {"name", "path", "title", "params", "macs"} <= set(entry), entry
        assert Path(entry["path"]).name == f"{entry['name']}.yaml"
        assert isinstance(entry["params"], int) and isinstance(entry["macs"], int)
        assert entry["title"]


@pytest.mark.slow  # the whole library again; `check` by name keeps it in the quick loop
def test_zoo_json_figures(zoo_json):
    by_name = {e["name"]: e for e in zoo_json}
    assert by_name["resnet50"]["params"] == RESNET50_TRAINABLE + RESNET50_NON_TRAINABLE
    assert by_name["resnet50"]["macs"] == RESNET50_MACS
    assert by_name["alexnet_paper"]["params"] == ALEXNET_PARAMS


@pytest.mark.slow  # the whole library again; `check` by name keeps it in the quick loop
def test_zoo_table(tmp_path):
    proc = run_cli(tmp_path, "zoo")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["Name", "Input", "Params", "MACs"]
    assert len(lines) == 2 + len(NAMES)  # header, rule, one row per spec
    resnet50 = next(line for line in lines if line.startswith("resnet50 "))
    assert "3x224x224" in resnet50 and "25.6 M" in resnet50 and "4.09 G" in resnet50


# -- schema and layers ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    proc = run_cli(tmp_path_factory.mktemp("schema"), "schema")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_schema_is_a_valid_draft_2020_12_schema(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator
    jsonschema.Draft202012Validator.check_schema(schema)


SCHEMA_BUG = ("bug: `convspec schema` imports compiler.schema without compiler.layers, so the layer "
              "registry is empty: the printed schema has no layer types and `defaults` allows no keys")


def test_printed_schema_is_the_bundled_schema_file(schema):
    # The bundled specs' modeline points at specs/convspec.schema.json; both come from the registry.
    assert schema == json.loads((ROOT / "specs" / "convspec.schema.json").read_text())


def test_printed_schema_accepts_every_bundled_spec(schema):
    validator = jsonschema.Draft202012Validator(schema)
    rejected = [p.name for p in SPECS if not validator.is_valid(yaml.safe_load(p.read_text()))]
    assert rejected == []


def test_printed_schema_checks_layer_arguments(schema):
    validator = jsonschema.Draft202012Validator(schema)
    for args in ({"filters": 0, "kernel": 3}, {"filter": 8, "kernel": 3}, {"filters": 8, "kernel": "big"}):
        assert not validator.is_valid({"input": [3, 8, 8], "layers": [{"conv": args}]}), args


def test_printed_schema_rejects_bad_structure(schema):
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"input": [3, 8, 8], "layers": ["relu"]})
    bad = [
        {"input": [3, 8, 8]},                                                  # no layers
        {"layers": ["relu"]},                                                  # no input
        {"input": [3, 8, 8], "layers": ["relu"], "layer": []},                 # unknown key
        {"input": [3, 0, 8], "layers": ["relu"]},                              # a zero size
        {"input": [3, 8, 8], "layers": []},                                    # no layers
        {"input": [3, 8, 8], "layers": [{"relu": None, "repeat": 0}]},
    ]
    for doc in bad:
        assert not validator.is_valid(doc), doc


@pytest.fixture(scope="module")
def layers_table(tmp_path_factory):
    proc = run_cli(tmp_path_factory.mktemp("layers"), "layers")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_layers_lists_every_type(layers_table):
    types = [line.split()[0] for line in layers_table.splitlines() if line and not line.startswith(" ")]
    for name in ("conv", "lcn", "lrn", "maxpool", "dense", "batchnorm", "add", "concat", "flatten"):
        assert name in types, name
    assert len(types) == len(set(types))
    conv = ("\n" + layers_table).split("\nconv ")[1].split("\n", 4)
    assert any(line.strip().startswith("filters ") and "required" in line for line in conv), conv


def test_layers_json_agrees_with_the_table(tmp_path, layers_table):
    as_json = run_cli(tmp_path, "layers", "--format", "json")
    assert as_json.returncode == 0
    rows = json.loads(as_json.stdout)
    assert [r["type"] for r in rows] == [line.split()[0] for line in layers_table.splitlines()
                                         if line and not line.startswith(" ")]
    conv = next(r for r in rows if r["type"] == "conv")
    filters = next(a for a in conv["arguments"] if a["name"] == "filters")
    assert filters["required"] is True
