# cython: language_level=3
"""Cython GRU layer: the NumPy driver (BLAS GEMMs via NumPy, never inside a ``prange``) with
the gate maths fused into one kernel per step, as in the Numba backend: per row a few short
loops over raw pointers, one transcendental each, which gcc vectorises (float32 ``exp``/
``expm1`` are polynomials, ``kernels/_activations.pxi``; float64 uses libm). Batches of fewer
than ``_SERIAL`` cells run on one thread.
"""
from cython.parallel cimport prange

from fastnn._config import get_num_threads
from fastnn.kernels.gru.numpy_impl import layer_functions

include "../_activations.pxi"

cdef Py_ssize_t _SERIAL = 1 << 15  # B*H per step; smaller runs on one thread (see the LSTM kernels)


cdef inline int _threads(Py_ssize_t work):
    return 1 if work < _SERIAL else get_num_threads()


cdef inline void _fwd_row(const floating* xg, const floating* hg, const floating* b_hh, const floating* h_prev,
                          floating* h, floating* act, Py_ssize_t H) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating n
    for j in range(2 * H):
        act[j] = _sig(xg[j] + hg[j] + b_hh[j])
    for j in range(H):
        act[3 * H + j] = hg[2 * H + j] + b_hh[2 * H + j]
    for j in range(H):
        act[2 * H + j] = _tanh(xg[2 * H + j] + act[j] * act[3 * H + j])
    for j in range(H):
        n = act[2 * H + j]
        h[j] = (h_prev[j] - n) * act[H + j] + n


cdef inline void _bwd_row(const floating* grad_h, const floating* grad_h_rec, const floating* act,
                          const floating* h_prev, floating* grad_xg, floating* grad_hg, floating* grad_h_direct,
                          Py_ssize_t H) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating r, z, n, dh, dn, dr, dz
    for j in range(H):
        r = act[j]
        z = act[H + j]
        n = act[2 * H + j]
        dh = grad_h[j] + grad_h_rec[j]
        dn = dh * (1 - z) * (1 - n * n)
        dr = dn * act[3 * H + j] * r * (1 - r)
        dz = dh * (h_prev[j] - n) * z * (1 - z)
        grad_xg[j] = dr
        grad_xg[H + j] = dz
        grad_xg[2 * H + j] = dn
        grad_hg[j] = dr
        grad_hg[H + j] = dz
        grad_hg[2 * H + j] = dn * r
        grad_h_direct[j] = dh * z


def gru_gates_forward(const floating[:, ::1] xg, const floating[:, ::1] hg, const floating[::1] b_hh,
                      const floating[:, ::1] h_prev, floating[:, ::1] h, floating[:, ::1] act):
    cdef Py_ssize_t b, B = h.shape[0], H = h.shape[1]
    cdef int nt = _threads(B * H)
    if H == 0:
        return
    for b in prange(B, nogil=True, schedule="static", num_threads=nt):
        _fwd_row(&xg[b, 0], &hg[b, 0], &b_hh[0], &h_prev[b, 0], &h[b, 0], &act[b, 0], H)


def gru_gates_backward(const floating[:, ::1] grad_h, const floating[:, ::1] grad_h_rec,
                       const floating[:, ::1] act, const floating[:, ::1] h_prev, floating[:, ::1] grad_xg,
                       floating[:, ::1] grad_hg, floating[:, ::1] grad_h_direct):
    cdef Py_ssize_t b, B = h_prev.shape[0], H = h_prev.shape[1]
    cdef int nt = _threads(B * H)
    if H == 0:
        return
    for b in prange(B, nogil=True, schedule="static", num_threads=nt):
        _bwd_row(&grad_h[b, 0], &grad_h_rec[b, 0], &act[b, 0], &h_prev[b, 0], &grad_xg[b, 0], &grad_hg[b, 0],
                 &grad_h_direct[b, 0], H)


gru_layer_forward, gru_layer_backward = layer_functions(gru_gates_forward, gru_gates_backward)
