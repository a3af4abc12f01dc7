"""Reference optimiser updates: torch's formulas written as plain NumPy expressions."""
import numpy as np


def _lerp(a, b, w):
    return a + w * (b - a) if w < 0.5 else b - (b - a) * (1 - w)


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


def adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, decoupled, bias_correction1, bias_correction2):
    if weight_decay and decoupled:
        p[...] = p * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    m[...] = _lerp(m, g, 1 - beta1)
    v[...] = beta2 * v + (1 - beta2) * g * g
    if vmax is not None:
        vmax[...] = np.maximum(vmax, v)
        v = vmax
    denom = np.sqrt(v) / np.sqrt(bias_correction2) + eps
    p[...] = p - (lr / bias_correction1) * (m / denom)


def rmsprop_step(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum):
    if weight_decay:
        g = g + weight_decay * p
    square_avg[...] = alpha * square_avg + (1 - alpha) * g * g
    if grad_avg is not None:
        grad_avg[...] = _lerp(grad_avg, g, 1 - alpha)
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if buf is not None:
        buf[...] = momentum * buf + g / avg
        p[...] = p - lr * buf
    else:
        p[...] = p - lr * (g / avg)


def adagrad_step(p, g, state_sum, clr, eps, weight_decay):
    if weight_decay:
        g = g + weight_decay * p
    state_sum[...] = state_sum + g * g
    p[...] = p - clr * (g / (np.sqrt(state_sum) + eps))
