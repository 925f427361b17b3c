"""The bundled spec library: where it lives and how a SPEC argument resolves to a file."""

from __future__ import annotations

from pathlib import Path

from .errors import Location, SpecError, UsageError, did_you_mean
from .limits import Limits

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


def referenced_file(ref: str, spec_path: str, key: str, where: Location, limits: Limits) -> Path:
    """An existing file that a spec names (`extends:`, `labels:`), relative to the spec's own folder.

    A shared spec must not read files it has no business with: unless `limits.outside_paths`,
    the file must lie in the spec's folder (or below it) or in the bundled library, after
    symbolic links are followed.
    """
    folder = Path(spec_path).parent
    target = folder / ref
    lift = ("a spec may name files only in its own folder and the bundled library "
            "(--allow-outside-paths lifts this)")
    if Path(ref).is_absolute() and not limits.outside_paths:
        raise SpecError(f"'{key}' names the absolute path '{ref}'; {lift}", where)
    try:
        real = target.resolve()
        inside = any(real.is_relative_to(root) for root in (folder.resolve(), SPECS_DIR))
        exists, regular = target.exists(), target.is_file()  # a FIFO or a device would block or never end
    except (OSError, ValueError, RuntimeError) as e:  # a NUL byte, a name too long, a symlink loop
        raise SpecError(f"'{key}' names '{ref}', which cannot be used as a path: {getattr(e, 'strerror', None) or e}",
                        where) from None
    if not inside and not limits.outside_paths:
        raise SpecError(f"'{key}' names '{ref}', which is outside the spec's folder; {lift}", where)
    if not exists:
        raise SpecError(f"'{key}' names '{ref}', which does not exist (a path relative to the spec's folder)", where)
    if not regular:
        raise SpecError(f"'{key}' names '{ref}', which is not a regular file (a directory, a FIFO or a device)", where)
    return target
