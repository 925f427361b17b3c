"""The language past 2016 (issue #11): blocks that read their input's shape (`in.channels`),
notes naming the block instance an error is in, `accept: untiled`, stage tables numbered across
rows with per-row `rest`, `set:` paths into an extended spec, and the errors around them.

Figures come from outside the project: torchvision's own modules (their parameter counts and
state_dict keys) and the arithmetic of PyTorch's output-size formula, written out in comments.
"""

from __future__ import annotations


import pytest

from clirun import run_cli
from compiler.errors import SpecError
from compiler.pipeline import analyse, analyse_text
from compiler.zoo import SPECS_DIR
from reference import import_torchvision


def nodes(text, **kw):
    a = analyse_text(text, "spec.yaml", **kw)
    return {f.node.name: f for f in a.layers}, a


def error(text, **kw) -> str:
    with pytest.raises(SpecError) as caught:
        analyse_text(text, "spec.yaml", **kw)
    return caught.value.render()


def torchvision():
    return import_torchvision()


# -- 1. a block reads its input's shape --------------------------------------------------------
SE = """
input: [{c}, 14, 14]
blocks:
  se:                                 # squeeze-and-excitation: its width follows its input
    args: {{squeeze: null}}
    layers:
      - global_avgpool: {{keepdims: true}}
        name: avgpool
      - conv: {{filters: $squeeze, kernel: 1, activation: relu}}
        name: fc1
      - conv: {{filters: "${{in.channels}}", kernel: 1, activation: sigmoid}}
        name: fc2
      - mul:
        inputs: [input, fc2]
layers:
  - se: {{squeeze: "{squeeze}"}}
    name: se
"""


@pytest.mark.parametrize("channels, squeeze", [(96, 24), (40, 10)])
def test_a_block_width_follows_its_input_like_torchvisions_squeeze_excitation(channels, squeeze):
    torch = pytest.importorskip("torch")
    reference = torchvision().ops.SqueezeExcitation(channels, squeeze)
    by_name, a = nodes(SE.format(c=channels, squeeze=squeeze).replace(f'"{squeeze}"', str(squeeze)))
    assert a.trainable == sum(p.numel() for p in reference.parameters())
    assert {f"{n}.{w}" for n in ("se.fc1", "se.fc2") for w in ("weight", "bias")} == \
        {f"se.{k}" for k in reference.state_dict()}
    x = torch.zeros(1, channels, 14, 14)
    assert a.output_shapes == (tuple(reference(x).shape[1:]),)


INVERTED = """
input: [{c}, 8, 8]
blocks:
  residual:
    args: {{out: null, stride: 1}}
    layers:
      - conv: {{filters: $out, kernel: 3, stride: $stride, padding: 1}}
        name: conv
      - add:
        inputs: [conv, input]
        when: "${{in.channels == out and stride == 1}}"    # MobileNetV2's use_res_connect
layers:
  - residual: {{out: 16, stride: {s}}}
    name: block
"""


@pytest.mark.parametrize("channels, stride, shortcut", [(16, 1, True), (8, 1, False), (16, 2, False)])
def test_when_reads_the_input_channels(channels, stride, shortcut):
    by_name, a = nodes(INVERTED.format(c=channels, s=stride))
    assert ("block.add1" in by_name) == shortcut
    assert a.graph.outputs == (("block.add1",) if shortcut else ("block.conv",))


def test_in_height_and_width_size_a_window_to_the_map():
    by_name, _ = nodes("""
input: [8, 12, 10]
blocks:
  pool_all:
    layers:
      - avgpool: {kernel: ["${in.height}", "${in.width}"]}
        name: pool
layers:
  - conv: {filters: 4, kernel: 3}     # (12 - 3) + 1 = 10, (10 - 3) + 1 = 8
  - pool_all
""")
    assert by_name["pool_all1.pool"].node.layer.kernel == (10, 8)
    assert by_name["pool_all1.pool"].output_shape == (4, 1, 1)


def test_in_outside_a_block_says_where_it_is_allowed():
    assert error("input: [3, 8, 8]\nlayers:\n  - conv: {filters: \"${in.channels}\", kernel: 1}\n") == (
        "spec.yaml:3:21: error: layer 'conv1': 'in.channels' reads the shape of a block's input, so it can be used "
        "only inside a block's layers (in their arguments, `when` and `repeat`)")


