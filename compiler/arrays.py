"""Arrays in untrusted files (.npy, .npz, .safetensors, and the storages of .pth), read only when wanted.

np.load trusts a file's header: a few bytes that claim a shape of 10**12 make it allocate
terabytes, a compressed member can inflate to any size, and a damaged zip raises exceptions it
does not document. Here each array is first known only by its header, as a `Stored`: its
shape and dtype. The caller compares those with what it expects (the spec's weights, the
model's input) and loads only what fits, so the memory spent is bounded by the spec, not by
the file. Nothing is ever unpickled, and every failure is one UsageError naming the file.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import UsageError, shorten

# What a damaged file can raise from zipfile, zlib and numpy's header parser; an encrypted
# member is a RuntimeError.
DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, OSError, RuntimeError)


class Stored:
    """An array in a file, known by its header; `load()` reads it, checked against that header."""

    __slots__ = ("shape", "dtype", "_read", "source")

    def __init__(self, shape: tuple, dtype, read, source: str = ""):
        self.shape, self.dtype, self._read, self.source = tuple(shape), np.dtype(dtype), read, source

    @classmethod
    def of(cls, array: np.ndarray) -> "Stored":
        return cls(array.shape, array.dtype, lambda: array)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def load(self) -> np.ndarray:
        try:
            array = self._read()
        except DAMAGED as e:
            raise UsageError(f"{self.source}: cannot read an array: {e}") from None
        if array.shape != self.shape:  # the reader promised the header's shape
            raise UsageError(f"{self.source}: an array's data does not match its header")
        return array

    def __array__(self, dtype=None, copy=None):  # np.asarray(stored) loads it
        array = self.load()
        return array if dtype is None else array.astype(dtype)


BFLOAT16 = "bfloat16"  # no numpy type of its own: two bytes in the file, a float32 once loaded


class Encoding:
    """How a weight file stores an array's elements: a numpy dtype, or BFLOAT16."""

    def __init__(self, stored):
        self.stored = stored
        self.dtype = np.dtype(np.float32 if stored == BFLOAT16 else stored)  # what loading gives
        self.itemsize = 2 if stored == BFLOAT16 else self.dtype.itemsize  # bytes per element in the file

    def decode(self, raw) -> np.ndarray:
        if self.stored == BFLOAT16:  # the top half of a float32
            return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        return np.frombuffer(raw, self.dtype)


def read_npy(path: Path) -> Stored:
    try:
        with open(path, "rb") as f:
            shape, dtype, fortran, offset = _header(f, Path(path).stat().st_size)
    except DAMAGED as e:
        raise UsageError(f"{path}: not a readable .npy file ({e})") from None

    def read():
        with open(path, "rb") as f:
            f.seek(offset)
            return _data(f, shape, dtype, fortran)

    return Stored(shape, dtype, read, str(path))


def read_npz(path: Path) -> dict:
    """Arrays by name, as `Stored`; every member must be a .npy."""
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"'{info.filename}' is not an array (.npy)")
                with archive.open(info) as member:
                    header = _header(member, info.file_size)
                out[info.filename[:-4]] = Stored(header[0], header[1], _member_reader(path, info.filename, *header),
                                                 str(path))
    except DAMAGED as e:
        raise UsageError(f"{path}: not a readable .npz file ({e})") from None
    return out


def _member_reader(path, name, shape, dtype, fortran, offset):
    def read():
        with zipfile.ZipFile(path) as archive, archive.open(name) as member:
            member.read(offset)  # the header, read again (a compressed member cannot seek)
            return _data(member, shape, dtype, fortran)

    return read


def _header(stream, stored: int):
    """(shape, dtype, fortran order, data offset) of the .npy in `stream`, which holds `stored` bytes."""
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read_header(stream, max_header_size=10_000)
    if dtype.hasobject:
        raise ValueError("it holds Python objects, which convspec never loads; save plain numbers")
    if any(d < 0 for d in shape):
        raise ValueError(f"its shape {list(shape)} has a negative size")
    offset = stream.tell()
    need, there = math.prod(shape) * dtype.itemsize, stored - offset
    if need != there:
        raise ValueError(f"an array of shape {list(shape)} and type {dtype} needs {need} bytes, the file holds {there}")
    return shape, dtype, fortran, offset


def _data(stream, shape, dtype, fortran) -> np.ndarray:
    need = math.prod(shape) * dtype.itemsize
    raw = stream.read(need)
    if len(raw) != need:
        raise ValueError("the file ends early")
    return np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C")


# -- .safetensors: an 8-byte header length, a JSON header, then the raw data ---------------------
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": BFLOAT16, "I64": np.int64,
                       "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _shape(value) -> tuple:
    if not (isinstance(value, (list, tuple)) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                     for d in value)):
        raise ValueError(f"its shape {shorten(value)} is not a list of sizes")
    return tuple(value)


def read_safetensors(path: Path) -> dict:
    """Read a .safetensors file with numpy alone: 8-byte header length, JSON header, raw data.

    Each tensor is read from the file only when loaded, so a large checkpoint costs only what the
    spec uses. Not memory-mapped: a file truncated while mapped would kill the process (SIGBUS)
    where a short read is a clean error.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= n <= size - 8:
            raise UsageError(f"{path}: not a .safetensors file (its header length is wrong)")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise UsageError(f"{path}: not a .safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise UsageError(f"{path}: not a .safetensors file (its header is not a mapping)")
    base, out = 8 + n, {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            out[key] = _safetensor(Path(path), base, size - base, info)
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{path}: tensor '{key}' is damaged or not understood ({e})") from None
    return out


def _safetensor(path: Path, base: int, data_size: int, info) -> Stored:
    if not isinstance(info, dict):
        raise ValueError("its entry in the header is not a mapping")
    begin, end = info["data_offsets"]
    if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= data_size):
        raise ValueError(f"offsets {begin}..{end} lie outside the file")
    shape, dtype = _shape(info["shape"]), info["dtype"]
    if dtype not in _SAFETENSORS_DTYPES:
        raise ValueError(f"dtype {shorten(dtype)} cannot be read")
    encoding = Encoding(_SAFETENSORS_DTYPES[dtype])
    if math.prod(shape) * encoding.itemsize != end - begin:
        raise ValueError(f"shape {list(shape)} of {dtype} needs {math.prod(shape) * encoding.itemsize} bytes, "
                         f"the file holds {end - begin}")

    def read() -> np.ndarray:
        with open(path, "rb") as f:
            f.seek(base + begin)
            raw = f.read(end - begin)  # buffered: reads on past the 2 GB a single read() can return
        if len(raw) != end - begin:
            raise EOFError("the file is shorter than its header says (was it truncated?)")
        return encoding.decode(raw).reshape(shape)

    return Stored(shape, encoding.dtype, read, str(path))
