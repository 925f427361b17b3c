"""Per-layer figures, table-driven, every expected number worked out by hand.

Conventions the expected figures follow (never taken from the code under test):
  - output size: PyTorch's rule, floor((n + pad_begin + pad_end - d*(k-1) - 1)/s) + 1; with
    ceil_mode the floor is a ceiling and a last window starting in the end padding is dropped;
  - 'same': TensorFlow's rule, out = ceil(n/s), total pad = max((out-1)*s + k_eff - n, 0), the odd
    extra pixel at the end;
  - params: PyTorch's (weight + bias), Keras' SeparableConv2D (depthwise k*k*C*m, pointwise
    C*m*F, bias F), BatchNorm's running mean/var as non-trainable;
  - MACs: torchvision's convention, conv and dense multiply-accumulates only.

Each row builds a tiny spec, runs it through `analyse_text`, and reads the figures of the layer
named `t`.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

import compiler.layers  # noqa: F401  (fills the registry)
from compiler.errors import SpecError
from compiler.pipeline import analyse_text
from compiler.registry import REGISTRY

# --------------------------------------------------------------------------------------------
# helpers


def _arg_text(args) -> str:
    """A layer's value in YAML: JSON is valid YAML flow style; None is a bare `type:`."""
    return "null" if args is None else json.dumps(args)


def single_spec(type_, args, in_shape) -> str:
    return "\n".join([
        f"input: {json.dumps(list(in_shape))}",
        "layers:",
        f"  - {type_}: {_arg_text(args)}",
        "    name: t",
        "",
    ])


def merge_spec(type_, args, shapes) -> str:
    """A spec whose layer `t` merges branches of the given shapes.

    Equal shapes: the spec input itself (the special name `input`) plus identity branches.
    Different channels, same H and W: 1x1 convs (no bias) from a one-channel input.
    Different features (1-D): dense layers from a one-feature input.
    Different heights, same C and W: identity plus convs of kernel [dh + 1, 1].
    """
    shapes = [tuple(s) for s in shapes]
    lines, names = [], []
    if len(set(shapes)) == 1:
        spec_in = shapes[0]
        names.append("input")
        for i in range(1, len(shapes)):
            lines += ["  - identity:", f"    name: b{i}", "    inputs: input"]
            names.append(f"b{i}")
    elif all(len(s) == 3 for s in shapes) and len({s[1:] for s in shapes}) == 1:
        spec_in = (1,) + shapes[0][1:]
        for i, s in enumerate(shapes):
            lines += [f"  - conv: {{filters: {s[0]}, kernel: 1, bias: false}}", f"    name: b{i}",
                      "    inputs: input"]
            names.append(f"b{i}")
    elif all(len(s) == 1 for s in shapes):
        spec_in = (1,)
        for i, s in enumerate(shapes):
            lines += [f"  - dense: {s[0]}", f"    name: b{i}", "    inputs: input"]
            names.append(f"b{i}")
    else:
        c, w = shapes[0][0], shapes[0][2]
        assert all(s[0] == c and s[2] == w for s in shapes)
        hmax = max(s[1] for s in shapes)
        spec_in = (c, hmax, w)
        for i, s in enumerate(shapes):
            if s[1] == hmax:
                lines += ["  - identity:", f"    name: b{i}", "    inputs: input"]
            else:
                lines += [f"  - conv: {{filters: {c}, kernel: [{hmax - s[1] + 1}, 1]}}", f"    name: b{i}",
                          "    inputs: input"]
            names.append(f"b{i}")
    lines += [f"  - {type_}: {_arg_text(args)}", "    name: t", f"    inputs: {json.dumps(names)}"]
    return "\n".join([f"input: {json.dumps(list(spec_in))}", "layers:"] + lines + [""])


def figures(analysis, name="t"):
    for f in analysis.layers:
        if f.node.name == name:
            return f
    raise AssertionError(f"no layer named {name!r} in {[f.node.name for f in analysis.layers]}")


def run_single(type_, args, in_shape, strict=False):
    return analyse_text(single_spec(type_, args, in_shape), "<test>", strict)


def layer_of(type_, args, in_shape):
    return figures(run_single(type_, args, in_shape))


def chain(in_shape, *items) -> str:
    """A spec text from (type, args) pairs, wired in order; the i-th is named l{i}."""
    lines = [f"input: {json.dumps(list(in_shape))}", "layers:"]
    for i, (type_, args) in enumerate(items, 1):
        lines += [f"  - {type_}: {_arg_text(args)}", f"    name: l{i}"]
    return "\n".join(lines + [""])


# --------------------------------------------------------------------------------------------
# the table: (id, type, args, input shape, output shape, trainable, non-trainable, MACs)

