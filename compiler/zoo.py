"""The bundled spec library: where it lives and how a SPEC argument resolves to a file."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError, did_you_mean

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"


def bundled() -> list[Path]:
    return sorted(SPECS_DIR.glob("*.yaml"))


def resolve_spec(ref: str) -> Path:
    """A path to a YAML file, or the name of a bundled spec (`alexnet_paper`)."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in ref:
        if not path.exists():
            raise UsageError(f"{ref}: no such file")
        return path
    candidate = SPECS_DIR / f"{ref}.yaml"
    if candidate.exists():
        return candidate
    names = [p.stem for p in bundled()]
    hint = did_you_mean(ref, names) or "; run `convspec zoo` for the list"
    raise UsageError(f"'{ref}' is neither a file nor a bundled spec{hint}")
