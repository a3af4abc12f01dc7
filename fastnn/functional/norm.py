"""Normalisation: batch norm, layer norm and group norm, forward and backward (torch's names).

Each function validates its arguments, makes inputs C-contiguous (never modifying them, except
``batch_norm``'s running statistics, which it updates in place in training mode as torch
does), allocates the outputs in the input's dtype and calls the kernels of ``kernels/norm``.

The forward functions can return the statistics they normalised with (``return_stats=True``:
``mean`` and ``rstd = 1 / sqrt(var + eps)``, float64); the backward functions take them, so
a backward pass never recomputes them. The statistics and the backward's reductions are
accumulated in float64 for float32 inputs too (see ``kernels/norm``).
"""
import numbers

import numpy as np

from .. import _dispatch as _d
from .. import _validate as _v

# auto: the fused compiled passes beat NumPy's several passes at every size measured; the
# Cython loops (serial below 32k elements, no team start) win on small inputs, Numba's on large
# ones (docs/performance.md, "## norm"); "work" is the number of input elements.
_d.register_auto({
    "norm": [(0, "cython"), (1 << 15, "numba")],
})


def _number(v, name, minimum=None):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(v).__name__}")
    v = float(v)
    if minimum is not None and not v >= minimum:
        raise ValueError(f"{name}: expected a float >= {minimum}, got {v}")
    return v


def _bool(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    return bool(v)


def _affine(x, weight, bias, shape, what):
    """``weight``/``bias`` (None or arrays of ``shape`` in x's dtype) as contiguous arrays
    (ones / zeros when None)."""
    out = []
    for name, a, fill in (("weight", weight, 1), ("bias", bias, 0)):
        if a is None:
            out.append(np.full(shape, fill, dtype=x.dtype))
            continue
        a = _v.float_array(a, name)
        if a.shape != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)} ({what}), got {a.shape}")
        _v.same_dtype("input", x, **{name: a})
        out.append(_v.contiguous(a))
    return out


def _stats(mean, rstd, shape):
    """The statistics a forward returned, as C-contiguous float64 arrays of ``shape``."""
    out = []
    for name, a in (("mean", mean), ("rstd", rstd)):
        a = _v.float_array(a, name)
        if a.shape != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)} (as the forward returned it), got {a.shape}")
        out.append(np.ascontiguousarray(a, dtype=np.float64))
    return out


def _grad(grad_out, x):
    grad_out = _v.float_array(grad_out, "grad_out")
    _v.same_dtype("input", x, grad_out=grad_out)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out: expected the shape of input {x.shape}, got {grad_out.shape}")
    return _v.contiguous(grad_out)


# ------------------------------------------------------------------------------ batch norm
def _bn_input(input):
    x = _v.float_array(input, "input")
    if x.ndim < 2:
        raise ValueError(f"input: expected an array of shape (N, C, *) with at least 2 dims, got shape {x.shape}")
    return x


