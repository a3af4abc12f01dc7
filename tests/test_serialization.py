"""fastnn.load / fastnn.save against torch: files torch wrote (zip and legacy, every dtype,
views, shared storages, containers) read bitwise like torch.load reads them; files fastnn wrote
read by torch.load(weights_only=True); models across the two; safetensors, npz, mmap, upcast,
the committed torch-made fixtures (no torch needed), `fastnn inspect`, refused arguments.
Hostile and corrupt files: tests/test_serialization_hostile.py."""
import io
import mmap
import os
import pickle
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import fastnn
from fastnn import cli, nn
from fastnn import serialization as S
from fnn_testing import assert_close, to_torch

pytestmark = pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
FORMATS = ("zip", "legacy")
# torch dtype name -> NumPy-side check; the v3 dtypes (uint16.., float8, complex32) are written by
# torch.save in both formats, but torch.load reads them from zip files only
TORCH_DTYPES = ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool",
                "complex64", "complex128", "uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2")
ML = ("bfloat16", "float8_e4m3fn", "float8_e5m2")


def torch_bytes(torch, obj, fmt):
    b = io.BytesIO()
    torch.save(obj, b, _use_new_zipfile_serialization=fmt == "zip")
    return b.getvalue()


def fastnn_bytes(obj):
    b = io.BytesIO()
    fastnn.save(obj, b)
    return b.getvalue()


def bits(torch, t):
    """The tensor's values as a C-contiguous NumPy array of unsigned ints of its element size
    (bitwise comparison, NaN-safe, for dtypes NumPy lacks too); conj/neg bits resolved."""
    t = t.detach().resolve_conj().resolve_neg().contiguous()
    size = t.element_size()
    if t.is_complex():
        t = torch.view_as_real(t) if t.dtype != torch.complex32 else t.view(torch.float16).reshape(*t.shape, 2)
        size //= 2
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[size]).numpy() \
        .view(f"u{size}").reshape(t.shape)


def np_bits(a):
    """:func:`bits` for a NumPy array."""
    a = np.asarray(a)
    flat = np.ascontiguousarray(a).reshape(-1)
    if a.dtype.kind == "c":
        return flat.view(a.real.dtype).view(f"u{a.itemsize // 2}").reshape(*a.shape, 2)
    return flat.view(f"u{a.itemsize}").reshape(a.shape)


