# cython: language_level=3
"""Cython normalisation: the Numba backend's passes, written for the C compiler.

Typed memoryviews, ``nogil``, OpenMP ``prange`` (static schedule), fused float/double. The
float64 sums run through small helpers with eight independent accumulators (the compiler
may not reorder a floating-point sum on its own, so a plain loop would wait on each add);
the elementwise sweeps are plain loops the compiler vectorises. Each thread writes only its
own channels, rows or chunk partials, so results do not depend on the thread count. Loops
below ``_SERIAL`` elements run on one thread. The helpers return their sums (a C tuple)
rather than writing through pointers: inside a ``prange`` Cython makes a variable
thread-private only when the loop body assigns it (a variable set only through ``&v`` is
shared between the threads: a race).
"""
import numpy as np
from cython.parallel cimport prange
from libc.math cimport sqrt

from fastnn._config import get_num_threads

from . import chunks

ctypedef fused floating:
    float
    double

cdef Py_ssize_t _SERIAL = 1 << 15


cdef inline int _threads(Py_ssize_t work):
    return 1 if work < _SERIAL else get_num_threads()


# ---------------------------------------------------------------------------- float64 sums
cdef inline double _sum(const floating* p, Py_ssize_t n) noexcept nogil:
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3]
        s4 += p[i + 4]; s5 += p[i + 5]; s6 += p[i + 6]; s7 += p[i + 7]
        i += 8
    while i < n:
        s0 += p[i]
        i += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


cdef inline double _sqdev(const floating* p, Py_ssize_t n, double mu) noexcept nogil:
    # sum of (p[i] - mu)^2
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, d0, d1, d2, d3
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        d0 = p[i] - mu; d1 = p[i + 1] - mu; d2 = p[i + 2] - mu; d3 = p[i + 3] - mu
        s0 += d0 * d0; s1 += d1 * d1; s2 += d2 * d2; s3 += d3 * d3
        i += 4
    while i < n:
        d0 = p[i] - mu
        s0 += d0 * d0
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef inline (double, double) _gsums(const floating* g, const floating* x, Py_ssize_t n, double mu) noexcept nogil:
    # (sum of g[i], sum of g[i] * (x[i] - mu))
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        a0 += g[i]; a1 += g[i + 1]; a2 += g[i + 2]; a3 += g[i + 3]
        b0 += g[i] * (x[i] - mu); b1 += g[i + 1] * (x[i + 1] - mu)
        b2 += g[i + 2] * (x[i + 2] - mu); b3 += g[i + 3] * (x[i + 3] - mu)
        i += 4
    while i < n:
        a0 += g[i]
        b0 += g[i] * (x[i] - mu)
        i += 1
    return (a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3)


cdef inline void _affine(const floating* x, floating* o, Py_ssize_t n, floating mu, floating s,
                         floating b) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        o[i] = (x[i] - mu) * s + b


cdef inline void _grad_affine(const floating* g, const floating* x, floating* o, Py_ssize_t n, floating mu,
                              floating a, floating b, floating k) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        o[i] = a * g[i] + b * (x[i] - mu) + k


# ------------------------------------------------------------------------------ batch norm
def batch_norm_stats(const floating[:, :, ::1] x, double[::1] mean, double[::1] var):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], M = x.shape[2], c, n
    cdef double cnt, mu, m2, rm, q, tot, delta
    cdef int nt = _threads(N * C * M)
    for c in prange(C, nogil=True, schedule="static", num_threads=nt):
        cnt = 0
        mu = 0
        m2 = 0
        for n in range(N):
            rm = _sum(&x[n, c, 0], M) / M
            q = _sqdev(&x[n, c, 0], M, rm)
            tot = cnt + M  # Chan et al.: merge (cnt, mu, m2) with the row's (M, rm, q)
            delta = rm - mu
            mu = mu + delta * (M / tot)
            m2 = m2 + q + delta * delta * (cnt * M / tot)
            cnt = tot
        mean[c] = mu
        var[c] = m2 / cnt


