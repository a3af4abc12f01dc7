# cython: language_level=3
"""Cython convolution: the Numba backend's two strategies written for the C compiler.

* **direct** (:func:`~fastnn.kernels.conv2d.choose_strategy`: depthwise-like convolutions):
  OpenMP ``prange`` over ``(image, output channel)`` planes for the forward, ``(k, c)`` weight
  slices for ``grad_w`` and ``(image, input channel)`` planes for ``grad_x``; every thread
  owns what it writes. The valid output columns of a tap are computed once, so the inner loop
  has no bounds test. Loops below ``_SERIAL`` multiply-adds run on one thread.
* **im2col**: one ``prange`` over ``nt`` parts of the batch, each thread unrolling its images
  and calling the BLAS GEMM itself, single-threaded (``kernels/_blas.pxi``; the same algorithm
  as the Numba backend, see ``_gemm.py``).

Inputs are ``const`` typed memoryviews (read-only arrays work); accumulations of ``grad_w``
and ``grad_b`` are in double.
"""
import numpy as np
from cython.parallel cimport prange

from fastnn._config import get_num_threads

from . import _gemm

ctypedef fused floating:
    float
    double

include "_blas.pxi"

_blas_init()

cdef Py_ssize_t _SERIAL = 1 << 15


cdef inline int _threads(Py_ssize_t work):
    return 1 if work < _SERIAL else get_num_threads()


# Output positions o in [_lo, _hi) satisfy 0 <= o * s + off < size (all divisions non-negative).
# Two functions returning values, not one writing through pointers: inside a prange, Cython
# makes a variable thread-private only when the loop body assigns it directly.
cdef inline Py_ssize_t _lo(Py_ssize_t size, Py_ssize_t out_size, Py_ssize_t s, Py_ssize_t off) noexcept nogil:
    if off >= 0 or size - 1 - off < 0:
        return 0
    return min(out_size, (-off + s - 1) // s)


cdef inline Py_ssize_t _hi(Py_ssize_t size, Py_ssize_t out_size, Py_ssize_t s, Py_ssize_t off,
                           Py_ssize_t lo) noexcept nogil:
    cdef Py_ssize_t top = size - 1 - off
    if top < 0:
        return 0
    return max(lo, min(out_size, top // s + 1))


# ---------------------------------------------------------------------------- direct strategy
def _direct_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] b,
                    floating[:, :, :, ::1] out, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                    Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint has_bias):
    cdef Py_ssize_t N = x.shape[0], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = w.shape[0], cg = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3], kg = K // groups
    cdef Py_ssize_t t, n, k, c0, c, i, j, oh, ow, ih, lo, hi, off
    cdef floating wv, bv
    cdef int nt = _threads(N * K * OH * OW * cg * kh * kw)
    for t in prange(N * K, nogil=True, schedule="static", num_threads=nt):
        n = t // K
        k = t % K
        c0 = (k // kg) * cg
        bv = b[k] if has_bias else 0
        for oh in range(OH):
            for ow in range(OW):
                out[n, k, oh, ow] = bv
        for c in range(cg):
            for i in range(kh):
                for j in range(kw):
                    wv = w[k, c, i, j]
                    off = j * dw - pl
                    lo = _lo(W, OW, sw, off)
                    hi = _hi(W, OW, sw, off, lo)
                    for oh in range(OH):
                        ih = oh * sh - pt + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        for ow in range(lo, hi):
                            out[n, k, oh, ow] += wv * x[n, c0 + c, ih, ow * sw + off]


def _direct_grad_w(const floating[:, :, :, ::1] grad_out, const floating[:, :, :, ::1] x,
                   floating[:, :, :, ::1] grad_w, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                   Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups):
    cdef Py_ssize_t N = x.shape[0], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = grad_w.shape[0], cg = grad_w.shape[1], kh = grad_w.shape[2], kw = grad_w.shape[3]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], kg = K // groups
    cdef Py_ssize_t t, n, k, c, i, j, oh, ow, ih, lo, hi, off
    cdef double acc
    cdef int nt = _threads(N * K * OH * OW * cg * kh * kw)
    for t in prange(K * cg, nogil=True, schedule="static", num_threads=nt):
        k = t // cg
        c = (k // kg) * cg + t % cg
        for i in range(kh):
            for j in range(kw):
                off = j * dw - pl
                lo = _lo(W, OW, sw, off)
                hi = _hi(W, OW, sw, off, lo)
                acc = 0
                for n in range(N):
                    for oh in range(OH):
                        ih = oh * sh - pt + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        for ow in range(lo, hi):
                            acc = acc + grad_out[n, k, oh, ow] * x[n, c, ih, ow * sw + off]
                grad_w[k, t % cg, i, j] = <floating>acc


def _direct_grad_x(const floating[:, :, :, ::1] grad_out, const floating[:, :, :, ::1] w,
                   floating[:, :, :, ::1] grad_x, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                   Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups):
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2], W = grad_x.shape[3]
    cdef Py_ssize_t K = w.shape[0], cg = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], kg = K // groups
    cdef Py_ssize_t t, n, c, g, k, i, j, oh, ow, ih, iw, lo, hi, off
    cdef floating wv
    cdef int nt = _threads(N * K * OH * OW * cg * kh * kw)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        g = c // cg
        for ih in range(H):
            for iw in range(W):
                grad_x[n, c, ih, iw] = 0
        for k in range(g * kg, (g + 1) * kg):
            for i in range(kh):
                for j in range(kw):
                    wv = w[k, c - g * cg, i, j]
                    off = j * dw - pl
                    lo = _lo(W, OW, sw, off)
                    hi = _hi(W, OW, sw, off, lo)
                    for oh in range(OH):
                        ih = oh * sh - pt + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        for ow in range(lo, hi):
                            grad_x[n, c, ih, ow * sw + off] += wv * grad_out[n, k, oh, ow]