ROWS = [
    # ---- conv: params = kh*kw*(C/groups)*F + F; MACs = out numel * (C/groups) * kh * kw
    # (227-11)/4+1 = 55; 11*11*3*96 + 96 = 34,944; 55*55*96 * 11*11*3 = 290,400 * 363
    ("conv-alexnet1", "conv", {"filters": 96, "kernel": 11, "stride": 4}, (3, 227, 227),
     (96, 55, 55), 34_944, 0, 105_415_200),
    # same, s1: ceil(32/1) = 32; 3*3*16*32 + 32 = 4,640; 32*32*32 * 16*9 = 32,768 * 144
    ("conv-same-s1", "conv", {"filters": 32, "kernel": 3, "padding": "same"}, (16, 32, 32),
     (32, 32, 32), 4_640, 0, 4_718_592),
    # same, s2, even input: ceil(224/2) = 112 (pads 0 top/left, 1 bottom/right); 3*3*3*8 + 8 = 224;
    # 8*112*112 * 27 = 100,352 * 27
    ("conv-same-s2-even", "conv", {"filters": 8, "kernel": 3, "stride": 2, "padding": "same"}, (3, 224, 224),
     (8, 112, 112), 224, 0, 2_709_504),
    # same, s2, odd input: ceil(225/2) = 113; 224 params; 8*113*113 * 27 = 102,152 * 27
    ("conv-same-s2-odd", "conv", {"filters": 8, "kernel": 3, "stride": 2, "padding": "same"}, (3, 225, 225),
     (8, 113, 113), 224, 0, 2_758_104),
    # ResNet conv1: (224+6-7)//2+1 = 112; 7*7*3*64 = 9,408 (no bias); 64*112*112 * 147 = 802,816 * 147
    ("conv-resnet1", "conv", {"filters": 64, "kernel": 7, "stride": 2, "padding": 3, "bias": False},
     (3, 224, 224), (64, 112, 112), 9_408, 0, 118_013_952),
    # dilation 2: k_eff = 2*(3-1)+1 = 5, 32-5+1 = 28; 3*3*8*8 + 8 = 584; 8*28*28 * 8*9 = 6,272 * 72
    ("conv-dilated", "conv", {"filters": 8, "kernel": 3, "dilation": 2}, (8, 32, 32),
     (8, 28, 28), 584, 0, 451_584),
    # dilation 2, same: total pad k_eff-1 = 4, 16 -> 16; 3*3*4*4 + 4 = 148; 4*16*16 * 4*9 = 1,024 * 36
    ("conv-dilated-same", "conv", {"filters": 4, "kernel": 3, "dilation": 2, "padding": "same"}, (4, 16, 16),
     (4, 16, 16), 148, 0, 36_864),
    # dilation 3, stride 2: k_eff = 7, (15-7)//2+1 = 5; 9 + 1 = 10; 5*5 * 9 = 225
    ("conv-dilated-s2", "conv", {"filters": 1, "kernel": 3, "dilation": 3, "stride": 2}, (1, 15, 15),
     (1, 5, 5), 10, 0, 225),
    # groups 4: (16+2-3)+1 = 16; 3*3*(32/4)*64 + 64 = 4,608 + 64; 64*16*16 * 8*9 = 16,384 * 72
    ("conv-groups4", "conv", {"filters": 64, "kernel": 3, "padding": 1, "groups": 4}, (32, 16, 16),
     (64, 16, 16), 4_672, 0, 1_179_648),
    # AlexNet's two-tower conv2: (27+4-5)+1 = 27; 5*5*48*256 + 256 = 307,456;
    # 256*27*27 * 48*25 = 186,624 * 1,200
    ("conv-alexnet2-groups2", "conv", {"filters": 256, "kernel": 5, "padding": 2, "groups": 2}, (96, 27, 27),
     (256, 27, 27), 307_456, 0, 223_948_800),
    # padding [t,l,b,r] = [1,2,3,4]: H 10+1+3-3+1 = 12, W 10+2+4-3+1 = 14; 3*3*1*2 + 2 = 20; 2*12*14 * 9
    ("conv-pad-tlbr", "conv", {"filters": 2, "kernel": 3, "padding": [1, 2, 3, 4]}, (1, 10, 10),
     (2, 12, 14), 20, 0, 3_024),
    # padding [h,w] = [1,0]: H 5+2-3+1 = 5, W 5-3+1 = 3; 9 + 1 = 10; 5*3 * 9 = 135
    ("conv-pad-hw", "conv", {"filters": 1, "kernel": 3, "padding": [1, 0]}, (1, 5, 5),
     (1, 5, 3), 10, 0, 135),
    # kernel [3,5], stride [1,2]: H 32-3+1 = 30, W (48-5)//2+1 = 22; 3*5*3*6 + 6 = 276; 6*30*22 * 3*15 = 3,960 * 45
    ("conv-rect", "conv", {"filters": 6, "kernel": [3, 5], "stride": [1, 2]}, (3, 32, 48),
     (6, 30, 22), 276, 0, 178_200),
    # ResNet 1x1 s2 projection: (56-1)//2+1 = 28; 64*128 = 8,192 (no bias); 128*28*28 * 64 = 100,352 * 64
    ("conv-1x1-s2", "conv", {"filters": 128, "kernel": 1, "stride": 2, "bias": False}, (64, 56, 56),
     (128, 28, 28), 8_192, 0, 6_422_528),
    # an activation shorthand adds no parameters: (8-3)+1 = 6; 3*3*1*4 + 4 = 40; 4*6*6 * 9 = 1,296
    ("conv-relu", "conv", {"filters": 4, "kernel": 3, "activation": "relu"}, (1, 8, 8),
     (4, 6, 6), 40, 0, 1_296),

    # ---- conv_transpose: out = (n-1)*s - 2p + d*(k-1) + op + 1; params C*(F/g)*kh*kw + F;
    #      MACs = input numel * (F/g) * kh*kw (every multiply of the scatter)
    # U-Net up-step: (28-1)*2 + 1 + 1 = 56; 1024*512*4 + 512 = 2,097,664; 1024*28*28 * 512*4
    ("convt-unet", "conv_transpose", {"filters": 512, "kernel": 2, "stride": 2}, (1024, 28, 28),
     (512, 56, 56), 2_097_664, 0, 1_644_167_168),
    # k3 s2 p1 op1: (5-1)*2 - 2 + 2 + 1 + 1 = 10; 6*4*9 + 4 = 220; 6*5*6 * 4*9 = 180 * 36
    ("convt-op", "conv_transpose", {"filters": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1},
     (6, 5, 6), (4, 10, 12), 220, 0, 6_480),
    # groups 3, d [1,2], s [2,3]: H (4-1)*2 - 2 + 2 + 1 + 1 = 8, W (5-1)*3 - 4 + 6 + 2 + 1 = 17;
    # 6*2*3*4 + 6 = 150; 6*4*5 * 2*12 = 2,880
    ("convt-groups", "conv_transpose", {"filters": 6, "kernel": [3, 4], "stride": [2, 3], "padding": [1, 2],
                                        "output_padding": [1, 2], "dilation": [1, 2], "groups": 3},
     (6, 4, 5), (6, 8, 17), 150, 0, 2_880),

    # ---- upsample: no params, no MACs; out = floor(n * scale) or the size given
    ("up-nearest-2", "upsample", 2, (64, 14, 14), (64, 28, 28), 0, 0, 0),
    # floor(5*1.5) = 7, floor(6*1.5) = 9
    ("up-bilinear-frac", "upsample", {"scale": 1.5, "mode": "bilinear"}, (3, 5, 6), (3, 7, 9), 0, 0, 0),
    # floor(5*2.5) = 12, floor(6*0.7) = 4
    ("up-bicubic-hw", "upsample", {"scale": [2.5, 0.7], "mode": "bicubic", "align_corners": True}, (3, 5, 6),
     (3, 12, 4), 0, 0, 0),
    ("up-size", "upsample", {"size": [7, 11], "mode": "bilinear"}, (2, 5, 6), (2, 7, 11), 0, 0, 0),

    # ---- depthwise_conv: params = C*m*k*k (+ C*m bias); MACs = out numel * k*k
    # MobileNet dw: (112+2-3)+1 = 112; 32*3*3 + 32 = 320; 32*112*112 * 9 = 401,408 * 9
    ("dw-mobilenet", "depthwise_conv", {"kernel": 3, "padding": 1}, (32, 112, 112),
     (32, 112, 112), 320, 0, 3_612_672),
    # multiplier 2, s2, no bias: (28+2-3)//2+1 = 14, 16*2 = 32 channels; 32*9 = 288; 32*14*14 * 9 = 6,272 * 9
    ("dw-mult2-s2", "depthwise_conv", {"kernel": 3, "stride": 2, "padding": 1, "multiplier": 2, "bias": False},
     (16, 28, 28), (32, 14, 14), 288, 0, 56_448),

    # ---- separable_conv (Keras SeparableConv2D): k*k*C*m + C*m*F + F;
    #      MACs = H'W' * C*m * k*k + H'W' * C*m * F
    # 3*3*32 + 32*64 + 64 = 288 + 2,048 + 64 = 2,400; 3,136*288 + 3,136*2,048 = 903,168 + 6,422,528
    ("sep-same", "separable_conv", {"filters": 64, "kernel": 3, "padding": "same"}, (32, 56, 56),
     (64, 56, 56), 2_400, 0, 7_325_696),
    # multiplier 2, no bias: 10-3+1 = 8; 3*3*3*2 + 6*4 = 54 + 24 = 78; 64*6*9 + 64*6*4 = 3,456 + 1,536
    ("sep-mult2", "separable_conv", {"filters": 4, "kernel": 3, "multiplier": 2, "bias": False}, (3, 10, 10),
     (4, 8, 8), 78, 0, 4_992),
    # Xception block2_sepconv1 (Keras summary: 8,768): 3*3*64 + 64*128 = 576 + 8,192 (no bias);
    # 147*147 = 21,609; 21,609*576 + 21,609*8,192 = 12,446,784 + 177,020,928
    ("sep-xception", "separable_conv", {"filters": 128, "kernel": 3, "padding": "same", "bias": False},
     (64, 147, 147), (128, 147, 147), 8_768, 0, 189_467_712),

    # ---- spatial_separable_conv: kh x 1 conv C -> mid, then 1 x kw conv mid -> F (+ F bias);
    #      MACs = H'*W*mid*C*kh + H'*W'*F*mid*kw
    # deck 002's rank-1 5x5: 100-5+1 = 96; 5*1*3*100 + 1*5*100*100 + 100 = 1,500 + 50,000 + 100;
    # 96*100*100*3*5 + 96*96*100*100*5 = 14,400,000 + 460,800,000
    ("sss-deck002", "spatial_separable_conv", {"filters": 100, "kernel": 5}, (3, 100, 100),
     (100, 96, 96), 51_600, 0, 475_200_000),
    # 3x3 as 3x1 then 1x3, one channel, mid 1, no bias: 7-3+1 = 5; 3 + 3 = 6; 5*7*3 + 5*5*3 = 105 + 75
    ("sss-mid1", "spatial_separable_conv", {"filters": 1, "kernel": 3, "mid": 1, "bias": False}, (1, 7, 7),
     (1, 5, 5), 6, 0, 180),
    # s2 p1, mid 3: (9+2-3)//2+1 = 5; 3*1*2*3 + 1*3*3*4 + 4 = 18 + 36 + 4; 5*9*3*2*3 + 5*5*4*3*3 = 810 + 900
    ("sss-s2", "spatial_separable_conv", {"filters": 4, "kernel": 3, "stride": 2, "padding": 1, "mid": 3},
     (2, 9, 9), (4, 5, 5), 58, 0, 1_710),

    # ---- maxpool (no params, no MACs)
    # AlexNet pool1: (55-3)//2+1 = 27
    ("max-alexnet1", "maxpool", {"kernel": 3, "stride": 2}, (96, 55, 55), (96, 27, 27), 0, 0, 0),
    # shorthand, stride defaults to the kernel: 224/2 = 112
    ("max-shorthand", "maxpool", 2, (64, 224, 224), (64, 112, 112), 0, 0, 0),
    # ceil_mode: ceil((112-3)/2)+1 = ceil(54.5)+1 = 56 (floor would give 55); last start 110 < 112
    ("max-ceil-112", "maxpool", {"kernel": 3, "stride": 2, "ceil_mode": True}, (64, 112, 112),
     (64, 56, 56), 0, 0, 0),
    # GoogLeNet: ceil((56-3)/2)+1 = ceil(26.5)+1 = 28 (floor: 27)
    ("max-ceil-56", "maxpool", {"kernel": 3, "stride": 2, "ceil_mode": True}, (192, 56, 56),
     (192, 28, 28), 0, 0, 0),
    # ceil_mode, the last window must start inside: ceil((5+2-2)/2)+1 = 4, but (4-1)*2 = 6 >= 5+1,
    # so that window would start in the end padding and is dropped -> 3
    ("max-ceil-drop", "maxpool", {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 5, 5),
     (1, 3, 3), 0, 0, 0),
    # ResNet maxpool: (112+2-3)//2+1 = 56
    ("max-resnet", "maxpool", {"kernel": 3, "stride": 2, "padding": 1}, (64, 112, 112),
     (64, 56, 56), 0, 0, 0),
    # 'same' s2: ceil(8/2) = 4 (total pad (4-1)*2+3-8 = 1, at the end)
    ("max-same-s2", "maxpool", {"kernel": 3, "stride": 2, "padding": "same"}, (8, 8, 8), (8, 4, 4), 0, 0, 0),
    # deck 002: (96-3)//3+1 = 32
    ("max-deck002", "maxpool", {"kernel": 3, "stride": 3}, (100, 96, 96), (100, 32, 32), 0, 0, 0),

    # ---- avgpool
    # 8/2 = 4
    ("avg-k2", "avgpool", {"kernel": 2}, (16, 8, 8), (16, 4, 4), 0, 0, 0),
    # (7+2-3)//2+1 = 4
    ("avg-pad-nocount", "avgpool", {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False},
     (16, 7, 7), (16, 4, 4), 0, 0, 0),
    # ceil: ceil(5/2)+1 = 4, last start 6 >= 5+1 -> 3
    ("avg-ceil-drop", "avgpool", {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (3, 5, 5),
     (3, 3, 3), 0, 0, 0),
    # GoogLeNet aux head: (14-5)//3+1 = 4
    ("avg-googlenet-aux", "avgpool", {"kernel": 5, "stride": 3}, (512, 14, 14), (512, 4, 4), 0, 0, 0),

    # ---- l2pool
    # 6/2 = 3
    ("l2-k2", "l2pool", {"kernel": 2}, (8, 6, 6), (8, 3, 3), 0, 0, 0),
    # (6+2-3)+1 = 6
    ("l2-k3-s1-p1", "l2pool", {"kernel": 3, "stride": 1, "padding": 1}, (8, 6, 6), (8, 6, 6), 0, 0, 0),

    # ---- l2pool_channels: channels (C - size)//stride + 1
    # (8-2)//2+1 = 4
    ("l2c-size2", "l2pool_channels", {"size": 2}, (8, 4, 4), (4, 4, 4), 0, 0, 0),
    # (8-3)//1+1 = 6
    ("l2c-size3-s1", "l2pool_channels", {"size": 3, "stride": 1}, (8, 4, 4), (6, 4, 4), 0, 0, 0),
    # flat input, shorthand: (10-2)//2+1 = 5
    ("l2c-flat", "l2pool_channels", 2, (10,), (5,), 0, 0, 0),

    # ---- global pooling
    ("gap-keep", "global_avgpool", None, (512, 7, 7), (512, 1, 1), 0, 0, 0),
    ("gap-flat", "global_avgpool", {"keepdims": False}, (512, 7, 7), (512,), 0, 0, 0),
    ("gmp-keep", "global_maxpool", {"keepdims": True}, (256, 13, 13), (256, 1, 1), 0, 0, 0),
    ("gmp-flat", "global_maxpool", {"keepdims": False}, (256, 13, 13), (256,), 0, 0, 0),

    # ---- adaptive pooling: the output size is whatever is asked, divisible or not
    # 10 -> 3 (bins [0,4) [3,7) [6,10))
    ("aap-10-3", "adaptive_avgpool", 3, (2, 10, 10), (2, 3, 3), 0, 0, 0),
    # torchvision ResNet/VGG style, already the right size
    ("aap-7-7", "adaptive_avgpool", {"output_size": 7}, (512, 7, 7), (512, 7, 7), 0, 0, 0),
    # [h, w] = [2, 5] from 8x10
    ("aap-rect", "adaptive_avgpool", {"output_size": [2, 5]}, (3, 8, 10), (3, 2, 5), 0, 0, 0),
    ("amp-10-3", "adaptive_maxpool", {"output_size": [3, 3]}, (2, 10, 10), (2, 3, 3), 0, 0, 0),
    ("amp-to-1", "adaptive_maxpool", 1, (64, 13, 13), (64, 1, 1), 0, 0, 0),
    # PyTorch allows an output larger than the input (bins overlap): 3 -> 5
    ("amp-up", "adaptive_maxpool", 5, (1, 3, 3), (1, 5, 5), 0, 0, 0),

    # ---- normalisation
    # batchnorm: weight + bias = 2*64 trainable, running mean + var = 2*64 non-trainable
    ("bn-2d", "batchnorm", None, (64, 112, 112), (64, 112, 112), 128, 128, 0),
    # flat: 2*4,096 each
    ("bn-1d", "batchnorm", {"eps": 0.001, "momentum": 0.01}, (4096,), (4096,), 8_192, 8_192, 0),
    ("lrn-alexnet", "lrn", {"size": 5, "alpha": 0.0005, "beta": 0.75, "k": 2}, (96, 55, 55),
     (96, 55, 55), 0, 0, 0),
    ("lcn-full", "lcn", {"size": 9}, (3, 32, 32), (3, 32, 32), 0, 0, 0),
    ("lcn-shorthand", "lcn", 5, (1, 8, 8), (1, 8, 8), 0, 0, 0),
    ("lcn-subtractive", "lcn", {"size": 3, "mode": "subtractive", "across_channels": False}, (4, 6, 6),
     (4, 6, 6), 0, 0, 0),
    # ConvNeXt-T's stem LayerNorm2d(96): weight + bias = 2*96; torch.nn.LayerNorm(10, elementwise_affine=False): 0
    ("layernorm-2d", "layernorm", {"eps": 1e-6}, (96, 56, 56), (96, 56, 56), 192, 0, 0),
    ("layernorm-flat", "layernorm", {"affine": False}, (10,), (10,), 0, 0, 0),
    # nn.GroupNorm(32, 256): 2*256
    ("groupnorm-32", "groupnorm", 32, (256, 14, 14), (256, 14, 14), 512, 0, 0),
    # nn.InstanceNorm2d(64): nothing; affine: 2*64; track_running_stats: 2*64 buffers
    ("instancenorm", "instancenorm", None, (64, 8, 8), (64, 8, 8), 0, 0, 0),
    ("instancenorm-affine-stats", "instancenorm", {"affine": True, "track_running_stats": True}, (64, 8, 8),
     (64, 8, 8), 128, 128, 0),
    # ConvNeXt-T's layer_scale of shape (96, 1, 1)
    ("layer-scale", "layer_scale", None, (96, 56, 56), (96, 56, 56), 96, 0, 0),

    # ---- activations: shape in = shape out, nothing else
    ("relu", "relu", None, (64, 8, 8), (64, 8, 8), 0, 0, 0),
    ("leaky-relu", "leaky_relu", 0.2, (64, 8, 8), (64, 8, 8), 0, 0, 0),
    ("sigmoid", "sigmoid", None, (10,), (10,), 0, 0, 0),
    ("tanh", "tanh", None, (6, 28, 28), (6, 28, 28), 0, 0, 0),
    ("softmax", "softmax", {"axis": 0}, (1000,), (1000,), 0, 0, 0),
    ("linear", "linear", None, (3, 4, 4), (3, 4, 4), 0, 0, 0),
    ("relu6", "relu6", None, (32, 8, 8), (32, 8, 8), 0, 0, 0),
    ("hardtanh", "hardtanh", {"min_val": -2, "max_val": 2}, (4, 5, 5), (4, 5, 5), 0, 0, 0),
    ("hardsigmoid", "hardsigmoid", None, (16, 1, 1), (16, 1, 1), 0, 0, 0),
    ("hardswish", "hardswish", None, (16, 7, 7), (16, 7, 7), 0, 0, 0),
    ("silu", "silu", None, (10,), (10,), 0, 0, 0),
    ("gelu", "gelu", None, (8, 4, 4), (8, 4, 4), 0, 0, 0),
    ("gelu-tanh", "gelu", {"approximate": "tanh"}, (10,), (10,), 0, 0, 0),
    ("elu", "elu", 0.5, (3, 4, 4), (3, 4, 4), 0, 0, 0),
    ("selu", "selu", None, (10,), (10,), 0, 0, 0),
    ("softplus", "softplus", {"beta": 2, "threshold": 10}, (3, 4, 4), (3, 4, 4), 0, 0, 0),
    ("mish", "mish", None, (3, 4, 4), (3, 4, 4), 0, 0, 0),
    # prelu: one learned slope per channel (64), or one shared; features count as channels
    ("prelu", "prelu", None, (64, 8, 8), (64, 8, 8), 64, 0, 0),
    ("prelu-shared", "prelu", {"shared": True}, (64, 8, 8), (64, 8, 8), 1, 0, 0),
    ("prelu-flat", "prelu", None, (10,), (10,), 10, 0, 0),

    # ---- dense: params = in*units + units; MACs = in*units
    # AlexNet fc6: 9,216*4,096 + 4,096 = 37,748,736 + 4,096
    ("dense-fc6", "dense", {"units": 4096, "activation": "relu"}, (9216,), (4096,), 37_752_832, 0, 37_748_736),
    # shorthand: 4,096*1,000 + 1,000
    ("dense-shorthand", "dense", 1000, (4096,), (1000,), 4_097_000, 0, 4_096_000),
    # ConvNeXt-T's block.3, nn.Linear(96, 384) at each of 56*56 pixels: 96*384 + 384; 56*56*96*384
    ("dense-per-pixel", "dense", {"units": 384, "per_pixel": True}, (96, 56, 56), (384, 56, 56), 37_248, 0,
     115_605_504),
    # no bias: 10*3 = 30
    ("dense-nobias", "dense", {"units": 3, "bias": False}, (10,), (3,), 30, 0, 30),

    # ---- structure
    # 256*6*6 = 9,216
    ("flatten", "flatten", None, (256, 6, 6), (9216,), 0, 0, 0),
    ("flatten-flat", "flatten", None, (10,), (10,), 0, 0, 0),
    ("dropout-shorthand", "dropout", 0.5, (4096,), (4096,), 0, 0, 0),
    ("dropout-spatial", "dropout", {"rate": 0.2}, (3, 8, 8), (3, 8, 8), 0, 0, 0),
    ("stochastic-depth", "stochastic_depth", {"rate": 0.1, "mode": "batch"}, (3, 8, 8), (3, 8, 8), 0, 0, 0),
    ("identity", "identity", None, (3, 8, 8), (3, 8, 8), 0, 0, 0),
    # ResNet option A: 32/2 = 16
    ("zps-even", "zero_pad_shortcut", {"channels": 32, "stride": 2}, (16, 32, 32), (32, 16, 16), 0, 0, 0),
    # odd sizes round up (every 2nd row of 7 is rows 0,2,4,6): ceil(7/2) = 4
    ("zps-odd", "zero_pad_shortcut", 32, (16, 7, 7), (32, 4, 4), 0, 0, 0),
    # stride 3: ceil(10/3) = 4, ceil(11/3) = 4
    ("zps-s3", "zero_pad_shortcut", {"channels": 8, "stride": 3}, (4, 10, 11), (8, 4, 4), 0, 0, 0),
    # stride 1, channels only
    ("zps-s1", "zero_pad_shortcut", {"channels": 6, "stride": 1}, (4, 5, 5), (6, 5, 5), 0, 0, 0),

    # ---- shape and layout (their values: tests/test_layers_shape.py)
    # 3*4*4 = 48; 48 / (6*2) = 4
    ("reshape-flat", "reshape", [-1], (3, 4, 4), (48,), 0, 0, 0),
    ("reshape-regroup", "reshape", {"shape": [6, 2, -1]}, (3, 4, 4), (6, 2, 4), 0, 0, 0),
    ("unflatten", "unflatten", None, (10,), (10, 1, 1), 0, 0, 0),
    ("unflatten-shape", "unflatten", {"shape": [-1, 2, 2]}, (12,), (3, 2, 2), 0, 0, 0),
    ("channel-shuffle", "channel_shuffle", 3, (6, 5, 5), (6, 5, 5), 0, 0, 0),
    # a split's output_shape is its parts together: 2 + 6 = 8 channels
    ("split", "split", [2, 6], (8, 4, 4), (8, 4, 4), 0, 0, 0),
    ("chunk", "chunk", 3, (8, 4, 4), (8, 4, 4), 0, 0, 0),
    # 5 + 1 + 0 = 6 rows, 5 + 2 + 3 = 10 columns
    ("pad-sides", "pad", [1, 2, 0, 3], (3, 5, 5), (3, 6, 10), 0, 0, 0),
    ("pad-reflect", "pad", {"padding": 2, "mode": "reflect"}, (3, 5, 5), (3, 9, 9), 0, 0, 0),
    ("crop", "crop", {"size": [3, 4]}, (2, 8, 8), (2, 3, 4), 0, 0, 0),
]

# (id, type, args, input shapes, output shape, trainable, non-trainable, MACs) of the merge itself
MERGE_ROWS = [
    # a residual add: shapes unchanged
    ("add-2", "add", None, [(64, 56, 56)] * 2, (64, 56, 56), 0, 0, 0),
    ("add-3", "add", None, [(8, 4, 4)] * 3, (8, 4, 4), 0, 0, 0),
    ("add-flat", "add", None, [(10,)] * 2, (10,), 0, 0, 0),
    ("mul-2", "mul", None, [(16, 7, 7)] * 2, (16, 7, 7), 0, 0, 0),
    ("mul-flat", "mul", None, [(10,)] * 3, (10,), 0, 0, 0),
    # GoogLeNet inception 3a: 64 + 128 + 32 + 32 = 256
    ("concat-inception3a", "concat", None, [(64, 28, 28), (128, 28, 28), (32, 28, 28), (32, 28, 28)],
     (256, 28, 28), 0, 0, 0),
    ("concat-flat", "concat", {"axis": 0}, [(3,), (5,)], (8,), 0, 0, 0),
    # along the height: 10 + 6 = 16
    ("concat-axis1", "concat", {"axis": 1}, [(8, 10, 5), (8, 6, 5)], (8, 16, 5), 0, 0, 0),
]

ROW_BY_ID = {r[0]: r for r in ROWS + MERGE_ROWS}


def _params(rows):
    return [pytest.param(*r[1:], id=r[0]) for r in rows]


def test_table_covers_every_registered_layer_type():
    covered = {r[1] for r in ROWS + MERGE_ROWS}
    assert set(REGISTRY) - covered == set()
    assert len(REGISTRY) >= 28


def test_row_ids_are_unique():
    ids = [r[0] for r in ROWS + MERGE_ROWS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("type_, args, in_shape, out_shape, trainable, non_trainable, macs", _params(ROWS))
def test_single_input_layer(type_, args, in_shape, out_shape, trainable, non_trainable, macs):
    f = layer_of(type_, args, in_shape)
    assert f.node.type == type_
    assert f.input_shapes == (tuple(in_shape),)
    assert f.output_shape == tuple(out_shape)
    assert (f.trainable, f.non_trainable) == (trainable, non_trainable)
    assert f.macs == macs


@pytest.mark.parametrize("type_, args, in_shapes, out_shape, trainable, non_trainable, macs", _params(MERGE_ROWS))
def test_merge_layer(type_, args, in_shapes, out_shape, trainable, non_trainable, macs):
    a = analyse_text(merge_spec(type_, args, in_shapes), "<test>")
    f = figures(a)
    assert f.node.type == type_
    assert f.input_shapes == tuple(tuple(s) for s in in_shapes)
    assert f.output_shape == tuple(out_shape)
    assert (f.trainable, f.non_trainable, f.macs) == (trainable, non_trainable, macs)
    assert a.output_shapes == (tuple(out_shape),)
    assert a.warnings == ()  # every branch reaches the output


def test_add_with_three_inputs_names_the_spec_input():
    a = analyse_text(merge_spec("add", None, [(8, 4, 4)] * 3), "<test>")
    assert figures(a).node.inputs == ("input", "b1", "b2")


# --------------------------------------------------------------------------------------------
# FLOPs conventions, from the module docstrings

FLOP_ROWS = [
    # conv: 2*MACs + bias adds (one per output) + activation (relu 1 per output);
    # AlexNet conv1 + relu: 2*105,415,200 + 290,400 + 290,400
    ("conv", {"filters": 96, "kernel": 11, "stride": 4, "activation": "relu"}, (3, 227, 227), 211_411_200),
    # no bias, no activation: 2 * 118,013,952
    ("conv", {"filters": 64, "kernel": 7, "stride": 2, "padding": 3, "bias": False}, (3, 224, 224), 236_027_904),
    # sigmoid activation, 4 per element: 2*1,296 + 144 + 4*144
    ("conv", {"filters": 4, "kernel": 3, "activation": "sigmoid"}, (1, 8, 8), 3_312),
    # depthwise: 2*3,612,672 + 401,408 bias adds
    ("depthwise_conv", {"kernel": 3, "padding": 1}, (32, 112, 112), 7_626_752),
    # separable: 2*7,325,696 + 200,704 bias adds (64*56*56)
    ("separable_conv", {"filters": 64, "kernel": 3, "padding": "same"}, (32, 56, 56), 14_852_096),
    # spatial separable, no bias: 2*180
    ("spatial_separable_conv", {"filters": 1, "kernel": 3, "mid": 1, "bias": False}, (1, 7, 7), 360),
    # dense + relu: 2*37,748,736 + 4,096 + 4,096
    ("dense", {"units": 4096, "activation": "relu"}, (9216,), 75_505_664),
    # conv_transpose: 2*MACs + bias adds: 2*6,480 + 4*10*12
    ("conv_transpose", {"filters": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}, (6, 5, 6),
     13_440),
    # upsample per output element: nearest 0, bilinear 2*4 - 1 = 7, bicubic 2*16 - 1 = 31
    ("upsample", 2, (64, 14, 14), 0),
    ("upsample", {"scale": 2, "mode": "bilinear"}, (2, 3, 3), 504),
    ("upsample", {"size": [4, 5], "mode": "bicubic"}, (2, 3, 3), 1_240),
    # maxpool: out * (k*k - 1) = 96*27*27 * 8 = 69,984 * 8
    ("maxpool", {"kernel": 3, "stride": 2}, (96, 55, 55), 559_872),
    # avgpool: out * k*k = 16*4*4 * 4
    ("avgpool", {"kernel": 2}, (16, 8, 8), 1_024),
    # l2pool: out * (2*k*k + 1) = 8*3*3 * 9
    ("l2pool", {"kernel": 2}, (8, 6, 6), 648),
    # l2pool_channels: out * (2*size + 1) = 4*4*4 * 5
    ("l2pool_channels", {"size": 2}, (8, 4, 4), 320),
    # global pooling reads every input element once: 512*7*7
    ("global_avgpool", None, (512, 7, 7), 25_088),
    ("global_maxpool", {"keepdims": False}, (256, 13, 13), 43_264),
    # adaptive: C * (rows read per bin, summed) * (cols ...): bins of 10 -> 3 are 4,4,4: 2 * 12 * 12
    ("adaptive_avgpool", 3, (2, 10, 10), 288),
    # batchnorm: 2 per element: 2 * 64*112*112
    ("batchnorm", None, (64, 112, 112), 1_605_632),
    # lrn: per element 2*size + 3 = 13: 96*55*55 * 13 = 290,400 * 13
    ("lrn", {"size": 5}, (96, 55, 55), 3_775_200),
    # lcn full, across channels: taps 9*9*3 = 243, per element 3*243 + 3 = 732; 3,072 * 732
    ("lcn", {"size": 9}, (3, 32, 32), 2_248_704),
    # lcn subtractive, per channel: taps 9, per element 10; 4*6*6 * 10
    ("lcn", {"size": 3, "mode": "subtractive", "across_channels": False}, (4, 6, 6), 1_440),
    # activations per element: relu 1, leaky 2, sigmoid 4, tanh 5, softmax 5, linear 0
    ("relu", None, (64, 8, 8), 4_096),
    ("leaky_relu", None, (64, 8, 8), 8_192),
    ("sigmoid", None, (10,), 40),
    ("tanh", None, (6, 28, 28), 23_520),
    ("softmax", None, (1000,), 5_000),
    ("linear", None, (3, 4, 4), 0),
    # relu6 2, hardtanh 2, hardsigmoid 4, hardswish 5, silu 5, gelu 5 (tanh form 13), elu 4,
    # selu 5, softplus 6, mish 9, prelu 2: times 48 = 3*4*4 elements
    *[(t, a, (3, 4, 4), n * 48) for t, a, n in [
        ("relu6", None, 2), ("hardtanh", None, 2), ("hardsigmoid", None, 4), ("hardswish", None, 5),
        ("silu", None, 5), ("gelu", None, 5), ("gelu", {"approximate": "tanh"}, 13), ("elu", None, 4),
        ("selu", None, 5), ("softplus", None, 6), ("mish", None, 9), ("prelu", None, 2)]],
    # an activation shorthand on conv counts the same: 2*1,296 + 144 + 5*144 (silu)
    ("conv", {"filters": 4, "kernel": 3, "activation": "silu"}, (1, 8, 8), 3_456),
    # data movement is free
    ("flatten", None, (256, 6, 6), 0),
    ("dropout", None, (4096,), 0),
    ("identity", None, (3, 8, 8), 0),
    ("zero_pad_shortcut", 32, (16, 7, 7), 0),
]


@pytest.mark.parametrize("type_, args, in_shape, flops", FLOP_ROWS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(FLOP_ROWS)])
def test_flops_convention(type_, args, in_shape, flops):
    assert layer_of(type_, args, in_shape).flops == flops


def test_flops_add_is_inputs_minus_one_times_numel():
    # (3 - 1) * 8*4*4 = 256; with two inputs 1 * 64*56*56 = 200,704
    assert figures(analyse_text(merge_spec("add", None, [(8, 4, 4)] * 3), "<t>")).flops == 256
    assert figures(analyse_text(merge_spec("add", None, [(64, 56, 56)] * 2), "<t>")).flops == 200_704


def broadcast_spec(type_, gate_keepdims=True, order=("input", "g")) -> str:
    """`t` merges a [4, 5, 6] input with its global average, a [4, 1, 1] (or [4]) gate."""
    return "\n".join([
        "input: [4, 5, 6]", "layers:",
        f"  - global_avgpool: {{keepdims: {str(gate_keepdims).lower()}}}", "    name: g",
        f"  - {type_}:", "    name: t", f"    inputs: {json.dumps(list(order))}", ""])


@pytest.mark.parametrize("type_", ["add", "mul"])
@pytest.mark.parametrize("order", [("input", "g"), ("g", "input")])
def test_merge_broadcasts_a_gate_and_counts_the_output(type_, order):
    f = figures(analyse_text(broadcast_spec(type_, order=order), "<t>"))
    assert f.output_shape == (4, 5, 6)
    assert f.flops == 4 * 5 * 6  # one op per output element, not per gate element


def test_merge_broadcasts_both_ways():
    # [1, 5, 6] (a one-channel map) times [4, 1, 1]: 4x5x6
    text = "\n".join(["input: [4, 5, 6]", "layers:",
                      "  - global_avgpool: {keepdims: true}", "    name: g",
                      "  - conv: {filters: 1, kernel: 1}", "    name: c", "    inputs: input",
                      "  - mul:", "    name: t", '    inputs: ["c", "g"]', ""])
    assert figures(analyse_text(text, "<t>")).output_shape == (4, 5, 6)


def test_merge_of_different_ranks_is_refused():
    with pytest.raises(SpecError, match=r"input #2 has shape \[4\] but input #1 has \[4, 5, 6\]; "
                                        r"mul needs inputs of the same rank"):
        analyse_text(broadcast_spec("mul", gate_keepdims=False), "<t>")


def test_prelu_is_not_an_activation_shorthand():
    with pytest.raises(SpecError, match="prelu"):
        analyse_text(single_spec("conv", {"filters": 2, "kernel": 1, "activation": "prelu"}, (1, 4, 4)), "<t>")


def test_hardtanh_bounds_in_order():
    with pytest.raises(SpecError, match="min_val 2 is above max_val 1"):
        run_single("hardtanh", {"min_val": 2}, (3,))


def test_flops_concat_only_copies():
    assert figures(analyse_text(merge_spec("concat", None, [(2, 4, 4), (3, 4, 4)]), "<t>")).flops == 0


def test_totals_sum_the_layers():
    # conv1 34,944 params and 105,415,200 MACs, pool1 0; FLOPs 2*105,415,200 + 290,400 + 559,872
    a = analyse_text(chain((3, 227, 227), ("conv", {"filters": 96, "kernel": 11, "stride": 4}),
                           ("maxpool", {"kernel": 3, "stride": 2})), "<t>")
    assert (a.params, a.trainable, a.non_trainable) == (34_944, 34_944, 0)
    assert a.macs == 105_415_200
    assert a.flops == 210_830_400 + 290_400 + 559_872
    assert a.output_shapes == ((96, 27, 27),)


# --------------------------------------------------------------------------------------------
# receptive fields: size' = size + (k_eff - 1) * jump, jump' = jump * stride


def _rf(text, name):
    return figures(analyse_text(text, "<rf>"), name).receptive_field


def test_receptive_field_alexnet_deck000():
    # conv1 11 (jump 4); pool1 11 + 2*4 = 19 (jump 8); conv2 19 + 4*8 = 51; pool2 51 + 2*8 = 67 (jump 16);
    # conv3 67 + 2*16 = 99; conv4 131; conv5 163; pool3 163 + 2*16 = 195 (jump 32)
    text = chain((3, 227, 227),
                 ("conv", {"filters": 96, "kernel": 11, "stride": 4}),
                 ("maxpool", {"kernel": 3, "stride": 2}),
                 ("lrn", {"size": 5}),
                 ("conv", {"filters": 256, "kernel": 5, "padding": 2}),
                 ("maxpool", {"kernel": 3, "stride": 2}),
                 ("conv", {"filters": 384, "kernel": 3, "padding": 1}),
                 ("conv", {"filters": 384, "kernel": 3, "padding": 1}),
                 ("conv", {"filters": 256, "kernel": 3, "padding": 1}),
                 ("maxpool", {"kernel": 3, "stride": 2}))
    a = analyse_text(text, "<rf>")
    sizes = [f.receptive_field.size[0] for f in a.layers]
    jumps = [f.receptive_field.jump[0] for f in a.layers]
    assert sizes == [11, 19, 19, 51, 67, 99, 131, 163, 195]
    assert jumps == [4, 8, 8, 8, 16, 16, 16, 16, 32]
    assert all(f.receptive_field.size[0] == f.receptive_field.size[1] for f in a.layers)
    # the first conv1 output is centred on pixel (11-1)/2 = 5
    assert figures(a, "l1").receptive_field.start == (5.0, 5.0)


def test_receptive_field_alexnet_paper_spec():
    # the bundled spec, line for line the deck 000 table: conv5's field is 163 (see the chain above)
    text = (Path(__file__).resolve().parents[1] / "specs" / "alexnet_paper.yaml").read_text()
    a = analyse_text(text, "specs/alexnet_paper.yaml")
    assert figures(a, "conv1").receptive_field.size == (11, 11)
    assert figures(a, "pool1").receptive_field.size == (19, 19)
    assert figures(a, "conv2").receptive_field.size == (51, 51)
    assert figures(a, "conv5").receptive_field.size == (163, 163)


def test_receptive_field_vgg16_first_block_and_whole_stack():
    # 3x3 s1: 3, 5; 2x2 s2 pool: 5 + 1 = 6 (jump 2); 3x3: 6 + 2*2 = 10, 14; pool 16 (jump 4);
    # 3 convs: 24, 32, 40; pool 44 (jump 8); 60, 76, 92; pool 100 (jump 16); 132, 164, 196; pool 212
    items = []
    for convs, filters in ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)):
        items += [("conv", {"filters": filters, "kernel": 3, "padding": 1})] * convs + [("maxpool", 2)]
    a = analyse_text(chain((3, 224, 224), *items), "<rf>")
    sizes = [f.receptive_field.size for f in a.layers]
    assert sizes[:3] == [(3, 3), (5, 5), (6, 6)]
    assert [s[0] for s in sizes] == [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212]
    assert a.layers[-1].receptive_field.jump == (32, 32)
    # 'same'-style padding keeps the first output centred on pixel 0 all the way to pool1:
    # conv (3-1)/2 - 1 = 0; pool: 0 + ((2-1)/2 - 0)*1 = 0.5
    assert a.layers[1].receptive_field.start == (0.0, 0.0)
    assert a.layers[2].receptive_field.start == (0.5, 0.5)