def batch_norm_apply(const floating[:, :, ::1] x, const floating[::1] mean, const floating[::1] scale,
                     const floating[::1] shift, floating[:, :, ::1] out):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], M = x.shape[2], t, c
    cdef int nt = _threads(N * C * M)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        c = t % C
        _affine(&x[t // C, c, 0], &out[t // C, c, 0], M, mean[c], scale[c], shift[c])


def batch_norm_backward_reduce(const floating[:, :, ::1] grad_out, const floating[:, :, ::1] x,
                               const double[::1] mean, double[::1] sum_g, double[::1] sum_gxc):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], M = x.shape[2], c, n
    cdef double sg, sgx, a, b
    cdef int nt = _threads(N * C * M)
    for c in prange(C, nogil=True, schedule="static", num_threads=nt):
        sg = 0
        sgx = 0
        for n in range(N):
            a, b = _gsums(&grad_out[n, c, 0], &x[n, c, 0], M, mean[c])
            sg = sg + a
            sgx = sgx + b
        sum_g[c] = sg
        sum_gxc[c] = sgx


def batch_norm_backward_apply(const floating[:, :, ::1] grad_out, const floating[:, :, ::1] x,
                              const floating[::1] mean, const floating[::1] a, const floating[::1] b,
                              const floating[::1] k, floating[:, :, ::1] grad_x):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], M = x.shape[2], t, c
    cdef int nt = _threads(N * C * M)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        c = t % C
        _grad_affine(&grad_out[t // C, c, 0], &x[t // C, c, 0], &grad_x[t // C, c, 0], M, mean[c], a[c], b[c],
                     k[c])


# ------------------------------------------------------------------ layer norm, group norm
def layer_norm_forward(const floating[:, ::1] x, const floating[::1] weight, const floating[::1] bias,
                       double eps, floating[:, ::1] out, double[::1] mean, double[::1] rstd):
    cdef Py_ssize_t R = x.shape[0], D = x.shape[1], r, d
    cdef double mu, rs
    cdef floating mu_x, rs_x
    cdef int nt = _threads(R * D)
    for r in prange(R, nogil=True, schedule="static", num_threads=nt):
        mu = _sum(&x[r, 0], D) / D
        rs = 1 / sqrt(_sqdev(&x[r, 0], D, mu) / D + eps)
        mean[r] = mu
        rstd[r] = rs
        mu_x = <floating>mu
        rs_x = <floating>rs
        for d in range(D):
            out[r, d] = (x[r, d] - mu_x) * rs_x * weight[d] + bias[d]


cdef inline (double, double) _ln_row_sums(const floating* g, const floating* x, const floating* w, Py_ssize_t n,
                                          double mu) noexcept nogil:
    # (sum of g * w, sum of g * w * (x - mu))
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0, v0, v1, v2, v3
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        v0 = g[i] * w[i]; v1 = g[i + 1] * w[i + 1]; v2 = g[i + 2] * w[i + 2]; v3 = g[i + 3] * w[i + 3]
        a0 += v0; a1 += v1; a2 += v2; a3 += v3
        b0 += v0 * (x[i] - mu); b1 += v1 * (x[i + 1] - mu); b2 += v2 * (x[i + 2] - mu); b3 += v3 * (x[i + 3] - mu)
        i += 4
    while i < n:
        v0 = g[i] * w[i]
        a0 += v0
        b0 += v0 * (x[i] - mu)
        i += 1
    return (a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3)


def _layer_norm_backward(const floating[:, ::1] grad_out, const floating[:, ::1] x, const floating[::1] weight,
                         const double[::1] mean, const double[::1] rstd, floating[:, ::1] grad_x,
                         double[:, ::1] pw, double[:, ::1] pb, Py_ssize_t per):
    cdef Py_ssize_t R = x.shape[0], D = x.shape[1], q, r, d
    cdef double s1, s2, mu, rs
    cdef floating mu_x, rs_x, b, k
    cdef int nt = _threads(R * D)
    for q in prange(pw.shape[0], nogil=True, schedule="static", num_threads=nt):
        for d in range(D):
            pw[q, d] = 0
            pb[q, d] = 0
        for r in range(q * per, min(R, (q + 1) * per)):
            mu = mean[r]
            rs = rstd[r]
            s1, s2 = _ln_row_sums(&grad_out[r, 0], &x[r, 0], &weight[0], D, mu)
            for d in range(D):  # this chunk's parameter-gradient partials
                pw[q, d] += grad_out[r, d] * (x[r, d] - mu) * rs
                pb[q, d] += grad_out[r, d]
            # grad_x = rs * (g * w - s1 / D - xhat * s2 * rs / D)
            mu_x = <floating>mu
            rs_x = <floating>rs
            b = <floating>(-rs * rs * rs * s2 / D)
            k = <floating>(-rs * s1 / D)
            for d in range(D):
                grad_x[r, d] = rs_x * grad_out[r, d] * weight[d] + b * (x[r, d] - mu_x) + k


def _sum_partials(const double[:, ::1] p, floating[::1] out):
    # out[j] = sum of p[:, j] in chunk order
    cdef Py_ssize_t Q = p.shape[0], J = p.shape[1], q, j
    cdef double s
    cdef int nt = _threads(Q * J)
    for j in prange(J, nogil=True, schedule="static", num_threads=nt):
        s = 0
        for q in range(Q):
            s = s + p[q, j]
        out[j] = <floating>s


def layer_norm_backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    nq, per = chunks(x.shape[0])
    pw = np.empty((nq, x.shape[1]))
    pb = np.empty((nq, x.shape[1]))
    _layer_norm_backward(grad_out, x, weight, mean, rstd, grad_x, pw, pb, per)
    _sum_partials(pw, grad_weight)
    _sum_partials(pb, grad_bias)


def group_norm_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] weight,
                       const floating[:, ::1] bias, double eps, floating[:, :, :, ::1] out, double[:, ::1] mean,
                       double[:, ::1] rstd):
    cdef Py_ssize_t N = x.shape[0], G = x.shape[1], D = x.shape[2], M = x.shape[3], t, n, g, d
    cdef double mu, rs
    cdef int nt = _threads(N * G * D * M)
    for t in prange(N * G, nogil=True, schedule="static", num_threads=nt):
        n = t // G
        g = t % G
        mu = _sum(&x[n, g, 0, 0], D * M) / (D * M)
        rs = 1 / sqrt(_sqdev(&x[n, g, 0, 0], D * M, mu) / (D * M) + eps)
        mean[n, g] = mu
        rstd[n, g] = rs
        for d in range(D):
            _affine(&x[n, g, d, 0], &out[n, g, d, 0], M, <floating>mu, <floating>(rs * weight[g, d]), bias[g, d])


