# cython: language_level=3
"""Cython pooling: OpenMP ``prange`` over the ``N * C`` planes, one pass over each window.

The same algorithms as the Numba backend: the max-pool backward recomputes each window's
first maximal element (a NaN wins) from ``x`` and adds the gradient there; a plane belongs to
one thread, so overlapping windows need no atomics. Loops below ``_SERIAL`` output elements
run on one thread.
"""
from cython.parallel cimport prange

from fastnn._config import get_num_threads

from . import entry_points, tiles2

ctypedef fused floating:
    float
    double

cdef Py_ssize_t _SERIAL = 1 << 13


cdef inline int _threads(Py_ssize_t work):
    return 1 if work < _SERIAL else get_num_threads()


cdef inline Py_ssize_t _argmax(const floating[:, :, :, ::1] x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h0,
                               Py_ssize_t h1, Py_ssize_t w0, Py_ssize_t w1) noexcept nogil:
    # flat index i * W + j of the first maximal element of plane (n, c); the first NaN wins.
    # (Indexing the 4-D view directly: slicing a memoryview inside prange costs atomics.)
    cdef Py_ssize_t W = x.shape[3], i, j, best = h0 * W + w0
    cdef floating m = x[n, c, h0, w0], v
    if m != m:
        return best
    for i in range(h0, h1):
        for j in range(w0, w1):
            v = x[n, c, i, j]
            if v != v:
                return i * W + j
            if v > m:
                m = v
                best = i * W + j
    return best


def _max_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, Py_ssize_t kh, Py_ssize_t kw,
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3], t, n, c, oh, ow, h0, h1, w0, w1, a
    cdef int nt = _threads(N * C * OH * OW)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for oh in range(OH):
            h0 = max(oh * sh - ph, 0)
            h1 = min(oh * sh - ph + kh, H)
            for ow in range(OW):
                w0 = max(ow * sw - pw, 0)
                w1 = min(ow * sw - pw + kw, W)
                a = _argmax(x, n, c, h0, h1, w0, w1)
                out[n, c, oh, ow] = x[n, c, a // W, a % W]


def _max_backward(const floating[:, :, :, ::1] grad_out, const floating[:, :, :, ::1] x,
                  floating[:, :, :, ::1] grad_x, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                  Py_ssize_t ph, Py_ssize_t pw):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], t, n, c, oh, ow, h0, h1, w0, w1, a
    cdef int nt = _threads(N * C * OH * OW)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for h0 in range(H):
            for w0 in range(W):
                grad_x[n, c, h0, w0] = 0
        for oh in range(OH):
            h0 = max(oh * sh - ph, 0)
            h1 = min(oh * sh - ph + kh, H)
            for ow in range(OW):
                w0 = max(ow * sw - pw, 0)
                w1 = min(ow * sw - pw + kw, W)
                a = _argmax(x, n, c, h0, h1, w0, w1)
                grad_x[n, c, a // W, a % W] += grad_out[n, c, oh, ow]


# 2x2 windows, stride 2, no padding, covering the input (floor mode): the common case
def _max2_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], OH = out.shape[2], OW = out.shape[3], t, n, c, oh, ow
    cdef floating a, b, d, e, m
    cdef int nt = _threads(N * C * OH * OW)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for oh in range(OH):
            for ow in range(OW):
                a = x[n, c, 2 * oh, 2 * ow]
                b = x[n, c, 2 * oh, 2 * ow + 1]
                d = x[n, c, 2 * oh + 1, 2 * ow]
                e = x[n, c, 2 * oh + 1, 2 * ow + 1]
                m = a if a > b else b
                m = m if m > d else d
                m = m if m > e else e
                if a != a or b != b or d != d or e != e:  # NaN wins
                    m = a + b + d + e
                out[n, c, oh, ow] = m


def _max2_backward(const floating[:, :, :, ::1] grad_out, const floating[:, :, :, ::1] x,
                   floating[:, :, :, ::1] grad_x):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], t, n, c, oh, ow, i, j
    cdef floating a, b, d, e, m, v
    cdef int k
    cdef int nt = _threads(N * C * OH * OW)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for oh in range(OH):
            for ow in range(OW):
                # the first maximal element in row-major order; the first NaN wins
                a = x[n, c, 2 * oh, 2 * ow]
                b = x[n, c, 2 * oh, 2 * ow + 1]
                d = x[n, c, 2 * oh + 1, 2 * ow]
                e = x[n, c, 2 * oh + 1, 2 * ow + 1]
                k = 0
                m = a
                if a == a:
                    if b != b or b > m:
                        k = 1
                        m = b
                    if m == m and (d != d or d > m):
                        k = 2
                        m = d
                    if m == m and (e != e or e > m):
                        k = 3
                v = grad_out[n, c, oh, ow]
                grad_x[n, c, 2 * oh, 2 * ow] = v if k == 0 else 0
                grad_x[n, c, 2 * oh, 2 * ow + 1] = v if k == 1 else 0
                grad_x[n, c, 2 * oh + 1, 2 * ow] = v if k == 2 else 0
                grad_x[n, c, 2 * oh + 1, 2 * ow + 1] = v if k == 3 else 0
            for j in range(2 * OW, W):  # a last odd column no window covers
                grad_x[n, c, 2 * oh, j] = 0
                grad_x[n, c, 2 * oh + 1, j] = 0
        for i in range(2 * OH, H):  # a last odd row no window covers
            for j in range(W):
                grad_x[n, c, i, j] = 0


