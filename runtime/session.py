"""onnxruntime sessions on the provider that really comes up, with its noise kept away.

onnxruntime-gpu on a machine without a usable CUDA prints a loud error, then falls back to the
CPU. We capture what it writes to stderr while the session starts, look at which provider is
really active, and turn the log into one short reason.

A model reaches onnxruntime as its file, as one protobuf message, or, past protobuf's 2 GB
limit, as files written to a temporary folder that lives as long as the session.

Where onnxruntime can (`preload_dlls`, 1.21 and later), the CUDA and cuDNN libraries of the
nvidia wheels (convspec's `cuda` extra) are loaded before a CUDA session starts, so a machine
with only the driver runs CUDA; the provider line says which libraries were really loaded.

A model is untrusted: a 300-byte `Loop` can run for ever in native code, where Python's signal
handlers never get a turn. So runs happen in a worker thread (`Session.watch`) while this one
waits, free to take Ctrl-C, SIGTERM or a timeout and stop onnxruntime through its own
cancellation, `RunOptions.terminate`.
"""

from __future__ import annotations

import _thread
import contextlib
import io
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field

from compiler.errors import RunError

from .model import Model

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
INLINE_LIMIT = 1_900_000_000  # bytes of weights past which a model cannot be one protobuf message (2 GB)
QUIET = 4  # onnxruntime's log severity: fatal only (its errors reach us as exceptions anyway)
STOP_GRACE = 1.0  # seconds a stopped run may take to end; onnxruntime checks between nodes, not within one


@dataclass
class Session:
    session: object  # onnxruntime.InferenceSession
    provider: str  # the provider really running it
    threads: int  # intra-op threads (0: onnxruntime's default, one per core)
    fallback_reason: str = ""  # why CUDA is not used, when it was not asked for explicitly
    folder: object = None  # the TemporaryDirectory holding the model's files, removed with the session
    options: object = None  # the onnxruntime.RunOptions of every run; terminate = True stops them
    libraries: str = ""  # the CUDA and cuDNN a CUDA session loaded, and from where
    started: float | None = field(default=None, repr=False)  # time.monotonic() of the run in progress

    @property
    def device(self) -> str:
        return "cuda" if self.provider == CUDA else "cpu"

    def describe(self) -> str:
        threads = f", {self.threads} threads" if self.threads else ""
        note = self.fallback_reason or (self.libraries if self.provider == CUDA else "")
        why = f" ({note})" if note else ""
        return f"provider: {self.provider}{threads}{why}"

    def run(self, feeds: dict) -> list:
        """One run in this thread, with onnxruntime's refusal of an input (wrong rank, type, size) as
        one clean line. Call it inside `watch` to keep the run stoppable."""
        return self._call(lambda: self.session.run(None, feeds, self.options))

    def bind(self, feeds: dict, on_device: bool = True):
        """An onnxruntime IOBinding whose outputs stay on the session's device. `on_device`: `feeds`
        are copied there once, so `run_bound` times the model and not the copies between host and
        device; otherwise they stay on the host and every run copies them in."""
        import onnxruntime as ort

        def bind():
            binding = self.session.io_binding()
            for name, array in feeds.items():
                if on_device:
                    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, self.device, 0))
                else:
                    binding.bind_cpu_input(name, array)
            for output in self.session.get_outputs():
                binding.bind_output(output.name, self.device)
            return binding

        return self._call(bind)

    def run_bound(self, binding) -> None:
        """One run on a `bind` binding; its outputs stay on the device (`binding.copy_outputs_to_cpu()`)."""
        self._call(lambda: self.session.run_with_iobinding(binding, self.options))

    def _call(self, run):
        self.started = time.monotonic()
        try:
            return run()
        except Exception as e:  # onnxruntime's own exception types: a refused input, or a model it cannot compute
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RunError(f"onnxruntime could not run the model: {first}", exit_code=1) from None
        finally:
            self.started = None

    def watch(self, work, timeout: float | None = None):
        """work() in a worker thread while this one waits for it, so that Ctrl-C and SIGTERM (whose
        Python handlers run in the main thread only) still stop it, as does a run (one call of
        `run`) longer than `timeout` seconds. onnxruntime's log goes nowhere meanwhile.

        This thread waits in time.sleep, never on a lock: an exception raised by a signal handler
        half-way through threading's Event or Thread.join can leave a lock held (a hang, seen) or
        a thread taken for finished (then onnxruntime aborts the exit).
        """
        box = []

        def worker():
            try:
                box.append((True, work()))
            except BaseException as e:  # handed to the waiting thread
                box.append((False, e))

        with captured_stderr():
            try:
                _thread.start_new_thread(worker, ())  # returns at once; ends with the process, like a daemon
                pause = 0.001
                while not box:
                    time.sleep(pause)  # signal handlers run as it returns
                    pause = min(2 * pause, 0.05)
                    started = self.started
                    if timeout and started is not None and time.monotonic() - started > timeout:
                        raise RunError(f"the model ran longer than {timeout:g} s (--timeout); it was stopped",
                                       exit_code=1)
            except BaseException:  # Ctrl-C, SIGTERM, the timeout: stop onnxruntime, then unwind
                self.options.terminate = True
                deadline = time.monotonic() + STOP_GRACE  # past it the thread is abandoned to the exit
                while not box and time.monotonic() < deadline:
                    time.sleep(0.01)
                raise
        ok, value = box[0]
        if ok:
            return value
        raise value


