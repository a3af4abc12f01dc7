"""Numba optimiser updates: each parameter element read and written once, in parallel.

Per element, in registers: weight decay, the running averages, the denominator and the
parameter update (torch's operation order). Each iteration owns its element: no two threads
write the same memory.
"""
import numpy as np
from numba import njit, prange

from ..dense.numba_impl import FASTMATH

_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)


@njit(inline="always", fastmath=FASTMATH)
def _lerp(a, b, w):
    return a + w * (b - a) if w < 0.5 else b - (b - a) * (1 - w)


@njit(**_jit)
def _sgd(p, g, buf, has_buf, lr, momentum, dampening, weight_decay, nesterov, first):
    for i in prange(p.size):
        gi = g[i] + weight_decay * p[i]
        if has_buf:
            b = gi if first else momentum * buf[i] + (1 - dampening) * gi
            buf[i] = b
            gi = gi + momentum * b if nesterov else b
        p[i] -= lr * gi


@njit(**_jit)
def _adam(p, g, m, v, vmax, amsgrad, lr, beta1, beta2, eps, weight_decay, decoupled, bc1, bc2):
    step = lr / bc1
    sqrt_bc2 = np.sqrt(bc2)
    shrink = 1 - lr * weight_decay if decoupled else 1.0
    wd = 0.0 if decoupled else weight_decay
    for i in prange(p.size):
        pi = p[i] * shrink
        gi = g[i] + wd * pi
        mi = _lerp(np.float64(m[i]), gi, 1 - beta1)
        vi = beta2 * v[i] + (1 - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vmax[i] = max(vmax[i], v[i])
            vi = vmax[i]
        else:
            vi = v[i]
        p[i] = pi - step * (m[i] / (np.sqrt(vi) / sqrt_bc2 + eps))


@njit(**_jit)
def _rmsprop(p, g, sq, ga, buf, centered, has_buf, lr, alpha, eps, weight_decay, momentum):
    for i in prange(p.size):
        gi = g[i] + weight_decay * p[i]
        s = alpha * sq[i] + (1 - alpha) * gi * gi
        sq[i] = s
        if centered:
            a = _lerp(np.float64(ga[i]), gi, 1 - alpha)
            ga[i] = a
            avg = np.sqrt(sq[i] - ga[i] * ga[i]) + eps
        else:
            avg = np.sqrt(sq[i]) + eps
        if has_buf:
            b = momentum * buf[i] + gi / avg
            buf[i] = b
            p[i] -= lr * buf[i]
        else:
            p[i] -= lr * (gi / avg)


@njit(**_jit)
def _adagrad(p, g, ssum, clr, eps, weight_decay):
    for i in prange(p.size):
        gi = g[i] + weight_decay * p[i]
        ssum[i] += gi * gi
        p[i] -= clr * (gi / (np.sqrt(ssum[i]) + eps))


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
