"""Numba pooling: ``prange`` over the ``N * C`` planes, one pass over each window.

The max-pool backward recomputes each window's first maximal element from ``x`` (nothing is
stored by the forward) and adds the gradient there; a plane is owned by one thread, so
overlapping windows need no atomics.
"""
from numba import njit, prange

from . import entry_points, tiles2 as _tiles2

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)


@njit(cache=True, nogil=True)
def _argmax(xc, h0, h1, w0, w1):
    # first maximal element; a NaN wins (the first NaN)
    bi, bj = h0, w0
    m = xc[h0, w0]
    if m != m:
        return bi, bj
    for i in range(h0, h1):
        for j in range(w0, w1):
            v = xc[i, j]
            if v != v:
                return i, j
            if v > m:
                m = v
                bi, bj = i, j
    return bi, bj


@njit(**_jit)
def _max_forward(x, out, kh, kw, sh, sw, ph, pw):
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for t in prange(N * C):
        xc = x[t // C, t % C]
        o = out[t // C, t % C]
        for oh in range(OH):
            h0 = max(oh * sh - ph, 0)
            h1 = min(oh * sh - ph + kh, H)
            for ow in range(OW):
                w0 = max(ow * sw - pw, 0)
                w1 = min(ow * sw - pw + kw, W)
                bi, bj = _argmax(xc, h0, h1, w0, w1)
                o[oh, ow] = xc[bi, bj]


@njit(**_jit)
def _max_backward(grad_out, x, grad_x, kh, kw, sh, sw, ph, pw):
    N, C, H, W = x.shape
    OH, OW = grad_out.shape[2], grad_out.shape[3]
    for t in prange(N * C):
        xc = x[t // C, t % C]
        g = grad_out[t // C, t % C]
        gx = grad_x[t // C, t % C]
        gx[...] = 0.0
        for oh in range(OH):
            h0 = max(oh * sh - ph, 0)
            h1 = min(oh * sh - ph + kh, H)
            for ow in range(OW):
                w0 = max(ow * sw - pw, 0)
                w1 = min(ow * sw - pw + kw, W)
                bi, bj = _argmax(xc, h0, h1, w0, w1)
                gx[bi, bj] += g[oh, ow]


# 2x2 windows, stride 2, no padding, covering the input (floor mode): the common case
@njit(**_jit)
def _max2_forward(x, out):
    N, C = x.shape[0], x.shape[1]
    OH, OW = out.shape[2], out.shape[3]
    for t in prange(N * C):
        xc = x[t // C, t % C]
        o = out[t // C, t % C]
        for oh in range(OH):
            r0, r1 = xc[2 * oh], xc[2 * oh + 1]
            for ow in range(OW):
                a, b, c, d = r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]
                m = max(max(a, b), max(c, d))
                o[oh, ow] = a + b + c + d if (a != a) or (b != b) or (c != c) or (d != d) else m  # NaN wins


@njit(**_jit)
def _max2_backward(grad_out, x, grad_x):
    N, C, H, W = x.shape
    OH, OW = grad_out.shape[2], grad_out.shape[3]
    for t in prange(N * C):
        xc = x[t // C, t % C]
        g = grad_out[t // C, t % C]
        gx = grad_x[t // C, t % C]
        for oh in range(OH):
            r0, r1 = xc[2 * oh], xc[2 * oh + 1]
            q0, q1 = gx[2 * oh], gx[2 * oh + 1]
            for ow in range(OW):
                # the first maximal element in row-major order; the first NaN wins
                a, b, c, d = r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]
                k, m = 0, a
                if a == a:
                    if b != b or b > m:
                        k, m = 1, b
                    if m == m and (c != c or c > m):
                        k, m = 2, c
                    if m == m and (d != d or d > m):
                        k = 3
                v = g[oh, ow]
                q0[2 * ow] = v if k == 0 else 0.0
                q0[2 * ow + 1] = v if k == 1 else 0.0
                q1[2 * ow] = v if k == 2 else 0.0
                q1[2 * ow + 1] = v if k == 3 else 0.0
            for j in range(2 * OW, W):  # a last odd column no window covers
                q0[j] = 0.0
                q1[j] = 0.0
        for i in range(2 * OH, H):  # a last odd row no window covers
            gx[i] = 0.0


def _max_forward_any(x, out, kh, kw, sh, sw, ph, pw):
    if _tiles2(x, out, kh, kw, sh, sw, ph, pw):
        _max2_forward(x, out)
    else:
        _max_forward(x, out, kh, kw, sh, sw, ph, pw)


def _max_backward_any(grad_out, x, grad_x, kh, kw, sh, sw, ph, pw):
    if _tiles2(x, grad_out, kh, kw, sh, sw, ph, pw):
        _max2_backward(grad_out, x, grad_x)
    else:
        _max_backward(grad_out, x, grad_x, kh, kw, sh, sw, ph, pw)


@njit(cache=True, nogil=True)
def _window(o, s, p, k, size, count_include_pad):
    start = o * s - p
    end = min(start + k, size + p)
    lo = max(start, 0)
    hi = min(end, size)
    return lo, hi, (end - start) if count_include_pad else (hi - lo)


@njit(**_jit)
def _avg_forward(x, out, kh, kw, sh, sw, ph, pw, cip):
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for t in prange(N * C):
        xc = x[t // C, t % C]
        o = out[t // C, t % C]
        for oh in range(OH):
            h0, h1, dh = _window(oh, sh, ph, kh, H, cip)
            for ow in range(OW):
                w0, w1, dw = _window(ow, sw, pw, kw, W, cip)
                acc = 0.0
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        acc += xc[i, j]
                o[oh, ow] = acc / (dh * dw)


@njit(**_jit)
def _avg_backward(grad_out, grad_x, kh, kw, sh, sw, ph, pw, cip):
    N, C, H, W = grad_x.shape
    OH, OW = grad_out.shape[2], grad_out.shape[3]
    for t in prange(N * C):
        g = grad_out[t // C, t % C]
        gx = grad_x[t // C, t % C]
        for oh in range(OH):
            h0, h1, dh = _window(oh, sh, ph, kh, H, cip)
            for ow in range(OW):
                w0, w1, dw = _window(ow, sw, pw, kw, W, cip)
                v = g[oh, ow] / (dh * dw)
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        gx[i, j] += v


@njit(**_jit)
def adaptive_avg_pool2d_forward(x, out):
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for t in prange(N * C):
        xc = x[t // C, t % C]
        o = out[t // C, t % C]
        for i in range(OH):
            h0, h1 = i * H // OH, -(-(i + 1) * H // OH)
            for j in range(OW):
                w0, w1 = j * W // OW, -(-(j + 1) * W // OW)
                acc = 0.0
                for a in range(h0, h1):
                    for b in range(w0, w1):
                        acc += xc[a, b]
                o[i, j] = acc / ((h1 - h0) * (w1 - w0))


@njit(**_jit)
def adaptive_avg_pool2d_backward(grad_out, grad_x):
    N, C, H, W = grad_x.shape
    OH, OW = grad_out.shape[2], grad_out.shape[3]
    for t in prange(N * C):
        g = grad_out[t // C, t % C]
        gx = grad_x[t // C, t % C]
        for i in range(OH):
            h0, h1 = i * H // OH, -(-(i + 1) * H // OH)
            for j in range(OW):
                w0, w1 = j * W // OW, -(-(j + 1) * W // OW)
                v = g[i, j] / ((h1 - h0) * (w1 - w0))
                for a in range(h0, h1):
                    for b in range(w0, w1):
                        gx[a, b] += v


max_pool2d_forward, max_pool2d_backward, avg_pool2d_forward, avg_pool2d_backward = entry_points(
    _max_forward_any, _max_backward_any, _avg_forward, _avg_backward)
