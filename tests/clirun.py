"""Running the CLI as a user does, and checking that no traceback or internal error escapes.

`run_cli` calls `cli.main(argv)` in this process, in the given working folder, with stdout and
stderr captured: the same code path as the `convspec` command, without the cost of a new
interpreter per call. `run_process` starts a real `python cli.py` for the few tests where the
process itself is under test (signals, exit status, a fresh interpreter's imports).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import cli

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    """What a finished command left: the fields of subprocess.CompletedProcess that tests read."""

    args: list
    returncode: int
    stdout: str
    stderr: str


class TimedOut(BaseException):
    """A BaseException, so that no `except Exception` or `except OSError` in convspec (TimeoutError
    is an OSError) can swallow it."""


@contextlib.contextmanager
def hard_limit(seconds: float):
    """Interrupt the block after `seconds` (SIGALRM: Python code only, a C loop finishes first).

    Only in the main thread, where pytest runs tests; elsewhere the block runs unbounded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimedOut(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _clean(result: Result) -> Result:
    assert "Traceback" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr, result.stderr
    return result


def run_cli(cwd: Path, *args: str, timeout: float = 60) -> Result:
    """`convspec ARGS` run in-process in `cwd`."""
    out, err = io.StringIO(), io.StringIO()
    previous_folder = os.getcwd()
    previous = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}  # main() installs its own
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), hard_limit(timeout):
            try:
                code = cli.main(list(args))
            except SystemExit as e:  # argparse's usage errors and --version
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(previous_folder)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return _clean(Result(list(args), code, out.getvalue(), err.getvalue()))


def run_process(cwd: Path, *args: str, timeout: float = 60, env: dict | None = None) -> Result:
    """`python cli.py ARGS` as a separate process in `cwd`."""
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    return _clean(Result(list(args), proc.returncode, proc.stdout, proc.stderr))
