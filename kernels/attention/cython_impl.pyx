# cython: language_level=3
# distutils: extra_compile_args = -fno-math-errno -fno-trapping-math -fno-signed-zeros -fassociative-math -freciprocal-math
"""Cython attention: the fused tiled online-softmax of :mod:`._tiled` with Cython row kernels.

The same algorithm and driver as the Numba backend (BLAS for the tile products, called from
Python; the kernels here do the work between them in one pass per tile), written for the C
compiler: fused float/double, typed memoryviews (``const`` inputs), ``nogil``, ``prange``.
The extra compile flags above are the C spelling of Numba's ``FASTMATH`` (no signed zeros,
reassociation, reciprocals: vectorised max/sum reductions) and never ``-ffinite-math-only``:
masked scores are ``-inf`` and must give exactly 0. ``float`` exponentials use ``_exp32``, a
branch-free polynomial that the compiler vectorises (rel. error < 3e-7).
"""
from cython.parallel cimport prange
from libc.math cimport exp, log, floorf, INFINITY
from libc.stdint cimport int32_t, int64_t

from fastnn._config import get_num_threads

from . import _tiled
from .numpy_impl import sdpa_weights  # noqa: F401  (weights need the full matrix anyway)

ctypedef fused floating:
    float
    double

cdef union _bits:
    float f
    int32_t i


cdef inline float _exp32(float x) noexcept nogil:
    # exp(x) for x <= 0: x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor, 2**n from the exponent bits
    cdef float xc = x if x > -<float>87.0 else -<float>87.0
    cdef float n = floorf(xc * <float>1.4426950408889634 + <float>0.5)
    cdef float r, p
    cdef _bits two_n
    if n > 0:
        n = 0
    r = xc - n * <float>0.693145751953125 - n * <float>1.4286068203094172e-06
    p = <float>1.0 + r * (<float>1.0 + r * (<float>0.5 + r * (<float>0.16666667 + r * (<float>0.041666668 + r * (<float>0.008333334 + r * <float>0.0013888889)))))
    two_n.i = (<int32_t>n + 127) << 23
    p = p * two_n.f
    return p if x >= -<float>87.0 else (x if x != x else <float>0.0)


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return _exp32(x)
    else:
        return exp(x)


# Row helpers on raw pointers, each a loop the C compiler vectorises: no float max reduction
# (GCC vectorises one only under -ffinite-math-only, which would break -inf masks), so the
# max runs 8 independent accumulators; the exponentials and the sum are separate passes.
cdef inline void _row_scale(floating* x, const floating* madd, Py_ssize_t n, floating sc) noexcept nogil:
    cdef Py_ssize_t j
    if madd == NULL:
        for j in range(n):
            x[j] = x[j] * sc
    else:
        for j in range(n):
            x[j] = x[j] * sc + madd[j]


cdef inline floating _row_max(const floating* x, Py_ssize_t n, floating m) noexcept nogil:
    cdef floating a[8]
    cdef Py_ssize_t j = 0, t
    for t in range(8):
        a[t] = m
    while j + 8 <= n:
        for t in range(8):
            a[t] = x[j + t] if x[j + t] > a[t] else a[t]
        j += 8
    while j < n:
        m = x[j] if x[j] > m else m
        j += 1
    for t in range(8):
        m = a[t] if a[t] > m else m
    return m


cdef inline void _row_exp(floating* x, Py_ssize_t n, floating c) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        x[j] = _exp(x[j] - c)


