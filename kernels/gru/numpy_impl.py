"""Vectorised NumPy GRU layer, and the driver the compiled backends share.

The LSTM driver's design (``kernels/lstm/numpy_impl.py``, whose helpers it reuses): the input
projection of all ``T`` steps is one GEMM before the loop; per step one recurrent GEMM into a
preallocated buffer and one gate pass; in backward one GEMM per step for the recurrent
gradient, the gate gradients of all steps kept, and ``grad_x``, ``grad_w_ih``, ``grad_w_hh``
as big GEMMs over chunks of steps. The time loop runs BLAS on one thread; the big GEMMs run
beside it on the one helper thread (when fastnn has 2+ threads).

Who writes what. Forward: the helper writes ``xg[lo:hi]`` of the chunks it was given, the
caller reads a chunk only after waiting for it and alone writes ``hs`` and ``acts``.
Backward: the caller alone writes ``dxg``, ``dhg``, ``dh_rec``, ``dhz`` (the time loop); the
helper alone writes ``grad_w_ih``, ``grad_w_hh`` and ``grad_x`` (every chunk, in the fixed
order T-1 .. 0, one job at a time), reading only rows of ``dxg``/``dhg`` the loop has
finished; the caller reads those gradients only after waiting for every job. No array is
written by two threads and every sum is added in the same order on every run.
"""
import numpy as np

from .._threads import single_thread_blas
from ..lstm.numpy_impl import _chunks, _even_chunks, _spawn, _workspace
from ..lstm.reference import _sigmoid


def gru_gates_forward(xg, hg, b_hh, h_prev, h, act):
    H = h.shape[1]
    np.add(xg[:, :2 * H], hg[:, :2 * H], out=act[:, :2 * H])
    act[:, :2 * H] += b_hh[:2 * H]
    act[:, :2 * H] = _sigmoid(act[:, :2 * H])
    np.add(hg[:, 2 * H:], b_hh[2 * H:], out=act[:, 3 * H:])         # hn
    np.multiply(act[:, :H], act[:, 3 * H:], out=act[:, 2 * H:3 * H])
    act[:, 2 * H:3 * H] += xg[:, 2 * H:]
    np.tanh(act[:, 2 * H:3 * H], out=act[:, 2 * H:3 * H])           # n
    np.subtract(h_prev, act[:, 2 * H:3 * H], out=h)
    h *= act[:, H:2 * H]
    h += act[:, 2 * H:3 * H]


def gru_gates_backward(grad_h, grad_h_rec, act, h_prev, grad_xg, grad_hg, grad_h_direct):
    H = h_prev.shape[1]
    r, z, n, hn = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    dh = grad_h + grad_h_rec
    dn = dh * (1 - z) * (1 - n * n)
    grad_xg[:, 2 * H:] = dn
    np.multiply(dn, r, out=grad_hg[:, 2 * H:])
    np.multiply(dn * hn, r * (1 - r), out=grad_xg[:, :H])
    np.multiply(dh * (h_prev - n), z * (1 - z), out=grad_xg[:, H:2 * H])
    grad_hg[:, :2 * H] = grad_xg[:, :2 * H]
    np.multiply(dh, z, out=grad_h_direct)


def layer_functions(gates_forward, gates_backward):
    """``(gru_layer_forward, gru_layer_backward)`` using the given gate kernels (see the module
    docstring for the threads and who writes what)."""

    def gru_layer_forward(x, w_ih, w_hh, b_ih, b_hh, h0, hs, acts):
        T, B, I = x.shape
        H3 = w_hh.shape[0]
        xg = _workspace("gru_xg", (T, B, H3), x.dtype)

        def project(lo, hi):  # input projection of steps lo..hi-1, one GEMM
            np.matmul(x[lo:hi].reshape(-1, I), w_ih.T, out=xg[lo:hi].reshape(-1, H3))
            xg[lo:hi] += b_ih

        hg = np.empty((B, H3), dtype=x.dtype)
        # W_hh^T as its own C-contiguous array: OpenBLAS's small-M GEMM is faster on it than on
        # the transposed view (as in the LSTM driver)
        w_hh_t = _workspace("gru_w_hh_t", w_hh.shape[::-1], w_hh.dtype) if T > 4 else None
        if w_hh_t is not None:
            w_hh_t[...] = w_hh.T
        else:
            w_hh_t = w_hh.T
        h_prev = h0
        ready = {}
        try:
            with single_thread_blas():
                parts = _chunks(T)
                project(*parts[0])
                ready = {lo: _spawn(project, lo, hi) for lo, hi in parts[1:]}
                for t in range(T):
                    if t in ready:
                        ready.pop(t).result()
                    np.matmul(h_prev, w_hh_t, out=hg)
                    gates_forward(xg[t], hg, b_hh, h_prev, hs[t], acts[t])
                    h_prev = hs[t]
        finally:  # (only when the loop raised) no job may still write the workspace
            for j in ready.values():
                j.result()

    def gru_layer_backward(grad_hs, grad_hn, x, w_ih, w_hh, h0, hs, acts,
                           grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_h0):
        T, B, I = x.shape
        H3, H = w_hh.shape
        dxg = _workspace("gru_dxg", (T, B, H3), x.dtype)
        dhg = _workspace("gru_dhg", (T, B, H3), x.dtype)
        dh_rec = np.array(grad_hn, copy=True)
        dhz = np.empty_like(dh_rec)
        grad_w_ih[...] = 0
        grad_w_hh[...] = 0

        def weight_grads(lo, hi):  # gradients from the gate gradients of steps lo..hi-1
            grad_w_ih[...] += dxg[lo:hi].reshape(-1, H3).T @ x[lo:hi].reshape(-1, I)
            if lo == 0:  # h_{t-1} is h0 for t = 0, hs[t-1] after
                grad_w_hh[...] += dhg[0].T @ h0
                if hi > 1:
                    grad_w_hh[...] += dhg[1:hi].reshape(-1, H3).T @ hs[:hi - 1].reshape(-1, H)
            else:
                grad_w_hh[...] += dhg[lo:hi].reshape(-1, H3).T @ hs[lo - 1:hi - 1].reshape(-1, H)
            if grad_x is not None:
                np.matmul(dxg[lo:hi].reshape(-1, H3), w_ih, out=grad_x[lo:hi].reshape(-1, I))

        jobs = []
        try:
            with single_thread_blas():
                for lo, hi in reversed(_even_chunks(T)):
                    for t in range(hi - 1, lo - 1, -1):
                        gates_backward(grad_hs[t], dh_rec, acts[t], hs[t - 1] if t else h0, dxg[t], dhg[t], dhz)
                        np.matmul(dhg[t], w_hh, out=dh_rec)
                        dh_rec += dhz
                    jobs.append(_spawn(weight_grads, lo, hi))
        finally:  # every job done (also when the loop raised): nothing writes the grads after
            for j in jobs:
                j.result()
        np.sum(dxg.reshape(T * B, H3), axis=0, out=grad_b_ih)
        np.sum(dhg.reshape(T * B, H3), axis=0, out=grad_b_hh)
        grad_h0[...] = dh_rec

    return gru_layer_forward, gru_layer_backward


gru_layer_forward, gru_layer_backward = layer_functions(gru_gates_forward, gru_gates_backward)
