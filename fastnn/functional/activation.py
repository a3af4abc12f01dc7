"""Activations beyond relu/sigmoid/tanh: GELU, SiLU, LeakyReLU, ELU, Softplus, Hardswish,
PReLU (forward and backward, torch's names and semantics).

Each function validates its arguments, makes inputs C-contiguous (never modifying them),
allocates the output in the input's dtype and calls the kernel of ``kernels/activation``.
The backward functions take the forward's *input* ``x`` (not its output) and return the
gradient with respect to it; gradients at kinks and for NaN follow torch's formulas.
"""
import numbers

import numpy as np

from .. import _dispatch as _d
from .. import _validate as _v
from .dense import _flat_pair

# auto: one fused compiled pass beats NumPy's several passes at every size measured
# (docs/performance.md, "## activation"); the Cython loops run serially below 16k elements.
_d.register_auto({"activation": [(0, "cython")]})

_GELU = ("none", "tanh")


def _scalar(v, name, nonzero=False):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(v).__name__}")
    if nonzero and v == 0:
        raise ValueError(f"{name}: expected a non-zero float, got {v}")
    return float(v)


def _unary(name, x, *args):
    x = _v.contiguous(_v.float_array(x, "x"))
    out = np.empty_like(x)
    if x.size:
        _d.kernel("activation", name, x.size)(x.reshape(-1), out.reshape(-1), *args)
    return out


def _unary_backward(name, grad_out, x, *args):
    grad_out, x = _flat_pair(grad_out, x, yname="x")
    out = np.empty_like(x)
    if x.size:
        _d.kernel("activation", name, x.size)(grad_out.reshape(-1), x.reshape(-1), out.reshape(-1), *args)
    return out


def _approximate(approximate):
    if approximate not in _GELU:
        raise ValueError(f"approximate: expected one of {_GELU}, got {approximate!r}")
    return approximate == "tanh"


def gelu(x, approximate="none"):
    """Gaussian error linear unit, like ``torch.nn.functional.gelu``.

    ``x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))``, or with ``approximate="tanh"``
    ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``.

    Parameters
    ----------
    x : float32 or float64 array of any shape
    approximate : {"none", "tanh"}

    Returns
    -------
    array of the shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.gelu(np.array([-1.0, 0.0, 1.0])).round(4)
    array([-0.1587,  0.    ,  0.8413])
    """
    return _unary("gelu_forward", x, _approximate(approximate))


def gelu_backward(grad_out, x, approximate="none"):
    """Gradient of :func:`gelu` from its input ``x``: ``grad_out * (Phi(x) + x phi(x))``
    (or the derivative of the tanh form)."""
    return _unary_backward("gelu_backward", grad_out, x, _approximate(approximate))


def silu(x):
    """Sigmoid linear unit (swish) ``x * sigmoid(x)``, like ``torch.nn.functional.silu``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.silu(np.array([0.0, 1.0])).round(4)
    array([0.    , 0.7311])
    """
    return _unary("silu_forward", x)


def silu_backward(grad_out, x):
    """Gradient of :func:`silu` from its input: ``grad_out * s (1 + x (1 - s))``, ``s = sigmoid(x)``."""
    return _unary_backward("silu_backward", grad_out, x)


def leaky_relu(x, negative_slope=0.01):
    """``x`` where ``x > 0``, else ``negative_slope * x``, like ``torch.nn.functional.leaky_relu``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.leaky_relu(np.array([-2.0, 3.0]), 0.1)
    array([-0.2,  3. ])
    """
    return _unary("leaky_relu_forward", x, _scalar(negative_slope, "negative_slope"))


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    """Gradient of :func:`leaky_relu`: ``grad_out`` where ``x > 0``, else ``negative_slope * grad_out``."""
    return _unary_backward("leaky_relu_backward", grad_out, x, _scalar(negative_slope, "negative_slope"))


def elu(x, alpha=1.0):
    """Exponential linear unit: ``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``, like
    ``torch.nn.functional.elu``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.elu(np.array([-1.0, 2.0])).round(4)
    array([-0.6321,  2.    ])
    """
    return _unary("elu_forward", x, _scalar(alpha, "alpha"))


def elu_backward(grad_out, x, alpha=1.0):
    """Gradient of :func:`elu` from its input: ``grad_out * alpha * exp(x)`` where ``x <= 0``, else ``grad_out``."""
    return _unary_backward("elu_backward", grad_out, x, _scalar(alpha, "alpha"))


