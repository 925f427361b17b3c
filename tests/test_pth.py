"""PyTorch .pt/.pth state_dicts, read without torch and without running pickle code.

The checkpoints are written here by hand (the zip layout and pickle opcodes of torch.save), so
the reader is tested where torch is absent; where torch is installed, real torch.save files
are read too.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from compiler.errors import UsageError
from compiler.pth import read_pth
from compiler.weights import read_weights


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + len(b).to_bytes(4, "little") + b


def _int(n: int) -> bytes:
    return b"J" + n.to_bytes(4, "little", signed=True)


def _tuple(values) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def write_checkpoint(path: Path, tensors: dict, extra_pickle: bytes | None = None) -> None:
    """What torch.save writes for an OrderedDict of tensors (protocol 2, one storage per tensor)."""
    storages = {"float32": "FloatStorage", "int64": "LongStorage", "float16": "HalfStorage"}
    body = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    for key, (name, array) in enumerate(tensors.items()):
        body += _str(name) + _global("torch._utils", "_rebuild_tensor_v2") + b"("
        body += b"(" + _str("storage") + _global("torch", storages[str(array.dtype)]) + _str(str(key))
        body += _str("cpu") + _int(array.size) + b"tQ"  # the persistent id of the storage
        strides = [s // array.itemsize for s in array.strides]
        body += _int(0) + _tuple(array.shape) + _tuple(strides) + b"\x89"
        body += _global("collections", "OrderedDict") + b")Rt" + b"R"
    body += b"u."
    stem = path.stem
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{stem}/data.pkl", extra_pickle if extra_pickle is not None else body)
        for key, array in enumerate(tensors.values()):
            z.writestr(f"{stem}/data/{key}", np.ascontiguousarray(array).tobytes())
        z.writestr(f"{stem}/version", "3\n")


def test_reads_a_handwritten_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
               "bn1.num_batches_tracked": np.array(7, np.int64),
               "fc.bias": rng.standard_normal(5).astype(np.float16)}
    write_checkpoint(tmp_path / "w.pth", tensors)
    out = read_weights(str(tmp_path / "w.pth"))
    assert out.keys() == tensors.keys()
    for k in tensors:
        assert out[k].dtype == tensors[k].dtype
        np.testing.assert_array_equal(out[k], tensors[k])


def test_refuses_any_other_global_without_calling_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = b"\x80\x02" + _global("os", "system") + _str(f"touch {marker}") + b"\x85R."
    write_checkpoint(tmp_path / "evil.pt", {}, extra_pickle=evil)
    with pytest.raises(UsageError, match=r"refused to load: the file asks for os\.system"):
        read_pth(tmp_path / "evil.pt")
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "old.pth").write_bytes(b"\x80\x02}q\x00.")  # a bare pickle: legacy format or not torch at all
    with pytest.raises(UsageError, match="not a PyTorch zip checkpoint"):
        read_pth(tmp_path / "old.pth")


def test_real_torch_checkpoints(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed: only the handwritten checkpoints ran")
    import collections

    state = collections.OrderedDict(
        w=torch.randn(3, 4), t=torch.randn(4, 3).t(), step=torch.tensor(5), half=torch.randn(2).half(),
        bf=torch.randn(3).bfloat16(), p=torch.nn.Parameter(torch.ones(2)))
    torch.save(state, tmp_path / "s.pth")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.pt")
    for name in ("s.pth", "wrapped.pt"):
        out = read_weights(str(tmp_path / name))
        for k, v in state.items():
            np.testing.assert_array_equal(np.asarray(out[k], np.float64), v.detach().float().numpy().astype(np.float64))

    # Views into one shared storage, at offsets: each reads its own bytes in place.
    big = torch.arange(100_000, dtype=torch.float32)
    torch.save({"a": big[10:20], "b": big[99_990:].view(2, 5), "c": big[5:50:9]}, tmp_path / "views.pth")
    out = read_weights(str(tmp_path / "views.pth"))
    for k, v in {"a": big[10:20], "b": big[99_990:].view(2, 5), "c": big[5:50:9]}.items():
        np.testing.assert_array_equal(np.asarray(out[k]), v.numpy())

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(UsageError, match="refused to load"):
        read_weights(str(tmp_path / "evil.pth"))
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(UsageError, match="save the model's state_dict"):
        read_weights(str(tmp_path / "module.pth"))


def _one_tensor_checkpoint(path: Path, key, shape, stride, storage: np.ndarray) -> None:
    body = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    body += (_str(key) if isinstance(key, str) else _int(key)) + _global("torch._utils", "_rebuild_tensor_v2") + b"("
    body += b"(" + _str("storage") + _global("torch", "FloatStorage") + _str("0") + _str("cpu") + _int(storage.size)
    body += b"tQ" + _int(0) + _tuple(shape) + _tuple(stride) + b"\x89"
    body += _global("collections", "OrderedDict") + b")Rt" + b"Ru."
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w/data.pkl", body)
        z.writestr("w/data/0", storage.astype(np.float32).tobytes())


def test_tensors_are_read_only_when_their_shape_fits(tmp_path, monkeypatch):
    """A 361-byte file can describe a 20000x20000 tensor with stride 0: it must cost nothing
    unless the spec wants that shape (then it is bounded by --max-params)."""
    from compiler.arrays import Stored
    from compiler.errors import SpecError
    from compiler.pipeline import analyse
    from compiler.weights import imported

    _one_tensor_checkpoint(tmp_path / "w.pth", "c1.weight", (20000, 20000), (0, 0), np.ones(1))
    stored = read_weights(str(tmp_path / "w.pth"))["c1.weight"]
    assert (stored.shape, stored.dtype) == ((20000, 20000), np.float32)
    loads = []
    monkeypatch.setattr(Stored, "load", lambda self: loads.append(self) or pytest.fail("read a tensor"))
    with pytest.raises(SpecError, match=r"c1.weight: file \[20000, 20000\], spec \[6, 1, 5, 5\]"):
        imported(analyse("lenet5"), read_weights(str(tmp_path / "w.pth")), "w.pth")
    assert loads == []


def test_a_broadcast_tensor_that_fits_is_read(tmp_path):
    _one_tensor_checkpoint(tmp_path / "w.pth", "b", (2, 3), (0, 1), np.arange(3))
    np.testing.assert_array_equal(np.asarray(read_weights(str(tmp_path / "w.pth"))["b"]), [[0, 1, 2], [0, 1, 2]])


def test_keys_must_be_strings(tmp_path):
    _one_tensor_checkpoint(tmp_path / "w.pth", 1, (1,), (1,), np.ones(1))
    with pytest.raises(UsageError, match="expected a state_dict"):
        read_weights(str(tmp_path / "w.pth"))


def test_an_encrypted_npz_member_is_a_clean_error(tmp_path):
    np.savez(tmp_path / "w.npz", a=np.ones(3, np.float32))
    data = bytearray((tmp_path / "w.npz").read_bytes())
    for signature in (b"PK\x03\x04", b"PK\x01\x02"):  # set "encrypted" in the local and central headers
        at = data.index(signature) + (6 if signature == b"PK\x03\x04" else 8)
        data[at] |= 1
    (tmp_path / "w.npz").write_bytes(bytes(data))
    with pytest.raises(UsageError, match="not a readable .npz file.*encrypted"):
        read_weights(str(tmp_path / "w.npz"))


def test_only_the_bytes_a_tensor_covers_are_read(tmp_path):
    """A 64 MB storage deflated to a few KB, used by a 4-element tensor: reading it costs the 4 elements."""
    import tracemalloc

    body = b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + _str("w")
    body += _global("torch._utils", "_rebuild_tensor_v2") + b"(" + b"(" + _str("storage")
    body += _global("torch", "FloatStorage") + _str("0") + _str("cpu") + _int(16_000_000) + b"tQ"
    body += _int(8) + _tuple((4,)) + _tuple((1,)) + b"\x89" + _global("collections", "OrderedDict") + b")Rt" + b"Ru."
    with zipfile.ZipFile(tmp_path / "w.pth", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("w/data.pkl", body)
        z.writestr("w/data/0", bytes(64_000_000))
    tracemalloc.start()
    try:
        array = np.asarray(read_weights(str(tmp_path / "w.pth"))["w"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert array.shape == (4,) and peak < 8_000_000, peak


def test_a_huge_pickle_is_refused_before_unpickling(tmp_path):
    with zipfile.ZipFile(tmp_path / "w.pth", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("w/data.pkl", bytes(70_000_000))
    with pytest.raises(UsageError, match="its data.pkl is 70,000,000 bytes"):
        read_weights(str(tmp_path / "w.pth"))


def test_a_damaged_storage_fails_its_checksum(tmp_path):
    write_checkpoint(tmp_path / "w.pth", {"w": np.arange(64, dtype=np.float32)})
    data = bytearray((tmp_path / "w.pth").read_bytes())
    data[data.index(np.arange(64, dtype=np.float32).tobytes()) + 100] ^= 0xFF  # one flipped byte in the storage
    (tmp_path / "w.pth").write_bytes(bytes(data))
    stored = read_weights(str(tmp_path / "w.pth"))["w"]
    with pytest.raises(UsageError, match="cannot read an array: a storage fails its checksum"):
        stored.load()


def test_many_views_deep_into_a_compressed_storage_are_bounded(tmp_path, monkeypatch):
    """Each read inflates a compressed storage from its start; the total is bounded, so a small
    file cannot cost hours."""
    import compiler.pth as pth

    monkeypatch.setattr(pth, "MAX_INFLATED", 20_000_000)
    storage = np.zeros(1_000_000, np.float32)  # 4 MB that deflate to a few KB
    body = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    for i in range(8):  # eight 4-element views at the end of the storage
        body += _str(f"w{i}") + _global("torch._utils", "_rebuild_tensor_v2") + b"(" + b"(" + _str("storage")
        body += _global("torch", "FloatStorage") + _str("0") + _str("cpu") + _int(storage.size) + b"tQ"
        body += _int(storage.size - 4) + _tuple((4,)) + _tuple((1,)) + b"\x89"
        body += _global("collections", "OrderedDict") + b")Rt" + b"R"
    body += b"u."
    with zipfile.ZipFile(tmp_path / "w.pth", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("w/data.pkl", body)
        z.writestr("w/data/0", storage.tobytes())
    out = read_weights(str(tmp_path / "w.pth"))
    for i in range(4):  # 4 x 4 MB: within the budget
        np.testing.assert_array_equal(out[f"w{i}"], np.zeros(4, np.float32))
    with pytest.raises(UsageError, match="compressed storages inflate to more than 20,000,000 bytes in all; "
                                         "torch.save writes them uncompressed"):
        for i in range(4, 8):
            out[f"w{i}"].load()


def _patch_central(path: Path, name: str, field: int, value: int) -> None:
    """Overwrite a 4-byte field of `name`'s central directory entry (20 compressed size,
    24 size, 42 local header offset), as a damaged or forged file would have it."""
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the first central entry; find ours by name
    while data[entry + 46: entry + 46 + len(name)] != name.encode():
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + field: entry + field + 4] = value.to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("field, value, message", [
    (20, 512, "cannot read an array: a storage ends early"),  # the directory claims more bytes than are stored
    (24, 512, "storage '0' holds 512 bytes, not the 64 elements"),  # more than the persistent id says
    (42, 0, "cannot read an array: the zip entry of storage 'w/data/0' names another file"),  # data.pkl's bytes
])
def test_a_storage_entry_that_does_not_hold_is_refused(tmp_path, field, value, message):
    storage = np.arange(64, dtype=np.float32)
    _one_tensor_checkpoint(tmp_path / "w.pth", "w", (4,), (1,), storage)
    _patch_central(tmp_path / "w.pth", "w/data/0", field, value)
    with pytest.raises(UsageError, match=message):
        read_weights(str(tmp_path / "w.pth"))["w"].load()


def test_a_view_of_part_of_a_damaged_storage_fails_its_checksum(tmp_path):
    storage = np.arange(64, dtype=np.float32)
    _one_tensor_checkpoint(tmp_path / "w.pth", "w", (4,), (1,), storage)  # reads elements 0..3 only
    data = bytearray((tmp_path / "w.pth").read_bytes())
    data[data.index(storage.tobytes()) + 200] ^= 0xFF  # element 50, outside the view
    (tmp_path / "w.pth").write_bytes(bytes(data))
    with pytest.raises(UsageError, match="cannot read an array: a storage fails its checksum"):
        read_weights(str(tmp_path / "w.pth"))["w"].load()
