"""Numba GRU layer: the NumPy driver (BLAS GEMMs, called from Python, never inside a
``prange``) with the gate maths fused into one kernel per step.

Forward, per row: four short loops that stay in cache (sigmoid of r and z, the hidden
candidate ``hn``, tanh of ``n``, the new state), one transcendental each, every loop counting
from 0 so that LLVM vectorises them; float32 uses the LSTM kernels' branch-free polynomial
``exp``/``expm1`` (``kernels/lstm/numba_impl.py``). Backward: one loop of plain arithmetic.
Rows run in parallel (``prange``) only from ``_SERIAL`` cells up.
"""
from numba import njit, prange

from ..lstm.numba_impl import _SERIAL, _jit, _jit_serial, _sig, _tanh
from .numpy_impl import layer_functions


def _gates_forward(xg, hg, b_hh, h_prev, h, act):
    B, H = h.shape
    for b in prange(B):
        for j in range(2 * H):
            act[b, j] = _sig(xg[b, j] + hg[b, j] + b_hh[j])
        for j in range(H):
            act[b, 3 * H + j] = hg[b, 2 * H + j] + b_hh[2 * H + j]
        for j in range(H):
            act[b, 2 * H + j] = _tanh(xg[b, 2 * H + j] + act[b, j] * act[b, 3 * H + j])
        for j in range(H):
            n = act[b, 2 * H + j]
            h[b, j] = (h_prev[b, j] - n) * act[b, H + j] + n


def _gates_backward(grad_h, grad_h_rec, act, h_prev, grad_xg, grad_hg, grad_h_direct):
    B, H = h_prev.shape
    for b in prange(B):
        for j in range(H):
            r = act[b, j]
            z = act[b, H + j]
            n = act[b, 2 * H + j]
            dh = grad_h[b, j] + grad_h_rec[b, j]
            dn = dh * (1 - z) * (1 - n * n)
            dr = dn * act[b, 3 * H + j] * r * (1 - r)
            dz = dh * (h_prev[b, j] - n) * z * (1 - z)
            grad_xg[b, j] = dr
            grad_xg[b, H + j] = dz
            grad_xg[b, 2 * H + j] = dn
            grad_hg[b, j] = dr
            grad_hg[b, H + j] = dz
            grad_hg[b, 2 * H + j] = dn * r
            grad_h_direct[b, j] = dh * z


_fwd_par, _fwd_ser = njit(**_jit)(_gates_forward), njit(**_jit_serial)(_gates_forward)
_bwd_par, _bwd_ser = njit(**_jit)(_gates_backward), njit(**_jit_serial)(_gates_backward)


def gru_gates_forward(xg, hg, b_hh, h_prev, h, act):
    (_fwd_par if h.size >= _SERIAL else _fwd_ser)(xg, hg, b_hh, h_prev, h, act)


def gru_gates_backward(grad_h, grad_h_rec, act, h_prev, grad_xg, grad_hg, grad_h_direct):
    (_bwd_par if h_prev.size >= _SERIAL else _bwd_ser)(grad_h, grad_h_rec, act, h_prev, grad_xg, grad_hg,
                                                       grad_h_direct)


gru_layer_forward, gru_layer_backward = layer_functions(gru_gates_forward, gru_gates_backward)
