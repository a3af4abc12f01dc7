"""Convolution and pooling modules (NCHW). Each ``forward`` is one functional call.

:class:`Conv2d` takes ``dtype=np.float32`` (default, like torch) or ``np.float64`` and casts a
float input of the other dtype to it; the pooling modules have no dtype (output dtype = input
dtype, as in torch).
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
