"""Attention workloads (issue 4): fused SDPA and MultiheadAttention, forward + backward.

* ``sdpa_causal``: causal SDPA, B=8, H=8, L=S=256, E=64, float32, forward and backward.
* ``mha``: ``MultiheadAttention(512, 8)`` self-attention, batch 16, L=128,
  ``need_weights=False``, forward and backward (input and parameter gradients).
* ``sdpa_long``: non-causal SDPA forward, B=H=1, L=S=8192, E=64 (the memory workload).

The registry's ``peak_mem_bytes`` of ``sdpa_long`` is the memory check: the fused kernels'
scratch buffers are all NumPy arrays (seen by ``tracemalloc``), and the sampled RSS sees the
rest (BLAS buffers, Numba's runtime).
"""
import numpy as np

from . import workload

B, H, L, E = 8, 8, 256, 64
MHA_E, MHA_H, MHA_N, MHA_L = 512, 8, 16, 128
LONG = 8192

# useful flops: forward q@k.T and p@v (2 GEMMs), backward dv, dp, dq, dk (4 GEMMs): 12*L*S*E
# per head; causal counts the lower triangle only
SDPA_FLOPS = 0.5 * 12 * B * H * L * L * E
MHA_FLOPS = 24 * MHA_N * MHA_L * MHA_E ** 2 + 12 * MHA_N * MHA_H * MHA_L * MHA_L * (MHA_E // MHA_H)


def _sdpa_inputs(shape_q, shape_k, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(shape_q, dtype=np.float32)
    k = rng.standard_normal(shape_k, dtype=np.float32)
    v = rng.standard_normal(shape_k, dtype=np.float32)
    return q, k, v, rng.standard_normal(shape_q, dtype=np.float32)


@workload("sdpa_causal", op="attention", shape=f"B={B} H={H} L=S={L} E={E} causal", flops=SDPA_FLOPS,
          note="forward + backward (grad q, k, v)")
def sdpa_causal(impl):
    q, k, v, g = _sdpa_inputs((B, H, L, E), (B, H, L, E))
    if impl == "torch":
        import torch

        tq, tk, tv = (torch.from_numpy(a).requires_grad_() for a in (q, k, v))
        tg = torch.from_numpy(g)

        def step():
            for t in (tq, tk, tv):
                t.grad = None
            torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True).backward(tg)

        return step
    from fastnn import functional as F

    def step():
        out, lse = F.scaled_dot_product_attention(q, k, v, is_causal=True, return_lse=True)
        return F.scaled_dot_product_attention_backward(g, q, k, v, is_causal=True, out=out, lse=lse)

    return step


@workload("mha", op="attention", shape=f"MultiheadAttention E={MHA_E} heads={MHA_H} N={MHA_N} L={MHA_L}",
          flops=MHA_FLOPS, note="self-attention, need_weights=False, forward + backward")
def mha(impl):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((MHA_L, MHA_N, MHA_E), dtype=np.float32)
    g = rng.standard_normal((MHA_L, MHA_N, MHA_E), dtype=np.float32)
    if impl == "torch":
        import torch

        m = torch.nn.MultiheadAttention(MHA_E, MHA_H)
        tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

        def step():
            m.zero_grad()
            tx.grad = None
            m(tx, tx, tx, need_weights=False)[0].backward(tg)

        return step
    from fastnn import nn

    m = nn.MultiheadAttention(MHA_E, MHA_H, rng=rng)

    def step():
        m.zero_grad()
        m(x, x, x, need_weights=False)
        return m.backward(g)

    return step


@workload("sdpa_long", op="attention", shape=f"B=H=1 L=S={LONG} E={E}", flops=4 * LONG * LONG * E,
          impls=("numpy", "numba", "cython", "auto", "torch"), note="forward only: the memory check")
def sdpa_long(impl):
    q, k, v, _ = _sdpa_inputs((1, 1, LONG, E), (1, 1, LONG, E))
    if impl == "torch":
        import torch

        tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
        return lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)
    from fastnn import functional as F

    return lambda: F.scaled_dot_product_attention(q, k, v)
