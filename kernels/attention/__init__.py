"""Attention kernels: scaled dot-product attention, forward, backward and weights.

Shared signature of every backend. The batch is flattened: ``B`` is the product of the
leading dims. All arrays are C-contiguous and of one float dtype (``mask_idx`` is int64);
outputs are allocated by the caller::

    sdpa_forward(q, k, v, mask, mask_idx, causal, scale, out, lse)
    sdpa_backward(grad_out, q, k, v, mask, mask_idx, causal, scale, out, lse,
                  grad_q, grad_k, grad_v)
    sdpa_weights(q, k, mask, mask_idx, causal, scale, weights)

q (B, L, E), k (B, S, E), v (B, S, Ev), out (B, L, Ev), lse (B, L),
grad_q/grad_k/grad_v like q/k/v, weights (B, L, S).

The mask is *compact* and *additive*: ``mask`` has shape (M, Lm, S) with ``Lm`` 1 (shared by
every query row) or L, and batch element ``b`` uses ``mask[mask_idx[b]]``; so one mask shared
by all heads is stored once. A boolean mask arrives as 0 (may attend) / -inf (may not).
``M == 0`` means no mask. ``causal`` masks key ``j > i`` for query ``i`` (top-left aligned,
as torch's ``is_causal``). The score of query i and key j is
``scale * q[b, i] . k[b, j] + mask[mask_idx[b], i or 0, j]``.

``lse[b, i]`` is the log-sum-exp of row i's scores, saved by the forward so the backward can
recompute the probabilities ``exp(score - lse)`` tile by tile. A row with no allowed key has
``lse = -inf``, output 0 and gradients 0 (torch gives NaN there).
"""
