"""Read and write torch checkpoints, safetensors and ``.npz`` files as NumPy arrays, without torch.

:func:`load` reads what ``torch.save`` wrote (the zip format of torch >= 1.6 and the legacy
format before it) and returns the same object tree with every tensor as a NumPy array;
:func:`save` writes the zip format that ``torch.load(f, weights_only=True)`` reads.

Nothing in a file can run code: pickles are read by a small interpreter of the pickle opcodes
(below) that builds plain data (dicts, lists, tuples, numbers, strings) and calls only the
functions of an allowlist, the few a weights file needs (``_rebuild_tensor_v2``,
``OrderedDict``, ...), each reimplemented here. Any other global raises
:class:`UnpicklingError` before anything is called. Every size in a file is checked against the
bytes the file holds before anything is read or allocated.

Formats (what torch writes, read from torch's ``serialization.py``):

* **zip**: records ``<prefix>/data.pkl`` (the object pickle), ``<prefix>/data/<key>`` (raw
  storage bytes, stored uncompressed, 64-byte aligned) and ``<prefix>/byteorder``. A tensor
  pickles as ``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``, a
  storage as the persistent id ``("storage", FloatStorage, key, location, numel)``.
* **legacy**: five pickles in a row (magic number, protocol version 1001, system info, the
  object, the sorted list of storage keys), then each storage as an int64 element count and
  its little-endian bytes, in the order of the key list. Persistent ids carry a sixth field
  (a view of another storage, in very old files).
"""
import codecs
import io
import math
import mmap as _mmap
import os
import pickle
import struct
import sys
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np

__all__ = ["load", "save", "UnpicklingError"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy torch file
LEGACY_PROTOCOL = 1001
ZIP_ALIGN = 64  # torch aligns every storage record's data to 64 bytes (mmap-friendly)


class UnpicklingError(pickle.UnpicklingError, ValueError):
    """A pickle in the file is corrupt or asks for what a weights file never needs (a global
    outside the allowlist, an opcode that calls code); raised before anything is called."""


class _FileError(ValueError):
    """Truncated or corrupt file (the message starts with the file's name)."""


class _DtypeError(TypeError):
    """A tensor dtype NumPy cannot hold (the message says what to install or pass)."""


# -- dtypes ------------------------------------------------------------------------------------
STORAGE_TYPES = {  # torch's typed storage classes (pickled by name) -> torch dtype
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
}
NUMPY_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16",
                "uint32", "uint64", "bool", "complex64", "complex128")
ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu")
ITEMSIZE = {**{n: np.dtype(n).itemsize for n in NUMPY_DTYPES}, "bfloat16": 2, "complex32": 4,
            **{n: 1 for n in ML_DTYPES[1:]}}
# torch.save writes these as an untyped storage plus the dtype (_rebuild_tensor_v3)
V3_DTYPES = ("uint16", "uint32", "uint64", "complex32") + ML_DTYPES[1:]


def _ml_dtypes():
    try:
        import ml_dtypes
    except ImportError:
        return None
    return ml_dtypes


def _upcast_bf16(raw):
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)  # exact


def _resolve_dtype(name, upcast):
    """``(dtype, convert)`` for torch dtype ``name``: ``convert`` is None when the storage bytes
    are the array's bytes, else ``convert(raw bytes) -> array`` (an exact upcast copy)."""
    if name in NUMPY_DTYPES:
        return np.dtype(name), None
    if name == "complex32":
        if upcast:
            return np.dtype(np.complex64), lambda raw: raw.view(np.float16).astype(np.float32).view(np.complex64)
        raise _DtypeError("tensor dtype complex32: NumPy has no complex32; pass upcast=True to get complex64")
    if name not in ML_DTYPES:
        raise _DtypeError(f"tensor dtype {name!r} is not supported by fastnn.load")
    if upcast and name == "bfloat16":  # exact, and needs no ml_dtypes
        return np.dtype(np.float32), _upcast_bf16
    ml = getattr(_ml_dtypes(), name, None)
    if ml is None:
        hint = " or pass upcast=True to get float32" if name == "bfloat16" else ""
        raise _DtypeError(f"tensor dtype {name}: NumPy has no {name}; install the ml_dtypes package "
                          f"(pip install ml_dtypes, or pip install fastnn[io]){hint}")
    if upcast:
        return np.dtype(np.float32), lambda raw: raw.view(ml).astype(np.float32)
    return np.dtype(ml), None


def _torch_dtype_name(dt):
    """The torch dtype name of NumPy dtype ``dt`` in native byte order (ml_dtypes included), or None."""
    name = dt.newbyteorder("=").name
    return name if name in ITEMSIZE and name != "complex32" else None


# -- bounded file access -----------------------------------------------------------------------
class _File:
    """A seekable binary file whose reads never pass its end: every size read from the file is
    checked against the bytes it holds before anything is read or allocated."""

    def __init__(self, f, name):
        self.f, self.name = f, name
        try:
            self.base = f.tell()
            self.size = f.seek(0, os.SEEK_END) - self.base
        except (OSError, AttributeError) as e:
            raise TypeError(f"f: expected a seekable binary file, got {name} ({e})") from None

    def error(self, msg):
        return _FileError(f"{self.name}: {msg}")

    def check(self, off, n, what):
        if off < 0 or n < 0 or off + n > self.size:
            raise self.error(f"{what} needs bytes {off}..{off + n} but the file has {self.size}: "
                             "truncated or corrupt file")

    def read_at(self, off, n, what="data"):
        self.check(off, n, what)
        self.f.seek(self.base + off)
        b = self.f.read(n)
        if len(b) != n:
            raise self.error(f"{what}: short read at byte {off}")
        return b

    def readinto_at(self, off, buf, what):
        mv = memoryview(buf).cast("B")
        self.check(off, mv.nbytes, what)
        self.f.seek(self.base + off)
        done = 0
        while done < mv.nbytes:
            n = self.f.readinto(mv[done:])
            if not n:
                raise self.error(f"{what}: short read at byte {off + done}")
            done += n


@contextmanager
def _opened(f, mode):
    if isinstance(f, (str, bytes, os.PathLike)):
        with open(f, mode) as fh:
            yield fh, os.fsdecode(f)
        return
    need = "read" if "r" in mode else "write"
    if not hasattr(f, need) or ("r" in mode and not hasattr(f, "seek")):
        raise TypeError(f"f: expected a path or a binary file object with {need}()" +
                        (" and seek()" if "r" in mode else "") + f", got {type(f).__name__}")
    yield f, getattr(f, "name", None) or f"<{type(f).__name__}>"


# -- the restricted unpickler ------------------------------------------------------------------
class _Call:
    """An allowlisted global that REDUCE/NEWOBJ/INST/OBJ may call: ``fn`` is fastnn's own code."""

    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def __call__(self, args, kwargs=None):
        if not isinstance(args, (tuple, list)) or not isinstance(kwargs or {}, dict):
            raise UnpicklingError(f"{self.name}: arguments must be a tuple, got {type(args).__name__}")
        return self.fn(*args, **(kwargs or {}))


