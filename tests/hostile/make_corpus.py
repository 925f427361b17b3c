"""Regenerate the binary files of the hostile corpus: `python tests/hostile/make_corpus.py`.

The specs under specs/ are written by hand. The weights (for the bundled lenet5), models and
inputs here are damaged or malicious on purpose; test_hostile.py holds the exact error each
must get. The files are committed, so the tests never depend on this script's environment.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
C1 = "c1.weight"  # lenet5's first kernel, [6, 1, 5, 5]
SHAPE = (6, 1, 5, 5)


class _Call:
    """Pickles as a call of `func(*args)`: what a malicious checkpoint does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _pth(path: Path, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")


def _safetensors(path: Path, header: dict, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _npy_header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def weights(folder: Path) -> None:
    import os

    folder.mkdir(exist_ok=True)
    # A pickle that runs a shell command, and one that builds an arbitrary class.
    _pth(folder / "os_system.pth", pickle.dumps({C1: _Call(os.system, "touch pwned")}, protocol=2))
    _pth(folder / "custom_class.pth", pickle.dumps({C1: _Call(Path, "x")}, protocol=2))
    _pth(folder / "garbage_pickle.pth", b"\x80\x02}q\x00(X\x01\x00\x00")
    (folder / "not_a_zip.pth").write_bytes(b"\x80\x02}q\x00.")
    good = np.ones(SHAPE, np.float32).tobytes()
    _safetensors(folder / "truncated.safetensors", {C1: {"dtype": "F32", "shape": list(SHAPE),
                                                         "data_offsets": [0, 600]}}, good[:300])
    (folder / "header_length.safetensors").write_bytes(struct.pack("<Q", 2**63) + b"{}")
    _safetensors(folder / "header_not_json.safetensors", {}, b"")
    raw = (folder / "header_not_json.safetensors").read_bytes()
    (folder / "header_not_json.safetensors").write_bytes(raw[:8] + b"{]")
    _safetensors(folder / "negative_shape.safetensors", {C1: {"dtype": "F32", "shape": [-6, 1, 5, 5],
                                                              "data_offsets": [0, 600]}}, good)
    _safetensors(folder / "unknown_dtype.safetensors", {C1: {"dtype": "F8_E4M3", "shape": list(SHAPE),
                                                             "data_offsets": [0, 150]}}, good[:150])
    _safetensors(folder / "inf.safetensors", {C1: {"dtype": "F32", "shape": list(SHAPE), "data_offsets": [0, 600]}},
                 np.full(SHAPE, np.inf, np.float32).tobytes())
    _safetensors(folder / "int64.safetensors", {C1: {"dtype": "I64", "shape": list(SHAPE),
                                                     "data_offsets": [0, 1200]}}, bytes(1200))
    # .npz: a zip whose member claims 4 TB, a damaged CRC, a cut-off zip, pickled objects, NaN.
    with zipfile.ZipFile(folder / "size_bomb.npz", "w") as z:
        z.writestr(f"{C1}.npy", _npy_header((10**12,)) + bytes(16))
    np.savez(folder / "crc.npz", **{C1: np.ones(SHAPE, np.float32)})
    data = bytearray((folder / "crc.npz").read_bytes())
    data[data.index(b"\x00\x00\x80?")] ^= 0xFF  # one byte of the array's data
    (folder / "crc.npz").write_bytes(bytes(data))
    (folder / "truncated.npz").write_bytes(bytes(data[: len(data) // 2]))
    with zipfile.ZipFile(folder / "object_array.npz", "w") as z:
        buf = io.BytesIO()
        np.save(buf, np.array([_Call(os.system, "touch pwned")], dtype=object), allow_pickle=True)
        z.writestr(f"{C1}.npy", buf.getvalue())
    np.savez(folder / "nan.npz", **{C1: np.full(SHAPE, np.nan, np.float32)})
    np.savez(folder / "strings.npz", **{C1: np.full(SHAPE, "w")})


def models(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "empty.onnx").write_bytes(b"")
    (folder / "random.onnx").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    (folder / "complex.npy").write_bytes(_npy_header((1, 1, 32, 32), "<c8") + bytes(8 * 1024))
    (folder / "strings.npy").write_bytes(_npy_header((1,), "<U1") + bytes(4))
    (folder / "size_bomb.npy").write_bytes(_npy_header((10**12,)) + bytes(16))
    (folder / "wrong_shape.npy").write_bytes(_npy_header((1, 3, 32, 32)) + bytes(4 * 3 * 32 * 32))
    from onnx import TensorProto, helper

    # Weights "beside" the model that are really /etc/passwd, through a relative path.
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "../../../../../etc/passwd"), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    (folder / "external_outside.onnx").write_bytes(model.SerializeToString())
    (folder / "truncated.onnx").write_bytes(model.SerializeToString()[:40])


def _image(fmt: str, mode: str = "L", size=(24, 20), **options) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0]), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, fmt, **options)
    return buf.getvalue()


def images(folder: Path) -> None:
    """Damaged images for `run lenet5 --input`: Pillow reads by content, whatever the suffix, and
    each decoder fails in its own way (found by tests/test_fuzz_readers.py)."""
    folder.mkdir(exist_ok=True)
    png = bytearray(_image("PNG"))
    png[33:37] = (100).to_bytes(4, "big")  # IDAT's length, short: the next "chunk" is data (SyntaxError)
    (folder / "broken_chunk.png").write_bytes(bytes(png))
    (folder / "truncated.png").write_bytes(_image("PNG")[:60])
    dds = bytearray(_image("DDS"))
    dds[80:84] = bytes(4)  # no pixel format flags: NotImplementedError
    (folder / "dds_pixel_format.png").write_bytes(bytes(dds))
    tiff = bytearray(_image("TIFF"))
    tiff[72] = 5  # a size tag typed RATIONAL: TypeError
    (folder / "tiff_rational_size.png").write_bytes(bytes(tiff))
    (folder / "float.tiff.png").write_bytes(_image("TIFF", "F"))
    (folder / "text.png").write_bytes(b"not an image\n")
    tiff = bytearray(_image("TIFF", "RGB"))
    ifd = int.from_bytes(tiff[4:8], "little")
    for entry in range(ifd + 2, ifd + 2 + 12 * int.from_bytes(tiff[ifd:ifd + 2], "little"), 12):
        if int.from_bytes(tiff[entry:entry + 2], "little") == 277:  # SamplesPerPixel: 8, more than Pillow decodes
            tiff[entry + 8:entry + 10] = (8).to_bytes(2, "little")
    (folder / "tiff_samples_per_pixel.png").write_bytes(bytes(tiff))


def relu_model(path: Path, shape, meta=None, name="x", output="y") -> str:
    """One Relu from input `name` to `output`, both of `shape`, with metadata `meta`: written to `path`."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", [name], [output])], "g",
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
    return str(path)


def onnx_models(folder: Path) -> None:
    """Models whose shapes, metadata or names are hostile: each is a one-line error, or escaped."""
    def model(path, shape, meta=None, name="x", output="y"):
        relu_model(folder / path, shape, meta, name, output)

    folder.mkdir(exist_ok=True)
    model("huge_dim.onnx", ["n", 2**40])
    model("negative_dim.onnx", ["n", -5, 4])
    model("negative_batch.onnx", [-3, 4])
    model("rank70.onnx", [1] * 70)
    model("int64_max_dim.onnx", [1, 2**63 - 1])
    model("macs_10e400.onnx", ["n", 4], {"convspec.macs": "1" + "0" * 400})
    model("macs_1e400.onnx", ["n", 4], {"convspec.macs": "1e400"})
    model("scale_nan.onnx", ["n", 4], {"convspec.preprocess": '{"scale": NaN}'})
    model("std_zero.onnx", ["n", 4], {"convspec.preprocess": '{"std": [0]}'})
    model("deep_json.onnx", ["n", 4], {"convspec.preprocess": "[" * 100_000})
    # Names that would add lines to config.pbtxt, and a terminal escape in the name bench prints.
    model("pbtxt_injection.onnx", ["n", 4], name='x", data_type: TYPE_FP32, dims: [ 4 ] }\n]\nbackend: "python"\n'
          'input [\n  { name: "z', output="y\\")
    model("escape_name.onnx", ["n", 4], {"convspec.spec": "\x1b[2Jevil"})
    model("newline_name.onnx", ["n", 4], {"convspec.spec": "evil\n"})


def escapes(folder: Path) -> None:
    """Weights for lenet5 whose one extra key holds a terminal escape, for the 'unexpected keys' warning."""
    import torch  # only to write the .pth the way PyTorch does

    folder.mkdir(exist_ok=True)
    arrays = {C1: np.ones(SHAPE, np.float32), "\x1b[2Jevil\nkey": np.zeros(2, np.float32)}
    np.savez(folder / "escape_key.npz", **arrays)
    header, offset = {}, 0
    for key, array in arrays.items():
        header[key] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    _safetensors(folder / "escape_key.safetensors", header, b"".join(a.tobytes() for a in arrays.values()))
    torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, folder / "escape_key.pth")


def runs(folder: Path) -> None:
    """Models that run for ever or fail while running, and inputs that claim too large a batch or
    make a library warn (test_hostile_run.py)."""
    from onnx import TensorProto, helper

    def model(nodes, name, initializers=()):
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], list(initializers))
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)

    # 2**62 iterations of a body that passes its value on: a few hundred bytes that never finish.
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"]), helper.make_node("Identity", ["v"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    loop = model([helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body)], "endless",
                 [helper.make_tensor("trips", TensorProto.INT64, [], [2**62])])
    (folder / "endless_loop.onnx").write_bytes(loop.SerializeToString())
    # Valid until run: [n, 4] cannot become [3], which onnxruntime finds (and logs) only then.
    bad = model([helper.make_node("Reshape", ["x", "shape"], ["y"])], "reshape",
                [helper.make_tensor("shape", TensorProto.INT64, [1], [3])])
    (folder / "reshape_fails.onnx").write_bytes(bad.SerializeToString())
    # A palette image whose transparency Pillow warns about when converting it.
    from PIL import Image

    image = Image.new("P", (8, 8))
    image.putpalette(list(range(256)) * 3)
    image.save(folder / "palette_transparency.png", transparency=bytes([0, 128] + [255] * 254))
    # 70,000 of lenet5's [1, 32, 32] inputs, zeros: 72 MB as uint8 that deflate to 70 KB, 287 MB as float32.
    with zipfile.ZipFile(folder / "batch_70000.npz", "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("input.npy", "w", force_zip64=True) as member:
            member.write(_npy_header((70_000, 1, 32, 32), "|u1"))
            for _ in range(70):
                member.write(bytes(1000 * 32 * 32))


if __name__ == "__main__":
    weights(HERE / "weights")
    models(HERE / "models")
    images(HERE / "images")
    onnx_models(HERE / "onnx")
    escapes(HERE / "escapes")
    runs(HERE / "models")
