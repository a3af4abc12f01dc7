"""Numba convolution: a parallel direct kernel and a parallel im2col/col2im feeding BLAS.

Which one runs is decided per call by :func:`~fastnn.kernels.conv2d.choose_strategy`:

* **direct** (narrow groups, e.g. depthwise): ``prange`` over
  ``(image, output channel)`` planes; each plane stays in L1 while every kernel tap adds a
  shifted input row to it. The valid output columns of a tap are computed once, so the inner
  loop has no bounds test and vectorises. ``grad_w`` runs over ``(k, c)`` pairs, ``grad_x``
  over ``(image, input channel)`` planes: every thread owns what it writes, no atomics.
  Extra memory: none.
* **im2col** (everything else): one ``prange`` over ``nt`` parts of the batch; for each of its
  images a thread unrolls the input into its own ``cols (C*KH*KW, OH*OW)``, calls the BLAS GEMM
  itself (``w (K, C*KH*KW) @ cols`` straight into ``out[n]``, single-threaded: passed in as a
  function pointer, see ``kernels/_blas.py``) and adds the bias (and the fused ReLU) while the
  image is in cache. The backward gets ``grad_w += g @ cols.T`` into the part's own partial sum
  and ``cols = w.T @ g`` from BLAS, and col2im adds ``cols`` back into ``grad_x[n]``. See
  ``_gemm.py`` for who writes what and the memory bound.

A NaN in one image reaches only that image's GEMMs, so it stays in that image (and in
``grad_w``, as in torch).
"""
import numpy as np
from numba import njit, prange

from .._blas import NO_TRANS as NO_T, ROW_MAJOR as ROW, TRANS
from . import _gemm

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
_sjit = dict(cache=True, fastmath=FASTMATH, nogil=True)