cdef inline floating _row_sum(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating t = 0
    for j in range(n):
        t = t + x[j]
    return t


cdef inline void _row_zero(floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        x[j] = 0


def _fwd_tile(floating[:, :, ::1] s, const floating[:, :, ::1] mask, const int64_t[::1] mask_idx,
              Py_ssize_t b0, Py_ssize_t i0, Py_ssize_t j0, bint causal, double scale,
              floating[:, :] m, floating[:, :] l, floating[:, :] alpha, int nthreads):
    cdef Py_ssize_t nb = s.shape[0], nq = s.shape[1], nt = s.shape[2]
    cdef Py_ssize_t r, b, i, gi, jend
    cdef bint has_mask = mask.shape[0] > 0, per_row = mask.shape[1] > 1
    cdef floating mx, mold, a, tot, sc = <floating>scale
    cdef floating* row
    cdef const floating* madd
    for r in prange(nb * nq, nogil=True, schedule="static", num_threads=nthreads):
        b = r // nq
        i = r - b * nq
        gi = i0 + i
        jend = nt
        if causal and gi - j0 + 1 < nt:
            jend = gi - j0 + 1  # >= 1: the driver skips rows above j0
        row = &s[b, i, 0]
        madd = NULL
        if has_mask:
            madd = &mask[mask_idx[b0 + b], gi if per_row else 0, j0]
        _row_scale(row, madd, jend, sc)
        mold = m[b, i]
        mx = _row_max(row, jend, mold)
        if mx == -INFINITY:  # nothing allowed yet: the row stays 0
            _row_zero(row, nt)
            alpha[b, i] = 1
            continue
        _row_exp(row, jend, mx)
        _row_zero(row + jend, nt - jend)
        tot = _row_sum(row, jend)
        a = _exp(mold - mx)
        alpha[b, i] = a
        l[b, i] = l[b, i] * a + tot
        m[b, i] = mx


def _rescale_add(floating[:, :, :] out, const floating[:, :] alpha, const floating[:, :, ::1] t, int nthreads):
    cdef Py_ssize_t nb = out.shape[0], nq = out.shape[1], ev = out.shape[2], r, b, i, e
    cdef floating a
    for r in prange(nb * nq, nogil=True, schedule="static", num_threads=nthreads):
        b = r // nq
        i = r - b * nq
        a = alpha[b, i]
        for e in range(ev):
            out[b, i, e] = out[b, i, e] * a + t[b, i, e]


def _finish(floating[:, :, :] out, const floating[:, :] m, const floating[:, :] l, floating[:, :] lse, int nthreads):
    cdef Py_ssize_t nb = out.shape[0], nq = out.shape[1], ev = out.shape[2], r, b, i, e
    cdef floating tot, inv
    for r in prange(nb * nq, nogil=True, schedule="static", num_threads=nthreads):
        b = r // nq
        i = r - b * nq
        tot = l[b, i]
        if tot > 0:
            inv = 1 / tot
            for e in range(ev):
                out[b, i, e] = out[b, i, e] * inv
            lse[b, i] = m[b, i] + log(tot)
        else:
            for e in range(ev):
                out[b, i, e] = 0
            lse[b, i] = -INFINITY


def _bwd_probs(floating[:, :, ::1] s, const floating[:, :, ::1] mask, const int64_t[::1] mask_idx,
               Py_ssize_t b0, Py_ssize_t i0, Py_ssize_t j0, bint causal, double scale,
               const floating[:, :] lse, int nthreads):
    cdef Py_ssize_t nb = s.shape[0], nq = s.shape[1], nt = s.shape[2]
    cdef Py_ssize_t r, b, i, gi, jend
    cdef bint has_mask = mask.shape[0] > 0, per_row = mask.shape[1] > 1
    cdef floating c, sc = <floating>scale
    cdef floating* row
    cdef const floating* madd
    for r in prange(nb * nq, nogil=True, schedule="static", num_threads=nthreads):
        b = r // nq
        i = r - b * nq
        gi = i0 + i
        jend = nt
        if causal and gi - j0 + 1 < nt:
            jend = gi - j0 + 1
        c = lse[b, i]
        if c == -INFINITY:
            jend = 0
        row = &s[b, i, 0]
        madd = NULL
        if has_mask:
            madd = &mask[mask_idx[b0 + b], gi if per_row else 0, j0]
        _row_scale(row, madd, jend, sc)
        _row_exp(row, jend, c)
        _row_zero(row + jend, nt - jend)


def _bwd_dscores(const floating[:, :, ::1] p, floating[:, :, ::1] dp, const floating[:, :] dsum, double scale,
                 int nthreads):
    cdef Py_ssize_t nb = p.shape[0], nq = p.shape[1], nt = p.shape[2], r, b, i, j
    cdef floating d, sc = <floating>scale
    for r in prange(nb * nq, nogil=True, schedule="static", num_threads=nthreads):
        b = r // nq
        i = r - b * nq
        d = dsum[b, i]
        for j in range(nt):
            dp[b, i, j] = p[b, i, j] * (dp[b, i, j] - d) * sc


def _rowdot(const floating[:, :, ::1] a, const floating[:, :, ::1] c, floating[:, ::1] out, int nthreads):
    cdef Py_ssize_t nb = a.shape[0], nq = a.shape[1], ev = a.shape[2], r, b, i, e
    cdef double acc
    for r in prange(nb * nq, nogil=True, schedule="static", num_threads=nthreads):
        b = r // nq
        i = r - b * nq
        acc = 0
        for e in range(ev):
            acc = acc + a[b, i, e] * c[b, i, e]
        out[b, i] = <floating>acc


class _Kernels:
    """The row kernels with their thread count bound: ``get_num_threads()`` or 1 (serial)."""

    def __init__(self, serial):
        threads = (lambda: 1) if serial else get_num_threads
        self.fwd_tile = lambda *a: _fwd_tile(*a, threads())
        self.rescale_add = lambda *a: _rescale_add(*a, threads())
        self.finish = lambda *a: _finish(*a, threads())
        self.bwd_probs = lambda *a: _bwd_probs(*a, threads())
        self.bwd_dscores = lambda *a: _bwd_dscores(*a, threads())
        self.rowdot = lambda *a: _rowdot(*a, threads())


class _Ops:
    parallel = _Kernels(False)
    serial = _Kernels(True)


def sdpa_forward(q, k, v, mask, mask_idx, causal, scale, out, lse):
    _tiled.forward(_Ops, q, k, v, mask, mask_idx, causal, scale, out, lse)


def sdpa_backward(grad_out, q, k, v, mask, mask_idx, causal, scale, out, lse, grad_q, grad_k, grad_v):
    _tiled.backward(_Ops, grad_out, q, k, v, mask, mask_idx, causal, scale, out, lse, grad_q, grad_k, grad_v)