def assert_tree_equal(torch, ours, theirs, path="obj"):
    """fastnn.load's tree against torch's: same containers, bitwise-equal tensors with torch's
    dtype, shape and strides."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, np.ndarray), path
        name = str(theirs.dtype).replace("torch.", "")
        assert S.ITEMSIZE[name] == ours.itemsize and (ours.dtype.name == name or name == "complex32"), \
            f"{path}: {ours.dtype} vs {theirs.dtype}"
        assert ours.shape == tuple(theirs.shape), path
        if ours.size > 1 and not (theirs.is_conj() or theirs.is_neg()):
            assert tuple(s // ours.itemsize for s in ours.strides) == theirs.stride(), path
        np.testing.assert_array_equal(np_bits(ours), bits(torch, theirs), err_msg=path)
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs), path
        for k in theirs:
            assert_tree_equal(torch, ours[k], theirs[k], f"{path}[{k!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, type(theirs)) and len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_tree_equal(torch, a, b, f"{path}[{i}]")
    else:
        assert type(ours) is type(theirs) and ours == theirs, path


def typed(torch, name, shape=(3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) * 50
    if name == "bool":
        return x > 0
    if name.startswith("complex"):
        return torch.complex(x, -x).to(getattr(torch, name))
    if name.startswith("uint"):
        return x.abs().to(torch.int64).to(getattr(torch, name))
    return x.to(getattr(torch, name))


def layouts(torch, t):
    """One storage seen every way a checkpoint can hold it."""
    sd = OrderedDict(base=t, t=t.t(), step=t[1:, ::2], row=t[2], expanded=t[0].expand(4, t.shape[1]),
                     scalar=t[1, 1], empty=t[:0], permuted=t.reshape(1, *t.shape).permute(2, 0, 1))
    return sd


# -- files torch wrote -------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", TORCH_DTYPES)
def test_every_dtype_and_layout_like_torch(torch, fmt, name):
    if name in ML:
        pytest.importorskip("ml_dtypes")
    obj = layouts(torch, typed(torch, name))
    data = torch_bytes(torch, obj, fmt)
    ours = fastnn.load(io.BytesIO(data))
    v3 = name in S.V3_DTYPES
    theirs = obj if (fmt == "legacy" and v3) else torch.load(io.BytesIO(data), weights_only=True)
    assert_tree_equal(torch, ours, theirs)
    # views of one storage share memory, like torch's
    for k in ("t", "step", "row", "expanded", "scalar", "permuted"):
        assert np.shares_memory(ours["base"], ours[k]), k


@pytest.mark.parametrize("fmt", FORMATS)
def test_containers_numbers_strings_parameters(torch, fmt):
    w = torch.nn.Parameter(torch.randn(3, 2))
    obj = {"model": torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()).state_dict(),
           "nested": [({"w": w, "wt": w.t()}, 1.5), [None, True, False, -7, 2**70, "é ☃", b"\x00\xff"]],
           "tuple": (1, (2, (3,))), "shape": torch.Size([4, 5]), "set": {1, 2},
           "complex": 1 - 2j, "empty": {}, "od": OrderedDict([("z", 1), ("a", 2)])}
    data = torch_bytes(torch, obj, fmt)
    ours = fastnn.load(io.BytesIO(data))
    theirs = torch.load(io.BytesIO(data), weights_only=True)
    assert type(ours["model"]) is OrderedDict and list(ours["model"]) == ["0.weight", "0.bias"]
    assert ours["shape"] == (4, 5) and type(ours["shape"]) is tuple
    theirs["shape"] = tuple(theirs["shape"])
    assert_tree_equal(torch, ours, theirs)
    assert np.shares_memory(ours["nested"][0][0]["w"], ours["nested"][0][0]["wt"])
    assert ours["model"]._metadata == theirs["model"]._metadata  # torch's state_dict version info


def test_a_single_tensor_both_ways(torch):
    t = torch.arange(6.0).reshape(2, 3).t()
    for fmt in FORMATS:
        ours = fastnn.load(io.BytesIO(torch_bytes(torch, t, fmt)))
        assert_tree_equal(torch, ours, t)
    a = np.arange(6.0).reshape(2, 3).T
    back = torch.load(io.BytesIO(fastnn_bytes(a)), weights_only=True)
    assert back.stride() == (1, 3) and np.array_equal(back.numpy(), a)


@pytest.mark.parametrize("protocol", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("fmt", FORMATS)
def test_pickle_protocols(torch, fmt, protocol):
    obj = {"w": torch.randn(2, 3), "s": ["x" * 300, b"y" * 300, 3.25, -(2**40)], "set": {1}}
    b = io.BytesIO()
    torch.save(obj, b, pickle_protocol=protocol, _use_new_zipfile_serialization=fmt == "zip")
    ours = fastnn.load(io.BytesIO(b.getvalue()))
    assert_tree_equal(torch, ours, obj)


def test_conj_and_neg_views_resolved(torch):
    z = torch.randn(4, dtype=torch.complex64)
    obj = {"conj": z.conj(), "neg": torch._neg_view(torch.randn(3)), "plain": z}
    for fmt in FORMATS:
        ours = fastnn.load(io.BytesIO(torch_bytes(torch, obj, fmt)))
        assert_tree_equal(torch, ours, obj)


def test_parameter_with_python_state_and_tensor_attributes(torch):
    p = torch.nn.Parameter(torch.randn(2))
    p.tag = "decoder"  # _rebuild_parameter_with_state
    t = torch.randn(3)
    t.note = 1  # _rebuild_from_type_v2
    ours = fastnn.load(io.BytesIO(torch_bytes(torch, {"p": p, "t": t}, "zip")))
    assert_tree_equal(torch, ours, {"p": p.detach(), "t": t})


@pytest.mark.parametrize("fmt", FORMATS)
def test_path_and_open_file(torch, tmp_path, fmt):
    obj = {"w": torch.arange(6.0).reshape(2, 3)}
    p = tmp_path / "w.pth"
    p.write_bytes(torch_bytes(torch, obj, fmt))
    for f in (p, str(p)):
        np.testing.assert_array_equal(fastnn.load(f)["w"], obj["w"].numpy())
    with open(p, "rb") as fh:
        np.testing.assert_array_equal(fastnn.load(fh)["w"], obj["w"].numpy())
    # a file object positioned after other data reads from where it stands
    b = io.BytesIO(b"junk" + p.read_bytes())
    b.seek(4)
    np.testing.assert_array_equal(fastnn.load(b)["w"], obj["w"].numpy())


@pytest.mark.parametrize("fmt", FORMATS)
def test_mmap_views_the_file_and_never_writes_it(torch, tmp_path, fmt):
    obj = layouts(torch, typed(torch, "float32", (40, 30)))
    p = tmp_path / "m.pt"
    p.write_bytes(torch_bytes(torch, obj, fmt))
    before = p.read_bytes()
    ours = fastnn.load(p, mmap=True)
    assert_tree_equal(torch, ours, obj)
    base = ours["base"]
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)
    ours["base"][0, 0] = 1234.0  # copy-on-write: the array changes, the file does not
    assert ours["t"][0, 0] == 1234.0 and p.read_bytes() == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_large_storages(torch, tmp_path, fmt):
    """Storages from 4 MiB on are read into anonymous maps (no transparent huge pages): still
    writable arrays with torch's values, views sharing them."""
    t = torch.randn(1100, 1000)  # 4.2 MiB
    p = tmp_path / "big.pt"
    torch.save({"w": t, "wt": t.t(), "small": t[0, :10]}, p, _use_new_zipfile_serialization=fmt == "zip")
    ours = fastnn.load(p)
    assert_tree_equal(torch, ours, {"w": t, "wt": t.t(), "small": t[0, :10]})
    assert ours["w"].flags.writeable and np.shares_memory(ours["w"], ours["small"])
    ours["w"][0, 0] = 7.0
    assert ours["small"][0] == 7.0 and ours["wt"][0, 0] == 7.0


