"""Numba LSTM layer: the NumPy driver (BLAS GEMMs, called from Python, never inside a
``prange``) with the gate maths fused into one kernel per step.

The NumPy gate pass walks the ``(B, 4H)`` gates about a dozen times (add, two sigmoids of
several passes each, tanh, cell update, output) with temporaries; here one call per step does
it row by row in a few short loops that stay in cache, each vectorised by LLVM (one
transcendental per loop, every loop counting from 0, ``error_model="numpy"`` so that no
zero-division branch blocks vectorisation). Backward computes all four gate gradients and
``grad_c_prev`` in two such loops. Rows run in parallel (``prange``) only from ``_SERIAL``
cells up; a step of a typical batch is faster on one thread than with a team.
"""
import warnings

import numpy as np
from numba import njit, prange, types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import overload

from .. import _blas
from .._blas import NO_TRANS as NO_T, ROW_MAJOR as ROW, TRANS
from ..dense import numba_impl as _dense
from . import _team
from .numpy_impl import layer_functions

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")  # no zero-division checks: they block vectorisation
_jit_serial = dict(_jit, parallel=False)
# Numba's internal SSA check flags the phi nodes of the inlined selects below ("please report");
# the compiled code is right (tests compare it with the reference and torch).
warnings.filterwarnings("ignore", category=NumbaIRAssumptionWarning)
# One step's gates below this many elements (B*H) run on one thread: the vectorised loop takes
# ~3 ns/element, less than waking a team and meeting it at the barrier after every step.
_SERIAL = 1 << 15

# float32 gates: exp and expm1 of x <= 0 by Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2,
# a degree-7 Taylor polynomial q ~ expm1(r) (rel. error < 1e-7), 2**n from a table; branch-free,
# so LLVM vectorises the gate loops (Numba has no vector expf/tanhf without SVML, and five libm
# calls per element made the scalar loop cost ~40 ns/element). expm1 keeps tanh accurate near 0.
# x < -87 gives exp 0 / expm1 -1; NaN stays NaN. float64 uses libm (exact to the last bits).
_F = np.float32
_POW2 = (2.0 ** -np.arange(128)).astype(np.float32)
_L2E, _LN2_HI, _LN2_LO = _F(1.4426950408889634), _F(0.693145751953125), _F(1.4286068203094172e-06)
_C3, _C4, _C5, _C6, _C7 = (_F(1 / f) for f in (6, 24, 120, 720, 5040))
_LIM, _HALF, _ONE, _ZERO, _TWO = _F(-87.0), _F(0.5), _F(1), _F(0), _F(2)


@njit(inline="always", fastmath=FASTMATH)
def _reduce32(x):
    xc = x if x > _LIM else _LIM
    n = min(np.floor(xc * _L2E + _HALF), _ZERO)
    r = xc - n * _LN2_HI - n * _LN2_LO
    q = r * (_ONE + r * (_HALF + r * (_C3 + r * (_C4 + r * (_C5 + r * (_C6 + r * _C7))))))
    return q, _POW2[np.int32(-n)]


def _sig(z):
    """sigmoid(z) without overflow."""


def _tanh(z):
    """tanh(z)."""


@overload(_sig, fastmath=FASTMATH, inline="always")
def _sig_impl(z):
    if z != types.float32:
        def sig64(z):
            e = np.exp(-abs(z))
            s = 1 / (1 + e)
            return s if z >= 0 else e * s
        return sig64

    def sig32(z):
        q, p2 = _reduce32(-abs(z))
        e = p2 + p2 * q                      # exp(-|z|)
        e = e if -abs(z) >= _LIM else _ZERO
        s = _ONE / (_ONE + e)
        out = s if z >= _ZERO else e * s
        return out if z == z else z
    return sig32


@overload(_tanh, fastmath=FASTMATH, inline="always")
def _tanh_impl(z):
    if z != types.float32:
        return lambda z: np.tanh(z)

    def tanh32(z):
        a = -_TWO * abs(z)
        q, p2 = _reduce32(a)
        em = p2 * q + (p2 - _ONE)            # expm1(-2|z|), accurate near 0
        em = em if a >= _LIM else -_ONE
        t = -em / (_TWO + em)
        out = t if z >= _ZERO else -t
        return out if z == z else z
    return tanh32


def _gates_forward(xg, hg, c_prev, h, c, act):
    # simple contiguous loops per row, one transcendental each, every loop counting from 0
    # (LLVM vectorised ``range(2 * H, 3 * H)`` loops poorly: 99 vs 38 us for 8192 cells)
    B, H = c.shape
    for b in prange(B):
        for j in range(2 * H):
            act[b, j] = _sig(xg[b, j] + hg[b, j])
        for j in range(H):
            act[b, 2 * H + j] = _tanh(xg[b, 2 * H + j] + hg[b, 2 * H + j])
        for j in range(H):
            act[b, 3 * H + j] = _sig(xg[b, 3 * H + j] + hg[b, 3 * H + j])
        for j in range(H):
            c[b, j] = act[b, H + j] * c_prev[b, j] + act[b, j] * act[b, 2 * H + j]
        for j in range(H):
            h[b, j] = act[b, 3 * H + j] * _tanh(c[b, j])


