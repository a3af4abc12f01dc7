"""NumPy pooling: the padded input viewed as sliding windows (no copy), reduced over the window.

The backward walks the ``kh * kw`` taps of the window in row-major order and adds the
gradient with one strided slice per tap; max pooling marks the windows whose maximum was
already taken, so the first maximal element gets it.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import adaptive_bins


def _padded(x, kernel, stride, padding, oh, ow, value):
    H, W = x.shape[2:]
    ph, pw = padding
    eh = max(0, (oh - 1) * stride[0] + kernel[0] - H - 2 * ph)  # ceil_mode: last window past the pad
    ew = max(0, (ow - 1) * stride[1] + kernel[1] - W - 2 * pw)
    return np.pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)), constant_values=value)


def _windows(xp, kernel, stride, oh, ow):
    v = sliding_window_view(xp, kernel, axis=(2, 3))
    return v[:, :, : stride[0] * (oh - 1) + 1 : stride[0], : stride[1] * (ow - 1) + 1 : stride[1]]


def _tap(a, i, j, stride, oh, ow):
    return a[:, :, i : i + stride[0] * (oh - 1) + 1 : stride[0], j : j + stride[1] * (ow - 1) + 1 : stride[1]]


def max_pool2d_forward(x, out, kernel, stride, padding):
    oh, ow = out.shape[2:]
    xp = _padded(x, kernel, stride, padding, oh, ow, -np.inf)
    out[...] = _windows(xp, kernel, stride, oh, ow).max(axis=(4, 5))


def max_pool2d_backward(grad_out, x, grad_x, kernel, stride, padding):
    oh, ow = grad_out.shape[2:]
    H, W = x.shape[2:]
    xp = _padded(x, kernel, stride, padding, oh, ow, -np.inf)
    m = _windows(xp, kernel, stride, oh, ow).max(axis=(4, 5))
    m_nan = np.isnan(m)
    taken = np.zeros(m.shape, dtype=bool)
    gxp = np.zeros(xp.shape, x.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            v = _tap(xp, i, j, stride, oh, ow)
            hit = ((v == m) | (np.isnan(v) & m_nan)) & ~taken
            taken |= hit
            _tap(gxp, i, j, stride, oh, ow)[...] += np.where(hit, grad_out, 0)
    grad_x[...] = gxp[:, :, padding[0] : padding[0] + H, padding[1] : padding[1] + W]


def _divisors(H, W, oh, ow, kernel, stride, padding, count_include_pad, dtype):
    def axis(o, s, p, k, size):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, size + p)
        if count_include_pad:
            return end - start
        return np.minimum(end, size) - np.maximum(start, 0)

    return np.outer(axis(oh, stride[0], padding[0], kernel[0], H), axis(ow, stride[1], padding[1], kernel[1], W)).astype(dtype)


def avg_pool2d_forward(x, out, kernel, stride, padding, count_include_pad):
    oh, ow = out.shape[2:]
    H, W = x.shape[2:]
    xp = _padded(x, kernel, stride, padding, oh, ow, 0)
    d = _divisors(H, W, oh, ow, kernel, stride, padding, count_include_pad, x.dtype)
    out[...] = _windows(xp, kernel, stride, oh, ow).sum(axis=(4, 5)) / d


def avg_pool2d_backward(grad_out, grad_x, kernel, stride, padding, count_include_pad):
    oh, ow = grad_out.shape[2:]
    H, W = grad_x.shape[2:]
    g = grad_out / _divisors(H, W, oh, ow, kernel, stride, padding, count_include_pad, grad_out.dtype)
    gxp = _padded(np.zeros_like(grad_x), kernel, stride, padding, oh, ow, 0)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            _tap(gxp, i, j, stride, oh, ow)[...] += g
    grad_x += gxp[:, :, padding[0] : padding[0] + H, padding[1] : padding[1] + W]


def _averaging(size, out_size, dtype):
    """The (out_size, size) matrix whose row i averages input bin i: adaptive pooling is
    separable, ``out = A_h @ x @ A_w.T`` (two batched GEMMs) and ``grad_x = A_h.T @ g @ A_w``."""
    a = np.zeros((out_size, size), dtype)
    for i, (s0, s1) in enumerate(adaptive_bins(size, out_size)):
        a[i, s0:s1] = 1 / (s1 - s0)
    return a


def adaptive_avg_pool2d_forward(x, out):
    ah = _averaging(x.shape[2], out.shape[2], x.dtype)
    aw = _averaging(x.shape[3], out.shape[3], x.dtype)
    np.matmul(np.matmul(ah, x), aw.T, out=out)


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    ah = _averaging(grad_x.shape[2], grad_out.shape[2], grad_x.dtype)
    aw = _averaging(grad_x.shape[3], grad_out.shape[3], grad_x.dtype)
    np.matmul(np.matmul(ah.T, grad_out), aw, out=grad_x)
