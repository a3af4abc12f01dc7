"""Upsampling: ``interpolate`` (nearest, bilinear) and its backward, torch's semantics.

The source index (and weight) of every output row and column is computed here once per
call, the way torch computes it (in float32 for float32 inputs, so the same rows are
picked), and ``kernels/upsample`` gathers (forward) or scatter-adds (backward) with them.
"""
import math
import numbers

import numpy as np

from .. import _dispatch as _d
from .. import _validate as _v

_MODES = ("nearest", "bilinear")

# auto: the compiled single pass wins once a second thread pays off; NumPy's separable
# gathers below that ("work" = output elements)
_d.register_auto({"upsample": [(0, "numpy"), (1 << 14, "cython")]})


def _pair_of(v, name, kind):
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(vals) != 2:
        raise ValueError(f"{name}: expected one value or a pair, got {v!r}")
    for e in vals:
        if isinstance(e, bool) or not isinstance(e, kind):
            raise TypeError(f"{name}: expected {'an int' if kind is numbers.Integral else 'a float'} or a pair, got {v!r}")
    return vals


def _args(input, size, scale_factor, mode, align_corners, recompute_scale_factor, name="input"):
    x = _v.float_array(input, name)
    _v.ndim(x, name, 4, " (N, C, H, W)")
    if mode not in _MODES:
        raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")
    if align_corners is not None:
        if mode == "nearest":
            raise ValueError("align_corners: can only be set with mode='bilinear' (like torch), got "
                             f"{align_corners!r} with mode='nearest'")
        if not isinstance(align_corners, (bool, np.bool_)):
            raise TypeError(f"align_corners: expected a bool or None, got {type(align_corners).__name__}")
    if (size is None) == (scale_factor is None):
        raise ValueError("size, scale_factor: expected exactly one of them, got "
                         f"{'both' if size is not None else 'neither'}")
    in_hw = x.shape[2:]
    if size is not None:
        out_hw = tuple(_v.positive_int(s, "size") for s in _pair_of(size, "size", numbers.Integral))
        scales = (None, None)
    else:
        scales = tuple(float(s) for s in _pair_of(scale_factor, "scale_factor", numbers.Real))
        if not all(s > 0 and math.isfinite(s) for s in scales):
            raise ValueError(f"scale_factor: expected positive finite floats, got {scale_factor!r}")
        out_hw = tuple(math.floor(i * s) for i, s in zip(in_hw, scales))
        if min(out_hw) < 1:
            raise ValueError(f"scale_factor: {scale_factor!r} gives an empty output {out_hw} for input size {in_hw}")
        if recompute_scale_factor:
            scales = (None, None)
    return x, x.shape[:2] + out_hw, scales, bool(align_corners)


def _nearest_index(in_size, out_size, scale):
    """torch's "nearest" source rows: ``min(floor(dst * s), in - 1)`` in float32 with
    ``s = 1 / scale_factor`` (or ``in / out`` when a size was given)."""
    if out_size == in_size:
        return np.arange(out_size, dtype=np.int64)
    if out_size == 2 * in_size:
        return np.arange(out_size, dtype=np.int64) >> 1
    s = np.float32(1.0 / scale) if scale else np.float32(in_size) / np.float32(out_size)
    idx = np.floor(np.arange(out_size, dtype=np.float32) * s).astype(np.int64)
    return np.minimum(idx, in_size - 1)


def _linear_index(in_size, out_size, scale, align_corners, dtype):
    """torch's bilinear source rows ``i0, i1`` and weight ``lambda1`` of row ``i1``,
    computed in the input's precision like torch's ``opmath``."""
    dt = np.dtype(dtype).type
    dst = np.arange(out_size)
    if out_size == in_size:  # torch copies
        return dst, dst.copy(), np.zeros(out_size, dtype)
    if align_corners:
        s = dt(in_size - 1) / dt(out_size - 1) if out_size > 1 else dt(0)
        src = s * dst.astype(dtype)
    else:
        s = dt(1.0 / scale) if scale else dt(in_size) / dt(out_size)
        src = np.maximum(s * (dst.astype(dtype) + dt(0.5)) - dt(0.5), dt(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - i0.astype(dtype), 0, 1).astype(dtype)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, lam


def _tables(x, out_shape, scales, mode, align_corners):
    (H, W), (OH, OW) = x.shape[2:], out_shape[2:]
    if mode == "nearest":
        return _nearest_index(H, OH, scales[0]), _nearest_index(W, OW, scales[1])
    return (_linear_index(H, OH, scales[0], align_corners, x.dtype)
            + _linear_index(W, OW, scales[1], align_corners, x.dtype))


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None, recompute_scale_factor=None):
    """Upsample (or downsample) a batch of images, like ``torch.nn.functional.interpolate``.

    Parameters
    ----------
    input : array of shape (N, C, H, W), float32 or float64
    size : int or (int, int), optional
        Output size; give it or ``scale_factor``.
    scale_factor : float or (float, float), optional
        Output size ``floor(H * scale_factor)``; the source coordinates use ``1 / scale_factor``
        (torch's default) unless ``recompute_scale_factor`` is True (then ``H / H_out``).
    mode : {"nearest", "bilinear"}
        ``"nearest"``: torch's legacy nearest (source row ``floor(dst * H / H_out)``);
        ``"bilinear"``: weighted average of the 4 nearest input pixels.
    align_corners : bool, optional (bilinear only; default False)
        True: the corner pixels of input and output are aligned (``src = dst * (H - 1) /
        (H_out - 1)``); False: pixel centres, ``src = (dst + 0.5) * scale - 0.5``.
    recompute_scale_factor : bool, optional

    Returns
    -------
    array of shape (N, C, H_out, W_out), dtype of ``input``

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.interpolate(np.arange(4.0).reshape(1, 1, 2, 2), scale_factor=2)[0, 0]
    array([[0., 0., 1., 1.],
           [0., 0., 1., 1.],
           [2., 2., 3., 3.],
           [2., 2., 3., 3.]])
    """
    x, out_shape, scales, align = _args(input, size, scale_factor, mode, align_corners, recompute_scale_factor)
    out = np.empty(out_shape, x.dtype)
    if out.size:
        _d.kernel("upsample", f"{mode}_forward", out.size)(_v.contiguous(x), out,
                                                           *_tables(x, out_shape, scales, mode, align))
    return out


def interpolate_backward(grad_out, input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                         recompute_scale_factor=None):
    """Gradient of :func:`interpolate` with respect to its input (same arguments; only
    ``input.shape`` is used): each output's gradient goes back to the input pixels it was
    computed from, with the same weights."""
    x, out_shape, scales, align = _args(input, size, scale_factor, mode, align_corners, recompute_scale_factor)
    g = _v.float_array(grad_out, "grad_out")
    _v.same_dtype("input", x, grad_out=g)
    _v.shape(g, "grad_out", out_shape)
    grad_x = np.zeros(x.shape, x.dtype)
    if g.size:
        _d.kernel("upsample", f"{mode}_backward", g.size)(_v.contiguous(g), grad_x,
                                                          *_tables(x, out_shape, scales, mode, align))
    return grad_x
