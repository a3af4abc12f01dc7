# cython: language_level=3
"""Cython convolution: the Numba backend's two strategies written for the C compiler.

* **direct** (:func:`~fastnn.kernels.conv2d.choose_strategy`: depthwise-like convolutions):
  OpenMP ``prange`` over ``(image, output channel)`` planes for the forward, ``(k, c)`` weight
  slices for ``grad_w`` and ``(image, input channel)`` planes for ``grad_x``; every thread
  owns what it writes. The valid output columns of a tap are computed once, so the inner loop
  has no bounds test. Loops below ``_SERIAL`` multiply-adds run on one thread.
* **im2col**: serial ``nogil`` im2col / col2im / layout loops run by the shared driver
  (``_gemm.py``) on one batch slice per thread, beside single-threaded BLAS GEMMs.

Inputs are ``const`` typed memoryviews (read-only arrays work); accumulations of ``grad_w``
and ``grad_b`` are in double.
"""
from cython.parallel cimport prange

from fastnn._config import get_num_threads

from . import _gemm

ctypedef fused floating:
    float
    double

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
# Serial, GIL-free loops: the driver (_gemm.py) runs them on one batch slice per thread.
def _im2col(const floating[:, :, :, ::1] x, Py_ssize_t n0, Py_ssize_t n1, floating[:, ::1] cols,
            Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t OH, Py_ssize_t OW):
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3], P = OH * OW
    cdef Py_ssize_t r, c, i, j, n, oh, ow, ih, lo, hi, off, base
    with nogil:
        for r in range(C * kh * kw):
            c = r // (kh * kw)
            i = (r // kw) % kh
            j = r % kw
            off = j * dw - pl
            lo = _lo(W, OW, sw, off)
            hi = _hi(W, OW, sw, off, lo)
            for n in range(n1 - n0):
                for oh in range(OH):
                    ih = oh * sh - pt + i * dh
                    base = n * P + oh * OW
                    if ih < 0 or ih >= H:
                        for ow in range(OW):
                            cols[r, base + ow] = 0
                        continue
                    for ow in range(lo):
                        cols[r, base + ow] = 0
                    if sw == 1:  # unit stride: a contiguous copy the compiler vectorises
                        for ow in range(lo, hi):
                            cols[r, base + ow] = x[n0 + n, c, ih, ow + off]
                    else:
                        for ow in range(lo, hi):
                            cols[r, base + ow] = x[n0 + n, c, ih, ow * sw + off]
                    for ow in range(hi, OW):
                        cols[r, base + ow] = 0


def _col2im(const floating[:, ::1] cols, floating[:, :, :, ::1] grad_x, Py_ssize_t n0, Py_ssize_t n1,
            Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t OH, Py_ssize_t OW):
    cdef Py_ssize_t C = grad_x.shape[1], H = grad_x.shape[2], W = grad_x.shape[3], P = OH * OW
    cdef Py_ssize_t r, c, i, j, n, oh, ow, ih, iw, lo, hi, off, base
    with nogil:
        for n in range(n1 - n0):
            for c in range(C):
                for ih in range(H):
                    for iw in range(W):
                        grad_x[n0 + n, c, ih, iw] = 0
                for i in range(kh):
                    for j in range(kw):
                        r = (c * kh + i) * kw + j
                        off = j * dw - pl
                        lo = _lo(W, OW, sw, off)
                        hi = _hi(W, OW, sw, off, lo)
                        for oh in range(OH):
                            ih = oh * sh - pt + i * dh
                            if ih < 0 or ih >= H:
                                continue
                            base = n * P + oh * OW
                            if sw == 1:
                                for ow in range(lo, hi):
                                    grad_x[n0 + n, c, ih, ow + off] += cols[r, base + ow]
                            else:
                                for ow in range(lo, hi):
                                    grad_x[n0 + n, c, ih, ow * sw + off] += cols[r, base + ow]


def _gemm_to_nchw(const floating[:, ::1] tmp, const floating[::1] b, floating[:, :, :, ::1] out,
                  Py_ssize_t n0, Py_ssize_t n1, bint has_bias):
    cdef Py_ssize_t K = out.shape[1], OW = out.shape[3], P = out.shape[2] * out.shape[3]
    cdef Py_ssize_t n, k, oh, ow
    cdef floating bv
    with nogil:
        for n in range(n1 - n0):
            for k in range(K):
                bv = b[k] if has_bias else 0
                for oh in range(out.shape[2]):
                    for ow in range(OW):
                        out[n0 + n, k, oh, ow] = tmp[k, n * P + oh * OW + ow] + bv


def _nchw_to_gemm(const floating[:, :, :, ::1] grad_out, Py_ssize_t n0, Py_ssize_t n1, floating[:, ::1] g,
                  floating[::1] grad_b):
    cdef Py_ssize_t K = grad_out.shape[1], OW = grad_out.shape[3], P = grad_out.shape[2] * grad_out.shape[3]
    cdef Py_ssize_t n, k, p, oh, ow
    cdef double acc
    cdef floating v
    with nogil:
        for k in range(K):
            acc = 0
            for n in range(n1 - n0):
                for oh in range(grad_out.shape[2]):
                    for ow in range(OW):
                        v = grad_out[n0 + n, k, oh, ow]
                        g[k, n * P + oh * OW + ow] = v
                        acc = acc + v
            grad_b[k] += <floating>acc


class _Ops:
    im2col = staticmethod(_im2col)
    col2im = staticmethod(_col2im)
    gemm_to_nchw = staticmethod(_gemm_to_nchw)
    nchw_to_gemm = staticmethod(_nchw_to_gemm)
    direct_forward = staticmethod(_direct_forward)
    direct_grad_w = staticmethod(_direct_grad_w)
    direct_grad_x = staticmethod(_direct_grad_x)
    bias_grad = staticmethod(_bias_grad)


conv2d_forward, conv2d_backward = _gemm.entry_points(_Ops)
