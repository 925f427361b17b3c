"""The hostile corpus (tests/hostile/): every untrusted input gets its exact error, never a crash.

Specs are checked, summarised and compiled; weight files are imported into the bundled lenet5;
broken models and inputs are run. Each case names the exact stderr it must produce, the exit
code, and for compile that no output file (not even a temporary one) is left behind. The files
are committed; tests/hostile/make_corpus.py regenerates the binary ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from clirun import run_cli
from cli import main

HOSTILE = Path(__file__).resolve().parent / "hostile"
SPECS = HOSTILE / "specs"
LIFT = "a spec may name files only in its own folder and the bundled library (--allow-outside-paths lifts this)"
PLAIN = "is not allowed: a spec is plain data (mappings, lists, strings, numbers, booleans)"

# file -> the exact error line of `convspec check FILE` (exit 1), run inside tests/hostile/specs.
SPEC_ERRORS = {
    "billion_laughs.yaml": "billion_laughs.yaml:4:22: error: the spec expands to more than 200,000 YAML nodes; "
                           "are aliases (*name) repeating a large part of it?",
    "binary.yaml": "binary.yaml:1:1: error: the spec is not UTF-8 text: byte 0x82 at offset 0 cannot be decoded "
                   "(save the file as UTF-8)",
    "binary_tag.yaml": f"binary_tag.yaml:3:8: error: YAML tag 'tag:yaml.org,2002:binary' {PLAIN}",
    "block_uses_itself.yaml": "block_uses_itself.yaml:5:9: error: layer 'loop1.loop1': block 'loop' uses itself "
                              "(through loop -> loop)\nblock_uses_itself.yaml:7:5: note: in block 'loop'",
    "blocks_use_each_other.yaml": "blocks_use_each_other.yaml:6:14: error: layer 'ping1.pong1.ping1': block 'ping' "
                                  "uses itself (through ping -> pong -> ping)\n"
                                  "blocks_use_each_other.yaml:4:14: note: in block 'pong'\n"
                                  "blocks_use_each_other.yaml:7:10: note: in block 'ping'",
    "custom_tag.yaml": f"custom_tag.yaml:3:8: error: YAML tag '!custom' {PLAIN}",
    "cycle_a.yaml": "cycle_b.yaml:1:10: error: 'extends' makes a loop: cycle_a.yaml -> cycle_b.yaml -> cycle_a.yaml",
    "cycle_b.yaml": "cycle_a.yaml:1:10: error: 'extends' makes a loop: cycle_b.yaml -> cycle_a.yaml -> cycle_b.yaml",
    "deep_blocks.yaml": "deep_blocks.yaml:194:7: error: blocks and groups nest more than 64 deep (blocks b0 -> b1 -> "
                        "b2 -> ... -> b62 -> b63); --max-depth raises the limit\n"
                        + "".join(f"deep_blocks.yaml:{191 - 3 * k}:9: note: in block 'b{63 - k}'\n" for k in range(4))
                        + "deep_blocks.yaml:364:5: note: in block 'b0', through 59 more blocks not shown",
    "deep_nesting.yaml": "deep_nesting.yaml:3:73: error: the spec nests deeper than 64 levels "
                         "(--max-depth raises the limit)",
    "duplicate_keys.yaml": "duplicate_keys.yaml:3:35: error: duplicate key 'filters' (first at line 3)",
    "empty.yaml": "empty.yaml:1:1: error: the spec is empty; it needs at least 'input' and 'layers'",
    "expression_import.yaml": "expression_import.yaml:6:25: error: layer 'b1.conv1': '__import__('os')' is not "
                              "allowed in an expression (only numbers, argument names, arithmetic, comparisons and "
                              "'a if c else b')\nexpression_import.yaml:8:5: note: in block 'b' (n: 9)",
    "expression_outside_block.yaml": "expression_outside_block.yaml:3:21: error: layer 'conv1': '2 ** 1000' is not "
                                     "allowed in an expression (only numbers, argument names, arithmetic, "
                                     "comparisons and 'a if c else b') (block arguments exist only inside a block)",
    "expression_power.yaml": "expression_power.yaml:6:25: error: layer 'b1.conv1': 'n ** 99' is not allowed in an "
                             "expression (only numbers, argument names, arithmetic, comparisons and 'a if c else b')\n"
                             "expression_power.yaml:8:5: note: in block 'b' (n: 9)",
    "extends_absolute.yaml": f"extends_absolute.yaml:1:10: error: 'extends' names the absolute path '/etc/passwd'; "
                             f"{LIFT}",
    "extends_dotdot.yaml": f"extends_dotdot.yaml:1:10: error: 'extends' names '../outside.yaml', which is outside "
                           f"the spec's folder; {LIFT}",
    "float_for_int.yaml": "float_for_int.yaml:3:21: error: layer 'conv1': argument 'filters' of conv must be a "
                          "positive integer; got 8.0",
    "huge_input.yaml": "huge_input.yaml:1:8: error: 'input' [3, 2000000, 2000000] has 12,000,000,000,000 elements "
                       "per sample, more than 17,179,869,184 (64 GiB of float32); use a smaller input",
    "huge_integer.yaml": "huge_integer.yaml:3:21: error: the integer '100000000000000000000000' is too large "
                         "(the limit is 2**63 - 1)",
    "huge_params.yaml": "huge_params.yaml:4:5: error: layer 'dense1': the spec has 1,229,200,000,000 parameters up "
                        "to this layer, more than the limit of 2,000,000,000; check the sizes, or raise the limit "
                        "with --max-params",
    "huge_repeat.yaml": "huge_repeat.yaml:4:13: error: 'layers[0].repeat' must be an integer from 1 to 10000 (or, in "
                        "a layer item, a block expression); got 1000000",
    "inf_argument.yaml": "inf_argument.yaml:3:21: error: '1.0e+400' is not a finite number; use a finite value",
    "labels_dotdot.yaml": f"labels_dotdot.yaml:2:9: error: 'labels' names '../../../../etc/passwd', which is outside "
                          f"the spec's folder; {LIFT}",
    "nan_argument.yaml": "nan_argument.yaml:3:25: error: '.nan' is not a finite number; use a finite value",
    "negative_size.yaml": "negative_size.yaml:3:43: error: layer 'conv1': argument 'stride' of conv must be a "
                          "positive integer or a list [h, w] of them; got -1",
    "nested_repeats.yaml": "nested_repeats.yaml:4:9: error: layer 'sequential1.5.0.0': the spec expands to more "
                           "than 50,000 layers; reduce the repeats (--max-layers raises the limit)",
    "non_utf8.yaml": "non_utf8.yaml:2:10: error: the spec is not UTF-8 text: byte 0xe9 at offset 28 cannot be "
                     "decoded (save the file as UTF-8)",
    "not_a_mapping.yaml": "not_a_mapping.yaml:1:1: error: the spec must be a mapping with 'input' and 'layers' at "
                          "the top level",
    "nul_byte.yaml": "nul_byte.yaml:2:15: error: invalid YAML: the character U+0000 is not allowed in YAML text; "
                     "remove it",
    "python_tag.yaml": f"python_tag.yaml:3:7: error: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' "
                       f"{PLAIN}",
    "python_tuple.yaml": f"python_tuple.yaml:1:8: error: YAML tag 'tag:yaml.org,2002:python/tuple' {PLAIN}",
    "self_extends.yaml": "self_extends.yaml:1:10: error: a spec cannot extend itself",
    "set_tag.yaml": f"set_tag.yaml:4:9: error: YAML tag 'tag:yaml.org,2002:set' {PLAIN}",
    "string_for_int.yaml": "string_for_int.yaml:3:21: error: layer 'conv1': argument 'filters' of conv must be a "
                           "positive integer; got '8'",
    "tabs.yaml": "tabs.yaml:3:1: error: invalid YAML: while scanning for the next token at line 3: found character "
                 "that cannot start any token; tabs cannot indent YAML, use spaces",
    "thousand_digits.yaml": "thousand_digits.yaml:3:21: error: the integer "
                            "'100000000000000000000000000000000000000000000000000000 ...' is too large "
                            "(the limit is 2**63 - 1)",
    "truncated.yaml": "truncated.yaml:3:11: error: invalid YAML: while parsing a flow mapping at line 3: did not "
                      "find expected ',' or '}'",
    "two_documents.yaml": "two_documents.yaml:3:1: error: invalid YAML: expected a single document in the stream at "
                          "line 1, but found another document",
    "utf16.yaml": "utf16.yaml:1:1: error: the spec is not UTF-8 text: byte 0xff at offset 0 cannot be decoded "
                  "(save the file as UTF-8)",
    "base60.yaml": "base60.yaml:3:32: error: '3:3' is a base-60 number in YAML 1.1; convspec does not read those "
                   "(quote it if it is text)",
    "labels_nul.yaml": "labels_nul.yaml:2:9: error: 'labels' names 'a\\x00b', which cannot be used as a path: "
                       "embedded null byte",
    "labels_not_utf8.yaml": "labels_not_utf8.yaml:2:9: error: the labels file 'latin1.txt' is not UTF-8 text "
                            "(byte 3); save it as UTF-8",
    "huge_padding.yaml": "huge_padding.yaml:3:73: error: layer 'conv1': argument 'stride' is 9223372036854775807, "
                         "beyond what ONNX Runtime can compute with (at most 2,147,483,647); is it a typo?",
    "expression_constant.yaml": "expression_constant.yaml:5:47: error: layer 'b1.conv1': value "
                                "100000000000000000000000000000 is out of range\n"
                                "expression_constant.yaml:6:10: note: in block 'b'",
    "zero_size.yaml": "zero_size.yaml:1:8: error: 'input' must be a list [C, H, W] or [features] of positive "
                      "integers; got [3, 0, 32]",
}


def test_the_table_covers_the_whole_corpus():
    assert sorted(SPEC_ERRORS) == sorted(p.name for p in SPECS.glob("*.yaml"))


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return code, out, err


# specs that take a second or more to reach their limit: the full suite runs them (`make test`)
HEAVY = {"billion_laughs.yaml", "nested_repeats.yaml"}


@pytest.mark.parametrize("command, name", [
    pytest.param(command, name, marks=[pytest.mark.slow] if name in HEAVY else [])
    for command in ("check", "summary", "compile") for name in sorted(SPEC_ERRORS)])
def test_hostile_spec(name, command, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(SPECS)
    out = tmp_path / "model.onnx"
    argv = [command, name] + (["-o", str(out)] if command == "compile" else [])
    code, stdout, stderr = _cli(capsys, *argv)
    assert (code, stderr, stdout) == (1, SPEC_ERRORS[name] + "\n", "")
    assert list(tmp_path.iterdir()) == []  # no model, no temporary file


@pytest.mark.slow  # the whole corpus again, HEAVY included: seconds
def test_hostile_specs_through_the_real_cli():
    """One process for the corpus: exit 1, one positioned error per file, no traceback."""
    proc = run_cli(SPECS, "check", *sorted(SPEC_ERRORS), timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == "\n".join(SPEC_ERRORS[name] for name in sorted(SPEC_ERRORS)).splitlines()


def test_the_python_tag_never_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text((SPECS / "python_tag.yaml").read_text())
    assert _cli(capsys, "check", "spec.yaml")[0] == 1
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("flag, value, name, after", [
    ("--max-depth", "100", "deep_nesting.yaml", "deep_nesting.yaml:3:5: error: layer 'relu1': relu takes no "
                                                "arguments; write `- relu`"),
    ("--max-depth", "100", "deep_blocks.yaml", "deep_blocks.yaml:302:7: error: blocks and groups nest more than 100 "
                                               "deep (blocks b0 -> b1 -> b2 -> ... -> b98 -> b99); --max-depth raises "
                                               "the limit\n" + "".join(f"deep_blocks.yaml:{299 - 3 * k}:9: note: in "
                                                                       f"block 'b{99 - k}'\n" for k in range(4))
                                               + "deep_blocks.yaml:364:5: note: in block 'b0', through 95 more blocks "
                                               "not shown"),
    ("--max-params", str(13 * 10**12), "huge_params.yaml", ""),
    pytest.param("--max-layers", "60000", "nested_repeats.yaml", "nested_repeats.yaml:4:9: error: layer "
                 "'sequential1.6.0.0': the spec expands to more than 60,000 layers; reduce the repeats "
                 "(--max-layers raises the limit)", marks=pytest.mark.slow),  # 60,000 layers: seconds
])
def test_each_limit_has_a_flag_that_raises_it(flag, value, name, after, capsys, monkeypatch):
    monkeypatch.chdir(SPECS)
    code, _, stderr = _cli(capsys, "check", name, flag, value)
    assert (code, stderr.strip()) == (1 if after else 0, after)


def test_outside_paths_need_the_flag(capsys, monkeypatch):
    monkeypatch.chdir(SPECS)
    assert _cli(capsys, "check", "extends_dotdot.yaml", "--allow-outside-paths")[0] == 0


def test_a_stream_is_refused_before_it_is_read(capsys):
    code, _, stderr = _cli(capsys, "check", "/dev/zero")  # regular files only (test_hostile_spec.py: FIFOs)
    assert (code, stderr) == (2, "error: /dev/zero: is not a regular file (a FIFO, a device or a socket); "
                                 "a spec must be a file\n")


def test_paths_that_cannot_be_used(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    for ref in ("loop1/x.yaml", "a" * 300 + ".yaml"):
        (tmp_path / "s.yaml").write_text(f"extends: {ref}\n")
        code, _, stderr = _cli(capsys, "check", "s.yaml")
        assert code == 1 and stderr.startswith(f"s.yaml:1:10: error: 'extends' names '{ref}', which cannot be used "
                                                "as a path: "), stderr


def test_a_spec_larger_than_the_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big.yaml").write_text("input: [3, 8, 8]\nlayers: [relu]\ndescription: '" + "x" * 2_000_000 + "'\n")
    code, _, stderr = _cli(capsys, "check", "big.yaml")
    assert (code, stderr) == (1, "big.yaml:1:1: error: the spec is 2,000,048 bytes; the limit is 2,000,000 "
                                 "(--max-spec-bytes raises it)\n")
    assert _cli(capsys, "check", "big.yaml", "--max-spec-bytes", "3000000")[0] == 0


# -- weight files, imported into lenet5 ------------------------------------------------------------
MISSING = ("missing keys (9): c1.bias, c3.weight, c3.bias, c5.weight, c5.bias, f6.weight, f6.bias, output.weight, "
           "output.bias")
WEIGHT_ERRORS = {  # file -> (exit code, exact stderr)
    "crc.npz": (2, "error: crc.npz: not a readable .npz file (Bad CRC-32 for file 'c1.weight.npy')"),
    "custom_class.pth": (2, "error: custom_class.pth: refused to load: the file asks for pathlib.Path, and only "
                            "tensors and ordered dicts are allowed (save the model's state_dict(), not the model)"),
    "garbage_pickle.pth": (2, "error: garbage_pickle.pth: cannot read the checkpoint: UnpicklingError: pickle data "
                              "was truncated"),
    "header_length.safetensors": (2, "error: header_length.safetensors: not a .safetensors file (its header length "
                                     "is wrong)"),
    "header_not_json.safetensors": (2, "error: header_not_json.safetensors: not a .safetensors file (its header is "
                                       "not JSON)"),
    "int64.safetensors": (1, "error: none of the weights in int64.safetensors fits the spec 'lenet5' (is it the right "
                             f"file?): {MISSING}; not floating point (1): c1.weight: int64"),
    "negative_shape.safetensors": (2, "error: negative_shape.safetensors: tensor 'c1.weight' is damaged or not "
                                      "understood (its shape [-6, 1, 5, 5] is not a list of sizes)"),
    "not_a_zip.pth": (2, "error: not_a_zip.pth: not a PyTorch zip checkpoint (files from PyTorch before 1.6 are not "
                         "read: re-save it with torch.save in a newer PyTorch)"),
    "object_array.npz": (2, "error: object_array.npz: not a readable .npz file (it holds Python objects, which "
                            "convspec never loads; save plain numbers)"),
    "os_system.pth": (2, "error: os_system.pth: refused to load: the file asks for posix.system, and only tensors "
                         "and ordered dicts are allowed (save the model's state_dict(), not the model)"),
    "size_bomb.npz": (2, "error: size_bomb.npz: not a readable .npz file (an array of shape [1000000000000] and "
                         "type float32 needs 4000000000000 bytes, the file holds 16)"),
    "strings.npz": (1, "error: none of the weights in strings.npz fits the spec 'lenet5' (is it the right file?): "
                       f"{MISSING}; not floating point (1): c1.weight: <U1"),
    "truncated.npz": (2, "error: truncated.npz: not a readable .npz file (File is not a zip file)"),
    "truncated.safetensors": (2, "error: truncated.safetensors: tensor 'c1.weight' is damaged or not understood "
                                 "(offsets 0..600 lie outside the file)"),
    "unknown_dtype.safetensors": (2, "error: unknown_dtype.safetensors: tensor 'c1.weight' is damaged or not "
                                     "understood (dtype 'F8_E4M3' cannot be read)"),
}
NON_FINITE = ["nan.npz", "inf.safetensors"]


def test_the_weight_table_covers_the_corpus():
    names = sorted(p.name for p in (HOSTILE / "weights").iterdir())
    assert names == sorted([*WEIGHT_ERRORS, *NON_FINITE])


@pytest.mark.parametrize("name", sorted(WEIGHT_ERRORS))
def test_hostile_weights(name, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(HOSTILE / "weights")
    out = tmp_path / "model.onnx"
    code, _, stderr = _cli(capsys, "compile", "lenet5", "--weights", name, "-o", str(out))
    assert (code, stderr) == (WEIGHT_ERRORS[name][0], WEIGHT_ERRORS[name][1] + "\n")
    assert list(tmp_path.iterdir()) == []
    assert not (HOSTILE / "weights" / "pwned").exists() and not Path("pwned").exists()


def test_a_safetensors_file_truncated_after_its_header_was_read(tmp_path):
    """The data are read when wanted, not memory-mapped: a file cut short meanwhile is a clean
    error, where a mapping would die of SIGBUS."""
    from compiler.errors import UsageError
    from compiler.weights import read_weights
    from weightfiles import write_safetensors

    path = tmp_path / "w.safetensors"
    write_safetensors(path, {"a": np.arange(6, dtype=np.float32), "b": np.ones((2, 3), np.float32)})
    arrays = read_weights(str(path))
    np.testing.assert_array_equal(arrays["a"], np.arange(6, dtype=np.float32))
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 8)  # cuts into "b", the last tensor
    with pytest.raises(UsageError, match=r"w.safetensors: cannot read an array: the file is shorter than its header "
                                         r"says \(was it truncated\?\)"):
        arrays["b"].load()


@pytest.mark.parametrize("name", NON_FINITE)
def test_non_finite_weights_warn_and_load(name, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(HOSTILE / "weights")
    code, _, stderr = _cli(capsys, "compile", "lenet5", "--weights", name, "-o", str(tmp_path / "m.onnx"))
    assert code == 0
    assert (f"warning: loaded the weights in {name} as they are, but they are not all finite; tensors with NaN or "
            "Inf values (1): c1.weight (150 of 150) (--strict-weights makes this an error)") in stderr


def test_non_finite_weights_are_an_error_with_strict_weights(capsys, tmp_path):
    from compiler.pipeline import analyse
    from compiler.weights import seeded

    a = analyse("lenet5")
    arrays = {k: v for f in a.layers for k, v in seeded(a)(f).items()}
    arrays["c3.bias"][2] = np.nan
    arrays["f6.weight"] = arrays["f6.weight"].astype(np.float64)
    arrays["f6.weight"][0, :3] = 1e300  # past float32's range: inf once converted
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    out = tmp_path / "m.onnx"
    code, _, stderr = _cli(capsys, "compile", "lenet5", "--weights", str(path), "-o", str(out), "--strict-weights")
    assert (code, stderr) == (1, f"error: the weights in {path} are not all finite: tensors with NaN or Inf values "
                                 "(2): c3.bias (1 of 16), f6.weight (3 of 10080)\n")
    assert not out.exists()
    assert _cli(capsys, "compile", "lenet5", "--weights", str(path), "-o", str(out))[0] == 0


# -- models and inputs -------------------------------------------------------------------------------
MODEL_ERRORS = {
    "empty.onnx": "error: empty.onnx: not an ONNX model (it has no graph or no opset)",
    "external_outside.onnx": "error: external_outside.onnx: not a readable ONNX model (Data of TensorProto ( tensor "
                             "name: w) should be file inside '{folder}', but '../../../../../etc/passwd' points "
                             "outside the directory.)",
    "random.onnx": "error: random.onnx: not a readable ONNX model (Error parsing message with type "
                   "'onnx.ModelProto': Wire format was corrupt)",
    "truncated.onnx": "error: truncated.onnx: not a readable ONNX model (Error parsing message with type "
                      "'onnx.ModelProto': Wire format was corrupt)",
}
INPUT_ERRORS = {
    "complex.npy": (1, "error: complex.npy: its values are complex64; the model takes real numbers (floats, or "
                       "integers and booleans, which become float32)"),
    "size_bomb.npy": (2, "error: size_bomb.npy: not a readable .npy file (an array of shape [1000000000000] and type "
                         "float32 needs 4000000000000 bytes, the file holds 16)"),
    "strings.npy": (1, "error: strings.npy: its values are <U1; the model takes real numbers (floats, or integers "
                       "and booleans, which become float32)"),
    "wrong_shape.npy": (1, "error: wrong_shape.npy: input shape [1, 3, 32, 32] does not fit the model; it expects "
                           "[batch, 1, 32, 32] (or the same without the batch for one sample)"),
}


def test_the_model_tables_cover_the_corpus():
    from test_hostile_run import RUN_CASES  # the cases of running: what runs for ever, fails or warns

    assert sorted(p.name for p in (HOSTILE / "models").iterdir()) == sorted([*MODEL_ERRORS, *INPUT_ERRORS, *RUN_CASES])


@pytest.mark.parametrize("name", sorted(MODEL_ERRORS))
def test_hostile_models(name, capsys, monkeypatch):
    folder = HOSTILE / "models"
    monkeypatch.chdir(folder)
    code, _, stderr = _cli(capsys, "run", name, "--device", "cpu")
    assert (code, stderr) == (2, MODEL_ERRORS[name].format(folder=folder) + "\n")


@pytest.mark.parametrize("name", sorted(INPUT_ERRORS))
def test_hostile_inputs(name, capsys, monkeypatch):
    monkeypatch.chdir(HOSTILE / "models")
    code, _, stderr = _cli(capsys, "run", "lenet5", "--input", name, "--device", "cpu")
    assert (code, stderr) == (INPUT_ERRORS[name][0], INPUT_ERRORS[name][1] + "\n")


@pytest.mark.parametrize("key, value", [("convspec.macs", "abc"), ("convspec.labels", "{not json"),
                                        ("convspec.labels", '"abc"'), ("convspec.preprocess", "[1, 2]"),
                                        ("convspec.preprocess", '{"mean": "x"}')])
def test_damaged_metadata(key, value, capsys, tmp_path):
    import onnx

    from compiler.build import compile_spec
    from compiler.pipeline import analyse

    model = compile_spec(analyse("lenet5")).to_model()
    entry = next((p for p in model.metadata_props if p.key == key), None) or model.metadata_props.add(key=key)
    entry.value = value
    onnx.save(model, tmp_path / "m.onnx")
    code, _, stderr = _cli(capsys, "run", str(tmp_path / "m.onnx"), "--device", "cpu")
    assert (code, stderr) == (1, f"error: the model's metadata '{key}' is damaged ({value!r}); re-export the model "
                                 "or remove that entry\n")


def test_an_image_far_larger_than_the_input_is_refused_from_its_header(capsys, tmp_path):
    from PIL import Image

    Image.new("L", (7000, 7000)).save(tmp_path / "big.png")
    code, _, stderr = _cli(capsys, "run", "lenet5", "--input", str(tmp_path / "big.png"), "--device", "cpu")
    assert (code, stderr) == (1, f"error: {tmp_path / 'big.png'}: the image is 7000x7000, far larger than the "
                                 "model's input 32x32; resize it first\n")


@pytest.mark.parametrize("dims", [(1, 0, 32, 32), (-1, -1, 32, 32)])
def test_empty_or_negative_dims_in_an_input(dims, capsys, tmp_path):
    from tests.hostile.make_corpus import _npy_header

    (tmp_path / "x.npy").write_bytes(_npy_header(dims) + bytes(4 * max(0, np.prod(dims))))
    code, _, stderr = _cli(capsys, "run", "lenet5", "--input", str(tmp_path / "x.npy"), "--device", "cpu")
    assert code in (1, 2) and stderr.startswith(f"error: {tmp_path / 'x.npy'}: "), stderr
    assert ("does not fit the model" in stderr) if 0 in dims else ("has a negative size" in stderr)


def test_non_finite_input_values_are_warned_about(capsys, tmp_path):
    x = np.zeros((1, 1, 32, 32), np.float32)
    x[0, 0, 0, :4] = np.nan
    np.save(tmp_path / "x.npy", x)
    code, _, stderr = _cli(capsys, "run", "lenet5", "--input", str(tmp_path / "x.npy"), "--device", "cpu")
    assert code == 0 and f"warning: {tmp_path / 'x.npy'}: 4 of 1024 input values are NaN or Inf" in stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
