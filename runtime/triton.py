"""A Triton Inference Server model repository for one ONNX model: DIR/<name>/1/model.onnx + config.pbtxt."""

from __future__ import annotations

from pathlib import Path

from . import RuntimeFailure

KINDS = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}


def config_text(name: str, input_name: str, input_shape, outputs: list[tuple[str, tuple]],
                max_batch: int = 64, instances: int = 1, kind: str = "auto") -> str:
    def dims(shape):
        return "[ " + ", ".join(str(d) for d in shape) + " ]"

    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch}",
             "input [", f'  {{ name: "{input_name}", data_type: TYPE_FP32, dims: {dims(input_shape)} }}', "]",
             "output ["]
    lines += [f'  {{ name: "{n}", data_type: TYPE_FP32, dims: {dims(s)} }}' + ("," if i < len(outputs) - 1 else "")
              for i, (n, s) in enumerate(outputs)]
    lines += ["]", "dynamic_batching { max_queue_delay_microseconds: 100 }",
              f"instance_group [ {{ count: {instances}, kind: {KINDS[kind]} }} ]"]
    return "\n".join(lines) + "\n"


def prepare_repository(directory: str, model, name: str, max_batch: int = 64, instances: int = 1,
                       kind: str = "auto") -> tuple[str, str]:
    """Make DIR/<name>/1/ and write config.pbtxt; return (where model.onnx goes, the config's path)."""
    graph = model.graph

    def shape(value):
        return tuple(d.dim_value for d in value.type.tensor_type.shape.dim)[1:]

    outputs = [(o.name, shape(o)) for o in graph.output]
    root = Path(directory) / name
    try:
        (root / "1").mkdir(parents=True, exist_ok=True)
        config = root / "config.pbtxt"
        config.write_text(config_text(name, graph.input[0].name, shape(graph.input[0]), outputs,
                                      max_batch, instances, kind))
    except OSError as e:
        raise RuntimeFailure(f"{directory}: cannot write the repository: {e.strerror}") from None
    return str(root / "1" / "model.onnx"), str(config)
