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

from fastnn._config import get_num_threads

from .. import _blas
from .._blas import NO_TRANS as NO_T, ROW_MAJOR as ROW, TRANS
from .._threads import single_thread_blas
from . import numpy_impl as _numpy_impl

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)


_GEMM_SERIAL = 1 << 17  # multiply-adds below which a GEMM runs on one thread


def _gemm_threads(rows, macs):
    return 1 if macs < _GEMM_SERIAL else max(1, min(get_num_threads(), rows))


# linear: the GEMMs run inside one parallel region, each thread calling the BLAS GEMM
# single-threaded on its own block (a function pointer, see kernels/_blas.py): fastnn's work
# stays on its OpenMP team, which then does not compete with BLAS's own thread pool. Thread t
# owns rows [M t / nt, M (t + 1) / nt) of out / grad_x (or, with fewer rows than that, the same
# share of their columns) and rows of grad_weight / entries of grad_bias likewise.
@njit(**_jit)
def _linear_forward(gemm, x, weight, bias, has_bias, out, nt, by_rows):
    M, K = x.shape
    N = weight.shape[0]
    for t in prange(nt):
        r0, r1 = (M * t // nt, M * (t + 1) // nt) if by_rows else (0, M)
        c0, c1 = (0, N) if by_rows else (N * t // nt, N * (t + 1) // nt)
        if K > 0 and r1 > r0 and c1 > c0:
            gemm(ROW, NO_T, TRANS, r1 - r0, c1 - c0, K, 1.0, x[r0:].ctypes, K, weight[c0:].ctypes, K, 0.0,
                 out[r0:, c0:].ctypes, N)
        if has_bias:
            for i in range(r0, r1):
                for j in range(c0, c1):
                    out[i, j] += bias[j]


@njit(**_jit)
def _linear_backward(gemm, grad_out, x, weight, grad_x, want_x, grad_weight, grad_bias, want_b, nt, by_rows):
    M, K = x.shape
    N = weight.shape[0]
    for t in prange(nt):
        n0, n1 = N * t // nt, N * (t + 1) // nt  # grad_weight rows and grad_bias entries of this thread
        if n1 > n0:
            gemm(ROW, TRANS, NO_T, n1 - n0, K, M, 1.0, grad_out[:, n0:].ctypes, N, x.ctypes, K, 0.0,
                 grad_weight[n0:].ctypes, K)
            if want_b:
                for j in range(n0, n1):
                    acc = 0.0
                    for i in range(M):
                        acc += grad_out[i, j]
                    grad_bias[j] = acc
        if want_x:
            r0, r1 = (M * t // nt, M * (t + 1) // nt) if by_rows else (0, M)
            c0, c1 = (0, K) if by_rows else (K * t // nt, K * (t + 1) // nt)
            if r1 > r0 and c1 > c0:
                gemm(ROW, NO_T, NO_T, r1 - r0, c1 - c0, N, 1.0, grad_out[r0:].ctypes, N, weight[:, c0:].ctypes, K,
                     0.0, grad_x[r0:, c0:].ctypes, K)


def linear_forward(x, weight, bias, out):
    blas = _blas.get()
    M, K = x.shape
    N = weight.shape[0]
    if blas is None or M == 0 or N == 0 or K == 0:  # no GEMM to call from the team, or nothing to multiply
        return _numpy_impl.linear_forward(x, weight, bias, out)
    nt = _gemm_threads(max(M, N), M * N * K)
    gemm = blas.numba_sgemm if x.dtype == np.float32 else blas.numba_dgemm
    with single_thread_blas():
        _linear_forward(gemm, x, weight, bias if bias is not None else out[0, :0], bias is not None, out, nt,
                        M >= 4 * nt)


def linear_backward(grad_out, x, weight, grad_x, grad_weight, grad_bias):
    blas = _blas.get()
    M, K = x.shape
    N = weight.shape[0]
    if blas is None or M == 0 or N == 0 or K == 0:
        return _numpy_impl.linear_backward(grad_out, x, weight, grad_x, grad_weight, grad_bias)
    nt = _gemm_threads(max(M, N, K), M * N * K)
    gemm = blas.numba_sgemm if x.dtype == np.float32 else blas.numba_dgemm
    with single_thread_blas():
        _linear_backward(gemm, grad_out, x, weight, grad_x if grad_x is not None else grad_weight[:0],
                         grad_x is not None, grad_weight, grad_bias if grad_bias is not None else grad_weight[0, :0],
                         grad_bias is not None, nt, M >= 4 * nt)


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