def test_receptive_field_dilated_conv():
    # 3x3 with dilation 2 reads a 5x5 window; stacked d1, d2, d4 (Yu & Koltun): 3, 3+4 = 7, 7+8 = 15
    text = chain((1, 32, 32),
                 ("conv", {"filters": 1, "kernel": 3, "dilation": 1, "padding": 1}),
                 ("conv", {"filters": 1, "kernel": 3, "dilation": 2, "padding": 2}),
                 ("conv", {"filters": 1, "kernel": 3, "dilation": 4, "padding": 4}))
    a = analyse_text(text, "<rf>")
    assert [f.receptive_field.size for f in a.layers] == [(3, 3), (7, 7), (15, 15)]
    assert _rf(chain((1, 9, 9), ("conv", {"filters": 1, "kernel": 3, "dilation": 2})), "l1").size == (5, 5)


def test_receptive_field_resnet_stem():
    # conv 7 s2 p3: 7, start 0 + (3 - 3) = 0; maxpool 3 s2 p1: 7 + 2*2 = 11, start 0 + (1 - 1)*2 = 0
    text = chain((3, 224, 224),
                 ("conv", {"filters": 64, "kernel": 7, "stride": 2, "padding": 3}),
                 ("batchnorm", None), ("relu", None),
                 ("maxpool", {"kernel": 3, "stride": 2, "padding": 1}))
    a = analyse_text(text, "<rf>")
    rf = figures(a, "l4").receptive_field
    assert (rf.size, rf.jump, rf.start) == ((11, 11), (4, 4), (0.0, 0.0))
    # pointwise layers leave it unchanged
    assert figures(a, "l3").receptive_field == figures(a, "l1").receptive_field


