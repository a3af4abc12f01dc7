"""Reference pooling: a loop over output positions, the window as a NumPy slice over (N, C).

The readable truth the other backends are tested against; argmax ties go to the first
maximal element in row-major order, a NaN wins like in torch.
"""
import numpy as np

from . import adaptive_bins


def _bounds(o, s, p, k, size):
    start = o * s - p
    end = min(start + k, size + p)  # the window clipped to the padded input
    return start, end, max(start, 0), min(end, size)


def max_pool2d_forward(x, out, kernel, stride, padding):
    H, W = x.shape[2:]
    for i in range(out.shape[2]):
        _, _, h0, h1 = _bounds(i, stride[0], padding[0], kernel[0], H)
        for j in range(out.shape[3]):
            _, _, w0, w1 = _bounds(j, stride[1], padding[1], kernel[1], W)
            win = x[:, :, h0:h1, w0:w1]
            m = win.max(axis=(2, 3))
            nan = np.isnan(win).any(axis=(2, 3))
            out[:, :, i, j] = np.where(nan, np.nan, m)


def _first_argmax(win):
    n, c = win.shape[:2]
    flat = win.reshape(n, c, -1)
    idx = np.argmax(flat, axis=2)  # first maximum; np.argmax also returns the first NaN
    return idx


def max_pool2d_backward(grad_out, x, grad_x, kernel, stride, padding):
    grad_x[...] = 0
    H, W = x.shape[2:]
    N, C = x.shape[:2]
    nn_, cc = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for i in range(grad_out.shape[2]):
        _, _, h0, h1 = _bounds(i, stride[0], padding[0], kernel[0], H)
        for j in range(grad_out.shape[3]):
            _, _, w0, w1 = _bounds(j, stride[1], padding[1], kernel[1], W)
            win = x[:, :, h0:h1, w0:w1]
            idx = _first_argmax(win)
            r, q = np.divmod(idx, w1 - w0)
            np.add.at(grad_x, (nn_, cc, h0 + r, w0 + q), grad_out[:, :, i, j])


def _divisor(i, j, kernel, stride, padding, H, W, count_include_pad):
    s0, e0, h0, h1 = _bounds(i, stride[0], padding[0], kernel[0], H)
    s1, e1, w0, w1 = _bounds(j, stride[1], padding[1], kernel[1], W)
    d = (e0 - s0) * (e1 - s1) if count_include_pad else (h1 - h0) * (w1 - w0)
    return h0, h1, w0, w1, d


def avg_pool2d_forward(x, out, kernel, stride, padding, count_include_pad):
    H, W = x.shape[2:]
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            h0, h1, w0, w1, d = _divisor(i, j, kernel, stride, padding, H, W, count_include_pad)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / d


def avg_pool2d_backward(grad_out, grad_x, kernel, stride, padding, count_include_pad):
    H, W = grad_x.shape[2:]
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            h0, h1, w0, w1, d = _divisor(i, j, kernel, stride, padding, H, W, count_include_pad)
            grad_x[:, :, h0:h1, w0:w1] += (grad_out[:, :, i, j] / d)[:, :, None, None]


def adaptive_avg_pool2d_forward(x, out):
    H, W = x.shape[2:]
    for i, (h0, h1) in enumerate(adaptive_bins(H, out.shape[2])):
        for j, (w0, w1) in enumerate(adaptive_bins(W, out.shape[3])):
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    H, W = grad_x.shape[2:]
    for i, (h0, h1) in enumerate(adaptive_bins(H, grad_out.shape[2])):
        for j, (w0, w1) in enumerate(adaptive_bins(W, grad_out.shape[3])):
            grad_x[:, :, h0:h1, w0:w1] += grad_out[:, :, i, j, None, None] / ((h1 - h0) * (w1 - w0))
