"""NumPy convolution: im2col with ``sliding_window_view`` and one ``tensordot`` (BLAS GEMM).

The padded input of a batch chunk is viewed (no copy) as its sliding windows
``(n, C, OH, OW, KH, KW)``; ``tensordot`` copies each group's windows into the GEMM operand
(the im2col matrix) and multiplies it with the weights in one BLAS call. The backward uses
the same windows for ``grad_w`` and scatters ``grad_out @ w`` back with ``KH * KW`` strided
adds (col2im). Batches are cut into chunks whose im2col matrix stays under
:data:`~fastnn.kernels.conv2d.COL_BYTES`, so the extra memory does not grow with the batch.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import choose_chunk


def _windows(x, padding, kh, kw, stride, dilation, oh, ow):
    t, b, l, r = padding
    sh, sw = stride
    dh, dw = dilation
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r))) if any(padding) else x
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    v = sliding_window_view(xp, (ekh, ekw), axis=(2, 3))  # (n, C, Hp-ekh+1, Wp-ekw+1, ekh, ekw)
    return v[:, :, : sh * (oh - 1) + 1 : sh, : sw * (ow - 1) + 1 : sw, ::dh, ::dw]


def conv2d_forward(x, w, b, out, stride, padding, dilation, groups, relu=False):
    N, C = x.shape[:2]
    K, cg, kh, kw = w.shape
    kg = K // groups
    oh, ow = out.shape[2:]
    step = choose_chunk(N, C * kh * kw, oh * ow, x.itemsize)
    for n0 in range(0, N, step):
        win = _windows(x[n0 : n0 + step], padding, kh, kw, stride, dilation, oh, ow)
        for g in range(groups):
            y = np.tensordot(win[:, g * cg : (g + 1) * cg], w[g * kg : (g + 1) * kg], axes=([1, 4, 5], [1, 2, 3]))
            out[n0 : n0 + step, g * kg : (g + 1) * kg] = y.transpose(0, 3, 1, 2)  # (n, OH, OW, kg) -> NCHW
    if b is not None:
        out += b[None, :, None, None]
    if relu:
        np.maximum(out, 0, out=out)  # NaN stays NaN, as torch's ReLU


def conv2d_backward(grad_out, x, w, grad_x, grad_w, grad_b, stride, padding, dilation, groups, y=None):
    if y is not None:  # through the fused ReLU: no gradient where its output was <= 0
        grad_out = np.where(y <= 0, 0, grad_out).astype(grad_out.dtype)
    N, C, H, W = x.shape
    K, cg, kh, kw = w.shape
    kg = K // groups
    oh, ow = grad_out.shape[2:]
    sh, sw = stride
    dh, dw = dilation
    t, bt, l, r = padding
    step = choose_chunk(N, C * kh * kw, oh * ow, x.itemsize)
    if grad_w is not None:
        grad_w[...] = 0
    for n0 in range(0, N, step):
        xs, gs = x[n0 : n0 + step], grad_out[n0 : n0 + step]
        win = _windows(xs, padding, kh, kw, stride, dilation, oh, ow)
        gxp = None if grad_x is None else np.zeros((xs.shape[0], C, H + t + bt, W + l + r), x.dtype)
        for g in range(groups):
            gg = gs[:, g * kg : (g + 1) * kg]
            if grad_w is not None:
                grad_w[g * kg : (g + 1) * kg] += np.tensordot(gg, win[:, g * cg : (g + 1) * cg],
                                                              axes=([0, 2, 3], [0, 2, 3]))
            if gxp is not None:
                cols = np.tensordot(gg, w[g * kg : (g + 1) * kg], axes=([1], [0]))  # (n, OH, OW, cg, kh, kw)
                for i in range(kh):
                    for j in range(kw):
                        gxp[:, g * cg : (g + 1) * cg, i * dh : i * dh + sh * (oh - 1) + 1 : sh,
                            j * dw : j * dw + sw * (ow - 1) + 1 : sw] += cols[..., i, j].transpose(0, 3, 1, 2)
        if gxp is not None:
            grad_x[n0 : n0 + step] = gxp[:, :, t : t + H, l : l + W]
    if grad_b is not None:
        grad_b[...] = grad_out.sum(axis=(0, 2, 3))
