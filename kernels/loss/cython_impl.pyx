# cython: language_level=3
"""Cython loss kernels: the Numba kernels' fused one-pass algorithms for the C compiler.

Pointwise losses: one ``prange`` over the flat arrays per loss kind, arithmetic in double. Class losses: ``prange`` over rows with the dense family's
row helpers (``kernels/dense/_rows.pxi``: max, log-sum-exp, scaled softmax of one row).
Loops below ``_SERIAL`` elements run on one thread.
"""
import numpy as np
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.math cimport fabs, log1p

from fastnn._config import get_num_threads

include "../dense/_rows.pxi"

# the kinds of kernels/loss/__init__.py
cdef enum:
    MSE, L1, SMOOTH_L1, HUBER, BCE, BCE_LOGITS, KL, KL_LOG

cdef Py_ssize_t _SERIAL = 1 << 14


cdef inline int _threads(Py_ssize_t work):
    return 1 if work < _SERIAL else get_num_threads()


cdef inline double _sigmoid(double v) noexcept nogil:
    cdef double e
    if v >= 0:
        return 1 / (1 + exp(-v))
    e = exp(v)
    return e / (1 + e)


cdef inline double _loss(int kind, double x, double t, double pw, bint has_pw, double param) noexcept nogil:
    cdef double d = x - t, a = fabs(d), lw
    if kind == MSE:
        return d * d
    if kind == L1:
        return a
    if kind == SMOOTH_L1:
        return 0.5 * d * d / param if a < param else a - 0.5 * param
    if kind == HUBER:
        return 0.5 * d * d if a < param else param * (a - 0.5 * param)
    if kind == BCE:
        return (t - 1) * max(log1p(-x), -100.0) - t * max(log(x), -100.0)
    if kind == BCE_LOGITS:
        lw = 1 + (pw - 1) * t if has_pw else 1.0
        return (1 - t) * x - lw * (min(x, 0.0) - log1p(exp(-fabs(x))))
    if kind == KL:
        return (t * log(t) if t != 0 else 0.0) - t * x
    if kind == KL_LOG:
        return exp(t) * (t - x)
    return 0


cdef inline double _grad(int kind, double x, double t, double pw, bint has_pw, double param) noexcept nogil:
    cdef double d = x - t, pt
    if kind == MSE:
        return 2 * d
    if kind == L1:
        return 1.0 if d > 0 else (-1.0 if d < 0 else d)
    if kind == SMOOTH_L1:
        return -1.0 if d < -param else (1.0 if d > param else d / param)
    if kind == HUBER:
        return -param if d < -param else (param if d > param else d)
    if kind == BCE:
        return d / max((1 - x) * x, 9.999999960041972e-13)  # BCE_EPS: float(1e-12f)
    if kind == BCE_LOGITS:
        if has_pw:
            pt = pw * t
            return (pt + 1 - t) * _sigmoid(x) - pt
        return _sigmoid(x) - t
    if kind == KL:
        return -t
    if kind == KL_LOG:
        return -exp(t)
    return 0