def test_an_input_shape_not_known_yet_is_an_error_at_the_expression():
    text = """input: [3, 8, 8]
blocks:
  b:
    layers:
      - conv: {filters: "${in.channels}", kernel: 1}
layers:
  - b:
    inputs: later
  - conv: {filters: 4, kernel: 1}
    name: later
    inputs: input
"""
    assert error(text) == (
        "spec.yaml:5:25: error: layer 'b1.conv1': the block's input shape is not known here: it depends on 'later', "
        "which is defined after this point; `in.` needs the layers before the block to come first in the spec\n"
        "spec.yaml:7:5: note: in block 'b'")


@pytest.mark.parametrize("expression, message", [
    ("${in.height}", "'in.height': the block's input is [12], which has no height (only a [C, H, W] input has a "
                     "height and a width)"),
    ("${in.depth}", "'in.depth' is not a dimension of the block's input; use in.channels, in.height or in.width"),
])
def test_what_in_cannot_read(expression, message):
    text = f"""input: [12]
blocks:
  b:
    layers:
      - dense: {{units: "{expression}"}}
layers:
  - b
"""
    assert error(text) == f"spec.yaml:5:24: error: layer 'b1.dense1': {message}\nspec.yaml:7:5: note: in block 'b'"


def test_in_channels_of_a_dense_input_is_its_features():
    by_name, _ = nodes("input: [12]\nblocks:\n  b:\n    layers:\n      - dense: {units: \"${in.channels * 2}\"}\n"
                       "layers:\n  - b\n")
    assert by_name["b1.dense1"].output_shape == (24,)


def test_a_block_argument_cannot_be_called_in():
    assert error("input: [3, 8, 8]\nblocks:\n  b:\n    args: {in: 1}\n    layers: [relu]\nlayers:\n  - b\n") == (
        "spec.yaml:4:12: error: block 'b' cannot have an argument called 'in': `in.channels`, `in.height` and "
        "`in.width` read the block's input shape; choose another name")


# -- 2. notes name the block instance the user wrote -------------------------------------------
def test_a_bad_row_of_an_extended_stage_table_is_named_in_a_note(tmp_path):
    """The issue's case: `planes: -3` in a row of a spec that extends resnet50."""
    (tmp_path / "deep.yaml").write_text("""extends: resnet50
replace:
  stages:
    stages:
      block: bottleneck
      name: layer{n}
      rest: {stride: 1, downsample: false}
      table:
        - {repeat: 3, planes: 64, downsample: true}
        - {repeat: 4, planes: -3, stride: 2, downsample: true}
""")
    proc = run_cli(tmp_path, "check", "deep.yaml")
    base = SPECS_DIR / "resnet50.yaml"
    assert (proc.returncode, proc.stderr) == (1,
        f"{base}:15:25: error: layer 'layer2.0.conv1': argument 'filters' of conv must be a positive integer; got -3\n"
        "deep.yaml:10:11: note: in block 'bottleneck' (planes: -3, stride: 2, downsample: true)\n")


def test_notes_follow_the_call_chain_innermost_first_for_shape_errors_too():
    text = """input: [3, 6, 6]
blocks:
  inner:
    args: {k: 3}
    layers:
      - conv: {filters: 4, kernel: $k}
  outer:
    args: {k: 3}
    layers:
      - inner: {k: $k}
layers:
  - outer: {k: 7}
"""
    # A 7x7 kernel on a 6x6 map: PyTorch's (6 - 7)/1 + 1 = 0 rows.
    assert error(text).splitlines()[1:] == ["spec.yaml:10:9: note: in block 'inner' (k: 7)",
                                            "spec.yaml:12:5: note: in block 'outer' (k: 7)"]
    assert error(text).startswith("spec.yaml:6:36: error: layer 'outer1.inner1.conv1': kernel 7 is larger than "
                                  "the padded input height 6")


