"""Reference activation kernels: each function's textbook formula and its derivative, in
float64, one NumPy expression each (``math.erf`` element by element for the exact GELU: NumPy
has no erf).

This is the readable truth every other backend is tested against. It allocates freely.
"""
import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])
_K = math.sqrt(2 / math.pi)
_C = 0.044715


def _phi(x):
    """Standard normal density and distribution function."""
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi), 0.5 * (1 + _erf(x / math.sqrt(2)))


def gelu_forward(x, out, tanh):
    x = x.astype(np.float64)
    if tanh:
        out[...] = 0.5 * x * (1 + np.tanh(_K * (x + _C * x**3)))
    else:
        out[...] = x * _phi(x)[1]


def gelu_backward(grad_out, x, out, tanh):
    x = x.astype(np.float64)
    if tanh:
        t = np.tanh(_K * (x + _C * x**3))
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _K * (1 + 3 * _C * x * x)
    else:
        pdf, cdf = _phi(x)
        d = cdf + x * pdf
    out[...] = grad_out * d


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def silu_forward(x, out):
    x = x.astype(np.float64)
    out[...] = x * _sigmoid(x)


def silu_backward(grad_out, x, out):
    x = x.astype(np.float64)
    s = _sigmoid(x)
    out[...] = grad_out * s * (1 + x * (1 - s))


def leaky_relu_forward(x, out, negative_slope):
    out[...] = np.where(x > 0, x, x * negative_slope)


def leaky_relu_backward(grad_out, x, out, negative_slope):
    out[...] = np.where(x > 0, grad_out, grad_out * negative_slope)


def elu_forward(x, out, alpha):
    x = x.astype(np.float64)
    out[...] = np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def elu_backward(grad_out, x, out, alpha):
    x = x.astype(np.float64)
    out[...] = np.where(x <= 0, grad_out * alpha * np.exp(np.minimum(x, 0)), grad_out)


def softplus_forward(x, out, beta, threshold):
    x = x.astype(np.float64)
    bx = beta * x
    linear = bx > threshold
    out[...] = np.where(linear, x, np.log1p(np.exp(np.where(linear, 0, bx))) / beta)


def softplus_backward(grad_out, x, out, beta, threshold):
    x = x.astype(np.float64)
    bx = beta * x
    linear = bx > threshold
    out[...] = np.where(linear, grad_out, grad_out * _sigmoid(np.where(linear, 0, bx)))


def hardswish_forward(x, out):
    out[...] = x * np.clip(x + 3, 0, 6) / 6


def hardswish_backward(grad_out, x, out):
    out[...] = np.where(x <= -3, 0, np.where(x < 3, grad_out * (x / 3 + 0.5), grad_out))  # torch 2.13's edges


def prelu_forward(x, weight, out):
    out[...] = np.where(x > 0, x, weight[None, :, None] * x)


def prelu_backward(grad_out, x, weight, grad_x, grad_weight):
    grad_x[...] = np.where(x > 0, grad_out, weight[None, :, None] * grad_out)
    grad_weight[...] = np.where(x > 0, 0, x.astype(np.float64) * grad_out).sum(axis=(0, 2))
