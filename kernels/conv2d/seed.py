"""The seed's own convolution, as written in ``shared/seed/common-networks.md`` (卷积神经网络实现):
the first rung of the ladder that ``fastnn bench`` times, not a backend.

``convolve`` and the ``dW`` loop of ``backward`` are the seed's code, unchanged: one image in
HWC layout, valid padding, stride 1, weights ``W (kh, kw, c, nc)``, three Python loops over the
output positions and channels with a NumPy window product inside. The wrappers add only what
the benchmark's shapes need and the seed does not do: a loop over the batch (the fourth loop),
zero padding, the NCHW <-> HWC layout change, and the input gradient, written in the seed's
own style (each output position sends ``dZ[i, j, k] * W[:, :, :, k]`` back to its window).
Same signature as the other backends' kernels; ``stride``, ``dilation`` and ``groups`` must be
1 (the seed has none of them).
"""
import numpy as np


def convolve(X, W, b):  # the seed's function
    h, w, c = X.shape
    kh, kw, kc, nc = W.shape
    Y = np.zeros((h - kh + 1, w - kw + 1, nc))
    for i in range(h - kh + 1):
        for j in range(w - kw + 1):
            # 对每个位置进行卷积操作
            for k in range(nc):
                Y[i, j, k] = np.sum(X[i:i + kh, j:j + kw, :] * W[:, :, :, k]) + b[k]
    return Y


def _seed_layout(x, w, padding):
    t, bo, l, r = padding
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r))).transpose(0, 2, 3, 1)  # (N, H, W, C)
    return xp, w.transpose(2, 3, 1, 0)  # W (kh, kw, c, nc)


def _check(stride, dilation, groups):
    if tuple(stride) != (1, 1) or tuple(dilation) != (1, 1) or groups != 1:
        raise ValueError("the seed's convolution has stride 1, dilation 1 and one group only")


def conv2d_forward(x, w, b, out, stride, padding, dilation, groups):
    _check(stride, dilation, groups)
    xp, W = _seed_layout(x, w, padding)
    bb = b if b is not None else np.zeros(w.shape[0], x.dtype)
    for n in range(x.shape[0]):
        out[n] = convolve(xp[n], W, bb).transpose(2, 0, 1)


def conv2d_backward(grad_out, x, w, grad_x, grad_w, grad_b, stride, padding, dilation, groups):
    _check(stride, dilation, groups)
    xp, W = _seed_layout(x, w, padding)
    kh, kw, kc, nc = W.shape
    dW = np.zeros(W.shape)
    dXp = np.zeros(xp.shape)
    for n in range(x.shape[0]):
        X, dZ, dX = xp[n], grad_out[n].transpose(1, 2, 0), dXp[n]
        h, wd, c = X.shape
        for i in range(h - kh + 1):  # the seed's dW loop, with the input gradient beside it
            for j in range(wd - kw + 1):
                for k in range(nc):
                    dW[:, :, :, k] += X[i:i + kh, j:j + kw, :] * dZ[i, j, k]
                    dX[i:i + kh, j:j + kw, :] += W[:, :, :, k] * dZ[i, j, k]
    grad_w[...] = dW.transpose(3, 2, 0, 1)
    if grad_b is not None:
        grad_b[...] = grad_out.sum(axis=(0, 2, 3))  # the seed's db = np.sum(dZ, axis=(0, 1)), per image
    if grad_x is not None:
        t, _, l, _ = padding
        grad_x[...] = dXp[:, t:t + x.shape[2], l:l + x.shape[3]].transpose(0, 3, 1, 2)
