"""Reference optimiser updates: torch's formulas written as plain NumPy expressions."""
import numpy as np


def sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        if first:
            buf[...] = g
        else:
            buf[...] = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    p[...] = p - lr * g


def adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2):
    if weight_decay:
        g = g + weight_decay * p
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g * g
    if vmax is not None:
        vmax[...] = np.maximum(vmax, v)
        v = vmax
    denom = np.sqrt(v) / np.sqrt(bias_correction2) + eps
    p[...] = p - (lr / bias_correction1) * m / denom
