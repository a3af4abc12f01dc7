"""NumPy upsampling: separable, one axis at a time, with fancy indexing.

Both modes are separable: rows first (gather, or a weighted sum of two gathered rows), then
columns. The backward scatters with ``np.add.at`` (unbuffered, so repeated indices add up),
columns first, then rows.
"""
import numpy as np

_ALL = (slice(None), slice(None))


def nearest_forward(x, out, hidx, widx):
    out[...] = x[:, :, hidx][:, :, :, widx]


def nearest_backward(grad_out, grad_x, hidx, widx):
    rows = np.zeros(grad_out.shape[:3] + grad_x.shape[3:], grad_x.dtype)
    np.add.at(rows, _ALL + (slice(None), widx), grad_out)
    np.add.at(grad_x, _ALL + (hidx,), rows)


def _lerp(a, b, t):
    return a * (1 - t) + b * t


def bilinear_forward(x, out, h0, h1, lh, w0, w1, lw):
    rows = _lerp(x[:, :, h0], x[:, :, h1], lh[:, None])
    out[...] = _lerp(rows[..., w0], rows[..., w1], lw)


def bilinear_backward(grad_out, grad_x, h0, h1, lh, w0, w1, lw):
    rows = np.zeros(grad_out.shape[:3] + grad_x.shape[3:], grad_x.dtype)
    np.add.at(rows, _ALL + (slice(None), w0), grad_out * (1 - lw))
    np.add.at(rows, _ALL + (slice(None), w1), grad_out * lw)
    np.add.at(grad_x, _ALL + (h0,), rows * (1 - lh[:, None]))
    np.add.at(grad_x, _ALL + (h1,), rows * lh[:, None])
