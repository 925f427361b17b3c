"""Read PyTorch `.pt`/`.pth` state_dicts without torch and without running pickle code.

A `torch.save` file (the zip format, PyTorch 1.6 and later) holds `<name>/data.pkl`, a pickle
that rebuilds tensors from storages `<name>/data/<key>`. It is not run by Python's unpickler but
by a small one here that knows only the opcodes and calls torch.save writes for a state_dict:
ordered dicts, tensor and parameter rebuilding, and the typed storages. Any other global (a
class, a function, os.system) is refused before anything is called, and nothing in the file can
set an attribute of the reader's objects or choose which file a storage is read from.
"""

from __future__ import annotations

import collections
import os
import pickle
import pickletools
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrays import BFLOAT16, Encoding, Stored
from .errors import UsageError, printable, shorten

STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": BFLOAT16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


MAX_PICKLE = 64_000_000  # a state_dict's pickle holds names and shapes: ResNet-152's is 60 KB
MAX_INFLATED = 4_000_000_000  # bytes inflated from compressed storages, for the whole file


class _Corrupt(ValueError):
    pass


class _Data:
    """One storage of the checkpoint (`<prefix>/data/<key>`), sized from the zip, read on demand."""

    def __init__(self, path: Path, member: zipfile.ZipInfo, encoding: Encoding, budget: "_Inflation"):
        self.path, self.member, self.encoding, self.budget = path, member, encoding, budget
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


def _rebuild_tensor(data: _Data, offset: int, size: tuple, stride: tuple) -> Stored:
    # A damaged file must not make as_strided read outside the storage.
    if len(size) != len(stride) or offset < 0 or min(size, default=1) < 0 or min(stride, default=0) < 0:
        raise _Corrupt("a tensor has an invalid size, stride or offset")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= data.numel:
        raise _Corrupt(f"a tensor needs {last + 1} elements but its storage holds {data.numel}")

    def read() -> np.ndarray:
        if not size:
            return data.read(offset, 1).reshape(()).copy()
        if not all(size):
            return np.zeros(size, data.dtype)
        span = data.read(offset, last - offset + 1)  # the elements this view can reach
        strides = tuple(s * span.itemsize for s in stride)
        return np.array(np.lib.stride_tricks.as_strided(span, shape=size, strides=strides))

    # Only the shape is known now: the caller reads the tensors it wants, once it has checked
    # their shapes (a stride-0 tensor of 10**10 elements costs nothing until then).
    return Stored(size, data.dtype, read, str(data.path))


class _Refused(Exception):
    """The pickle does something that torch.save never writes for a state_dict."""


@dataclass(frozen=True)
class _Global:
    """A GLOBAL the pickle names: only a name here, never a Python object it could call or change."""

    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


ORDERED_DICT = _Global("collections", "OrderedDict")
REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
REBUILD_PARAMETER = _Global("torch._utils", "_rebuild_parameter")
GLOBALS = {ORDERED_DICT, REBUILD_TENSOR, REBUILD_PARAMETER, *(_Global("torch", name) for name in STORAGES)}
STORAGE_KEY = re.compile(r"[0-9A-Za-z_]{1,64}")  # torch.save names storages 0, 1, 2, ...


def _kind(value) -> str:
    """What a value is, for a message (never its contents, which may be huge or hostile)."""
    if isinstance(value, _Global):
        return str(value)
    kinds = {_Data: "a storage", Stored: "a tensor", collections.OrderedDict: "an ordered dict", dict: "a dict",
             list: "a list", tuple: "a tuple", str: "a string", bool: "a bool", int: "an integer",
             float: "a float", type(None): "None"}
    return kinds.get(type(value), type(value).__name__)


def _is_int(value) -> bool:
    return type(value) is int  # a bool is an int too, and torch.save never writes one for a size


def _sizes(value) -> bool:
    return type(value) is tuple and all(map(_is_int, value))


