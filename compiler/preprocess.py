"""Preprocessing: how an image becomes the network's input, as a spec's `preprocess:` declares it.

The steps, in order (torchvision's Resize, CenterCrop, ToTensor and Normalize):

    resize    N: the shorter side to N, the longer to floor(N * long / short); [h, w]: exactly
              h x w; bilinear, antialiased when shrinking. Default: the input's [h, w], unless
              there is a crop
    crop      the centre h x w (N: N x N), from top round((H - h) / 2), half to even, as
              torchvision rounds
    channels  RGB (default) or BGR: the order the network takes
    scale     times 1/255 (default), then per channel (x - mean) / std

`runtime/inputs.py` does this with Pillow for `convspec run IMAGE`; `raw_input` here puts the
same steps in front of a compiled network, so the model takes raw pixels: uint8 [N, H, W, C]
(any H and W). The sizes are computed here, for both. Only `raw_input` imports onnx.
"""

from __future__ import annotations

import json

RAW_KEY = "convspec.raw_input"  # the metadata of a model that takes raw pixels: its suggested image size


def resized(size: tuple, resize) -> tuple:
    """(H, W) of an image of `size` (H, W) after `resize` (None: unchanged)."""
    if resize is None:
        return tuple(size)
    if isinstance(resize, int):
        short = min(size)
        return tuple(resize * d // short for d in size)
    return tuple(resize)


def crop_box(size: tuple, crop) -> tuple:
    """(top, left, h, w) of the centre crop of an image of `size` (H, W)."""
    h, w = (crop, crop) if isinstance(crop, int) else crop
    return int(round((size[0] - h) / 2.0)), int(round((size[1] - w) / 2.0)), h, w


def resize_of(preprocess: dict, input_shape: tuple):
    """The resize step: the spec's, else the input's size when no crop sets the size."""
    if "resize" in preprocess:
        return preprocess["resize"]
    return None if "crop" in preprocess else list(input_shape[1:])


def normalisation(preprocess: dict, channels: int) -> tuple:
    """(scale, mean, std) with one mean and std per channel."""
    mean = list(preprocess.get("mean", [0.0]))
    std = list(preprocess.get("std", [1.0]))
    return (preprocess.get("scale", 1 / 255), mean * channels if len(mean) == 1 else mean,
            std * channels if len(std) == 1 else std)


def raw_input(lowered, preprocess: dict, input_shape: tuple):
    """The model with the preprocessing in its graph: its input becomes uint8 [N, H, W, C] pixels."""
    import numpy as np
    from onnx import TensorProto, helper

    from .lower import Builder, Lowered

    channels = input_shape[0]
    g = Builder()
    g.begin("input/preprocess", {})  # '/' is in no spec's names: no clash with a layer
    x = g.op("Transpose", [g.op("Cast", ["input"], to=TensorProto.FLOAT)], perm=[0, 3, 1, 2])
    resize = resize_of(preprocess, input_shape)
    if resize is not None:
        if isinstance(resize, int):  # the shorter side to N: sizes = N * [H, W] // min(H, W)
            size = g.op("Slice", [g.op("Shape", [x]), g.const([2]), g.const([4])])
            sizes = g.op("Div", [g.op("Mul", [size, g.const(resize)]), g.op("ReduceMin", [size], keepdims=1)])
        else:
            sizes = g.const(list(resize))
        # exclude_outside renormalises the filter at the edges, as Pillow does: else borders differ by 15 levels
        x = g.op("Resize", [x, "", "", sizes], mode="linear", antialias=1, exclude_outside=1, axes=[2, 3])
    if "crop" in preprocess:
        crop = list(crop_box((0, 0), preprocess["crop"])[2:])
        size = g.op("Slice", [g.op("Shape", [x]), g.const([2]), g.const([4])])
        margin = g.op("Cast", [g.op("Sub", [size, g.const(crop)])], to=TensorProto.FLOAT)
        top_left = g.op("Cast", [g.op("Round", [g.op("Div", [margin, g.const(2.0, "float32")])])],
                        to=TensorProto.INT64)  # Round is half to even, as Python's round
        x = g.op("Slice", [x, top_left, g.op("Add", [top_left, g.const(crop)]), g.const([2, 3])])
    if preprocess.get("channels", "RGB") == "BGR":
        x = g.op("Slice", [x, g.const([-1]), g.const([-(2**63)]), g.const([1]), g.const([-1])])
    scale, mean, std = normalisation(preprocess, channels)
    per_channel = lambda v: g.const(np.reshape(v, (1, channels, 1, 1)), "float32")  # noqa: E731
    x = g.op("Mul", [x, g.const(scale, "float32")])
    x = g.op("Div", [g.op("Sub", [x, per_channel(mean)]), per_channel(std)])
    g.finish(x, ["input"])

    model = type(lowered.model)()
    model.CopyFrom(lowered.model)
    graph = model.graph
    for node in graph.node:  # the network now reads the preprocessed pixels
        node.input[:] = [g.node if name == "input" else name for name in node.input]
    network = list(graph.node)
    del graph.node[:]
    graph.node.extend(g.nodes + network)
    graph.initializer.extend(g.initializers)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("input", TensorProto.UINT8,
                                                     ["batch", "height", "width", channels]))
    suggested = [resize, resize] if isinstance(resize, int) else list(input_shape[1:])  # for random input
    model.metadata_props.add(key=RAW_KEY, value=json.dumps({"size": suggested}))
    return Lowered(model, lowered.weights)