def softplus(x, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta x)) / beta``, and ``x`` where ``beta x > threshold``, like
    ``torch.nn.functional.softplus``.

    Parameters
    ----------
    x : float32 or float64 array
    beta : non-zero float, default 1
    threshold : float, default 20

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.softplus(np.array([0.0, 30.0])).round(4)
    array([ 0.6931, 30.    ])
    """
    return _unary("softplus_forward", x, _scalar(beta, "beta", nonzero=True), _scalar(threshold, "threshold"))


def softplus_backward(grad_out, x, beta=1.0, threshold=20.0):
    """Gradient of :func:`softplus` from its input: ``grad_out * sigmoid(beta x)`` (``grad_out``
    where ``beta x > threshold``)."""
    return _unary_backward("softplus_backward", grad_out, x, _scalar(beta, "beta", nonzero=True),
                           _scalar(threshold, "threshold"))


def hardswish(x):
    """``x * clip(x + 3, 0, 6) / 6``, like ``torch.nn.functional.hardswish``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.hardswish(np.array([-4.0, 1.0, 4.0])).round(4)
    array([-0.    ,  0.6667,  4.    ])
    """
    return _unary("hardswish_forward", x)


def hardswish_backward(grad_out, x):
    """Gradient of :func:`hardswish` (torch's): 0 for ``x <= -3``, ``grad_out * (x / 3 + 0.5)``
    for ``-3 < x < 3``, ``grad_out`` for ``x >= 3`` (and NaN)."""
    return _unary_backward("hardswish_backward", grad_out, x)


def _prelu_args(x, weight):
    x = _v.float_array(x, "x")
    weight = _v.float_array(weight, "weight")
    _v.same_dtype("x", x, weight=weight)
    if weight.ndim != 1:
        raise ValueError(f"weight: expected a 1-D array of 1 or C slopes, got shape {weight.shape}")
    C = x.shape[1] if x.ndim >= 2 else 1
    if weight.size not in (1, C):
        raise ValueError(f"weight: expected 1 or {C} slopes (x's channels, dim 1), got {weight.size}")
    if x.ndim >= 2:
        x3 = _v.contiguous(x).reshape(x.shape[0], C, int(np.prod(x.shape[2:])))
    else:
        x3 = _v.contiguous(x).reshape(1, 1, x.size)
    w = np.full(C, weight[0], x.dtype) if weight.size != C else _v.contiguous(weight)
    return x, weight, x3, w


def prelu(x, weight):
    """Parametric ReLU: ``x`` where ``x > 0``, else ``weight[c] * x`` for channel ``c`` (dim 1),
    like ``torch.nn.functional.prelu``.

    Parameters
    ----------
    x : float32 or float64 array of shape (N, C, *) (or fewer than 2 dims: one channel)
    weight : array of shape (1,) (one slope for all channels) or (C,), same dtype

    Returns
    -------
    array of the shape and dtype of ``x``

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.prelu(np.array([[-1.0, -1.0], [2.0, -2.0]]), np.array([0.1, 0.5]))
    array([[-0.1, -0.5],
           [ 2. , -1. ]])
    """
    x, weight, x3, w = _prelu_args(x, weight)
    out = np.empty_like(x3)
    if x3.size:
        _d.kernel("activation", "prelu_forward", x3.size)(x3, w, out)
    return out.reshape(x.shape)


def prelu_backward(grad_out, x, weight):
    """Gradients of :func:`prelu`.

    Returns
    -------
    grad_x : array of the shape of ``x`` (``grad_out`` where ``x > 0``, else ``weight[c] * grad_out``)
    grad_weight : array of the shape of ``weight``: the sum of ``x * grad_out`` where ``x <= 0``
        (per channel, or over everything for a single slope), accumulated in float64
    """
    x, weight, x3, w = _prelu_args(x, weight)
    grad_out, _ = _flat_pair(grad_out, x, yname="x")
    g3 = grad_out.reshape(x3.shape)
    grad_x = np.empty_like(x3)
    gw = np.zeros(x3.shape[1])
    if x3.size:
        _d.kernel("activation", "prelu_backward", x3.size)(g3, x3, w, grad_x, gw)
    gw = np.array([gw.sum()]) if weight.size == 1 else gw
    return grad_x.reshape(x.shape), gw.astype(x.dtype)
