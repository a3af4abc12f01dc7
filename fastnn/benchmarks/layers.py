"""Normalisation and activation workloads (issue 12), each forward + backward in float32:

* ``batchnorm2d``: ``BatchNorm2d(64)`` in training mode on N=32, 56x56 (batch statistics,
  running-statistics update, input/weight/bias gradients);
* ``layernorm``: ``LayerNorm(512)`` on 16x128x512 (input/weight/bias gradients);
* ``gelu``: exact GELU (erf) on 16x128x2048 (input gradient).

fastnn runs its modules (``forward`` then ``backward``), torch the same modules with
autograd. "flops" counts input elements (these ops are memory- and transcendental-bound).
"""
import numpy as np

from . import workload

BN = (32, 64, 56, 56)
LN = (16, 128, 512)
GELU = (16, 128, 2048)


def _step(impl, make_fastnn, make_torch, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    if impl == "torch":
        import torch

        m = make_torch(torch)
        xt, gt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(g)

        def step():
            xt.grad = None
            m.zero_grad()
            m(xt).backward(gt)

        return step
    m = make_fastnn()

    def step():
        m.zero_grad()
        m(x)
        return m.backward(g)

    return step


@workload("batchnorm2d", op="norm", shape="BatchNorm2d(64), N=32 C=64 56x56, train mode", flops=np.prod(BN),
          note="forward + backward (input, weight, bias); 'flops' counts input elements")
def batchnorm2d(impl):
    from .. import nn

    return _step(impl, lambda: nn.BatchNorm2d(BN[1]), lambda torch: torch.nn.BatchNorm2d(BN[1]), BN)


@workload("layernorm", op="norm", shape="LayerNorm(512), 16x128x512", flops=np.prod(LN),
          note="forward + backward (input, weight, bias); 'flops' counts input elements")
def layernorm(impl):
    from .. import nn

    return _step(impl, lambda: nn.LayerNorm(LN[-1]), lambda torch: torch.nn.LayerNorm(LN[-1]), LN)


@workload("gelu", op="activation", shape="GELU (erf), 16x128x2048", flops=np.prod(GELU),
          note="forward + backward (input); 'flops' counts input elements")
def gelu(impl):
    from .. import nn

    return _step(impl, lambda: nn.GELU(), lambda torch: torch.nn.GELU(), GELU)
