"""fastnn.load on hostile and corrupt files: pickles that would run code are refused before
anything runs (and a marker file they would create stays absent); truncated, bit-flipped and
oversized-length files give a clear ValueError, never a crash, a hang or a huge allocation.
Needs no torch: the files come from the committed fixtures, fastnn.save and hand-made pickles."""
import io
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import serialization as S

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
SYSTEM = f"{os.system.__module__}.system"  # 'posix.system' on Linux


@pytest.fixture(autouse=True)
def small_buffers_only(monkeypatch):
    """Every file here is a few KiB: a storage buffer past 1 MiB means a size from the file was
    trusted. (Large buffers are anonymous maps, which tracemalloc does not see.)"""
    real = S._buffer

    def spy(nbytes):
        assert nbytes <= 1 << 20, f"allocated {nbytes} bytes for a storage"
        return real(nbytes)

    monkeypatch.setattr(S, "_buffer", spy)


class Reduce:
    """Pickles as ``fn(*args)``: what a malicious checkpoint carries."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class Plain:
    """An ordinary class: pickles through copyreg / __main__ globals."""

    def __init__(self):
        self.x = 1


def payloads(marker):
    """name -> (pickle bytes, global the error must name). Each would create ``marker``."""
    cmd = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    out = {}
    for proto in (0, 2, 4, 5):
        out[f"os.system-p{proto}"] = (pickle.dumps(Reduce(os.system, cmd), proto), SYSTEM)
    out["eval"] = (pickle.dumps(Reduce(eval, code), 2), "__builtin__.eval")  # protocol 2: Python 2 names
    out["exec"] = (pickle.dumps(Reduce(exec, code), 4), "builtins.exec")
    out["subprocess.Popen"] = (pickle.dumps(Reduce(subprocess.Popen, ["touch", str(marker)]), 4), "subprocess.Popen")
    # inside an innocent-looking state dict, several containers deep
    sd = OrderedDict([("w", [1.0, 2.0]), ("layers", [{"ok": 1}, (OrderedDict(evil=Reduce(os.system, cmd)),)])])
    out["nested-in-state-dict"] = (pickle.dumps(sd, 2), SYSTEM)
    # hand-made opcode sequences
    c = cmd.encode()
    out["INST"] = (b"(S'" + c + b"'\nios\nsystem\n.", "os.system")
    out["OBJ"] = (b"(cos\nsystem\nS'" + c + b"'\no.", "os.system")
    out["STACK_GLOBAL"] = (b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c" + bytes([len(c)]) + c + b"\x85R.", "os.system")
    out["py2-__builtin__.eval"] = (b"c__builtin__\neval\n(S'" + code.encode() + b"'\ntR.", "__builtin__.eval")
    out["getattr-chain"] = (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'" + c + b"'\ntR.",
                            "builtins.getattr")  # getattr(__import__('os'), 'system')(cmd)
    # an allowed global (OrderedDict) called on an evil argument: the argument's global is refused
    out["evil-arg-of-allowed"] = (b"\x80\x02ccollections\nOrderedDict\n(cos\nsystem\n(S'" + c + b"'\ntRtR.", "os.system")
    # the storage type of a torch persistent id replaced by os.system (not called by plain pickle:
    # left out of test_payloads_are_live)
    out["evil-storage-type"] = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagecos\nsystem\n"
                                b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00K\x01\x85K\x01\x85\x89"
                                b"ccollections\nOrderedDict\n)RtR.", "os.system")
    return out


def legacy_file(pkl, keys=b"\x80\x02]q\x00."):
    """A legacy torch file around object pickle ``pkl``."""
    head = pickle.dumps(S.MAGIC_NUMBER, 2) + pickle.dumps(S.LEGACY_PROTOCOL, 2)
    head += pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {}}, 2)
    return head + pkl + keys


def zip_file(records):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        for name, data in records.items():
            z.writestr(name, data)
    return b.getvalue()


CONTAINERS = {
    "zip": lambda pkl: zip_file({"archive/data.pkl": pkl, "archive/byteorder": b"little"}),
    "legacy": legacy_file,
    "legacy-header": lambda pkl: pickle.dumps(S.MAGIC_NUMBER, 2) + pickle.dumps(S.LEGACY_PROTOCOL, 2) + pkl,
}
NAMES = list(payloads("M"))
LIVE = [n for n in NAMES if n != "evil-storage-type"]


@pytest.mark.parametrize("container", list(CONTAINERS))
@pytest.mark.parametrize("name", NAMES)
def test_code_running_pickles_are_refused(tmp_path, name, container):
    marker = tmp_path / "marker"
    pkl, glob = payloads(marker)[name]
    data = CONTAINERS[container](pkl)
    if container == "legacy-header":  # the header pickles may name no global at all
        glob = ".*"
    for f in (io.BytesIO(data), tmp_path / "evil.pt"):
        (tmp_path / "evil.pt").write_bytes(data)
        with pytest.raises(fastnn.UnpicklingError, match=f"refusing global '{glob}'"):
            fastnn.load(f)
        assert not marker.exists()


@pytest.mark.parametrize("name", LIVE)
def test_payloads_are_live(tmp_path, name):
    """The refused pickles are real: Python's own pickle.loads (in a child process) runs them
    and creates the marker. Without this the test above could not fail."""
    marker = tmp_path / "marker"
    pkl, _ = payloads(marker)[name]
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=pkl, capture_output=True, timeout=60)
    assert marker.exists(), name


@pytest.mark.parametrize("pkl, match", [
    (pickle.dumps(Plain(), 0), "refusing global 'copy_reg._reconstructor'"),
    (pickle.dumps(Plain(), 4), f"refusing global '{__name__}.Plain'"),
    (pickle.dumps(np.ones(2), 2), "refusing global 'numpy"),
    (b"\x80\x02ctorch\nFloatStorage\n)R.", "refusing to call _Marker"),        # REDUCE on a storage class
    (b"\x80\x02ctorch\nFloatStorage\n)\x81.", "refusing to call _Marker"),     # NEWOBJ
    (b"\x80\x02K\x01)R.", "refusing to call int"),                              # REDUCE on data
    (b"\x80\x02]}b.", "BUILD on a list with this state is not allowed"),
    (b"\x80\x02ccollections\nOrderedDict\n)R}b.", None),  # BUILD with a plain dict on an OrderedDict: allowed
    (b"\x80\x02ccollections\nOrderedDict\n)R}X\x04\x00\x00\x00keysK\x01sb.", "BUILD on a OrderedDict"),  # hides .keys()
    (b"\x80\x02\x82\x01.", "unsupported pickle opcode"),                        # EXT1 (copyreg registry)
    (b"\x80\x02P1\n.", "unsupported pickle opcode"),                            # text persistent id
    (b"\x80\x05\x97.", "unsupported pickle opcode"),                            # NEXT_BUFFER
    (b"\x80\x02ccollections\nOrderedDict\nK\x05\x85R.", "OrderedDict: expected items"),
    (b"\x80\x02cbuiltins\nbytearray\nJ\x00\x00\x00@\x85R.", "bytearray: expected bytes"),  # no 1 GiB bytearray
    (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)R.", "missing 4 required positional arguments"),
])
def test_other_refusals(pkl, match):
    f = io.BytesIO(CONTAINERS["zip"](pkl))
    if match is None:
        assert type(fastnn.load(f)) is OrderedDict
        return
    with pytest.raises(fastnn.UnpicklingError, match=match):
        fastnn.load(f)


# -- corrupt and truncated files ---------------------------------------------------------------
def sample_files():
    out = {}
    for fmt in ("zip", "legacy"):
        with open(os.path.join(FIXTURES, f"checkpoint_{fmt}.pt"), "rb") as f:
            out[fmt] = f.read()
    b = io.BytesIO()
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    fastnn.save(OrderedDict(a=a, t=a.T, h=np.ones(3, np.float16), meta={"n": [1, "x", None]}), b)
    out["fastnn"] = b.getvalue()
    return out


FILES = sample_files()


def load_bytes(data):
    return fastnn.load(io.BytesIO(data), upcast=True)


@pytest.mark.parametrize("kind", list(FILES))
def test_every_truncation_is_a_clear_error(kind):
    data = FILES[kind]
    load_bytes(data)  # the whole file loads
    for n in range(len(data)):
        with pytest.raises(ValueError, match=r"truncated|corrupt|not a file|empty file"):
            load_bytes(data[:n])


@settings(max_examples=300)
@given(kind=st.sampled_from(sorted(FILES)), data=st.data())
def test_mutated_files_load_or_fail_clearly(kind, data):
    """Flip bits, overwrite bytes, insert or delete: the loader returns or raises ValueError
    (TypeError only for a dtype it names), with a bounded allocation."""
    raw = bytearray(FILES[kind])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "byte", "insert", "delete"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "byte":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[pos:pos] = bytes([data.draw(st.integers(0, 255))])
        else:
            del raw[pos]
    tracemalloc.start()
    try:
        load_bytes(bytes(raw))
    except TypeError as e:
        assert "dtype" in str(e), e
    except ValueError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 64 * len(raw) + (4 << 20), peak


def crafted_zip(shape, strides, offset, numel, record, dtype="float32"):
    """A torch zip file whose one tensor declares ``shape``/``strides``/``offset`` on a storage
    of ``numel`` elements holding the bytes ``record``: the sizes a corrupt file can claim."""
    a = np.zeros(1, dtype)
    pkl = S._Pickler({id(a): ("0", dtype, offset, shape, strides, numel)}).dump({"w": a})
    return zip_file({"archive/data.pkl": pkl, "archive/data/0": record})


HUGE = 2**40


@pytest.mark.parametrize("shape, strides, offset, numel, record, match", [
    ((4,), (1,), 0, HUGE, b"\0" * 16, "needs bytes 0..4398046511104 but the file has"),   # terabytes claimed
    ((4,), (1,), 0, 8, b"\0" * 16, "needs 32 bytes but its record holds 16"),             # short storage
    ((HUGE, HUGE), (1, 1), 0, 4, b"\0" * 16, "needs 2199023255551 float32 elements but its storage .* holds 4"),
    ((3,), (2,), 0, 4, b"\0" * 16, "needs 5 float32 elements"),
    ((2,), (1,), 3, 4, b"\0" * 16, "needs 5 float32 elements"),
    ((2,), (-1,), 0, 4, b"\0" * 16, "bad offset/size/stride"),
    ((2, 2), (1,), 0, 4, b"\0" * 16, "bad offset/size/stride"),
    ((1,) * 65, (1,) * 65, 0, 4, b"\0" * 16, "bad offset/size/stride"),
])
def test_sizes_past_the_file_are_refused_without_allocating(shape, strides, offset, numel, record, match):
    data = crafted_zip(shape, strides, offset, numel, record)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match):
            load_bytes(data)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_legacy_storage_sizes_checked():
    a = np.zeros(1, np.float32)
    pkl = S._Pickler({id(a): ("0", "float32", 0, (4,), (1,), 4)}).dump({"w": a})
    keys = pickle.dumps(["0"], 2)
    good = legacy_file(pkl, keys) + struct.pack("<q", 4) + np.arange(4, dtype="<f4").tobytes()
    np.testing.assert_array_equal(load_bytes(good)["w"], np.arange(4, dtype=np.float32))
    with pytest.raises(ValueError, match="holds 5 elements, the pickle says 16 bytes"):
        load_bytes(legacy_file(pkl, keys) + struct.pack("<q", 5) + b"\0" * 20)
    with pytest.raises(ValueError, match="truncated"):
        load_bytes(good[:-1])
    with pytest.raises(ValueError, match="key list does not match"):
        load_bytes(legacy_file(pkl, pickle.dumps(["1"], 2)) + good[-24:])
    huge = S._Pickler({id(a): ("0", "float32", 0, (4,), (1,), HUGE)}).dump({"w": a})
    tracemalloc.start()
    with pytest.raises(ValueError, match="needs bytes 0..4398046511104"):
        load_bytes(legacy_file(huge, keys) + struct.pack("<q", HUGE))
    assert tracemalloc.get_traced_memory()[1] < 1 << 20
    tracemalloc.stop()


@pytest.mark.parametrize("pkl, match", [
    (b"\x80\x02X\xff\xff\xff\xff" + b"x" * 10 + b".", "truncated"),          # BINUNICODE of 4 GiB
    (b"\x80\x04\x8e" + b"\xff" * 8 + b".", "negative length|truncated"),     # BINBYTES8 of 2**64-1
    (b"\x80\x02\x8b\x00\x00\x00\x80.", "negative length"),                   # LONG4, length < 0
    (b"\x80\x02(((((((((.", "malformed pickle"),
    (b"\x80\x02h\x05.", "corrupt pickle data"),                              # memo miss
    (b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", "corrupt pickle data"),          # bad UTF-8
    (b"\x80\x02}]]s.", "corrupt pickle data"),                               # unhashable key
    (b"\x80\x02I" + b"9" * 10000 + b"\n.", "corrupt pickle data"),          # int string too long
    (b"\x80\x02c" + b"x" * (2 << 20), "longer than 64 KiB"),
    (b"\x80\x02c" + b"x" * 100, "ends early: truncated"),
    (b"\x80\x09.", "unknown pickle protocol"),
])
def test_corrupt_pickles(pkl, match):
    with pytest.raises(ValueError, match=match):
        load_bytes(CONTAINERS["zip"](pkl))


def test_huge_memo_index_allocates_nothing():
    """C pickle sizes its memo list by the largest PUT index (gigabytes for 2**32-1); the memo here
    is a dict."""
    data = CONTAINERS["zip"](b"\x80\x02K\x07r\xff\xff\xff\xff0j\xff\xff\xff\xff.")
    tracemalloc.start()
    assert load_bytes(data) == 7
    assert tracemalloc.get_traced_memory()[1] < 1 << 20
    tracemalloc.stop()


def test_wrong_magic_and_protocol():
    good = FILES["legacy"]
    magic = pickle.dumps(S.MAGIC_NUMBER, 2)
    assert good.startswith(magic)
    with pytest.raises(ValueError, match="wrong magic number"):
        load_bytes(pickle.dumps(S.MAGIC_NUMBER + 1, 2) + good[len(magic):])
    with pytest.raises(ValueError, match="wrong magic number"):
        load_bytes(pickle.dumps({"just": "a pickle"}, 2))
    with pytest.raises(ValueError, match="unsupported legacy torch protocol"):
        load_bytes(magic + pickle.dumps(1000, 2) + good[len(magic) + len(pickle.dumps(1001, 2)):])
    with pytest.raises(ValueError, match="not a file fastnn.load reads"):
        load_bytes(b"GIF89a" + b"\0" * 100)


def test_corrupt_zip_directories():
    good = FILES["fastnn"]
    eocd = good.rfind(b"PK\x05\x06")
    for field, value, match in [(12, 0xFFFFFFF0, "needs bytes|corrupt"),   # central directory size
                                (16, 0xFFFFFFF0, "needs bytes|corrupt"),   # its offset
                                (10, 0xFFFE, "cannot fit"),                # entry count
                                (16, 0xFFFFFFFF, "zip64")]:                # points to a zip64 record that is not there
        bad = bytearray(good)
        size = 2 if field in (8, 10) else 4
        bad[eocd + field: eocd + field + size] = value.to_bytes(size, "little")
        with pytest.raises(ValueError, match=match):
            load_bytes(bytes(bad))
    names = zipfile.ZipFile(io.BytesIO(good)).namelist()
    records = {n: zipfile.ZipFile(io.BytesIO(good)).read(n) for n in names}
    with pytest.raises(ValueError, match="missing from the archive"):
        load_bytes(zip_file({n: d for n, d in records.items() if not n.endswith("data/0")}))
    with pytest.raises(ValueError, match="not a torch.save checkpoint"):
        load_bytes(zip_file({"a.txt": b"hello"}))
    with pytest.raises(ValueError, match="TorchScript"):
        load_bytes(zip_file({**records, "archive/constants.pkl": b""}))
    with pytest.raises(ValueError, match="unknown byte order"):
        load_bytes(zip_file({**records, "archive/byteorder": b"middle"}))
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in records.items():
            z.writestr(n, d)
    with pytest.raises(ValueError, match="compressed torch record"):
        load_bytes(b.getvalue())


def test_npz_sizes_checked_before_allocating():
    b = io.BytesIO()
    np.savez(b, a=np.arange(4.0))
    z = zipfile.ZipFile(io.BytesIO(b.getvalue()))
    member = z.read("a.npy")
    header = np.lib.format.header_data_from_array_1_0(np.arange(4.0))
    header["shape"] = (10**12,)
    h = io.BytesIO()
    np.lib.format.write_array_header_1_0(h, header)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z2:
        z2.writestr("a.npy", h.getvalue() + member[-32:])
    tracemalloc.start()
    with pytest.raises(ValueError, match="needs more bytes than the member holds"):
        load_bytes(out.getvalue())
    assert tracemalloc.get_traced_memory()[1] < 1 << 20
    tracemalloc.stop()


def test_corrupt_safetensors():
    pytest.importorskip("safetensors")
    header = b'{"w":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}'
    with pytest.raises(ValueError, match="corrupt safetensors file"):
        load_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
