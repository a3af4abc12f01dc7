"""Scaled dot-product attention, forward and backward, with torch's mask conventions.

Each function validates its arguments, flattens the leading batch dims, turns the mask into
the kernels' compact additive form (one slab per distinct mask, not one per batch element)
and calls the kernel of the backend in force (see :mod:`fastnn._dispatch`).

Difference from torch: a query row with no allowed key (every key masked) gives an output of
0 and gradients of 0; torch gives NaN there.
"""
import math
import numbers

import numpy as np

from .. import _dispatch as _d
from .. import _validate as _v

# measured on the 2-core machine (docs/performance.md, ## attention): work = B * L * S * (E + Ev)
# multiply-adds; below ~2 M one stacked NumPy pass beats the tile loop's fixed costs (thread
# hand-off, per-tile calls), above it the fused Cython kernels win (and never build L x S).
_d.register_auto({
    "attention.sdpa_forward": [(0, "numpy"), (1 << 21, "cython")],
    "attention.sdpa_backward": [(0, "numpy"), (1 << 21, "cython")],
    "attention.sdpa_weights": [(0, "numpy")],
})


class _Attn:
    """Validated, flattened arguments shared by the forward, backward and weights."""

    __slots__ = ("q", "k", "v", "mask", "mask_idx", "causal", "scale", "batch", "L", "S", "Ev", "dtype")


def _bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def _compact_mask(mask, batch, L, S, dtype):
    """(M, Lm, S) additive mask in ``dtype`` and the (B,) slab index of each batch element."""
    if not isinstance(mask, np.ndarray):
        try:
            mask = np.asarray(mask)
        except (ValueError, TypeError) as e:
            raise TypeError(f"attn_mask: expected a bool or float array, got {type(mask).__name__} ({e})") from None
    if mask.dtype != np.bool_:
        if mask.dtype not in _v.FLOAT_DTYPES:
            raise TypeError(f"attn_mask: expected a bool or float array, got dtype {mask.dtype}")
        if mask.dtype != dtype:
            raise TypeError(f"attn_mask: expected dtype bool or {dtype} (the dtype of q), got {mask.dtype}")
    full = batch + (L, S)
    try:
        ok = mask.ndim <= len(full) and np.broadcast_shapes(mask.shape, full) == full
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"attn_mask: expected a shape broadcastable to {full} (batch..., L, S), got {mask.shape}")
    m = mask.reshape((1,) * (len(full) - mask.ndim) + mask.shape)
    mb, Lm = m.shape[:-2], m.shape[-2]
    m = np.broadcast_to(m, mb + (Lm, S))  # a mask shared by all keys: expand along S only
    if m.dtype == np.bool_:
        m = np.where(m, dtype.type(0), dtype.type(-np.inf))
    M = math.prod(mb)
    mask3 = np.ascontiguousarray(m).reshape(M, Lm, S)
    idx = np.broadcast_to(np.arange(M, dtype=np.int64).reshape(mb), batch)
    return mask3, np.ascontiguousarray(idx).reshape(-1)


