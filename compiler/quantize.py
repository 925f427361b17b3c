"""Static int8 quantisation of a compiled model, through onnxruntime's quantisation tools.

The model becomes QDQ: QuantizeLinear/DequantizeLinear pairs around the ops that onnxruntime's
CPU provider fuses into integer kernels (Conv, Gemm, MatMul, Add, pooling), with per-channel
weight scales. Activation ranges are calibrated on sample inputs handed over as an array: this
module never reads files of inputs (runtime/ does; the compiler does not import runtime).

After quantising, the int8 model is compared with the fp32 one on the calibration set, and the
figures go into the model's metadata `convspec.quantization` (JSON):

- cosine: the worst sample's cosine similarity between the int8 and fp32 outputs;
- max_relative_error: max |int8 - fp32| over max |fp32| (relative to the output's range, since
  an element-wise ratio is meaningless where fp32 is near 0);
- top1_agreement: the share of samples whose arg-max is the same.

Measurements behind the defaults of `Recipe` are in docs/quantization.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import LoweringError

GENERATED_SAMPLES = 32


@dataclass(frozen=True)
class Recipe:
    """How to quantise; the defaults are the measured best on x86 CPUs (docs/quantization.md)."""

    activations: str = "u8"  # u8: the CPU's u8 x s8 kernels (VNNI's vpdpbusd) take activations unsigned
    weights: str = "s8"
    per_channel: bool = True  # one scale per output channel: conv weights' ranges differ a lot
    reduce_range: bool = False  # 7-bit weights avoid u8 x s8 saturation without VNNI, at an accuracy cost
    method: str = "minmax"  # minmax, entropy or percentile
    prepare: bool = True  # quant_pre_process: shape inference and graph fusions (BatchNorm into Conv) first
    exclude: tuple = ()  # op types or node names left in float


def generated_calibration(shape, seed: int, samples: int = GENERATED_SAMPLES) -> np.ndarray:
    """Seeded standard normal inputs: the range of normalised image pixels, but not their statistics."""
    return np.random.default_rng(seed).standard_normal((samples, *shape), dtype=np.float32)


def quantize(model: onnx.ModelProto, calibration: np.ndarray, source: str,
             recipe: Recipe = Recipe()) -> tuple[onnx.ModelProto, dict]:
    """The int8 QDQ model of the fp32 `model` (whole, weights included) and its error figures.

    `calibration` is a float32 batch of inputs; `source` says where it came from (for metadata).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationMethod

    quantized_nodes = [n.name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if quantized_nodes:  # quantize_static would quantise them again, into nodes of clashing names
        raise LoweringError(f"the model is already partly int8 (node '{quantized_nodes[0]}': an ensemble member "
                            "compiled with --quantize?); quantise its float32 members, or compile without --quantize")
    if model.ByteSize() > 1_900_000_000:  # quantize_static keeps the whole model in one protobuf message
        raise LoweringError("quantising a model over 1.9 GB is not supported; compile it in fp32")
    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="convspec-int8-") as tmp, _quiet():
        fp32, prepared, int8 = (str(Path(tmp) / f"{f}.onnx") for f in ("fp32", "prepared", "int8"))
        onnx.save(model, fp32)
        graph = fp32
        if recipe.prepare:
            try:
                with _inside(tmp):  # its shape inference, failing, dumps sym_shape_infer_temp.onnx in the folder
                    quant_pre_process(fp32, prepared, auto_merge=True)  # merge: Resize by scales makes floor(1.0*N)
                graph = prepared
            except Exception:  # its symbolic shape inference gives up on some graphs: quantise them unprepared
                graph = fp32
        # named in the graph that is quantised: pre-processing fuses and may rename nodes
        exclude = [n.name for n in onnx.load(graph).graph.node if {n.op_type, n.name} & set(recipe.exclude)]
        while True:
            quantize_static(graph, int8, _Reader(input_name, calibration),
                            quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel,
                            reduce_range=recipe.reduce_range, activation_type=types[recipe.activations],
                            weight_type=types[recipe.weights], calibrate_method=methods[recipe.method],
                            nodes_to_exclude=exclude, calibration_providers=["CPUExecutionProvider"])
            refused = [name for name in refused_pools(onnx.load(int8)) if name not in exclude]
            if not refused:
                break
            exclude += refused  # each pass keeps more nodes in float, so this ends
        quantized = onnx.load(int8)
        try:
            figures = compare(fp32, int8, input_name, calibration)
        except Exception as e:  # onnxruntime's Fail, RuntimeException...: no common base class
            raise LoweringError(f"the int8 model does not run in onnxruntime ({str(e).strip()}); compile it in "
                                "fp32 or fp16") from None
    figures["float_nodes"] = [name for name in exclude if name not in recipe.exclude]
    figures = {**figures, "calibration": source, "samples": len(calibration), "recipe": asdict(recipe)}
    used = {n.domain for n in quantized.graph.node} | {""}  # pre-processing declares every domain onnxruntime knows
    kept = [o for o in quantized.opset_import if o.domain in used]
    del quantized.opset_import[:]
    quantized.opset_import.extend(kept)
    del quantized.metadata_props[:]  # pre-processing may drop or keep them: the fp32 model's, plus ours
    quantized.metadata_props.extend(model.metadata_props)
    quantized.metadata_props.add(key="convspec.quantization", value=json.dumps(figures))
    return quantized, figures


