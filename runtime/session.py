"""onnxruntime sessions on the provider that really comes up, with its noise kept away.

onnxruntime-gpu on a machine without a usable CUDA prints a loud error, then falls back to the
CPU. We capture what it writes to stderr while the session starts, look at which provider is
really active, and turn the log into one short reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass

from compiler.errors import RunError

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@dataclass
class Session:
    session: object  # onnxruntime.InferenceSession
    provider: str  # the provider really running it
    threads: int  # intra-op threads (0: onnxruntime's default, one per core)
    fallback_reason: str = ""  # why CUDA is not used, when it was not asked for explicitly

    @property
    def device(self) -> str:
        return "cuda" if self.provider == CUDA else "cpu"

    def describe(self) -> str:
        threads = f", {self.threads} threads" if self.threads else ""
        why = f" ({self.fallback_reason})" if self.fallback_reason else ""
        return f"provider: {self.provider}{threads}{why}"


@contextlib.contextmanager
def _captured_stderr():
    """Collect what native code writes to file descriptor 2 while the block runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    box: list[str] = []
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.append(tmp.read().decode("utf-8", "replace"))


def cuda_reason(log: str) -> str:
    """One line out of onnxruntime's CUDA start-up log."""
    missing = re.search(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file", log)
    if missing:
        return f"the CUDA provider cannot load {missing.group(1)} (CUDA or cuDNN is not installed)"
    if re.search(r"no CUDA-capable device|CUDA driver version is insufficient|cudaErrorNoDevice", log):
        return "no usable CUDA device or driver"
    requirement = re.search(r"Require (cuDNN [\w.*]+ and CUDA [\w.*]+)", log)
    if requirement:
        return f"the CUDA provider did not start (it requires {requirement.group(1)})"
    return "the CUDA provider did not start"


def open_session(model, device: str = "auto", threads: int = 0) -> Session:
    """A session for `model` (a path or serialized bytes) on `device`: auto, cpu or cuda."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    reason = ""
    if device == "cpu":
        providers = [CPU]
    elif CUDA not in ort.get_available_providers():
        reason = "this onnxruntime has no CUDA provider; install onnxruntime-gpu"
        providers = [CPU]
    else:
        providers = [CUDA, CPU]
    if device == "cuda" and reason:
        raise RunError(f"--device cuda: {reason}")
    with _captured_stderr() as log:
        try:
            session = ort.InferenceSession(model, sess_options=options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise RunError(f"onnxruntime cannot load the model: {e}", exit_code=1) from None
    active = session.get_providers()[0]
    if active != CUDA and providers[0] == CUDA:
        reason = cuda_reason(log[0])
        if device == "cuda":
            raise RunError(f"--device cuda: {reason}")
    return Session(session, active, threads, reason if device == "auto" else "")