def _prepare(q, k, v, attn_mask, is_causal, scale):
    q = _v.float_array(q, "q")
    k = _v.float_array(k, "k")
    v = _v.float_array(v, "v")
    for name, a, what in (("q", q, "(..., L, E)"), ("k", k, "(..., S, E)"), ("v", v, "(..., S, Ev)")):
        if a.ndim < 2:
            raise ValueError(f"{name}: expected an array of shape {what} with at least 2 dims, got shape {a.shape}")
    _v.same_dtype("q", q, k=k, v=v)
    batch, (L, E) = q.shape[:-2], q.shape[-2:]
    if k.shape[:-2] != batch:
        raise ValueError(f"k: expected batch dims {batch} (those of q), got shape {k.shape}")
    if v.shape[:-2] != batch:
        raise ValueError(f"v: expected batch dims {batch} (those of q), got shape {v.shape}")
    if k.shape[-1] != E:
        raise ValueError(f"k: expected last dim E = {E} (q's head dim), got shape {k.shape}")
    S = k.shape[-2]
    if v.shape[-2] != S:
        raise ValueError(f"v: expected S = {S} keys (k.shape[-2]), got shape {v.shape}")
    causal = _bool(is_causal, "is_causal")
    if causal and attn_mask is not None:
        raise ValueError("is_causal: expected False when attn_mask is given (as torch), got True")
    if scale is None:
        if E == 0:
            raise ValueError(f"q: the default scale 1/sqrt(E) needs E >= 1, got shape {q.shape}")
        scale = 1.0 / math.sqrt(E)
    elif isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale: expected a float or None, got {type(scale).__name__}")
    a = _Attn()
    a.batch, a.L, a.S, a.Ev, a.dtype = batch, L, S, v.shape[-1], q.dtype
    B = math.prod(batch)
    a.q = _v.contiguous(q).reshape(B, L, E)
    a.k = _v.contiguous(k).reshape(B, S, E)
    a.v = _v.contiguous(v).reshape(B, S, a.Ev)
    if attn_mask is None:
        a.mask, a.mask_idx = np.zeros((0, 1, 1), q.dtype), np.zeros(0, np.int64)
    else:
        a.mask, a.mask_idx = _compact_mask(attn_mask, batch, L, S, q.dtype)
    a.causal, a.scale = causal, float(scale)
    return a


def _work(a):
    return a.q.shape[0] * a.L * a.S * (a.q.shape[2] + a.Ev)


def _forward(a):
    B = a.q.shape[0]
    out = np.zeros((B, a.L, a.Ev), a.dtype)
    lse = np.full((B, a.L), -np.inf, a.dtype)
    if B and a.L and a.S:
        _d.kernel("attention", "sdpa_forward", _work(a))(a.q, a.k, a.v, a.mask, a.mask_idx, a.causal, a.scale, out, lse)
    return out, lse


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None, *, return_lse=False):
    """Attention ``softmax(q @ k.T * scale + mask) @ v``, like ``torch.nn.functional.scaled_dot_product_attention``.

    The Numba and Cython backends never build the (L, S) score matrix: they stream key tiles
    through an online softmax (running max and sum per query row, as FlashAttention), so the
    extra memory is a fixed-size scratch plus O(L) floats per head.

    Parameters
    ----------
    q : array of shape (..., L, E), float32 or float64
    k : array of shape (..., S, E), same dtype and batch dims
    v : array of shape (..., S, Ev), same dtype and batch dims
    attn_mask : bool or float array broadcastable to (..., L, S), optional
        bool: True = may attend; float (dtype of ``q``): added to the scores (``-inf`` masks).
        A mask shared across batch dims (e.g. shape (L, S) or (N, 1, 1, S)) is stored once.
    is_causal : bool
        Mask key ``j > i`` for query ``i`` (top-left aligned, ``tril(ones(L, S))`` as torch).
        An error together with ``attn_mask``, as in torch.
    scale : float, optional
        Default ``1 / sqrt(E)``.
    return_lse : bool, keyword-only
        Also return the per-row log-sum-exp of the scores, shape (..., L) (``-inf`` for a row
        with no allowed key); :func:`scaled_dot_product_attention_backward` takes it to skip
        recomputing the forward.

    Returns
    -------
    out : array of shape (..., L, Ev), dtype of ``q``
        Rows with no allowed key are 0 (torch gives NaN).
    lse : array of shape (..., L), only with ``return_lse``

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> q = np.ones((2, 4, 3, 8)); k = np.ones((2, 4, 5, 8)); v = np.ones((2, 4, 5, 6))
    >>> F.scaled_dot_product_attention(q, k, v).shape
    (2, 4, 3, 6)
    """
    a = _prepare(q, k, v, attn_mask, is_causal, scale)
    out, lse = _forward(a)
    out = out.reshape(a.batch + (a.L, a.Ev))
    return (out, lse.reshape(a.batch + (a.L,))) if _bool(return_lse, "return_lse") else out