def test_zip_big_endian_byteorder_record(torch):
    """A zip file written on a big-endian machine holds big-endian storages and says so in its
    'byteorder' record (torch.load swaps them). Made here by rewriting a little-endian file."""
    obj = {"f": torch.randn(2, 3), "c": torch.randn(3, dtype=torch.complex64), "i": torch.tensor([1, -2]),
           "u16": torch.tensor([1, 258]).to(torch.uint16), "b": torch.tensor([True]), "h": torch.randn(2).half()}
    obj["ft"] = obj["f"].t()
    # storage keys are numbered in order of first use: one per tensor, "ft" views storage 0
    word = {str(i): t.element_size() // (2 if t.is_complex() else 1) for i, t in enumerate(list(obj.values())[:6])}
    src = zipfile.ZipFile(io.BytesIO(torch_bytes(torch, obj, "zip")))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for n in src.namelist():
            data = src.read(n)
            if n.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in n and word[n.rsplit("/", 1)[1]] > 1:
                w = word[n.rsplit("/", 1)[1]]
                data = np.frombuffer(data, f"<u{w}").astype(f">u{w}").tobytes()
            z.writestr(n, data)
    ours = fastnn.load(io.BytesIO(out.getvalue()))
    assert_tree_equal(torch, ours, obj)
    theirs = torch.load(io.BytesIO(out.getvalue()), weights_only=True)
    # torch 2.13 does not swap untyped (v3 dtype) storages: its uint16 comes back byte-swapped
    assert bits(torch, theirs.pop("u16")).tolist() == [256, 513]
    assert_tree_equal(torch, {k: ours[k] for k in theirs}, theirs)


def _u(text):
    b = text.encode()
    return b"X" + len(b).to_bytes(4, "little") + b


def test_legacy_storage_views_and_gpu_storage_types(monkeypatch):
    """What old torch versions wrote and current torch no longer does: a persistent id whose
    sixth field is a view (key, offset, size) of another storage, and storages saved from a GPU
    (``torch.cuda.FloatStorage``, location 'cuda:0'). Hand-made, no torch needed."""
    monkeypatch.setitem(sys.modules, "torch", None)
    hooks = b"ccollections\nOrderedDict\n)R"

    def tensor(stype, key, numel, view, size):
        pid = b"(" + _u("storage") + stype + _u(key) + _u("cuda:0") + bytes([ord("K"), numel])
        pid += (b"(" + _u(view[0]) + b"K" + bytes([view[1]]) + b"K" + bytes([view[2]]) + b"t" if view else b"N")
        return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"tQK\x00K" + bytes([size]) + b"\x85K\x01\x85\x89"
                + hooks + b"tR")
    fs, ds = b"ctorch.cuda\nFloatStorage\n", b"ctorch\nDoubleStorage\n"
    pkl = (b"\x80\x02}(" + _u("whole") + tensor(fs, "0", 6, None, 6) + _u("view") + tensor(fs, "0", 6, ("9", 2, 3), 3)
           + _u("d") + tensor(ds, "1", 2, None, 2) + b"u.")
    root, d = np.arange(6, dtype="<f4"), np.array([0.5, -1.0], "<f8")
    data = (pickle.dumps(S.MAGIC_NUMBER, 2) + pickle.dumps(S.LEGACY_PROTOCOL, 2) + pickle.dumps({}, 2) + pkl
            + pickle.dumps(["0", "1"], 2) + (6).to_bytes(8, "little") + root.tobytes()
            + (2).to_bytes(8, "little") + d.tobytes())
    out = fastnn.load(io.BytesIO(data))
    np.testing.assert_array_equal(out["whole"], root)
    np.testing.assert_array_equal(out["view"], root[2:5])
    np.testing.assert_array_equal(out["d"], d)
    assert np.shares_memory(out["whole"], out["view"])


