"""NumPy optimiser updates: the reference's formulas in place, with one or two scratch arrays."""
import numpy as np


def _lerp_(a, b, w, tmp):
    """a = lerp(a, b, w) in place (torch's two-sided formula)."""
    np.subtract(b, a, out=tmp)
    if w < 0.5:
        tmp *= w
        a += tmp
    else:
        tmp *= 1 - w
        np.subtract(b, tmp, out=a)


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


def adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, decoupled, bias_correction1, bias_correction2):
    if weight_decay and decoupled:
        p *= 1 - lr * weight_decay
    elif weight_decay:
        g = g + weight_decay * p
    tmp = np.empty_like(p)
    _lerp_(m, g, 1 - beta1, tmp)
    v *= beta2
    np.multiply(g, g, out=tmp)
    tmp *= 1 - beta2
    v += tmp
    if vmax is not None:
        np.maximum(vmax, v, out=vmax)
        v = vmax
    np.sqrt(v, out=tmp)
    tmp /= np.sqrt(bias_correction2)
    tmp += eps
    np.divide(m, tmp, out=tmp)
    tmp *= lr / bias_correction1
    p -= tmp


def rmsprop_step(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum):
    if weight_decay:
        g = g + weight_decay * p
    tmp = np.multiply(g, g)
    square_avg *= alpha
    tmp *= 1 - alpha
    square_avg += tmp
    if grad_avg is not None:
        _lerp_(grad_avg, g, 1 - alpha, tmp)
        np.multiply(grad_avg, grad_avg, out=tmp)
        np.subtract(square_avg, tmp, out=tmp)
        np.sqrt(tmp, out=tmp)
    else:
        np.sqrt(square_avg, out=tmp)
    tmp += eps
    np.divide(g, tmp, out=tmp)
    if buf is not None:
        buf *= momentum
        buf += tmp
        np.multiply(buf, lr, out=tmp)
    else:
        tmp *= lr
    p -= tmp


def adagrad_step(p, g, state_sum, clr, eps, weight_decay):
    if weight_decay:
        g = g + weight_decay * p
    tmp = np.multiply(g, g)
    state_sum += tmp
    np.sqrt(state_sum, out=tmp)
    tmp += eps
    np.divide(g, tmp, out=tmp)
    tmp *= clr
    p -= tmp
