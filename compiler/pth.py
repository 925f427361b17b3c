"""Read PyTorch `.pt`/`.pth` state_dicts without torch and without running pickle code.

A `torch.save` file (the zip format, PyTorch 1.6 and later) holds `<name>/data.pkl`, a pickle
that rebuilds tensors from storages `<name>/data/<key>`. The unpickler here resolves only what a
state_dict needs: ordered dicts, tensor and parameter rebuilding, and the typed storages. Any
other global (a class, a function, os.system) is refused before anything is called.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .arrays import BFLOAT16, Encoding, Stored
from .errors import UsageError

STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": BFLOAT16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


MAX_PICKLE = 64_000_000  # a state_dict's pickle holds names and shapes: ResNet-152's is 60 KB
MAX_INFLATED = 4_000_000_000  # bytes inflated from compressed storages, for the whole file


class _Storage:
    """Stands for `torch.FloatStorage` and friends inside the pickle: just a dtype."""

    def __init__(self, name: str):
        self.name, self.dtype = name, STORAGES[name]


class _Corrupt(ValueError):
    pass


class _Data:
    """One storage of the checkpoint (`<prefix>/data/<key>`), sized from the zip, read on demand."""

    def __init__(self, path: Path, member: zipfile.ZipInfo, storage: _Storage, budget: "_Inflation"):
        self.path, self.member, self.encoding, self.budget = path, member, Encoding(storage.dtype), budget
        self.itemsize, self.dtype = self.encoding.itemsize, self.encoding.dtype
        self.numel = member.file_size // self.itemsize
        self.checked = False  # the checksum of the whole storage, checked once before any view is served

    def read(self, first: int, count: int) -> np.ndarray:
        """Elements [first, first + count) only: a storage can be far larger than the tensors that
        use it (and inflate from a small compressed member), so nothing else is read."""
        begin, size = first * self.itemsize, count * self.itemsize
        if self.member.compress_type == zipfile.ZIP_STORED and not self.member.flag_bits & 1:  # not encrypted
            raw = self._read_in_place(begin, size)  # as torch.save writes it
        else:  # a compressed member is inflated from its start on every read: bound the total
            self.budget.spend(begin + size)
            with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as f:
                f.seek(begin)
                raw = f.read(size)
        if len(raw) != size:
            raise _Corrupt("a storage ends early")
        return self.encoding.decode(raw)

    def _read_in_place(self, begin: int, size: int) -> bytes:
        """Seek to the bytes and read them (zipfile would read everything before them), with the
        checks zipfile makes: the local header agrees and the storage's checksum holds."""
        m = self.member
        with open(self.path, "rb") as f:
            start = _data_start(f, m)
            if m.compress_size != m.file_size or start + m.file_size > os.fstat(f.fileno()).st_size:
                raise _Corrupt("a storage ends early")
            whole = begin == 0 and size == m.file_size
            if not self.checked and not whole:  # a view of part of it: check the rest once, in chunks
                f.seek(start)
                crc, left = 0, m.file_size
                while left:
                    chunk = f.read(min(left, 1 << 22))
                    crc, left = zlib.crc32(chunk, crc), left - len(chunk)
                self._check(crc)
            f.seek(start + begin)
            raw = f.read(size)
        if whole and not self.checked:
            self._check(zlib.crc32(raw))
        return raw

    def _check(self, crc: int) -> None:
        if crc != self.member.CRC:
            raise _Corrupt("a storage fails its checksum")
        self.checked = True


def _data_start(f, member: zipfile.ZipInfo) -> int:
    """Where an uncompressed member's bytes begin: after its local header, whose extra field can
    differ in length from the central directory's. The header must name the same, stored member."""
    f.seek(member.header_offset)
    header = f.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04" or header[8:10] != b"\x00\x00":
        raise _Corrupt("a storage's zip entry is damaged")
    name_length, extra_length = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
    expected = member.orig_filename.encode("utf-8" if member.flag_bits & 0x800 else "cp437", "replace")
    if f.read(name_length) != expected:
        raise _Corrupt(f"the zip entry of storage '{member.filename}' names another file")
    return member.header_offset + 30 + name_length + extra_length


