"""Numba dense kernels: one parallel pass per op, fused where the NumPy version takes several.

* Elementwise ops run one ``prange`` loop over the flat array, computing in registers what
  NumPy does in several full passes (sigmoid: 6 passes -> 1).
* Softmax, log-softmax and the fused softmax-cross-entropy go row by row (``prange`` over
  rows): max, sum of exponentials and the output in three sweeps of one row that stays in
  cache; the loss gradient never builds a one-hot matrix.
* The GEMMs of ``linear`` stay in BLAS (called from Python, outside any ``prange``); Numba
  only does the bias epilogue and the bias-gradient reduction.

``FASTMATH`` lets LLVM reassociate and contract (vectorised reductions, FMA) but keeps
``nnan``/``ninf`` off: inputs may hold ``-inf`` (masks) or NaN and must give exact results.
"""
import numpy as np
from numba import njit, prange

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)


@njit(**_jit)
def _add_bias(out, bias):
    n, m = out.shape
    for i in prange(n):
        for j in range(m):
            out[i, j] += bias[j]


@njit(**_jit)
def _sum_rows(g, out):
    # column sums of g (N, M), parallel over column blocks so each thread owns its outputs
    n, m = g.shape
    nblk = (m + 63) // 64
    for b in prange(nblk):
        j0 = b * 64
        j1 = min(m, j0 + 64)
        for j in range(j0, j1):
            out[j] = 0
        for i in range(n):
            for j in range(j0, j1):
                out[j] += g[i, j]


def linear_forward(x, weight, bias, out):
    np.matmul(x, weight.T, out=out)
    if bias is not None:
        _add_bias(out, bias)


def linear_backward(grad_out, x, weight, grad_x, grad_weight, grad_bias):
    if grad_x is not None:
        np.matmul(grad_out, weight, out=grad_x)
    np.matmul(grad_out.T, x, out=grad_weight)
    if grad_bias is not None:
        _sum_rows(grad_out, grad_bias)


@njit(**_jit)
def relu_forward(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = v if (v > 0 or v != v) else 0


@njit(**_jit)
def relu_backward(grad_out, y, out):
    for i in prange(y.size):
        out[i] = 0 if y[i] <= 0 else grad_out[i]


@njit(**_jit)
def sigmoid_forward(x, out):
    for i in prange(x.size):
        v = x[i]
        if v >= 0:
            out[i] = 1 / (1 + np.exp(-v))
        else:
            e = np.exp(v)
            out[i] = e / (1 + e)


@njit(**_jit)
def sigmoid_backward(grad_out, y, out):
    for i in prange(y.size):
        out[i] = grad_out[i] * y[i] * (1 - y[i])


@njit(**_jit)
def tanh_forward(x, out):
    for i in prange(x.size):
        out[i] = np.tanh(x[i])


@njit(**_jit)
def tanh_backward(grad_out, y, out):
    for i in prange(y.size):
        out[i] = grad_out[i] * (1 - y[i] * y[i])


@njit(inline="always", fastmath=FASTMATH)
def _row_max(x, i):
    m = x[i, 0]
    for j in range(1, x.shape[1]):
        m = max(m, x[i, j])
    return m


@njit(inline="always", fastmath=FASTMATH)
def _scaled_softmax_row(x, i, out, scale):
    """out[i] = scale * softmax(x[i]): max, sum of exponentials, output (one row, in cache)."""
    c = x.shape[1]
    m = _row_max(x, i)
    s = 0.0
    for j in range(c):
        e = np.exp(x[i, j] - m)
        out[i, j] = e
        s += e
    inv = scale / s
    for j in range(c):
        out[i, j] *= inv


@njit(inline="always", fastmath=FASTMATH)
def _logsumexp_row(x, i):
    m = _row_max(x, i)
    s = 0.0
    for j in range(x.shape[1]):
        s += np.exp(x[i, j] - m)
    return m + np.log(s)


@njit(**_jit)
def softmax_forward(x, out):
    for i in prange(x.shape[0]):
        _scaled_softmax_row(x, i, out, 1.0)


@njit(**_jit)
def softmax_backward(grad_out, y, out):
    n, c = y.shape
    for i in prange(n):
        s = 0.0
        for j in range(c):
            s += grad_out[i, j] * y[i, j]
        for j in range(c):
            out[i, j] = y[i, j] * (grad_out[i, j] - s)


@njit(**_jit)
def log_softmax_forward(x, out):
    for i in prange(x.shape[0]):
        lse = _logsumexp_row(x, i)
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] - lse


@njit(**_jit)
def log_softmax_backward(grad_out, y, out):
    n, c = y.shape
    for i in prange(n):
        s = 0.0
        for j in range(c):
            s += grad_out[i, j]
        for j in range(c):
            out[i, j] = grad_out[i, j] - np.exp(y[i, j]) * s


@njit(**_jit)
def cross_entropy_forward(logits, target, losses):
    for i in prange(logits.shape[0]):
        losses[i] = _logsumexp_row(logits, i) - logits[i, target[i]]


@njit(**_jit)
def cross_entropy_backward(logits, target, scale, out):
    # (softmax - onehot) * scale, without building the one-hot matrix
    for i in prange(logits.shape[0]):
        _scaled_softmax_row(logits, i, out, scale)
        out[i, target[i]] -= scale


_BLOCK = 4096


@njit(**_jit)
def mse_forward(y, t):
    # one partial per fixed block, added in block order: the same bits on every run and at any
    # thread count (not a prange reduction, whose partials follow the thread split)
    n = y.size
    nblk = (n + _BLOCK - 1) // _BLOCK
    part = np.empty(nblk)
    for b in prange(nblk):
        acc = 0.0
        for i in range(b * _BLOCK, min(n, (b + 1) * _BLOCK)):
            d = np.float64(y[i]) - np.float64(t[i])
            acc += d * d
        part[b] = acc
    s = 0.0
    for b in range(nblk):
        s += part[b]
    return s


@njit(**_jit)
def mse_backward(y, t, scale, out):
    for i in prange(y.size):
        out[i] = (y[i] - t[i]) * scale
