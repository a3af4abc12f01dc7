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
                    activation=None, output=None):
    """Gradients of :func:`conv2d` with respect to the input, the weight and the bias.

    Parameters
    ----------
    grad_out : array of shape (N, C_out, H_out, W_out)
        Gradient of the loss with respect to ``conv2d(input, weight, bias, ...)``.
    input, weight, stride, padding, dilation, groups
        As given to :func:`conv2d`.
    need_input_grad : bool, default True
        False skips ``grad_input`` (a first layer's input needs none) and returns None for it.
    activation, output : keyword-only
        With ``activation="relu"``, ``grad_out`` is the gradient with respect to the ReLU's
        output and ``output`` is that output (what ``conv2d(..., activation="relu")``
        returned); the gradient goes through the ReLU (none where ``output <= 0``) in the same
        pass.

    Returns
    -------
    grad_input : array of shape (N, C_in, H, W) or None
    grad_weight : array of shape (C_out, C_in // groups, kH, kW)
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
    grad_w = np.empty(w.shape, dtype=x.dtype)
    grad_b = np.empty(w.shape[0], dtype=x.dtype)
    if grad_out.size == 0:
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
