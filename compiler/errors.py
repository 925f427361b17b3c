"""The error hierarchy and the one format every diagnostic is printed in.

ConvspecError
  SpecError         the spec is invalid (exit 1)
    ShapeError      a layer cannot take the shape it receives
  LoweringError     valid, but not expressible in ONNX as asked (exit 1)
  UsageError        command line, files, I/O (exit 2)
  RunError          running a model on onnxruntime (exit 2, or 1 for a wrong model or input)
LayerArgError is the internal signal a layer rule raises; inference turns it into a ShapeError
with the layer's name and position.

Every message a user sees is `path:line:col: severity: message`; the message names the layer
and says what to change. Exit codes: 1 for an invalid spec, 2 for usage or I/O problems.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import difflib
import os


@dataclass(frozen=True)
class Location:
    path: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


MAX_NOTES = 5  # "note: in block" lines after one diagnostic


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error", "warning" or "note"
    message: str
    where: Location | None = None
    layer: str | None = None
    # Where it came from, innermost first, as C compilers add "note: in instantiation of...":
    # the block instances whose body holds the layer at fault.
    notes: tuple["Diagnostic", ...] = ()

    def line(self) -> str:
        """One line, without the notes. Control characters from the spec (a newline in a key, a
        terminal escape) are shown escaped, so a message never spans lines or drives the terminal."""
        prefix = f"{self.where}: " if self.where else ""
        subject = f"layer '{self.layer}': " if self.layer else ""
        return printable(f"{prefix}{self.severity}: {subject}{self.message}")

    def render(self) -> str:
        """The line, then one line per note; of a deep chain, the innermost notes and the outermost
        (the line the user wrote at the top), saying how many are left out between them."""
        notes = [note.line() for note in self.notes[:MAX_NOTES]]
        if len(self.notes) > MAX_NOTES:
            notes[-1] = replace(self.notes[-1], message=f"{self.notes[-1].message}, through "
                                f"{len(self.notes) - MAX_NOTES} more blocks not shown").line()
        return "\n".join([self.line()] + notes)

    def noted(self, notes: tuple["Diagnostic", ...]) -> "Diagnostic":
        """The same diagnostic with `notes` after its own (an outer block's come after an inner one's)."""
        return replace(self, notes=self.notes + notes)


class ConvspecError(Exception):
    """Base of every error convspec reports to a user (never as a traceback)."""

    exit_code = 1

    def __init__(self, message: str, where: Location | None = None, layer: str | None = None):
        super().__init__(message)
        self.diagnostics = [Diagnostic("error", message, where, layer)]

    @classmethod
    def many(cls, diagnostics: list[Diagnostic]) -> "ConvspecError":
        err = cls(diagnostics[0].message, diagnostics[0].where, diagnostics[0].layer)
        err.diagnostics = list(diagnostics)
        return err

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)

    def noted(self, notes: tuple[Diagnostic, ...]) -> "ConvspecError":
        """Add `notes` to every diagnostic (the block instance an error happened in)."""
        self.diagnostics = [d.noted(notes) for d in self.diagnostics]
        return self

    def __str__(self) -> str:
        return self.render()


class SpecError(ConvspecError):
    """The spec is invalid: bad YAML, schema violation, bad wiring, or a failed expect."""


class ShapeError(SpecError):
    """A layer cannot be applied to the shape it receives."""


class LoweringError(ConvspecError):
    """A valid spec that cannot be written to ONNX as asked (say, an opset out of range)."""


class UsageError(ConvspecError):
    """Bad command line, missing file, unknown bundled spec name, I/O failure."""

    exit_code = 2


class RunError(ConvspecError):
    """Loading, feeding or running a model failed (runtime/): exit 2, or 1 when the model or its
    input is wrong. Names from an ONNX file are shown escaped, as every message is."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class LayerArgError(Exception):
    """Raised inside a layer rule; inference adds the layer name and the source location.

    `arg` names the argument at fault so the location can point at it.
    """

    def __init__(self, message: str, arg: str | None = None):
        super().__init__(message)
        self.arg = arg


def os_reason(e: OSError) -> str:
    """Why an OSError happened, in words: an OSError made with an errno alone has no strerror."""
    code = e.errno if e.errno is not None else next(iter(e.args), None)  # OSError(ENOSPC): args only
    if e.strerror:
        return e.strerror
    return os.strerror(code) if isinstance(code, int) else str(e) or type(e).__name__


def printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def shorten(value, limit: int = 60) -> str:
    """repr() of a value the user wrote, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...'" if text[0] in "'\"" else text[: limit - 4] + " ..."


def did_you_mean(word: str, choices) -> str:
    """"; did you mean 'x'?" for the closest choice, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
