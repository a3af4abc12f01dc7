"""Convolution and pooling (NCHW), forward and backward, torch's names and semantics.

Each function validates every argument, resolves ``stride``/``padding``/``dilation`` to pairs
(``padding`` to ``(top, bottom, left, right)``: ``"same"`` pads the odd extra row/column at the
bottom/right, like torch), makes inputs C-contiguous (never modifying them), allocates the
outputs in the input dtype and calls the kernel of the backend in force. A wrong shape never
reaches a compiled kernel.
"""
import numbers

import numpy as np

from .. import _dispatch as _d
from .. import _validate as _v

# conv2d: the Cython backend (direct or im2col + BLAS, see kernels/conv2d) was fastest on every
# shape measured (docs/performance.md, "## conv2d"); tiny problems run the NumPy path, whose
# fixed cost is lower than starting an OpenMP team. Pooling: compiled kernels from 4096
# output elements on. "work" is the number of multiply-adds (conv) or output elements (pool).
_d.register_auto({
    "conv2d": [(0, "numpy"), (1 << 14, "cython")],
    "pool2d": [(0, "numpy"), (1 << 12, "numba")],
})


def _pair(v, name, minimum):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {v!r}")
        return tuple(_v.positive_int(e, name, minimum) for e in v)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name}: expected an int or a pair of ints, got {type(v).__name__}")
    v = _v.positive_int(v, name, minimum)
    return (v, v)


