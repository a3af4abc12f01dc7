# cython: language_level=3
"""Cython upsampling: OpenMP ``prange`` over the (image, channel) planes, one pass over the
output (the Numba backend's loops). A plane belongs to one thread: the backward's
scatter-adds need no atomics. Loops below ``_SERIAL`` output elements run on one thread.
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t

from fastnn._config import get_num_threads

ctypedef fused floating:
    float
    double

cdef Py_ssize_t _SERIAL = 1 << 14


cdef inline int _threads(Py_ssize_t work):
    return 1 if work < _SERIAL else get_num_threads()


def nearest_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, const int64_t[::1] hidx,
                    const int64_t[::1] widx):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], OH = out.shape[2], OW = out.shape[3], t, n, c, i, j
    cdef int nt = _threads(N * C * OH * OW)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for i in range(OH):
            for j in range(OW):
                out[n, c, i, j] = x[n, c, hidx[i], widx[j]]


def nearest_backward(const floating[:, :, :, ::1] grad_out, floating[:, :, :, ::1] grad_x, const int64_t[::1] hidx,
                     const int64_t[::1] widx):
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], OH = grad_out.shape[2], OW = grad_out.shape[3]
    cdef Py_ssize_t t, n, c, i, j
    cdef int nt = _threads(N * C * OH * OW)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for i in range(OH):
            for j in range(OW):
                grad_x[n, c, hidx[i], widx[j]] += grad_out[n, c, i, j]


def bilinear_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, const int64_t[::1] h0,
                     const int64_t[::1] h1, const floating[::1] lh, const int64_t[::1] w0, const int64_t[::1] w1,
                     const floating[::1] lw):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], OH = out.shape[2], OW = out.shape[3], t, n, c, i, j
    cdef floating th, tw, top, bottom
    cdef int nt = _threads(N * C * OH * OW)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for i in range(OH):
            th = lh[i]
            for j in range(OW):
                tw = lw[j]
                top = (1 - tw) * x[n, c, h0[i], w0[j]] + tw * x[n, c, h0[i], w1[j]]
                bottom = (1 - tw) * x[n, c, h1[i], w0[j]] + tw * x[n, c, h1[i], w1[j]]
                out[n, c, i, j] = (1 - th) * top + th * bottom


def bilinear_backward(const floating[:, :, :, ::1] grad_out, floating[:, :, :, ::1] grad_x, const int64_t[::1] h0,
                      const int64_t[::1] h1, const floating[::1] lh, const int64_t[::1] w0, const int64_t[::1] w1,
                      const floating[::1] lw):
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], OH = grad_out.shape[2], OW = grad_out.shape[3]
    cdef Py_ssize_t t, n, c, i, j
    cdef floating th, tw, v
    cdef int nt = _threads(N * C * OH * OW)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for i in range(OH):
            th = lh[i]
            for j in range(OW):
                tw = lw[j]
                v = grad_out[n, c, i, j]
                grad_x[n, c, h0[i], w0[j]] += (1 - th) * (1 - tw) * v
                grad_x[n, c, h0[i], w1[j]] += (1 - th) * tw * v
                grad_x[n, c, h1[i], w0[j]] += th * (1 - tw) * v
                grad_x[n, c, h1[i], w1[j]] += th * tw * v
