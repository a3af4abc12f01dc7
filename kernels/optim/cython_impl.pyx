# cython: language_level=3
"""Cython optimiser updates: one fused OpenMP pass per parameter (arithmetic in double,
torch's operation order; each iteration owns its element)."""
from cython.parallel cimport prange
from libc.math cimport sqrt

from fastnn._config import get_num_threads

ctypedef fused floating:
    float
    double

cdef Py_ssize_t _SERIAL = 1 << 14


cdef inline int _threads(Py_ssize_t n):
    return 1 if n < _SERIAL else get_num_threads()


cdef inline double _lerp(double a, double b, double w) noexcept nogil:
    return a + w * (b - a) if w < 0.5 else b - (b - a) * (1 - w)


def _sgd(floating[::1] p, const floating[::1] g, floating[::1] buf, bint has_buf, double lr, double momentum,
         double dampening, double weight_decay, bint nesterov, bint first):
    cdef Py_ssize_t i, n = p.shape[0]
    cdef double gi, b
    cdef int nt = _threads(n)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        gi = g[i] + weight_decay * p[i]
        if has_buf:
            if first:
                b = gi
            else:
                b = momentum * buf[i] + (1 - dampening) * gi
            buf[i] = <floating>b
            if nesterov:
                gi = gi + momentum * buf[i]
            else:
                gi = buf[i]
        p[i] = <floating>(p[i] - lr * gi)


def _adam(floating[::1] p, const floating[::1] g, floating[::1] m, floating[::1] v, floating[::1] vmax,
          bint amsgrad, double lr, double beta1, double beta2, double eps, double weight_decay, bint decoupled,
          double bc1, double bc2):
    cdef Py_ssize_t i, n = p.shape[0]
    cdef double pi, gi, vi, step = lr / bc1, sqrt_bc2 = sqrt(bc2)
    cdef double shrink = 1 - lr * weight_decay if decoupled else 1.0
    cdef double wd = 0.0 if decoupled else weight_decay
    cdef int nt = _threads(n)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        pi = p[i] * shrink
        gi = g[i] + wd * pi
        m[i] = <floating>_lerp(m[i], gi, 1 - beta1)
        v[i] = <floating>(beta2 * v[i] + (1 - beta2) * gi * gi)
        if amsgrad:
            if v[i] > vmax[i]:
                vmax[i] = v[i]
            vi = vmax[i]
        else:
            vi = v[i]
        p[i] = <floating>(pi - step * (m[i] / (sqrt(vi) / sqrt_bc2 + eps)))


def _rmsprop(floating[::1] p, const floating[::1] g, floating[::1] sq, floating[::1] ga, floating[::1] buf,
             bint centered, bint has_buf, double lr, double alpha, double eps, double weight_decay, double momentum):
    cdef Py_ssize_t i, n = p.shape[0]
    cdef double gi, avg
    cdef int nt = _threads(n)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        gi = g[i] + weight_decay * p[i]
        sq[i] = <floating>(alpha * sq[i] + (1 - alpha) * gi * gi)
        if centered:
            ga[i] = <floating>_lerp(ga[i], gi, 1 - alpha)
            avg = sqrt(sq[i] - <double>ga[i] * ga[i]) + eps
        else:
            avg = sqrt(sq[i]) + eps
        if has_buf:
            buf[i] = <floating>(momentum * buf[i] + gi / avg)
            p[i] = <floating>(p[i] - lr * buf[i])
        else:
            p[i] = <floating>(p[i] - lr * (gi / avg))


def _adagrad(floating[::1] p, const floating[::1] g, floating[::1] ssum, double clr, double eps,
             double weight_decay):
    cdef Py_ssize_t i, n = p.shape[0]
    cdef double gi
    cdef int nt = _threads(n)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        gi = g[i] + weight_decay * p[i]
        ssum[i] = <floating>(ssum[i] + gi * gi)
        p[i] = <floating>(p[i] - clr * (gi / (sqrt(ssum[i]) + eps)))


def sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    has_buf = buf is not None
    _sgd(p, g, buf if has_buf else p[:0], has_buf, lr, momentum, dampening, weight_decay, nesterov, first)


def adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, decoupled, bias_correction1, bias_correction2):
    ams = vmax is not None
    _adam(p, g, m, v, vmax if ams else p[:0], ams, lr, beta1, beta2, eps, weight_decay, decoupled,
          bias_correction1, bias_correction2)


def rmsprop_step(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum):
    _rmsprop(p, g, square_avg, p[:0] if grad_avg is None else grad_avg, p[:0] if buf is None else buf,
             grad_avg is not None, buf is not None, lr, alpha, eps, weight_decay, momentum)


def adagrad_step(p, g, state_sum, clr, eps, weight_decay):
    _adagrad(p, g, state_sum, clr, eps, weight_decay)
