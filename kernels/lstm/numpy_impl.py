"""Vectorised NumPy LSTM layer, and the driver the compiled backends share.

What changes from the reference: the input projection of all ``T`` steps is one GEMM
``(T*B, I) @ (I, 4H)`` before the loop (the reference did ``T`` small ones); per step there is
one recurrent GEMM, written into a preallocated buffer; in backward the per-step work is one
GEMM ``(B, 4H) @ (4H, H)`` for the recurrent gradient, and ``grad_x``, ``grad_w_ih`` and
``grad_w_hh`` are three big GEMMs over all steps at the end (the gate gradients of all steps
are kept). The gate maths is the reference's, in place on slices.

:func:`layer_functions` builds the layer forward/backward around any pair of gate kernels
(see the package docstring); the Numba and Cython backends pass their fused kernels to it.

Threads: the per-step GEMMs are small (B x H x 4H, 17 MFLOP for B=32, H=256) and there are
2T of them; a multi-threaded BLAS meets its team at a barrier after each, and on a busy
machine one descheduled worker stalls the step for a scheduler tick. The time loop therefore
runs BLAS on one thread; the big all-steps GEMMs before and after it use every thread.
"""
import threading

import numpy as np

from .._threads import executor, single_thread_blas

from .reference import _sigmoid

def lstm_gates_forward(xg, hg, c_prev, h, c, act):
    H = c.shape[1]
    np.add(xg, hg, out=act)
    act[:, :2 * H] = _sigmoid(act[:, :2 * H])
    act[:, 3 * H:] = _sigmoid(act[:, 3 * H:])
    np.tanh(act[:, 2 * H:3 * H], out=act[:, 2 * H:3 * H])
    np.multiply(act[:, H:2 * H], c_prev, out=c)
    c += act[:, :H] * act[:, 2 * H:3 * H]
    np.tanh(c, out=h)
    h *= act[:, 3 * H:]


def lstm_gates_backward(grad_h, grad_h_rec, grad_c, act, c_prev, c, grad_gates, grad_c_prev):
    H = c.shape[1]
    i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    dh = grad_h + grad_h_rec
    tc = np.tanh(c)
    dc = dh * o * (1 - tc * tc) + grad_c
    grad_gates[:, :H] = dc * g * i * (1 - i)
    grad_gates[:, H:2 * H] = dc * c_prev * f * (1 - f)
    grad_gates[:, 2 * H:3 * H] = dc * i * (1 - g * g)
    grad_gates[:, 3 * H:] = dh * tc * o * (1 - o)
    np.multiply(dc, f, out=grad_c_prev)


_scratch = threading.local()


def _workspace(name, shape, dtype):
    """A per-thread scratch array kept between calls: the input projection and the gate
    gradients (6.5 MB each for T=50, B=32, H=256) would otherwise be fresh pages, faulted in
    and zeroed by the OS on every call."""
    cache = _scratch.__dict__
    key = (name, shape, np.dtype(dtype).str)
    a = cache.get(key)
    if a is None:
        if len(cache) >= 8:  # a few shapes in use at once (an encoder and a decoder); drop old ones
            cache.clear()
        a = cache[key] = np.empty(shape, dtype=dtype)
    return a


class _Done:
    def result(self):
        return None


def _spawn(fn, *args):
    """Run ``fn(*args)`` on the helper thread when fastnn has 2+ threads, else now.

    The helper is one thread: jobs run one at a time, in submission order. That is what makes
    the backward's ``grad_w += ...`` accumulations safe and their order fixed, *provided the
    caller itself never runs such a job while one of its jobs may be running*: every chunk goes
    through here, and the caller only waits. NumPy releases the GIL inside BLAS, so a job's GEMM
    runs beside the caller's time loop.
    """
    from fastnn._config import get_num_threads

    if get_num_threads() < 2:
        fn(*args)
        return _Done()
    return executor(1, "lstm").submit(fn, *args)


def _chunks(T):
    """Split range(T) into contiguous (lo, hi) chunks doubling in size from t = 0 (2, 4, 8 ...):
    forward projects the small first chunk itself and starts the loop at once while the helper
    projects the later chunks, each ready before the loop reaches it."""
    out, lo, k = [], 0, 2
    while lo < T:
        out.append((lo, min(T, lo + k)))
        lo, k = lo + k, 2 * k
    return out


