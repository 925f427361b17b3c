""".pth files that try to steer the reader: nothing in a weight file may choose which file is read
or set an attribute of the reader's own objects (storages, tensors, storage types, functions).

The corpus (tests/hostile/pth/, from tests/hostile/make_pth.py) holds one file per attack with
the exact error it must get. The class is covered beyond those files: BUILD, SETITEM(S),
APPEND(S), REDUCE and BINPERSID with varied targets and values are inserted at every opcode
boundary of valid pickles (handwritten and torch.save's own), and each result must load from
its own file or be refused in one line. Real torch.save files of torchvision models and of
every kind of tensor torch.save writes must still load identically.
"""

from __future__ import annotations

import collections
import importlib.util
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clirun import run_cli
from compiler.errors import UsageError
from compiler.weights import read_weights
from reference import import_torchvision

HOSTILE = Path(__file__).resolve().parent / "hostile"
PTH = HOSTILE / "pth"
_spec = importlib.util.spec_from_file_location("make_pth", HOSTILE / "make_pth.py")
make_pth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_pth)

NOT_TORCH = "refused to load: it is not a state_dict torch.save writes"
SECRET = 42.0  # every element of secret.pth, the file that must never be read; the others hold 0.5
FILL = 0.5

# file -> the exact stderr of `convspec compile lenet5 --weights FILE` (exit 2), run inside tests/hostile/pth.
PTH_ERRORS = {
    "pid_key_path.pth": f"{NOT_TORCH}: a storage is named '../data.pkl', where torch.save names them 0, 1, 2, ...",
    "pid_key_type.pth": f"{NOT_TORCH}: a storage is named an integer, where torch.save names them 0, 1, 2, ...",
    "pid_location_type.pth": f"{NOT_TORCH}: storage '0' has None for its device, where torch.save writes a string",
    "pid_numel.pth": f"{NOT_TORCH}: storage '0' holds 600 bytes, not the 1,000,000 elements of torch.FloatStorage "
                     "its persistent id says",
    "pid_numel_negative.pth": f"{NOT_TORCH}: storage '0' has -150 for its size, where torch.save writes a count of "
                              "elements",
    "rebuild_defaults.pth": f"{NOT_TORCH}: BUILD sets the attributes of torch._utils._rebuild_tensor_v2",
    "storage_encoding_type.pth": f"{NOT_TORCH}: BUILD sets the attributes of a storage",
    "storage_itemsize_type.pth": f"{NOT_TORCH}: BUILD sets the attributes of a storage",
    "storage_member_type.pth": f"{NOT_TORCH}: BUILD sets the attributes of a storage",
    "storage_path.pth": f"{NOT_TORCH}: BUILD sets the attributes of a storage",
    "storage_path_fd.pth": f"{NOT_TORCH}: BUILD sets the attributes of a storage",
    "storage_path_missing.pth": f"{NOT_TORCH}: BUILD sets the attributes of a storage",
    "storage_setitem.pth": f"{NOT_TORCH}: SETITEM on a storage",
    "storage_type_dtype.pth": f"{NOT_TORCH}: BUILD sets the attributes of torch.FloatStorage",
    "tensor_read.pth": f"{NOT_TORCH}: BUILD sets the attributes of a tensor",
}


def test_the_table_covers_the_corpus():
    assert sorted(p.name for p in PTH.iterdir()) == sorted([*PTH_ERRORS, "secret.pth"])


def test_the_corpus_is_what_its_generator_writes(tmp_path):
    make_pth.main(tmp_path)
    for path in tmp_path.iterdir():
        assert path.read_bytes() == (PTH / path.name).read_bytes(), path.name


@pytest.mark.parametrize("name", sorted(PTH_ERRORS))
def test_hostile_pth(name, tmp_path):
    out = tmp_path / "model.onnx"
    result = run_cli(PTH, "compile", "lenet5", "--weights", name, "-o", str(out))
    assert (result.returncode, result.stderr) == (2, f"error: {name}: {PTH_ERRORS[name]}\n")
    assert list(tmp_path.iterdir()) == []