def test_summary_json_keeps_one_line_per_warning(tmp_path):
    (tmp_path / "w.yaml").write_text("input: [3, 8, 8]\nblocks:\n  b:\n    layers:\n"
                                     "      - conv: {filters: 2, kernel: 3, stride: 2}\nlayers:\n  - b\n")
    proc = run_cli(tmp_path, "summary", "w.yaml", "--format", "json")
    import json
    warnings = json.loads(proc.stdout)["warnings"]
    # (8 - 3)/2 + 1 = 3.5: row and column 7 are never read
    assert warnings == ["w.yaml:5:47: warning: layer 'b1.conv1': the window does not tile its input: "
                        "(8 - 3)/2 + 1 = 3.50; input row 7 and column 7 (0-based) are never read; change the padding "
                        "or the stride so that the window fits exactly"]
    assert proc.stderr.splitlines()[1] == "w.yaml:7:5: note: in block 'b'"


# -- 3. accept: untiled ------------------------------------------------------------------------
SQUEEZENET_STEM = """input: [3, 224, 224]
layers:
  - conv: {{filters: 96, kernel: 7, stride: 2}}   # torchvision's squeezenet1_0: (224 - 7)/2 + 1 = 109.5
    name: features.0{accept}
  - conv: {{filters: 8, kernel: 2, stride: 2}}    # (109 - 2)/2 + 1 = 54.5: not acknowledged
"""


def test_accept_keeps_a_known_untiled_window_out_of_strict(tmp_path):
    (tmp_path / "stem.yaml").write_text(SQUEEZENET_STEM.format(accept="\n    accept: untiled"))
    proc = run_cli(tmp_path, "check", "--strict", "stem.yaml")
    assert proc.returncode == 1
    assert proc.stderr == ("stem.yaml:6:43: error: layer 'conv1': the window does not tile its input: "
                           "(109 - 2)/2 + 1 = 54.50; input row 108 and column 108 (0-based) are never read; change "
                           "the padding or the stride so that the window fits exactly (an error under --strict)\n")
    (tmp_path / "stem.yaml").write_text(SQUEEZENET_STEM.format(accept="\n    accept: [untiled]")
                                        .replace("kernel: 2, stride: 2}", "kernel: 2, stride: 1}"))
    assert run_cli(tmp_path, "check", "--strict", "stem.yaml").returncode == 0
    proc = run_cli(tmp_path, "summary", "stem.yaml")
    assert proc.stderr == ("stem.yaml:3:44: note: layer 'features.0': the window does not tile its input: "
                           "(224 - 7)/2 + 1 = 109.50; input row 223 and column 223 (0-based) are never read; change "
                           "the padding or the stride so that the window fits exactly (accepted)\n")


def test_an_accept_with_nothing_to_accept_is_an_error():
    stem = SQUEEZENET_STEM.format(accept="\n    accept: untiled")
    text = stem.replace("kernel: 7, stride: 2", "kernel: 8, stride: 2")  # (224 - 8)/2 + 1 = 109: it tiles
    assert error(text) == ("spec.yaml:5:13: error: layer 'features.0': 'accept: untiled' acknowledges a window "
                           "(conv, pool, channel pool) that does not tile its input, but no layer of this item raises "
                           "that warning now; remove the 'accept'")


def test_accept_names_a_known_kind():
    text = SQUEEZENET_STEM.format(accept="\n    accept: tiled")
    assert error(text) == ("spec.yaml:5:13: error: layer 'features.0': 'layers[0].accept' must be a kind of warning, "
                           "or a list of them: 'untiled' (a window (conv, pool, channel pool) that does not tile its "
                           "input); got 'tiled'")


def test_accept_on_a_block_instance_covers_its_layers():
    text = """input: [3, 224, 224]
blocks:
  stem:
    layers:
      - conv: {filters: 96, kernel: 7, stride: 2}
      - maxpool: {kernel: 3, stride: 2, ceil_mode: true}
layers:
  - stem:
    accept: untiled
"""
    _, a = nodes(text, strict=True)
    assert a.warnings == () and [n.layer for n in a.notes] == ["stem1.conv1"]