# -- dtypes NumPy lacks ------------------------------------------------------------------------
def test_bfloat16_without_ml_dtypes_says_how(torch, monkeypatch):
    obj = {"w": typed(torch, "bfloat16"), "wt": typed(torch, "bfloat16").t(), "c": typed(torch, "complex32")}
    data = torch_bytes(torch, {"w": obj["w"], "wt": obj["w"].t()}, "zip")
    monkeypatch.setattr(S, "_ml_dtypes", lambda: None)
    with pytest.raises(TypeError, match=r"bfloat16.*pip install ml_dtypes.*upcast=True"):
        fastnn.load(io.BytesIO(data))
    ours = fastnn.load(io.BytesIO(data), upcast=True)
    assert ours["w"].dtype == np.float32 and np.shares_memory(ours["w"], ours["wt"])
    np.testing.assert_array_equal(ours["w"], obj["w"].float().numpy())
    np.testing.assert_array_equal(ours["wt"], obj["w"].t().float().numpy())
    f8 = torch_bytes(torch, {"f8": typed(torch, "float8_e4m3fn")}, "zip")
    with pytest.raises(TypeError, match="float8_e4m3fn.*ml_dtypes"):
        fastnn.load(io.BytesIO(f8), upcast=True)  # float8 needs ml_dtypes even to upcast
    c = torch_bytes(torch, {"c": obj["c"]}, "zip")
    with pytest.raises(TypeError, match="complex32.*upcast=True"):
        fastnn.load(io.BytesIO(c))
    np.testing.assert_array_equal(fastnn.load(io.BytesIO(c), upcast=True)["c"], obj["c"].to(torch.complex64).numpy())


@pytest.mark.parametrize("name", ML)
def test_ml_dtypes_loaded_and_upcast(torch, name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    t = typed(torch, name)
    data = torch_bytes(torch, {"x": t}, "zip")
    ours = fastnn.load(io.BytesIO(data))["x"]
    assert ours.dtype == np.dtype(getattr(ml_dtypes, name))
    np.testing.assert_array_equal(ours.view(np.uint8 if ours.itemsize == 1 else np.uint16), bits(torch, t))
    up = fastnn.load(io.BytesIO(data), upcast=True)["x"]
    assert up.dtype == np.float32
    np.testing.assert_array_equal(up, t.float().numpy())


# -- files fastnn wrote, read by torch ---------------------------------------------------------
SAVE_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
               "uint64", "bool", "complex64", "complex128")


