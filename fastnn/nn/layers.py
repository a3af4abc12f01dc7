"""Dense layers and activations. Each ``forward`` is one functional call.

:class:`Linear` takes ``dtype=np.float32`` (default, like torch) or ``np.float64`` and casts a
float input of the other dtype to it. The modules without parameters (activations,
:class:`Softmax`, :class:`Flatten`, :class:`Dropout`, :class:`Sequential`) have no dtype, as in
torch: their output has the dtype of their input, forward and backward.
"""
import math

import numpy as np

from .. import _random
from .. import functional as F
from .._validate import axis, positive_int
from .module import Module, Parameter


def _uniform(rng, bound, shape, dtype):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Linear(Module):
    """``y = x @ weight.T + bias``, like ``torch.nn.Linear``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    dtype : np.float32 (default) or np.float64
    rng : numpy.random.Generator, optional (default: fastnn's global generator,
        see :func:`fastnn.manual_seed`)

    Parameters ``weight`` (out_features, in_features) and ``bias`` (out_features,) are
    initialised as torch does: U(-1/sqrt(in_features), 1/sqrt(in_features)).
    Input of shape (..., in_features); output (..., out_features).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.in_features = positive_int(in_features, "in_features", 0)
        self.out_features = positive_int(out_features, "out_features", 0)
        rng = _random.get_rng(rng)
        bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
        self.weight = Parameter(_uniform(rng, bound, (out_features, in_features), self.dtype))
        self.register_parameter("bias", Parameter(_uniform(rng, bound, (out_features,), self.dtype)) if bias else None)

    def forward(self, input):
        x = self._input(input)
        self._save(x)
        return F.linear(x, self.weight.data, None if self.bias is None else self.bias.data)

    def backward(self, grad_output, need_input_grad=True):
        (x,) = self._pop()
        gx, gw, gb = F.linear_backward(grad_output, x, self.weight.data, need_input_grad=need_input_grad)
        self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _Activation(Module):
    _fn = _grad = None

    def __init__(self):
        super().__init__()

    def forward(self, input):
        y = type(self)._fn(self._input(input))
        self._save(y)
        return y

    def backward(self, grad_output, need_input_grad=True):
        (y,) = self._pop()
        return type(self)._grad(self._input(grad_output, "grad_output", like=y), y)


class ReLU(_Activation):
    """``max(x, 0)`` elementwise."""

    _fn, _grad = F.relu, F.relu_backward


class Sigmoid(_Activation):
    """Logistic sigmoid elementwise (no overflow for large negative inputs)."""

    _fn, _grad = F.sigmoid, F.sigmoid_backward


class Tanh(_Activation):
    """Hyperbolic tangent elementwise."""

    _fn, _grad = F.tanh, F.tanh_backward


class Softmax(Module):
    """Softmax along ``dim`` (default -1), like ``torch.nn.Softmax(dim)``."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        y = F.softmax(self._input(input), axis=self.dim)
        self._save(y)
        return y

    def backward(self, grad_output, need_input_grad=True):
        (y,) = self._pop()
        return F.softmax_backward(self._input(grad_output, "grad_output", like=y), y, axis=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one (default: all but the batch dim), like torch."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        x = self._input(input)
        s = axis(self.start_dim, "start_dim", x.ndim)
        e = axis(self.end_dim, "end_dim", x.ndim)
        if s > e:
            raise ValueError(f"start_dim: expected start_dim <= end_dim, got {self.start_dim} > {self.end_dim}")
        self._save(x.shape, x.dtype)
        return x.reshape(x.shape[:s] + (int(np.prod(x.shape[s : e + 1])),) + x.shape[e + 1 :])

    def backward(self, grad_output, need_input_grad=True):
        shape, dt = self._pop()
        return self._input(grad_output, "grad_output", like=dt).reshape(shape)


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training mode; identity in ``eval()`` mode."""

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = rng

    def forward(self, input):
        out, mask = F.dropout(self._input(input), self.p, self.training, _random.get_rng(self.rng), return_mask=True)
        self._save(mask)
        return out

    def backward(self, grad_output, need_input_grad=True):
        (mask,) = self._pop()
        return F.dropout_backward(self._input(grad_output, "grad_output", like=mask), mask)

    def extra_repr(self):
        return f"p={self.p}"


class Dropout2d(Module):
    """Channel dropout, like ``torch.nn.Dropout2d(p=0.5)``: in training mode each channel
    ``x[n, c]`` is zeroed with probability ``p`` (the others scaled by ``1 / (1 - p)``);
    identity in ``eval()`` mode. Input (N, C, H, W) or (N, C, L).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> float(nn.Dropout2d(0.5).eval()(np.ones((2, 3, 4, 4))).sum())
    96.0
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = rng

    def forward(self, input):
        out, mask = F.dropout2d(self._input(input), self.p, self.training, _random.get_rng(self.rng), return_mask=True)
        self._save(mask)
        return out

    def backward(self, grad_output, need_input_grad=True):
        (mask,) = self._pop()
        return F.dropout2d_backward(self._input(grad_output, "grad_output", like=mask), mask)

    def extra_repr(self):
        return f"p={self.p}"


class Permute(Module):
    """Permute the dims of the input (``x.transpose(dims)``, torch's ``x.permute(*dims)``), e.g.
    ``Permute(0, 2, 3, 1)`` turns NCHW into NHWC before a channels-last :class:`Flatten` (the
    layout of models ported from other frameworks). Like ``torchvision.ops.Permute``.

    The output is a C-contiguous copy; backward applies the inverse permutation.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.Permute(0, 2, 3, 1)(np.zeros((2, 3, 4, 5))).shape
    (2, 4, 5, 3)
    """

    def __init__(self, *dims):
        super().__init__()
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if not dims or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) for d in dims):
            raise TypeError(f"dims: expected ints, got {dims!r}")
        if sorted(d % len(dims) for d in dims) != list(range(len(dims))) or any(not -len(dims) <= d < len(dims) for d in dims):
            raise ValueError(f"dims: expected a permutation of 0..{len(dims) - 1}, got {dims!r}")
        self.dims = tuple(int(d) % len(dims) for d in dims)

    def forward(self, input):
        x = self._input(input)
        if x.ndim != len(self.dims):
            raise ValueError(f"input: expected a {len(self.dims)}-D array for Permute{self.dims}, got shape {x.shape}")
        self._save(x.dtype)
        return np.ascontiguousarray(x.transpose(self.dims))

    def backward(self, grad_output, need_input_grad=True):
        (dt,) = self._pop()
        g = self._input(grad_output, "grad_output", like=dt)
        return np.ascontiguousarray(g.transpose(np.argsort(self.dims)))

    def extra_repr(self):
        return ", ".join(map(str, self.dims))


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse. Keys ``"0.weight"`` etc. as torch.

    A :class:`~fastnn.nn.Conv2d` directly followed by a :class:`ReLU` runs as one fused call
    (``Conv2d.forward_relu``: the ReLU applied while each image's output is in cache, and its
    gradient taken in the convolution's backward), with the same result as the two in turn.
    """

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"modules[{i}]: expected a fastnn.nn.Module, got {type(m).__name__}")
            setattr(self, str(i), m)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, input):
        from .conv import Conv2d

        mods = list(self._modules.values())
        fused, i = [], 0
        while i < len(mods):
            if isinstance(mods[i], Conv2d) and i + 1 < len(mods) and type(mods[i + 1]) is ReLU:
                input = mods[i].forward_relu(input)
                fused.append(i + 1)  # this ReLU's work (and its backward) is done by the convolution
                i += 2
            else:
                input = mods[i](input)
                i += 1
        self._save(frozenset(fused))
        return input

    def backward(self, grad_output, need_input_grad=True):
        (fused,) = self._pop()
        mods = list(self._modules.values())
        for i in range(len(mods) - 1, -1, -1):
            if i not in fused:
                grad_output = mods[i].backward(grad_output, need_input_grad=need_input_grad or i > 0)
        return grad_output