def _is_hooks(value) -> bool:
    return type(value) is collections.OrderedDict and not value  # torch.save never saves hooks


class _StateDictUnpickler:
    """Runs a torch.save pickle with nothing but the opcodes torch.save writes for a state_dict.

    The standard unpickler lets a pickle set any attribute of what it makes (BUILD), and so of
    the reader's storages: the file they are read from, whether their checksum was checked. Here
    every opcode is checked for what it acts on: GLOBAL only names things, REDUCE calls one of
    three constructors with exactly torch.save's arguments, BUILD only gives an ordered dict its
    `_metadata` (dropped), SETITEM(S) and APPEND(S) only fill dicts and lists the pickle made.
    The storages are made here from validated fields; their file is always this reader's.
    """

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: str):
        self.data, self.at = data, 0
        self.archive, self.prefix, self.source = archive, prefix, source
        self.inflation = _Inflation(Path(source))
        self.storages: dict = {}  # key -> _Data: the views of one storage share it (and its checksum)
        self.stack: list = []
        self.marks: list = []  # the stacks below each MARK: an opcode never reaches beneath its mark
        self.memo: dict = {}

    def load(self):
        while True:
            code = self.data[self.at:self.at + 1]  # (inline: this loop runs once per opcode)
            self.at += 1
            if not code:
                raise pickle.UnpicklingError("pickle data was truncated")
            if code == b".":  # STOP
                if self.marks or len(self.stack) != 1:
                    raise pickle.UnpicklingError("the pickle stops with an unbalanced stack")
                return self.stack[0]
            if code not in _OPS:
                raise _Refused(f"it uses the pickle opcode {_OPCODE_NAMES.get(code, repr(code))}")
            _OPS[code](self)

    # -- reading the opcodes' arguments --------------------------------------------------------
    def _take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise pickle.UnpicklingError("pickle data was truncated")
        self.at += n
        return self.data[self.at - n:self.at]

    def _uint(self, n: int) -> int:
        return int.from_bytes(self._take(n), "little")

    def _line(self) -> str:
        end = self.data.find(b"\n", self.at)
        if end < 0:
            raise pickle.UnpicklingError("pickle data was truncated")
        return self._take(end + 1 - self.at)[:-1].decode("utf-8")

    def _text(self, length_bytes: int) -> str:
        return self._take(self._uint(length_bytes)).decode("utf-8", "surrogatepass")

    # -- the stack -----------------------------------------------------------------------------
    def push(self, value):  # (not self.stack.append: a MARK's operand swaps self.stack)
        self.stack.append(value)

    def _pop(self):
        if not self.stack:
            raise pickle.UnpicklingError("unpickling stack underflow")
        return self.stack.pop()

    def _pop_mark(self) -> list:
        if not self.marks:
            raise pickle.UnpicklingError("could not find MARK")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def _top(self):
        if not self.stack:
            raise pickle.UnpicklingError("unpickling stack underflow")
        return self.stack[-1]

    def mark(self):
        self.marks.append(self.stack)
        self.stack = []

    def memo_put(self, key: int):
        self.memo[key] = self._top()

    def memo_get(self, key: int):
        if key not in self.memo:
            raise pickle.UnpicklingError(f"memo key {key} is missing")
        self.push(self.memo[key])

    # -- what each opcode makes ------------------------------------------------------------------
    def proto(self):
        version = self._uint(1)
        if not 2 <= version <= 5:
            raise _Refused(f"it is pickle protocol {version}")

    def global_(self, module: str, name: str):
        if _Global(module, name) not in GLOBALS:
            dotted = printable(f"{module}.{name}")
            dotted = dotted if len(dotted) <= 80 else dotted[:75] + " ..."
            raise UsageError(f"{self.source}: refused to load: the file asks for {dotted}, and only tensors and "
                             "ordered dicts are allowed (save the model's state_dict(), not the model)")
        self.push(_Global(module, name))

    def stack_global(self):
        name, module = self._pop(), self._pop()
        if type(module) is not str or type(name) is not str:
            raise _Refused(f"STACK_GLOBAL names {_kind(module)} and {_kind(name)}")
        self.global_(module, name)

    def reduce(self):
        args, func = self._pop(), self._pop()
        if type(args) is not tuple:
            raise _Refused(f"REDUCE calls {_kind(func)} with {_kind(args)}")
        self.push(self._call(func, args))

    def _call(self, func, args: tuple):
        """torch.save's three calls, each with exactly the arguments torch.save gives it."""
        if func == ORDERED_DICT and args == ():
            return collections.OrderedDict()
        if (func == REBUILD_TENSOR and len(args) in (6, 7) and type(args[0]) is _Data and _is_int(args[1])
                and _sizes(args[2]) and _sizes(args[3]) and type(args[4]) is bool and _is_hooks(args[5])
                and (len(args) == 6 or type(args[6]) is dict)):  # (metadata: torch's flags, not needed)
            return _rebuild_tensor(*args[:4])
        if func == REBUILD_PARAMETER and len(args) == 3 and type(args[0]) is Stored and type(args[1]) is bool \
                and _is_hooks(args[2]):
            return args[0]
        raise _Refused(f"it calls {_kind(func)} with ({', '.join(map(_kind, args[:8]))}{', ...' * (len(args) > 8)})")

    def persistent_load(self):
        """('storage', storage type, key, location, numel): a storage of this file, checked before it is made."""
        pid = self._pop()
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage" and type(pid[1]) is _Global
                and pid[1].module == "torch" and pid[1].name in STORAGES):
            what = f"({', '.join(map(_kind, pid[:8]))})" if type(pid) is tuple else _kind(pid)
            raise _Refused(f"a persistent id is {what}, not ('storage', a storage type, its name, its device, "
                           "its size)")
        _, storage_type, key, location, numel = pid
        if type(key) is not str or not STORAGE_KEY.fullmatch(key):
            raise _Refused(f"a storage is named {shorten(key) if type(key) is str else _kind(key)}, where "
                           "torch.save names them 0, 1, 2, ...")
        if type(location) is not str:
            raise _Refused(f"storage '{key}' has {_kind(location)} for its device, where torch.save writes a string")
        if not _is_int(numel) or numel < 0:
            raise _Refused(f"storage '{key}' has {numel if _is_int(numel) else _kind(numel)} for its size, where "
                           "torch.save writes a count of elements")
        encoding = Encoding(STORAGES[storage_type.name])
        if key not in self.storages:
            try:
                member = self.archive.getinfo(f"{self.prefix}/data/{key}")
            except KeyError:
                raise _Refused(f"its storage '{key}' is not in the file") from None
            if member.file_size != numel * encoding.itemsize:
                raise _Refused(f"storage '{key}' holds {member.file_size:,} bytes, not the {numel:,} elements of "
                               f"{storage_type} its persistent id says")
            self.storages[key] = _Data(Path(self.source), member, encoding, self.inflation)
        data = self.storages[key]
        if data.encoding.stored != encoding.stored or data.numel != numel:
            raise _Refused(f"storage '{key}' is given two types or sizes")
        self.push(data)

    def build(self):
        state, target = self._pop(), self._top()
        if type(target) is not collections.OrderedDict:
            raise _Refused(f"BUILD sets the attributes of {_kind(target)}")
        # torch.save's only BUILD: the state_dict's `_metadata` (versions per module), not needed here.
        if type(state) is not dict or not set(state) <= {"_metadata"}:
            raise _Refused(f"BUILD gives an ordered dict {_kind(state)} for its attributes, where torch.save "
                           "gives only its _metadata")

    def setitems(self, items: list, op: str = "SETITEMS"):
        target = self._top()
        if type(target) not in (dict, collections.OrderedDict) or len(items) % 2:
            raise _Refused(f"{op} on {_kind(target)}")
        for key, value in zip(items[::2], items[1::2]):
            if type(key) not in (str, int, float, bool, type(None)):  # a key's hash runs no code of ours
                raise _Refused(f"a dict key is {_kind(key)}")
            target[key] = value

    def appends(self, items: list, op: str = "APPENDS"):
        target = self._top()
        if type(target) is not list:
            raise _Refused(f"{op} on {_kind(target)}")
        target.extend(items)