def scaled_dot_product_attention_backward(grad_out, q, k, v, attn_mask=None, is_causal=False, scale=None, *,
                                          out=None, lse=None):
    """Gradients of :func:`scaled_dot_product_attention` with respect to ``q``, ``k`` and ``v``.

    The fused backends recompute the probabilities tile by tile from the saved log-sum-exp
    (``P = exp(score - lse)``) instead of storing the (L, S) matrix.

    Parameters
    ----------
    grad_out : array of shape (..., L, Ev)
        Gradient of the loss with respect to the attention output.
    q, k, v, attn_mask, is_causal, scale
        As given to the forward.
    out, lse : arrays of shape (..., L, Ev) and (..., L), keyword-only, optional
        The forward's output and log-sum-exp (``return_lse=True``); without them the
        forward is recomputed.

    Returns
    -------
    grad_q : array of shape (..., L, E)
    grad_k : array of shape (..., S, E)
    grad_v : array of shape (..., S, Ev)
        Rows of a query with no allowed key contribute 0 everywhere (torch: NaN).
    """
    a = _prepare(q, k, v, attn_mask, is_causal, scale)
    B = a.q.shape[0]
    grad_out = _v.float_array(grad_out, "grad_out")
    _v.same_dtype("q", a.q, grad_out=grad_out)
    _v.shape(grad_out, "grad_out", a.batch + (a.L, a.Ev))
    g = _v.contiguous(grad_out).reshape(B, a.L, a.Ev)
    if (out is None) != (lse is None):
        raise ValueError("out, lse: expected both (from return_lse=True) or neither, got one")
    if out is None:
        o, m = _forward(a)
    else:
        o, m = _v.float_array(out, "out"), _v.float_array(lse, "lse")
        _v.same_dtype("q", a.q, out=o, lse=m)
        _v.shape(o, "out", a.batch + (a.L, a.Ev))
        _v.shape(m, "lse", a.batch + (a.L,))
        o, m = _v.contiguous(o).reshape(B, a.L, a.Ev), _v.contiguous(m).reshape(B, a.L)
    gq, gk, gv = np.zeros_like(a.q), np.zeros_like(a.k), np.zeros_like(a.v)
    if B and a.L and a.S:
        _d.kernel("attention", "sdpa_backward", _work(a))(
            g, a.q, a.k, a.v, a.mask, a.mask_idx, a.causal, a.scale, o, m, gq, gk, gv)
    return (gq.reshape(np.shape(q)), gk.reshape(np.shape(k)), gv.reshape(np.shape(v)))


def attention_weights(q, k, attn_mask=None, is_causal=False, scale=None):
    """The attention probabilities ``softmax(q @ k.T * scale + mask)`` (the unfused path).

    Parameters as :func:`scaled_dot_product_attention` (without ``v``).

    Returns
    -------
    array of shape (..., L, S), dtype of ``q``; rows sum to 1, or are 0 for a query with no
    allowed key (torch: NaN).
    """
    q = _v.float_array(q, "q")
    k = _v.float_array(k, "k")
    if k.ndim < 2:
        raise ValueError(f"k: expected an array of shape (..., S, E) with at least 2 dims, got shape {k.shape}")
    a = _prepare(q, k, k[..., :0], attn_mask, is_causal, scale)
    B = a.q.shape[0]
    w = np.zeros((B, a.L, a.S), a.dtype)
    if B and a.L and a.S:
        _d.kernel("attention", "sdpa_weights", B * a.L * a.S)(a.q, a.k, a.mask, a.mask_idx, a.causal, a.scale, w)
    return w.reshape(a.batch + (a.L, a.S))