class _Marker:
    """An allowlisted global that is a value, not a function (a storage class, a dtype)."""

    def __init__(self, kind, value):
        self.kind, self.value = kind, value


def _tuple_of(seq, what):
    if not isinstance(seq, (tuple, list)) or not all(type(v) is int for v in seq):
        raise UnpicklingError(f"{what}: expected a tuple of ints, got {seq!r:.200}")
    return tuple(seq)


def _encode(s, encoding="latin1"):
    if not isinstance(s, str) or encoding not in ("latin1", "latin-1"):
        raise UnpicklingError("_codecs.encode: only (str, 'latin1'), the way pickle stores bytes, is allowed")
    return s.encode("latin1")


def _bytearray(data=b"", encoding=None):
    if isinstance(data, str):
        return bytearray(_encode(data, encoding or "latin1"))
    if not isinstance(data, (bytes, bytearray)):
        raise UnpicklingError(f"bytearray: expected bytes or a latin1 str, got {type(data).__name__}")
    return bytearray(data)


def _complex(real=0.0, imag=0.0):
    if not all(isinstance(v, (int, float)) for v in (real, imag)):
        raise UnpicklingError("complex: expected two numbers")
    return complex(real, imag)


def _set(items=()):
    if not isinstance(items, (tuple, list, set, frozenset)):
        raise UnpicklingError(f"set: expected a list of items, got {type(items).__name__}")
    return set(items)


def _ordered_dict(items=()):
    if not isinstance(items, (tuple, list, dict)):
        raise UnpicklingError(f"OrderedDict: expected items, got {type(items).__name__}")
    return OrderedDict(items)


BUILTINS = {"set": _set, "complex": _complex, "bytearray": _bytearray}  # torch's weights_only list

OP = SimpleNamespace(**{n: getattr(pickle, n)[0] for n in (
    "MARK STOP POP POP_MARK DUP FLOAT INT BININT BININT1 LONG BININT2 NONE BINPERSID REDUCE STRING BINSTRING "
    "SHORT_BINSTRING UNICODE BINUNICODE APPEND BUILD GLOBAL DICT EMPTY_DICT APPENDS GET BINGET INST LONG_BINGET "
    "LIST EMPTY_LIST OBJ PUT BINPUT LONG_BINPUT SETITEM TUPLE EMPTY_TUPLE SETITEMS BINFLOAT PROTO NEWOBJ TUPLE1 "
    "TUPLE2 TUPLE3 NEWTRUE NEWFALSE LONG1 LONG4 BINBYTES SHORT_BINBYTES SHORT_BINUNICODE BINUNICODE8 BINBYTES8 "
    "EMPTY_SET ADDITEMS FROZENSET NEWOBJ_EX STACK_GLOBAL MEMOIZE FRAME BYTEARRAY8").split()})
ARG_SIZE = {OP.BINPUT: 1, OP.BINGET: 1, OP.BININT1: 1, OP.PROTO: 1, OP.BININT2: 2, OP.LONG_BINPUT: 4,
            OP.LONG_BINGET: 4, OP.BININT: 4, OP.BINFLOAT: 8, OP.FRAME: 8}
LENGTH = {OP.SHORT_BINUNICODE: "<B", OP.BINUNICODE: "<I", OP.BINUNICODE8: "<Q", OP.SHORT_BINBYTES: "<B",
          OP.BINBYTES: "<I", OP.BINBYTES8: "<Q", OP.SHORT_BINSTRING: "<B", OP.BINSTRING: "<i",
          OP.BYTEARRAY8: "<Q", OP.LONG1: "<B", OP.LONG4: "<i"}
TEXT = {OP.SHORT_BINUNICODE, OP.BINUNICODE, OP.BINUNICODE8}
LINE_MAX = 1 << 16


class _OutOfData(Exception):
    """The pickle runs past the bytes given (the caller may give more)."""


