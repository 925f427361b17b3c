"""numpy's .npy and .npz files from untrusted sources (weights, model inputs).

np.load trusts a file's header: a few bytes that claim a shape of 10**12 make it allocate
terabytes, and a damaged zip raises exceptions it does not document. These readers check each
array's claimed size against the bytes really there before allocating, never unpickle, and
turn every failure into one UsageError that names the file.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import UsageError

_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, OSError)


def read_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            return _array(f, Path(path).stat().st_size)
    except _DAMAGED as e:
        raise UsageError(f"{path}: not a readable .npy file ({e})") from None


def read_npz(path: Path) -> dict:
    """Arrays by name; every member must be a .npy."""
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"'{info.filename}' is not an array (.npy)")
                with archive.open(info) as member:
                    out[info.filename[:-4]] = _array(member, info.file_size)
    except _DAMAGED as e:
        raise UsageError(f"{path}: not a readable .npz file ({e})") from None
    return out


def _array(stream, stored: int) -> np.ndarray:
    """One .npy from `stream`, which holds `stored` bytes in all."""
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read_header(stream, max_header_size=10_000)
    if dtype.hasobject:
        raise ValueError("it holds Python objects, which convspec never loads; save plain numbers")
    need, there = math.prod(shape) * dtype.itemsize, stored - stream.tell()
    if need != there:
        raise ValueError(f"an array of shape {list(shape)} and type {dtype} needs {need} bytes, the file holds {there}")
    raw = stream.read(need)
    if len(raw) != need:
        raise ValueError("the file ends early")
    return np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C")
