"""NumPy optimiser updates: the reference's formulas in place, with one scratch array."""
import numpy as np


def sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        if first:
            np.copyto(buf, g)
        else:
            buf *= momentum
            buf += (1 - dampening) * g
        if nesterov:
            g = g + momentum * buf
        else:
            g = buf
    p -= lr * g


def adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2):
    if weight_decay:
        g = g + weight_decay * p
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    tmp = g * g
    tmp *= 1 - beta2
    v += tmp
    if vmax is not None:
        np.maximum(vmax, v, out=vmax)
        v = vmax
    np.sqrt(v, out=tmp)
    tmp *= 1 / np.sqrt(bias_correction2)
    tmp += eps
    np.divide(m, tmp, out=tmp)
    tmp *= lr / bias_correction1
    p -= tmp