def unpickle(buf, globals_, persistent_load=None):
    """Run the pickle at the start of ``buf`` (bytes); return ``(object, bytes used)``.

    Builds plain data itself; the only calls are to the :class:`_Call` values of ``globals_``
    (``"module.name" -> _Call | _Marker``), looked up when GLOBAL/STACK_GLOBAL/INST name them,
    before anything is called. Every length is checked against ``buf`` (:class:`_OutOfData`),
    and the memo is a dict, so a huge PUT index allocates nothing.
    """
    stack, marks, memo = [], [], {}
    push, pop, end, pos = stack.append, stack.pop, len(buf), 0

    def pop_mark():
        if not marks:
            raise UnpicklingError("MARK expected")
        i = marks.pop()
        items = stack[i:]
        del stack[i:]
        return items

    def line():
        nonlocal pos
        j = buf.find(b"\n", pos, pos + LINE_MAX)
        if j < 0:
            if end - pos > LINE_MAX:
                raise UnpicklingError("a text argument longer than 64 KiB")
            raise _OutOfData
        text, pos = buf[pos:j], j + 1
        return text

    def find(module, name):
        if isinstance(module, bytes):
            module, name = module.decode("utf-8"), name.decode("utf-8")
        if not isinstance(module, str) or not isinstance(name, str):
            raise UnpicklingError("a global's module and name must be strings")
        fn = globals_.get(f"{module.replace('__builtin__', 'builtins')}.{name}")
        if fn is None:
            raise UnpicklingError(f"refusing global '{module}.{name}': not one of the globals a weights file "
                                  "needs (fastnn.load reads tensors, containers and numbers; nothing was run)")
        return fn

    def call(fn, args, kwargs=None):
        if not isinstance(fn, _Call):
            raise UnpicklingError(f"refusing to call {type(fn).__name__} "
                                  f"{getattr(fn, 'value', '')!s:.80}: only allowlisted functions are called")
        return fn(args, kwargs)

    def expect(obj, types, what):
        if not isinstance(obj, types):
            raise UnpicklingError(f"{what} on a {type(obj).__name__}")
        return obj

    try:
        while True:  # opcodes in the order of how often torch's pickles use them
            if pos >= end:
                raise _OutOfData
            c = buf[pos]
            pos += 1
            n = ARG_SIZE.get(c, 0)
            if pos + n > end:
                raise _OutOfData
            if c == OP.BINPUT:
                memo[buf[pos]] = stack[-1]
            elif c == OP.BINGET:
                push(memo[buf[pos]])
            elif c == OP.MARK:
                marks.append(len(stack))
            elif c == OP.BININT1:
                push(buf[pos])
            elif c in LENGTH:
                fmt = LENGTH[c]
                k = struct.calcsize(fmt)
                if pos + k > end:
                    raise _OutOfData
                n = struct.unpack_from(fmt, buf, pos)[0]
                if n < 0:
                    raise UnpicklingError(f"negative length {n}")
                pos += k
                if pos + n > end:
                    raise _OutOfData
                data = buf[pos:pos + n]
                if c in TEXT:
                    push(data.decode("utf-8", "surrogatepass"))
                elif c in (OP.LONG1, OP.LONG4):
                    push(int.from_bytes(data, "little", signed=True))
                elif c in (OP.BINSTRING, OP.SHORT_BINSTRING):  # a Python 2 str
                    push(data.decode("latin1"))
                else:
                    push(bytearray(data) if c == OP.BYTEARRAY8 else bytes(data))
            elif c in (OP.TUPLE1, OP.TUPLE2, OP.TUPLE3):
                k = c - OP.TUPLE1 + 1
                if len(stack) - (marks[-1] if marks else 0) < k:
                    raise UnpicklingError("stack underflow")
                items = tuple(stack[-k:])
                del stack[-k:]
                push(items)
            elif c == OP.TUPLE:
                push(tuple(pop_mark()))
            elif c == OP.REDUCE:
                args = pop()
                push(call(pop(), args))
            elif c == OP.BINPERSID:
                if persistent_load is None:
                    raise UnpicklingError("a persistent id outside a torch pickle")
                push(persistent_load(pop()))
            elif c in (OP.NEWFALSE, OP.NEWTRUE):
                push(c == OP.NEWTRUE)
            elif c == OP.EMPTY_TUPLE:
                push(())
            elif c == OP.SETITEMS:
                items = pop_mark()
                d = expect(stack[-1], dict, "SETITEMS")
                if len(items) % 2:
                    raise UnpicklingError("SETITEMS with an odd number of items")
                for i in range(0, len(items), 2):
                    d[items[i]] = items[i + 1]
            elif c in (OP.LONG_BINPUT, OP.LONG_BINGET):
                i = struct.unpack_from("<I", buf, pos)[0]
                if c == OP.LONG_BINPUT:
                    memo[i] = stack[-1]
                else:
                    push(memo[i])
            elif c == OP.BININT2:
                push(struct.unpack_from("<H", buf, pos)[0])
            elif c == OP.BININT:
                push(struct.unpack_from("<i", buf, pos)[0])
            elif c == OP.BINFLOAT:
                push(struct.unpack_from(">d", buf, pos)[0])
            elif c == OP.GLOBAL:
                module = line()
                push(find(module, line()))
            elif c == OP.STACK_GLOBAL:
                name = pop()
                push(find(pop(), name))
            elif c == OP.NONE:
                push(None)
            elif c == OP.EMPTY_DICT:
                push({})
            elif c == OP.EMPTY_LIST:
                push([])
            elif c == OP.EMPTY_SET:
                push(set())
            elif c == OP.MEMOIZE:
                memo[len(memo)] = stack[-1]
            elif c == OP.SETITEM:
                v, k = pop(), pop()
                expect(stack[-1], dict, "SETITEM")[k] = v
            elif c == OP.APPEND:
                v = pop()
                expect(stack[-1], list, "APPEND").append(v)
            elif c == OP.APPENDS:
                items = pop_mark()
                expect(stack[-1], list, "APPENDS").extend(items)
            elif c == OP.ADDITEMS:
                items = pop_mark()
                expect(stack[-1], set, "ADDITEMS").update(items)
            elif c in (OP.LIST, OP.DICT, OP.FROZENSET):
                items = pop_mark()
                push(list(items) if c == OP.LIST else frozenset(items) if c == OP.FROZENSET else
                     dict(zip(items[::2], items[1::2])))
            elif c == OP.BUILD:
                state = pop()
                obj = stack[-1]
                # torch's state dicts are OrderedDicts with a ``_metadata`` attribute: the only
                # BUILD a weights file needs sets plain attributes on an OrderedDict (none that
                # would hide a method, like ``keys``).
                if not (type(obj) is OrderedDict and isinstance(state, dict) and
                        all(type(k) is str and not hasattr(OrderedDict, k) for k in state)):
                    raise UnpicklingError(f"BUILD on a {type(obj).__name__} with this state is not allowed")
                obj.__dict__.update(state)
            elif c in (OP.NEWOBJ, OP.NEWOBJ_EX):
                kwargs = pop() if c == OP.NEWOBJ_EX else None
                args = pop()
                push(call(pop(), args, kwargs))
            elif c == OP.INST:
                module = line()
                fn = find(module, line())
                push(call(fn, pop_mark()))
            elif c == OP.OBJ:
                items = pop_mark()
                if not items:
                    raise UnpicklingError("OBJ without a class")
                push(call(items[0], items[1:]))
            elif c == OP.POP:
                if marks and marks[-1] == len(stack):
                    marks.pop()
                else:
                    pop()
            elif c == OP.POP_MARK:
                pop_mark()
            elif c == OP.DUP:
                push(stack[-1])
            elif c in (OP.PUT, OP.GET):
                i = int(line())
                if c == OP.PUT:
                    memo[i] = stack[-1]
                else:
                    push(memo[i])
            elif c in (OP.INT, OP.LONG):
                text = line()
                push(text == b"01" if c == OP.INT and text in (b"00", b"01") else int(text.rstrip(b"L")))
            elif c == OP.FLOAT:
                push(float(line()))
            elif c == OP.STRING:
                text = line()
                if len(text) < 2 or text[0] != text[-1] or text[:1] not in (b"'", b'"'):
                    raise UnpicklingError("STRING opcode argument must be quoted")
                push(codecs.escape_decode(text[1:-1])[0].decode("latin1"))
            elif c == OP.UNICODE:
                push(line().decode("raw-unicode-escape"))
            elif c == OP.PROTO:
                if buf[pos] > 5:
                    raise UnpicklingError("unknown pickle protocol")
            elif c == OP.FRAME:
                pass
            elif c == OP.STOP:
                if len(stack) != 1 or marks:
                    raise UnpicklingError("malformed pickle (stack not empty at STOP)")
                return stack[0], pos
            else:  # EXT*, PERSID, NEXT_BUFFER, READONLY_BUFFER, unknown
                raise UnpicklingError(f"unsupported pickle opcode {bytes([c])!r}")
            pos += n
    except (_OutOfData, UnpicklingError, _FileError, _DtypeError):
        raise
    except (IndexError, KeyError, TypeError, ValueError, OverflowError, UnicodeDecodeError, struct.error) as e:
        raise UnpicklingError(f"corrupt pickle data ({type(e).__name__}: {e})") from None


def unpickle_at(src, pos, globals_, persistent_load=None, what="pickle", end=None):
    """Unpickle from byte ``pos`` of ``src`` (up to ``end``, default the file's end), reading a
    window that grows until the pickle fits; returns ``(object, end of the pickle)``."""
    end = src.size if end is None else end
    size = min(end - pos, 1 << 16)
    while True:
        buf = src.read_at(pos, size, what)
        try:
            obj, used = unpickle(buf, globals_, persistent_load)
            return obj, pos + used
        except _OutOfData:
            if pos + size >= end:
                raise src.error(f"{what} at byte {pos} ends early: truncated or corrupt file") from None
            size = min(end - pos, size * 8)
        except UnpicklingError as e:
            raise UnpicklingError(f"{src.name}: {e} ({what} at byte {pos})") from None


