"""Execution on onnxruntime. Knows ONNX files and onnxruntime, never the compiler's internals."""


class RuntimeFailure(Exception):
    """Something about running a model failed in a way the user can act on."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code

    def render(self) -> str:
        return f"error: {self}"