class _Inflation:
    """The bytes a checkpoint's compressed storages may inflate, in all: torch.save never
    compresses, and many views deep into one compressed storage would otherwise inflate it over
    and over (a file of a few megabytes costing hours)."""

    def __init__(self, path: Path):
        self.path, self.left = path, MAX_INFLATED

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise UsageError(f"{self.path}: its compressed storages inflate to more than {MAX_INFLATED:,} bytes "
                             "in all; torch.save writes them uncompressed, so re-save the state_dict with it")


def _rebuild_tensor(data: _Data, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    # A damaged file must not make as_strided read outside the storage.
    if (not all(isinstance(v, int) for v in (offset, *size, *stride)) or len(size) != len(stride)
            or offset < 0 or min(size, default=1) < 0 or min(stride, default=0) < 0):
        raise _Corrupt("a tensor has an invalid size, stride or offset")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= data.numel:
        raise _Corrupt(f"a tensor needs {last + 1} elements but its storage holds {data.numel}")

    def read() -> np.ndarray:
        if not size:
            return data.read(offset, 1).reshape(()).copy()
        if not all(size):
            return np.zeros(tuple(size), data.dtype)
        span = data.read(offset, last - offset + 1)  # the elements this view can reach
        strides = tuple(s * span.itemsize for s in stride)
        return np.array(np.lib.stride_tricks.as_strided(span, shape=tuple(size), strides=strides))

    # Only the shape is known now: the caller reads the tensors it wants, once it has checked
    # their shapes (a stride-0 tensor of 10**10 elements costs nothing until then).
    return Stored(tuple(size), data.dtype, read, str(data.path))


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    return data


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, source: str):
        super().__init__(file)
        self.archive, self.prefix, self.source = archive, prefix, source
        self.inflation = _Inflation(Path(source))
        self.storages: dict = {}  # key -> _Data: the views of one storage share it (and its checksum)

    def find_class(self, module, name):
        allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module == "torch" and name in STORAGES:
            return _Storage(name)
        raise UsageError(f"{self.source}: refused to load: the file asks for {module}.{name}, and only tensors "
                         "and ordered dicts are allowed (save the model's state_dict(), not the model)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise UsageError(f"{self.source}: refused to load: unexpected persistent id {pid!r}")
        _, storage, key, _location, _numel = pid
        if (key, storage.name) not in self.storages:
            member = self.archive.getinfo(f"{self.prefix}/data/{key}")
            self.storages[key, storage.name] = _Data(Path(self.source), member, storage, self.inflation)
        return self.storages[key, storage.name]


def read_pth(path: Path) -> dict:
    """Tensors by key, as `Stored`, from a torch.save'd state_dict (or a dict holding one under 'state_dict')."""
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: not a PyTorch zip checkpoint (files from PyTorch before 1.6 are not read: "
                         "re-save it with torch.save in a newer PyTorch)")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise UsageError(f"{path}: not a torch.save file (it has no single data.pkl)")
            prefix = pickles[0][: -len("/data.pkl")]
            if archive.getinfo(pickles[0]).file_size > MAX_PICKLE:  # names and shapes, never the data
                raise UsageError(f"{path}: its data.pkl is {archive.getinfo(pickles[0]).file_size:,} bytes; a "
                                 f"state_dict's is far smaller (the limit is {MAX_PICKLE:,})")
            with archive.open(pickles[0]) as f:
                obj = _StateDictUnpickler(f, archive, prefix, str(path)).load()
    except UsageError:
        raise
    except MemoryError:
        raise UsageError(f"{path}: too large to read into memory") from None
    # A damaged pickle or zip can raise almost anything (UnpicklingError, EOFError, BadZipFile,
    # zlib.error, RecursionError, ...); whatever it is, the file is unreadable, not convspec broken.
    except Exception as e:
        raise UsageError(f"{path}: cannot read the checkpoint: {type(e).__name__}: {e}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Stored) for k, v in obj.items()):
        raise UsageError(f"{path}: expected a state_dict (a mapping from names to tensors)")
    return dict(obj)