def _as_ncm(x):
    N, C = x.shape[:2]
    return _v.contiguous(x).reshape(N, C, int(np.prod(x.shape[2:])))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               return_stats=False):
    """Batch normalisation, like ``torch.nn.functional.batch_norm``.

    ``out = (input - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]`` per channel ``c``
    (dim 1). In training mode ``mean``/``var`` are the batch's (mean and *biased* variance
    over every dim but 1) and ``running_mean``/``running_var``, when given, are updated in
    place: ``running = (1 - momentum) * running + momentum * batch`` with the batch's
    *unbiased* variance for ``running_var``. Otherwise the running statistics are used.

    Parameters
    ----------
    input : array of shape (N, C, *), float32 or float64
    running_mean, running_var : writeable float arrays of shape (C,), or both None
        Required when ``training`` is False.
    weight, bias : arrays of shape (C,) in the input's dtype, optional (1 and 0)
    training : bool, default False
    momentum : float, default 0.1 (the weight of the batch statistics in the update)
    eps : float >= 0, default 1e-5
    return_stats : bool, default False
        Also return the ``mean`` and ``rstd = 1 / sqrt(var + eps)`` used (float64, (C,)),
        which :func:`batch_norm_backward` takes.

    Returns
    -------
    out : array of the input's shape and dtype (and ``mean, rstd`` with ``return_stats``)

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> x = np.arange(8.0).reshape(4, 2)
    >>> F.batch_norm(x, None, None, training=True)[:, 0].round(3)
    array([-1.342, -0.447,  0.447,  1.342])
    """
    x = _bn_input(input)
    N, C = x.shape[:2]
    training = _bool(training, "training")
    momentum = _number(momentum, "momentum")
    eps = _number(eps, "eps", 0.0)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean, running_var: expected both arrays or both None, got one of each")
    for name, r in (("running_mean", running_mean), ("running_var", running_var)):
        if r is None:
            continue
        if not isinstance(r, np.ndarray) or r.dtype not in _v.FLOAT_DTYPES:
            raise TypeError(f"{name}: expected a float32 or float64 ndarray, got "
                            f"{getattr(r, 'dtype', type(r).__name__)}")
        if r.shape != (C,):
            raise ValueError(f"{name}: expected shape ({C},) (the input's channels), got {r.shape}")
        if training and not r.flags.writeable:
            raise ValueError(f"{name}: expected a writeable array (training updates it in place)")
    if not training and running_mean is None:
        raise ValueError("running_mean: expected arrays when training is False (evaluation uses the running "
                         "statistics), got None")
    weight, bias = _affine(x, weight, bias, (C,), "one per channel")
    x3 = _as_ncm(x)
    count = N * x3.shape[2]
    if training and count <= 1:
        raise ValueError(f"input: expected more than 1 value per channel when training, got shape {x.shape}")
    if training:
        mean, var = np.zeros(C), np.zeros(C)
        if x.size:
            _d.kernel("norm", "batch_norm_stats", x.size)(x3, mean, var)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * var * (count / (count - 1))
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    rstd = 1 / np.sqrt(var + eps)
    out = np.empty_like(x3)
    if x.size:
        dt = x.dtype
        _d.kernel("norm", "batch_norm_apply", x.size)(x3, mean.astype(dt), (weight * rstd).astype(dt), bias, out)
    out = out.reshape(x.shape)
    return (out, mean, rstd) if return_stats else out


def batch_norm_backward(grad_out, input, mean, rstd, weight=None, training=True):
    """Gradients of :func:`batch_norm` with respect to the input, ``weight`` and ``bias``.

    Parameters
    ----------
    grad_out : array of the input's shape
    input : array of shape (N, C, *), as given to :func:`batch_norm`
    mean, rstd : arrays of shape (C,): the statistics :func:`batch_norm` returned
        (``return_stats=True``)
    weight : array of shape (C,), optional
    training : bool, default True
        True when ``mean``/``rstd`` were the batch's (training mode, or no running
        statistics): the input gradient then includes their dependence on the input,
        ``rstd * weight * (g - mean(g) - xhat * mean(g * xhat))`` with means over every dim
        but 1; False: ``g * weight * rstd``.

    Returns
    -------
    grad_input : array of the input's shape
    grad_weight, grad_bias : arrays of shape (C,) (``sum(g * xhat)``, ``sum(g)``; returned
        even when ``weight`` is None)
    """
    x = _bn_input(input)
    N, C = x.shape[:2]
    g3 = _as_ncm(_grad(grad_out, x))
    training = _bool(training, "training")
    mean, rstd = _stats(mean, rstd, (C,))
    (weight, _) = _affine(x, weight, None, (C,), "one per channel")
    x3 = _as_ncm(x)
    sum_g, sum_gxc = np.zeros(C), np.zeros(C)
    grad_x = np.empty_like(x3)
    if x.size:
        _d.kernel("norm", "batch_norm_backward_reduce", x.size)(g3, x3, mean, sum_g, sum_gxc)
        a = weight * rstd
        count = x3.shape[0] * x3.shape[2]
        b = -a * rstd * rstd * sum_gxc / count if training else np.zeros(C)
        k = -a * sum_g / count if training else np.zeros(C)
        dt = x.dtype
        _d.kernel("norm", "batch_norm_backward_apply", x.size)(g3, x3, mean.astype(dt), a.astype(dt), b.astype(dt),
                                                                k.astype(dt), grad_x)
    return grad_x.reshape(x.shape), (sum_gxc * rstd).astype(x.dtype), sum_g.astype(x.dtype)