# -- torch checkpoints -------------------------------------------------------------------------
def _buffer(nbytes):
    """Fresh memory for ``nbytes`` of storage (a uint8 array), about to be filled by a read.

    Large buffers come from an anonymous private map: NumPy's allocator asks the kernel for
    transparent huge pages from 4 MiB on, and on a busy machine their compaction made loading
    a 200 MiB checkpoint twice as slow (docs/performance.md). Freed with the last array viewing it.
    """
    if nbytes < 1 << 22 or not hasattr(_mmap, "MAP_PRIVATE"):
        return np.empty(nbytes, np.uint8)
    return np.frombuffer(_mmap.mmap(-1, nbytes, flags=_mmap.MAP_PRIVATE), np.uint8)


class _Storage:
    """A torch storage: ``raw`` holds its bytes (uint8) once read; ``dtype`` its torch dtype."""

    def __init__(self, key, dtype, nbytes, raw=None):
        self.key, self.dtype, self.nbytes, self.raw = key, dtype, nbytes, raw
        self.converted = {}  # torch dtype -> upcast copy of the whole storage
        self.swapped = None  # element size it was byte-swapped with (big-endian files)


class _TorchReader:
    """Unpickles a torch file's objects; storages come from ``self.storage(key, dtype, nbytes)``."""

    def __init__(self, src, upcast, mm):
        self.src, self.upcast, self.mm = src, upcast, mm
        self.storages = {}
        self.dry = False  # legacy files: a first pass finds the storages, tensors are built in the second
        self.big_endian = False
        self.origin = {}  # id(array) -> torch dtype name (for fastnn inspect)
        g = {f"torch._utils.{f.__name__}": _Call(f"torch._utils.{f.__name__}", f) for f in
             (self._rebuild_tensor, self._rebuild_tensor_v2, self._rebuild_tensor_v3,
              self._rebuild_parameter, self._rebuild_parameter_with_state)}
        g["torch._tensor._rebuild_from_type_v2"] = _Call("torch._tensor._rebuild_from_type_v2", self._from_type_v2)
        g["collections.OrderedDict"] = _Call("collections.OrderedDict", _ordered_dict)
        g["torch.Size"] = _Call("torch.Size", lambda sizes=(): _tuple_of(sizes, "torch.Size"))
        g["_codecs.encode"] = _Call("_codecs.encode", _encode)
        for name, fn in BUILTINS.items():
            g[f"builtins.{name}"] = _Call(f"builtins.{name}", fn)
        for mod in ("torch", "torch.cuda"):  # old GPU checkpoints name torch.cuda.FloatStorage
            for cls, dt in STORAGE_TYPES.items():
                g[f"{mod}.{cls}"] = _Marker("storage", dt)
        g["torch.UntypedStorage"] = g["torch.storage.UntypedStorage"] = _Marker("storage", None)
        for dt in ITEMSIZE:
            g[f"torch.{dt}"] = _Marker("dtype", dt)
        g["torch.Tensor"] = g["torch.nn.parameter.Parameter"] = _Marker("tensor type", None)
        self.globals = g

    # rebuild functions: torch._utils's signatures, fastnn's code
    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        return self._tensor(storage, None, storage_offset, size, stride)

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad=False,
                           backward_hooks=None, metadata=None):
        return self._tensor(storage, None, storage_offset, size, stride, metadata)

    def _rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad, backward_hooks,
                           dtype, metadata=None):
        if not (isinstance(dtype, _Marker) and dtype.kind == "dtype"):
            raise UnpicklingError(f"_rebuild_tensor_v3: expected a torch dtype, got {type(dtype).__name__}")
        return self._tensor(storage, dtype.value, storage_offset, size, stride, metadata)

    def _rebuild_parameter(self, data, requires_grad, backward_hooks):
        return data

    def _rebuild_parameter_with_state(self, data, requires_grad, backward_hooks, state):
        return data

    def _from_type_v2(self, func, new_type, args, state):
        if not (isinstance(new_type, _Marker) and new_type.kind == "tensor type"):
            raise UnpicklingError("_rebuild_from_type_v2: only torch.Tensor and Parameter are allowed")
        if not (isinstance(func, _Call) and func.name.startswith("torch._utils._rebuild_")):
            raise UnpicklingError(f"_rebuild_from_type_v2: expected a tensor rebuild function, "
                                  f"got {type(func).__name__}")
        return func(args)  # the tensor; its Python attributes (state) are dropped

    def _tensor(self, storage, dtype, offset, size, stride, metadata=None):
        if not isinstance(storage, _Storage):
            raise UnpicklingError(f"tensor rebuild: expected a storage, got {type(storage).__name__}")
        size, stride = _tuple_of(size, "tensor size"), _tuple_of(stride, "tensor stride")
        if type(offset) is not int or offset < 0 or len(size) != len(stride) or len(size) > 64 or \
                min(size + stride, default=0) < 0:
            raise UnpicklingError(f"tensor rebuild: bad offset/size/stride {offset!r:.40}, {size!r:.200}, "
                                  f"{stride!r:.200}")
        if self.dry:
            return None
        name = dtype or storage.dtype
        if name is None:
            raise UnpicklingError(f"tensor on untyped storage {storage.key!r} without a dtype")
        npdt, convert = _resolve_dtype(name, self.upcast)
        raw, itemsize = storage.raw, ITEMSIZE[name]
        if self.big_endian and itemsize > 1:  # to native order, once per storage
            word = itemsize // 2 if name.startswith("complex") else itemsize
            if storage.swapped is None:
                raw[: raw.nbytes // word * word].view(f"u{word}").byteswap(inplace=True)
                storage.swapped = word
            elif storage.swapped != word:
                raise self.src.error(f"big-endian storage {storage.key!r} is viewed with two element sizes")
        n = 0 if 0 in size else offset + sum((k - 1) * s for k, s in zip(size, stride)) + 1
        if n * itemsize > raw.nbytes:
            raise self.src.error(f"a tensor of shape {size}, stride {stride}, offset {offset} needs {n} {name} "
                                 f"elements but its storage {storage.key!r} holds {raw.nbytes // itemsize} "
                                 "(truncated or corrupt file)")
        if convert is not None:  # upcast: the whole storage once, views keep sharing it
            if name not in storage.converted:
                storage.converted[name] = convert(raw[: raw.nbytes // itemsize * itemsize])
            raw = storage.converted[name]
        if n == 0:
            arr = np.zeros(size, npdt)
        else:
            wide = npdt.itemsize
            arr = np.ndarray(size, npdt, buffer=raw, offset=offset * wide, strides=tuple(s * wide for s in stride))
        if metadata:  # torch's lazy conj/neg bits: the value is conj(stored) / -stored
            if not isinstance(metadata, dict):
                raise UnpicklingError("tensor metadata must be a dict")
            if metadata.get("conj"):
                arr = np.conj(arr)
            if metadata.get("neg"):
                arr = np.negative(arr)
        self.origin[id(arr)] = name
        return arr

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise UnpicklingError(f"unknown persistent id {pid!r:.200}")
        stype, key, _location, numel = pid[1:5]
        if not (isinstance(stype, _Marker) and stype.kind == "storage"):
            raise UnpicklingError(f"persistent id: expected a storage type, got {type(stype).__name__}")
        if not isinstance(key, (str, int)) or type(numel) is not int or numel < 0:
            raise UnpicklingError(f"persistent id: bad storage key or size {key!r:.80}, {numel!r:.80}")
        dtype = stype.value or "uint8"
        key = str(key)
        if key not in self.storages:
            nbytes = numel * ITEMSIZE[dtype]
            self.src.check(0, nbytes, f"storage {key!r} ({numel} {dtype} elements)")
            self.storages[key] = self.storage(key, stype.value, nbytes)
        st = self.storages[key]
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return st
        if not (isinstance(view, tuple) and len(view) == 3 and all(type(v) is int for v in view[1:])):
            raise UnpicklingError(f"persistent id: bad storage view {view!r:.200}")
        isz = ITEMSIZE[dtype]
        vkey, voff, vsize = str(view[0]), view[1] * isz, view[2] * isz
        if voff < 0 or vsize < 0 or voff + vsize > st.nbytes:
            raise self.src.error(f"storage view {vkey!r} passes the end of storage {key!r}")
        raw = None if st.raw is None else st.raw[voff:voff + vsize]
        return _Storage(vkey, st.dtype, vsize, raw)

    def array_at(self, off, nbytes, what):
        """The bytes ``off..off+nbytes`` of the file: a view of the mapping or a fresh array."""
        self.src.check(off, nbytes, what)
        if self.mm is not None and nbytes:
            return np.frombuffer(self.mm, np.uint8, nbytes, self.src.base + off)
        raw = _buffer(nbytes)
        self.src.readinto_at(off, raw, what)
        return raw


class _ZipReader(_TorchReader):
    def load(self, entries):
        pkls = [n for n in entries if n.endswith("data.pkl") and n.count("/") == 1]
        if any(n.endswith("/constants.pkl") for n in entries) or len(pkls) != 1:
            raise self.src.error("a zip archive but not a torch.save checkpoint (TorchScript archives from "
                                 "torch.jit.save are not supported: save the model's state_dict instead)")
        self.prefix = pkls[0][: -len("data.pkl")]
        self.entries = entries
        if self.prefix + "byteorder" in entries:
            off, n = _zip_record(self.src, entries[self.prefix + "byteorder"])
            order = self.src.read_at(off, min(n, 16), "byteorder record")
            if order not in (b"little", b"big"):
                raise self.src.error(f"unknown byte order {order!r}")
            self.big_endian = order != sys.byteorder.encode()
        off, n = _zip_record(self.src, entries[pkls[0]])
        return unpickle_at(self.src, off, self.globals, self.persistent_load, pkls[0], off + n)[0]

    def storage(self, key, dtype, nbytes):
        name = f"{self.prefix}data/{key}"
        if name not in self.entries:
            raise self.src.error(f"storage record {name!r} is missing from the archive")
        off, n = _zip_record(self.src, self.entries[name])
        if nbytes > n:
            raise self.src.error(f"storage {key!r} needs {nbytes} bytes but its record holds {n} "
                                 "(truncated or corrupt file)")
        return _Storage(key, dtype, nbytes, self.array_at(off, nbytes, f"storage {key!r}"))


class _LegacyReader(_TorchReader):
    def load(self):
        src = self.src
        magic, pos = unpickle_at(src, 0, {})
        if magic != MAGIC_NUMBER:
            raise src.error("not a torch file (wrong magic number)")
        version, pos = unpickle_at(src, pos, {})
        if version != LEGACY_PROTOCOL:
            raise src.error(f"unsupported legacy torch protocol version {version!r:.40}")
        info, start = unpickle_at(src, pos, {})
        if not isinstance(info, dict):
            raise src.error("corrupt legacy torch header (system info)")
        self.dry = True  # pass 1: collect the storages (their bytes follow the pickles)
        _, pos = unpickle_at(src, start, self.globals, self.persistent_load)
        keys, pos = unpickle_at(src, pos, {}, what="storage key list")
        names = list(map(str, keys)) if isinstance(keys, list) else None
        if names is None or len(set(names)) != len(names) or set(names) != set(self.storages):
            raise src.error("the legacy storage key list does not match the storages the pickle uses")
        for key in names:
            st = self.storages[key]
            (count,) = struct.unpack("<q", src.read_at(pos, 8, f"size of storage {key!r}"))
            if count * ITEMSIZE[st.dtype or "uint8"] != st.nbytes:
                raise src.error(f"storage {key!r} holds {count} elements, the pickle says {st.nbytes} bytes "
                                "(corrupt file)")
            st.raw = self.array_at(pos + 8, st.nbytes, f"storage {key!r}")
            pos += 8 + st.nbytes
        self.dry = False  # pass 2: build the tensors on the filled storages
        return unpickle_at(src, start, self.globals, self.persistent_load)[0]

    def storage(self, key, dtype, nbytes):
        self.total = getattr(self, "total", 0) + nbytes
        if self.total > self.src.size:
            raise self.src.error(f"storage {key!r} of {nbytes} bytes: the storages need more bytes than the file has")
        return _Storage(key, dtype, nbytes)


# -- zip container -----------------------------------------------------------------------------
FFFF = 0xFFFFFFFF  # a 32-bit zip field that says "see the zip64 extra field"
ZIP64_LIMIT = FFFF  # sizes and offsets from here on are written as zip64 (tests lower it)


def _zip_entries(src):
    """``{name: (local header offset, size, compressed size, method)}`` from the central directory."""
    tail_len = min(src.size, 65557)
    tail = src.read_at(src.size - tail_len, tail_len, "zip end record")
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or tail_len - i < 22:
        raise src.error("zip archive without its end record: truncated or corrupt file")
    eocd = src.size - tail_len + i
    count, cd_size, cd_off = struct.unpack_from("<HII", tail, i + 10)
    try:
        if count == 0xFFFF or FFFF in (cd_size, cd_off):
            sig, _, z64 = struct.unpack("<IIQ", src.read_at(eocd - 20, 16, "zip64 locator"))
            rec = src.read_at(z64, 56, "zip64 end record")
            if sig != 0x07064B50 or rec[:4] != b"PK\x06\x06":
                raise ValueError("bad zip64 end record")
            count, cd_size, cd_off = struct.unpack_from("<QQQ", rec, 32)
        src.check(cd_off, cd_size, "zip central directory")
        if count * 46 > cd_size:
            raise ValueError(f"{count} entries cannot fit in a directory of {cd_size} bytes")
        cd, p, entries = src.read_at(cd_off, cd_size, "zip central directory"), 0, {}
        for _ in range(count):
            (sig, _, _, _, method, _, _, _, csize, usize, nlen, xlen, clen, _, _, _, hoff) = \
                struct.unpack_from("<IHHHHHHIIIHHHHHII", cd, p)
            if sig != 0x02014B50:
                raise ValueError("bad central directory entry")
            name = cd[p + 46: p + 46 + nlen].decode("utf-8")
            extra = cd[p + 46 + nlen: p + 46 + nlen + xlen]
            if FFFF in (usize, csize, hoff):
                q = 0
                while q + 4 <= len(extra):
                    tag, n = struct.unpack_from("<HH", extra, q)
                    if tag == 1:
                        vals = iter(struct.unpack_from(f"<{n // 8}Q", extra, q + 4))
                        usize, csize, hoff = (next(vals) if v == FFFF else v for v in (usize, csize, hoff))
                        break
                    q += 4 + n
            entries[name] = (hoff, usize, csize, method)
            p += 46 + nlen + xlen + clen
    except _FileError:
        raise
    except (struct.error, UnicodeDecodeError, StopIteration, ValueError) as e:
        raise src.error(f"corrupt zip directory ({e})") from None
    return entries


def _zip_record(src, entry):
    """``(data offset, size)`` of a stored (uncompressed) zip record, checked against the file."""
    hoff, usize, csize, method = entry
    head = src.read_at(hoff, 30, "zip local header")
    if head[:4] != b"PK\x03\x04":
        raise src.error(f"corrupt zip local header at byte {hoff}")
    if method != 0 or csize != usize:
        raise src.error("compressed torch record: torch writes records uncompressed (re-save the file with torch.save)")
    nlen, xlen = struct.unpack_from("<HH", head, 26)
    off = hoff + 30 + nlen + xlen
    src.check(off, usize, "zip record")
    return off, usize


def _zip_write(fh, records):
    """Write ``[(name, buffer)]`` as a zip archive of stored records whose data is aligned to 64
    bytes (like torch's writer), with zip64 fields where sizes or offsets need them."""
    pos, central = 0, []
    for name, data in records:
        data = memoryview(data).cast("B")
        n, crc, nm = data.nbytes, zlib.crc32(data), name.encode()
        z64 = n >= ZIP64_LIMIT or pos >= ZIP64_LIMIT
        extra = struct.pack("<HHQQ", 1, 16, n, n) if z64 else b""
        pad = -(pos + 30 + len(nm) + len(extra) + 4) % ZIP_ALIGN
        extra += struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # torch's "FB" padding field
        size32 = FFFF if z64 else n
        fh.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if z64 else 20, 0, 0, 0, 0x21, crc, size32, size32,
                             len(nm), len(extra)) + nm + extra)
        fh.write(data)
        central.append((nm, crc, n, pos))
        pos += 30 + len(nm) + len(extra) + n
    cd_off = pos
    for nm, crc, n, off in central:
        big = [v for v in (n, n, off) if v >= ZIP64_LIMIT]
        extra = struct.pack(f"<HH{len(big)}Q", 1, 8 * len(big), *big) if big else b""
        s32, o32 = (FFFF if n >= ZIP64_LIMIT else n), (FFFF if off >= ZIP64_LIMIT else off)
        v = 45 if big else 20
        rec = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, v, v, 0, 0, 0, 0x21, crc, s32, s32, len(nm),
                          len(extra), 0, 0, 0, 0, o32) + nm + extra
        fh.write(rec)
        pos += len(rec)
    count, cd_size = len(central), pos - cd_off
    z64 = count >= 0xFFFF or cd_off >= ZIP64_LIMIT or cd_size >= ZIP64_LIMIT
    if z64:
        fh.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, cd_size, cd_off))
        fh.write(struct.pack("<IIQI", 0x07064B50, 0, pos, 1))
    n16, cd32 = (0xFFFF, FFFF) if z64 else (count, cd_off)
    fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n16, n16, FFFF if z64 else cd_size, cd32, 0))


