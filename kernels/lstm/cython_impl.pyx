# cython: language_level=3
"""Cython LSTM layer: the NumPy driver (BLAS GEMMs via NumPy, never inside a ``prange``) with
the gate maths fused into one OpenMP pass per step, as in the Numba backend.

``float`` uses the single-precision libm (``expf``, ``tanhf``). Batches of fewer than
``_SERIAL`` gate elements run on one thread (an OpenMP team costs more than they do).
"""
from cython.parallel cimport prange
from libc.math cimport exp, expf, fabs, fabsf, tanh, tanhf

from fastnn._config import get_num_threads
from fastnn.kernels.lstm.numpy_impl import layer_functions

ctypedef fused floating:
    float
    double

cdef Py_ssize_t _SERIAL = 1 << 12


cdef inline floating _sig(floating z) noexcept nogil:
    cdef floating e, s
    if floating is float:
        e = expf(-fabsf(z))
    else:
        e = exp(-fabs(z))
    s = 1 / (1 + e)
    return s if z >= 0 else e * s


cdef inline floating _tanh(floating v) noexcept nogil:
    if floating is float:
        return tanhf(v)
    else:
        return tanh(v)


cdef inline int _threads(Py_ssize_t work):
    return 1 if work < _SERIAL else get_num_threads()


def lstm_gates_forward(const floating[:, ::1] xg, const floating[:, ::1] hg,
                       const floating[:, ::1] c_prev, floating[:, ::1] h, floating[:, ::1] c,
                       floating[:, ::1] act):
    cdef Py_ssize_t b, j, B = c.shape[0], H = c.shape[1]
    cdef floating i, f, g, o, cn
    cdef int nt = _threads(B * H)
    for b in prange(B, nogil=True, schedule="static", num_threads=nt):
        for j in range(H):
            i = _sig(xg[b, j] + hg[b, j])
            f = _sig(xg[b, H + j] + hg[b, H + j])
            g = _tanh(xg[b, 2 * H + j] + hg[b, 2 * H + j])
            o = _sig(xg[b, 3 * H + j] + hg[b, 3 * H + j])
            cn = f * c_prev[b, j] + i * g
            c[b, j] = cn
            h[b, j] = o * _tanh(cn)
            act[b, j] = i
            act[b, H + j] = f
            act[b, 2 * H + j] = g
            act[b, 3 * H + j] = o


def lstm_gates_backward(const floating[:, ::1] grad_h, const floating[:, ::1] grad_h_rec,
                        floating[:, ::1] grad_c, const floating[:, ::1] act,
                        const floating[:, ::1] c_prev, const floating[:, ::1] c,
                        floating[:, ::1] grad_gates, floating[:, ::1] grad_c_prev):
    # grad_c is not const: grad_c_prev may be the same array (read before written, per element)
    cdef Py_ssize_t b, j, B = c.shape[0], H = c.shape[1]
    cdef floating i, f, g, o, dh, tc, dc
    cdef int nt = _threads(B * H)
    for b in prange(B, nogil=True, schedule="static", num_threads=nt):
        for j in range(H):
            i = act[b, j]
            f = act[b, H + j]
            g = act[b, 2 * H + j]
            o = act[b, 3 * H + j]
            dh = grad_h[b, j] + grad_h_rec[b, j]
            tc = _tanh(c[b, j])
            dc = dh * o * (1 - tc * tc) + grad_c[b, j]
            grad_gates[b, j] = dc * g * i * (1 - i)
            grad_gates[b, H + j] = dc * c_prev[b, j] * f * (1 - f)
            grad_gates[b, 2 * H + j] = dc * i * (1 - g * g)
            grad_gates[b, 3 * H + j] = dh * tc * o * (1 - o)
            grad_c_prev[b, j] = dc * f


lstm_layer_forward, lstm_layer_backward = layer_functions(lstm_gates_forward, lstm_gates_backward)