def _conv_args(x, weight, stride, padding, dilation, groups):
    x = _v.float_array(x, "input")
    weight = _v.float_array(weight, "weight")
    _v.ndim(x, "input", 4, " (N, C_in, H, W)")
    _v.ndim(weight, "weight", 4, " (C_out, C_in // groups, kH, kW)")
    _v.same_dtype("input", x, weight=weight)
    groups = _v.positive_int(groups, "groups")
    stride = _pair(stride, "stride", 1)
    dilation = _pair(dilation, "dilation", 1)
    N, C, H, W = x.shape
    K, cg, kh, kw = weight.shape
    if K < 1 or cg < 1 or kh < 1 or kw < 1:
        raise ValueError(f"weight: expected a non-empty shape (C_out, C_in // groups, kH, kW), got {weight.shape}")
    if C % groups or K % groups:
        raise ValueError(f"groups: expected a divisor of C_in={C} and C_out={K}, got {groups}")
    if cg * groups != C:
        raise ValueError(
            f"weight: expected shape[1] == C_in // groups = {C // groups} (input has {C} channels, "
            f"groups={groups}), got weight shape {weight.shape}"
        )
    ekh, ekw = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if isinstance(padding, str):
        if padding == "valid":
            pad = (0, 0, 0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding: 'same' needs stride 1 (like torch), got stride {stride}")
            pad = ((ekh - 1) // 2, ekh - 1 - (ekh - 1) // 2, (ekw - 1) // 2, ekw - 1 - (ekw - 1) // 2)
        else:
            raise ValueError(f"padding: expected an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = _pair(padding, "padding", 0)
        pad = (ph, ph, pw, pw)
    hp, wp = H + pad[0] + pad[1], W + pad[2] + pad[3]
    if ekh > hp or ekw > wp:
        raise ValueError(
            f"weight: kernel ({kh}x{kw}, dilated {ekh}x{ekw}) is larger than the padded input ({hp}x{wp})"
        )
    out_shape = (N, K, (hp - ekh) // stride[0] + 1, (wp - ekw) // stride[1] + 1)
    return x, weight, stride, pad, dilation, groups, out_shape


def _activation(activation):
    if activation not in (None, "relu"):
        raise ValueError(f"activation: expected None or 'relu', got {activation!r}")
    return activation == "relu"


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None):
    """2-D convolution (cross-correlation, like ``torch.nn.functional.conv2d``), NCHW.

    Parameters
    ----------
    input : array of shape (N, C_in, H, W), float32 or float64 (any strides)
    weight : array of shape (C_out, C_in // groups, kH, kW), same dtype
    bias : array of shape (C_out,), same dtype, optional
    stride : int or (int, int), >= 1
    padding : int or (int, int) >= 0, or ``"valid"`` (0) or ``"same"`` (output size = input
        size; needs stride 1; an odd total pads one more at the bottom/right, like torch)
    dilation : int or (int, int), >= 1
    groups : int, divides C_in and C_out (``groups == C_in`` is depthwise)
    activation : None or "relu", keyword-only (fastnn's, not torch's)
        ``"relu"`` returns ``relu(conv2d(...))``, the ReLU applied while each image's output is
        in cache (``nn.Sequential`` fuses a ``Conv2d`` followed by a ``ReLU`` this way).

    Returns
    -------
    array of shape (N, C_out, H_out, W_out), dtype of ``input``, with
    ``H_out = (H + pad_top + pad_bottom - dilation[0] * (kH - 1) - 1) // stride[0] + 1``
    (``W_out`` alike).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.conv2d(np.ones((2, 3, 8, 8)), np.ones((4, 3, 3, 3)), padding=1).shape
    (2, 4, 8, 8)
    """
    x, w, stride, pad, dilation, groups, out_shape = _conv_args(input, weight, stride, padding, dilation, groups)
    relu = _activation(activation)
    if bias is not None:
        bias = _v.float_array(bias, "bias")
        _v.shape(bias, "bias", (w.shape[0],))
        _v.same_dtype("input", x, bias=bias)
        bias = _v.contiguous(bias)
    out = np.empty(out_shape, dtype=x.dtype)
    if out.size == 0:
        return out
    work = out.size * w[0].size
    _d.kernel("conv2d", "conv2d_forward", work)(
        _v.contiguous(x), _v.contiguous(w), bias, out, stride, pad, dilation, groups, relu
    )
    return out


def conv2d_backward(grad_out, input, weight, stride=1, padding=0, dilation=1, groups=1, need_input_grad=True, *,
                    need_weight_grad=True, activation=None, output=None):
    """Gradients of :func:`conv2d` with respect to the input, the weight and the bias.

    Parameters
    ----------
    grad_out : array of shape (N, C_out, H_out, W_out)
        Gradient of the loss with respect to ``conv2d(input, weight, bias, ...)``.
    input, weight, stride, padding, dilation, groups
        As given to :func:`conv2d`.
    need_input_grad : bool, default True
        False skips ``grad_input`` (a first layer's input needs none) and returns None for it.
    need_weight_grad : bool, default True, keyword-only
        False skips ``grad_weight`` (returned as None): a transposed convolution's forward is
        this function's input gradient alone.
    activation, output : keyword-only
        With ``activation="relu"``, ``grad_out`` is the gradient with respect to the ReLU's
        output and ``output`` is that output (what ``conv2d(..., activation="relu")``
        returned); the gradient goes through the ReLU (none where ``output <= 0``) in the same
        pass.

    Returns
    -------
    grad_input : array of shape (N, C_in, H, W) or None
    grad_weight : array of shape (C_out, C_in // groups, kH, kW), or None (``need_weight_grad=False``)
    grad_bias : array of shape (C_out,)
    """
    x, w, stride, pad, dilation, groups, out_shape = _conv_args(input, weight, stride, padding, dilation, groups)
    grad_out = _v.float_array(grad_out, "grad_out")
    _v.same_dtype("input", x, grad_out=grad_out)
    _v.shape(grad_out, "grad_out", out_shape)
    y = None
    if _activation(activation):
        if output is None:
            raise ValueError("output: expected the output of conv2d(..., activation='relu'), got None")
        y = _v.float_array(output, "output")
        _v.same_dtype("input", x, output=y)
        _v.shape(y, "output", out_shape)
        y = _v.contiguous(y)
    elif output is not None:
        raise ValueError("output: only used with activation='relu', got an array with activation=None")
    grad_x = np.empty(x.shape, dtype=x.dtype) if need_input_grad else None
    grad_w = np.empty(w.shape, dtype=x.dtype) if need_weight_grad else None
    grad_b = np.empty(w.shape[0], dtype=x.dtype)
    if grad_out.size == 0:
        if grad_w is not None:
            grad_w[...] = 0
        grad_b[...] = 0
        if grad_x is not None:
            grad_x[...] = 0
        return grad_x, grad_w, grad_b
    work = grad_out.size * w[0].size
    _d.kernel("conv2d", "conv2d_backward", work)(
        _v.contiguous(grad_out), _v.contiguous(x), _v.contiguous(w), grad_x, grad_w, grad_b,
        stride, pad, dilation, groups, y,
    )
    return grad_x, grad_w, grad_b


# ------------------------------------------------------------------------------------ pooling
def _pool_args(x, kernel_size, stride, padding, ceil_mode, name="input"):
    x = _v.float_array(x, name)
    _v.ndim(x, name, 4, " (N, C, H, W)")
    kernel = _pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else _pair(stride, "stride", 1)
    pad = _pair(padding, "padding", 0)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode: expected a bool, got {type(ceil_mode).__name__}")
    for p, k in zip(pad, kernel):
        if 2 * p > k:
            raise ValueError(f"padding: expected at most half the kernel size {kernel}, got {pad}")
    N, C, H, W = x.shape
    out_hw = []
    for size, p, k, s in zip((H, W), pad, kernel, stride):
        span = size + 2 * p - k
        if span < 0:
            raise ValueError(f"kernel_size: {kernel} is larger than the padded input ({H + 2 * pad[0]}x{W + 2 * pad[1]})")
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= size + p:  # the last window must start inside the input or left pad
            o -= 1
        out_hw.append(o)
    return x, kernel, stride, pad, (N, C) + tuple(out_hw)


def _pool_grad(grad_out, out_shape, x):
    grad_out = _v.float_array(grad_out, "grad_out")
    _v.same_dtype("input", x, grad_out=grad_out)
    _v.shape(grad_out, "grad_out", out_shape)
    return _v.contiguous(grad_out)


def max_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False):
    """2-D max pooling, like ``torch.nn.functional.max_pool2d`` (padding acts as -inf).

    Parameters
    ----------
    input : array of shape (N, C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int or (int, int), default ``kernel_size``
    padding : int or (int, int), at most half the kernel size
    ceil_mode : bool, default False
        Round the output size up (a last window must still start inside the input).

    Returns
    -------
    array of shape (N, C, H_out, W_out) with
    ``H_out = floor((H + 2 * padding[0] - kernel_size[0]) / stride[0]) + 1`` (``ceil`` in ceil_mode).
    A NaN in a window gives NaN, as in torch.
    """
    x, kernel, stride, pad, out_shape = _pool_args(input, kernel_size, stride, padding, ceil_mode)
    out = np.empty(out_shape, dtype=x.dtype)
    if out.size:
        _d.kernel("pool2d", "max_pool2d_forward", out.size)(_v.contiguous(x), out, kernel, stride, pad)
    return out


def max_pool2d_backward(grad_out, input, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Gradient of :func:`max_pool2d` with respect to its input.

    Each window's gradient goes to its first maximal element (row-major order), like torch;
    overlapping windows add up. Returns an array of the shape of ``input``.
    """
    x, kernel, stride, pad, out_shape = _pool_args(input, kernel_size, stride, padding, ceil_mode)
    grad_out = _pool_grad(grad_out, out_shape, x)
    grad_x = np.empty(x.shape, dtype=x.dtype) if grad_out.size else np.zeros(x.shape, dtype=x.dtype)
    if grad_out.size:  # the kernel writes every element
        _d.kernel("pool2d", "max_pool2d_backward", grad_out.size)(grad_out, _v.contiguous(x), grad_x, kernel, stride, pad)
    return grad_x


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """2-D average pooling, like ``torch.nn.functional.avg_pool2d``.

    Parameters as :func:`max_pool2d`, plus ``count_include_pad`` (default True): divide by the
    window size including zero padding (torch's default) or by the number of input elements
    in the window. Output size as :func:`max_pool2d`.
    """
    x, kernel, stride, pad, out_shape = _pool_args(input, kernel_size, stride, padding, ceil_mode)
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad: expected a bool, got {type(count_include_pad).__name__}")
    out = np.empty(out_shape, dtype=x.dtype)
    if out.size:
        _d.kernel("pool2d", "avg_pool2d_forward", out.size)(_v.contiguous(x), out, kernel, stride, pad, bool(count_include_pad))
    return out


def avg_pool2d_backward(grad_out, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Gradient of :func:`avg_pool2d` with respect to its input (shape of ``input``).

    Only ``input.shape`` is used (its values are not), so ``input`` may be any array of that shape.
    """
    x, kernel, stride, pad, out_shape = _pool_args(input, kernel_size, stride, padding, ceil_mode)
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad: expected a bool, got {type(count_include_pad).__name__}")
    grad_out = _pool_grad(grad_out, out_shape, x)
    grad_x = np.zeros(x.shape, dtype=x.dtype)
    if grad_out.size:
        _d.kernel("pool2d", "avg_pool2d_backward", grad_out.size)(grad_out, grad_x, kernel, stride, pad, bool(count_include_pad))
    return grad_x


# ----------------------------------------------------------------------------- conv1d
def _single(v, name, minimum):
    """An int or a 1-tuple of ints (torch's ``_single``)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"{name}: expected an int or a 1-tuple of ints, got {v!r}")
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name}: expected an int or a 1-tuple of ints, got {type(v).__name__}")
    return _v.positive_int(v, name, minimum)


def _conv1d_args(input, weight, stride, padding, dilation):
    x = _v.float_array(input, "input")
    w = _v.float_array(weight, "weight")
    _v.ndim(x, "input", 3, " (N, C_in, L)")
    _v.ndim(w, "weight", 3, " (C_out, C_in // groups, k)")
    s = _single(stride, "stride", 1)
    d = _single(dilation, "dilation", 1)
    if isinstance(padding, str):
        if padding == "same" and s != 1:
            raise ValueError(f"padding: 'same' needs stride 1 (like torch), got stride {s}")
        pad = padding
    else:
        pad = (0, _single(padding, "padding", 0))
    # a 1-D convolution is the 2-D one on (N, C, 1, L) with a (K, C/g, 1, k) kernel
    return x[:, :, None, :], w[:, :, None, :], (1, s), pad, (1, d)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution (cross-correlation), like ``torch.nn.functional.conv1d``.

    Runs :func:`conv2d` (its kernels, every backend) on the input seen as (N, C_in, 1, L).

    Parameters
    ----------
    input : array of shape (N, C_in, L), float32 or float64
    weight : array of shape (C_out, C_in // groups, k), same dtype
    bias : array of shape (C_out,), optional
    stride, dilation : int (or 1-tuple), >= 1
    padding : int (or 1-tuple) >= 0, ``"valid"`` or ``"same"`` (stride 1)
    groups : int dividing C_in and C_out

    Returns
    -------
    array of shape (N, C_out, L_out), ``L_out = (L + 2 * padding - dilation * (k - 1) - 1) // stride + 1``

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.conv1d(np.ones((2, 3, 10)), np.ones((4, 3, 3)), padding=1).shape
    (2, 4, 10)
    """
    x4, w4, s, p, d = _conv1d_args(input, weight, stride, padding, dilation)
    return conv2d(x4, w4, bias, s, p, d, groups)[:, :, 0, :]


def conv1d_backward(grad_out, input, weight, stride=1, padding=0, dilation=1, groups=1, need_input_grad=True):
    """Gradients of :func:`conv1d` (through :func:`conv2d_backward`).

    Returns
    -------
    grad_input : array of shape (N, C_in, L) or None (``need_input_grad=False``)
    grad_weight : array of shape (C_out, C_in // groups, k)
    grad_bias : array of shape (C_out,)
    """
    x4, w4, s, p, d = _conv1d_args(input, weight, stride, padding, dilation)
    g = _v.float_array(grad_out, "grad_out")
    _v.ndim(g, "grad_out", 3, " (N, C_out, L_out)")
    gx, gw, gb = conv2d_backward(g[:, :, None, :], x4, w4, s, p, d, groups, need_input_grad)
    return (None if gx is None else gx[:, :, 0, :]), gw[:, :, 0, :], gb


# ------------------------------------------------------------------- conv_transpose2d
def _conv_t_args(input, weight, stride, padding, output_padding, groups, dilation):
    x = _v.float_array(input, "input")
    w = _v.float_array(weight, "weight")
    _v.ndim(x, "input", 4, " (N, C_in, H, W)")
    _v.ndim(w, "weight", 4, " (C_in, C_out // groups, kH, kW)")
    _v.same_dtype("input", x, weight=w)
    groups = _v.positive_int(groups, "groups")
    stride = _pair(stride, "stride", 1)
    dilation = _pair(dilation, "dilation", 1)
    if isinstance(padding, str):
        raise ValueError(f"padding: expected an int or a pair of ints (conv_transpose2d has no {padding!r}), got {padding!r}")
    padding = _pair(padding, "padding", 0)
    output_padding = _pair(output_padding, "output_padding", 0)
    N, C, H, W = x.shape
    if w.shape[0] != C:
        raise ValueError(f"weight: expected shape[0] == C_in = {C} (weight is (C_in, C_out // groups, kH, kW)), "
                         f"got weight shape {w.shape}")
    if min(w.shape[1:]) < 1:
        raise ValueError(f"weight: expected a non-empty shape (C_in, C_out // groups, kH, kW), got {w.shape}")
    if C % groups:
        raise ValueError(f"groups: expected a divisor of C_in={C}, got {groups}")
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            raise ValueError(f"output_padding: expected smaller than either stride {stride} or dilation {dilation} "
                             f"(per dim), got {output_padding}")
    out_hw = tuple((size - 1) * s - 2 * p + d * (k - 1) + op + 1 for size, s, p, d, k, op in
                   zip((H, W), stride, padding, dilation, w.shape[2:], output_padding))
    if min(out_hw) < 1:
        raise ValueError(f"padding: the output would be empty ({out_hw[0]}x{out_hw[1]}) for input {H}x{W}, "
                         f"kernel {w.shape[2:]}, stride {stride}, padding {padding}, dilation {dilation}")
    out_shape = (N, w.shape[1] * groups) + out_hw
    # the convolution whose input gradient this is: conv2d(out_shape) -> (N, C_in, OH, OW) with
    # OH = H, unless output_padding >= stride (allowed when smaller than dilation): then OH > H
    # and the extra rows/columns of ``input`` are zeros
    conv_hw = tuple((o + 2 * p - d * (k - 1) - 1) // s + 1 for o, p, d, k, s in
                    zip(out_hw, padding, dilation, w.shape[2:], stride))
    return x, w, stride, padding, dilation, groups, out_shape, conv_hw


def _pad_to(x, hw):
    if x.shape[2:] == hw:
        return x
    xp = np.zeros(x.shape[:2] + hw, x.dtype)
    xp[:, :, : x.shape[2], : x.shape[3]] = x
    return xp


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution ("deconvolution"), like ``torch.nn.functional.conv_transpose2d``.

    It is the input gradient of :func:`conv2d` with the same weight and options, and runs on
    conv2d's backward kernels (every backend).

    Parameters
    ----------
    input : array of shape (N, C_in, H, W), float32 or float64
    weight : array of shape (C_in, C_out // groups, kH, kW), same dtype (torch's layout)
    bias : array of shape (C_out,), optional
    stride, dilation : int or (int, int), >= 1
    padding : int or (int, int), >= 0 (removed from each side of the output)
    output_padding : int or (int, int), >= 0, smaller than stride or dilation: extra rows and
        columns at the bottom/right of the output
    groups : int dividing C_in (and C_out)

    Returns
    -------
    array of shape (N, C_out, H_out, W_out) with
    ``H_out = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kH - 1) + output_padding[0] + 1``

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.conv_transpose2d(np.ones((1, 4, 5, 5)), np.ones((4, 2, 3, 3)), stride=2, padding=1, output_padding=1).shape
    (1, 2, 10, 10)
    """
    x, w, stride, padding, dilation, groups, out_shape, conv_hw = _conv_t_args(
        input, weight, stride, padding, output_padding, groups, dilation)
    if bias is not None:
        bias = _v.float_array(bias, "bias")
        _v.shape(bias, "bias", (out_shape[1],))
        _v.same_dtype("input", x, bias=bias)
    # conv2d's input gradient alone (the "input" is only read for its shape: no weight gradient)
    out, _, _ = conv2d_backward(_pad_to(x, conv_hw), np.empty(out_shape, x.dtype), w, stride, padding, dilation,
                                groups, need_weight_grad=False)
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv_transpose2d_backward(grad_out, input, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                              need_input_grad=True):
    """Gradients of :func:`conv_transpose2d`: the input gradient is :func:`conv2d` of
    ``grad_out`` and the weight gradient is conv2d's weight gradient with the roles of input
    and output gradient swapped (conv2d's kernels, every backend).

    Returns
    -------
    grad_input : array of shape (N, C_in, H, W) or None (``need_input_grad=False``)
    grad_weight : array of shape (C_in, C_out // groups, kH, kW)
    grad_bias : array of shape (C_out,)
    """
    x, w, stride, padding, dilation, groups, out_shape, conv_hw = _conv_t_args(
        input, weight, stride, padding, output_padding, groups, dilation)
    g = _v.float_array(grad_out, "grad_out")
    _v.same_dtype("input", x, grad_out=g)
    _v.shape(g, "grad_out", out_shape)
    H, W = x.shape[2:]
    gx = conv2d(g, w, None, stride, padding, dilation, groups)[:, :, :H, :W] if need_input_grad else None
    _, gw, _ = conv2d_backward(_pad_to(x, conv_hw), g, w, stride, padding, dilation, groups, need_input_grad=False)
    gb = g.sum(axis=(0, 2, 3), dtype=np.float64).astype(x.dtype)
    return (None if gx is None else np.ascontiguousarray(gx)), gw, gb


# ------------------------------------------------------------------ adaptive average pool
def _adaptive_args(input, output_size, name="input"):
    x = _v.float_array(input, name)
    _v.ndim(x, name, 4, " (N, C, H, W)")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{name}: expected non-empty spatial dims, got shape {x.shape}")
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2:
        raise ValueError(f"output_size: expected an int or a pair (an entry may be None), got {output_size!r}")
    out_hw = tuple(size if o is None else _v.positive_int(o, "output_size") for o, size in zip(sizes, x.shape[2:]))
    return x, x.shape[:2] + out_hw


def adaptive_avg_pool2d(input, output_size):
    """Adaptive 2-D average pooling, like ``torch.nn.functional.adaptive_avg_pool2d``.

    Output row ``i`` averages input rows ``floor(i * H / OH) .. ceil((i + 1) * H / OH)``
    (torch's bins; columns alike), for any output size (bins may overlap when it does not
    divide the input size; an output larger than the input repeats rows).

    Parameters
    ----------
    input : array of shape (N, C, H, W), float32 or float64
    output_size : int or (int or None, int or None)
        ``(OH, OW)``; None keeps that input size. ``1`` is a global average pool.

    Returns
    -------
    array of shape (N, C, OH, OW)

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.adaptive_avg_pool2d(np.ones((2, 3, 7, 5)), 1).shape
    (2, 3, 1, 1)
    """
    x, out_shape = _adaptive_args(input, output_size)
    out = np.empty(out_shape, dtype=x.dtype)
    if out.size:
        _d.kernel("pool2d", "adaptive_avg_pool2d_forward", x.size)(_v.contiguous(x), out)
    return out


def adaptive_avg_pool2d_backward(grad_out, input, output_size):
    """Gradient of :func:`adaptive_avg_pool2d` with respect to its input: each output's
    gradient spread evenly over its bin (only ``input.shape`` is used)."""
    x, out_shape = _adaptive_args(input, output_size)
    grad_out = _pool_grad(grad_out, out_shape, x)
    grad_x = np.zeros(x.shape, dtype=x.dtype)
    if grad_out.size:
        _d.kernel("pool2d", "adaptive_avg_pool2d_backward", x.size)(grad_out, grad_x)
    return grad_x


# ------------------------------------------------------------------------- 1-D pooling
def _pool1d(input, kernel_size, stride, padding):
    """(N, C, L) or (C, L) as (N, C, 1, L) with the 1-D options as 2-D pairs."""
    x = _v.float_array(input, "input")
    _v.ndim(x, "input", (2, 3), " (N, C, L) or (C, L)")
    k = _single(kernel_size, "kernel_size", 1)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else _single(stride, "stride", 1)
    p = _single(padding, "padding", 0)
    if 2 * p > k:
        raise ValueError(f"padding: expected at most half the kernel size {k}, got {p}")
    x3 = x if x.ndim == 3 else x[None]
    return x, x3[:, :, None, :], (1, k), (1, s), (0, p)


def _grad1d(grad_out, x):
    g = _v.float_array(grad_out, "grad_out")
    _v.ndim(g, "grad_out", x.ndim, f" ({'N, ' if x.ndim == 3 else ''}C, L_out)")
    return (g if g.ndim == 3 else g[None])[:, :, None, :]


def _unbatch(a, x):
    return a[:, :, 0, :] if x.ndim == 3 else a[0, :, 0, :]


def max_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False):
    """1-D max pooling, like ``torch.nn.functional.max_pool1d`` (:func:`max_pool2d`'s kernels
    on the input seen as (N, C, 1, L)).

    Parameters
    ----------
    input : array of shape (N, C, L) or (C, L)
    kernel_size : int
    stride : int, default ``kernel_size``
    padding : int, at most half the kernel size (acts as -inf)
    ceil_mode : bool

    Returns
    -------
    array of shape (N, C, L_out) (or (C, L_out)),
    ``L_out = floor((L + 2 * padding - kernel_size) / stride) + 1`` (``ceil`` in ceil_mode)

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.max_pool1d(np.arange(6.0).reshape(1, 1, 6), 2)
    array([[[1., 3., 5.]]])
    """
    x, x4, k, s, p = _pool1d(input, kernel_size, stride, padding)
    return _unbatch(max_pool2d(x4, k, s, p, ceil_mode), x)


def max_pool1d_backward(grad_out, input, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Gradient of :func:`max_pool1d` (each window's gradient to its first maximum)."""
    x, x4, k, s, p = _pool1d(input, kernel_size, stride, padding)
    return _unbatch(max_pool2d_backward(_grad1d(grad_out, x), x4, k, s, p, ceil_mode), x)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """1-D average pooling, like ``torch.nn.functional.avg_pool1d`` (:func:`avg_pool2d`'s
    kernels); arguments and output size as :func:`max_pool1d`, plus ``count_include_pad``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.avg_pool1d(np.arange(6.0).reshape(1, 1, 6), 3)
    array([[[1., 4.]]])
    """
    x, x4, k, s, p = _pool1d(input, kernel_size, stride, padding)
    return _unbatch(avg_pool2d(x4, k, s, p, ceil_mode, count_include_pad), x)


def avg_pool1d_backward(grad_out, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Gradient of :func:`avg_pool1d` (only ``input.shape`` is used)."""
    x, x4, k, s, p = _pool1d(input, kernel_size, stride, padding)
    return _unbatch(avg_pool2d_backward(_grad1d(grad_out, x), x4, k, s, p, ceil_mode, count_include_pad), x)