def test_receptive_field_same_stride2_pads_at_the_end():
    # 224, k3 s2 'same': total pad 1, all at the end (TensorFlow), so the first window is rows 0-2
    # and is centred on pixel 1; with the pad at the start it would be centred on pixel 0
    rf = _rf(chain((3, 224, 224), ("conv", {"filters": 8, "kernel": 3, "stride": 2, "padding": "same"})), "l1")
    assert (rf.size, rf.jump, rf.start) == ((3, 3), (2, 2), (1.0, 1.0))


def test_receptive_field_asymmetric_kernel_and_padding():
    # kernel [3,5], padding [t,l,b,r] = [1,2,1,2]: size (3, 5), start ((3-1)/2 - 1, (5-1)/2 - 2) = (0, 0)
    rf = _rf(chain((1, 8, 8), ("conv", {"filters": 1, "kernel": [3, 5], "padding": [1, 2, 1, 2]})), "l1")
    assert (rf.size, rf.start) == ((3, 5), (0.0, 0.0))
    # [t,l,b,r] = [0,0,2,4]: start ((3-1)/2, (5-1)/2) = (1, 2)
    rf = _rf(chain((1, 8, 8), ("conv", {"filters": 1, "kernel": [3, 5], "padding": [0, 0, 2, 4]})), "l1")
    assert rf.start == (1.0, 2.0)


