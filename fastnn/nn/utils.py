"""Gradient clipping, like ``torch.nn.utils``: :func:`clip_grad_norm_` and :func:`clip_grad_value_`.

Both work in place on the ``.grad`` of each :class:`~fastnn.nn.Parameter` (parameters
without a gradient are skipped), one gradient at a time (no foreach grouping).
"""
import math
import numbers

import numpy as np

from .module import Parameter


def _params(parameters):
    if isinstance(parameters, Parameter):
        return [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(
            f"parameters: expected a Parameter or an iterable of Parameters, got {type(parameters).__name__}"
        ) from None
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"parameters[{i}]: expected a fastnn.nn.Parameter, got {type(p).__name__}")
    return params


def _real(v, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or math.isnan(v):
        raise TypeError(f"{name}: expected a real number, got {v!r}")
    return float(v)


def _scale(p, factor):
    if p.grad.flags.writeable:
        p.grad *= factor
    else:
        p.grad = p.grad * factor


def _vector_norm(x, ord):
    """torch.linalg.vector_norm of a flat array (0: count of non-zeros, +-inf: max/min |x|)."""
    if x.size == 0:
        return x.dtype.type(0.0) if ord > 0 or ord == 0 else x.dtype.type(np.inf)
    return x.dtype.type(np.linalg.norm(x, ord=ord))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale the gradients so that their total norm is at most ``max_norm``, like
    ``torch.nn.utils.clip_grad_norm_``.

    The total norm is the ``norm_type`` norm of the per-gradient norms (``inf``: the largest
    absolute value; ``0``: the number of non-zeros); every gradient is multiplied by
    ``min(1, max_norm / (total_norm + 1e-6))``.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameters
    max_norm : float
    norm_type : float, int or str ("inf"), default 2.0
    error_if_nonfinite : bool, default False
        Raise ``ValueError`` (torch: RuntimeError) when the total norm is NaN or infinite,
        leaving the gradients unchanged; otherwise they are scaled (by NaN), as torch.
    foreach : None
        Accepted for torch's signature; fastnn clips gradient by gradient.

    Returns
    -------
    0-d array: the total norm before clipping, in the gradients' dtype (float32 0 when no
    parameter has a gradient), as torch returns a 0-d tensor.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> p = nn.Parameter(np.zeros(2)); p.grad = np.array([3.0, 4.0])
    >>> float(nn.utils.clip_grad_norm_([p], max_norm=1.0))
    5.0
    >>> p.grad.round(6)
    array([0.6, 0.8])
    """
    params = _params(parameters)
    max_norm = _real(max_norm, "max_norm")
    try:
        ord_ = float(norm_type)
    except (TypeError, ValueError):
        raise TypeError(f"norm_type: expected a number or 'inf', got {norm_type!r}") from None
    if math.isnan(ord_):
        raise ValueError(f"norm_type: expected a number or 'inf', got {norm_type!r}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return np.asarray(0.0, dtype=np.float32)
    dtype = np.result_type(*grads)
    norms = np.array([_vector_norm(np.asarray(g).reshape(-1), ord_) for g in grads], dtype=dtype)
    total = np.asarray(_vector_norm(norms, ord_), dtype=dtype)
    if error_if_nonfinite and not np.isfinite(total):
        raise ValueError(
            f"clip_grad_norm_: the total norm of order {ord_} of the gradients is non-finite ({float(total)}), "
            "so it cannot be clipped; with error_if_nonfinite=False the gradients are scaled anyway"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = min(dtype.type(max_norm) / (total + dtype.type(1e-6)), dtype.type(1.0))
    with np.errstate(invalid="ignore"):  # inf * 0: NaN, as torch
        for p in params:
            if p.grad is not None:
                _scale(p, coef)
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient to ``[-clip_value, clip_value]`` in place, like
    ``torch.nn.utils.clip_grad_value_`` (returns None; NaN stays NaN).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> p = nn.Parameter(np.zeros(3)); p.grad = np.array([-5.0, 0.5, 2.0])
    >>> nn.utils.clip_grad_value_(p, 1.0)
    >>> p.grad
    array([-1. ,  0.5,  1. ])
    """
    params = _params(parameters)
    c = _real(clip_value, "clip_value")
    for p in params:
        if p.grad is not None:
            if p.grad.flags.writeable:
                np.clip(p.grad, -c, c, out=p.grad)
            else:
                p.grad = np.clip(p.grad, -c, c)