def _group_norm_backward(const floating[:, :, :, ::1] grad_out, const floating[:, :, :, ::1] x,
                         const floating[:, ::1] weight, const double[:, ::1] mean, const double[:, ::1] rstd,
                         floating[:, :, :, ::1] grad_x, double[:, :, ::1] pw, double[:, :, ::1] pb,
                         Py_ssize_t per):
    cdef Py_ssize_t N = x.shape[0], G = x.shape[1], D = x.shape[2], M = x.shape[3], L = D * M, q, n, g, d
    cdef double mu, rs, s1, s2, sg, sgx
    cdef floating b, k
    cdef int nt = _threads(N * G * L)
    for q in prange(pw.shape[0], nogil=True, schedule="static", num_threads=nt):
        for g in range(G):
            for d in range(D):
                pw[q, g, d] = 0
                pb[q, g, d] = 0
        for n in range(q * per, min(N, (q + 1) * per)):
            for g in range(G):
                mu = mean[n, g]
                rs = rstd[n, g]
                s1 = 0
                s2 = 0
                for d in range(D):
                    sg, sgx = _gsums(&grad_out[n, g, d, 0], &x[n, g, d, 0], M, mu)
                    pb[q, g, d] += sg
                    pw[q, g, d] += sgx * rs
                    s1 = s1 + sg * weight[g, d]
                    s2 = s2 + sgx * rs * weight[g, d]
                # grad_x = rs * (g * w - s1 / L - xhat * s2 / L) = a * g + b * (x - mu) + k
                b = <floating>(-rs * rs * s2 / L)
                k = <floating>(-rs * s1 / L)
                for d in range(D):
                    _grad_affine(&grad_out[n, g, d, 0], &x[n, g, d, 0], &grad_x[n, g, d, 0], M, <floating>mu,
                                 <floating>(rs * weight[g, d]), b, k)


def group_norm_backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    nq, per = chunks(x.shape[0])
    G, D = weight.shape
    pw = np.empty((nq, G, D))
    pb = np.empty((nq, G, D))
    _group_norm_backward(grad_out, x, weight, mean, rstd, grad_x, pw, pb, per)
    _sum_partials(pw.reshape(nq, G * D), grad_weight.reshape(G * D))
    _sum_partials(pb.reshape(nq, G * D), grad_bias.reshape(G * D))
