"""Execution on onnxruntime. Knows ONNX files and onnxruntime; of the compiler it uses only the
error classes (compiler.errors), the guarded array readers (compiler.arrays) and the atomic
writes (compiler.output)."""
