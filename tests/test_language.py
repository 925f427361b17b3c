"""The spec language: names, wiring, defaults, blocks, expressions, repeats, stages, when, expect."""

import pytest

from compiler.errors import SpecError
from compiler.expr import ExprError, evaluate
from compiler.pipeline import analyse_text


def nodes(text):
    a = analyse_text(text)
    return {f.node.name: f for f in a.layers}, a


def test_auto_names_are_keras_style_and_skip_explicit_ones():
    by_name, _ = nodes("""
input: [3, 8, 8]
layers:
  - conv: {filters: 4, kernel: 3}
  - relu
  - conv: {filters: 4, kernel: 3}
    name: conv2
  - conv: {filters: 4, kernel: 1}
""")
    assert list(by_name) == ["conv1", "relu1", "conv2", "conv3"]


def test_sequential_names_by_position_and_prefixes():
    by_name, _ = nodes("""
input: [3, 8, 8]
layers:
  - sequential:
      - conv: {filters: 4, kernel: 3}
      - relu
      - conv: {filters: 4, kernel: 3}
        name: last
    name: features
""")
    assert list(by_name) == ["features.0", "features.1", "features.last"]


def test_defaults_apply_below_item_arguments():
    by_name, _ = nodes("""
input: [3, 8, 8]
defaults:
  conv: {kernel: 3, padding: 1, bias: false}
layers:
  - conv: {filters: 4}
  - conv: {filters: 4, bias: true}
""")
    assert by_name["conv1"].params == 3 * 4 * 9          # no bias from defaults
    assert by_name["conv2"].params == 4 * 4 * 9 + 4      # the item's own bias wins
    assert by_name["conv1"].output_shape == (4, 8, 8)    # padding 1 from defaults


BLOCK_SPEC = """
input: [8, 16, 16]
blocks:
  unit:
    args: {width: null, stride: 1, project: false}
    layers:
      - conv: {filters: "${width * 2}", kernel: 3, stride: $stride, padding: 1}
        name: conv
      - conv: {filters: "${width * 2}", kernel: 1, stride: $stride}
        name: proj
        inputs: input
        when: $project
      - add:
        inputs: [conv, proj]
layers:
  - unit: {width: 4, stride: 2, project: true}
    repeat: 3
    rest: {stride: 1, project: false}
    name: stage
    expect: {output: [8, 8, 8]}
"""


def test_block_repeat_rest_and_when():
    by_name, a = nodes(BLOCK_SPEC)
    # only the first copy strides and projects; later copies add their input directly
    assert "stage.0.proj" in by_name and "stage.1.proj" not in by_name
    assert by_name["stage.0.conv"].output_shape == (8, 8, 8)
    assert by_name["stage.1.add1"].node.inputs == ("stage.1.conv", "stage.0.add1")
    assert a.output_shapes == ((8, 8, 8),)


def test_expect_on_a_repeat_sums_over_every_copy():
    text = BLOCK_SPEC.replace("expect: {output: [8, 8, 8]}",
                              "expect: {output: [8, 8, 8], params: 1}")
    with pytest.raises(SpecError) as e:
        analyse_text(text)
    # 3 convs of 8*8*9+8 = 584, one projection 8*8+8 = 72
    assert "params is 1,824, the spec expects 1" in str(e.value)


def test_name_patterns_number_copies():
    by_name, _ = nodes("""
input: [4, 8, 8]
layers:
  - conv: {filters: 4, kernel: 1}
    repeat: 3
    name: dense{n}
""")
    assert list(by_name) == ["dense1", "dense2", "dense3"]


def test_stage_table_lands_in_the_enclosing_scope():
    by_name, _ = nodes("""
input: [4, 8, 8]
blocks:
  b:
    args: {f: null}
    layers:
      - conv: {filters: $f, kernel: 1}
        name: c
layers:
  - stages:
      block: b
      name: layer{n}
      table:
        - {repeat: 2, f: 4}
        - {repeat: 1, f: 8}
""")
    assert list(by_name) == ["layer1.0.c", "layer1.1.c", "layer2.0.c"]
    assert by_name["layer2.0.c"].output_shape == (8, 8, 8)


def test_forward_references_are_ordered_topologically():
    by_name, a = nodes("""
input: [4, 8, 8]
layers:
  - add:
    inputs: [left, right]
  - conv: {filters: 4, kernel: 1}
    name: left
    inputs: input
  - conv: {filters: 4, kernel: 1}
    name: right
    inputs: input
outputs: add1
""")
    assert [f.node.name for f in a.layers] == ["left", "right", "add1"]


def test_block_output_key_and_referring_to_inner_layers():
    by_name, a = nodes("""
input: [4, 8, 8]
blocks:
  b:
    args: {}
    output: first
    layers:
      - conv: {filters: 6, kernel: 1}
        name: first
      - conv: {filters: 2, kernel: 1}
        name: second
layers:
  - b:
    name: blk
  - concat:
    inputs: [blk, blk.second]
""")
    assert by_name["concat1"].output_shape == (8, 8, 8)
    assert a.warnings == ()


def test_unused_layer_is_a_warning():
    _, a = nodes("""
input: [4, 8, 8]
layers:
  - conv: {filters: 4, kernel: 1}
    name: dangling
  - conv: {filters: 4, kernel: 1}
    inputs: input
""")
    assert [w.layer for w in a.warnings] == ["dangling"]


def test_skipping_every_layer_is_an_error():
    with pytest.raises(SpecError, match="output is its own input: no layer is used"):
        analyse_text("input: [4, 8, 8]\nlayers:\n  - {relu: null, when: false}\n")


@pytest.mark.parametrize("text, scope, value", [
    ("$a", {"a": 3}, 3),
    ("${a * 4 + 1}", {"a": 3}, 13),
    ("${planes * base // 64 * groups}", {"planes": 64, "base": 4, "groups": 32}, 128),
    ("${a if b else 7}", {"a": 1, "b": False}, 7),
    ("${a >= 2 and not b}", {"a": 2, "b": False}, True),
    ("${-a % 5}", {"a": 3}, 2),
])
def test_expressions(text, scope, value):
    assert evaluate(text, scope) == value


@pytest.mark.parametrize("text, message", [
    ("${__import__('os')}", "not allowed"),
    ("${a.b}", "not allowed"),
    ("${a ** 2}", "not allowed"),
    ("${a[0]}", "not allowed"),
    ("${c}", "unknown block argument 'c'"),
    ("${a / 0}", "division by zero"),
    ("${a +}", "cannot parse"),
    ("${10000000 * 10000000 * 100}", "out of range"),
])
def test_expression_errors(text, message):
    with pytest.raises(ExprError, match=message):
        evaluate(text, {"a": 1})


def test_arguments_found_valid_once_are_not_confused_with_lookalikes():
    # Valid arguments are remembered so a repeat's copies are validated once; 1 must not pass
    # for true, nor 1.0 for an integer, because they compare equal in Python.
    analyse_text("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 4, kernel: 3, bias: true}\n    repeat: 3\n")
    with pytest.raises(SpecError, match="argument 'bias' of conv must be true or false; got 1"):
        analyse_text("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 4, kernel: 3, bias: 1}\n")
    analyse_text("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 4, kernel: 3}\n")
    with pytest.raises(SpecError, match="argument 'filters' of conv must be a positive integer"):
        analyse_text("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 4.0, kernel: 3}\n")
