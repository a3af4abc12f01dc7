"""Numba loss kernels: one parallel pass, every loss formula fused into registers.

* The pointwise losses run one ``prange`` loop over the flat arrays, one loop per loss kind
  (the kind chosen outside the loop), computing in one pass what NumPy does in 4-8.
* The class losses go row by row (``prange`` over rows, one row stays in cache): the
  log-sum-exp, the weighted and label-smoothed loss and, backward, the softmax with its
  target and smoothing corrections, never building log-probabilities or one-hot matrices.
  They reuse the dense family's row helpers (:mod:`fastnn.kernels.dense.numba_impl`).
"""
import numpy as np
from numba import njit, prange

from ..dense.numba_impl import FASTMATH, _logsumexp_row, _scaled_softmax_row
from . import BCE, BCE_EPS, BCE_LOGITS, HUBER, KL, KL_LOG, L1, MSE, SMOOTH_L1

_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)


@njit(inline="always", fastmath=FASTMATH)
def _sigmoid(v):
    if v >= 0:
        return 1 / (1 + np.exp(-v))
    e = np.exp(v)
    return e / (1 + e)


# One loop per loss kind: a kind tested inside the loop made LLVM compute the exp/log of
# every kind for every element (20x slower); each loop below is one straight formula.
@njit(**_jit)
def _pointwise_forward(kind, x, t, pw, has_pw, param, out):
    n = x.size
    if kind == MSE:
        for i in prange(n):
            d = np.float64(x[i]) - t[i]
            out[i] = d * d
    elif kind == L1:
        for i in prange(n):
            out[i] = abs(np.float64(x[i]) - t[i])
    elif kind == SMOOTH_L1:
        for i in prange(n):
            d = np.float64(x[i]) - t[i]
            a = abs(d)
            out[i] = 0.5 * d * d / param if a < param else a - 0.5 * param
    elif kind == HUBER:
        for i in prange(n):
            d = np.float64(x[i]) - t[i]
            a = abs(d)
            out[i] = 0.5 * d * d if a < param else param * (a - 0.5 * param)
    elif kind == BCE:
        for i in prange(n):
            xi, ti = np.float64(x[i]), np.float64(t[i])
            out[i] = (ti - 1) * max(np.log1p(-xi), -100.0) - ti * max(np.log(xi), -100.0)
    elif kind == BCE_LOGITS:
        for i in prange(n):
            xi, ti = np.float64(x[i]), np.float64(t[i])
            lw = 1 + (pw[i] - 1) * ti if has_pw else 1.0
            out[i] = (1 - ti) * xi - lw * (min(xi, 0.0) - np.log1p(np.exp(-abs(xi))))
    elif kind == KL:
        for i in prange(n):
            ti = np.float64(t[i])
            out[i] = (ti * np.log(ti) if ti != 0 else 0.0) - ti * x[i]
    elif kind == KL_LOG:
        for i in prange(n):
            ti = np.float64(t[i])
            out[i] = np.exp(ti) * (ti - x[i])


@njit(**_jit)
def _pointwise_backward(kind, x, t, pw, has_pw, param, g, has_g, scale, out):
    n = x.size
    if kind == MSE:
        for i in prange(n):
            out[i] = 2 * (np.float64(x[i]) - t[i]) * (g[i] if has_g else 1.0) * scale
    elif kind == L1:
        for i in prange(n):
            d = np.float64(x[i]) - t[i]
            out[i] = (1.0 if d > 0 else (-1.0 if d < 0 else d)) * (g[i] if has_g else 1.0) * scale
    elif kind == SMOOTH_L1:
        for i in prange(n):
            d = np.float64(x[i]) - t[i]
            out[i] = (-1.0 if d < -param else (1.0 if d > param else d / param)) * (g[i] if has_g else 1.0) * scale
    elif kind == HUBER:
        for i in prange(n):
            d = np.float64(x[i]) - t[i]
            out[i] = (-param if d < -param else (param if d > param else d)) * (g[i] if has_g else 1.0) * scale
    elif kind == BCE:
        for i in prange(n):
            xi = np.float64(x[i])
            out[i] = (xi - t[i]) / max((1 - xi) * xi, BCE_EPS) * (g[i] if has_g else 1.0) * scale
    elif kind == BCE_LOGITS:
        for i in prange(n):
            ti, sx = np.float64(t[i]), _sigmoid(np.float64(x[i]))
            pt = pw[i] * ti if has_pw else 0.0
            out[i] = ((pt + 1 - ti) * sx - pt if has_pw else sx - ti) * (g[i] if has_g else 1.0) * scale
    elif kind == KL:
        for i in prange(n):
            out[i] = -np.float64(t[i]) * (g[i] if has_g else 1.0) * scale
    elif kind == KL_LOG:
        for i in prange(n):
            out[i] = -np.exp(np.float64(t[i])) * (g[i] if has_g else 1.0) * scale


def pointwise_forward(kind, x, t, pos_weight, param, out):
    _pointwise_forward(kind, x, t, pos_weight if pos_weight.size else x[:0], pos_weight.size > 0, float(param), out)


