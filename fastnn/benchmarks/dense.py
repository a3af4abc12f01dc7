"""Dense workloads: the seed's MLP train step (issue: foundation)."""
import numpy as np

from . import workload

MLP_SIZES = (784, 256, 256, 10)
BATCH = 64


def _mlp_flops(batch=BATCH, sizes=MLP_SIZES):
    # forward GEMMs 2*B*in*out each; backward: weight grads for all, input grads for all but the first
    f = 0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        f += 2 * batch * a * b * (3 if i else 2)
    return f


@workload("mlp_step", op="mlp", shape=f"batch {BATCH}, 784-256-256-10", flops=_mlp_flops(),
          note="Adam step: forward, softmax cross-entropy, backward, update")
def mlp_step(impl):
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 784), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    if impl == "torch":
        import torch

        m = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.Sigmoid(), torch.nn.Linear(256, 256),
                                torch.nn.Sigmoid(), torch.nn.Linear(256, 10))
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def step():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(xt), yt).backward()
            opt.step()

        return step
    from .. import optim, train

    m = train.mlp(rng=rng)
    opt = optim.Adam(m.parameters(), lr=1e-3)
    return lambda: train.train_step(m, opt, x, y)
