"""Loss functions and their input gradients, with torch's names, options and reductions.

Every loss ``f(input, target, ...)`` has a ``f_backward(input, target, ..., grad_output=None)``
that returns the gradient with respect to ``input`` (the first argument), scaled by the
upstream gradient ``grad_output``: a number for ``reduction="mean"``/``"sum"`` (default 1), an
array of the unreduced loss's shape for ``"none"`` (default all ones).

Reduced losses are 0-d arrays of the input's dtype (summed in float64); ``"mean"`` of nothing
is NaN, as in torch. Targets of the regression and binary losses must have the input's
shape and dtype (torch broadcasts with a warning; fastnn refuses).

The plain softmax cross-entropy (class indices, no weight, no smoothing, no ignored row)
runs the fused kernels of ``kernels/dense``; every other option runs ``kernels/loss``.
"""
import numbers

import numpy as np

from .. import _dispatch as _d
from .. import _validate as _v
from ..kernels.loss import BCE, BCE_LOGITS, HUBER, KL, KL_LOG, L1, MSE, SMOOTH_L1

_d.register_auto({
    # Measured on a shared 2-core AVX-512 machine, 1 thread: the compiled pointwise kernels
    # win only for the exp/log-free losses (MSE, L1, Huber: equal to NumPy at 1M elements);
    # with exp/log NumPy's SIMD transcendentals are 3-7x faster than scalar libm calls. The
    # class-loss row kernels win below ~16k logits (one pass, no temporaries: 64x10
    # 29-32 us vs 36-41 us), NumPy above (512x1000: 2.1-2.8 ms vs 4.6-9 ms).
    "loss.pointwise_forward": [(0, "numpy")],
    "loss.pointwise_backward": [(0, "numpy")],
    "loss": [(0, "cython"), (1 << 14, "numpy")],
})

_REDUCTIONS = ("mean", "sum", "none")


def _reduction(reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        raise ValueError(f"reduction: expected one of {allowed}, got {reduction!r}")
    return reduction


def _number(v, name, lo=None, lo_open=False, hi=None):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
        raise TypeError(f"{name}: expected a finite real number, got {v!r}")
    v = float(v)
    if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
        rng = f"{'(' if lo_open else '['}{lo}, {'inf)' if hi is None else str(hi) + ']'}"
        raise ValueError(f"{name}: expected a number in {rng}, got {v}")
    return v


def _reduce(losses, reduction, shape, denom=None):
    """Reduce the flat per-element (or per-row) losses; ``denom`` overrides the mean's count."""
    if reduction == "none":
        return losses.reshape(shape)
    s = losses.sum(dtype=np.float64)
    if reduction == "sum":
        return np.asarray(s, dtype=losses.dtype)
    d = losses.size if denom is None else denom
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.float64(s) / d if d or s else np.nan, dtype=losses.dtype)


def _upstream(grad_output, reduction, shape, dtype):
    """``grad_output`` as (flat array or None, scalar): an array for "none", a number otherwise."""
    if reduction == "none":
        if grad_output is None:
            return None, 1.0
        g = _v.float_array(grad_output, "grad_output")
        if g.dtype != dtype:
            raise TypeError(f"grad_output: expected dtype {dtype} (the dtype of input), got {g.dtype}")
        _v.shape(g, "grad_output", shape)
        return _v.contiguous(g).reshape(-1), 1.0
    if grad_output is None:
        return None, 1.0
    g = np.asarray(grad_output) if not isinstance(grad_output, np.ndarray) else grad_output
    if g.dtype.kind not in "fiu" or g.dtype == np.bool_ or g.size != 1 or g.ndim > 1:
        raise ValueError(
            f"grad_output: expected a real number (the gradient of the {reduction}-reduced loss), "
            f"got {type(grad_output).__name__} of shape {np.shape(grad_output)}"
        )
    return None, float(g.reshape(()))


# ---------------------------------------------------------------- pointwise losses
def _pair(input, target):
    x = _v.float_array(input, "input")
    t = _v.float_array(target, "target")
    _v.same_dtype("input", x, target=t)
    if t.shape != x.shape:
        raise ValueError(f"target: expected the shape of input {x.shape}, got {t.shape}")
    return _v.contiguous(x), _v.contiguous(t)


