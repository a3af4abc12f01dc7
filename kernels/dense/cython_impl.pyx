# cython: language_level=3
"""Cython dense kernels: typed memoryviews, ``nogil``, OpenMP ``prange``, fused float/double.

The same one-pass, row-at-a-time algorithms as the Numba kernels, written for the C compiler:
``float`` inputs use the single-precision libm functions (``expf``, ``tanhf``), accumulations
are in double. Loops below ``_SERIAL`` elements run on one thread (starting an OpenMP team
costs more than they do). The GEMMs of ``linear`` stay in BLAS via NumPy, called with the GIL
held and never inside a ``prange``.
"""
import numpy as np
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.math cimport tanh, tanhf, isnan

from fastnn._config import get_num_threads

include "_rows.pxi"

cdef Py_ssize_t _SERIAL = 1 << 14


cdef inline floating _tanh(floating v) noexcept nogil:
    if floating is float:
        return tanhf(v)
    else:
        return tanh(v)


cdef inline int _threads(Py_ssize_t work):
    return 1 if work < _SERIAL else get_num_threads()


def _add_bias(floating[:, ::1] out, const floating[::1] bias):
    cdef Py_ssize_t i, j, n = out.shape[0], m = out.shape[1]
    cdef int nt = _threads(n * m)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        for j in range(m):
            out[i, j] += bias[j]


def _sum_rows(const floating[:, ::1] g, floating[::1] out):
    cdef Py_ssize_t b, i, j, j0, j1, n = g.shape[0], m = g.shape[1]
    cdef Py_ssize_t nblk = (m + 63) // 64
    cdef int nt = _threads(n * m)
    for b in prange(nblk, nogil=True, schedule="static", num_threads=nt):
        j0 = b * 64
        j1 = min(m, j0 + 64)
        for j in range(j0, j1):
            out[j] = 0
        for i in range(n):
            for j in range(j0, j1):
                out[j] += g[i, j]


def linear_forward(x, weight, bias, out):
    np.matmul(x, weight.T, out=out)
    if bias is not None:
        _add_bias(out, bias)


def linear_backward(grad_out, x, weight, grad_x, grad_weight, grad_bias):
    if grad_x is not None:
        np.matmul(grad_out, weight, out=grad_x)
    np.matmul(grad_out.T, x, out=grad_weight)
    if grad_bias is not None:
        _sum_rows(grad_out, grad_bias)


def relu_forward(const floating[::1] x, floating[::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating v
    cdef int nt = _threads(n)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        v = x[i]
        out[i] = v if (v > 0 or isnan(v)) else 0


def relu_backward(const floating[::1] grad_out, const floating[::1] y, floating[::1] out):
    cdef Py_ssize_t i, n = y.shape[0]
    cdef int nt = _threads(n)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        out[i] = 0 if y[i] <= 0 else grad_out[i]


def sigmoid_forward(const floating[::1] x, floating[::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating v, e
    cdef int nt = _threads(n)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        v = x[i]
        if v >= 0:
            out[i] = 1 / (1 + _exp(-v))
        else:
            e = _exp(v)
            out[i] = e / (1 + e)


def sigmoid_backward(const floating[::1] grad_out, const floating[::1] y, floating[::1] out):
    cdef Py_ssize_t i, n = y.shape[0]
    cdef int nt = _threads(n)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        out[i] = grad_out[i] * y[i] * (1 - y[i])


def tanh_forward(const floating[::1] x, floating[::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int nt = _threads(n)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        out[i] = _tanh(x[i])


def tanh_backward(const floating[::1] grad_out, const floating[::1] y, floating[::1] out):
    cdef Py_ssize_t i, n = y.shape[0]
    cdef int nt = _threads(n)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        out[i] = grad_out[i] * (1 - y[i] * y[i])


def softmax_forward(const floating[:, ::1] x, floating[:, ::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int nt = _threads(n * x.shape[1])
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        _scaled_softmax_row(x, i, out, 1.0)


def softmax_backward(const floating[:, ::1] grad_out, const floating[:, ::1] y, floating[:, ::1] out):
    cdef Py_ssize_t i, j, n = y.shape[0], c = y.shape[1]
    cdef double s
    cdef int nt = _threads(n * c)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        s = 0
        for j in range(c):
            s = s + grad_out[i, j] * y[i, j]
        for j in range(c):
            out[i, j] = <floating>(y[i, j] * (grad_out[i, j] - s))


def log_softmax_forward(const floating[:, ::1] x, floating[:, ::1] out):
    cdef Py_ssize_t i, j, n = x.shape[0], c = x.shape[1]
    cdef double lse
    cdef int nt = _threads(n * c)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        lse = _logsumexp_row(x, i)
        for j in range(c):
            out[i, j] = <floating>(x[i, j] - lse)


def log_softmax_backward(const floating[:, ::1] grad_out, const floating[:, ::1] y, floating[:, ::1] out):
    cdef Py_ssize_t i, j, n = y.shape[0], c = y.shape[1]
    cdef double s
    cdef int nt = _threads(n * c)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        s = 0
        for j in range(c):
            s = s + grad_out[i, j]
        for j in range(c):
            out[i, j] = <floating>(grad_out[i, j] - _exp(y[i, j]) * s)


def cross_entropy_forward(const floating[:, ::1] logits, const int64_t[::1] target, floating[::1] losses):
    cdef Py_ssize_t i, n = logits.shape[0]
    cdef int nt = _threads(n * logits.shape[1])
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        losses[i] = <floating>(_logsumexp_row(logits, i) - logits[i, target[i]])


def cross_entropy_backward(const floating[:, ::1] logits, const int64_t[::1] target, double scale,
                           floating[:, ::1] out):
    # (softmax - onehot) * scale, without building the one-hot matrix
    cdef Py_ssize_t i, n = logits.shape[0]
    cdef int nt = _threads(n * logits.shape[1])
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        _scaled_softmax_row(logits, i, out, scale)
        out[i, target[i]] -= <floating>scale


cdef Py_ssize_t _BLOCK = 4096


def mse_forward(const floating[::1] y, const floating[::1] t):
    # One partial sum per fixed block of _BLOCK elements, then the partials in block order: the
    # same bits on every run and at any thread count (an OpenMP reduction adds the threads'
    # partials in whatever order they finish).
    cdef Py_ssize_t b, i, n = y.shape[0], nblk = (n + _BLOCK - 1) // _BLOCK
    cdef double d, acc, s = 0
    cdef double[::1] part = np.empty(nblk)
    cdef int nt = _threads(n)
    for b in prange(nblk, nogil=True, schedule="static", num_threads=nt):
        acc = 0
        for i in range(b * _BLOCK, min(n, (b + 1) * _BLOCK)):
            d = <double>y[i] - <double>t[i]
            acc = acc + d * d
        part[b] = acc
    for b in range(nblk):
        s += part[b]
    return s


def mse_backward(const floating[::1] y, const floating[::1] t, double scale, floating[::1] out):
    cdef Py_ssize_t i, n = y.shape[0]
    cdef int nt = _threads(n)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        out[i] = <floating>((y[i] - t[i]) * scale)
