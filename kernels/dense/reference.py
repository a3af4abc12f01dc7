"""Reference dense kernels: the seed's NumPy MLP (common-networks.md, 全连接), made correct.

What changed from the seed, and why:

* weights are ``(out, in)`` like torch (the seed used ``(in, out)``), so ``x @ W.T + b``;
* ``sigmoid`` is ``1/(1+exp(-x))`` only for ``x >= 0`` and ``exp(x)/(1+exp(x))`` otherwise, so
  ``sigmoid(-1000)`` is 0 without an overflow warning;
* the loss gradient ``A2 - y_true`` divided by the batch is kept, fused with a log-sum-exp
  cross-entropy that stays finite for logits of 1e4 (the seed took softmax then log);
* the seed divided dW/db by the batch inside the layer; here the 1/N lives in the loss
  gradient, as in torch, so a layer's backward is the plain chain rule.

This is the readable truth every other backend is tested against. It allocates freely.
"""
import numpy as np


def linear_forward(x, weight, bias, out):
    z = np.dot(x, weight.T)
    if bias is not None:
        z = z + bias
    out[...] = z


def linear_backward(grad_out, x, weight, grad_x, grad_weight, grad_bias):
    # "the delta sits where the parameter sat in dot()" (seed, 矩阵求导注意点)
    if grad_x is not None:
        grad_x[...] = np.dot(grad_out, weight)
    grad_weight[...] = np.dot(grad_out.T, x)
    if grad_bias is not None:
        grad_bias[...] = np.sum(grad_out, axis=0)


def relu_forward(x, out):
    out[...] = np.maximum(x, 0)  # NaN stays NaN, as in torch


def relu_backward(grad_out, y, out):
    out[...] = np.where(y <= 0, 0, grad_out)


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_forward(x, out):
    out[...] = _sigmoid(x)


def sigmoid_backward(grad_out, y, out):
    out[...] = grad_out * y * (1 - y)  # seed: dZ1 = dA1 * A1 * (1 - A1)


def tanh_forward(x, out):
    out[...] = np.tanh(x)


def tanh_backward(grad_out, y, out):
    out[...] = grad_out * (1 - y * y)


def softmax_forward(x, out):
    exps = np.exp(x - np.max(x, axis=1, keepdims=True))  # seed's softmax
    out[...] = exps / np.sum(exps, axis=1, keepdims=True)


def softmax_backward(grad_out, y, out):
    out[...] = y * (grad_out - np.sum(grad_out * y, axis=1, keepdims=True))


def _log_softmax(x):
    shifted = x - np.max(x, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def log_softmax_forward(x, out):
    out[...] = _log_softmax(x)


def log_softmax_backward(grad_out, y, out):
    out[...] = grad_out - np.exp(y) * np.sum(grad_out, axis=1, keepdims=True)


def cross_entropy_forward(logits, target, losses):
    logp = _log_softmax(logits)
    losses[...] = -logp[np.arange(logits.shape[0]), target]


def cross_entropy_backward(logits, target, scale, out):
    exps = np.exp(logits - np.max(logits, axis=1, keepdims=True))
    a2 = exps / np.sum(exps, axis=1, keepdims=True)
    y_true = np.eye(logits.shape[1], dtype=logits.dtype)[target]  # seed: np.eye(output_size)[y]
    out[...] = (a2 - y_true) * scale  # seed: dZ2 = A2 - y_true, / m


def mse_forward(y, t):
    d = y - t
    return float(np.sum(d * d))


def mse_backward(y, t, scale, out):
    out[...] = (y - t) * scale