def test_the_other_file_is_a_valid_checkpoint(tmp_path):
    """secret.pth loads (so storage_path.pth is refused for its BUILD, not for a bad target)."""
    arrays = read_weights(str(PTH / "secret.pth"))
    assert set(arrays) == set(make_pth.LENET5) and all((np.asarray(a) == SECRET).all() for a in arrays.values())
    assert run_cli(PTH, "compile", "lenet5", "--weights", "secret.pth", "-o", str(tmp_path / "m.onnx")).returncode == 0


def test_a_refused_file_changes_nothing_for_the_next(tmp_path):
    """With Python's unpickler, rebuild_defaults.pth emptied the rebuild function's defaults, and
    every later .pth in the process failed; here a file can change nothing outside itself."""
    for name in sorted(PTH_ERRORS):
        with pytest.raises(UsageError):
            for array in read_weights(str(PTH / name)).values():
                array.load()
    assert all((np.asarray(a) == SECRET).all() for a in read_weights(str(PTH / "secret.pth")).values())


# -- the class: steering opcodes inserted anywhere into valid pickles ----------------------------------
def _torch_pickle() -> bytes | None:
    """torch.save's own data.pkl for lenet5's state_dict (memoized, with _metadata), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    import io

    module = torch.nn.Module()
    for i, (name, shape) in enumerate(make_pth.LENET5.items()):
        layer, attr = name.split(".")
        if not hasattr(module, layer):
            module.add_module(layer, torch.nn.Module())
        getattr(module, layer).register_parameter(attr, torch.nn.Parameter(torch.zeros(shape)))
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    with zipfile.ZipFile(buffer) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))


BASES = {"handwritten": make_pth.lenet5(), "torch.save": _torch_pickle()}
value = make_pth.value
TARGETS = ["path", "checked", "member", "encoding", "itemsize", "numel", "dtype", "name", "_read", "shape",
           "source", "__defaults__", "__dict__", "__class__", "_metadata", "module"]
STEERS = {  # stack-neutral: each acts on whatever object is on top of the stack there
    "BUILD a storage's path": make_pth.build({"path": "secret.pth", "checked": True}),
    "BUILD slots": make_pth.build((None, {"_read": make_pth.glob("collections", "OrderedDict"), "dtype": "int8"})),
    "BUILD _metadata": make_pth.build({"_metadata": {}}),
    "SETITEM": value("path") + value("secret.pth") + b"s",
    "SETITEMS": b"(" + value("member") + value(0) + value("encoding") + b"Nu",
    "APPEND": value("secret.pth") + b"a",
    "APPENDS": b"(" + value(1) + value(None) + b"e",
    "REDUCE": value(("secret.pth", 0)) + b"R",
    "BINPERSID": b"Q",
}


def _boundaries(pickle: bytes, after=None) -> list:
    """The offset of every opcode after PROTO (or after one of the opcodes `after`): where an
    insertion acts on what the pickle has made so far."""
    ops = list(pickletools.genops(pickle))
    return [pos for (op, _, _), (_, _, pos) in zip(ops, ops[1:]) if after is None or op.name in after]


# Where the reader's own objects are on top: a storage, a tensor, a global, a memo reference.
MADE = {"BINPERSID", "REDUCE", "GLOBAL", "STACK_GLOBAL", "BINGET", "LONG_BINGET"}


def _outcome(path: Path):
    """The arrays a file gives, or None where it is refused; anything but a one-line UsageError
    naming the file fails the test (an internal error, exit 3, in the CLI)."""
    try:
        return {k: np.asarray(v) for k, v in read_weights(str(path)).items()}
    except UsageError as e:
        message = str(e)
        assert "\n" not in message and str(path) in message, message
        return None


def _assert_own_bytes(arrays) -> None:
    """Whatever loaded came from this file, whose every element is FILL: never secret.pth's."""
    for key, array in (arrays or {}).items():
        assert np.all(array == FILL), (key, array)


