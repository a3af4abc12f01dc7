"""Numba optimiser updates: each parameter element read and written once, in parallel."""
import numpy as np
from numba import njit, prange

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


@njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
def _sgd(p, g, buf, has_buf, lr, momentum, dampening, weight_decay, nesterov, first):
    for i in prange(p.size):
        gi = g[i] + weight_decay * p[i]
        if has_buf:
            b = gi if first else momentum * buf[i] + (1 - dampening) * gi
            buf[i] = b
            gi = gi + momentum * b if nesterov else b
        p[i] -= lr * gi


@njit(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
def _adam(p, g, m, v, vmax, amsgrad, lr, beta1, beta2, eps, weight_decay, bc1, bc2):
    step = lr / bc1
    inv_sqrt_bc2 = 1 / np.sqrt(bc2)
    for i in prange(p.size):
        gi = g[i] + weight_decay * p[i]
        mi = beta1 * m[i] + (1 - beta1) * gi
        vi = beta2 * v[i] + (1 - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = max(vmax[i], vi)
            vmax[i] = vi
        p[i] -= step * mi / (np.sqrt(vi) * inv_sqrt_bc2 + eps)


def sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    has_buf = buf is not None
    _sgd(p, g, buf if has_buf else p[:0], has_buf, lr, momentum, dampening, weight_decay, nesterov, first)


def adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2):
    ams = vmax is not None
    _adam(p, g, m, v, vmax if ams else p[:0], ams, lr, beta1, beta2, eps, weight_decay,
          bias_correction1, bias_correction2)