# -- 4. stage tables: per-row rest, copies numbered across rows --------------------------------
STAGES = """input: [4, 16, 16]
blocks:
  unit:
    args: {{filters: null, stride: 1}}
    layers:
      - conv: {{filters: $filters, kernel: 3, stride: $stride, padding: 1}}
        name: conv
layers:
  - conv: {{filters: 4, kernel: 1}}
    name: features.0
  - stages:
      block: unit
      name: {name}
      number_from: 1
      rest: {{stride: 1}}
      table:
        - {{repeat: 2, filters: 8, stride: 2}}
        - {{repeat: 3, filters: 16, stride: 2, rest: {{filters: 12}}}}
"""


def test_copies_are_numbered_across_rows_and_rest_varies_per_row():
    by_name, a = nodes(STAGES.format(name="features"))
    assert [n for n in by_name if n != "features.0"] == [f"features.{k}.conv" for k in range(1, 6)]
    # stride 2 on the first copy of each row only: 16 -> 8 -> 8 -> 4 -> 4 -> 4
    assert [by_name[f"features.{k}.conv"].output_shape for k in range(1, 6)] == [
        (8, 8, 8), (8, 8, 8), (16, 4, 4), (12, 4, 4), (12, 4, 4)]


def test_number_from_needs_a_plain_prefix():
    assert error(STAGES.format(name="stage{n}")) == (
        "spec.yaml:13:13: error: with 'number_from', 'name' is the prefix of every copy (like `name: features`, "
        "giving features.1, features.2, ...), without {n} or {i}")


def test_a_left_out_item_takes_no_position_in_a_sequential():
    """As in an nn.Sequential built from a conditional list (torchvision's InvertedResidual)."""
    text = """input: [4, 8, 8]
blocks:
  b:
    args: {expand: 1}
    layers:
      - sequential:
          - conv: {filters: "${in.channels * expand}", kernel: 1}
            when: "${expand != 1}"
          - conv: {filters: 4, kernel: 3, padding: 1}
        name: conv
layers:
  - b: {expand: 1}
    name: one
  - b: {expand: 6}
    name: six
"""
    by_name, _ = nodes(text)
    assert list(by_name) == ["one.conv.0", "six.conv.0", "six.conv.1"]
    assert by_name["six.conv.0"].output_shape == (24, 8, 8)


# -- 5. extends: set ---------------------------------------------------------------------------
def test_set_changes_one_value_of_the_base(tmp_path):
    (tmp_path / "r101.yaml").write_text("extends: resnet50\nset:\n  layers/stages/stages/table/2/repeat: 23\n")
    a = analyse(str(tmp_path / "r101.yaml"))
    # torchvision's resnet101 (tests/data/torchvision_figures.json)
    assert (a.trainable, a.macs) == (44_549_160, 7_801_405_440)


@pytest.mark.parametrize("path, message", [
    ("layers/stages/stages/tabel/2/repeat", "layers/stages/stages has no 'tabel'; did you mean 'table'?"),
    ("layers/stages/stages/table/4/repeat", "layers/stages/stages/table is a list of 4 (0 to 3), with no item '4'"),
    ("layers/stagse/stages/table/2/repeat", "layers is a list of 8 (0 to 7), with no item 'stagse'; "
                                            "did you mean 'stages'?"),
    ("layers/stages/stages/table/2/repeat/x", "layers/stages/stages/table/2/repeat is the value 6, which has nothing "
                                              "inside it; set 'layers/stages/stages/table/2/repeat' itself"),
])
def test_a_set_path_that_does_not_exist_is_located(tmp_path, path, message):
    (tmp_path / "c.yaml").write_text(f"extends: resnet50\nset:\n  {path}: 23\n")
    proc = run_cli(tmp_path, "check", "c.yaml")
    assert (proc.returncode, proc.stderr) == (1, f"c.yaml:3:3: error: 'set' path '{path}': {message}\n")


def test_a_set_value_is_validated_where_it_is_written(tmp_path):
    (tmp_path / "c.yaml").write_text("extends: resnet50\nset:\n  layers/stages/stages/table/2/repeat: 0\n")
    proc = run_cli(tmp_path, "check", "c.yaml")
    assert proc.stderr == ("c.yaml:3:40: error: layer 'stages': 'layers[4].stages.table[2].repeat' must be an integer "
                           "from 1 to 10000 (or, in a layer item, a block expression); got 0\n")