@pytest.mark.parametrize("base", [pytest.param(b, marks=pytest.mark.slow) if b == "torch.save" else b
                                  for b in sorted(BASES)])  # the handwritten base is enough for the quick loop
@pytest.mark.parametrize("steer", sorted(STEERS))
def test_a_steering_opcode_anywhere_is_refused_or_harmless(tmp_path, base, steer):
    """Each steering snippet at every opcode boundary of a valid pickle: a one-line refusal, or a
    load of this file's own bytes (a BUILD of _metadata, a SETITEM into a plain dict)."""
    if BASES[base] is None:
        pytest.skip("torch is not installed")
    (tmp_path / "secret.pth").write_bytes((PTH / "secret.pth").read_bytes())
    pickle, path = BASES[base], tmp_path / "w.pth"
    refused = 0
    for at in _boundaries(pickle):
        make_pth.write_pth(path, pickle[:at] + STEERS[steer] + pickle[at:], fill=FILL)
        arrays = _outcome(path)
        _assert_own_bytes(arrays)
        refused += arrays is None
    assert refused > 0


def test_a_steered_storage_is_refused_by_the_cli(tmp_path):
    """The CLI's view of the same: exit 2 and one line, never an internal error (exit 3)."""
    if BASES["torch.save"] is None:
        pytest.skip("torch is not installed")
    (tmp_path / "secret.pth").write_bytes((PTH / "secret.pth").read_bytes())
    pickle = BASES["torch.save"]
    first_storage = pickle.index(b"Q") + 1  # right after the first BINPERSID: a storage is on top
    for steer in ("BUILD a storage's path", "BUILD slots", "SETITEM", "APPEND", "REDUCE"):
        make_pth.write_pth(tmp_path / "w.pth", pickle[:first_storage] + STEERS[steer] + pickle[first_storage:])
        result = run_cli(tmp_path, "compile", "lenet5", "--weights", "w.pth", "-o", "m.onnx")
        assert result.returncode == 2 and result.stderr.startswith(f"error: w.pth: {NOT_TORCH}: "), result.stderr
        assert result.stderr.count("\n") == 1 and not (tmp_path / "m.onnx").exists()


_GLOBALS = [make_pth.glob(m, n) for m, n in [("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
                                             ("torch._utils", "_rebuild_parameter"), ("torch", "FloatStorage"),
                                             ("torch", "BFloat16Storage")]]
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.text(max_size=12),
    st.sampled_from(["secret.pth", "/etc/passwd", "../secret.pth", "archive/data/0", "0", "storage", "cpu"]),
    st.sampled_from(_GLOBALS),
    st.integers(0, 120).map(lambda k: b"h" + bytes([k])),  # a memo reference: what the pickle made before
    st.sampled_from([b"}", b"]", b")", b"Q"]),  # a fresh dict, list or tuple; or a storage from the top
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.tuples(inner, inner), st.tuples(inner, inner, inner, inner, inner),
    st.dictionaries(st.sampled_from(TARGETS), inner, max_size=3)), max_leaves=8)

_attributes = st.dictionaries(st.sampled_from(TARGETS), _values, min_size=1, max_size=3)


@st.composite
def _steers(draw) -> bytes:
    kind = draw(st.sampled_from(["BUILD", "slots", "SETITEM", "SETITEMS", "APPEND", "APPENDS", "REDUCE", "raw"]))
    v = lambda: value(draw(_values))  # noqa: E731
    attrs = lambda: value(draw(_attributes))  # noqa: E731
    return {
        "BUILD": lambda: v() + b"b" if draw(st.booleans()) else attrs() + b"b",
        "slots": lambda: b"(N" + attrs() + b"tb",
        "SETITEM": lambda: v() + v() + b"s",
        "SETITEMS": lambda: b"(" + v() + v() + v() + v() + b"u",
        "APPEND": lambda: v() + b"a",
        "APPENDS": lambda: b"(" + v() + v() + b"e",
        "REDUCE": lambda: value(draw(st.tuples(_values, _values))) + b"R",
        "raw": lambda: draw(st.binary(min_size=1, max_size=4)),  # any opcode, known or not
    }[kind]()