@pytest.mark.parametrize("name", SAVE_DTYPES + ML)
def test_save_every_dtype_and_layout_torch_reads_it(torch, name, rng):
    if name in ML:
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dt = np.dtype(getattr(ml_dtypes, name))
    else:
        dt = np.dtype(name)
    base = (rng.standard_normal((5, 7)) * 50).astype(np.float32).astype(dt) if dt.kind != "b" else rng.random((5, 7)) > 0.5
    swapped = base.astype(base.dtype.newbyteorder()) if dt.kind in "iufc" and dt.itemsize > 1 else base
    obj = OrderedDict(base=base, t=base.T, step=base[1:, ::3], row=base[2], scalar=base[1, 1][()],
                      zero_d=base[1:2, 1:2].reshape(()), empty=base[:0], F=np.asfortranarray(base),
                      rev=base[::-1], swapped=swapped)
    data = fastnn_bytes(obj)
    theirs = torch.load(io.BytesIO(data), weights_only=True)
    assert type(theirs) is OrderedDict and list(theirs) == list(obj)
    for k, v in obj.items():
        t = theirs[k]
        if isinstance(v, np.generic):  # NumPy scalars are saved as Python numbers
            assert t == v.item() and type(t) is type(v.item()), k
            continue
        assert str(t.dtype) == f"torch.{name}" and tuple(t.shape) == v.shape, k
        np.testing.assert_array_equal(bits(torch, t), np_bits(v.astype(v.dtype.newbyteorder("="))), err_msg=k)
    # views of one buffer are views of one storage, with NumPy's strides
    ptr = theirs["base"].untyped_storage().data_ptr()
    for k in ("t", "step", "row"):
        assert theirs[k].untyped_storage().data_ptr() == ptr, k
        assert theirs[k].stride() == tuple(s // base.itemsize for s in obj[k].strides), k
    assert theirs["F"].stride() == (1, 5)
    # and fastnn reads its own file back the same way
    ours = fastnn.load(io.BytesIO(data))
    assert np.shares_memory(ours["base"], ours["t"]) and ours["t"].strides == obj["t"].strides
    for k, v in obj.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(np_bits(ours[k]), np_bits(v.astype(v.dtype.newbyteorder("="))), err_msg=k)


def test_save_containers_and_values(torch):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    obj = {"od": OrderedDict([("b", a), ("a", [a[0], (a[:, 1], None)])]), "nums": [1, -1, 255, 256, 65536, -(2**31),
           2**31, 2**100, -(2**100), 0.1, float("inf"), 1 + 2j, True, False, np.int64(3), np.float32(0.5),
           np.bool_(True)], "s": ["", "é☃\U0001F600"], 7: "int key", "t": ()}
    theirs = torch.load(io.BytesIO(fastnn_bytes(obj)), weights_only=True)
    ours = fastnn.load(io.BytesIO(fastnn_bytes(obj)))
    for tree in (theirs, ours):
        assert type(tree["od"]) is OrderedDict and list(tree["od"]) == ["b", "a"]
        assert tree["nums"][:14] == obj["nums"][:14] and tree["nums"][14:] == [3, 0.5, True]
        assert type(tree["nums"][14]) is int and type(tree["nums"][16]) is bool
        assert tree["s"] == obj["s"] and tree[7] == "int key" and tree["t"] == ()
    assert_tree_equal(torch, ours["od"], theirs["od"])


def test_save_zip64_fields(torch, monkeypatch):
    """Sizes and offsets past 4 GiB take zip64 fields: lower the threshold and check torch,
    Python's zipfile and fastnn read the result."""
    monkeypatch.setattr(S, "ZIP64_LIMIT", 100)
    obj = {"a": np.arange(200, dtype=np.float32), "b": np.ones((3, 4)), "c": np.arange(7, dtype=np.int8)}
    data = fastnn_bytes(obj)
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    for tree in (torch.load(io.BytesIO(data), weights_only=True), fastnn.load(io.BytesIO(data))):
        for k, v in obj.items():
            np.testing.assert_array_equal(np.asarray(tree[k]), v)


def test_saved_records_are_aligned_for_mmap(tmp_path, rng):
    p = tmp_path / "a.pt"
    fastnn.save({f"w{i}": rng.standard_normal(n).astype(np.float32) for i, n in enumerate((1, 3, 64, 5))}, p)
    z = zipfile.ZipFile(p)
    with open(p, "rb") as f:
        for info in z.infolist():
            f.seek(info.header_offset + 26)
            nlen, xlen = np.frombuffer(f.read(4), "<u2")
            if "/data/" in info.filename:
                assert (info.header_offset + 30 + nlen + xlen) % 64 == 0, info.filename
    ours = fastnn.load(p, mmap=True)
    assert all(v.flags.aligned for v in ours.values())


# -- models across torch and fastnn ------------------------------------------------------------
def torch_cnn(torch):
    tnn = torch.nn
    return tnn.Sequential(tnn.Conv2d(2, 4, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                          tnn.Linear(4 * 3 * 3, 5), tnn.Tanh(), tnn.Linear(5, 3))


def fastnn_cnn(dtype=np.float32):
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 3 * 3, 5, dtype=dtype), nn.Tanh(), nn.Linear(5, 3, dtype=dtype))