@contextlib.contextmanager
def captured_stderr():
    """Collect what native code writes to file descriptor 2 while the block runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    box: list[str] = []
    with tempfile.TemporaryFile() as tmp:
        try:
            os.dup2(tmp.fileno(), 2)  # inside: however early a Ctrl-C comes, fd 2 is put back
            yield box
        finally:
            sys.stderr.flush()  # what Python code wrote meanwhile goes to the capture too, not out later
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


def preload_cuda(ort) -> str:
    """Load the nvidia wheels' CUDA and cuDNN with onnxruntime's `preload_dlls`, where this
    onnxruntime has it; return what it printed (it reports a missing library on stdout)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return ""
    printed = io.StringIO()
    with captured_stderr() as log, contextlib.redirect_stdout(printed):
        try:
            preload()
        except Exception as e:  # a missing folder, a library that will not load: the session says why CUDA fails
            print(f"preload_dlls: {e}")
    return printed.getvalue() + log[0]


# the shared objects a CUDA session loads: (soname stem, what to call it, the wheels that bring it)
CUDA_LIBRARIES = (("libcudart.so", "CUDA", ("nvidia-cuda-runtime", "nvidia-cuda-runtime-cu{major}")),
                  ("libcudnn.so", "cuDNN", ("nvidia-cudnn-cu{cuda}",)))


def cuda_libraries(maps: str, version=None) -> str:
    """Which CUDA and cuDNN are loaded, from /proc/self/maps: 'CUDA 13.5, cuDNN 9.28 from the nvidia
    wheels' (their versions from the wheels' metadata), or 'CUDA 13, cuDNN 9 from the system'."""
    version = version or _distribution_version
    found, cuda_major = [], ""
    for stem, label, wheels in CUDA_LIBRARIES:
        m = re.search(rf"(/\S*)/{re.escape(stem)}\.(\d+)", maps)
        if not m:
            continue
        major = m.group(2)
        cuda_major = cuda_major or major
        wheel = "/site-packages/nvidia/" in m.group(1) + "/"
        full = next((v for w in wheels if (v := version(w.format(major=major, cuda=cuda_major)))), "") if wheel else ""
        found.append((f"{label} {'.'.join(full.split('.')[:2]) or major}",
                      "the nvidia wheels" if wheel else "the system"))
    if not found:
        return ""
    if len({where for _, where in found}) == 1:
        return f"{', '.join(name for name, _ in found)} from {found[0][1]}"
    return ", ".join(f"{name} from {where}" for name, where in found)


def _distribution_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def _loaded_objects() -> str:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # not Linux: the provider line names no libraries
        return ""


def _readable(model: Model):
    """What onnxruntime reads: (a path or serialized bytes, the temporary folder that must outlive the session)."""
    if model.path:
        return model.path, None
    if model.serialize and model.weight_bytes <= INLINE_LIMIT:
        return model.serialize(), None
    folder = tempfile.TemporaryDirectory(prefix="convspec-")  # removed when the session goes, or at exit
    return model.write(os.path.join(folder.name, "model.onnx"))[0], folder


def open_session(model: Model, device: str = "auto", threads: int = 0) -> Session:
    """A session for `model` on `device`: auto, cpu or cuda."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # errors still come, and are captured: they say why CUDA failed
    options = ort.SessionOptions()
    options.log_severity_level = QUIET
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
    preloaded = preload_cuda(ort) if providers[0] == CUDA else ""
    source, folder = _readable(model)
    with captured_stderr() as log:
        try:
            session = ort.InferenceSession(source, sess_options=options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise RunError(f"onnxruntime cannot load the model: {e}", exit_code=1) from None
    active = session.get_providers()[0]
    if active != CUDA and providers[0] == CUDA:
        reason = cuda_reason(log[0] + "\n" + preloaded)
        if device == "cuda":
            raise RunError(f"--device cuda: {reason}")
    libraries = cuda_libraries(_loaded_objects()) if active == CUDA else ""
    run_options = ort.RunOptions()
    run_options.log_severity_level = QUIET
    return Session(session, active, threads, reason if device == "auto" else "", folder, run_options,
                   libraries=libraries)
