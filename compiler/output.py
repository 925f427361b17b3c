"""Writing output files so that an error or Ctrl-C never leaves a partial one behind.

Every file convspec writes (a model, its external weights, a Triton config, saved outputs) goes
to a hidden temporary file in the target's folder and is renamed over the target only once
every file of the unit is complete and flushed to disk. A rename within one folder is atomic,
so a reader sees the old file or the new one, never half of one. An existing file is replaced
only with `force`; without it the refusal comes before any work is done.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError, os_reason


def check_writable(paths, force: bool) -> None:
    """Refuse early (exit 2) what `replacing` would refuse after the work."""
    for path in paths:
        if str(path).endswith(("/", os.sep)):
            raise UsageError(f"{path}: names a folder; give the path of the file to write")
        path = Path(path)
        if path.is_dir():
            raise UsageError(f"{path}: is a folder; give the path of the file to write")
        if os.path.lexists(path) and not force:  # lexists: a dangling symlink is not overwritten either
            raise UsageError(f"{path}: exists; pass --force to replace it")
        if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
            raise UsageError(f"{path}: is a symbolic link or a special file; give the path of a regular file")
        parent = next((p for p in path.parents if os.path.lexists(p)), None)
        if parent is not None and not parent.is_dir():
            raise UsageError(f"{path}: cannot write: {parent} is a file, not a folder")


@contextmanager
def replacing(paths, force: bool = False):
    """Yield one temporary path per target; on success rename each over its target, in order.

    On any exception, KeyboardInterrupt included, the temporaries are removed and the targets
    are untouched; a target that was placed before the failure is removed again if it is new
    (one that replaced a file cannot be put back). Put the file that refers to the others (the
    model) last. A replaced file keeps its permissions; a new one gets the usual ones (0666 less
    the umask).
    """
    targets = [Path(p) for p in paths]
    check_writable(targets, force)
    temps, placed = [], []  # placed: new targets renamed into place, removed if a later one fails
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            _create_temporary(target, temps)
        yield temps
        check_writable(targets, force)  # a file that appeared meanwhile is not clobbered either
        for temp, target in zip(temps, targets):
            _sync(temp)
            os.chmod(temp, _mode(target))
            new = not os.path.lexists(target)
            _place(temp, target, force)
            if new:
                placed.append(target)
        placed.clear()  # the unit is complete
    except OSError as e:
        by_temp = {str(t): str(target) for t, target in zip(temps, targets)}  # name the target, not our temporary
        shown = by_temp.get(str(e.filename), e.filename or targets[0])
        raise UsageError(f"{shown}: cannot write: {os_reason(e)}") from None
    finally:
        for path in [*temps, *placed]:
            path.unlink(missing_ok=True)


def _create_temporary(target: Path, temps: list) -> None:
    """Make an empty temporary beside `target` and add it to `temps`.

    Its name joins `temps` before the file exists, so a Ctrl-C or SIGTERM at any moment leaves
    nothing behind: with mkstemp, one that came between the file's creation and the append would
    have left it. A short hidden name: the target's own may already be as long as names can be.
    """
    while True:
        temp = target.parent / f".{target.name[:32]}.{secrets.token_hex(8)}.tmp"
        temps.append(temp)
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return
        except FileExistsError:  # someone else's file: not ours to remove
            temps.pop()
        except OSError as e:  # name the target, not the temporary it could not make
            raise UsageError(f"{target}: cannot write: {os_reason(e)}") from None


def _place(temp: Path, target: Path, force: bool) -> None:
    if force:
        os.replace(temp, target)
        return
    try:
        os.link(temp, target)  # unlike a rename, fails if the target appeared since the check
    except FileExistsError:
        raise UsageError(f"{target}: exists; pass --force to replace it") from None
    except OSError:  # a file system without hard links: the check above has to do
        os.replace(temp, target)


def _mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o777  # not setuid and the like: this is a new file
    except OSError:  # a new file
        return 0o666 & ~_umask()


def write_bytes(path, data: bytes, force: bool = False) -> None:
    with replacing([path], force) as (temp,):
        temp.write_bytes(data)


def _sync(path: Path) -> None:
    """Flush to disk before the rename, so a crash cannot leave a renamed but empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
