# cython: language_level=3
"""Cython LSTM layer: the NumPy driver (BLAS GEMMs via NumPy, never inside a ``prange``) with
the gate maths fused into one kernel per step, as in the Numba backend: per row a few short
loops over raw pointers, one transcendental each, which gcc vectorises (float32 ``exp``/
``expm1`` are polynomials; float64 uses libm). Batches of fewer than ``_SERIAL`` cells run on
one thread (an OpenMP team costs more than they do).
"""
import numpy as np
from cython.parallel cimport prange

from libc.math cimport exp, fabs, fabsf, floorf, tanh
from libc.stdint cimport int32_t

from fastnn._config import get_num_threads
from fastnn.kernels.lstm.numpy_impl import layer_functions

ctypedef fused floating:
    float
    double

include "_blas.pxi"

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


# The layer (see _team.py): each thread runs its rows of the batch through every step, calling the
# BLAS GEMM itself for its rows of the recurrent product, then the row kernels above.
def _recurrence_forward(const floating[:, :, ::1] xg, const floating[:, ::1] w_hh, const floating[:, ::1] h0,
                        const floating[:, ::1] c0, floating[:, :, ::1] hs, floating[:, :, ::1] cs,
                        floating[:, :, ::1] acts, int nt):
    cdef Py_ssize_t T = xg.shape[0], B = xg.shape[1], H4 = xg.shape[2], H = H4 // 4
    cdef floating[:, ::1] hg = np.empty((B, H4), dtype=np.float32 if floating is float else np.float64)
    cdef Py_ssize_t s, t, b, b0, b1
    cdef const floating *hp
    cdef const floating *cp
    if H == 0:
        return
    for s in prange(nt, nogil=True, schedule="static", num_threads=nt):
        b0 = B * s // nt
        b1 = B * (s + 1) // nt
        for t in range(T):
            if t == 0:
                hp = &h0[b0, 0]
                cp = &c0[b0, 0]
            else:
                hp = &hs[t - 1, b0, 0]
                cp = &cs[t - 1, b0, 0]
            _blas_gemm(NO_TRANS, TRANS, b1 - b0, H4, H, hp, H, &w_hh[0, 0], H, 0, &hg[b0, 0], H4)
            for b in range(b0, b1):
                _fwd_row(&xg[t, b, 0], &hg[b, 0], cp + (b - b0) * H, &hs[t, b, 0], &cs[t, b, 0], &acts[t, b, 0], H)


def _recurrence_backward(const floating[:, :, ::1] grad_hs, const floating[:, ::1] grad_hn,
                         const floating[:, ::1] grad_cn, const floating[:, ::1] w_hh, const floating[:, ::1] c0,
                         const floating[:, :, ::1] cs, const floating[:, :, ::1] acts, floating[:, :, ::1] dz,
                         floating[:, ::1] grad_h0, floating[:, ::1] grad_c0, int nt):
    cdef Py_ssize_t T = dz.shape[0], B = dz.shape[1], H4 = dz.shape[2], H = H4 // 4
    dt = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] dc_a = np.array(grad_cn, dtype=dt)  # ping-pong: grad_c in, grad_c_prev out
    cdef floating[:, ::1] dc_b = np.empty((B, H), dtype=dt)
    cdef Py_ssize_t s, t, b, b0, b1, j
    cdef floating *dc
    cdef floating *dc_next
    cdef floating *tmp
    cdef floating *gc
    cdef const floating *cp
    if H == 0:
        return
    grad_h0[...] = grad_hn  # dh_rec: the gradient into h_{t-1} from step t, updated in place
    for s in prange(nt, nogil=True, schedule="static", num_threads=nt):
        b0 = B * s // nt
        b1 = B * (s + 1) // nt
        dc = &dc_a[b0, 0]
        dc_next = &dc_b[b0, 0]
        for t in range(T - 1, -1, -1):
            if t == 0:
                cp = &c0[b0, 0]
            else:
                cp = &cs[t - 1, b0, 0]
            for b in range(b0, b1):
                _bwd_row(&grad_hs[t, b, 0], &grad_h0[b, 0], dc + (b - b0) * H, &acts[t, b, 0], cp + (b - b0) * H,
                         &cs[t, b, 0], &dz[t, b, 0], dc_next + (b - b0) * H, H)
            tmp = dc
            dc = dc_next
            dc_next = tmp
            _blas_gemm(NO_TRANS, NO_TRANS, b1 - b0, H, H4, &dz[t, b0, 0], H4, &w_hh[0, 0], H, 0, &grad_h0[b0, 0], H)
        gc = &grad_c0[b0, 0]
        for j in range((b1 - b0) * H):
            gc[j] = dc[j]


_BLAS = _blas_init()
if _BLAS is not None:
    from fastnn.kernels.dense import cython_impl as _dense
    from fastnn.kernels.lstm import _team

    lstm_layer_forward, lstm_layer_backward = _team.layer_functions(_recurrence_forward, _recurrence_backward, _dense)
else:  # no BLAS GEMM to call from the team: the NumPy driver around the gate kernels
    lstm_layer_forward, lstm_layer_backward = layer_functions(lstm_gates_forward, lstm_gates_backward)