def test_set_without_extends_is_an_error():
    assert error("input: [3, 8, 8]\nlayers: [relu]\nset: {layers/0: sigmoid}\n") == (
        "spec.yaml:3:1: error: 'set' changes the spec named by 'extends', and this spec extends none; add "
        "`extends: BASE`, or write the layers out")


# -- 6, 7. YAML and type errors ----------------------------------------------------------------
@pytest.mark.parametrize("line, column, text, flow", [
    ("  - conv: {filters: ${a * 2}, kernel: 3}", 21, "${a * 2}", "mapping {...}"),
    ("  - conv: [${a}, 3]", 12, "${a}", "list [...]"),
])
def test_an_unquoted_expression_in_a_flow_mapping_gets_a_hint(line, column, text, flow):
    assert error(f"input: [3, 8, 8]\nlayers:\n{line}\n") == (
        f"spec.yaml:3:{column}: error: invalid YAML: the expression {text} is unquoted inside a flow {flow}, so YAML "
        f"reads its '{{' as the start of a mapping; quote it: \"{text}\"")


def test_every_unknown_layer_type_is_reported():
    text = """input: [3, 32, 32]
blocks:
  b:
    layers:
      - batchnrom
      - sequential:
          - maxpoll: 2
layers:
  - conv2d: {filters: 4, kernel: 3}
  - stages:
      block: bottleneck
      table:
        - {repeat: 2}
  - dens: 10
"""
    assert error(text).splitlines() == [
        "spec.yaml:5:9: error: unknown layer type 'batchnrom'; did you mean 'batchnorm'?",
        "spec.yaml:7:13: error: unknown layer type 'maxpoll'; did you mean 'maxpool'?",
        "spec.yaml:9:5: error: unknown layer type 'conv2d'; did you mean 'conv'?",
        "spec.yaml:11:14: error: unknown layer type 'bottleneck'; run `convspec layers` for the list",
        "spec.yaml:14:5: error: unknown layer type 'dens'; did you mean 'dense'?",
    ]


# -- 9. MobileNet v2 under torchvision's names -------------------------------------------------
@pytest.mark.slow  # importing torchvision takes seconds
def test_mobilenet_v2_has_torchvisions_state_dict_keys():
    model = torchvision().models.mobilenet_v2(weights=None)
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    a = analyse("mobilenet_v2")
    keys = {f"{f.node.name}.{w.name}" for f in a.layers for w in f.node.layer.weights(*f.input_shapes)}
    assert keys == expected
    # torchvision adds the shortcut in 10 of the 17 blocks (stride 1 and equal channels)
    adds = {f.node.name.rsplit(".", 1)[0] for f in a.layers if f.node.type == "add"}
    assert adds == {f"features.{i}" for i, m in enumerate(model.features) if getattr(m, "use_res_connect", False)}


def test_a_layer_that_fails_before_a_block_reads_its_shape_is_reported_as_itself():
    text = """input: [3, 6, 6]
blocks:
  b:
    layers:
      - conv: {filters: "${in.channels}", kernel: 1}
layers:
  - conv: {filters: 4, kernel: 7}
  - b
"""
    # PyTorch's (6 - 7)/1 + 1 = 0 rows: the stem's own error, with no note of the block after it
    assert error(text).startswith("spec.yaml:7:32: error: layer 'conv1': kernel 7 is larger than the padded input "
                                  "height 6")
    assert "note" not in error(text)


def test_a_value_set_into_a_base_row_is_the_line_the_note_names(tmp_path):
    (tmp_path / "r.yaml").write_text("extends: resnet101\nset:\n  layers/stages/stages/table/2/planes: -3\n")
    proc = run_cli(tmp_path, "check", "r.yaml")
    assert proc.stderr.splitlines() == [
        f"{SPECS_DIR / 'resnet50.yaml'}:15:25: error: layer 'layer3.0.conv1': argument 'filters' of conv must be a "
        "positive integer; got -3",
        "r.yaml:3:40: note: in block 'bottleneck' (planes: -3, stride: 2, downsample: true)"]
