"""Optimiser workloads (issue 13): one AdamW step over 10 M float32 parameters, fastnn's fused
update kernel against torch's ``foreach`` AdamW (its multi-tensor path)."""
import numpy as np

from . import workload

SHAPES = [(1000, 2500)] * 4  # 10 M parameters in four tensors
N = sum(a * b for a, b in SHAPES)


@workload("adamw_step", op="adamw", shape=f"{N / 1e6:.0f} M parameters in {len(SHAPES)} tensors",
          flops=15 * N, note="one AdamW step (weight decay 0.01); torch: foreach=True. "
          "FLOPs: ~15 per element (memory-bound: 7 arrays read or written)")
def adamw_step(impl):
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s, dtype=np.float32) for s in SHAPES]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in SHAPES]
    if impl == "torch":
        import torch

        ps = [torch.nn.Parameter(torch.from_numpy(v)) for v in values]
        for p, g in zip(ps, grads):
            p.grad = torch.from_numpy(g)
        opt = torch.optim.AdamW(ps, lr=1e-3, foreach=True)
        return opt.step
    from fastnn import nn, optim

    ps = [nn.Parameter(v) for v in values]
    for p, g in zip(ps, grads):
        p.grad = g
    opt = optim.AdamW(ps, lr=1e-3)
    return opt.step