def _max_forward_any(x, out, kh, kw, sh, sw, ph, pw):
    if tiles2(x, out, kh, kw, sh, sw, ph, pw):
        _max2_forward(x, out)
    else:
        _max_forward(x, out, kh, kw, sh, sw, ph, pw)


def _max_backward_any(grad_out, x, grad_x, kh, kw, sh, sw, ph, pw):
    if tiles2(x, grad_out, kh, kw, sh, sw, ph, pw):
        _max2_backward(grad_out, x, grad_x)
    else:
        _max_backward(grad_out, x, grad_x, kh, kw, sh, sw, ph, pw)


# Window bounds clipped to the input, and the divisor. Returned as values and assigned in the
# loop body: inside a prange Cython makes a variable thread-private only when it is assigned.
cdef inline Py_ssize_t _start(Py_ssize_t o, Py_ssize_t s, Py_ssize_t p) noexcept nogil:
    return max(o * s - p, 0)


cdef inline Py_ssize_t _stop(Py_ssize_t o, Py_ssize_t s, Py_ssize_t p, Py_ssize_t k, Py_ssize_t size) noexcept nogil:
    return min(o * s - p + k, size)


cdef inline Py_ssize_t _count(Py_ssize_t o, Py_ssize_t s, Py_ssize_t p, Py_ssize_t k, Py_ssize_t size,
                              bint cip) noexcept nogil:
    if cip:
        return min(o * s - p + k, size + p) - (o * s - p)
    return _stop(o, s, p, k, size) - _start(o, s, p)


def _avg_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, Py_ssize_t kh, Py_ssize_t kw,
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, bint cip):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3], t, n, c, oh, ow, h0, h1, w0, w1, i, j, dh, dw
    cdef double acc
    cdef int nt = _threads(N * C * OH * OW)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for oh in range(OH):
            h0 = _start(oh, sh, ph)
            h1 = _stop(oh, sh, ph, kh, H)
            dh = _count(oh, sh, ph, kh, H, cip)
            for ow in range(OW):
                w0 = _start(ow, sw, pw)
                w1 = _stop(ow, sw, pw, kw, W)
                dw = _count(ow, sw, pw, kw, W, cip)
                acc = 0
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        acc = acc + x[n, c, i, j]
                out[n, c, oh, ow] = <floating>(acc / (dh * dw))


def _avg_backward(const floating[:, :, :, ::1] grad_out, floating[:, :, :, ::1] grad_x, Py_ssize_t kh,
                  Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, bint cip):
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2], W = grad_x.shape[3]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], t, n, c, oh, ow, h0, h1, w0, w1, i, j, dh, dw
    cdef floating v
    cdef int nt = _threads(N * C * OH * OW)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for oh in range(OH):
            h0 = _start(oh, sh, ph)
            h1 = _stop(oh, sh, ph, kh, H)
            dh = _count(oh, sh, ph, kh, H, cip)
            for ow in range(OW):
                w0 = _start(ow, sw, pw)
                w1 = _stop(ow, sw, pw, kw, W)
                dw = _count(ow, sw, pw, kw, W, cip)
                v = grad_out[n, c, oh, ow] / (dh * dw)
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        grad_x[n, c, i, j] += v


cdef inline Py_ssize_t _bin_start(Py_ssize_t i, Py_ssize_t size, Py_ssize_t out_size) noexcept nogil:
    return i * size // out_size


cdef inline Py_ssize_t _bin_stop(Py_ssize_t i, Py_ssize_t size, Py_ssize_t out_size) noexcept nogil:
    return ((i + 1) * size + out_size - 1) // out_size


def adaptive_avg_pool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3], t, n, c, oh, ow, h0, h1, w0, w1, i, j
    cdef double acc
    cdef int nt = _threads(N * C * H * W)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for oh in range(OH):
            h0 = _bin_start(oh, H, OH)
            h1 = _bin_stop(oh, H, OH)
            for ow in range(OW):
                w0 = _bin_start(ow, W, OW)
                w1 = _bin_stop(ow, W, OW)
                acc = 0
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        acc = acc + x[n, c, i, j]
                out[n, c, oh, ow] = <floating>(acc / ((h1 - h0) * (w1 - w0)))


def adaptive_avg_pool2d_backward(const floating[:, :, :, ::1] grad_out, floating[:, :, :, ::1] grad_x):
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2], W = grad_x.shape[3]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], t, n, c, oh, ow, h0, h1, w0, w1, i, j
    cdef floating v
    cdef int nt = _threads(N * C * H * W)
    for t in prange(N * C, nogil=True, schedule="static", num_threads=nt):
        n = t // C
        c = t % C
        for oh in range(OH):
            h0 = _bin_start(oh, H, OH)
            h1 = _bin_stop(oh, H, OH)
            for ow in range(OW):
                w0 = _bin_start(ow, W, OW)
                w1 = _bin_stop(ow, W, OW)
                v = grad_out[n, c, oh, ow] / ((h1 - h0) * (w1 - w0))
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        grad_x[n, c, i, j] += v


max_pool2d_forward, max_pool2d_backward, avg_pool2d_forward, avg_pool2d_backward = entry_points(
    _max_forward_any, _max_backward_any, _avg_forward, _avg_backward)