def pointwise_backward(kind, x, t, pos_weight, param, g, scale, out):
    _pointwise_backward(kind, x, t, pos_weight if pos_weight.size else x[:0], pos_weight.size > 0, float(param),
                        g if g.size else x[:0], g.size > 0, float(scale), out)


@njit(**_jit)
def _ce_forward(logits, target, weight, has_w, ignore_index, smoothing, losses, wt):
    m, c = logits.shape
    for i in prange(m):
        ti = target[i]
        if ti == ignore_index:
            losses[i] = 0
            wt[i] = 0
        else:
            lse = _logsumexp_row(logits, i)
            w_t = np.float64(weight[ti]) if has_w else 1.0
            loss = (1 - smoothing) * w_t * (lse - logits[i, ti])
            if smoothing != 0:
                s = 0.0
                for j in range(c):
                    s += (np.float64(weight[j]) if has_w else 1.0) * (lse - logits[i, j])
                loss += smoothing / c * s
            losses[i] = loss
            wt[i] = w_t


@njit(**_jit)
def _ce_backward(logits, target, weight, has_w, total, ignore_index, smoothing, rowscale, out):
    m, c = logits.shape
    for i in prange(m):
        ti = target[i]
        if ti == ignore_index:
            for j in range(c):
                out[i, j] = 0
        else:
            s = np.float64(rowscale[i])
            w_t = np.float64(weight[ti]) if has_w else 1.0
            _scaled_softmax_row(logits, i, out, s * ((1 - smoothing) * w_t + smoothing / c * total))
            out[i, ti] -= s * (1 - smoothing) * w_t
            if smoothing != 0:
                k = s * smoothing / c
                for j in range(c):
                    out[i, j] -= k * (np.float64(weight[j]) if has_w else 1.0)


def cross_entropy_forward(logits, target, weight, ignore_index, smoothing, losses, wt):
    _ce_forward(logits, target, weight if weight.size else logits.reshape(-1)[:0], weight.size > 0, ignore_index,
                float(smoothing), losses, wt)


def cross_entropy_backward(logits, target, weight, ignore_index, smoothing, rowscale, out):
    total = float(weight.sum(dtype=np.float64)) if weight.size else float(logits.shape[1])
    _ce_backward(logits, target, weight if weight.size else logits.reshape(-1)[:0], weight.size > 0, total, ignore_index,
                 float(smoothing), rowscale, out)


@njit(**_jit)
def _ce_prob_forward(logits, probs, weight, has_w, smoothing, losses):
    m, c = logits.shape
    for i in prange(m):
        lse = _logsumexp_row(logits, i)
        s = 0.0
        for j in range(c):
            q = probs[i, j] * (1 - smoothing) + smoothing / c
            if has_w:
                q *= weight[j]
            s += q * (lse - logits[i, j])
        losses[i] = s


@njit(**_jit)
def _ce_prob_backward(logits, probs, weight, has_w, smoothing, rowscale, out):
    m, c = logits.shape
    for i in prange(m):
        total = 0.0
        for j in range(c):
            q = probs[i, j] * (1 - smoothing) + smoothing / c
            total += q * weight[j] if has_w else q
        s = np.float64(rowscale[i])
        _scaled_softmax_row(logits, i, out, s * total)
        for j in range(c):
            q = probs[i, j] * (1 - smoothing) + smoothing / c
            out[i, j] -= s * (q * weight[j] if has_w else q)


def cross_entropy_prob_forward(logits, probs, weight, smoothing, losses):
    _ce_prob_forward(logits, probs, weight if weight.size else logits.reshape(-1)[:0], weight.size > 0, float(smoothing),
                     losses)


def cross_entropy_prob_backward(logits, probs, weight, smoothing, rowscale, out):
    _ce_prob_backward(logits, probs, weight if weight.size else logits.reshape(-1)[:0], weight.size > 0, float(smoothing),
                      rowscale, out)


@njit(**_jit)
def _nll_forward(logp, target, weight, has_w, ignore_index, losses, wt):
    for i in prange(logp.shape[0]):
        ti = target[i]
        if ti == ignore_index:
            losses[i] = 0
            wt[i] = 0
        else:
            w_t = weight[ti] if has_w else 1.0
            losses[i] = -w_t * logp[i, ti]
            wt[i] = w_t


@njit(**_jit)
def _nll_backward(target, weight, has_w, ignore_index, rowscale, out):
    m, c = out.shape
    for i in prange(m):
        for j in range(c):
            out[i, j] = 0
        ti = target[i]
        if ti != ignore_index:
            out[i, ti] = -(weight[ti] if has_w else 1.0) * rowscale[i]


def nll_forward(logp, target, weight, ignore_index, losses, wt):
    _nll_forward(logp, target, weight if weight.size else logp.reshape(-1)[:0], weight.size > 0, ignore_index, losses, wt)


def nll_backward(target, weight, ignore_index, rowscale, out):
    _nll_backward(target, weight if weight.size else out.reshape(-1)[:0], weight.size > 0, ignore_index, rowscale, out)