def test_receptive_field_global_pool_covers_the_map():
    # 3x3 conv (3), then a global pool over the 6x6 map: 3 + (6-1)*1 = 8 = the whole 8x8 input
    text = chain((1, 8, 8), ("conv", {"filters": 2, "kernel": 3}), ("global_avgpool", None))
    assert _rf(text, "l2").size == (8, 8)


def test_receptive_field_union_of_branches():
    # concat of a 3x3 p1 branch (field 3, centred on 0) and a 5x5 p2 branch (field 5, centred on 0) -> 5
    text = "\n".join([
        "input: [1, 8, 8]",
        "layers:",
        "  - conv: {filters: 2, kernel: 3, padding: 1}",
        "    name: a",
        "  - conv: {filters: 2, kernel: 5, padding: 2}",
        "    name: b",
        "    inputs: input",
        "  - concat:",
        "    name: t",
        "    inputs: [a, b]",
        "",
    ])
    rf = _rf(text, "t")
    assert rf.size == (5, 5) and rf.start == (0.0, 0.0)


def test_receptive_field_through_upsampling():
    # conv 3 s2 p1: size 3, jump 2, start 0; nearest x2: jump 2/2 = 1, size and start kept;
    # conv 3 p1 there: 3 + 2*1 = 5. Straight from the input, x4 makes the jump 1/4 and a 3x3 p1
    # conv adds 2 * 1/4: size 1.5 input pixels, centred on pixel 0.
    text = chain((1, 16, 16), ("conv", {"filters": 2, "kernel": 3, "stride": 2, "padding": 1}),
                 ("upsample", 2), ("conv", {"filters": 2, "kernel": 3, "padding": 1}))
    a = analyse_text(text, "<rf>")
    assert [(f.receptive_field.size, f.receptive_field.jump) for f in a.layers] == [
        ((3, 3), (2, 2)), ((3, 3), (1, 1)), ((5, 5), (1, 1))]
    text = chain((1, 8, 8), ("upsample", 4), ("conv", {"filters": 2, "kernel": 3, "padding": 1}))
    rf = _rf(text, "l2")
    assert rf.as_dict() == {"size": [1.5, 1.5], "jump": [0.25, 0.25], "start": [0, 0]}
    # fractional: x1.5 then a 2x2 conv: jump 2/3, size 1 + 2/3 (exact, a Fraction)
    rf = _rf(chain((1, 6, 6), ("upsample", 1.5), ("conv", {"filters": 1, "kernel": 2})), "l2")
    assert rf.size == (Fraction(5, 3), Fraction(5, 3)) and rf.jump == (Fraction(2, 3),) * 2
    # bilinear x2 reads 2 inputs from floor(-0.25) = -1: size 2, centred at -0.5
    rf = _rf(chain((1, 6, 6), ("upsample", {"scale": 2, "mode": "bilinear"})), "l1")
    assert (rf.size, rf.start) == ((2, 2), (-0.5, -0.5))


