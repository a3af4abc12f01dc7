"""Numba upsampling: ``prange`` over the (image, channel) planes, one pass over the output.

A plane belongs to one thread: the backward's scatter-adds need no atomics.
"""
from numba import njit, prange

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)


@njit(**_jit)
def nearest_forward(x, out, hidx, widx):
    N, C = x.shape[:2]
    OH, OW = out.shape[2], out.shape[3]
    for t in prange(N * C):
        xc, o = x[t // C, t % C], out[t // C, t % C]
        for i in range(OH):
            xr = xc[hidx[i]]
            for j in range(OW):
                o[i, j] = xr[widx[j]]


@njit(**_jit)
def nearest_backward(grad_out, grad_x, hidx, widx):
    N, C = grad_x.shape[:2]
    OH, OW = grad_out.shape[2], grad_out.shape[3]
    for t in prange(N * C):
        g, gx = grad_out[t // C, t % C], grad_x[t // C, t % C]
        for i in range(OH):
            gr = gx[hidx[i]]
            for j in range(OW):
                gr[widx[j]] += g[i, j]


@njit(**_jit)
def bilinear_forward(x, out, h0, h1, lh, w0, w1, lw):
    N, C = x.shape[:2]
    OH, OW = out.shape[2], out.shape[3]
    for t in prange(N * C):
        xc, o = x[t // C, t % C], out[t // C, t % C]
        for i in range(OH):
            a, b = xc[h0[i]], xc[h1[i]]
            th = lh[i]
            for j in range(OW):
                tw = lw[j]
                top = (1 - tw) * a[w0[j]] + tw * a[w1[j]]
                bottom = (1 - tw) * b[w0[j]] + tw * b[w1[j]]
                o[i, j] = (1 - th) * top + th * bottom


@njit(**_jit)
def bilinear_backward(grad_out, grad_x, h0, h1, lh, w0, w1, lw):
    N, C = grad_x.shape[:2]
    OH, OW = grad_out.shape[2], grad_out.shape[3]
    for t in prange(N * C):
        g, gx = grad_out[t // C, t % C], grad_x[t // C, t % C]
        for i in range(OH):
            a, b = gx[h0[i]], gx[h1[i]]
            th = lh[i]
            for j in range(OW):
                tw = lw[j]
                v = g[i, j]
                a[w0[j]] += (1 - th) * (1 - tw) * v
                a[w1[j]] += (1 - th) * tw * v
                b[w0[j]] += th * (1 - tw) * v
                b[w1[j]] += th * tw * v
