"""A one-line progress bar on stderr, for compiling (layers) and augmenting (images)."""

from __future__ import annotations

import sys
import time

WIDTH = 30


class Progress:
    """`label [#######.......] done/total unit`, redrawn in place: on a terminal (or when `enabled`),
    once `delay` seconds have passed; `rate` adds the units per second."""

    def __init__(self, label: str, unit: str = "layers", delay: float = 0.5, enabled: bool | None = None,
                 rate: bool = False, stream=None):
        self.stream = stream or sys.stderr  # looked up now: a caller may have redirected it since import
        self.label, self.unit, self.delay, self.rate = label, unit, delay, rate
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.start
        if not self.enabled or elapsed < self.delay:
            return
        filled = WIDTH * done // total
        line = f"\r{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{total} {self.unit}"
        self.stream.write(line + (f", {done / max(elapsed, 1e-9):.0f}/s" if self.rate else ""))
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