def test_receptive_field_conv_transpose():
    # k2 s2 (U-Net): each output reads ceil(2/2) = 1 input, outputs 1/2 apart, output 0 centred at
    # (0 - 1/2)/2 = -1/4; k3 s2 p1: ceil(3/2) = 2 inputs, centred at (1 - 1)/2 = 0
    rf = _rf(chain((4, 8, 8), ("conv_transpose", {"filters": 2, "kernel": 2, "stride": 2})), "l1")
    assert (rf.size, rf.jump, rf.start) == ((1, 1), (0.5, 0.5), (-0.25, -0.25))
    rf = _rf(chain((4, 8, 8), ("conv_transpose", {"filters": 2, "kernel": 3, "stride": 2, "padding": 1})), "l1")
    assert (rf.size, rf.start) == ((2, 2), (0.0, 0.0))


@pytest.mark.parametrize("type_, args, message", [
    ("upsample", {"scale": 2, "size": [4, 4]}, "exactly one of scale and size"),
    ("upsample", {"mode": "bilinear"}, "exactly one of scale and size"),
    ("upsample", {"scale": 2, "align_corners": True}, "align_corners applies to bilinear and bicubic"),
    ("upsample", {"scale": 0.1}, "use a larger scale"),
    ("conv_transpose", {"filters": 2, "kernel": 3, "stride": 2, "output_padding": 2}, "must be smaller than the stride"),
    ("conv_transpose", {"filters": 2, "kernel": 3, "output_padding": 1, "dilation": 2},
     "onnxruntime needs output_padding below the stride"),
    ("conv_transpose", {"filters": 2, "kernel": 3, "padding": "same"}, "padding 'same' is for conv"),
    ("conv_transpose", {"filters": 3, "kernel": 3, "groups": 2}, "not divisible by groups"),
    ("conv_transpose", {"filters": 2, "kernel": 1, "padding": 3}, "use less padding"),
])
def test_upsampling_errors(type_, args, message):
    with pytest.raises(SpecError, match=message):
        run_single(type_, args, (4, 4, 4))


