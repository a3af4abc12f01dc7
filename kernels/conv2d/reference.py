"""Reference convolution: the seed's loop (common-networks.md, 卷积神经网络实现), made general.

The seed convolved one HWC image, valid padding, stride 1, and its backward computed only
``dW`` and ``db``. Here, in NCHW like torch:

* the input is zero-padded (``top, bottom, left, right``) and the window at output ``(i, j)``
  starts at ``(i * sh, j * sw)`` and takes every ``dh``-th row / ``dw``-th column;
* ``groups`` splits the channels: output channel ``k`` sees only its group's input channels;
* the loop over output positions is the seed's; the batch and the output channels of the
  seed's inner loop ``for k in range(nc)`` are one ``tensordot`` per position and group;
* the backward adds ``grad_x`` ("the delta goes back through the window it came from") next
  to the seed's ``dW[:,:,:,k] += X[window] * dZ[i,j,k]`` and ``db = sum(dZ)``.

This is the readable truth every other backend is tested against.
"""
import numpy as np


def _window(xp, i, j, kh, kw, stride, dilation):
    sh, sw = stride
    dh, dw = dilation
    return np.s_[:, :, i * sh : i * sh + dh * (kh - 1) + 1 : dh, j * sw : j * sw + dw * (kw - 1) + 1 : dw]


def _pad(x, padding):
    t, b, l, r = padding
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))


def conv2d_forward(x, w, b, out, stride, padding, dilation, groups, relu=False):
    xp = _pad(x, padding)
    K, cg, kh, kw = w.shape
    kg = K // groups
    oh, ow = out.shape[2:]
    for i in range(oh):
        for j in range(ow):
            win = xp[_window(xp, i, j, kh, kw, stride, dilation)]  # (N, C, kh, kw)
            for g in range(groups):
                xs = win[:, g * cg : (g + 1) * cg]
                ws = w[g * kg : (g + 1) * kg]
                out[:, g * kg : (g + 1) * kg, i, j] = np.tensordot(xs, ws, axes=([1, 2, 3], [1, 2, 3]))
    if b is not None:
        out += b[None, :, None, None]
    if relu:
        np.maximum(out, 0, out=out)  # NaN stays NaN, as torch's ReLU


def conv2d_backward(grad_out, x, w, grad_x, grad_w, grad_b, stride, padding, dilation, groups, y=None):
    if y is not None:  # through the fused ReLU: no gradient where its output was <= 0
        grad_out = np.where(y <= 0, 0, grad_out).astype(grad_out.dtype)
    xp = _pad(x, padding)
    gxp = np.zeros_like(xp)
    K, cg, kh, kw = w.shape
    kg = K // groups
    oh, ow = grad_out.shape[2:]
    if grad_w is not None:
        grad_w[...] = 0
    for i in range(oh):
        for j in range(ow):
            sl = _window(xp, i, j, kh, kw, stride, dilation)
            win = xp[sl]
            for g in range(groups):
                dz = grad_out[:, g * kg : (g + 1) * kg, i, j]  # (N, kg)
                xs = win[:, g * cg : (g + 1) * cg]  # (N, cg, kh, kw)
                if grad_w is not None:
                    grad_w[g * kg : (g + 1) * kg] += np.tensordot(dz, xs, axes=([0], [0]))
                gsl = gxp[sl]  # a view: write through it
                gsl[:, g * cg : (g + 1) * cg] += np.tensordot(dz, w[g * kg : (g + 1) * kg], axes=([1], [0]))
    if grad_x is not None:
        t, _, l, _ = padding
        grad_x[...] = gxp[:, :, t : t + x.shape[2], l : l + x.shape[3]]
    if grad_b is not None:
        grad_b[...] = grad_out.sum(axis=(0, 2, 3))
