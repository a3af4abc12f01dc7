"""The im2col + BLAS driver shared by the Numba and Cython backends.

Each backend supplies four *serial*, GIL-free compiled loops (``ops``)::

    im2col(x, n0, n1, cols, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW)
        cols[(c, i, j), n * P + p] = padded x[n0 + n, c] at tap (i, j) of output p
    col2im(cols, grad_x, n0, n1, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW)
        grad_x[n0:n1] = sum of the cols entries that came from each input pixel
    gemm_to_nchw(tmp, b, out, n0, n1, has_bias)     tmp (K, n*P) -> out[n0:n1] + bias
    nchw_to_gemm(grad_out, n0, n1, g, grad_b)       grad_out[n0:n1] -> g (K, n*P); grad_b += row sums

and this driver runs them with one BLAS GEMM per group and batch chunk.

Why threads over the batch, BLAS single-threaded
------------------------------------------------
The batch is cut into chunks (at least two per thread) that the threads
(``fastnn.get_num_threads()``) take from a shared counter; each thread unrolls, multiplies
(BLAS on one thread, in the calling thread) and scatters its chunks with its own buffers.

Who writes what: a chunk's thread alone writes that chunk's images of ``out`` (forward) and
``grad_x`` (backward) and its own scratch. ``grad_w``/``grad_b`` get one partial sum per
*chunk* (not per thread), added in chunk order by :class:`~fastnn.kernels._threads.OrderedSum`
under a lock, so they are the same bits on every run whichever thread took which chunk
(chunk boundaries depend on the thread count, so across thread counts only rounding
differs). A multi-threaded
BLAS call instead synchronises its threads inside every GEMM: on the shared 2-core machine
this was 3-10x slower than one thread per GEMM (64x576 @ 576x3136: 24-32 ms on 2 BLAS threads
vs 3.5-7 ms on one, measured), and the per-image GEMMs of a convolution are big enough to run near a
core's peak on their own. While the driver runs, OpenBLAS is set to one thread and restored
after (a ctypes call, ~2 us).

Memory: per thread, ``cols (C*KH*KW, n*P)`` and ``tmp``/``g`` ``(K, n*P)`` for a chunk of ``n``
images with ``cols`` under ``COL_BYTES / threads``; the backward adds ``(K, C/groups*KH*KW)``
partial ``grad_w`` buffers, one per chunk finished ahead of an earlier one still running
(about one per thread), reused. It does not grow with the batch.
"""
import itertools

import numpy as np

from fastnn._config import get_num_threads

from .._threads import OrderedSum, executor, single_thread_blas

from . import choose_chunk, choose_strategy

def _run(fn, N, step):
    """Run ``fn(n0, n1, state)`` over the batch in chunks of ``step`` images on ``nt`` threads
    (``state``: what ``fn`` returned for this thread's previous chunk, None at first).

    Chunks are handed out dynamically (a shared counter): a thread that the OS delays does
    fewer chunks instead of making the others wait at the end.
    """
    chunks = [(n0, min(N, n0 + step)) for n0 in range(0, N, step)]
    nt = max(1, min(get_num_threads(), len(chunks)))
    ticket = itertools.count()  # next() is atomic under the GIL

    def worker():
        state = None
        for t in iter(lambda: next(ticket), None):
            if t >= len(chunks):
                break
            state = fn(*chunks[t], state)

    with single_thread_blas():
        if nt == 1:
            worker()
            return
        pool = executor(nt - 1, "conv")
        futures = [pool.submit(worker) for _ in range(nt - 1)]
        try:
            worker()  # this thread works too
        finally:
            for f in futures:
                f.result()