def test_no_receptive_field_for_flat_input():
    assert layer_of("dense", 3, (10,)).receptive_field is None


# --------------------------------------------------------------------------------------------
# the decks' worked examples


def test_deck000_alexnet_conv1():
    # [227x227x3] -> 96 11x11 filters at stride 4, pad 0: (227 - 11)/4 + 1 = 55;
    # (11*11*3)*96 weights + 96 biases = 34,944, the slide's "35K"
    f = layer_of("conv", {"filters": 96, "kernel": 11, "stride": 4, "padding": 0}, (3, 227, 227))
    assert f.output_shape == (96, 55, 55)
    assert f.params == 34_944
    assert round(f.params, -3) == 35_000


def test_deck000_alexnet_pool1():
    # [55x55x96] -> 3x3 at stride 2: (55 - 3)/2 + 1 = 27, no parameters
    f = layer_of("maxpool", {"kernel": 3, "stride": 2}, (96, 55, 55))
    assert f.output_shape == (96, 27, 27)
    assert f.params == 0


def test_deck003_cs231n_ten_5x5_filters_pad2():
    # (32 + 2*2 - 5)/1 + 1 = 32; (5*5*3 + 1) * 10 = 760
    f = layer_of("conv", {"filters": 10, "kernel": 5, "stride": 1, "padding": 2}, (3, 32, 32))
    assert f.output_shape == (10, 32, 32)
    assert f.params == 760


@pytest.mark.parametrize("stride, side", [(1, 5), (2, 3)])
def test_deck_7x7_input_3x3_filter_tiles(stride, side):
    # (7 - 3)/1 + 1 = 5; (7 - 3)/2 + 1 = 3: exact, no warning
    a = run_single("conv", {"filters": 1, "kernel": 3, "stride": stride}, (1, 7, 7))
    assert figures(a).output_shape == (1, side, side)
    assert a.warnings == ()
    run_single("conv", {"filters": 1, "kernel": 3, "stride": stride}, (1, 7, 7), strict=True)  # no raise


def test_deck_7x7_input_3x3_filter_stride3_does_not_fit():
    # (7 - 3)/3 + 1 = 2.33: two windows (rows 0-2 and 3-5), row 6 and column 6 never read
    a = run_single("conv", {"filters": 1, "kernel": 3, "stride": 3}, (1, 7, 7))
    assert figures(a).output_shape == (1, 2, 2)
    assert len(a.warnings) == 1
    w = a.warnings[0]
    assert w.severity == "warning"
    assert w.layer == "t"
    assert "(7 - 3)/3 + 1 = 2.33" in w.message
    assert "row 6" in w.message and "column 6" in w.message
    assert "row 5" not in w.message and "column 5" not in w.message


def test_deck_7x7_stride3_warning_points_at_the_stride():
    text = single_spec("conv", {"filters": 1, "kernel": 3, "stride": 3}, (1, 7, 7))
    w = analyse_text(text, "<test>").warnings[0]
    assert w.where is not None and w.where.path == "<test>"
    line = text.splitlines()[w.where.line - 1]
    assert line.startswith("  - conv:")
    assert line[w.where.col - 1:].startswith("3}")  # the value of "stride"


def test_tiling_warning_names_only_the_axis_that_loses_pixels():
    # kernel [3,5] stride [1,2] on 32x48: rows tile ((32-3)/1+1 = 30); columns (48-5)/2+1 = 22.50,
    # windows cover columns 0-46, column 47 is never read
    a = run_single("conv", {"filters": 6, "kernel": [3, 5], "stride": [1, 2]}, (3, 32, 48))
    assert len(a.warnings) == 1
    m = a.warnings[0].message
    assert "(48 - 5)/2 + 1 = 22.50" in m
    assert "column 47" in m and "row" not in m


def test_tiling_warning_with_two_formulas_and_a_range():
    # maxpool 3 (stride 3) on 10x11: (10-3)/3+1 = 3.33 -> rows 0-8 read, row 9 lost;
    # (11-3)/3+1 = 3.67 -> columns 9 and 10 lost
    a = run_single("maxpool", 3, (1, 10, 11))
    assert figures(a).output_shape == (1, 3, 3)
    assert len(a.warnings) == 1
    m = a.warnings[0].message
    assert "(10 - 3)/3 + 1 = 3.33" in m and "(11 - 3)/3 + 1 = 3.67" in m
    assert "row 9" in m and "columns 9-10" in m


def test_tiling_warning_counts_the_padding():
    # 8x8, k3 s3 pad 1: (8 + 2 - 3)/3 + 1 = 3.33, but the windows reach input index 7 (only the end
    # pad is skipped): no warning; 9x9: (9 + 2 - 3)/3 + 1 = 3.67, input index 8 never read
    assert run_single("conv", {"filters": 1, "kernel": 3, "stride": 3, "padding": 1}, (1, 8, 8)).warnings == ()
    a = run_single("conv", {"filters": 1, "kernel": 3, "stride": 3, "padding": 1}, (1, 9, 9))
    assert len(a.warnings) == 1
    m = a.warnings[0].message
    assert "(9 + 2 - 3)/3 + 1 = 3.67" in m and "row 8" in m and "column 8" in m


def test_strided_1x1_projection_is_not_a_tiling_problem():
    # a 1x1 at stride 2 skips every other pixel by design: (56-1)/2+1 = 28.5 -> no warning
    assert run_single("conv", {"filters": 8, "kernel": 1, "stride": 2}, (4, 56, 56)).warnings == ()


