"""Regenerate the hostile .pth files under tests/hostile/pth/: `python tests/hostile/make_pth.py`.

Each is a torch.save-shaped state_dict for the bundled lenet5 whose pickle also does something
torch.save never writes: BUILD (which sets an object's attributes) aimed at the reader's own
storage, tensor, storage type or rebuild function, or a persistent id with forged fields. Against
a reader that lets BUILD through, `storage_path.pth` makes the compiled model carry the bytes of
`secret.pth` (another checkpoint beside it, laid out alike); `storage_path_missing.pth` tells
whether a file exists; the wrong field types were internal errors. test_hostile_pth.py holds the
exact error each must get. The pickles are assembled from opcodes here, so no torch is needed.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LENET5 = {"c1.weight": (6, 1, 5, 5), "c1.bias": (6,), "c3.weight": (16, 6, 5, 5), "c3.bias": (16,),
          "c5.weight": (120, 16, 5, 5), "c5.bias": (120,), "f6.weight": (84, 120), "f6.bias": (84,),
          "output.weight": (10, 84), "output.bias": (10,)}


# -- a tiny pickle assembler (protocol 2, the opcodes torch.save writes) --------------------------
def glob(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def text(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def num(n: int) -> bytes:
    if -2**31 <= n < 2**31:
        return b"J" + struct.pack("<i", n)  # BININT
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def value(v) -> bytes:
    """A plain value (str, int, bool, None, tuple, dict) or raw opcodes (bytes) as pickle opcodes."""
    if isinstance(v, bytes):
        return v
    if v is None or isinstance(v, bool):
        return {None: b"N", True: b"\x88", False: b"\x89"}[v]
    if isinstance(v, int):
        return num(v)
    if isinstance(v, str):
        return text(v)
    if isinstance(v, tuple):
        return tup(*map(value, v))
    return b"}(" + b"".join(value(k) + value(x) for k, x in v.items()) + b"u"


def build(state) -> bytes:
    """BUILD: set the attributes of the object on top of the stack from `state`."""
    return value(state) + b"b"


def ordered_dict() -> bytes:
    return glob("collections", "OrderedDict") + b")R"


def tensor(key: str, shape, *, after_storage=b"", after_global=b"", after_tensor=b"", pid=None) -> bytes:
    """`_rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())` as torch.save pickles it;
    the `after_*` opcodes go right after the storage, the function's global and the tensor."""
    stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
    pid = pid or ("storage", glob("torch", "FloatStorage"), key, "cpu", int(np.prod(shape)))
    return (glob("torch._utils", "_rebuild_tensor_v2") + after_global + b"(" + value(pid) + b"Q" + after_storage
            + num(0) + value(tuple(shape)) + value(stride) + b"\x89" + ordered_dict() + b"tR" + after_tensor)


def state_dict(tensors: dict, tail=b"") -> bytes:
    """An OrderedDict pickle of `name: tensor opcodes`; `tail` goes before STOP."""
    return b"\x80\x02" + ordered_dict() + b"(" + b"".join(text(k) + t for k, t in tensors.items()) + b"u" + tail + b"."


def lenet5(c1=None, **c1_options) -> bytes:
    """lenet5's state_dict, each tensor in its own storage (named 0..9, as torch.save names them);
    c1.weight's opcodes are `c1` or take `c1_options`."""
    return state_dict({name: c1 if name == "c1.weight" and c1 else
                       tensor(str(i), shape, **(c1_options if name == "c1.weight" else {}))
                       for i, (name, shape) in enumerate(LENET5.items())})


def write_pth(path: Path, pickle: bytes, fill: float = 0.5) -> None:
    """A torch.save zip: the storages first and data.pkl last, so that two files with different
    pickles keep their storages at the same offsets (what the storage_path attack needs)."""
    members = {f"archive/data/{i}": np.full(shape, fill, np.float32).tobytes()
               for i, shape in enumerate(LENET5.values())}
    members.update({"archive/version": b"3\n", "archive/data.pkl": pickle})
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)  # the same bytes every run


# -- the corpus: name -> pickle ---------------------------------------------------------------------
def corpus() -> dict:
    return {
        # BUILD on a storage: read another file's bytes (the CRC check skipped), or learn if a file exists.
        "storage_path.pth": lenet5(after_storage=build({"path": "secret.pth", "checked": True})),
        "storage_path_missing.pth": lenet5(after_storage=build({"path": "/nonexistent/secret.pth"})),
        "storage_path_fd.pth": lenet5(after_storage=build({"path": 0})),  # open(0) is stdin
        # Wrong field types, which a lazy read met only later, as internal errors.
        "storage_member_type.pth": lenet5(after_storage=build({"member": 0})),
        "storage_encoding_type.pth": lenet5(after_storage=build({"encoding": None})),
        "storage_itemsize_type.pth": lenet5(after_storage=build({"itemsize": "4"})),
        # BUILD with slot state (setattr) on a tensor, the storage type, the rebuild function itself.
        "tensor_read.pth": lenet5(after_tensor=build((None, {"_read": glob("collections", "OrderedDict")}))),
        "storage_type_dtype.pth": lenet5(pid=("storage", glob("torch", "FloatStorage") + build({"dtype": "int8"}),
                                              "0", "cpu", 150)),
        "rebuild_defaults.pth": lenet5(after_global=build((None, {"__defaults__": ()}))),
        # SETITEM on a storage; persistent ids with forged fields.
        "storage_setitem.pth": lenet5(after_storage=text("path") + text("secret.pth") + b"s"),
        "pid_key_path.pth": lenet5(pid=("storage", glob("torch", "FloatStorage"), "../data.pkl", "cpu", 150)),
        "pid_key_type.pth": lenet5(pid=("storage", glob("torch", "FloatStorage"), 0, "cpu", 150)),
        "pid_numel.pth": lenet5(pid=("storage", glob("torch", "FloatStorage"), "0", "cpu", 10**6)),
        "pid_numel_negative.pth": lenet5(pid=("storage", glob("torch", "FloatStorage"), "0", "cpu", -150)),
        "pid_location_type.pth": lenet5(pid=("storage", glob("torch", "FloatStorage"), "0", None, 150)),
    }


def main(folder: Path = HERE / "pth") -> None:
    folder.mkdir(exist_ok=True)
    write_pth(folder / "secret.pth", lenet5(), fill=42.0)  # the other file: valid, and not to be read
    for name, pickle in corpus().items():
        write_pth(folder / name, pickle)


if __name__ == "__main__":
    main()
