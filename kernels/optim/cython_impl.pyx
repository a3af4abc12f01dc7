# cython: language_level=3
"""Cython optimiser updates: one fused OpenMP pass per parameter (arithmetic in double)."""
from cython.parallel cimport prange
from libc.math cimport sqrt

from fastnn._config import get_num_threads

ctypedef fused floating:
    float
    double

cdef Py_ssize_t _SERIAL = 1 << 14


def _sgd(floating[::1] p, const floating[::1] g, floating[::1] buf, bint has_buf, double lr, double momentum,
         double dampening, double weight_decay, bint nesterov, bint first):
    cdef Py_ssize_t i, n = p.shape[0]
    cdef double gi, b
    cdef int nt = 1 if n < _SERIAL else get_num_threads()
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        gi = g[i] + weight_decay * p[i]
        if has_buf:
            if first:
                b = gi
            else:
                b = momentum * buf[i] + (1 - dampening) * gi
            buf[i] = <floating>b
            if nesterov:
                gi = gi + momentum * b
            else:
                gi = b
        p[i] = <floating>(p[i] - lr * gi)


def _adam(floating[::1] p, const floating[::1] g, floating[::1] m, floating[::1] v, floating[::1] vmax,
          bint amsgrad, double lr, double beta1, double beta2, double eps, double weight_decay,
          double bc1, double bc2):
    cdef Py_ssize_t i, n = p.shape[0]
    cdef double gi, mi, vi, step = lr / bc1, inv_sqrt_bc2 = 1 / sqrt(bc2)
    cdef int nt = 1 if n < _SERIAL else get_num_threads()
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        gi = g[i] + weight_decay * p[i]
        mi = beta1 * m[i] + (1 - beta1) * gi
        vi = beta2 * v[i] + (1 - beta2) * gi * gi
        m[i] = <floating>mi
        v[i] = <floating>vi
        if amsgrad:
            if vmax[i] > vi:
                vi = vmax[i]
            vmax[i] = <floating>vi
        p[i] = <floating>(p[i] - step * mi / (sqrt(vi) * inv_sqrt_bc2 + eps))


def sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    has_buf = buf is not None
    _sgd(p, g, buf if has_buf else p[:0], has_buf, lr, momentum, dampening, weight_decay, nesterov, first)


def adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2):
    ams = vmax is not None
    _adam(p, g, m, v, vmax if ams else p[:0], ams, lr, beta1, beta2, eps, weight_decay,
          bias_correction1, bias_correction2)
