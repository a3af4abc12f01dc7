"""Vectorised NumPy loss kernels: the reference's formulas written into the caller's ``out``.

What changes from the reference: results go straight into ``out`` (``out=`` arguments,
in-place updates, ``where=`` instead of ``np.where`` temporaries), the one-hot matrix of the
class-index gradient is one fancy-indexed subtract, and float32 stays float32.
"""
import numpy as np

from . import BCE, BCE_EPS, BCE_LOGITS, HUBER, KL, KL_LOG, L1, MSE, SMOOTH_L1


def _log_sigmoid(x, out):
    """out = min(x, 0) - log1p(exp(-|x|))."""
    np.abs(x, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    np.subtract(np.minimum(x, 0), out, out=out)


def pointwise_forward(kind, x, t, pos_weight, param, out):
    if kind in (MSE, L1, SMOOTH_L1, HUBER):
        np.subtract(x, t, out=out)
        if kind == MSE:
            np.multiply(out, out, out=out)
            return
        np.abs(out, out=out)
        if kind in (SMOOTH_L1, HUBER):
            # q = min(|d|, p): q (|d| - q / 2) is 0.5 d^2 inside [-p, p] and p (|d| - p / 2) outside
            # (no masked where= passes, which cost 10x more); smooth L1 is Huber / beta
            q = np.minimum(out, param)
            out -= 0.5 * q
            out *= q
            if kind == SMOOTH_L1:
                out /= param
    elif kind == BCE:
        with np.errstate(divide="ignore"):
            np.log1p(-x, out=out)
            np.maximum(out, -100, out=out)
            out *= t - 1
            logx = np.log(x)
        np.maximum(logx, -100, out=logx)
        logx *= t
        out -= logx
    elif kind == BCE_LOGITS:
        _log_sigmoid(x, out)
        if pos_weight.size:
            out *= 1 + (pos_weight - 1) * t
        np.subtract((1 - t) * x, out, out=out)
    elif kind == KL:
        out[...] = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            np.log(t, out=out, where=t != 0)
        out *= t  # xlogy(t, t): 0 where t == 0
        out -= t * x
    elif kind == KL_LOG:
        np.subtract(t, x, out=out)
        out *= np.exp(t)
    else:
        raise ValueError(f"unknown loss kind {kind}")


def pointwise_backward(kind, x, t, pos_weight, param, g, scale, out):
    if kind in (MSE, L1, SMOOTH_L1, HUBER):
        np.subtract(x, t, out=out)
        if kind == MSE:
            out *= 2
        elif kind == L1:
            np.sign(out, out=out)
        else:  # clip(d, -p, p), divided by beta for smooth L1
            np.clip(out, -param, param, out=out)
            if kind == SMOOTH_L1:
                out /= param
    elif kind == BCE:
        np.subtract(x, t, out=out)
        out /= np.maximum((1 - x) * x, BCE_EPS)
    elif kind == BCE_LOGITS:
        # sigmoid(x) without overflow, then torch's (p t + 1 - t) sigmoid(x) - p t
        np.abs(x, out=out)
        np.negative(out, out=out)
        np.exp(out, out=out)
        e = out.copy()
        np.add(out, 1, out=out)
        np.reciprocal(out, out=out)
        np.multiply(out, e, out=out, where=x < 0)
        if pos_weight.size:
            pt = pos_weight * t
            out *= pt + 1 - t
            out -= pt
        else:
            out -= t
    elif kind == KL:
        np.negative(t, out=out)
    elif kind == KL_LOG:
        np.exp(t, out=out)
        np.negative(out, out=out)
    else:
        raise ValueError(f"unknown loss kind {kind}")
    if g.size:
        out *= g
    out *= scale


def _log_softmax(x):
    out = x - x.max(axis=1, keepdims=True)
    out -= np.log(np.exp(out).sum(axis=1, keepdims=True))
    return out


def _row_weights(target, weight, ignore_index):
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    wt = weight[safe] if weight.size else np.ones(target.shape[0])
    wt[~valid] = 0
    return valid, safe, wt


def cross_entropy_forward(logits, target, weight, ignore_index, smoothing, losses, wt):
    m, c = logits.shape
    logp = _log_softmax(logits)
    valid, safe, wt_ = _row_weights(target, weight, ignore_index)
    np.multiply(logp[np.arange(m), safe], -(1 - smoothing) * wt_, out=losses)
    if smoothing:
        if weight.size:
            logp *= weight
        losses -= smoothing / c * logp.sum(axis=1)
    losses[~valid] = 0
    wt[...] = wt_


def cross_entropy_backward(logits, target, weight, ignore_index, smoothing, rowscale, out):
    m, c = logits.shape
    np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    valid, safe, wt_ = _row_weights(target, weight, ignore_index)
    total = weight.sum() if weight.size else c
    a = (1 - smoothing) * wt_ + smoothing / c * total
    out *= (a * rowscale)[:, None]
    out[np.arange(m), safe] -= (1 - smoothing) * wt_ * rowscale
    if smoothing:
        out -= (smoothing / c) * rowscale[:, None] * (weight if weight.size else 1)
    out[~valid] = 0


def cross_entropy_prob_forward(logits, probs, weight, smoothing, losses):
    q = probs * (1 - smoothing) + smoothing / probs.shape[1] if smoothing else probs.copy()
    if weight.size:
        q *= weight
    q *= _log_softmax(logits)
    np.negative(q.sum(axis=1), out=losses)


def cross_entropy_prob_backward(logits, probs, weight, smoothing, rowscale, out):
    wq = probs * (1 - smoothing) + smoothing / probs.shape[1] if smoothing else probs.copy()
    if weight.size:
        wq *= weight
    np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out *= (wq.sum(axis=1) / out.sum(axis=1))[:, None]
    out -= wq
    out *= rowscale[:, None]


def nll_forward(logp, target, weight, ignore_index, losses, wt):
    valid, safe, wt_ = _row_weights(target, weight, ignore_index)
    np.multiply(logp[np.arange(logp.shape[0]), safe], -wt_, out=losses)
    losses[~valid] = 0
    wt[...] = wt_


def nll_backward(target, weight, ignore_index, rowscale, out):
    valid, safe, wt_ = _row_weights(target, weight, ignore_index)
    out[...] = 0
    rows = np.flatnonzero(valid)
    out[rows, safe[rows]] = -(wt_ * rowscale)[rows]