def _geometry(x, w, out_hw, groups):
    N, C = x.shape[:2]
    K, cg, kh, kw = w.shape
    P = out_hw[0] * out_hw[1]
    nt = max(1, min(get_num_threads(), N))
    step = choose_chunk(max(1, -(-N // (2 * nt))), C * kh * kw, P, x.itemsize, nt)
    return N, C, K, cg, kh, kw, K // groups, cg * kh * kw, P, step


def forward(ops, x, w, b, out, stride, padding, dilation, groups):
    N, C, K, cg, kh, kw, kg, ckk, P, step = _geometry(x, w, out.shape[2:], groups)
    OH, OW = out.shape[2:]
    geo = (kh, kw, stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1], OH, OW)
    wm = w.reshape(K, ckk)
    has_bias = b is not None
    bb = b if has_bias else np.zeros(1, x.dtype)

    def work(n0, n1, bufs):
        if bufs is None:  # per-thread buffers, reused across this thread's chunks
            bufs = np.empty((C * kh * kw, step * P), x.dtype), np.empty((K, step * P), x.dtype)
        cols, tmp = bufs
        m = (n1 - n0) * P
        ops.im2col(x, n0, n1, cols, *geo)
        for q in range(groups):
            ks, cs = slice(q * kg, (q + 1) * kg), slice(q * ckk, (q + 1) * ckk)
            np.matmul(wm[ks], cols[cs, :m], out=tmp[ks, :m])
        ops.gemm_to_nchw(tmp, bb, out, n0, n1, has_bias)
        return bufs

    _run(work, N, step)


def backward(ops, grad_out, x, w, grad_x, grad_w, grad_b, stride, padding, dilation, groups):
    N, C, K, cg, kh, kw, kg, ckk, P, step = _geometry(x, w, grad_out.shape[2:], groups)
    OH, OW = grad_out.shape[2:]
    geo = (kh, kw, stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1], OH, OW)
    wm = w.reshape(K, ckk)

    total = OrderedSum((grad_w.reshape(K, ckk), grad_b if grad_b is not None else np.empty(K, x.dtype)))

    def work(n0, n1, st):
        if st is None:  # per-thread buffers, and free partial-sum buffers
            st = (np.empty((C * kh * kw, step * P), x.dtype), np.empty((K, step * P), x.dtype), [])
        cols, g, free = st
        gw, gb = free.pop() if free else (np.empty((K, ckk), x.dtype), np.empty(K, x.dtype))
        m = (n1 - n0) * P
        gb.fill(0)
        ops.nchw_to_gemm(grad_out, n0, n1, g, gb)
        ops.im2col(x, n0, n1, cols, *geo)
        for q in range(groups):
            ks, cs = slice(q * kg, (q + 1) * kg), slice(q * ckk, (q + 1) * ckk)
            np.matmul(g[ks, :m], cols[cs, :m].T, out=gw[ks])
            if grad_x is not None:  # this group's cols are used up: reuse the buffer
                np.matmul(wm[ks].T, g[ks, :m], out=cols[cs, :m])
        if grad_x is not None:
            ops.col2im(cols, grad_x, n0, n1, *geo)
        free.extend(total.add(n0 // step, (gw, gb)))
        return st

    _run(work, N, step)
    assert total.count == -(-N // step)  # every chunk's partial is in


def entry_points(ops):
    """``(conv2d_forward, conv2d_backward)`` of a compiled backend.

    :func:`choose_strategy` picks, per call, this driver (with ``ops``' serial im2col loops) or
    ``ops``' parallel direct loops: ``direct_forward``, ``direct_grad_w``, ``direct_grad_x``
    and ``bias_grad`` (over ``grad_out`` viewed as ``(N, K, OH*OW)``).
    """

    def conv2d_forward(x, w, b, out, stride, padding, dilation, groups):
        K, cg, kh, kw = w.shape
        if choose_strategy(cg, kh, kw, K // groups) == "im2col":
            return forward(ops, x, w, b, out, stride, padding, dilation, groups)
        has_bias = b is not None
        ops.direct_forward(x, w, b if has_bias else np.zeros(1, x.dtype), out, stride[0], stride[1], padding[0],
                           padding[2], dilation[0], dilation[1], groups, has_bias)

    def conv2d_backward(grad_out, x, w, grad_x, grad_w, grad_b, stride, padding, dilation, groups):
        K, cg, kh, kw = w.shape
        if choose_strategy(cg, kh, kw, K // groups) == "im2col":
            return backward(ops, grad_out, x, w, grad_x, grad_w, grad_b, stride, padding, dilation, groups)
        geo = (stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1], groups)
        ops.direct_grad_w(grad_out, x, grad_w, *geo)
        if grad_b is not None:
            N, K = grad_out.shape[:2]
            ops.bias_grad(grad_out.reshape(N, K, -1), grad_b)
        if grad_x is not None:
            ops.direct_grad_x(grad_out, w, grad_x, *geo)

    return conv2d_forward, conv2d_backward
