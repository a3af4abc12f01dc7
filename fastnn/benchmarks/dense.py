"""Dense workloads: the seed's MLP train step (issue: foundation)."""
import numpy as np

from . import train_step, workload

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

        tnn = torch.nn
        return train_step(impl, tnn.Sequential(tnn.Linear(784, 256), tnn.Sigmoid(), tnn.Linear(256, 256),
                                               tnn.Sigmoid(), tnn.Linear(256, 10)), x, y)
    from fastnn import train

    return train_step(impl, train.mlp(rng=rng), x, y)