def _even_chunks(T, n=8):
    """Split range(T) into about ``n`` equal contiguous (lo, hi) chunks: backward hands each
    to the helper as soon as its steps are done, so the helper starts early and the chunk left
    for after the loop is small."""
    k = max(1, -(-T // n))
    return [(lo, min(T, lo + k)) for lo in range(0, T, k)]


def layer_functions(gates_forward, gates_backward):
    """``(lstm_layer_forward, lstm_layer_backward)`` using the given gate kernels.

    The time loop is sequential and latency-bound (one small GEMM and one gate pass per step,
    on one BLAS thread); the big GEMMs that do not depend on it run beside it on a helper
    thread, chunk by chunk: in forward the input projection of later steps, in backward the
    weight and input gradients of the steps already done.

    Who writes what. Forward: the helper writes ``xg[lo:hi]`` of the chunks it was given, the
    caller only reads a chunk after waiting for it; the caller alone writes ``hs``, ``cs``,
    ``acts``. Backward: the caller alone writes ``dz``, ``dh_rec``, ``dc`` (the time loop);
    the helper alone writes ``grad_w_ih``, ``grad_w_hh`` and ``grad_x`` (every chunk, the last
    one too, in the fixed order T-1 .. 0, one job at a time), reading only ``dz`` rows the loop
    has finished; the caller reads those grads only after waiting for every job. So no array is
    written by two threads, and the sums are added in the same order on every run.
    """

    def lstm_layer_forward(x, w_ih, w_hh, bias, h0, c0, hs, cs, acts):
        T, B, I = x.shape
        H4 = w_hh.shape[0]
        xg = _workspace("xg", (T, B, H4), x.dtype)

        def project(lo, hi):  # input projection of steps lo..hi-1, one GEMM
            np.matmul(x[lo:hi].reshape(-1, I), w_ih.T, out=xg[lo:hi].reshape(-1, H4))
            if bias is not None:
                xg[lo:hi] += bias

        hg = np.empty((B, H4), dtype=x.dtype)
        # W_hh^T as its own C-contiguous array: OpenBLAS's small-M GEMM runs ~9 % faster on it
        # than on the transposed view (266 vs 291 us for B=32, H=256); worth the copy for T > 4
        w_hh_t = _workspace("w_hh_t", w_hh.shape[::-1], w_hh.dtype) if T > 4 else None
        if w_hh_t is not None:
            w_hh_t[...] = w_hh.T
        else:
            w_hh_t = w_hh.T
        h_prev, c_prev = h0, c0
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
                    gates_forward(xg[t], hg, c_prev, hs[t], cs[t], acts[t])
                    h_prev, c_prev = hs[t], cs[t]
        finally:  # (only when the loop raised) no job may still write the workspace
            for j in ready.values():
                j.result()

    def lstm_layer_backward(grad_hs, grad_hn, grad_cn, x, w_ih, w_hh, h0, c0, hs, cs, acts,
                            grad_x, grad_w_ih, grad_w_hh, grad_b, grad_h0, grad_c0):
        T, B, I = x.shape
        H4, H = w_hh.shape
        dz = _workspace("dz", (T, B, H4), x.dtype)
        dh_rec = np.array(grad_hn, copy=True)
        dc = np.array(grad_cn, copy=True)
        dc_prev = np.empty_like(dc)  # ping-pong: in-place grad_c -> grad_c_prev would alias, and
        #                              the compiled loops fall back to scalar code when it does
        grad_w_ih[...] = 0
        grad_w_hh[...] = 0

        def weight_grads(lo, hi):  # gradients from the gate gradients of steps lo..hi-1
            d = dz[lo:hi].reshape(-1, H4)
            grad_w_ih[...] += d.T @ x[lo:hi].reshape(-1, I)
            if lo == 0:  # h_{t-1} is h0 for t = 0, hs[t-1] after
                grad_w_hh[...] += dz[0].T @ h0
                if hi > 1:
                    grad_w_hh[...] += dz[1:hi].reshape(-1, H4).T @ hs[:hi - 1].reshape(-1, H)
            else:
                grad_w_hh[...] += d.T @ hs[lo - 1:hi - 1].reshape(-1, H)
            if grad_x is not None:
                np.matmul(d, w_ih, out=grad_x[lo:hi].reshape(-1, I))

        jobs = []
        try:
            with single_thread_blas():
                for lo, hi in reversed(_even_chunks(T)):
                    for t in range(hi - 1, lo - 1, -1):
                        gates_backward(grad_hs[t], dh_rec, dc, acts[t], cs[t - 1] if t else c0, cs[t], dz[t],
                                       dc_prev)
                        dc, dc_prev = dc_prev, dc
                        np.matmul(dz[t], w_hh, out=dh_rec)
                    jobs.append(_spawn(weight_grads, lo, hi))
        finally:  # every job done (also when the loop raised): nothing writes dz or the grads after
            for j in jobs:
                j.result()
        np.sum(dz.reshape(T * B, H4), axis=0, out=grad_b)
        grad_h0[...] = dh_rec
        grad_c0[...] = dc

    return lstm_layer_forward, lstm_layer_backward


lstm_layer_forward, lstm_layer_backward = layer_functions(lstm_gates_forward, lstm_gates_backward)
