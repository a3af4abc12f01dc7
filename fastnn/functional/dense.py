"""Dense ops: linear, activations, softmax, dropout (forward and backward); losses are in
:mod:`fastnn.functional.loss`.

Each function validates its arguments, makes inputs C-contiguous (inputs are never
modified), allocates the output in the input's dtype and calls the kernel of the backend in
force (see :mod:`fastnn._dispatch`).
"""
import numpy as np

from .. import _dispatch as _d
from .. import _validate as _v

def _flat_pair(grad_out, y, gname="grad_out", yname="y"):
    grad_out = _v.float_array(grad_out, gname)
    y = _v.float_array(y, yname)
    _v.same_dtype(yname, y, **{gname: grad_out})
    if grad_out.shape != y.shape:
        raise ValueError(f"{gname}: expected the shape of {yname} {y.shape}, got {grad_out.shape}")
    return _v.contiguous(grad_out), _v.contiguous(y)


def linear(x, weight, bias=None):
    """Affine map ``y = x @ weight.T + bias``, like ``torch.nn.functional.linear``.

    Parameters
    ----------
    x : array of shape (..., in_features), float32 or float64
    weight : array of shape (out_features, in_features), same dtype
    bias : array of shape (out_features,), same dtype, optional

    Returns
    -------
    array of shape (..., out_features), dtype of ``x``

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.linear(np.ones((2, 3)), np.ones((4, 3))).shape
    (2, 4)
    """
    x = _v.float_array(x, "x")
    weight = _v.float_array(weight, "weight")
    _v.ndim(weight, "weight", 2, " (out_features, in_features)")
    if x.ndim < 1:
        raise ValueError(f"x: expected an array of shape (..., {weight.shape[1]}), got shape {x.shape}")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x: expected last dimension {weight.shape[1]} (weight.shape[1], in_features), got shape {x.shape}"
        )
    if bias is not None:
        bias = _v.float_array(bias, "bias")
        _v.shape(bias, "bias", (weight.shape[0],))
        bias = _v.contiguous(bias)
    _v.same_dtype("x", x, weight=weight, bias=bias)
    lead = x.shape[:-1]
    x2 = _v.contiguous(x).reshape(-1, weight.shape[1])
    out = np.empty((x2.shape[0], weight.shape[0]), dtype=x.dtype)
    _d.kernel("dense", "linear_forward", out.size)(x2, _v.contiguous(weight), bias, out)
    return out.reshape(lead + (weight.shape[0],))


def linear_backward(grad_out, x, weight, need_input_grad=True):
    """Gradients of :func:`linear`.

    Parameters
    ----------
    grad_out : array of shape (..., out_features)
        Gradient of the loss with respect to the output of ``linear(x, weight, bias)``.
    x : array of shape (..., in_features)
    weight : array of shape (out_features, in_features)
    need_input_grad : bool, default True
        False skips the ``grad_x`` GEMM (a first layer's input needs no gradient) and
        returns None in its place.

    Returns
    -------
    grad_x : array of shape (..., in_features) or None
    grad_weight : array of shape (out_features, in_features)
    grad_bias : array of shape (out_features,)
    """
    x = _v.float_array(x, "x")
    weight = _v.float_array(weight, "weight")
    grad_out = _v.float_array(grad_out, "grad_out")
    _v.ndim(weight, "weight", 2, " (out_features, in_features)")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x: expected an array of shape (..., {weight.shape[1]}), got shape {x.shape}")
    _v.shape(grad_out, "grad_out", x.shape[:-1] + (weight.shape[0],))
    _v.same_dtype("x", x, weight=weight, grad_out=grad_out)
    out_f, in_f = weight.shape
    x2 = _v.contiguous(x).reshape(-1, in_f)
    g2 = _v.contiguous(grad_out).reshape(-1, out_f)
    grad_x = np.empty_like(x2) if need_input_grad else None
    grad_weight = np.empty((out_f, in_f), dtype=x.dtype)
    grad_bias = np.empty(out_f, dtype=x.dtype)
    _d.kernel("dense", "linear_backward", x2.shape[0] * out_f)(
        g2, x2, _v.contiguous(weight), grad_x, grad_weight, grad_bias
    )
    if grad_x is not None:
        grad_x = grad_x.reshape(x.shape)
    return grad_x, grad_weight, grad_bias


def _unary(name, x):
    x = _v.contiguous(_v.float_array(x, "x"))
    out = np.empty_like(x)
    _d.kernel("dense", name, x.size)(x.reshape(-1), out.reshape(-1))
    return out


