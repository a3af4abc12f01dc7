"""Reference normalisation kernels: the textbook formulas in float64, one NumPy expression each.

Batch norm (Ioffe & Szegedy 2015) with ``xhat = (x - mean) / sqrt(var + eps)``: the output is
``weight * xhat + bias``; its input gradient, with the mean and variance depending on the
batch, is ``rstd * weight * (g - mean(g) - xhat * mean(g * xhat))`` (the functional layer
folds this into the ``a, b, k`` coefficients of :func:`batch_norm_backward_apply`). Group and
layer norm are the same formula per row instead of per channel.

This is the readable truth every other backend is tested against. It allocates freely.
"""
import numpy as np


def batch_norm_stats(x, mean, var):
    x64 = x.astype(np.float64)
    mean[...] = x64.mean(axis=(0, 2))
    var[...] = ((x64 - mean[None, :, None]) ** 2).mean(axis=(0, 2))


def batch_norm_apply(x, mean, scale, shift, out):
    out[...] = (x - mean[None, :, None]) * scale[None, :, None] + shift[None, :, None]


def batch_norm_backward_reduce(grad_out, x, mean, sum_g, sum_gxc):
    g64 = grad_out.astype(np.float64)
    sum_g[...] = g64.sum(axis=(0, 2))
    sum_gxc[...] = (g64 * (x.astype(np.float64) - mean[None, :, None])).sum(axis=(0, 2))


def batch_norm_backward_apply(grad_out, x, mean, a, b, k, grad_x):
    c = (slice(None), None)
    grad_x[...] = a[c] * grad_out + b[c] * (x - mean[c]) + k[c]


def group_norm_forward(x, weight, bias, eps, out, mean, rstd):
    x64 = x.astype(np.float64)
    mean[...] = x64.mean(axis=(2, 3))
    var = ((x64 - mean[:, :, None, None]) ** 2).mean(axis=(2, 3))
    rstd[...] = 1 / np.sqrt(var + eps)
    xhat = (x64 - mean[:, :, None, None]) * rstd[:, :, None, None]
    out[...] = xhat * weight[None, :, :, None] + bias[None, :, :, None]


def group_norm_backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    g = grad_out.astype(np.float64)
    r = rstd[:, :, None, None]
    xhat = (x.astype(np.float64) - mean[:, :, None, None]) * r
    gw = g * weight[None, :, :, None]
    L = x.shape[2] * x.shape[3]
    s1 = gw.sum(axis=(2, 3), keepdims=True)
    s2 = (gw * xhat).sum(axis=(2, 3), keepdims=True)
    grad_x[...] = r * (gw - s1 / L - xhat * s2 / L)
    grad_weight[...] = (g * xhat).sum(axis=(0, 3))
    grad_bias[...] = g.sum(axis=(0, 3))


def layer_norm_forward(x, weight, bias, eps, out, mean, rstd):
    # a layer norm is a group norm with one group of D channels of one position each
    group_norm_forward(x[:, None, :, None], weight[None], bias[None], eps, out[:, None, :, None],
                       mean[:, None], rstd[:, None])


def layer_norm_backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    group_norm_backward(grad_out[:, None, :, None], x[:, None, :, None], weight[None], mean[:, None],
                        rstd[:, None], grad_x[:, None, :, None], grad_weight[None], grad_bias[None])