def _broadcast(w, name, x):
    """An optional weight broadcast to ``x``'s shape, flat and C-contiguous (or None)."""
    if w is None:
        return None
    w = _v.float_array(w, name)
    _v.same_dtype("input", x, **{name: w})
    try:
        return np.ascontiguousarray(np.broadcast_to(w, x.shape)).reshape(-1)
    except ValueError:
        raise ValueError(f"{name}: expected a shape that broadcasts to input's {x.shape}, got {w.shape}") from None


def _pointwise_forward(kind, x, t, reduction, param=0.0, weight=None, pos_weight=None):
    out = np.empty(x.size, dtype=x.dtype)
    pw = pos_weight if pos_weight is not None else x.reshape(-1)[:0]
    if x.size:
        _d.kernel("loss", "pointwise_forward", x.size)(kind, x.reshape(-1), t.reshape(-1), pw, param, out)
    if weight is not None:
        out *= weight
    return _reduce(out, reduction, x.shape, x.shape[0] if reduction == "batchmean" and x.ndim else None)


def _pointwise_backward(kind, x, t, reduction, grad_output, param=0.0, weight=None, pos_weight=None):
    g, scale = _upstream(grad_output, reduction, x.shape, x.dtype)
    if reduction == "mean" and x.size:
        scale /= x.size
    elif reduction == "batchmean" and x.ndim and x.shape[0]:
        scale /= x.shape[0]
    if weight is not None:
        g = weight if g is None else g * weight
    out = np.empty(x.size, dtype=x.dtype)
    pw = pos_weight if pos_weight is not None else x.reshape(-1)[:0]
    if x.size:
        _d.kernel("loss", "pointwise_backward", x.size)(
            kind, x.reshape(-1), t.reshape(-1), pw, param, x.reshape(-1)[:0] if g is None else g, scale, out
        )
    return out.reshape(x.shape)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error ``(input - target)**2``, like ``torch.nn.functional.mse_loss``.

    Parameters
    ----------
    input : float array of any shape
    target : array of the same shape and dtype
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    0-d array (``"mean"``, ``"sum"``) or an array of input's shape (``"none"``), input's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> float(F.mse_loss(np.array([1.0, 2.0]), np.array([1.0, 4.0])))
    2.0
    """
    x, t = _pair(input, target)
    _reduction(reduction)
    if reduction == "none":
        return _pointwise_forward(MSE, x, t, reduction)
    s = _d.kernel("dense", "mse_forward", x.size)(x.reshape(-1), t.reshape(-1)) if x.size else 0.0
    return _reduce(np.asarray([s]), reduction, (), x.size).astype(x.dtype)


def mse_loss_backward(input, target, reduction="mean", grad_output=None):
    """Gradient of :func:`mse_loss` with respect to ``input``: ``2 (input - target)`` (``/ n`` for mean),
    times ``grad_output``."""
    x, t = _pair(input, target)
    _reduction(reduction)
    g, scale = _upstream(grad_output, reduction, x.shape, x.dtype)
    if g is not None:
        return _pointwise_backward(MSE, x, t, reduction, grad_output)
    out = np.empty(x.size, dtype=x.dtype)
    if x.size:
        scale *= 2.0 / x.size if reduction == "mean" else 2.0
        _d.kernel("dense", "mse_backward", x.size)(x.reshape(-1), t.reshape(-1), scale, out)
    return out.reshape(x.shape)


def l1_loss(input, target, reduction="mean"):
    """Mean absolute error ``|input - target|``, like ``torch.nn.functional.l1_loss``.

    Shapes, dtypes and ``reduction`` as :func:`mse_loss`.
    """
    x, t = _pair(input, target)
    return _pointwise_forward(L1, x, t, _reduction(reduction))


def l1_loss_backward(input, target, reduction="mean", grad_output=None):
    """Gradient of :func:`l1_loss`: ``sign(input - target)`` (0 where equal, as torch), ``/ n`` for mean."""
    x, t = _pair(input, target)
    return _pointwise_backward(L1, x, t, _reduction(reduction), grad_output)


def _beta(beta, name):
    return _number(beta, name, lo=0.0)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """Smooth L1, like ``torch.nn.functional.smooth_l1_loss``: ``0.5 d**2 / beta`` where
    ``|d| < beta``, else ``|d| - 0.5 beta`` (``d = input - target``); ``beta=0`` is L1.

    Shapes, dtypes and ``reduction`` as :func:`mse_loss`; ``beta >= 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.smooth_l1_loss(np.array([0.0, 3.0]), np.zeros(2), reduction="none")
    array([0. , 2.5])
    """
    x, t = _pair(input, target)
    beta = _beta(beta, "beta")
    return _pointwise_forward(SMOOTH_L1 if beta else L1, x, t, _reduction(reduction), beta)


def smooth_l1_loss_backward(input, target, reduction="mean", beta=1.0, grad_output=None):
    """Gradient of :func:`smooth_l1_loss`: ``d / beta`` inside ``[-beta, beta]``, ``sign(d)`` outside."""
    x, t = _pair(input, target)
    beta = _beta(beta, "beta")
    return _pointwise_backward(SMOOTH_L1 if beta else L1, x, t, _reduction(reduction), grad_output, beta)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """Huber loss, like ``torch.nn.functional.huber_loss``: ``0.5 d**2`` where ``|d| < delta``,
    else ``delta (|d| - 0.5 delta)``; ``delta > 0``. Shapes, dtypes, ``reduction`` as :func:`mse_loss`."""
    x, t = _pair(input, target)
    delta = _number(delta, "delta", lo=0.0, lo_open=True)
    return _pointwise_forward(HUBER, x, t, _reduction(reduction), delta)


def huber_loss_backward(input, target, reduction="mean", delta=1.0, grad_output=None):
    """Gradient of :func:`huber_loss`: ``clip(d, -delta, delta)``, ``/ n`` for mean."""
    x, t = _pair(input, target)
    delta = _number(delta, "delta", lo=0.0, lo_open=True)
    return _pointwise_backward(HUBER, x, t, _reduction(reduction), grad_output, delta)


def _bce_args(input, target, weight):
    x, t = _pair(input, target)
    if x.size and not (x.min() >= 0 and x.max() <= 1):  # NaN fails too
        raise ValueError(f"input: expected probabilities in [0, 1], got values in [{x.min()}, {x.max()}]")
    return x, t, _broadcast(weight, "weight", x)


def binary_cross_entropy(input, target, weight=None, *, reduction="mean"):
    """Binary cross-entropy of probabilities, like ``torch.nn.functional.binary_cross_entropy``:
    ``-w (t log(x) + (1 - t) log(1 - x))`` with each log clamped at -100 (finite at 0 and 1).

    Parameters
    ----------
    input : float array of probabilities in [0, 1], any shape
    target : array of input's shape and dtype
    weight : array broadcastable to input's shape, same dtype, optional
    reduction : {"mean", "sum", "none"}
    """
    x, t, w = _bce_args(input, target, weight)
    return _pointwise_forward(BCE, x, t, _reduction(reduction), weight=w)


def binary_cross_entropy_backward(input, target, weight=None, *, reduction="mean", grad_output=None):
    """Gradient of :func:`binary_cross_entropy`: ``w (x - t) / max(x (1 - x), 1e-12)`` (torch's)."""
    x, t, w = _bce_args(input, target, weight)
    return _pointwise_backward(BCE, x, t, _reduction(reduction), grad_output, weight=w)


def _bce_logits_args(input, target, weight, pos_weight):
    x, t = _pair(input, target)
    return x, t, _broadcast(weight, "weight", x), _broadcast(pos_weight, "pos_weight", x)


def binary_cross_entropy_with_logits(input, target, weight=None, *, reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable formula, like
    ``torch.nn.functional.binary_cross_entropy_with_logits``::

        loss = w ((1 - t) x - (1 + (pos_weight - 1) t) log_sigmoid(x))

    finite for logits of +-1e4.

    Parameters
    ----------
    input : float array of logits, any shape
    target : array of input's shape and dtype (probabilities)
    weight : array broadcastable to input's shape, optional
    reduction : {"mean", "sum", "none"}
    pos_weight : array broadcastable to input's shape (e.g. (C,) for the last axis), optional
        weight of the positive term of each class.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> float(F.binary_cross_entropy_with_logits(np.array([1e4, -1e4]), np.array([1.0, 0.0])))
    0.0
    """
    x, t, w, pw = _bce_logits_args(input, target, weight, pos_weight)
    return _pointwise_forward(BCE_LOGITS, x, t, _reduction(reduction), weight=w, pos_weight=pw)


def binary_cross_entropy_with_logits_backward(input, target, weight=None, *, reduction="mean", pos_weight=None,
                                              grad_output=None):
    """Gradient of :func:`binary_cross_entropy_with_logits`:
    ``w ((pos_weight t + 1 - t) sigmoid(x) - pos_weight t)`` (``sigmoid(x) - t`` without pos_weight)."""
    x, t, w, pw = _bce_logits_args(input, target, weight, pos_weight)
    return _pointwise_backward(BCE_LOGITS, x, t, _reduction(reduction), grad_output, weight=w, pos_weight=pw)


_KL_REDUCTIONS = ("mean", "batchmean", "sum", "none")


def kl_div(input, target, reduction="mean", log_target=False):
    """Kullback-Leibler divergence of ``target`` from ``exp(input)``, like
    ``torch.nn.functional.kl_div``: ``t (log t - input)`` (0 where ``t == 0``), or
    ``exp(t) (t - input)`` with ``log_target``.

    Parameters
    ----------
    input : float array of log-probabilities
    target : array of input's shape and dtype (probabilities, or log-probabilities)
    reduction : {"mean", "batchmean", "sum", "none"}
        ``"mean"`` averages over every element (torch's default); ``"batchmean"`` divides the
        sum by ``input.shape[0]``, the true KL divergence per sample.
    log_target : bool
    """
    x, t = _pair(input, target)
    return _pointwise_forward(KL_LOG if log_target else KL, x, t, _reduction(reduction, _KL_REDUCTIONS))


def kl_div_backward(input, target, reduction="mean", log_target=False, grad_output=None):
    """Gradient of :func:`kl_div` with respect to ``input``: ``-t`` (``-exp(t)`` with ``log_target``)."""
    x, t = _pair(input, target)
    return _pointwise_backward(KL_LOG if log_target else KL, x, t, _reduction(reduction, _KL_REDUCTIONS),
                               grad_output)


# ---------------------------------------------------------------- class losses
def _rows(x):
    """(C,) -> (1, C); (N, C) -> itself; (N, C, d1, ...) -> (N d1 ..., C) with the class axis last."""
    if x.ndim == 1:
        return _v.contiguous(x).reshape(1, -1)
    if x.ndim == 2:
        return _v.contiguous(x)
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)).reshape(-1, x.shape[1])


def _unrows(g, shape):
    """Inverse of :func:`_rows` for a gradient."""
    if len(shape) <= 2:
        return g.reshape(shape)
    moved = g.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    return np.ascontiguousarray(np.moveaxis(moved, -1, 1))


def _class_args(x, name, target, weight, ignore_index, label_smoothing=0.0):
    """Validate a class loss's arguments. Returns (rows, target, weight, probs?, loss shape)."""
    x = _v.float_array(x, name)
    if x.ndim < 1:
        raise ValueError(f"{name}: expected an array of shape (N, C, d1, ...) or (C,), got shape {x.shape}")
    c = x.shape[1] if x.ndim > 1 else x.shape[0]
    if c == 0:
        raise ValueError(f"{name}: expected at least one class (dimension {int(x.ndim > 1)}), got shape {x.shape}")
    loss_shape = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    if weight is not None:
        weight = _v.float_array(weight, "weight")
        _v.same_dtype(name, x, weight=weight)
        _v.shape(weight, "weight", (c,))
        weight = _v.contiguous(weight)
    else:
        weight = np.empty(0, x.dtype)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index: expected an int, got {type(ignore_index).__name__}")
    ignore_index = int(ignore_index)
    label_smoothing = _number(label_smoothing, "label_smoothing", lo=0.0, hi=1.0)
    t = target if isinstance(target, np.ndarray) else np.asarray(target)
    if t.dtype.kind == "f" and t.shape == x.shape:  # class probabilities, as torch decides
        _v.same_dtype(name, x, target=t)
        if ignore_index >= 0:
            raise ValueError(f"ignore_index: not supported with probability targets, got {ignore_index}")
        return _rows(x), _rows(t), weight, True, loss_shape, ignore_index, label_smoothing
    if t.dtype == np.bool_ or not np.issubdtype(t.dtype, np.integer):
        raise TypeError(
            f"target: expected an integer array of class indices of shape {loss_shape} or a float array of "
            f"probabilities of {name}'s shape {x.shape}, got dtype {t.dtype} and shape {t.shape}"
        )
    if t.shape != loss_shape:
        raise ValueError(f"target: expected shape {loss_shape}, got {t.shape}")
    t = np.ascontiguousarray(t, dtype=np.int64).reshape(-1)
    bad = (t != ignore_index) & ((t < 0) | (t >= c))
    if bad.any():
        raise _v.IndexOutOfRangeError(
            f"target: expected values in [0, {c}) or ignore_index {ignore_index}, got {t[np.argmax(bad)]}"
        )
    return _rows(x), t, weight, False, loss_shape, ignore_index, label_smoothing


def _class_reduce(losses, wt, reduction, loss_shape):
    if reduction == "mean" and wt is not None:
        return _reduce(losses, reduction, loss_shape, wt.sum(dtype=np.float64))
    return _reduce(losses, reduction, loss_shape)


def _rowscale(grad_output, reduction, loss_shape, rows, denom):
    """Per-row gradient scale: upstream gradient / mean denominator."""
    g, scale = _upstream(grad_output, reduction, loss_shape, rows.dtype)
    if reduction == "mean":  # a zero denominator (every row ignored): zero gradient, as torch
        scale = scale / denom if denom else 0.0
    m = rows.shape[0]
    return (np.full(m, scale, dtype=rows.dtype) if g is None else g.astype(rows.dtype, copy=False)), scale, g


def _target_weights(t, weight, ignore_index):
    """The mean's denominator: the weights of the target classes of the non-ignored rows."""
    valid = t[t != ignore_index]
    return float(weight[valid].sum(dtype=np.float64)) if weight.size else float(valid.size)


def cross_entropy(logits, target, reduction="mean", *, weight=None, ignore_index=-100, label_smoothing=0.0):
    """Softmax cross-entropy, like ``torch.nn.functional.cross_entropy`` (keyword options).

    Parameters
    ----------
    logits : float array of shape (N, C), (N, C, d1, d2, ...) or (C,)
    target : int array of class indices of shape (N,), (N, d1, d2, ...) or (), values in
        ``[0, C)`` or ``ignore_index``; or a float array of class probabilities of ``logits``'
        shape and dtype
    reduction : {"mean", "sum", "none"}
        ``"mean"`` divides by the summed weights of the non-ignored targets (by the number of
        rows for probability targets), as torch.
    weight : array of shape (C,), optional
        Rescaling weight of each class.
    ignore_index : int, default -100
        Rows whose target is this value contribute 0 and leave the mean's denominator.
    label_smoothing : float in [0, 1]
        Mixes the target with the uniform distribution: ``(1 - e) onehot + e / C``.

    Returns
    -------
    0-d array (``"mean"``, ``"sum"``; NaN for the mean of an empty batch) or an array of
    shape (N,), (N, d1, ...) or () (``"none"``), dtype of ``logits``. Finite for logits of 1e4.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.cross_entropy(np.zeros((2, 4)), np.array([1, -100]), reduction="none")
    array([1.38629436, 0.        ])
    """
    rows, t, w, probs, shape, ii, eps = _class_args(logits, "logits", target, weight, ignore_index, label_smoothing)
    _reduction(reduction)
    m = rows.shape[0]
    losses = np.empty(m, dtype=rows.dtype)
    wt = None
    if m == 0:
        pass
    elif probs:
        _d.kernel("loss", "cross_entropy_prob_forward", rows.size)(rows, t, w, eps, losses)
    elif not w.size and eps == 0 and not (t == ii).any():
        _d.kernel("dense", "cross_entropy_forward", rows.size)(rows, t, losses)
    else:
        wt = np.empty(m, dtype=rows.dtype)
        _d.kernel("loss", "cross_entropy_forward", rows.size)(rows, t, w, ii, eps, losses, wt)
    return _class_reduce(losses, wt, reduction, shape)


def cross_entropy_backward(logits, target, reduction="mean", *, weight=None, ignore_index=-100, label_smoothing=0.0,
                           grad_output=None):
    """Gradient of :func:`cross_entropy` with respect to ``logits`` (same options), times ``grad_output``.

    Plain case: ``(softmax(logits) - onehot(target)) / N`` for ``"mean"``, computed in one
    fused pass. Returns an array of ``logits``' shape and dtype.
    """
    rows, t, w, probs, shape, ii, eps = _class_args(logits, "logits", target, weight, ignore_index, label_smoothing)
    _reduction(reduction)
    m = rows.shape[0]
    denom = m if probs else _target_weights(t, w, ii)
    rowscale, scale, g = _rowscale(grad_output, reduction, shape, rows, denom)
    out = np.empty_like(rows)
    if m == 0:
        pass
    elif probs:
        _d.kernel("loss", "cross_entropy_prob_backward", rows.size)(rows, t, w, eps, rowscale, out)
    elif g is None and not w.size and eps == 0 and not (t == ii).any():
        _d.kernel("dense", "cross_entropy_backward", rows.size)(rows, t, scale, out)
    else:
        _d.kernel("loss", "cross_entropy_backward", rows.size)(rows, t, w, ii, eps, rowscale, out)
    return _unrows(out, np.shape(logits))


def nll_loss(input, target, weight=None, *, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities, like ``torch.nn.functional.nll_loss``:
    ``-weight[t] * input[n, t]``.

    Parameters
    ----------
    input : float array of log-probabilities of shape (N, C), (N, C, d1, ...) or (C,)
    target : int array of class indices of shape (N,), (N, d1, ...) or ()
    weight : array of shape (C,), optional
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}; the mean divides by the summed target weights.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> float(F.nll_loss(np.log(np.full((2, 4), 0.25)), np.array([0, 3])))
    1.3862943611198906
    """
    rows, t, w, probs, shape, ii, _ = _class_args(input, "input", target, weight, ignore_index)
    if probs:
        raise TypeError(f"target: expected an integer array of class indices of shape {shape}, got float probabilities")
    _reduction(reduction)
    m = rows.shape[0]
    losses, wt = np.empty(m, dtype=rows.dtype), np.empty(m, dtype=rows.dtype)
    if m:
        _d.kernel("loss", "nll_forward", rows.size)(rows, t, w, ii, losses, wt)
    return _class_reduce(losses, wt, reduction, shape)


def nll_loss_backward(input, target, weight=None, *, ignore_index=-100, reduction="mean", grad_output=None):
    """Gradient of :func:`nll_loss`: ``-weight[t]`` (over the mean's denominator) at each target, 0 elsewhere."""
    rows, t, w, probs, shape, ii, _ = _class_args(input, "input", target, weight, ignore_index)
    if probs:
        raise TypeError(f"target: expected an integer array of class indices of shape {shape}, got float probabilities")
    _reduction(reduction)
    rowscale, _, _ = _rowscale(grad_output, reduction, shape, rows, _target_weights(t, w, ii))
    out = np.empty_like(rows)
    if rows.shape[0]:
        _d.kernel("loss", "nll_backward", rows.size)(t, w, ii, rowscale, out)
    return _unrows(out, np.shape(input))
