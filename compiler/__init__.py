"""convspec's compiler: YAML spec -> validated, shape-inferred graph -> report -> ONNX model.

Pipeline (one direction): source (load) -> schema (validate) -> inherit and expand -> infer
-> report; then weights (seeded, or read from a file) -> lower -> build (the saved .onnx).
The front half, up to the report, never imports numpy, onnx or onnxruntime, so `check` and
`summary` start fast. The layer types live in `layers/`, registered in `registry.py`.
"""

__version__ = "0.1.0"