def _unary_backward(name, grad_out, y, yname):
    grad_out, y = _flat_pair(grad_out, y, yname=yname)
    out = np.empty_like(y)
    _d.kernel("dense", name, y.size)(grad_out.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


def relu(x):
    """Rectified linear unit ``max(x, 0)`` elementwise (NaN stays NaN, as in torch)."""
    return _unary("relu_forward", x)


def relu_backward(grad_out, y):
    """Gradient of :func:`relu`: ``grad_out`` where ``y > 0``, else 0.

    ``y`` may be the output ``relu(x)`` or the input ``x``: the sign test is the same.
    """
    return _unary_backward("relu_backward", grad_out, y, "y")


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, computed without overflow (``sigmoid(-1000) == 0``)."""
    return _unary("sigmoid_forward", x)


def sigmoid_backward(grad_out, y):
    """Gradient of :func:`sigmoid` from its output ``y``: ``grad_out * y * (1 - y)``."""
    return _unary_backward("sigmoid_backward", grad_out, y, "y")


def tanh(x):
    """Hyperbolic tangent elementwise."""
    return _unary("tanh_forward", x)


def tanh_backward(grad_out, y):
    """Gradient of :func:`tanh` from its output ``y``: ``grad_out * (1 - y**2)``."""
    return _unary_backward("tanh_backward", grad_out, y, "y")


def _rows(x, axis):
    """Move ``axis`` last and view as C-contiguous (rows, C); returns the moved shape too."""
    ax = _v.axis(axis, "axis", x.ndim) if x.ndim else 0
    moved = np.moveaxis(x, ax, -1) if x.ndim else x.reshape(1)
    rows = int(np.prod(moved.shape[:-1], dtype=np.int64))
    return ax, moved.shape, _v.contiguous(moved).reshape(rows, moved.shape[-1])


def _row_op(name, x, axis):
    x = _v.float_array(x, "x")
    ax, mshape, x2 = _rows(x, axis)
    out = np.empty_like(x2)
    if x2.size:
        _d.kernel("dense", name, x2.size)(x2, out)
    out = out.reshape(mshape)
    return np.moveaxis(out, -1, ax) if x.ndim else out.reshape(())


def _row_op_backward(name, grad_out, y, axis):
    grad_out, y = _flat_pair(grad_out, y)
    ax, mshape, y2 = _rows(y, axis)
    _, _, g2 = _rows(grad_out, axis)
    out = np.empty_like(y2)
    if y2.size:
        _d.kernel("dense", name, y2.size)(g2, y2, out)
    out = out.reshape(mshape)
    return np.ascontiguousarray(np.moveaxis(out, -1, ax)) if y.ndim else out.reshape(())


def softmax(x, axis=-1):
    """Softmax along ``axis`` (``torch.softmax(x, dim=axis)``): ``exp(x - max) / sum``.

    A slice that is all ``-inf`` gives NaN, as in torch.
    """
    return np.ascontiguousarray(_row_op("softmax_forward", x, axis))


def softmax_backward(grad_out, y, axis=-1):
    """Gradient of :func:`softmax` from its output ``y``: ``y * (grad_out - sum(grad_out * y))``."""
    return _row_op_backward("softmax_backward", grad_out, y, axis)


def log_softmax(x, axis=-1):
    """Log-softmax along ``axis``: ``x - max - log(sum(exp(x - max)))``, finite for large logits."""
    return np.ascontiguousarray(_row_op("log_softmax_forward", x, axis))


def log_softmax_backward(grad_out, y, axis=-1):
    """Gradient of :func:`log_softmax` from its output ``y``: ``grad_out - exp(y) * sum(grad_out)``."""
    return _row_op_backward("log_softmax_backward", grad_out, y, axis)


def dropout(x, p=0.5, training=True, rng=None, return_mask=False):
    """Inverted dropout, like ``torch.nn.functional.dropout``: zero each element with
    probability ``p`` and scale the rest by ``1 / (1 - p)``; identity when not ``training``.

    Parameters
    ----------
    x : float array
    p : float in [0, 1]
    training : bool
    rng : numpy.random.Generator, optional (default: a fresh ``default_rng()``)
    return_mask : bool
        Also return the scaled mask (``out = x * mask``); :func:`dropout_backward` takes it.
    """
    x = _v.float_array(x, "x")
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p <= 1:
        raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator or None, got {type(rng).__name__}")
    if not training or p == 0:
        mask = np.ones_like(x)
    elif p == 1:
        mask = np.zeros_like(x)
    else:
        rng = rng if rng is not None else np.random.default_rng()
        keep = rng.random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64) >= p
        mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    out = x * mask
    return (out, mask) if return_mask else out


def dropout_backward(grad_out, mask):
    """Gradient of :func:`dropout`: ``grad_out * mask`` (the mask it returned)."""
    grad_out, mask = _flat_pair(grad_out, mask, yname="mask")
    return grad_out * mask


def dropout2d(x, p=0.5, training=True, rng=None, return_mask=False):
    """Channel dropout, like ``torch.nn.functional.dropout2d``: zero each whole channel
    ``x[n, c]`` with probability ``p`` and scale the others by ``1 / (1 - p)``; identity when
    not ``training``.

    Parameters
    ----------
    x : float array of shape (N, C, H, W) or (N, C, L)
    p, training, rng : as :func:`dropout`
    return_mask : bool
        Also return the scaled mask of shape (N, C, 1, 1) (or (N, C, 1)), ``out = x * mask``;
        :func:`dropout2d_backward` takes it.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> out = F.dropout2d(np.ones((2, 8, 3, 3)), 0.5, rng=np.random.default_rng(0))
    >>> sorted(set(out.reshape(16, 9).max(axis=1).tolist()))  # whole channels are 0 or 2
    [0.0, 2.0]
    """
    x = _v.float_array(x, "x")
    _v.ndim(x, "x", (3, 4), " (N, C, H, W) or (N, C, L)")
    _, mask = dropout(np.ones(x.shape[:2] + (1,) * (x.ndim - 2), x.dtype), p, training, rng, return_mask=True)
    out = x * mask
    return (out, mask) if return_mask else out


def dropout2d_backward(grad_out, mask):
    """Gradient of :func:`dropout2d`: ``grad_out * mask`` (the mask it returned, broadcast)."""
    grad_out = _v.float_array(grad_out, "grad_out")
    mask = _v.float_array(mask, "mask")
    _v.same_dtype("mask", mask, grad_out=grad_out)
    if grad_out.ndim != mask.ndim or grad_out.shape[:2] != mask.shape[:2] or any(m != 1 for m in mask.shape[2:]):
        raise ValueError(f"mask: expected shape {grad_out.shape[:2] + (1,) * (grad_out.ndim - 2)} for grad_out "
                         f"{grad_out.shape}, got {mask.shape}")
    return grad_out * mask