def _gates_backward(grad_h, grad_h_rec, grad_c, act, c_prev, c, grad_gates, grad_c_prev):
    # two loops per row: the one with the tanh, then plain arithmetic (dc parked in grad_c_prev)
    B, H = c.shape
    for b in prange(B):
        for j in range(H):
            o = act[b, 3 * H + j]
            dh = grad_h[b, j] + grad_h_rec[b, j]
            tc = _tanh(c[b, j])
            grad_c_prev[b, j] = dh * o * (1 - tc * tc) + grad_c[b, j]
            grad_gates[b, 3 * H + j] = dh * tc * o * (1 - o)
        for j in range(H):
            i = act[b, j]
            f = act[b, H + j]
            g = act[b, 2 * H + j]
            dc = grad_c_prev[b, j]
            grad_gates[b, j] = dc * g * i * (1 - i)
            grad_gates[b, H + j] = dc * c_prev[b, j] * f * (1 - f)
            grad_gates[b, 2 * H + j] = dc * i * (1 - g * g)
            grad_c_prev[b, j] = dc * f


_fwd_par, _fwd_ser = njit(**_jit)(_gates_forward), njit(**_jit_serial)(_gates_forward)
_bwd_par, _bwd_ser = njit(**_jit)(_gates_backward), njit(**_jit_serial)(_gates_backward)


def lstm_gates_forward(xg, hg, c_prev, h, c, act):
    (_fwd_par if c.size >= _SERIAL else _fwd_ser)(xg, hg, c_prev, h, c, act)


def lstm_gates_backward(grad_h, grad_h_rec, grad_c, act, c_prev, c, grad_gates, grad_c_prev):
    (_bwd_par if c.size >= _SERIAL else _bwd_ser)(grad_h, grad_h_rec, grad_c, act, c_prev, c, grad_gates, grad_c_prev)


# The layer (see _team.py): each thread runs its rows of the batch through every step, the
# recurrent GEMM through a BLAS function pointer and the serial gate kernels above.
@njit(**_jit)
def _recurrence_forward(gemm, xg, w_hh, h0, c0, hs, cs, acts, nt):
    T, B, H4 = xg.shape
    H = H4 // 4
    for s in prange(nt):
        b0, b1 = B * s // nt, B * (s + 1) // nt
        hg = np.empty((b1 - b0, H4), xg.dtype)
        for t in range(T):
            hp = h0[b0:b1] if t == 0 else hs[t - 1, b0:b1]
            cp = c0[b0:b1] if t == 0 else cs[t - 1, b0:b1]
            gemm(ROW, NO_T, TRANS, b1 - b0, H4, H, 1.0, hp.ctypes, H, w_hh.ctypes, H, 0.0, hg.ctypes, H4)
            _fwd_ser(xg[t, b0:b1], hg, cp, hs[t, b0:b1], cs[t, b0:b1], acts[t, b0:b1])


@njit(**_jit)
def _recurrence_backward(gemm, grad_hs, grad_hn, grad_cn, w_hh, c0, cs, acts, dz, grad_h0, grad_c0, nt):
    T, B, H4 = dz.shape
    H = H4 // 4
    for s in prange(nt):
        b0, b1 = B * s // nt, B * (s + 1) // nt
        dh_rec = grad_hn[b0:b1].copy()
        dc, dc_next = grad_cn[b0:b1].copy(), np.empty((b1 - b0, H), dz.dtype)  # ping-pong: no aliasing
        for t in range(T - 1, -1, -1):
            cp = c0[b0:b1] if t == 0 else cs[t - 1, b0:b1]
            _bwd_ser(grad_hs[t, b0:b1], dh_rec, dc, acts[t, b0:b1], cp, cs[t, b0:b1], dz[t, b0:b1], dc_next)
            dc, dc_next = dc_next, dc
            gemm(ROW, NO_T, NO_T, b1 - b0, H, H4, 1.0, dz[t, b0:b1].ctypes, H4, w_hh.ctypes, H, 0.0, dh_rec.ctypes, H)
        grad_h0[b0:b1] = dh_rec
        grad_c0[b0:b1] = dc


def _gemm(a):
    blas = _blas.get()
    return blas.numba_sgemm if a.dtype == np.float32 else blas.numba_dgemm


def _forward(xg, w_hh, h0, c0, hs, cs, acts, nt):
    _recurrence_forward(_gemm(xg), xg, w_hh, h0, c0, hs, cs, acts, nt)


def _backward(grad_hs, grad_hn, grad_cn, w_hh, c0, cs, acts, dz, grad_h0, grad_c0, nt):
    _recurrence_backward(_gemm(dz), grad_hs, grad_hn, grad_cn, w_hh, c0, cs, acts, dz, grad_h0, grad_c0, nt)


if _blas.get() is not None:
    lstm_layer_forward, lstm_layer_backward = _team.layer_functions(_forward, _backward, _dense)
else:  # no BLAS GEMM to call from the team: the NumPy driver around the gate kernels
    lstm_layer_forward, lstm_layer_backward = layer_functions(lstm_gates_forward, lstm_gates_backward)
