"""Parameter and Module: the state-holding layer above :mod:`fastnn.functional`."""
import threading
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from .. import _validate as _v

_grad_state = threading.local()


@contextmanager
def no_grad():
    """Inside this block modules keep no backward caches (inference), like ``torch.no_grad``."""
    prev = getattr(_grad_state, "enabled", True)
    _grad_state.enabled = False
    try:
        yield
    finally:
        _grad_state.enabled = prev


def is_grad_enabled():
    return getattr(_grad_state, "enabled", True)


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected np.float32 or np.float64, got {dtype!r}") from None
    if dt not in _v.FLOAT_DTYPES:
        raise TypeError(f"dtype: expected np.float32 or np.float64, got {dt}")
    return dt


class Parameter:
    """A trainable array: ``.data`` (the value) and ``.grad`` (None until a backward accumulates)."""

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = np.ascontiguousarray(data)
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def accumulate(self, g):
        """Add ``g`` to ``.grad`` (allocating it on first use), as torch's autograd does."""
        if self.grad is None:
            self.grad = np.array(g, dtype=self.data.dtype, order="C", copy=True)
        else:
            self.grad += g

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of layers: parameters, submodules, caches for ``backward``.

    Subclasses implement ``forward`` (one functional call, saving what backward needs with
    :meth:`_save`) and ``backward(grad_output)``, which pops that cache, accumulates
    parameter gradients into ``p.grad`` and returns the gradient with respect to the input.
    ``backward`` is called once per ``forward`` call, in reverse order: a module used T times
    before its backward keeps a stack of T caches. In ``eval()`` mode only the latest cache is
    kept (so inference loops use bounded memory) and under :func:`no_grad` none.

    dtype: a module that owns parameters passes its ``dtype`` (np.float32 or np.float64) and
    casts a float input of the other dtype to it (:meth:`_input`). A module without parameters
    of its own (activations, pooling, containers) passes ``dtype=None``: like in torch it has
    no dtype, and its output has the dtype of its input, forward and backward.
    """

    def __init__(self, dtype=None):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_caches", [])
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "dtype", None if dtype is None else _check_dtype(dtype))

    # -- registration ------------------------------------------------------------------
    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError("call Module.__init__() before assigning attributes")
        buffers = self._buffers
        if name in buffers:  # assigning to a buffer's name replaces the buffer (like torch)
            if value is not None and not isinstance(value, np.ndarray):
                raise TypeError(f"{name}: expected an ndarray or None for buffer {name!r}, got {type(value).__name__}")
            buffers[name] = value
            object.__setattr__(self, name, value)
            return
        params.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_parameter(self, name, value):
        """Register ``value`` (a :class:`Parameter` or None, like torch's absent bias) as ``name``."""
        setattr(self, name, value)
        if value is None:
            self._parameters[name] = None

    def register_buffer(self, name, value, persistent=True):
        """Register ``value`` (an ndarray, or None for an absent buffer) as buffer ``name``.

        Buffers are state that is not trained (BatchNorm's running statistics): they are in
        :meth:`state_dict` (unless ``persistent=False``) and :meth:`load_state_dict`, ``.to()``
        casts the float ones, and they are not in :meth:`parameters`. Assigning to
        ``self.<name>`` later replaces the buffer.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"name: expected an identifier str, got {name!r}")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"name: {name!r} is already a parameter or submodule of {type(self).__name__}")
        if value is not None and not isinstance(value, np.ndarray):
            raise TypeError(f"value: expected an ndarray or None for buffer {name!r}, got {type(value).__name__}")
        self._buffers[name] = value
        if not persistent:
            self.__dict__.setdefault("_non_persistent", set()).add(name)
        object.__setattr__(self, name, value)

    # -- forward / backward ------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def _save(self, *cache):
        """Keep what backward needs (see the class docstring for when it is kept)."""
        if not is_grad_enabled():
            return
        if not self.training:
            self._caches.clear()
        self._caches.append(cache)

    def _pop(self):
        if not self._caches:
            raise ValueError(
                f"{type(self).__name__}.backward: no forward call is waiting for its backward "
                "(backward is called once per forward, in reverse order; none is kept under no_grad)"
            )
        return self._caches.pop()

    def _input(self, x, name="input", like=None):
        """``x`` as a float array of the module's dtype (a float input of the other dtype is
        cast); a module without a dtype keeps the input's, or casts to ``like`` (an array or a
        dtype) when given: a gradient takes the dtype of the forward's array."""
        x = _v.float_array(x, name)
        dt = self.dtype if like is None else getattr(like, "dtype", like)
        return x if dt is None or x.dtype == dt else x.astype(dt)

    # -- traversal ---------------------------------------------------------------------
    def named_parameters(self, prefix=""):
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for mname, m in self._modules.items():
            yield from m.named_parameters(prefix + mname + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        """``(name, array)`` of every buffer that is not None, this module's first, like torch."""
        for name, b in self._buffers.items():
            if b is not None:
                yield prefix + name, b
        for mname, m in self._modules.items():
            yield from m.named_buffers(prefix + mname + ".")

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    def _named_state(self, prefix=""):
        # torch's state_dict order: own parameters, own persistent buffers, then each child
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p.data
        skip = self.__dict__.get("_non_persistent", ())
        for name, b in self._buffers.items():
            if b is not None and name not in skip:
                yield prefix + name, b
        for mname, m in self._modules.items():
            yield from m._named_state(prefix + mname + ".")

    def children(self):
        return list(self._modules.values())

    def modules(self):
        yield self
        for m in self._modules.values():
            yield from m.modules()

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient (to None by default, as torch 2)."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Cast every parameter (and gradient) and every float buffer to ``dtype`` (np.float32
        or np.float64), in place; integer buffers (``num_batches_tracked``) keep theirs.

        Modules without a dtype (no parameters of their own) keep none."""
        dt = _check_dtype(dtype)
        for m in self.modules():
            if m.dtype is not None:
                object.__setattr__(m, "dtype", dt)
            m._caches.clear()
            for name, b in list(m._buffers.items()):
                if b is not None and b.dtype.kind == "f":
                    setattr(m, name, b.astype(dt))
        for p in self.parameters():
            p.data = p.data.astype(dt)
            if p.grad is not None:
                p.grad = p.grad.astype(dt)
        return self

    # -- state dict --------------------------------------------------------------------
    def state_dict(self):
        """Copies of the parameters and persistent buffers, keyed and ordered like torch's
        ``state_dict`` (``"0.weight"``, ``"bn1.running_mean"``, ``"out_proj.bias"``)."""
        return OrderedDict((key, arr.copy()) for key, arr in self._named_state())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters and buffers, casting to their dtype (as torch): a
        float buffer or parameter to the module's dtype, ``num_batches_tracked`` to int64.

        Accepts what :func:`fastnn.load` returns for a torch checkpoint (bfloat16/float8 arrays
        from ``ml_dtypes`` too) and a torch state_dict converted with ``{k: v.numpy() for k, v in
        sd.items()}``.
        With ``strict`` a missing or unexpected key raises ``KeyError``; a wrong shape raises
        ``ValueError``; a non-numeric value ``TypeError``. Nothing is copied unless all pass.
        Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"state_dict: expected a mapping of name -> array, got {type(state_dict).__name__}")
        own = OrderedDict(self._named_state())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(
                f"state_dict: keys do not match {type(self).__name__}: missing {missing}, unexpected {unexpected}"
            )
        staged = []
        for name, dst in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            # real numbers: NumPy's, and ml_dtypes' bfloat16/float8 (safely castable to float64)
            if arr.dtype == np.bool_ or not (arr.dtype.kind in "fiu" or np.can_cast(arr.dtype, np.float64)):
                raise TypeError(f"state_dict[{name!r}]: expected a real numeric array, got dtype {arr.dtype}")
            if arr.shape != dst.shape:
                raise ValueError(f"state_dict[{name!r}]: expected shape {dst.shape}, got {arr.shape}")
            staged.append((dst, arr))
        for dst, arr in staged:
            dst[...] = arr  # in place: parameters and buffers keep their dtype
        return missing, unexpected

    # -- printing ----------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"
