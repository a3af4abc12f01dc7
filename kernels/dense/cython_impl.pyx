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

from .._threads import single_thread_blas
from . import numpy_impl as _numpy_impl

include "_rows.pxi"

include "_blas.pxi"

_BLAS = _blas_init()

cdef Py_ssize_t _SERIAL = 1 << 14


cdef inline floating _tanh(floating v) noexcept nogil:
    if floating is float:
        return tanhf(v)
    else:
        return tanh(v)


cdef inline int _threads(Py_ssize_t work):
    return 1 if work < _SERIAL else get_num_threads()


_GEMM_SERIAL = 1 << 17  # multiply-adds below which a GEMM runs on one thread


def _gemm_threads(rows, macs):
    return 1 if macs < _GEMM_SERIAL else max(1, min(get_num_threads(), rows))


# linear: the GEMMs run inside one parallel region, each thread calling the BLAS GEMM
# single-threaded on its own block (kernels/_blas.pxi): fastnn's work stays on its OpenMP team,
# which does not then compete with BLAS's own thread pool. Thread t owns rows [M t / nt,
# M (t + 1) / nt) of out / grad_x (or, with fewer rows than that, the same share of their
# columns) and rows of grad_weight / entries of grad_bias likewise: no sums across threads.
def linear_forward(x, weight, bias, out):
    M, K = x.shape
    N = weight.shape[0]
    if _BLAS is None or M == 0 or N == 0 or K == 0:  # no GEMM to call from the team, or nothing to multiply
        return _numpy_impl.linear_forward(x, weight, bias, out)
    nt = _gemm_threads(max(M, N), M * N * K)
    with single_thread_blas():
        _linear_forward(x, weight, bias if bias is not None else out[0, :0], bias is not None, out, nt, M >= 4 * nt)


def linear_backward(grad_out, x, weight, grad_x, grad_weight, grad_bias):
    M, K = x.shape
    N = weight.shape[0]
    if _BLAS is None or M == 0 or N == 0 or K == 0:
        return _numpy_impl.linear_backward(grad_out, x, weight, grad_x, grad_weight, grad_bias)
    nt = _gemm_threads(max(M, N, K), M * N * K)
    with single_thread_blas():
        _linear_backward(grad_out, x, weight, grad_x if grad_x is not None else grad_weight[:0], grad_x is not None,
                         grad_weight, grad_bias if grad_bias is not None else grad_weight[0, :0],
                         grad_bias is not None, nt, M >= 4 * nt)


def _linear_forward(const floating[:, ::1] x, const floating[:, ::1] weight, const floating[::1] b, bint has_bias,
                    floating[:, ::1] out, int nt, bint by_rows):
    cdef Py_ssize_t M = x.shape[0], K = x.shape[1], N = weight.shape[0]
    cdef Py_ssize_t t, i, j, r0, r1, c0, c1
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        if by_rows:
            r0 = M * t // nt
            r1 = M * (t + 1) // nt
            c0 = 0
            c1 = N
        else:
            r0 = 0
            r1 = M
            c0 = N * t // nt
            c1 = N * (t + 1) // nt
        if r1 > r0 and c1 > c0:
            _blas_gemm(NO_TRANS, TRANS, r1 - r0, c1 - c0, K, &x[r0, 0], K, &weight[c0, 0], K, 0, &out[r0, c0], N)
        if has_bias:
            for i in range(r0, r1):
                for j in range(c0, c1):
                    out[i, j] += b[j]


def _linear_backward(const floating[:, ::1] grad_out, const floating[:, ::1] x, const floating[:, ::1] weight,
                     floating[:, ::1] gx, bint want_x, floating[:, ::1] grad_weight, floating[::1] gb, bint want_b,
                     int nt, bint by_rows):
    cdef Py_ssize_t M = x.shape[0], K = x.shape[1], N = weight.shape[0]
    cdef Py_ssize_t t, i, j, r0, r1, c0, c1, n0, n1
    cdef double acc
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        n0 = N * t // nt  # grad_weight rows and grad_bias entries of this thread
        n1 = N * (t + 1) // nt
        if n1 > n0:
            _blas_gemm(TRANS, NO_TRANS, n1 - n0, K, M, &grad_out[0, n0], N, &x[0, 0], K, 0, &grad_weight[n0, 0], K)
            if want_b:
                for j in range(n0, n1):
                    acc = 0
                    for i in range(M):
                        acc = acc + grad_out[i, j]
                    gb[j] = <floating>acc
        if want_x:
            if by_rows:
                r0 = M * t // nt
                r1 = M * (t + 1) // nt
                c0 = 0
                c1 = K
            else:
                r0 = 0
                r1 = M
                c0 = K * t // nt
                c1 = K * (t + 1) // nt
            if r1 > r0 and c1 > c0:
                _blas_gemm(NO_TRANS, NO_TRANS, r1 - r0, c1 - c0, N, &grad_out[r0, 0], N, &weight[0, c0], K, 0,
                           &gx[r0, c0], K)


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
