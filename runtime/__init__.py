"""Execution on onnxruntime. Knows ONNX files and onnxruntime; of the compiler it uses only the
guarded array readers (compiler.arrays) and the message helpers (compiler.errors)."""

from compiler.errors import printable


class RuntimeFailure(Exception):
    """Something about running a model failed in a way the user can act on."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code

    def render(self) -> str:
        return printable(f"error: {self}")  # names from an ONNX file may hold terminal escapes