@njit(**_sjit)
def _span(size, out_size, s, off):
    """Output positions o in [lo, hi) with 0 <= o * s + off < size."""
    lo = 0
    if off < 0:
        lo = min(out_size, (-off + s - 1) // s)
    top = size - 1 - off
    if top < 0:
        return 0, 0
    hi = min(out_size, top // s + 1)
    return lo, max(lo, hi)


# ---------------------------------------------------------------------------- direct strategy
@njit(**_jit)
def _direct_forward(x, w, b, out, sh, sw, pt, pl, dh, dw, groups, has_bias):
    N, C, H, W = x.shape
    K, cg, kh, kw = w.shape
    OH, OW = out.shape[2], out.shape[3]
    kg = K // groups
    for t in prange(N * K):
        n = t // K
        k = t % K
        c0 = (k // kg) * cg
        o = out[n, k]
        bv = b[k] if has_bias else 0.0
        for oh in range(OH):
            for ow in range(OW):
                o[oh, ow] = bv
        for c in range(cg):
            xc = x[n, c0 + c]
            for i in range(kh):
                for j in range(kw):
                    wv = w[k, c, i, j]
                    lo, hi = _span(W, OW, sw, j * dw - pl)
                    for oh in range(OH):
                        ih = oh * sh - pt + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        for ow in range(lo, hi):
                            o[oh, ow] += wv * xc[ih, ow * sw - pl + j * dw]


@njit(**_jit)
def _direct_grad_w(grad_out, x, grad_w, sh, sw, pt, pl, dh, dw, groups):
    N, C, H, W = x.shape
    K, cg, kh, kw = grad_w.shape
    OH, OW = grad_out.shape[2], grad_out.shape[3]
    kg = K // groups
    for t in prange(K * cg):
        k = t // cg
        c = (k // kg) * cg + t % cg
        for i in range(kh):
            for j in range(kw):
                lo, hi = _span(W, OW, sw, j * dw - pl)
                acc = 0.0
                for n in range(N):
                    for oh in range(OH):
                        ih = oh * sh - pt + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        for ow in range(lo, hi):
                            acc += grad_out[n, k, oh, ow] * x[n, c, ih, ow * sw - pl + j * dw]
                grad_w[k, t % cg, i, j] = acc


@njit(**_jit)
def _direct_grad_x(grad_out, w, grad_x, sh, sw, pt, pl, dh, dw, groups):
    N, C, H, W = grad_x.shape
    K, cg, kh, kw = w.shape
    OH, OW = grad_out.shape[2], grad_out.shape[3]
    kg = K // groups
    for t in prange(N * C):
        n = t // C
        c = t % C
        g = c // cg
        gx = grad_x[n, c]
        for ih in range(H):
            for iw in range(W):
                gx[ih, iw] = 0.0
        for k in range(g * kg, (g + 1) * kg):
            go = grad_out[n, k]
            for i in range(kh):
                for j in range(kw):
                    wv = w[k, c - g * cg, i, j]
                    lo, hi = _span(W, OW, sw, j * dw - pl)
                    for oh in range(OH):
                        ih = oh * sh - pt + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        for ow in range(lo, hi):
                            gx[ih, ow * sw - pl + j * dw] += wv * go[oh, ow]


@njit(**_jit)
def _bias_grad(grad_out, grad_b):
    # grad_out viewed as (N, K, P)
    N, K = grad_out.shape[0], grad_out.shape[1]
    for k in prange(K):
        acc = 0.0
        for n in range(N):
            for p in range(grad_out.shape[2]):
                acc += grad_out[n, k, p]
        grad_b[k] = acc


# ---------------------------------------------------------------------------- im2col strategy
@njit(**_sjit)
def _im2col(xn, cols, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW):
    """cols[(c, i, j), p] = padded xn[c] at tap (i, j) of output p: one image (C, H, W)."""
    C, H, W = xn.shape
    for r in range(C * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        lo, hi = _span(W, OW, sw, j * dw - pl)
        row = cols[r]
        xc = xn[c]
        for oh in range(OH):
            ih = oh * sh - pt + i * dh
            base = oh * OW
            if ih < 0 or ih >= H:
                for ow in range(OW):
                    row[base + ow] = 0.0
                continue
            for ow in range(lo):
                row[base + ow] = 0.0
            if sw == 1:  # unit stride: a contiguous copy LLVM vectorises
                row[base + lo : base + hi] = xc[ih, lo - pl + j * dw : hi - pl + j * dw]
            else:
                for ow in range(lo, hi):
                    row[base + ow] = xc[ih, ow * sw - pl + j * dw]
            for ow in range(hi, OW):
                row[base + ow] = 0.0


@njit(**_sjit)
def _col2im(cols, gxn, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW):
    """gxn (C, H, W) = the sum of the cols entries that came from each input pixel (one image)."""
    C, H, W = gxn.shape
    gxn[...] = 0.0
    for c in range(C):
        gx = gxn[c]
        for i in range(kh):
            for j in range(kw):
                row = cols[(c * kh + i) * kw + j]
                lo, hi = _span(W, OW, sw, j * dw - pl)
                for oh in range(OH):
                    ih = oh * sh - pt + i * dh
                    if ih < 0 or ih >= H:
                        continue
                    if sw == 1:
                        gx[ih, lo - pl + j * dw : hi - pl + j * dw] += row[oh * OW + lo : oh * OW + hi]
                    else:
                        for ow in range(lo, hi):
                            gx[ih, ow * sw - pl + j * dw] += row[oh * OW + ow]


@njit(**_jit)
def _gemm_forward(gemm, x, w, b, out, sh, sw, pt, pl, dh, dw, groups, has_bias, relu, nt):
    N, C = x.shape[0], x.shape[1]
    K, cg, kh, kw = w.shape
    OH, OW = out.shape[2], out.shape[3]
    P, kg, ckk = OH * OW, K // groups, cg * kh * kw
    w2 = w.reshape(K, ckk)
    o3 = out.reshape(N, K, P)
    for t in prange(nt):  # part t: images [N t / nt, N (t + 1) / nt), and its own scratch
        cols = np.empty((C * kh * kw, P), x.dtype)
        for n in range(N * t // nt, N * (t + 1) // nt):
            _im2col(x[n], cols, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW)
            on = o3[n]
            for q in range(groups):  # out[n] rows of group q = w rows of q @ its input rows of cols
                gemm(ROW, NO_T, NO_T, kg, P, ckk, 1.0, w2[q * kg:].ctypes, ckk, cols[q * ckk:].ctypes, P,
                     0.0, on[q * kg:].ctypes, P)
            for k in range(K):  # bias (and ReLU) while this image's output is in cache
                bv = b[k] if has_bias else 0.0
                for p in range(P):
                    v = on[k, p] + bv
                    on[k, p] = 0.0 if relu and v < 0 else v


@njit(**_jit)
def _gemm_backward(gemm, grad_out, x, w, y, grad_x, gw_part, gb_part, sh, sw, pt, pl, dh, dw,
                   groups, relu, want_x, want_w, nt):
    N, C = x.shape[0], x.shape[1]
    K, cg, kh, kw = w.shape
    OH, OW = grad_out.shape[2], grad_out.shape[3]
    P, kg, ckk = OH * OW, K // groups, cg * kh * kw
    w2 = w.reshape(K, ckk)
    g3 = grad_out.reshape(N, K, P)
    y3 = y.reshape(y.shape[0], K, P)
    for t in prange(nt):  # part t: its images, its own scratch and its own partial sums
        cols = np.empty((C * kh * kw, P), x.dtype)
        masked = np.empty((K, P), x.dtype)
        gb = gb_part[t]
        gw = gw_part[t]
        gw[...] = 0.0
        gb[...] = 0.0
        for n in range(N * t // nt, N * (t + 1) // nt):
            g = g3[n]
            if relu:  # gradient through the fused ReLU: none where its output was <= 0
                yn = y3[n]
                for k in range(K):
                    for p in range(P):
                        masked[k, p] = 0.0 if yn[k, p] <= 0 else g[k, p]
                g = masked
            for k in range(K):
                acc = 0.0
                for p in range(P):
                    acc += g[k, p]
                gb[k] += acc
            if want_w:
                _im2col(x[n], cols, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW)
                for q in range(groups):  # gw rows of q += g rows of q @ cols rows of q, transposed
                    gemm(ROW, NO_T, TRANS, kg, ckk, P, 1.0, g[q * kg:].ctypes, P, cols[q * ckk:].ctypes, P,
                         1.0, gw[q * kg:].ctypes, ckk)
            if want_x:
                for q in range(groups):  # this group's cols are used up: reuse them for w.T @ g
                    gemm(ROW, TRANS, NO_T, ckk, P, kg, 1.0, w2[q * kg:].ctypes, ckk, g[q * kg:].ctypes, P,
                         0.0, cols[q * ckk:].ctypes, P)
                _col2im(cols, grad_x[n], kh, kw, sh, sw, pt, pl, dh, dw, OH, OW)


class _Ops:
    direct_forward = staticmethod(_direct_forward)
    direct_grad_w = staticmethod(_direct_grad_w)
    direct_grad_x = staticmethod(_direct_grad_x)
    bias_grad = staticmethod(_bias_grad)

    @staticmethod
    def gemm_forward(blas, x, w, b, out, sh, sw, pt, pl, dh, dw, groups, has_bias, relu, nt):
        gemm = blas.numba_sgemm if x.dtype == np.float32 else blas.numba_dgemm
        _gemm_forward(gemm, x, w, b, out, sh, sw, pt, pl, dh, dw, groups, has_bias, relu, nt)

    @staticmethod
    def gemm_backward(blas, grad_out, x, w, y, grad_x, gw_part, gb_part, sh, sw, pt, pl, dh, dw, groups, relu,
                      want_x, want_w, nt):
        gemm = blas.numba_sgemm if x.dtype == np.float32 else blas.numba_dgemm
        _gemm_backward(gemm, grad_out, x, w, y, grad_x, gw_part, gb_part, sh, sw, pt, pl, dh,
                       dw, groups, relu, want_x, want_w, nt)


conv2d_forward, conv2d_backward = _gemm.entry_points(_Ops)
