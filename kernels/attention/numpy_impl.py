"""NumPy attention: batched matmul (BLAS) and a stable softmax over the whole batch at once.

Builds the full (B, L, S) score array (O(B*L*S) memory) but runs every product as one stacked
BLAS call and every elementwise step as one vectorised pass, in place where possible.
"""
import numpy as np


def _probs(q, k, mask, mask_idx, causal, scale):
    """Probabilities (B, L, S) in place of the scores, and the log-sum-exp (B, L)."""
    s = np.matmul(q, k.transpose(0, 2, 1))
    s *= scale
    if mask.shape[0] == 1:
        s += mask[0]
    elif mask.shape[0]:
        s += mask[mask_idx]
    if causal:  # one broadcast add of a 0/-inf (L, S) bias (boolean-index assignment is ~10x slower)
        L, S = s.shape[1:]
        s += np.where(np.arange(S)[None, :] > np.arange(L)[:, None], -np.inf, 0).astype(s.dtype)
    m = s.max(axis=2, keepdims=True)
    dead = np.isneginf(m)
    m[dead] = 0
    s -= m
    np.exp(s, out=s)
    total = s.sum(axis=2, keepdims=True)
    total[dead] = 1
    s /= total
    lse = m + np.log(total)
    lse[dead] = -np.inf
    return s, lse[..., 0]


def sdpa_forward(q, k, v, mask, mask_idx, causal, scale, out, lse):
    p, lse[...] = _probs(q, k, mask, mask_idx, causal, scale)
    np.matmul(p, v, out=out)


def sdpa_backward(grad_out, q, k, v, mask, mask_idx, causal, scale, out, lse, grad_q, grad_k, grad_v):
    p, _ = _probs(q, k, mask, mask_idx, causal, scale)
    np.matmul(p.transpose(0, 2, 1), grad_out, out=grad_v)
    ds = np.matmul(grad_out, v.transpose(0, 2, 1))
    ds -= np.einsum("ble,ble->bl", grad_out, out)[..., None]
    ds *= p
    ds *= scale
    np.matmul(ds, k, out=grad_q)
    np.matmul(ds.transpose(0, 2, 1), q, out=grad_k)


def sdpa_weights(q, k, mask, mask_idx, causal, scale, weights):
    weights[...], _ = _probs(q, k, mask, mask_idx, causal, scale)
