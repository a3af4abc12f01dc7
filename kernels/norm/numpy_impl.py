"""Vectorised NumPy normalisation: whole-array reductions and broadcasts, results in ``out``.

What changes from the reference: the elementwise passes run in the input dtype and write
into the caller's arrays (``out=``, in-place updates) instead of building float64 copies;
the reductions still accumulate in float64 (``dtype=np.float64``: NumPy converts a float32
input in buffered blocks). The variance is ``np.var`` (deviations from the mean). Each op
still takes several full passes over the data (NumPy evaluates one operation at a time):
the compiled backends fuse them.
"""
import numpy as np


def batch_norm_stats(x, mean, var):
    np.mean(x, axis=(0, 2), dtype=np.float64, out=mean)
    np.var(x, axis=(0, 2), dtype=np.float64, out=var)


def batch_norm_apply(x, mean, scale, shift, out):
    np.subtract(x, mean[:, None], out=out)
    out *= scale[:, None]
    out += shift[:, None]


def batch_norm_backward_reduce(grad_out, x, mean, sum_g, sum_gxc):
    np.sum(grad_out, axis=(0, 2), dtype=np.float64, out=sum_g)
    xc = x - mean.astype(x.dtype)[:, None]
    np.einsum("ncm,ncm->c", grad_out, xc, dtype=np.float64, out=sum_gxc)


def batch_norm_backward_apply(grad_out, x, mean, a, b, k, grad_x):
    np.subtract(x, mean[:, None], out=grad_x)
    grad_x *= b[:, None]
    grad_x += k[:, None]
    grad_x += a[:, None] * grad_out


def group_norm_forward(x, weight, bias, eps, out, mean, rstd):
    np.mean(x, axis=(2, 3), dtype=np.float64, out=mean)
    var = np.var(x, axis=(2, 3), dtype=np.float64)
    np.sqrt(var + eps, out=rstd)
    np.reciprocal(rstd, out=rstd)
    dt = x.dtype
    np.subtract(x, mean.astype(dt)[:, :, None, None], out=out)
    out *= (rstd.astype(dt)[:, :, None] * weight)[:, :, :, None]
    out += bias[None, :, :, None]


def group_norm_backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    dt = x.dtype
    L = x.shape[2] * x.shape[3]
    r = rstd.astype(dt)[:, :, None, None]
    xhat = x - mean.astype(dt)[:, :, None, None]
    xhat *= r
    gw = grad_out * weight[None, :, :, None]
    s1 = np.sum(gw, axis=(2, 3), dtype=np.float64) / L
    s2 = np.einsum("ngdm,ngdm->ng", gw, xhat, dtype=np.float64) / L
    np.multiply(xhat, s2.astype(dt)[:, :, None, None], out=grad_x)
    np.subtract(gw, grad_x, out=grad_x)
    grad_x -= s1.astype(dt)[:, :, None, None]
    grad_x *= r
    grad_weight[...] = np.einsum("ngdm,ngdm->gd", grad_out, xhat, dtype=np.float64)
    grad_bias[...] = np.sum(grad_out, axis=(0, 3), dtype=np.float64)


def layer_norm_forward(x, weight, bias, eps, out, mean, rstd):
    # a layer norm is a group norm with one group of D channels of one position each
    group_norm_forward(x[:, None, :, None], weight[None], bias[None], eps, out[:, None, :, None],
                       mean[:, None], rstd[:, None])


def layer_norm_backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    group_norm_backward(grad_out[:, None, :, None], x[:, None, :, None], weight[None], mean[:, None],
                        rstd[:, None], grad_x[:, None, :, None], grad_weight[None], grad_bias[None])