_U = _StateDictUnpickler
_OPS = {  # the opcodes of torch.save's pickles (protocol 2 by default, 3 to 5 on request)
    b"\x80": _U.proto,
    b"\x95": lambda u: u._take(8),  # FRAME: only a hint for buffering
    b"c": lambda u: u.global_(u._line(), u._line()),  # GLOBAL
    b"\x93": _U.stack_global,
    b"(": _U.mark,
    b"q": lambda u: u.memo_put(u._uint(1)),  # BINPUT
    b"r": lambda u: u.memo_put(u._uint(4)),  # LONG_BINPUT
    b"\x94": lambda u: u.memo_put(len(u.memo)),  # MEMOIZE
    b"h": lambda u: u.memo_get(u._uint(1)),  # BINGET
    b"j": lambda u: u.memo_get(u._uint(4)),  # LONG_BINGET
    b")": lambda u: u.push(()),  # EMPTY_TUPLE
    b"t": lambda u: u.push(tuple(u._pop_mark())),  # TUPLE
    b"\x85": lambda u: u.push((u._pop(),)),  # TUPLE1
    b"\x86": lambda u: u.push(tuple(reversed((u._pop(), u._pop())))),  # TUPLE2
    b"\x87": lambda u: u.push(tuple(reversed((u._pop(), u._pop(), u._pop())))),  # TUPLE3
    b"}": lambda u: u.push({}),  # EMPTY_DICT
    b"]": lambda u: u.push([]),  # EMPTY_LIST
    b"s": lambda u: u.setitems(list(reversed((u._pop(), u._pop()))), "SETITEM"),
    b"u": lambda u: u.setitems(u._pop_mark()),  # SETITEMS
    b"a": lambda u: u.appends([u._pop()], "APPEND"),
    b"e": lambda u: u.appends(u._pop_mark()),  # APPENDS
    b"J": lambda u: u.push(int.from_bytes(u._take(4), "little", signed=True)),  # BININT
    b"K": lambda u: u.push(u._uint(1)),  # BININT1
    b"M": lambda u: u.push(u._uint(2)),  # BININT2
    b"\x8a": lambda u: u.push(int.from_bytes(u._take(u._uint(1)), "little", signed=True)),  # LONG1
    b"G": lambda u: u.push(struct.unpack(">d", u._take(8))[0]),  # BINFLOAT
    b"\x88": lambda u: u.push(True),  # NEWTRUE
    b"\x89": lambda u: u.push(False),  # NEWFALSE
    b"N": lambda u: u.push(None),  # NONE
    b"X": lambda u: u.push(u._text(4)),  # BINUNICODE
    b"\x8c": lambda u: u.push(u._text(1)),  # SHORT_BINUNICODE
    b"\x8d": lambda u: u.push(u._text(8)),  # BINUNICODE8
    b"R": _U.reduce,
    b"Q": _U.persistent_load,  # BINPERSID
    b"b": _U.build,
}
_OPCODE_NAMES = {op.code.encode("latin-1"): op.name for op in pickletools.opcodes}


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
                data = f.read(MAX_PICKLE + 1)
            obj = _StateDictUnpickler(data, archive, prefix, str(path)).load()
    except UsageError:
        raise
    except _Refused as e:
        raise UsageError(f"{path}: refused to load: it is not a state_dict torch.save writes: {e}") from None
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
