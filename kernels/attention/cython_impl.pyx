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


def _fwd_tile(floating[:, :, ::1] s, const floating[:, :, ::1] mask, const int64_t[::1] mask_idx,
              Py_ssize_t b0, Py_ssize_t i0, Py_ssize_t j0, bint causal, double scale,
              floating[:, :] m, floating[:, :] l, floating[:, :] alpha, int nthreads):
    cdef Py_ssize_t nb = s.shape[0], nq = s.shape[1], nt = s.shape[2]
    cdef Py_ssize_t r, b, i, j, gi, jend, mb = 0, mr = 0
    cdef bint has_mask = mask.shape[0] > 0, per_row = mask.shape[1] > 1
    cdef floating x, mx, mold, e, a, sc = <floating>scale
    cdef double tot
    for r in prange(nb * nq, nogil=True, schedule="static", num_threads=nthreads):
        b = r // nq
        i = r - b * nq
        gi = i0 + i
        jend = nt
        if causal and gi - j0 + 1 < nt:
            jend = gi - j0 + 1  # >= 1: the driver skips rows above j0
        if has_mask:
            mb = mask_idx[b0 + b]
            mr = gi if per_row else 0
        mold = m[b, i]
        mx = mold
        for j in range(jend):
            x = s[b, i, j] * sc
            if has_mask:
                x = x + mask[mb, mr, j0 + j]
            s[b, i, j] = x
            mx = x if x > mx else mx
        if mx == -INFINITY:  # nothing allowed yet: the row stays 0
            for j in range(nt):
                s[b, i, j] = 0
            alpha[b, i] = 1
            continue
        tot = 0
        for j in range(jend):
            e = _exp(s[b, i, j] - mx)
            s[b, i, j] = e
            tot = tot + e
        for j in range(jend, nt):
            s[b, i, j] = 0
        a = _exp(mold - mx)
        alpha[b, i] = a
        l[b, i] = <floating>(l[b, i] * a + tot)
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
    cdef Py_ssize_t r, b, i, j, gi, jend, mb = 0, mr = 0
    cdef bint has_mask = mask.shape[0] > 0, per_row = mask.shape[1] > 1
    cdef floating x, c, sc = <floating>scale
    for r in prange(nb * nq, nogil=True, schedule="static", num_threads=nthreads):
        b = r // nq
        i = r - b * nq
        gi = i0 + i
        jend = nt
        if causal and gi - j0 + 1 < nt:
            jend = gi - j0 + 1
        if has_mask:
            mb = mask_idx[b0 + b]
            mr = gi if per_row else 0
        c = lse[b, i]
        if c == -INFINITY:
            jend = 0
        for j in range(jend):
            x = s[b, i, j] * sc
            if has_mask:
                x = x + mask[mb, mr, j0 + j]
            s[b, i, j] = _exp(x - c)
        for j in range(jend, nt):
            s[b, i, j] = 0


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