def test_l2pool_channels_tiling_warning():
    # groups of 2 over 7 channels: (7-2)/2+1 = 3 groups read channels 0-5, channel 6 never read
    a = run_single("l2pool_channels", 2, (7, 4, 4))
    assert figures(a).output_shape == (3, 4, 4)
    assert len(a.warnings) == 1
    m = a.warnings[0].message
    assert "never read" in m and "6" in m
    assert run_single("l2pool_channels", 2, (8, 4, 4)).warnings == ()


def test_deck_7x7_input_3x3_filter_stride3_is_an_error_when_strict():
    with pytest.raises(SpecError) as info:
        run_single("conv", {"filters": 1, "kernel": 3, "stride": 3}, (1, 7, 7), strict=True)
    assert len(info.value.diagnostics) == 1
    d = info.value.diagnostics[0]
    assert d.severity == "error"
    assert "(7 - 3)/3 + 1 = 2.33" in d.message
    assert "row 6" in d.message and "column 6" in d.message


def test_deck_7x7_input_pad1():
    # zero pad 1: (7 + 2 - 3)/1 + 1 = 7 (size preserved); at stride 3, (7 + 2 - 3)/3 + 1 = 3 exactly
    a = run_single("conv", {"filters": 1, "kernel": 3, "padding": 1}, (1, 7, 7))
    assert figures(a).output_shape == (1, 7, 7) and a.warnings == ()
    a = run_single("conv", {"filters": 1, "kernel": 3, "stride": 3, "padding": 1}, (1, 7, 7))
    assert figures(a).output_shape == (1, 3, 3) and a.warnings == ()


def test_deck004_inception_naive_5x5():
    # 28x28x32 outputs, each 5x5x192 multiplies: 784 * 32 * 4,800 = 120,422,400
    f = layer_of("conv", {"filters": 32, "kernel": 5, "padding": "same"}, (192, 28, 28))
    assert f.output_shape == (32, 28, 28)
    assert f.macs == 120_422_400


def test_deck004_inception_1x1_bottleneck():
    # 1x1 to 16: 784*16*192 = 2,408,448; then 5x5 to 32: 784*32*25*16 = 10,035,200; sum 12,443,648
    a = analyse_text(chain((192, 28, 28), ("conv", {"filters": 16, "kernel": 1}),
                           ("conv", {"filters": 32, "kernel": 5, "padding": "same"})), "<t>")
    assert [f.macs for f in a.layers] == [2_408_448, 10_035_200]
    assert a.macs == 12_443_648
    assert a.output_shapes == ((32, 28, 28),)


def test_deck002_100_filters_then_3x3_pooling():
    # 100 - 5 + 1 = 96: [100, 96, 96]; (96 - 3)/3 + 1 = 32: [100, 32, 32]; (5*5*3 + 1)*100 = 7,600
    a = analyse_text(chain((3, 100, 100), ("conv", {"filters": 100, "kernel": 5}),
                           ("maxpool", {"kernel": 3, "stride": 3})), "<t>")
    assert [f.output_shape for f in a.layers] == [(100, 96, 96), (100, 32, 32)]
    assert a.layers[0].params == 7_600
    assert a.warnings == ()


def test_deck002_200x200_one_channel_100_10x10_filters_no_bias():
    # 10*10*1 weights per filter * 100 filters = 10,000; 200 - 10 + 1 = 191
    f = layer_of("conv", {"filters": 100, "kernel": 10, "bias": False}, (1, 200, 200))
    assert f.params == 10_000
    assert f.output_shape == (100, 191, 191)


# --------------------------------------------------------------------------------------------
# cross-check against PyTorch where it is installed

TORCH_MODULES = {
    "conv-alexnet1": lambda nn: nn.Conv2d(3, 96, 11, stride=4),
    "conv-same-s1": lambda nn: nn.Conv2d(16, 32, 3, padding="same"),
    "conv-resnet1": lambda nn: nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
    "conv-dilated": lambda nn: nn.Conv2d(8, 8, 3, dilation=2),
    "conv-dilated-s2": lambda nn: nn.Conv2d(1, 1, 3, dilation=3, stride=2),
    "conv-groups4": lambda nn: nn.Conv2d(32, 64, 3, padding=1, groups=4),
    "conv-alexnet2-groups2": lambda nn: nn.Conv2d(96, 256, 5, padding=2, groups=2),
    # ZeroPad2d takes (left, right, top, bottom)
    "conv-pad-tlbr": lambda nn: nn.Sequential(nn.ZeroPad2d((2, 4, 1, 3)), nn.Conv2d(1, 2, 3)),
    "conv-pad-hw": lambda nn: nn.Conv2d(1, 1, 3, padding=(1, 0)),
    "conv-rect": lambda nn: nn.Conv2d(3, 6, (3, 5), stride=(1, 2)),
    "dw-mobilenet": lambda nn: nn.Conv2d(32, 32, 3, padding=1, groups=32),
    "dw-mult2-s2": lambda nn: nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=16, bias=False),
    "sep-same": lambda nn: nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False),
                                         nn.Conv2d(32, 64, 1)),
    "max-alexnet1": lambda nn: nn.MaxPool2d(3, 2),
    "max-ceil-112": lambda nn: nn.MaxPool2d(3, 2, ceil_mode=True),
    "max-ceil-56": lambda nn: nn.MaxPool2d(3, 2, ceil_mode=True),
    "max-ceil-drop": lambda nn: nn.MaxPool2d(2, 2, padding=1, ceil_mode=True),
    "max-resnet": lambda nn: nn.MaxPool2d(3, 2, padding=1),
    "avg-pad-nocount": lambda nn: nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
    "avg-ceil-drop": lambda nn: nn.AvgPool2d(2, 2, padding=1, ceil_mode=True),
    "l2-k2": lambda nn: nn.LPPool2d(2, 2),
    "aap-10-3": lambda nn: nn.AdaptiveAvgPool2d(3),
    "aap-rect": lambda nn: nn.AdaptiveAvgPool2d((2, 5)),
    "amp-up": lambda nn: nn.AdaptiveMaxPool2d(5),
    "convt-groups": lambda nn: nn.ConvTranspose2d(6, 6, (3, 4), (2, 3), (1, 2), (1, 2), 3, dilation=(1, 2)),
    "convt-unet": lambda nn: nn.ConvTranspose2d(1024, 512, 2, 2),
    "up-bilinear-frac": lambda nn: nn.Upsample(scale_factor=1.5, mode="bilinear"),
    "up-bicubic-hw": lambda nn: nn.Upsample(scale_factor=(2.5, 0.7), mode="bicubic", align_corners=True),
    "bn-2d": lambda nn: nn.BatchNorm2d(64),
    "bn-1d": lambda nn: nn.BatchNorm1d(4096),
    "dense-fc6": lambda nn: nn.Linear(9216, 4096),
    "dense-nobias": lambda nn: nn.Linear(10, 3, bias=False),
    "flatten": lambda nn: nn.Flatten(0),
}


@pytest.mark.slow  # a torch module per layer type: seconds
def test_cross_check_with_pytorch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    for row_id, build in TORCH_MODULES.items():
        _, type_, args, in_shape, _, _, _, _ = ROW_BY_ID[row_id]
        module = build(nn).eval()
        with torch.no_grad():
            # batch 1, except flatten (Flatten(0) on the unbatched tensor) and BatchNorm1d (needs [N, C])
            x = torch.zeros(tuple(in_shape)) if row_id == "flatten" else torch.zeros((1,) + tuple(in_shape))
            y = module(x)
        want_shape = tuple(y.shape) if row_id == "flatten" else tuple(y.shape[1:])
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        stats = sum(b.numel() for name, b in module.named_buffers() if name.rsplit(".", 1)[-1] in
                    ("running_mean", "running_var"))
        f = layer_of(type_, args, in_shape)
        assert f.output_shape == want_shape, row_id
        assert (f.trainable, f.non_trainable) == (trainable, stats), row_id


def test_integer_bound_covers_integer_arguments_only():
    # ONNX Runtime computes sizes in 32 bits, so a kernel past 2**31 - 1 is refused; a float
    # argument written as a large whole number is still a float and is not.
    with pytest.raises(SpecError, match="at most 2,147,483,647"):
        run_single("conv", {"filters": 3_000_000_000, "kernel": 1}, (3, 8, 8))
    assert layer_of("leaky_relu", {"alpha": 3_000_000_000}, (4,)).node.layer.alpha == 3_000_000_000
