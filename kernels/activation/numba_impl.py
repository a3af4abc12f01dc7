"""Numba activations: one parallel pass per op (``prange`` over the flat array), the whole
formula in registers, where NumPy makes 4-10 passes with temporaries.

``FASTMATH`` keeps ``nnan``/``ninf`` off: NaN inputs give NaN as in torch. The PReLU weight
gradient is one float64 sum per channel (``prange`` over channels): no shared accumulator.
"""
import math

import numpy as np
from numba import njit, prange

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
_ijit = dict(inline="always", fastmath=FASTMATH)

_K = math.sqrt(2 / math.pi)
_C = 0.044715
_SQRT1_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


@njit(**_jit)
def gelu_forward(x, out, tanh):
    if tanh:
        for i in prange(x.size):
            v = x[i]
            out[i] = 0.5 * v * (1 + math.tanh(_K * (v + _C * v * v * v)))
    else:
        for i in prange(x.size):
            v = x[i]
            out[i] = 0.5 * v * (1 + math.erf(v * _SQRT1_2))


@njit(**_jit)
def gelu_backward(grad_out, x, out, tanh):
    if tanh:
        for i in prange(x.size):
            v = x[i]
            t = math.tanh(_K * (v + _C * v * v * v))
            out[i] = grad_out[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * _K * (1 + 3 * _C * v * v))
    else:
        for i in prange(x.size):
            v = x[i]
            out[i] = grad_out[i] * (0.5 * (1 + math.erf(v * _SQRT1_2)) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v))


@njit(**_ijit)
def _sigmoid(v):
    if v >= 0:
        return 1 / (1 + math.exp(-v))
    e = math.exp(v)
    return e / (1 + e)


@njit(**_jit)
def silu_forward(x, out):
    for i in prange(x.size):
        out[i] = x[i] * _sigmoid(x[i])


@njit(**_jit)
def silu_backward(grad_out, x, out):
    for i in prange(x.size):
        s = _sigmoid(x[i])
        out[i] = grad_out[i] * s * (1 + x[i] * (1 - s))


@njit(**_jit)
def leaky_relu_forward(x, out, negative_slope):
    for i in prange(x.size):
        v = x[i]
        out[i] = v if v > 0 else v * negative_slope


@njit(**_jit)
def leaky_relu_backward(grad_out, x, out, negative_slope):
    for i in prange(x.size):
        out[i] = grad_out[i] if x[i] > 0 else grad_out[i] * negative_slope


@njit(**_jit)
def elu_forward(x, out, alpha):
    for i in prange(x.size):
        v = x[i]
        out[i] = alpha * math.expm1(v) if v <= 0 else v


@njit(**_jit)
def elu_backward(grad_out, x, out, alpha):
    for i in prange(x.size):
        v = x[i]
        out[i] = grad_out[i] * alpha * math.exp(v) if v <= 0 else grad_out[i]


@njit(**_jit)
def softplus_forward(x, out, beta, threshold):
    for i in prange(x.size):
        bx = x[i] * beta
        out[i] = x[i] if bx > threshold else math.log1p(math.exp(bx)) / beta


@njit(**_jit)
def softplus_backward(grad_out, x, out, beta, threshold):
    for i in prange(x.size):
        bx = x[i] * beta
        out[i] = grad_out[i] if bx > threshold else grad_out[i] * _sigmoid(bx)


@njit(**_jit)
def hardswish_forward(x, out):
    for i in prange(x.size):
        v = x[i]
        c = v + 3
        c = 0 if c < 0 else (6 if c > 6 else c)  # NaN passes through
        out[i] = v * c / 6


@njit(**_jit)
def hardswish_backward(grad_out, x, out):
    for i in prange(x.size):
        v = x[i]
        if v <= -3:
            out[i] = 0
        elif v < 3:
            out[i] = grad_out[i] * (v / 3 + 0.5)
        else:
            out[i] = grad_out[i]


@njit(**_jit)
def prelu_forward(x, weight, out):
    N, C, M = x.shape
    for t in prange(N * C):
        n, c = t // C, t % C
        w = weight[c]
        xr, o = x[n, c], out[n, c]
        for m in range(M):
            v = xr[m]
            o[m] = v if v > 0 else w * v


@njit(**_jit)
def prelu_backward(grad_out, x, weight, grad_x, grad_weight):
    N, C, M = x.shape
    for c in prange(C):
        w = weight[c]
        s = 0.0
        for n in range(N):
            xr, g, gx = x[n, c], grad_out[n, c], grad_x[n, c]
            for m in range(M):
                if xr[m] > 0:
                    gx[m] = g[m]
                else:
                    gx[m] = w * g[m]
                    s += np.float64(xr[m]) * g[m]
        grad_weight[c] = s