@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_model_file_to_fastnn_module(torch, tmp_path, fmt, dtype, rng):
    torch.manual_seed(0)
    tm = torch_cnn(torch).to(torch.float64 if dtype == np.float64 else torch.float32)
    p = tmp_path / "model.pt"
    torch.save({"model": tm.state_dict(), "epoch": 3}, p, _use_new_zipfile_serialization=fmt == "zip")
    m = fastnn_cnn(dtype)
    m.load_state_dict(fastnn.load(p)["model"])
    x = rng.standard_normal((2, 2, 6, 6)).astype(dtype)
    with torch.no_grad():
        expected = tm(to_torch(torch, x)).numpy()
    assert_close(m(x), expected, dtype)


def test_fastnn_state_dict_file_to_torch_module(torch, tmp_path, rng):
    m = fastnn_cnn()
    p = tmp_path / "fastnn.pt"
    fastnn.save(m.state_dict(), p)
    tm = torch_cnn(torch)
    tm.load_state_dict(torch.load(p, weights_only=True))
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    with torch.no_grad():
        assert_close(m(x), tm(to_torch(torch, x)).numpy(), np.float32)
    m2 = fastnn_cnn()
    m2.load_state_dict(fastnn.load(p))
    np.testing.assert_array_equal(m2(x), m(x))


def test_bfloat16_checkpoint_into_float32_module(torch):
    pytest.importorskip("ml_dtypes")
    tl = torch.nn.Linear(4, 3).to(torch.bfloat16)
    sd = fastnn.load(io.BytesIO(torch_bytes(torch, tl.state_dict(), "zip")))
    m = nn.Linear(4, 3)
    m.load_state_dict(sd)  # cast to the module's float32, like torch's load_state_dict
    np.testing.assert_array_equal(m.weight.data, tl.weight.float().detach().numpy())


def test_load_state_dict_still_refuses_non_real_arrays():
    m = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="real numeric"):
        m.load_state_dict({"weight": np.ones((2, 2), bool), "bias": np.ones(2)})
    with pytest.raises(TypeError, match="real numeric"):
        m.load_state_dict({"weight": np.ones((2, 2), complex), "bias": np.ones(2)})


# -- safetensors and npz -----------------------------------------------------------------------
def test_safetensors_round_trip_and_detection_by_content(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    d = {"w": rng.standard_normal((3, 4)).astype(np.float32), "i": np.arange(5, dtype=np.int64),
         "b": np.array([True, False]), "e": np.zeros((0, 2), np.float16)}
    p = tmp_path / "m.safetensors"
    fastnn.save(d, p)
    for k, v in st.load_file(str(p)).items():  # the safetensors package reads what fastnn wrote
        np.testing.assert_array_equal(v, d[k])
    q = tmp_path / "weights.bin"  # written by the package, named like anything
    st.save_file({**d, "wt": np.ascontiguousarray(d["w"].T)}, str(q))
    back = fastnn.load(q)
    for k, v in d.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)
    with open(q, "rb") as fh:
        np.testing.assert_array_equal(fastnn.load(fh)["w"], d["w"])
    b = io.BytesIO()
    fastnn.save(d, b, format="safetensors")
    np.testing.assert_array_equal(fastnn.load(io.BytesIO(b.getvalue()))["w"], d["w"])


