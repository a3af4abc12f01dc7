"""Reference attention: the seed's formulation, made exact and general.

The seed computes ``scores = q @ k.T / sqrt(d_k)``, masks with ``masked_fill(mask == 0, -1e9)``,
takes a softmax and multiplies by ``v``. Here the batch is a plain loop, masks are exact
(-inf, not -1e9, so a masked key gets probability exactly 0) and a row with no allowed key
gives probability 0 everywhere instead of NaN. The full (L, S) score matrix of one batch
element is built: simple and readable, O(L*S) memory.
"""
import numpy as np


def _scores(q, k, mask, mask_idx, causal, scale, b):
    s = (q[b] @ k[b].T) * scale
    if mask.shape[0]:
        s = s + mask[mask_idx[b]]  # (Lm, S) broadcasts over the L rows
    if causal:
        L, S = s.shape
        s = np.where(np.arange(S)[None, :] > np.arange(L)[:, None], -np.inf, s)
    return s


def _probs(s):
    """Row softmax of ``s`` and its log-sum-exp; all -inf rows give 0 and -inf."""
    m = s.max(axis=1, keepdims=True)
    dead = np.isneginf(m)
    m = np.where(dead, 0, m)
    e = np.exp(s - m)
    total = e.sum(axis=1, keepdims=True)
    p = np.where(dead, 0, e / np.where(dead, 1, total))
    lse = np.where(dead, -np.inf, m + np.log(np.where(dead, 1, total)))
    return p, lse[:, 0]


def sdpa_forward(q, k, v, mask, mask_idx, causal, scale, out, lse):
    for b in range(q.shape[0]):
        p, lse[b] = _probs(_scores(q, k, mask, mask_idx, causal, scale, b))
        out[b] = p @ v[b]


def sdpa_backward(grad_out, q, k, v, mask, mask_idx, causal, scale, out, lse, grad_q, grad_k, grad_v):
    for b in range(q.shape[0]):
        p, _ = _probs(_scores(q, k, mask, mask_idx, causal, scale, b))
        grad_v[b] = p.T @ grad_out[b]
        dp = grad_out[b] @ v[b].T
        ds = p * (dp - (dp * p).sum(axis=1, keepdims=True)) * scale
        grad_q[b] = ds @ k[b]
        grad_k[b] = ds.T @ q[b]


def sdpa_weights(q, k, mask, mask_idx, causal, scale, weights):
    for b in range(q.shape[0]):
        weights[b], _ = _probs(_scores(q, k, mask, mask_idx, causal, scale, b))
