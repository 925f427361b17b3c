"""convspec's compiler: YAML spec -> validated, expanded, shape-inferred graph.

Pipeline (one direction): source (load) -> schema (validate) -> expand -> infer -> report.
Nothing on this path imports onnx or onnxruntime.
"""

__version__ = "0.1.0"
