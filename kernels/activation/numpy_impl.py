"""Vectorised NumPy activations: the reference's formulas in the input dtype, one ufunc pass
at a time, into the caller's ``out`` (and one scratch array where a formula needs two).

NumPy has no ``erf`` ufunc: the exact GELU calls ``math.erf`` per element (the reference's
``np.vectorize``), so this rung is slow for ``approximate="none"``; the compiled backends
compute it in one vectorised pass.
"""
import math

import numpy as np

from .reference import _erf

_K = math.sqrt(2 / math.pi)
_C = 0.044715


def _tanh_inner(x, out):
    # out = tanh(sqrt(2/pi) * (x + 0.044715 x^3))
    np.multiply(x, x, out=out)
    out *= _C * _K
    out += _K
    out *= x
    np.tanh(out, out=out)


def gelu_forward(x, out, tanh):
    if tanh:
        _tanh_inner(x, out)
        out += 1
    else:
        out[...] = _erf(x * (1 / math.sqrt(2)))
        out += 1
    out *= x
    out *= 0.5


def gelu_backward(grad_out, x, out, tanh):
    if tanh:
        # 0.5 (1 + t) + 0.5 x (1 - t^2) K (1 + 3 C x^2) with t = tanh(K (x + C x^3))
        t = np.empty_like(x)
        _tanh_inner(x, t)
        np.multiply(x, x, out=out)
        out *= 3 * _C * _K
        out += _K
        out *= x
        out *= 0.5
        out *= 1 - t * t
        t += 1
        t *= 0.5
        out += t
    else:
        # Phi(x) + x phi(x)
        pdf = np.multiply(x, x)
        pdf *= -0.5
        np.exp(pdf, out=pdf)
        pdf *= x * (1 / math.sqrt(2 * math.pi))
        out[...] = _erf(x * (1 / math.sqrt(2)))
        out += 1
        out *= 0.5
        out += pdf
    out *= grad_out


def _sigmoid(x, out):
    np.abs(x, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.add(out, 1, out=out)
    np.reciprocal(out, out=out)
    np.subtract(1, out, out=out, where=x < 0)


def silu_forward(x, out):
    _sigmoid(x, out)
    out *= x


def silu_backward(grad_out, x, out):
    s = np.empty_like(x)
    _sigmoid(x, s)
    np.subtract(1, s, out=out)
    out *= x
    out += 1
    out *= s
    out *= grad_out


def leaky_relu_forward(x, out, negative_slope):
    np.multiply(x, negative_slope, out=out)
    np.copyto(out, x, where=x > 0)


def leaky_relu_backward(grad_out, x, out, negative_slope):
    np.multiply(grad_out, negative_slope, out=out)
    np.copyto(out, grad_out, where=x > 0)


def elu_forward(x, out, alpha):
    np.minimum(x, 0, out=out)
    np.expm1(out, out=out)
    out *= alpha
    np.copyto(out, x, where=x > 0)


def elu_backward(grad_out, x, out, alpha):
    np.minimum(x, 0, out=out)
    np.exp(out, out=out)
    out *= alpha
    out *= grad_out
    np.copyto(out, grad_out, where=~(x <= 0))  # torch's test: a NaN input passes grad_out


def softplus_forward(x, out, beta, threshold):
    bx = np.multiply(x, beta)
    linear = bx > threshold
    bx[linear] = 0
    np.exp(bx, out=out)
    np.log1p(out, out=out)
    out /= beta
    np.copyto(out, x, where=linear)


def softplus_backward(grad_out, x, out, beta, threshold):
    bx = np.multiply(x, beta)
    linear = bx > threshold
    bx[linear] = 0
    _sigmoid(bx, out)
    out *= grad_out
    np.copyto(out, grad_out, where=linear)


def hardswish_forward(x, out):
    np.add(x, 3, out=out)
    np.clip(out, 0, 6, out=out)
    out *= x
    out /= 6


def hardswish_backward(grad_out, x, out):
    np.divide(x, 3, out=out)
    out += 0.5
    out *= grad_out
    np.copyto(out, grad_out, where=~(x < 3))  # x >= 3 or NaN, as torch
    out[x <= -3] = 0


def prelu_forward(x, weight, out):
    np.multiply(x, weight[:, None], out=out)
    np.copyto(out, x, where=x > 0)


def prelu_backward(grad_out, x, weight, grad_x, grad_weight):
    pos = x > 0
    np.einsum("ncm,ncm->c", np.where(pos, 0, x), grad_out, dtype=np.float64, out=grad_weight)
    np.multiply(grad_out, weight[:, None], out=grad_x)
    np.copyto(grad_x, grad_out, where=pos)
