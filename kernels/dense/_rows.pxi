# Row helpers shared by the dense and loss Cython kernels (textually included by each .pyx):
# the fused float type, exp in the input's precision, and the one-row max / softmax /
# log-sum-exp sweeps (one row stays in cache; sums in double).
from libc.math cimport exp, expf, log, isnan

ctypedef fused floating:
    float
    double


cdef inline floating _exp(floating v) noexcept nogil:
    if floating is float:
        return expf(v)
    else:
        return exp(v)


cdef inline floating _row_max(const floating[:, ::1] x, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating m = x[i, 0]
    for j in range(1, x.shape[1]):
        if x[i, j] > m or isnan(x[i, j]):
            m = x[i, j]
    return m


cdef inline void _scaled_softmax_row(const floating[:, ::1] x, Py_ssize_t i, floating[:, ::1] out,
                                     double scale) noexcept nogil:
    """out[i] = scale * softmax(x[i]): max, sum of exponentials, output (one row, in cache)."""
    cdef Py_ssize_t j, c = x.shape[1]
    cdef floating m = _row_max(x, i)
    cdef double s = 0
    for j in range(c):
        out[i, j] = _exp(x[i, j] - m)
        s += out[i, j]
    s = scale / s
    for j in range(c):
        out[i, j] = <floating>(out[i, j] * s)


cdef inline double _logsumexp_row(const floating[:, ::1] x, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating m = _row_max(x, i)
    cdef double s = 0
    for j in range(x.shape[1]):
        s += _exp(x[i, j] - m)
    return m + log(s)
