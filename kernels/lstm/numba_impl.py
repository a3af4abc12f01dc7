"""Numba LSTM layer: the NumPy driver (BLAS GEMMs, called from Python, never inside a
``prange``) with the gate maths fused into one parallel pass per step.

The NumPy gate pass walks the ``(B, 4H)`` gates about a dozen times (add, two sigmoids of
several passes each, tanh, cell update, output); here each ``(b, j)`` reads its four
pre-activations once and writes ``i, f, g, o``, ``c`` and ``h`` in registers. The backward
gate pass likewise computes all four gate gradients and ``grad_c_prev`` in one sweep.
Sigmoid is ``1/(1+e)`` or ``e/(1+e)`` with ``e = exp(-|z|)`` (no overflow, select not branch).
"""
import numpy as np
from numba import njit, prange

from .numpy_impl import layer_functions

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)


@njit(inline="always", fastmath=FASTMATH)
def _sig(z):
    e = np.exp(-abs(z))
    s = 1 / (1 + e)
    return s if z >= 0 else e * s


@njit(**_jit)
def lstm_gates_forward(xg, hg, c_prev, h, c, act):
    B, H = c.shape
    for b in prange(B):
        for j in range(H):
            i = _sig(xg[b, j] + hg[b, j])
            f = _sig(xg[b, H + j] + hg[b, H + j])
            g = np.tanh(xg[b, 2 * H + j] + hg[b, 2 * H + j])
            o = _sig(xg[b, 3 * H + j] + hg[b, 3 * H + j])
            cn = f * c_prev[b, j] + i * g
            c[b, j] = cn
            h[b, j] = o * np.tanh(cn)
            act[b, j] = i
            act[b, H + j] = f
            act[b, 2 * H + j] = g
            act[b, 3 * H + j] = o


@njit(**_jit)
def lstm_gates_backward(grad_h, grad_h_rec, grad_c, act, c_prev, c, grad_gates, grad_c_prev):
    B, H = c.shape
    for b in prange(B):
        for j in range(H):
            i = act[b, j]
            f = act[b, H + j]
            g = act[b, 2 * H + j]
            o = act[b, 3 * H + j]
            dh = grad_h[b, j] + grad_h_rec[b, j]
            tc = np.tanh(c[b, j])
            dc = dh * o * (1 - tc * tc) + grad_c[b, j]
            grad_gates[b, j] = dc * g * i * (1 - i)
            grad_gates[b, H + j] = dc * c_prev[b, j] * f * (1 - f)
            grad_gates[b, 2 * H + j] = dc * i * (1 - g * g)
            grad_gates[b, 3 * H + j] = dh * tc * o * (1 - o)
            grad_c_prev[b, j] = dc * f


lstm_layer_forward, lstm_layer_backward = layer_functions(lstm_gates_forward, lstm_gates_backward)
