"""Numba convolution: a parallel direct kernel and a parallel im2col/col2im feeding BLAS.

Which one runs is decided per call by :func:`~fastnn.kernels.conv2d.choose_strategy`:

* **direct** (narrow groups, e.g. depthwise): ``prange`` over
  ``(image, output channel)`` planes; each plane stays in L1 while every kernel tap adds a
  shifted input row to it. The valid output columns of a tap are computed once, so the inner
  loop has no bounds test and vectorises. ``grad_w`` runs over ``(k, c)`` pairs, ``grad_x``
  over ``(image, input channel)`` planes: every thread owns what it writes, no atomics.
  Extra memory: none.
* **im2col** (everything else): serial, GIL-free loops unroll the input of a batch chunk into
  ``cols (C*KH*KW, n*OH*OW)``, one BLAS GEMM per group computes ``w (K, C*KH*KW) @ cols``,
  and a pass transposes the result into NCHW and adds the bias. The backward copies
  ``grad_out`` once to ``(K, n*OH*OW)`` (summing ``grad_b`` on the way), gets
  ``grad_w += g @ cols.T`` and ``cols = w.T @ g`` from BLAS, and col2im adds ``cols`` back into
  ``grad_x``. The driver in ``_gemm.py`` runs these on one batch slice per thread with BLAS on
  one thread (see there for why and for the memory bound).

BLAS is always called from Python, never inside a ``prange``. A NaN in one image reaches only
that image's columns of the GEMMs, so it stays in that image (and in ``grad_w``, as in torch).
"""
from numba import njit, prange

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
# Serial loops: the driver (_gemm.py) runs them on one batch slice per thread, beside BLAS.
@njit(**_sjit)
def _im2col(x, n0, n1, cols, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW):
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    P = OH * OW
    for r in range(C * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        lo, hi = _span(W, OW, sw, j * dw - pl)
        for n in range(n1 - n0):
            row = cols[r, n * P : (n + 1) * P]
            xc = x[n0 + n, c]
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
def _col2im(cols, grad_x, n0, n1, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW):
    C, H, W = grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]
    P = OH * OW
    for n in range(n1 - n0):
        for c in range(C):
            gx = grad_x[n0 + n, c]
            for ih in range(H):
                for iw in range(W):
                    gx[ih, iw] = 0.0
            for i in range(kh):
                for j in range(kw):
                    row = cols[(c * kh + i) * kw + j, n * P : (n + 1) * P]
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


@njit(**_sjit)
def _gemm_to_nchw(tmp, b, out, n0, n1, has_bias):
    K = out.shape[1]
    P = out.shape[2] * out.shape[3]
    o3 = out.reshape(out.shape[0], K, P)
    for n in range(n1 - n0):
        for k in range(K):
            bv = b[k] if has_bias else 0.0
            src = tmp[k, n * P : (n + 1) * P]
            dst = o3[n0 + n, k]
            for p in range(P):
                dst[p] = src[p] + bv


@njit(**_sjit)
def _nchw_to_gemm(grad_out, n0, n1, g, grad_b):
    K = grad_out.shape[1]
    P = grad_out.shape[2] * grad_out.shape[3]
    g3 = grad_out.reshape(grad_out.shape[0], K, P)
    for k in range(K):
        acc = 0.0
        for n in range(n1 - n0):
            src = g3[n0 + n, k]
            dst = g[k, n * P : (n + 1) * P]
            for p in range(P):
                dst[p] = src[p]
                acc += src[p]
        grad_b[k] += acc


class _Ops:
    im2col = staticmethod(_im2col)
    col2im = staticmethod(_col2im)
    gemm_to_nchw = staticmethod(_gemm_to_nchw)
    nchw_to_gemm = staticmethod(_nchw_to_gemm)
    direct_forward = staticmethod(_direct_forward)
    direct_grad_w = staticmethod(_direct_grad_w)
    direct_grad_x = staticmethod(_direct_grad_x)
    bias_grad = staticmethod(_bias_grad)


conv2d_forward, conv2d_backward = _gemm.entry_points(_Ops)