# One loop per loss kind with the kind a literal in its body: after inlining, the C compiler
# keeps one formula per loop. A kind tested inside the loop (or passed into an OpenMP-outlined
# loop as a variable) ran every branch's exp/log for every element (10-20x slower).
def _pointwise_forward(int kind, const floating[::1] x, const floating[::1] t, const floating[::1] pw,
                       double param, floating[::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef bint has_pw = pw.shape[0] > 0
    cdef int nt = _threads(n)
    if kind == MSE:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>_loss(MSE, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
    elif kind == L1:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>_loss(L1, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
    elif kind == SMOOTH_L1:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>_loss(SMOOTH_L1, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
    elif kind == HUBER:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>_loss(HUBER, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
    elif kind == BCE:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>_loss(BCE, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
    elif kind == BCE_LOGITS:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>_loss(BCE_LOGITS, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
    elif kind == KL:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>_loss(KL, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
    elif kind == KL_LOG:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>_loss(KL_LOG, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)


def _pointwise_backward(int kind, const floating[::1] x, const floating[::1] t, const floating[::1] pw,
                        double param, const floating[::1] g, double scale, floating[::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef bint has_pw = pw.shape[0] > 0, has_g = g.shape[0] > 0
    cdef int nt = _threads(n)
    if kind == MSE:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>(_grad(MSE, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
                                * (g[i] if has_g else 1.0) * scale)
    elif kind == L1:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>(_grad(L1, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
                                * (g[i] if has_g else 1.0) * scale)
    elif kind == SMOOTH_L1:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>(_grad(SMOOTH_L1, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
                                * (g[i] if has_g else 1.0) * scale)
    elif kind == HUBER:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>(_grad(HUBER, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
                                * (g[i] if has_g else 1.0) * scale)
    elif kind == BCE:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>(_grad(BCE, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
                                * (g[i] if has_g else 1.0) * scale)
    elif kind == BCE_LOGITS:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>(_grad(BCE_LOGITS, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
                                * (g[i] if has_g else 1.0) * scale)
    elif kind == KL:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>(_grad(KL, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
                                * (g[i] if has_g else 1.0) * scale)
    elif kind == KL_LOG:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = <floating>(_grad(KL_LOG, x[i], t[i], pw[i] if has_pw else 1.0, has_pw, param)
                                * (g[i] if has_g else 1.0) * scale)


def pointwise_forward(kind, x, t, pos_weight, param, out):
    _pointwise_forward(kind, x, t, pos_weight if pos_weight.size else x[:0], param, out)


def pointwise_backward(kind, x, t, pos_weight, param, g, scale, out):
    _pointwise_backward(kind, x, t, pos_weight if pos_weight.size else x[:0], param, g if g.size else x[:0],
                        scale, out)


cdef inline double _w(const floating[::1] weight, bint has_w, Py_ssize_t j) noexcept nogil:
    return weight[j] if has_w else 1.0


def _ce_forward(const floating[:, ::1] logits, const int64_t[::1] target, const floating[::1] weight,
                int64_t ignore_index, double smoothing, floating[::1] losses, floating[::1] wt):
    cdef Py_ssize_t i, j, m = logits.shape[0], c = logits.shape[1]
    cdef int64_t ti
    cdef bint has_w = weight.shape[0] > 0
    cdef double lse, w_t, loss, s
    cdef int nt = _threads(m * c)
    for i in prange(m, nogil=True, schedule="static", num_threads=nt):
        ti = target[i]
        if ti == ignore_index:
            losses[i] = 0
            wt[i] = 0
        else:
            lse = _logsumexp_row(logits, i)
            w_t = _w(weight, has_w, ti)
            loss = (1 - smoothing) * w_t * (lse - logits[i, ti])
            if smoothing != 0:
                s = 0
                for j in range(c):
                    s = s + _w(weight, has_w, j) * (lse - logits[i, j])
                loss = loss + smoothing / c * s
            losses[i] = <floating>loss
            wt[i] = <floating>w_t


def _ce_backward(const floating[:, ::1] logits, const int64_t[::1] target, const floating[::1] weight,
                 double total, int64_t ignore_index, double smoothing, const floating[::1] rowscale,
                 floating[:, ::1] out):
    cdef Py_ssize_t i, j, m = logits.shape[0], c = logits.shape[1]
    cdef int64_t ti
    cdef bint has_w = weight.shape[0] > 0
    cdef double s, w_t, k
    cdef int nt = _threads(m * c)
    for i in prange(m, nogil=True, schedule="static", num_threads=nt):
        ti = target[i]
        if ti == ignore_index:
            for j in range(c):
                out[i, j] = 0
        else:
            s = rowscale[i]
            w_t = _w(weight, has_w, ti)
            _scaled_softmax_row(logits, i, out, s * ((1 - smoothing) * w_t + smoothing / c * total))
            out[i, ti] = <floating>(out[i, ti] - s * (1 - smoothing) * w_t)
            if smoothing != 0:
                k = s * smoothing / c
                for j in range(c):
                    out[i, j] = <floating>(out[i, j] - k * _w(weight, has_w, j))


def cross_entropy_forward(logits, target, weight, ignore_index, smoothing, losses, wt):
    _ce_forward(logits, target, weight if weight.size else losses[:0], ignore_index, smoothing, losses, wt)


def cross_entropy_backward(logits, target, weight, ignore_index, smoothing, rowscale, out):
    total = float(weight.sum(dtype=np.float64)) if weight.size else float(logits.shape[1])
    _ce_backward(logits, target, weight if weight.size else rowscale[:0], total, ignore_index, smoothing, rowscale,
                 out)


def _ce_prob_forward(const floating[:, ::1] logits, const floating[:, ::1] probs, const floating[::1] weight,
                     double smoothing, floating[::1] losses):
    cdef Py_ssize_t i, j, m = logits.shape[0], c = logits.shape[1]
    cdef bint has_w = weight.shape[0] > 0
    cdef double lse, s
    cdef int nt = _threads(m * c)
    for i in prange(m, nogil=True, schedule="static", num_threads=nt):
        lse = _logsumexp_row(logits, i)
        s = 0
        for j in range(c):
            s = s + (probs[i, j] * (1 - smoothing) + smoothing / c) * _w(weight, has_w, j) * (lse - logits[i, j])
        losses[i] = <floating>s


def _ce_prob_backward(const floating[:, ::1] logits, const floating[:, ::1] probs, const floating[::1] weight,
                      double smoothing, const floating[::1] rowscale, floating[:, ::1] out):
    cdef Py_ssize_t i, j, m = logits.shape[0], c = logits.shape[1]
    cdef bint has_w = weight.shape[0] > 0
    cdef double s, total
    cdef int nt = _threads(m * c)
    for i in prange(m, nogil=True, schedule="static", num_threads=nt):
        total = 0
        for j in range(c):
            total = total + (probs[i, j] * (1 - smoothing) + smoothing / c) * _w(weight, has_w, j)
        s = rowscale[i]
        _scaled_softmax_row(logits, i, out, s * total)
        for j in range(c):
            out[i, j] = <floating>(out[i, j] - s * (probs[i, j] * (1 - smoothing) + smoothing / c)
                                   * _w(weight, has_w, j))


def cross_entropy_prob_forward(logits, probs, weight, smoothing, losses):
    _ce_prob_forward(logits, probs, weight if weight.size else losses[:0], smoothing, losses)


def cross_entropy_prob_backward(logits, probs, weight, smoothing, rowscale, out):
    _ce_prob_backward(logits, probs, weight if weight.size else rowscale[:0], smoothing, rowscale, out)


def _nll_forward(const floating[:, ::1] logp, const int64_t[::1] target, const floating[::1] weight,
                 int64_t ignore_index, floating[::1] losses, floating[::1] wt):
    cdef Py_ssize_t i, m = logp.shape[0]
    cdef int64_t ti
    cdef bint has_w = weight.shape[0] > 0
    cdef int nt = _threads(m * logp.shape[1])
    for i in prange(m, nogil=True, schedule="static", num_threads=nt):
        ti = target[i]
        if ti == ignore_index:
            losses[i] = 0
            wt[i] = 0
        else:
            wt[i] = <floating>_w(weight, has_w, ti)
            losses[i] = -wt[i] * logp[i, ti]


def _nll_backward(const int64_t[::1] target, const floating[::1] weight, int64_t ignore_index,
                  const floating[::1] rowscale, floating[:, ::1] out):
    cdef Py_ssize_t i, j, m = out.shape[0], c = out.shape[1]
    cdef int64_t ti
    cdef bint has_w = weight.shape[0] > 0
    cdef int nt = _threads(m * c)
    for i in prange(m, nogil=True, schedule="static", num_threads=nt):
        for j in range(c):
            out[i, j] = 0
        ti = target[i]
        if ti != ignore_index:
            out[i, ti] = <floating>(-_w(weight, has_w, ti) * rowscale[i])


def nll_forward(logp, target, weight, ignore_index, losses, wt):
    _nll_forward(logp, target, weight if weight.size else losses[:0], ignore_index, losses, wt)


def nll_backward(target, weight, ignore_index, rowscale, out):
    _nll_backward(target, weight if weight.size else rowscale[:0], ignore_index, rowscale, out)
