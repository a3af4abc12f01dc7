"""Convolution, pooling and upsampling modules (NCHW). Each ``forward`` is one functional call.

:class:`Conv2d`, :class:`Conv1d` and :class:`ConvTranspose2d` take ``dtype=np.float32``
(default, like torch) or ``np.float64`` and cast a float input of the other dtype to it; the
pooling and upsampling modules have no dtype (output dtype = input dtype, as in torch).
"""
import math

import numpy as np

from .. import _random
from .. import functional as F
from .._validate import positive_int
from .module import Module, Parameter


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class Conv2d(Module):
    """2-D convolution, like ``torch.nn.Conv2d`` (``padding_mode="zeros"``).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride, padding, dilation, groups : as :func:`fastnn.functional.conv2d`
        (``padding`` may be ``"same"`` or ``"valid"``)
    bias : bool, default True
    dtype : np.float32 (default) or np.float64
    rng : numpy.random.Generator, optional

    Parameters ``weight`` (out_channels, in_channels // groups, kH, kW) and ``bias``
    (out_channels,) are initialised as torch does (``kaiming_uniform_(a=sqrt(5))``):
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with ``fan_in = in_channels // groups * kH * kW``.
    Input (N, in_channels, H, W); output (N, out_channels, H_out, W_out), see
    :func:`fastnn.functional.conv2d` for the size formula.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.Conv2d(1, 4, 3, padding=1)(np.zeros((2, 1, 5, 5), np.float32)).shape
    (2, 4, 5, 5)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.groups = positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups: expected a divisor of in_channels={in_channels} and out_channels={out_channels}, got {groups}")
        kh, kw = (positive_int(k, "kernel_size") for k in _pair(kernel_size))
        self.kernel_size = (kh, kw)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        fan_in = in_channels // groups * kh * kw
        bound = 1 / math.sqrt(fan_in)
        rng = _random.get_rng(rng)
        shape = (out_channels, in_channels // groups, kh, kw)
        self.weight = Parameter(rng.uniform(-bound, bound, size=shape).astype(self.dtype))
        self.register_parameter(
            "bias", Parameter(rng.uniform(-bound, bound, size=out_channels).astype(self.dtype)) if bias else None
        )
        # check stride/padding/dilation now (an empty batch as large as the dilated kernel)
        F.conv2d(np.zeros((0, in_channels) + tuple(max(1, d * (k - 1) + 1) for k, d in
                                                     zip(self.kernel_size, _pair(dilation))), self.dtype),
                 self.weight.data, None, stride, padding, dilation, groups)

    def _args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def forward(self, input):
        x = self._input(input)
        self._save(x, None)
        return F.conv2d(x, self.weight.data, None if self.bias is None else self.bias.data, **self._args())

    def forward_relu(self, input):
        """``relu(self(input))`` in one pass (the ReLU applied while each image's output is in
        cache); the matching ``backward`` takes the gradient of the ReLU's output.
        :class:`~fastnn.nn.Sequential` calls it for a ``Conv2d`` followed by a ``ReLU``."""
        x = self._input(input)
        y = F.conv2d(x, self.weight.data, None if self.bias is None else self.bias.data, activation="relu",
                     **self._args())
        self._save(x, y)
        return y

    def backward(self, grad_output, need_input_grad=True):
        x, y = self._pop()
        relu = dict(activation="relu", output=y) if y is not None else {}
        gx, gw, gb = F.conv2d_backward(grad_output, x, self.weight.data, need_input_grad=need_input_grad,
                                       **self._args(), **relu)
        self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}")


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def _args(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode)

    def forward(self, input):
        x = self._input(input)
        self._save(x)
        return type(self)._fn(x, **self._args())

    def backward(self, grad_output, need_input_grad=True):
        (x,) = self._pop()
        return type(self)._grad(self._input(grad_output, "grad_output", like=x), x, **self._args())

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"


class MaxPool2d(_Pool2d):
    """2-D max pooling, like ``torch.nn.MaxPool2d(kernel_size, stride=None, padding=0, ceil_mode=False)``.

    The backward sends each window's gradient to its first maximal element, like torch.
    Input (N, C, H, W); output (N, C, H_out, W_out) as :func:`fastnn.functional.max_pool2d`.
    """

    _fn, _grad = F.max_pool2d, F.max_pool2d_backward


class AvgPool2d(_Pool2d):
    """2-D average pooling, like ``torch.nn.AvgPool2d(kernel_size, stride=None, padding=0,
    ceil_mode=False, count_include_pad=True)``. Input and output as :class:`MaxPool2d`."""

    _fn, _grad = F.avg_pool2d, F.avg_pool2d_backward

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        self.__dict__["count_include_pad"] = count_include_pad
        super().__init__(kernel_size, stride, padding, ceil_mode)

    def _args(self):
        return dict(super()._args(), count_include_pad=self.count_include_pad)


def _init_uniform(rng, fan_in, shape, dtype):
    bound = 1 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Conv1d(Module):
    """1-D convolution, like ``torch.nn.Conv1d`` (``padding_mode="zeros"``).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int
    stride, padding, dilation, groups : as :func:`fastnn.functional.conv1d`
        (``padding`` may be ``"same"`` or ``"valid"``)
    bias : bool, default True
    dtype : np.float32 (default) or np.float64 (a float input of the other dtype is cast)
    rng : numpy.random.Generator, optional

    Parameters ``weight`` (out_channels, in_channels // groups, kernel_size) and ``bias``
    (out_channels,), initialised as torch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    ``fan_in = in_channels // groups * kernel_size``. Input (N, in_channels, L); output
    (N, out_channels, L_out). It runs on the Conv2d kernels (the input seen as (N, C, 1, L)).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.Conv1d(2, 4, 3, padding="same")(np.zeros((5, 2, 16), np.float32)).shape
    (5, 4, 16)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.groups = positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups: expected a divisor of in_channels={in_channels} and out_channels={out_channels}, got {groups}")
        k = F.conv._single(kernel_size, "kernel_size", 1)
        self.kernel_size = (k,)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        rng = _random.get_rng(rng)
        fan_in = in_channels // groups * k
        self.weight = Parameter(_init_uniform(rng, fan_in, (out_channels, in_channels // groups, k), self.dtype))
        self.register_parameter("bias", Parameter(_init_uniform(rng, fan_in, out_channels, self.dtype)) if bias else None)
        d = F.conv._single(dilation, "dilation", 1)
        F.conv1d(np.zeros((0, in_channels, d * (k - 1) + 1), self.dtype), self.weight.data, None, **self._args())

    def _args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def forward(self, input):
        x = self._input(input)
        self._save(x)
        return F.conv1d(x, self.weight.data, None if self.bias is None else self.bias.data, **self._args())

    def backward(self, grad_output, need_input_grad=True):
        (x,) = self._pop()
        gx, gw, gb = F.conv1d_backward(self._input(grad_output, "grad_output"), x, self.weight.data,
                                       need_input_grad=need_input_grad, **self._args())
        self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}")


class ConvTranspose2d(Module):
    """2-D transposed convolution, like ``torch.nn.ConvTranspose2d``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride, padding, output_padding, groups, dilation : as
        :func:`fastnn.functional.conv_transpose2d` (torch's order of arguments)
    bias : bool, default True
    dtype : np.float32 (default) or np.float64 (a float input of the other dtype is cast)
    rng : numpy.random.Generator, optional

    Parameters ``weight`` (in_channels, out_channels // groups, kH, kW) (torch's layout) and
    ``bias`` (out_channels,), initialised as torch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    ``fan_in = out_channels // groups * kH * kW`` (torch takes weight dim 1 as fan-in).
    Input (N, in_channels, H, W); output (N, out_channels, H_out, W_out) with
    ``H_out = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
    >>> up(np.zeros((2, 8, 7, 7), np.float32)).shape
    (2, 4, 14, 14)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.groups = positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups: expected a divisor of in_channels={in_channels} and out_channels={out_channels}, got {groups}")
        kh, kw = (positive_int(k, "kernel_size") for k in _pair(kernel_size))
        self.kernel_size = (kh, kw)
        self.stride, self.padding, self.output_padding, self.dilation = stride, padding, output_padding, dilation
        rng = _random.get_rng(rng)
        fan_in = out_channels // groups * kh * kw
        shape = (in_channels, out_channels // groups, kh, kw)
        self.weight = Parameter(_init_uniform(rng, fan_in, shape, self.dtype))
        self.register_parameter("bias", Parameter(_init_uniform(rng, fan_in, out_channels, self.dtype)) if bias else None)
        F.conv_transpose2d(np.zeros((0, in_channels, 1, 1), self.dtype), self.weight.data, None, **self._args())

    def _args(self):
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding, groups=self.groups,
                    dilation=self.dilation)

    def forward(self, input):
        x = self._input(input)
        self._save(x)
        return F.conv_transpose2d(x, self.weight.data, None if self.bias is None else self.bias.data, **self._args())

    def backward(self, grad_output, need_input_grad=True):
        (x,) = self._pop()
        gx, gw, gb = F.conv_transpose2d_backward(self._input(grad_output, "grad_output"), x, self.weight.data,
                                                 need_input_grad=need_input_grad, **self._args())
        self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, output_padding={self.output_padding}, groups={self.groups}, "
                f"dilation={self.dilation}, bias={self.bias is not None}")


class AdaptiveAvgPool2d(Module):
    """Adaptive 2-D average pooling to ``output_size``, like ``torch.nn.AdaptiveAvgPool2d``
    (torch's bins, any output size; None keeps that input size; ``1`` is a global average pool).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.AdaptiveAvgPool2d((2, None))(np.ones((1, 3, 7, 5))).shape
    (1, 3, 2, 5)
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size
        F.adaptive_avg_pool2d(np.zeros((0, 1, 1, 1)), output_size)  # validate now

    def forward(self, input):
        x = self._input(input)
        self._save(x)
        return F.adaptive_avg_pool2d(x, self.output_size)

    def backward(self, grad_output, need_input_grad=True):
        (x,) = self._pop()
        return F.adaptive_avg_pool2d_backward(self._input(grad_output, "grad_output", like=x), x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class MaxPool1d(_Pool2d):
    """1-D max pooling, like ``torch.nn.MaxPool1d(kernel_size, stride=None, padding=0, ceil_mode=False)``.

    Input (N, C, L) or (C, L); see :func:`fastnn.functional.max_pool1d`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.MaxPool1d(2)(np.arange(8.0).reshape(1, 2, 4))
    array([[[1., 3.],
            [5., 7.]]])
    """

    _fn, _grad = F.max_pool1d, F.max_pool1d_backward


class AvgPool1d(_Pool2d):
    """1-D average pooling, like ``torch.nn.AvgPool1d(kernel_size, stride=None, padding=0,
    ceil_mode=False, count_include_pad=True)``. Input (N, C, L) or (C, L).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.AvgPool1d(2)(np.arange(4.0).reshape(1, 1, 4))
    array([[[0.5, 2.5]]])
    """

    _fn, _grad = F.avg_pool1d, F.avg_pool1d_backward

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        self.__dict__["count_include_pad"] = count_include_pad
        super().__init__(kernel_size, stride, padding, ceil_mode)

    def _args(self):
        return dict(super()._args(), count_include_pad=self.count_include_pad)


class Upsample(Module):
    """Upsampling, like ``torch.nn.Upsample(size=None, scale_factor=None, mode="nearest",
    align_corners=None)``; modes ``"nearest"`` and ``"bilinear"`` (see
    :func:`fastnn.functional.interpolate`). Input (N, C, H, W).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.Upsample(scale_factor=2, mode="bilinear")(np.ones((1, 3, 4, 5))).shape
    (1, 3, 8, 10)
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None, recompute_scale_factor=None):
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor
        F.interpolate(np.zeros((0, 1, 1 << 20, 1 << 20)), **self._args())  # validate now (an empty batch)

    def _args(self):
        return dict(size=self.size, scale_factor=self.scale_factor, mode=self.mode, align_corners=self.align_corners,
                    recompute_scale_factor=self.recompute_scale_factor)

    def forward(self, input):
        x = self._input(input)
        self._save(x)
        return F.interpolate(x, **self._args())

    def backward(self, grad_output, need_input_grad=True):
        (x,) = self._pop()
        return F.interpolate_backward(self._input(grad_output, "grad_output", like=x), x, **self._args())

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self._args().items() if v is not None)