# ------------------------------------------------------------------------------ layer norm
def _normalized_shape(normalized_shape):
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
        raise TypeError(f"normalized_shape: expected an int or a non-empty tuple of ints, got {normalized_shape!r}")
    return tuple(_v.positive_int(s, "normalized_shape") for s in normalized_shape)


def _ln_args(input, normalized_shape):
    x = _v.float_array(input, "input")
    shape = _normalized_shape(normalized_shape)
    if x.ndim < len(shape) or x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"input: expected a shape ending in normalized_shape {shape}, got {x.shape}")
    lead = x.shape[: x.ndim - len(shape)]
    return x, shape, lead, _v.contiguous(x).reshape(int(np.prod(lead)), int(np.prod(shape)))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, return_stats=False):
    """Layer normalisation over the last dims, like ``torch.nn.functional.layer_norm``.

    ``out = (x - mean) / sqrt(var + eps) * weight + bias`` where ``mean`` and the biased
    ``var`` are taken over the last ``len(normalized_shape)`` dims of each sample.

    Parameters
    ----------
    input : array of shape (*, *normalized_shape), float32 or float64
    normalized_shape : int or tuple of ints
    weight, bias : arrays of shape ``normalized_shape`` in the input's dtype, optional
    eps : float >= 0, default 1e-5
    return_stats : bool, default False
        Also return ``mean`` and ``rstd = 1 / sqrt(var + eps)`` (float64, of shape
        ``input.shape[:-len(normalized_shape)]``), which :func:`layer_norm_backward` takes.

    Returns
    -------
    out : array of the input's shape and dtype (and ``mean, rstd`` with ``return_stats``)

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.layer_norm(np.array([[1.0, 2.0, 3.0]]), 3).round(3)
    array([[-1.225,  0.   ,  1.225]])
    """
    x, shape, lead, x2 = _ln_args(input, normalized_shape)
    eps = _number(eps, "eps", 0.0)
    weight, bias = _affine(x, weight, bias, shape, "normalized_shape")
    R, D = x2.shape
    out = np.empty_like(x2)
    mean, rstd = np.full(R, np.nan), np.full(R, np.nan)
    if out.size:
        _d.kernel("norm", "layer_norm_forward", out.size)(x2, weight.reshape(D), bias.reshape(D), eps, out, mean,
                                                          rstd)
    out = out.reshape(x.shape)
    return (out, mean.reshape(lead), rstd.reshape(lead)) if return_stats else out


def layer_norm_backward(grad_out, input, normalized_shape, mean, rstd, weight=None):
    """Gradients of :func:`layer_norm` with respect to the input, ``weight`` and ``bias``.

    Parameters
    ----------
    grad_out : array of the input's shape
    input, normalized_shape, weight : as given to :func:`layer_norm`
    mean, rstd : the statistics :func:`layer_norm` returned (``return_stats=True``)

    Returns
    -------
    grad_input : array of the input's shape,
        ``rstd * (g * weight - mean(g * weight) - xhat * mean(g * weight * xhat))`` per sample
    grad_weight, grad_bias : arrays of shape ``normalized_shape`` (returned even when
        ``weight`` is None)
    """
    x, shape, lead, x2 = _ln_args(input, normalized_shape)
    g2 = _grad(grad_out, x).reshape(x2.shape)
    mean, rstd = _stats(mean, rstd, lead)
    (weight, _) = _affine(x, weight, None, shape, "normalized_shape")
    R, D = x2.shape
    grad_x = np.empty_like(x2)
    gw, gb = np.zeros(D, x.dtype), np.zeros(D, x.dtype)
    if x2.size:
        _d.kernel("norm", "layer_norm_backward", x2.size)(g2, x2, weight.reshape(D), mean.reshape(R), rstd.reshape(R),
                                                          grad_x, gw, gb)
    return grad_x.reshape(x.shape), gw.reshape(shape), gb.reshape(shape)