# -- writing torch's zip format ----------------------------------------------------------------
class _Pickler:
    """Writes the protocol-2 pickle torch writes (the opcodes torch's weights_only loader reads);
    arrays become ``_rebuild_tensor_v2``/``_v3`` calls on storages planned by :func:`_plan`."""

    def __init__(self, plan):
        self.plan, self.out = plan, io.BytesIO()

    def dump(self, obj):
        self.out.write(pickle.PROTO + b"\x02")
        self.write(obj)
        self.out.write(pickle.STOP)
        return self.out.getvalue()

    def glob(self, module, name):
        self.out.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())

    def tuple(self, items):
        w = self.out.write
        w(pickle.MARK)
        for v in items:
            self.write(v)
        w(pickle.TUPLE)

    def write(self, obj):
        P, w = pickle, self.out.write
        if obj is None:
            w(P.NONE)
        elif obj is True or obj is False:
            w(P.NEWTRUE if obj else P.NEWFALSE)
        elif isinstance(obj, int):
            if 0 <= obj < 256:
                w(P.BININT1 + bytes([obj]))
            elif 0 <= obj < 65536:
                w(P.BININT2 + struct.pack("<H", obj))
            elif -(2 ** 31) <= obj < 2 ** 31:
                w(P.BININT + struct.pack("<i", obj))
            else:
                b = int(obj).to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
                w(P.LONG1 + bytes([len(b)]) + b if len(b) < 256 else P.LONG4 + struct.pack("<i", len(b)) + b)
        elif isinstance(obj, float):
            w(P.BINFLOAT + struct.pack(">d", obj))
        elif isinstance(obj, complex):
            self.glob("builtins", "complex")
            self.tuple((obj.real, obj.imag))
            w(P.REDUCE)
        elif isinstance(obj, str):
            b = obj.encode("utf-8", "surrogatepass")
            w(P.BINUNICODE + struct.pack("<I", len(b)) + b)
        elif isinstance(obj, np.ndarray):
            self.tensor(obj)
        elif isinstance(obj, (tuple, list)):
            if isinstance(obj, tuple):
                self.tuple(obj)
                return
            w(P.EMPTY_LIST + P.MARK)
            for v in obj:
                self.write(v)
            w(P.APPENDS)
        elif isinstance(obj, dict):
            if isinstance(obj, OrderedDict):
                self.glob("collections", "OrderedDict")
                w(P.EMPTY_TUPLE + P.REDUCE)
            else:
                w(P.EMPTY_DICT)
            w(P.MARK)
            for k, v in obj.items():
                self.write(k)
                self.write(v)
            w(P.SETITEMS)
        elif isinstance(obj, np.generic):  # a NumPy scalar: the Python number
            self.write(obj.item() if obj.dtype.kind in "biufc" else float(obj))
        else:
            raise AssertionError(type(obj))  # _walk refused it already

    def tensor(self, a):
        key, dtype, offset, shape, strides, numel = self.plan[id(a)]
        v3 = dtype in V3_DTYPES
        self.glob("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
        w = self.out.write
        w(pickle.MARK + pickle.MARK)
        self.write("storage")
        if v3:
            self.glob("torch.storage", "UntypedStorage")
        else:
            self.glob("torch", next(k for k, v in STORAGE_TYPES.items() if v == dtype))
        for v in (key, "cpu", numel * (ITEMSIZE[dtype] if v3 else 1)):
            self.write(v)
        w(pickle.TUPLE + pickle.BINPERSID)
        self.write(offset)
        self.tuple(shape)
        self.tuple(strides)
        w(pickle.NEWFALSE)
        self.glob("collections", "OrderedDict")
        w(pickle.EMPTY_TUPLE + pickle.REDUCE)
        if v3:
            self.glob("torch", dtype)
        w(pickle.TUPLE + pickle.REDUCE)


def _walk(obj, path, arrays, active):
    """Collect the arrays of ``obj`` (``{id: array}``) and refuse, naming where it is, what
    torch's weights_only loader could not read back."""
    if obj is None or isinstance(obj, (bool, int, float, complex, str)) or (
            isinstance(obj, np.generic) and _torch_dtype_name(obj.dtype)):
        return
    if isinstance(obj, np.ndarray):
        if _torch_dtype_name(obj.dtype) is None:
            raise TypeError(f"obj{path}: arrays of dtype {obj.dtype} cannot be saved in a torch file")
        arrays.setdefault(id(obj), obj)
        return
    if not isinstance(obj, (dict, list, tuple)):
        raise TypeError(f"obj{path}: expected arrays, numbers, strings, None, dicts, lists or tuples, "
                        f"got {type(obj).__name__}")
    if id(obj) in active:
        raise ValueError(f"obj{path}: the object contains itself")
    active.add(id(obj))
    for k, v in (obj.items() if isinstance(obj, dict) else enumerate(obj)):
        if isinstance(obj, dict):
            _walk(k, f"{path}[key {k!r}]", arrays, active)
        _walk(v, f"{path}[{k!r}]", arrays, active)
    active.discard(id(obj))


def _plan(arrays):
    """Storages for ``arrays`` (``{id: array}``), as torch would have them: arrays viewing one
    NumPy buffer with one dtype share one storage (its bytes from the lowest to the highest
    element they use), so a transposed or sliced array stays a view; an array torch cannot
    express that way (negative strides, byte-swapped, misaligned views) is saved as a contiguous
    copy. Returns ``{id(a): (key, dtype, offset, shape, strides, storage numel)}`` (offset and
    strides in elements) and ``[(key, bytes)]``."""
    plan, records, groups = {}, [], {}
    for a in arrays.values():
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        ok = (a.dtype.isnative and a.size > 0 and all(s >= 0 and s % a.itemsize == 0 for s in a.strides)
              and (root.flags.c_contiguous or root.flags.f_contiguous))
        groups.setdefault((id(root), a.dtype) if ok else (id(a), None), (root if ok else None, []))[1].append(a)

    def add(root, members, ids):
        isz, lo = members[0].itemsize, root.__array_interface__["data"][0]
        starts = [m.__array_interface__["data"][0] for m in members]
        start = min(starts)
        if any((s - start) % isz for s in starts):
            return False
        end = max(s + sum((n - 1) * st for n, st in zip(m.shape, m.strides)) + isz if m.size else s
                  for s, m in zip(starts, members))
        key = str(len(records))
        records.append((key, root.reshape(-1, order="A").view(np.uint8)[start - lo: end - lo]))
        for s, m, i in zip(starts, members, ids):
            plan[i] = (key, _torch_dtype_name(m.dtype), (s - start) // isz, m.shape,
                       tuple(st // isz for st in m.strides), (end - start) // isz)
        return True

    for root, members in groups.values():
        if root is None or not add(root, members, [id(m) for m in members]):
            for m in members:
                c = np.ascontiguousarray(m, m.dtype.newbyteorder("="))
                add(c, [c], [id(m)])
    return plan, records


def _save_torch(obj, arrays, fh):
    plan, storages = _plan(arrays)
    records = [("archive/data.pkl", _Pickler(plan).dump(obj)), ("archive/byteorder", sys.byteorder.encode())]
    records += [(f"archive/data/{k}", raw) for k, raw in storages]
    _zip_write(fh, records + [("archive/version", b"3\n")])


# -- safetensors and npz -----------------------------------------------------------------------
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32",
                      "U16": "uint16", "U8": "uint8", "BOOL": "bool", "C64": "complex64",
                      "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ModuleNotFoundError("safetensors files need the optional 'safetensors' package: "
                                  "pip install safetensors (or pip install fastnn[io])") from None
    return safetensors


def _load_safetensors(src, upcast, origin):
    st = _safetensors()
    try:
        tensors = st.deserialize(src.read_at(0, src.size, "safetensors file"))
    except Exception as e:  # SafetensorError derives from Exception only
        raise src.error(f"corrupt safetensors file ({e})") from None
    out = {}
    for name, t in tensors:
        if t["dtype"] not in SAFETENSORS_DTYPES:
            raise TypeError(f"{src.name}: tensor {name!r} has dtype {t['dtype']}, not supported by fastnn.load")
        dt, convert = _resolve_dtype(SAFETENSORS_DTYPES[t["dtype"]], upcast)
        raw = np.frombuffer(t["data"], np.uint8)
        out[name] = (convert(raw) if convert else raw.view(dt)).reshape(t["shape"])
        origin[id(out[name])] = SAFETENSORS_DTYPES[t["dtype"]]
    return out


def _load_npz(src):
    import zipfile

    out = {}
    src.f.seek(src.base)
    try:
        with zipfile.ZipFile(src.f) as z:
            for info in z.infolist():
                if info.compress_type and info.file_size > 1100 * info.compress_size + 4096:
                    raise ValueError(f"member {info.filename} claims {info.file_size} bytes from "
                                     f"{info.compress_size} compressed (more than deflate can give)")
                with z.open(info) as m:  # check the .npy header before NumPy allocates the array
                    version = np.lib.format.read_magic(m)
                    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read_header is None:
                        raise ValueError(f"member {info.filename}: unsupported .npy version {version}")
                    shape, _, dtype = read_header(m)
                    if dtype.hasobject:
                        raise ValueError(f"member {info.filename}: object arrays are refused (they are pickles)")
                    if math.prod(shape) * dtype.itemsize > info.file_size:
                        raise ValueError(f"member {info.filename}: shape {shape} of {dtype} needs more bytes "
                                         "than the member holds")
                with z.open(info) as m:
                    out[info.filename[:-4] if info.filename.endswith(".npy") else info.filename] = \
                        np.lib.format.read_array(m, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as e:
        raise src.error(f"corrupt .npz file ({type(e).__name__}: {e})") from None
    return out


def _detect(src):
    """The format of ``src`` from its first bytes: 'zip', 'safetensors', 'legacy' or an error."""
    head = src.read_at(0, min(16, src.size), "file header")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= struct.unpack("<Q", head[:8])[0] <= src.size - 8:
        return "safetensors"
    if head[:1] == pickle.PROTO:
        return "legacy"
    try:  # a legacy file pickled with protocol 1 starts with the magic number as text
        if unpickle_at(src, 0, {})[0] == MAGIC_NUMBER:
            return "legacy"
    except (UnpicklingError, _FileError):
        pass
    raise src.error(f"not a file fastnn.load reads (a torch checkpoint, safetensors or .npz); it starts with {head!r}")


def _load(f, mmap=False, upcast=False):
    """:func:`load`, also returning the format and ``{id(array): torch dtype name}`` of the
    arrays from torch and safetensors files (``fastnn inspect`` shows upcast ones by origin)."""
    for name, v in (("mmap", mmap), ("upcast", upcast)):
        if not isinstance(v, bool):
            raise TypeError(f"{name}: expected True or False, got {v!r}")
    with _opened(f, "rb") as (fh, name):
        src = _File(fh, name)
        if src.size == 0:
            raise src.error("empty file")
        fmt = _detect(src)
        if fmt == "safetensors":
            origin = {}
            return _load_safetensors(src, upcast, origin), fmt, origin
        entries = _zip_entries(src) if fmt == "zip" else None
        if entries is not None and not any(n.endswith("data.pkl") for n in entries):
            if entries and all(n.endswith(".npy") for n in entries):
                return _load_npz(src), "npz", {}
        mm = None
        if mmap:
            try:
                mm = _mmap.mmap(fh.fileno(), 0, access=_mmap.ACCESS_COPY)
            except (AttributeError, OSError, io.UnsupportedOperation) as e:
                raise ValueError(f"mmap=True needs a file on disk (a path or an open file), got {name} ({e})") from None
        reader = _ZipReader(src, upcast, mm) if entries is not None else _LegacyReader(src, upcast, mm)
        try:
            return reader.load(entries) if entries is not None else reader.load(), f"torch {fmt}", reader.origin
        finally:  # the allowlist holds bound methods of the reader: break that cycle now, so the
            reader.globals = reader.storages = None  # storages go as soon as the caller drops them


def load(f, *, mmap=False, upcast=False):
    """Read a torch checkpoint (zip or legacy format), a safetensors or an ``.npz`` file.

    The format is recognised by content, whatever the file is called. Tensors come back as
    NumPy arrays with torch's dtype, shape and strides (a transposed or sliced tensor is the
    same view, tensors that shared a storage share memory); containers (``dict``,
    ``OrderedDict``, ``list``, ``tuple``), numbers, strings and None as they were. Nothing in
    the file can run code: see :class:`UnpicklingError`.

    Parameters
    ----------
    f : str, os.PathLike or binary file object (seekable)
    mmap : bool, default False
        Torch files only: the arrays are copy-on-write views of a memory map of the file
        (loading reads nothing; writing to an array never changes the file).
    upcast : bool, default False
        Dtypes NumPy lacks come back widened, exactly: bfloat16 and float8 as float32, complex32
        as complex64 (a copy, also with ``mmap``). Without it they need the ``ml_dtypes``
        package (``pip install fastnn[io]``), else a ``TypeError`` says so.

    Returns
    -------
    object
        The saved object tree; a dict of arrays for safetensors and ``.npz`` files.

    Raises
    ------
    UnpicklingError
        A pickle asks for a global outside the allowlist (``refusing global 'posix.system'``)
        or an opcode that would call code, or is corrupt. Also a ``ValueError``.
    ValueError
        Truncated or corrupt file, wrong magic number, a storage shorter than its tensors, a
        size larger than the file.
    TypeError
        A dtype NumPy cannot hold (see ``upcast``).
    ModuleNotFoundError
        A safetensors file without the ``safetensors`` package.

    Examples
    --------
    >>> import io, numpy as np, fastnn
    >>> f = io.BytesIO()
    >>> fastnn.save({"w": np.ones((2, 3), np.float32)}, f)
    >>> fastnn.load(f)["w"].shape                             # the file torch.save would write
    (2, 3)
    """
    try:
        return _load(f, mmap, upcast)[0]
    except _FileError as e:  # plain ValueError/TypeError for the caller
        raise ValueError(str(e)) from None
    except _DtypeError as e:
        raise TypeError(str(e)) from None


def save(obj, f, *, format=None):
    """Write ``obj`` (arrays in dicts, lists, tuples; numbers, strings, None) to ``f``.

    Parameters
    ----------
    obj : object
        For ``"torch"``: a tree of ``dict`` (``OrderedDict`` stays one, so ``Module.state_dict()``
        goes in as is), ``list``, ``tuple``, arrays (any shape and layout; every dtype torch
        has, bfloat16/float8 as ``ml_dtypes`` arrays), numbers, strings and None; NumPy scalars
        are saved as Python numbers. For ``"safetensors"`` and ``"npz"``: a flat dict of
        name -> array.
    f : str, os.PathLike or binary file object
    format : {"torch", "safetensors", "npz"}, optional
        Default: from the path's suffix (``.safetensors``, ``.npz``), else ``"torch"``: torch's
        zip checkpoint format, which ``torch.load(f, weights_only=True)`` and :func:`load` read
        back with dtypes, shapes and strides kept (arrays that view one buffer share one
        storage, as torch's views do). ``"safetensors"`` needs the ``safetensors`` package.

    Raises
    ------
    TypeError
        Something torch's ``weights_only`` loader could not read back (a set, an object, an
        array of strings or objects), named by where it is; raised before the file is created.
    ValueError
        An unknown ``format``, or an object that contains itself.

    Examples
    --------
    >>> m = fastnn.nn.Linear(3, 2)
    >>> fastnn.save(m.state_dict(), "model.pt")                                # doctest: +SKIP
    >>> torch.nn.Linear(3, 2).load_state_dict(torch.load("model.pt"))          # doctest: +SKIP
    """
    if format is None:
        path = os.fsdecode(f) if isinstance(f, (str, bytes, os.PathLike)) else ""
        format = next((fmt for fmt in ("safetensors", "npz") if path.endswith("." + fmt)), "torch")
    if format not in ("torch", "safetensors", "npz"):
        raise ValueError(f"format: expected 'torch', 'safetensors' or 'npz', got {format!r}")
    if format == "torch":
        arrays = {}
        _walk(obj, "", arrays, set())  # refuse before the file is created
        with _opened(f, "wb") as (fh, _):
            _save_torch(obj, arrays, fh)
        return
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
        raise TypeError(f"obj: {format} files hold a flat dict of str -> array, got {type(obj).__name__}"
                        + ("" if not isinstance(obj, dict) else " with other keys or values"))
    if format == "safetensors":
        st = _safetensors()
        data = st.numpy.save({k: np.ascontiguousarray(v) for k, v in obj.items()})
        with _opened(f, "wb") as (fh, _):
            fh.write(data)
    else:
        bad = [k for k, v in obj.items() if v.dtype.kind not in "biufc"]
        if bad:
            raise TypeError(f"obj[{bad[0]!r}]: .npz holds NumPy's own dtypes, got {obj[bad[0]].dtype} "
                            "(save it in the torch or safetensors format)")
        with _opened(f, "wb") as (fh, _):
            np.savez(fh, **obj)
