# cython: language_level=3
"""Cython LSTM layer: the NumPy driver (BLAS GEMMs via NumPy, never inside a ``prange``) with
the gate maths fused into one kernel per step, as in the Numba backend: per row a few short
loops over raw pointers, one transcendental each, which gcc vectorises (float32 ``exp``/
``expm1`` are polynomials; float64 uses libm). Batches of fewer than ``_SERIAL`` cells run on
one thread (an OpenMP team costs more than they do).
"""
from cython.parallel cimport prange

from libc.math cimport exp, fabs, fabsf, floorf, tanh
from libc.stdint cimport int32_t

from fastnn._config import get_num_threads
from fastnn.kernels.lstm.numpy_impl import layer_functions

ctypedef fused floating:
    float
    double

cdef Py_ssize_t _SERIAL = 1 << 15  # B*H per step; smaller runs on one thread (see numba_impl)


cdef union _bits:
    float f
    int32_t i


# float: exp and expm1 of x <= 0 by Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a degree-7
# Taylor polynomial q ~ expm1(r), 2**n from the exponent bits; branch-free so that gcc can
# vectorise the gate loops (five scalar libm calls per element cost ~40 ns). expm1 keeps tanh
# accurate near 0. x < -87 gives exp 0 / expm1 -1; NaN stays NaN. double uses libm.
cdef inline float _q32(float x, float* p2) noexcept nogil:
    cdef float lim = -87.0
    cdef float xc = x if x > lim else lim
    cdef float n = floorf(xc * <float>1.4426950408889634 + <float>0.5)
    cdef float r, p
    cdef _bits two_n
    if n > 0:
        n = 0
    r = xc - n * <float>0.693145751953125 - n * <float>1.4286068203094172e-06
    two_n.i = (<int32_t>n + 127) << 23
    p2[0] = two_n.f
    p = <float>0.0013888889 + r * <float>0.00019841270
    p = <float>0.041666668 + r * (<float>0.008333334 + r * p)
    return r * (<float>1.0 + r * (<float>0.5 + r * (<float>0.16666667 + r * p)))


cdef inline floating _sig(floating z) noexcept nogil:
    cdef floating e, s
    cdef float p2, q, a
    if floating is float:
        a = -fabsf(z)
        q = _q32(a, &p2)
        e = p2 + p2 * q
        e = e if a >= <float>-87.0 else <float>0.0
    else:
        e = exp(-fabs(z))
    s = 1 / (1 + e)
    s = s if z >= 0 else e * s
    return s if z == z else z


cdef inline floating _tanh(floating z) noexcept nogil:
    cdef float p2, q, a, em, t
    if floating is float:
        a = <float>-2.0 * fabsf(z)
        q = _q32(a, &p2)
        em = p2 * q + (p2 - 1)
        em = em if a >= <float>-87.0 else <float>-1.0
        t = -em / (<float>2.0 + em)
        t = t if z >= 0 else -t
        return t if z == z else z
    else:
        return tanh(z)


cdef inline int _threads(Py_ssize_t work):
    return 1 if work < _SERIAL else get_num_threads()


cdef inline void _fwd_row(const floating* xg, const floating* hg, const floating* c_prev, floating* h,
                          floating* c, floating* act, Py_ssize_t H) noexcept nogil:
    # simple contiguous loops, one transcendental each, so that gcc can vectorise them
    cdef Py_ssize_t j
    for j in range(2 * H):
        act[j] = _sig(xg[j] + hg[j])
    for j in range(H):
        act[2 * H + j] = _tanh(xg[2 * H + j] + hg[2 * H + j])
    for j in range(H):
        act[3 * H + j] = _sig(xg[3 * H + j] + hg[3 * H + j])
    for j in range(H):
        c[j] = act[H + j] * c_prev[j] + act[j] * act[2 * H + j]
    for j in range(H):
        h[j] = act[3 * H + j] * _tanh(c[j])


cdef inline void _bwd_row(const floating* grad_h, const floating* grad_h_rec, floating* grad_c,
                          const floating* act, const floating* c_prev, const floating* c,
                          floating* grad_gates, floating* grad_c_prev, Py_ssize_t H) noexcept nogil:
    # two loops: the one with the tanh, then plain arithmetic (dc parked in grad_c_prev)
    cdef Py_ssize_t j
    cdef floating i, f, g, o, dh, tc, dc
    for j in range(H):
        o = act[3 * H + j]
        dh = grad_h[j] + grad_h_rec[j]
        tc = _tanh(c[j])
        grad_c_prev[j] = dh * o * (1 - tc * tc) + grad_c[j]
        grad_gates[3 * H + j] = dh * tc * o * (1 - o)
    for j in range(H):
        i = act[j]
        f = act[H + j]
        g = act[2 * H + j]
        dc = grad_c_prev[j]
        grad_gates[j] = dc * g * i * (1 - i)
        grad_gates[H + j] = dc * c_prev[j] * f * (1 - f)
        grad_gates[2 * H + j] = dc * i * (1 - g * g)
        grad_c_prev[j] = dc * f


def lstm_gates_forward(const floating[:, ::1] xg, const floating[:, ::1] hg,
                       const floating[:, ::1] c_prev, floating[:, ::1] h, floating[:, ::1] c,
                       floating[:, ::1] act):
    cdef Py_ssize_t b, B = c.shape[0], H = c.shape[1]
    cdef int nt = _threads(B * H)
    if H == 0:
        return
    for b in prange(B, nogil=True, schedule="static", num_threads=nt):
        _fwd_row(&xg[b, 0], &hg[b, 0], &c_prev[b, 0], &h[b, 0], &c[b, 0], &act[b, 0], H)


def lstm_gates_backward(const floating[:, ::1] grad_h, const floating[:, ::1] grad_h_rec,
                        floating[:, ::1] grad_c, const floating[:, ::1] act,
                        const floating[:, ::1] c_prev, const floating[:, ::1] c,
                        floating[:, ::1] grad_gates, floating[:, ::1] grad_c_prev):
    # grad_c is not const: grad_c_prev may be the same array (read before written, per element)
    cdef Py_ssize_t b, B = c.shape[0], H = c.shape[1]
    cdef int nt = _threads(B * H)
    if H == 0:
        return
    for b in prange(B, nogil=True, schedule="static", num_threads=nt):
        _bwd_row(&grad_h[b, 0], &grad_h_rec[b, 0], &grad_c[b, 0], &act[b, 0], &c_prev[b, 0], &c[b, 0],
                 &grad_gates[b, 0], &grad_c_prev[b, 0], H)


lstm_layer_forward, lstm_layer_backward = layer_functions(lstm_gates_forward, lstm_gates_backward)