@pytest.mark.slow
@settings(max_examples=400, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(sorted(BASES)), made=st.booleans(), where=st.floats(0, 1, exclude_max=True),
       steer=_steers())
def test_any_steering_is_refused_in_one_line_or_reads_only_this_file(tmp_path, base, made, where, steer):
    pickle = BASES[base] or BASES["handwritten"]
    if not (tmp_path / "secret.pth").exists():
        (tmp_path / "secret.pth").write_bytes((PTH / "secret.pth").read_bytes())
    boundaries = _boundaries(pickle, MADE if made else None)
    at = boundaries[int(where * len(boundaries))]
    make_pth.write_pth(tmp_path / "w.pth", pickle[:at] + steer + pickle[at:], fill=FILL)
    _assert_own_bytes(_outcome(tmp_path / "w.pth"))


# -- real torch.save files still load identically ---------------------------------------------------
def _torch():
    return pytest.importorskip("torch", reason="torch is not installed: only the handwritten checkpoints ran")


def _torchvision():
    return import_torchvision()


def _assert_loads_identically(path: Path, state: dict) -> None:
    torch = _torch()
    arrays = read_weights(str(path))
    assert list(arrays) == list(state)
    for key, tensor in state.items():
        expected = tensor.detach()
        expected = expected.float() if expected.dtype == torch.bfloat16 else expected  # bfloat16 loads as float32
        array = np.asarray(arrays[key])
        assert array.dtype == expected.numpy().dtype and array.shape == tuple(expected.shape), key
        np.testing.assert_array_equal(array, expected.numpy(), err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_torchvision_state_dicts_load_identically(tmp_path, name):
    torch = _torch()
    torch.manual_seed(0)
    model = getattr(_torchvision().models, name)(weights=None)
    state = model.state_dict()
    torch.save(state, tmp_path / "w.pth")
    _assert_loads_identically(tmp_path / "w.pth", state)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_kind_of_tensor_loads_identically(tmp_path, protocol):
    torch = _torch()
    torch.manual_seed(0)
    big = torch.arange(1000, dtype=torch.float32)
    shared = torch.randn(6, 4)
    state = collections.OrderedDict(
        w=torch.randn(3, 4), bf16=torch.randn(5, 2).bfloat16(), fp16=torch.randn(7).half(),
        fp64=torch.randn(2, 2).double(), step=torch.tensor(5), flags=torch.tensor([True, False]),
        transposed=torch.randn(4, 3).t(), strided=big[5:500:7], tail=big[990:].view(2, 5),
        broadcast=torch.randn(3, 1).expand(3, 4), empty=torch.zeros(0, 3), scalar=torch.tensor(2.5),
        shared_a=shared[1:3], shared_b=shared[:, 2], shared_c=shared, same=big,
        param=torch.nn.Parameter(torch.randn(2, 2)))
    torch.save(state, tmp_path / "w.pth", pickle_protocol=protocol)
    _assert_loads_identically(tmp_path / "w.pth", state)


@pytest.mark.slow  # torch.optim's first use imports seconds of modules
def test_a_training_checkpoint_loads_its_state_dict(tmp_path):
    """A state_dict inside a checkpoint with an optimizer's state, numbers, strings and None."""
    torch = _torch()
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    torch.save({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3, "loss": 0.25,
                "steps": 2**40, "name": "run", "note": None}, tmp_path / "ckpt.pt")
    _assert_loads_identically(tmp_path / "ckpt.pt", model.state_dict())