# ------------------------------------------------------------------------------ group norm
def _gn_args(input, num_groups):
    x = _v.float_array(input, "input")
    if x.ndim < 2:
        raise ValueError(f"input: expected an array of shape (N, C, *) with at least 2 dims, got shape {x.shape}")
    G = _v.positive_int(num_groups, "num_groups")
    N, C = x.shape[:2]
    if C % G:
        raise ValueError(f"num_groups: expected a divisor of the input's {C} channels, got {G}")
    return x, G, _v.contiguous(x).reshape(N, G, C // G, int(np.prod(x.shape[2:])))


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5, return_stats=False):
    """Group normalisation, like ``torch.nn.functional.group_norm``.

    The channels (dim 1) are split into ``num_groups`` groups; each sample's group is
    normalised by its own mean and biased variance (over its channels and positions), then
    ``weight[c]``, ``bias[c]`` are applied per channel.

    Parameters
    ----------
    input : array of shape (N, C, *), float32 or float64
    num_groups : int dividing C
    weight, bias : arrays of shape (C,) in the input's dtype, optional
    eps : float >= 0, default 1e-5
    return_stats : bool, default False
        Also return ``mean`` and ``rstd`` (float64, (N, num_groups)), which
        :func:`group_norm_backward` takes.

    Returns
    -------
    out : array of the input's shape and dtype (and ``mean, rstd`` with ``return_stats``)

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.group_norm(np.arange(8.0).reshape(1, 4, 2), 2).shape
    (1, 4, 2)
    """
    x, G, x4 = _gn_args(input, num_groups)
    eps = _number(eps, "eps", 0.0)
    N, C = x.shape[:2]
    weight, bias = _affine(x, weight, bias, (C,), "one per channel")
    out = np.empty_like(x4)
    mean, rstd = np.full((N, G), np.nan), np.full((N, G), np.nan)
    if out.size:
        _d.kernel("norm", "group_norm_forward", out.size)(x4, weight.reshape(G, -1), bias.reshape(G, -1), eps, out,
                                                          mean, rstd)
    out = out.reshape(x.shape)
    return (out, mean, rstd) if return_stats else out


def group_norm_backward(grad_out, input, num_groups, mean, rstd, weight=None):
    """Gradients of :func:`group_norm` with respect to the input, ``weight`` and ``bias``.

    Parameters
    ----------
    grad_out : array of the input's shape
    input, num_groups, weight : as given to :func:`group_norm`
    mean, rstd : arrays of shape (N, num_groups) that :func:`group_norm` returned

    Returns
    -------
    grad_input : array of the input's shape
    grad_weight, grad_bias : arrays of shape (C,) (returned even when ``weight`` is None)
    """
    x, G, x4 = _gn_args(input, num_groups)
    g4 = _grad(grad_out, x).reshape(x4.shape)
    N, C = x.shape[:2]
    mean, rstd = _stats(mean, rstd, (N, G))
    (weight, _) = _affine(x, weight, None, (C,), "one per channel")
    grad_x = np.empty_like(x4)
    gw, gb = np.zeros(C, x.dtype), np.zeros(C, x.dtype)
    if x4.size:
        _d.kernel("norm", "group_norm_backward", x4.size)(g4, x4, weight.reshape(G, -1), mean, rstd, grad_x,
                                                          gw.reshape(G, -1), gb.reshape(G, -1))
    return grad_x.reshape(x.shape), gw, gb