def test_safetensors_bfloat16(tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    w = np.array([1.5, -2.25, 3e38, np.nan], dtype=np.float32).astype(ml_dtypes.bfloat16)
    p = tmp_path / "bf.safetensors"
    fastnn.save({"w": w}, p)
    back = fastnn.load(p)["w"]
    assert back.dtype == w.dtype and np.array_equal(back.view(np.uint16), w.view(np.uint16))
    np.testing.assert_array_equal(fastnn.load(p, upcast=True)["w"], w.astype(np.float32))
    monkeypatch.setattr(S, "_ml_dtypes", lambda: None)
    with pytest.raises(TypeError, match="ml_dtypes"):
        fastnn.load(p)


def test_safetensors_missing_package_says_how(tmp_path, monkeypatch):
    st = pytest.importorskip("safetensors.numpy")
    p = tmp_path / "m.safetensors"
    st.save_file({"w": np.ones(2, np.float32)}, str(p))
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ModuleNotFoundError, match="pip install safetensors"):
        fastnn.load(p)
    with pytest.raises(ModuleNotFoundError, match="pip install safetensors"):
        fastnn.save({"w": np.ones(2)}, tmp_path / "x.safetensors")


def test_npz_both_ways_detected_by_content(tmp_path, rng):
    d = {"w": rng.standard_normal((3, 4)).astype(np.float32), "i": np.arange(5, dtype=np.int16),
         "c": np.array([1 + 2j])}
    for save in (np.savez, np.savez_compressed):
        p = tmp_path / f"{save.__name__}.pt"  # any name
        with open(p, "wb") as fh:
            save(fh, **d)
        back = fastnn.load(p)
        assert list(back) == list(d)
        for k, v in d.items():
            assert back[k].dtype == v.dtype
            np.testing.assert_array_equal(back[k], v)
    q = tmp_path / "out.npz"
    fastnn.save(d, q)
    with np.load(q) as z:
        for k, v in d.items():
            np.testing.assert_array_equal(z[k], v)


def test_npz_with_object_arrays_is_refused(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="object arrays are refused"):
        fastnn.load(p)


# -- the committed torch-made fixtures: no torch needed ----------------------------------------
def flat(obj, prefix=""):
    if isinstance(obj, np.ndarray):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from flat(v, f"{prefix}/{k}" if prefix else k)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("use_mmap", [False, True])
