"""Reference loss kernels: each loss written as its textbook formula with NumPy expressions.

The formulas are torch's, including its numerical choices: BCE clamps ``log`` at -100 and
its gradient divides by ``max(x (1 - x), 1e-12)`` (1e-12 as a float32, like torch); BCE-with-logits uses ``log_sigmoid``
(``min(x, 0) - log1p(exp(-|x|))``), finite for logits of 1e4; KL uses ``xlogy(t, t)``
(0 where the target is 0). This is the readable truth the other backends are tested against.
"""
import numpy as np

from . import BCE, BCE_EPS, BCE_LOGITS, HUBER, KL, KL_LOG, L1, MSE, SMOOTH_L1


def _log_sigmoid(x):
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _xlogy(t):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t == 0, 0, t * np.log(np.where(t == 0, 1, t)))


def pointwise_forward(kind, x, t, pos_weight, param, out):
    d = x - t
    a = np.abs(d)
    if kind == MSE:
        loss = d * d
    elif kind == L1:
        loss = a
    elif kind == SMOOTH_L1:
        loss = np.where(a < param, 0.5 * d * d / param, a - 0.5 * param)
    elif kind == HUBER:
        loss = np.where(a < param, 0.5 * d * d, param * (a - 0.5 * param))
    elif kind == BCE:
        with np.errstate(divide="ignore"):
            loss = (t - 1) * np.maximum(np.log1p(-x), -100) - t * np.maximum(np.log(x), -100)
    elif kind == BCE_LOGITS:
        log_weight = 1 + (pos_weight - 1) * t if pos_weight.size else 1
        loss = (1 - t) * x - log_weight * _log_sigmoid(x)
    elif kind == KL:
        loss = _xlogy(t) - t * x
    elif kind == KL_LOG:
        loss = np.exp(t) * (t - x)
    else:
        raise ValueError(f"unknown loss kind {kind}")
    out[...] = loss


def pointwise_backward(kind, x, t, pos_weight, param, g, scale, out):
    d = x - t
    if kind == MSE:
        grad = 2 * d
    elif kind == L1:
        grad = np.sign(d)
    elif kind == SMOOTH_L1:
        grad = np.where(d < -param, -1, np.where(d > param, 1, d / param))
    elif kind == HUBER:
        grad = np.clip(d, -param, param)
    elif kind == BCE:
        grad = d / np.maximum((1 - x) * x, BCE_EPS)
    elif kind == BCE_LOGITS:
        if pos_weight.size:
            pt = pos_weight * t
            grad = (pt + 1 - t) * _sigmoid(x) - pt
        else:
            grad = _sigmoid(x) - t
    elif kind == KL:
        grad = -t
    elif kind == KL_LOG:
        grad = -np.exp(t)
    else:
        raise ValueError(f"unknown loss kind {kind}")
    if g.size:
        grad = grad * g
    out[...] = grad * scale


def _log_softmax(x):
    shifted = x - np.max(x, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def _class_weights(target, weight, ignore_index, c):
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    w = weight if weight.size else np.ones(c)
    return valid, safe, w, np.where(valid, w[safe], 0)


def cross_entropy_forward(logits, target, weight, ignore_index, smoothing, losses, wt):
    m, c = logits.shape
    logp = _log_softmax(logits)
    valid, safe, w, wt_ = _class_weights(target, weight, ignore_index, c)
    nll = -wt_ * logp[np.arange(m), safe]
    smooth = -np.sum(logp * w, axis=1)
    loss = (1 - smoothing) * nll + smoothing / c * smooth
    losses[...] = np.where(valid, loss, 0)
    wt[...] = wt_


def cross_entropy_backward(logits, target, weight, ignore_index, smoothing, rowscale, out):
    m, c = logits.shape
    p = np.exp(_log_softmax(logits))
    valid, safe, w, wt_ = _class_weights(target, weight, ignore_index, c)
    onehot = np.eye(c)[safe]
    # d/dz of (1-e) w_t (-logp_t) + e/C sum_c w_c (-logp_c)
    grad = (1 - smoothing) * wt_[:, None] * (p - onehot) + smoothing / c * (np.sum(w) * p - w)
    out[...] = np.where(valid[:, None], grad * rowscale[:, None], 0)


def _smoothed(probs, smoothing):
    return probs * (1 - smoothing) + smoothing / probs.shape[1]


def cross_entropy_prob_forward(logits, probs, weight, smoothing, losses):
    q = _smoothed(probs, smoothing)
    w = weight if weight.size else 1
    losses[...] = -np.sum(_log_softmax(logits) * q * w, axis=1)


def cross_entropy_prob_backward(logits, probs, weight, smoothing, rowscale, out):
    q = _smoothed(probs, smoothing)
    wq = q * weight if weight.size else q
    p = np.exp(_log_softmax(logits))
    out[...] = (p * np.sum(wq, axis=1, keepdims=True) - wq) * rowscale[:, None]


def nll_forward(logp, target, weight, ignore_index, losses, wt):
    m, c = logp.shape
    valid, safe, w, wt_ = _class_weights(target, weight, ignore_index, c)
    losses[...] = np.where(valid, -wt_ * logp[np.arange(m), safe], 0)
    wt[...] = wt_


def nll_backward(target, weight, ignore_index, rowscale, out):
    m, c = out.shape
    valid, safe, w, wt_ = _class_weights(target, weight, ignore_index, c)
    out[...] = 0
    out[np.arange(m)[valid], safe[valid]] = -(wt_ * rowscale)[valid]