def compare(reference: str, candidate: str, input_name: str, inputs: np.ndarray) -> dict:
    """Error figures of `candidate`'s first output against `reference`'s, both run on the CPU."""
    want, got = (_outputs(path, input_name, inputs) for path in (reference, candidate))
    want, got = want.reshape(len(inputs), -1).astype(np.float64), got.reshape(len(inputs), -1).astype(np.float64)
    norms = np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1)
    cosines = np.where(norms > 0, (want * got).sum(axis=1) / np.maximum(norms, 1e-300), 1.0)
    scale = np.abs(want).max()
    return {"cosine": round(float(cosines.min()), 6),
            "max_relative_error": round(float(np.abs(got - want).max() / scale if scale > 0 else 0.0), 6),
            "top1_agreement": round(float((want.argmax(axis=1) == got.argmax(axis=1)).mean()), 6)}


def describe(figures: dict) -> str:
    """One line for the user."""
    kept = figures.get("float_nodes")
    return (f"int8 against fp32 on the calibration set ({figures['samples']} samples, {figures['calibration']}): "
            f"cosine {figures['cosine']:.4f} (worst sample), max relative error "
            f"{figures['max_relative_error']:.2%}, top-1 agreement {figures['top1_agreement']:.0%}"
            + (f"; kept in float: {', '.join(kept)}" if kept else ""))


def refused_pools(model: onnx.ModelProto) -> list[str]:
    """The QDQ GlobalAveragePool nodes whose int8 kernel would refuse their scales. onnxruntime's
    QLinearGlobalAveragePool needs x_scale / (y_scale * H * W) in [2^-32, 256) and H * W < 2^24
    (MLAS's rule); past it the kernel throws from a worker thread and can crash the process, so
    the model must not be run. A global pool after an instance norm, whose output is one constant
    per channel, calibrates to a tiny y_scale and is refused."""
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    scales = {t.name: float(numpy_helper.to_array(t).reshape(-1)[0]) for t in graph.initializer if t.dims in ([], [1])}
    sizes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*graph.value_info, *graph.input)}
    made_by = {out: n for n in graph.node for out in n.output}
    read_by = {}
    for n in graph.node:
        for value in n.input:
            read_by.setdefault(value, []).append(n)
    refused = []
    for pool in (n for n in graph.node if n.op_type == "GlobalAveragePool"):
        dq = made_by.get(pool.input[0])
        qs = [n for n in read_by.get(pool.output[0], []) if n.op_type == "QuantizeLinear"]
        pixels = int(np.prod(sizes.get(pool.input[0], [0, 0, 0, 0])[2:]))
        if not (dq and dq.op_type == "DequantizeLinear" and qs and pixels > 0):
            continue
        ratio = scales.get(dq.input[1], 1.0) / (scales.get(qs[0].input[1], 1.0) * pixels)
        if not 2.0**-32 <= ratio < 256 or pixels >= 2**24:
            refused.append(pool.name)
    return refused


def _outputs(path: str, input_name: str, inputs: np.ndarray, batch: int = 8) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failing kernel's log line: the LoweringError says it again
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {input_name: inputs[i:i + batch]})[0]
                           for i in range(0, len(inputs), batch)])


class _Reader:
    """onnxruntime's CalibrationDataReader protocol (get_next until None), one sample at a time."""

    def __init__(self, input_name: str, inputs: np.ndarray):
        self.feeds = iter([{input_name: inputs[i:i + 1]} for i in range(len(inputs))])

    def get_next(self):
        return next(self.feeds, None)


@contextlib.contextmanager
def _inside(folder: str):
    """Run in `folder` as the working folder (contextlib.chdir, which Python 3.10 lacks)."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


class _quiet:
    """onnxruntime's quantisation tools log advice (run pre-processing, ...) at WARNING through
    the root logger; the user gets our one line instead."""

    def __enter__(self):
        self.level = logging.root.level
        logging.root.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        logging.root.setLevel(self.level)