def _bias_grad(const floating[:, :, ::1] grad_out, floating[::1] grad_b):
    # grad_out viewed as (N, K, P)
    cdef Py_ssize_t N = grad_out.shape[0], K = grad_out.shape[1], P = grad_out.shape[2], n, k, p
    cdef double acc
    cdef int nt = _threads(N * K * P)
    for k in prange(K, nogil=True, schedule="static", num_threads=nt):
        acc = 0
        for n in range(N):
            for p in range(P):
                acc = acc + grad_out[n, k, p]
        grad_b[k] = <floating>acc


# ---------------------------------------------------------------------------- im2col strategy
# One parallel region per call: the batch in nt parts, part t on one thread with its own scratch
# (row t of the caller's buffers) and single-threaded BLAS GEMMs (see _gemm.py). Raw pointers
# inside the region: slicing a memoryview there costs atomic reference counts.
cdef void _im2col(const floating *xn, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, floating *cols,
                  Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """cols[(c, i, j), p] = padded image xn (C, H, W) at tap (i, j) of output p."""
    cdef Py_ssize_t P = OH * OW, r, c, i, j, oh, ow, ih, lo, hi, off
    cdef floating *row
    cdef const floating *src
    for r in range(C * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        off = j * dw - pl
        lo = _lo(W, OW, sw, off)
        hi = _hi(W, OW, sw, off, lo)
        for oh in range(OH):
            ih = oh * sh - pt + i * dh
            row = cols + r * P + oh * OW
            if ih < 0 or ih >= H:
                for ow in range(OW):
                    row[ow] = 0
                continue
            src = xn + (c * H + ih) * W
            for ow in range(lo):
                row[ow] = 0
            if sw == 1:  # unit stride: a contiguous copy the compiler vectorises
                for ow in range(lo, hi):
                    row[ow] = src[ow + off]
            else:
                for ow in range(lo, hi):
                    row[ow] = src[ow * sw + off]
            for ow in range(hi, OW):
                row[ow] = 0


cdef void _col2im(const floating *cols, floating *gxn, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                  Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """gxn (C, H, W) = the sum of the cols entries that came from each input pixel."""
    cdef Py_ssize_t P = OH * OW, c, i, j, oh, ow, ih, lo, hi, off, q
    cdef const floating *row
    cdef floating *dst
    for q in range(C * H * W):
        gxn[q] = 0
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                off = j * dw - pl
                lo = _lo(W, OW, sw, off)
                hi = _hi(W, OW, sw, off, lo)
                for oh in range(OH):
                    ih = oh * sh - pt + i * dh
                    if ih < 0 or ih >= H:
                        continue
                    row = cols + ((c * kh + i) * kw + j) * P + oh * OW
                    dst = gxn + (c * H + ih) * W
                    if sw == 1:
                        for ow in range(lo, hi):
                            dst[ow + off] += row[ow]
                    else:
                        for ow in range(lo, hi):
                            dst[ow * sw + off] += row[ow]


def _gemm_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] b,
                  floating[:, :, :, ::1] out, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint has_bias, bint relu, int nt):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = w.shape[0], cg = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3], P = OH * OW, kg = K // groups, ckk = cg * kh * kw
    cdef floating[:, ::1] scratch = np.empty((nt, C * kh * kw * P), dtype=np.float32 if floating is float else np.float64)
    cdef Py_ssize_t t, n, q, k, p
    cdef floating *cols
    cdef floating *o
    cdef floating bv, v
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        cols = &scratch[t, 0]
        for n in range(N * t // nt, N * (t + 1) // nt):
            _im2col(&x[n, 0, 0, 0], C, H, W, cols, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW)
            o = &out[n, 0, 0, 0]
            for q in range(groups):  # out[n] rows of group q = w rows of q @ its input rows of cols
                _blas_gemm(NO_TRANS, NO_TRANS, kg, P, ckk, &w[q * kg, 0, 0, 0], ckk, cols + q * ckk * P, P, 0,
                      o + q * kg * P, P)
            for k in range(K):  # bias (and ReLU) while this image's output is in cache
                bv = b[k] if has_bias else 0
                for p in range(P):
                    v = o[k * P + p] + bv
                    o[k * P + p] = 0 if relu and v < 0 else v


def _gemm_backward(const floating[:, :, :, ::1] grad_out, const floating[:, :, :, ::1] x,
                   const floating[:, :, :, ::1] w, const floating[:, :, :, ::1] y, floating[:, :, :, ::1] grad_x,
                   floating[:, :, ::1] gw_part, double[:, ::1] gb_part, Py_ssize_t sh, Py_ssize_t sw,
                   Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint relu,
                   bint want_x, bint want_w, int nt):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = w.shape[0], cg = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], P = OH * OW, kg = K // groups
    cdef Py_ssize_t ckk = cg * kh * kw
    dt = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] scratch = np.empty((nt, C * kh * kw * P), dtype=dt)
    cdef floating[:, ::1] masked = np.empty((nt, K * P if relu else 1), dtype=dt)
    cdef Py_ssize_t t, n, q, k, p
    cdef floating *cols
    cdef floating *m
    cdef const floating *g
    cdef const floating *yn
    cdef floating *gw
    cdef double acc
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        cols = &scratch[t, 0]
        if want_w:
            gw = &gw_part[t, 0, 0]
            for p in range(K * ckk):
                gw[p] = 0
        for k in range(K):
            gb_part[t, k] = 0
        for n in range(N * t // nt, N * (t + 1) // nt):
            g = &grad_out[n, 0, 0, 0]
            if relu:  # gradient through the fused ReLU: none where its output was <= 0
                m = &masked[t, 0]
                yn = &y[n, 0, 0, 0]
                for p in range(K * P):
                    m[p] = 0 if yn[p] <= 0 else g[p]
                g = m
            for k in range(K):
                acc = 0
                for p in range(P):
                    acc = acc + g[k * P + p]
                gb_part[t, k] += acc
            if want_w:
                _im2col(&x[n, 0, 0, 0], C, H, W, cols, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW)
                for q in range(groups):  # gw rows of q += g rows of q @ cols rows of q, transposed
                    _blas_gemm(NO_TRANS, TRANS, kg, ckk, P, g + q * kg * P, P, cols + q * ckk * P, P, 1,
                               gw + q * kg * ckk, ckk)
            if want_x:
                for q in range(groups):  # this group's cols are used up: reuse them for w.T @ g
                    _blas_gemm(TRANS, NO_TRANS, ckk, P, kg, &w[q * kg, 0, 0, 0], ckk, g + q * kg * P, P, 0,
                          cols + q * ckk * P, P)
                _col2im(cols, &grad_x[n, 0, 0, 0], C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW)


class _Ops:
    direct_forward = staticmethod(_direct_forward)
    direct_grad_w = staticmethod(_direct_grad_w)
    direct_grad_x = staticmethod(_direct_grad_x)
    bias_grad = staticmethod(_bias_grad)

    @staticmethod
    def gemm_forward(blas, x, w, b, out, sh, sw, pt, pl, dh, dw, groups, has_bias, relu, nt):
        _gemm_forward(x, w, b, out, sh, sw, pt, pl, dh, dw, groups, has_bias, relu, nt)

    @staticmethod
    def gemm_backward(blas, grad_out, x, w, y, grad_x, gw_part, gb_part, sh, sw, pt, pl, dh, dw, groups, relu,
                      want_x, want_w, nt):
        _gemm_backward(grad_out, x, w, y, grad_x, gw_part, gb_part, sh, sw, pt, pl, dh, dw, groups, relu, want_x,
                       want_w, nt)


conv2d_forward, conv2d_backward = _gemm.entry_points(_Ops)
