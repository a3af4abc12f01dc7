"""The entry points the Numba and Cython backends share: strategy choice and the im2col driver's
bookkeeping around their compiled loops.

The im2col strategy runs in one parallel region of the backend's thread team: the batch is cut
into ``nt`` contiguous parts (``nt = fastnn.get_num_threads()``, at most the batch), one per
thread, and for each image of its part a thread unrolls the input into its own ``cols``
buffer, calls the BLAS GEMM itself (single-threaded: the region runs inside
:func:`~fastnn.kernels._threads.single_thread_blas`; see :mod:`fastnn.kernels._blas`) and writes that image's output. Per image, ``out[n]`` viewed as
``(K, OH*OW)`` *is* the GEMM's output (NCHW needs no transpose) and its bias and optional
ReLU are applied while it is in cache.

Who writes what: a part's thread alone writes its images of ``out`` / ``grad_x``, its ``cols``
scratch and its own partial ``grad_w`` (``(K, C/groups*KH*KW)``, BLAS accumulating with
``beta = 1``) and ``grad_b`` (float64). After the region the partials are added in part order.
The parts depend only on ``N`` and the thread count, so the result is the same bits on every
run; across thread counts only rounding differs.

Memory: per thread one ``(C*KH*KW, OH*OW)`` ``cols`` buffer (one image) and, in backward, a
``(K, OH*OW)`` buffer for the ReLU-masked gradient and the partial sums. It does not grow with
the batch.

Without a usable BLAS GEMM (see :func:`fastnn.kernels._blas.get`) the strategy falls back to
the NumPy backend's convolution.
"""
import numpy as np

from fastnn._config import get_num_threads

from .. import _blas
from .._threads import single_thread_blas
from . import choose_strategy, numpy_impl


def _relu_inplace(out):
    np.maximum(out, 0, out=out)  # NaN stays NaN, like torch's ReLU


def entry_points(ops):
    """``(conv2d_forward, conv2d_backward)`` of a compiled backend.

    ``ops`` holds the backend's parallel loops: the direct strategy's ``direct_forward``,
    ``direct_grad_w``, ``direct_grad_x`` and ``bias_grad`` (over ``grad_out`` viewed as
    ``(N, K, OH*OW)``), and the im2col strategy's ``gemm_forward`` and ``gemm_backward``.
    """

    def conv2d_forward(x, w, b, out, stride, padding, dilation, groups, relu=False):
        K, cg, kh, kw = w.shape
        has_bias = b is not None
        bb = b if has_bias else np.zeros(1, x.dtype)
        geo = (stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1], groups)
        if choose_strategy(cg, kh, kw, K // groups) == "direct":
            ops.direct_forward(x, w, bb, out, *geo, has_bias)
            if relu:
                _relu_inplace(out)
            return
        blas = _blas.get()
        if blas is None:
            return numpy_impl.conv2d_forward(x, w, b, out, stride, padding, dilation, groups, relu)
        nt = max(1, min(get_num_threads(), x.shape[0]))
        with single_thread_blas():
            ops.gemm_forward(blas, x, w, bb, out, *geo, has_bias, relu, nt)

    def conv2d_backward(grad_out, x, w, grad_x, grad_w, grad_b, stride, padding, dilation, groups, y=None):
        K, cg, kh, kw = w.shape
        geo = (stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1], groups)
        if choose_strategy(cg, kh, kw, K // groups) == "direct":
            if y is not None:  # through the fused ReLU first
                grad_out = np.where(y <= 0, 0, grad_out).astype(grad_out.dtype, copy=False)
            if grad_w is not None:
                ops.direct_grad_w(grad_out, x, grad_w, *geo)
            if grad_b is not None:
                N, K = grad_out.shape[:2]
                ops.bias_grad(grad_out.reshape(N, K, -1), grad_b)
            if grad_x is not None:
                ops.direct_grad_x(grad_out, w, grad_x, *geo)
            return
        blas = _blas.get()
        if blas is None:
            return numpy_impl.conv2d_backward(grad_out, x, w, grad_x, grad_w, grad_b, stride, padding, dilation,
                                              groups, y)
        N = x.shape[0]
        nt = max(1, min(get_num_threads(), N))
        gw_part = np.empty((nt, K, cg * kh * kw) if grad_w is not None else (nt, 0, 0), x.dtype)
        gb_part = np.empty((nt, K))
        with single_thread_blas():
            ops.gemm_backward(blas, grad_out, x, w, grad_out if y is None else y,
                              grad_x if grad_x is not None else np.empty((0,) + x.shape[1:], x.dtype),
                              gw_part, gb_part, *geo, y is not None, grad_x is not None, grad_w is not None, nt)
        if grad_w is not None:
            np.sum(gw_part, axis=0, out=grad_w.reshape(K, -1))  # partials in part order
        if grad_b is not None:
            grad_b[...] = gb_part.sum(axis=0)

    return conv2d_forward, conv2d_backward