def test_fixture_files_without_torch(fmt, use_mmap, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # prove no torch is needed
    ours = fastnn.load(os.path.join(FIXTURES, f"checkpoint_{fmt}.pt"), mmap=use_mmap, upcast=True)
    with np.load(os.path.join(FIXTURES, "expected.npz")) as z:
        expected = {k: z[k] for k in z.files}
    got = dict(flat(ours))
    assert sorted(got) == sorted(k for k in expected if not k.endswith(".stride"))
    for k, v in got.items():
        exp = expected[k]
        if k.endswith("bf16"):  # upcast: exactly the bfloat16 values
            exp = (exp.astype(np.uint32) << 16).view(np.float32)
        assert v.dtype == exp.dtype and v.shape == exp.shape, k
        np.testing.assert_array_equal(np_bits(v), np_bits(exp), err_msg=k)
        if v.size > 1:
            assert tuple(s // v.itemsize for s in v.strides) == tuple(expected[k + ".stride"]), k
    sd = ours["state_dict"]
    for k in ("layer.weight_t", "layer.every_other", "layer.row_expanded"):
        assert np.shares_memory(sd["layer.weight"], sd[k]), k
    assert ours["meta"] == {"epoch": 7, "lr": 0.01, "arch": "tiny", "none": None, "shape": (2, 3), "tags": ["a", "b"]}
    assert type(sd) is OrderedDict


def test_fixture_bfloat16_with_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with np.load(os.path.join(FIXTURES, "expected.npz")) as z:
        bits16 = z["state_dict/bf16"]
    for fmt in FORMATS:
        bf = fastnn.load(os.path.join(FIXTURES, f"checkpoint_{fmt}.pt"))["state_dict"]["bf16"]
        assert bf.dtype == ml_dtypes.bfloat16 and np.array_equal(bf.view(np.uint16), bits16)


def test_fixture_into_module_and_back(tmp_path):
    sd = fastnn.load(os.path.join(FIXTURES, "checkpoint_zip.pt"))["state_dict"]
    m = nn.Linear(6, 4)
    m.load_state_dict({"weight": sd["layer.weight"], "bias": sd["layer.bias"]})
    p = tmp_path / "m.pt"
    fastnn.save(m.state_dict(), p)
    back = fastnn.load(p)
    assert type(back) is OrderedDict and list(back) == ["weight", "bias"]
    np.testing.assert_array_equal(back["weight"], sd["layer.weight"])


# -- fastnn inspect ----------------------------------------------------------------------------
def test_cli_inspect(capsys):
    assert cli.main(["inspect", os.path.join(FIXTURES, "checkpoint_legacy.pt")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("torch legacy") and out[1].split() == ["name", "dtype", "shape", "size"]
    rows = {line.split()[0]: line.split() for line in out[2:-1]}
    assert rows["state_dict.layer.weight"] == ["state_dict.layer.weight", "float32", "(4,", "6)", "24"]
    assert rows["state_dict.bf16"][1] == "bfloat16"  # the file's dtype, with or without ml_dtypes
    assert rows["state_dict.empty"][-1] == "0"
    assert out[-1].startswith("total: 19 tensors, 116 parameters") and "8 other values" in out[-1]


def test_cli_inspect_errors(tmp_path, capsys):
    p = tmp_path / "x.txt"
    p.write_text("hello, not a checkpoint")
    assert cli.main(["inspect", str(p)]) == 2
    assert "not a file fastnn.load reads" in capsys.readouterr().err
    assert cli.main(["inspect", str(tmp_path / "missing.pt")]) == 2


# -- refused arguments -------------------------------------------------------------------------
def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="f: expected a path or a binary file object"):
        fastnn.load(42)
    with pytest.raises(TypeError, match="mmap: expected True or False"):
        fastnn.load(io.BytesIO(b"x"), mmap=1)
    with pytest.raises(TypeError, match="upcast: expected True or False"):
        fastnn.load(io.BytesIO(b"x"), upcast="yes")
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="empty file"):
        fastnn.load(io.BytesIO(b""))
    with pytest.raises(ValueError, match="mmap=True needs a file on disk"):
        fastnn.load(io.BytesIO(fastnn_bytes({"w": np.ones(2)})), mmap=True)
    with pytest.raises(ValueError, match="format: expected"):
        fastnn.save({}, io.BytesIO(), format="pickle")
    with pytest.raises(TypeError, match=r"f: expected a path or a binary file object with write\(\)"):
        fastnn.save({}, 3.5)


@pytest.mark.parametrize("obj, match", [
    ({"a": {1, 2}}, r"obj\['a'\]: expected arrays, numbers"),
    ({"a": [np.ones(2), object()]}, r"obj\['a'\]\[1\]: expected arrays"),
    ({"a": np.array(["x"])}, r"obj\['a'\]: arrays of dtype <U1 cannot be saved"),
    ({"a": np.array([1], dtype=object)}, "dtype object cannot be saved"),
    ({"a": np.ones(2, dtype=np.longdouble)} if np.dtype(np.longdouble).itemsize > 8 else {"a": np.ones(1, "M8[s]")},
     "cannot be saved"),
])
def test_save_refuses_what_torch_cannot_read(tmp_path, obj, match):
    p = tmp_path / "x.pt"
    with pytest.raises(TypeError, match=match):
        fastnn.save(obj, p)
    assert not p.exists()  # refused before the file was created


def test_save_refuses_cycles_and_non_flat_dicts_for_safetensors_npz(tmp_path):
    a = [1]
    a.append(a)
    with pytest.raises(ValueError, match="contains itself"):
        fastnn.save({"a": a}, io.BytesIO())
    for suffix in ("npz", "safetensors"):
        with pytest.raises(TypeError, match=f"{suffix} files hold a flat dict"):
            fastnn.save({"a": {"b": np.ones(2)}}, tmp_path / f"x.{suffix}")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(TypeError, match="npz holds NumPy's own dtypes"):
        fastnn.save({"a": np.ones(2, ml_dtypes.bfloat16)}, tmp_path / "x.npz")


def test_inputs_are_not_modified(torch):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    ro = a.copy()
    ro.setflags(write=False)
    obj = {"a": a, "ro": ro, "t": a.T}
    snapshot = {k: v.copy() for k, v in obj.items()}
    data = fastnn_bytes(obj)
    for k, v in obj.items():
        np.testing.assert_array_equal(v, snapshot[k])
    assert not ro.flags.writeable
    np.testing.assert_array_equal(torch.load(io.BytesIO(data), weights_only=True)["ro"].numpy(), ro)
