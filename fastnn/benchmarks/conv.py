"""Convolution and pooling workloads (issue 3): the issue's three conv shapes, forward + all
three gradients; a max-pool forward + backward; one training step of the MNIST CNN.

The ladder of each conv shape starts at ``seed``: the seed's own convolution
(``kernels/conv2d/seed.py``: Python loops over images, output positions and output channels
around a NumPy window product). It runs one image (conv_c: one 28x28 image) of the shape, a
hidden ``*_seed`` workload, and its time is scaled to the full shape by the ratio of
multiply-adds; its loops cost the same per output position and channel whatever the batch, so
the scaled time is what the full shape would take. Every fastnn backend runs the shapes in
full (the ``reference`` rung too: its loop is over output positions, vectorised over batch and
channels, so it finishes in about a second).
"""
import numpy as np

from . import FASTNN_IMPLS, train_step, workload

CONV_SHAPES = {
    # name: (N, C, H, W, K, k, pad)
    "conv_a": (32, 1, 28, 28, 32, 5, 2),
    "conv_b": (32, 32, 14, 14, 64, 3, 1),
    "conv_c": (8, 64, 56, 56, 64, 3, 1),
}
SEED_SHAPES = {  # what the seed's loops run instead (time scaled by multiply-adds)
    "conv_a_seed": (1, 1, 28, 28, 32, 5, 2),
    "conv_b_seed": (1, 32, 14, 14, 64, 3, 1),
    "conv_c_seed": (1, 64, 28, 28, 64, 3, 1),
}


def _conv_flops(N, C, H, W, K, k, pad):
    oh, ow = H + 2 * pad - k + 1, W + 2 * pad - k + 1
    return 3 * 2 * N * K * oh * ow * C * k * k  # forward, grad_x, grad_w: one GEMM-sized product each


def _conv_factory(name):
    N, C, H, W, K, k, pad = {**CONV_SHAPES, **SEED_SHAPES}[name]

    def make(impl):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, C, H, W), dtype=np.float32)
        w = rng.standard_normal((K, C, k, k), dtype=np.float32) * 0.1
        b = rng.standard_normal(K, dtype=np.float32)
        g = rng.standard_normal((N, K, H + 2 * pad - k + 1, W + 2 * pad - k + 1), dtype=np.float32)
        if impl == "torch":
            import torch

            xt = torch.from_numpy(x).requires_grad_(True)
            wt = torch.from_numpy(w).requires_grad_(True)
            bt = torch.from_numpy(b).requires_grad_(True)
            gt = torch.from_numpy(g)

            def step():
                xt.grad = wt.grad = bt.grad = None
                torch.nn.functional.conv2d(xt, wt, bt, padding=pad).backward(gt)

            return step
        if impl == "seed":
            from fastnn.kernels.conv2d import seed

            out, gx, gw, gb = np.empty_like(g), np.empty_like(x), np.empty_like(w), np.empty_like(b)
            geo = ((1, 1), (pad,) * 4, (1, 1), 1)

            def step():
                seed.conv2d_forward(x, w, b, out, *geo)
                seed.conv2d_backward(g, x, w, gx, gw, gb, *geo)

            return step
        from fastnn import functional as F

        def step():
            F.conv2d(x, w, b, padding=pad)
            F.conv2d_backward(g, x, w, padding=pad)

        return step

    return make


for _name, _s in CONV_SHAPES.items():
    N, C, H, W, K, k, pad = _s
    workload(_name, op="conv2d", shape=f"N={N} C={C} {H}x{W} K={K} {k}x{k} pad {pad}", flops=_conv_flops(*_s),
             impls=("seed",) + FASTNN_IMPLS + ("torch",), small=f"{_name}_seed", slow_impls=("seed",),
             note="forward + grad_input + grad_weight + grad_bias")(_conv_factory(_name))
for _name, _s in SEED_SHAPES.items():
    N, C, H, W, K, k, pad = _s
    workload(_name, op="conv2d", shape=f"N={N} C={C} {H}x{W} K={K} {k}x{k} pad {pad}", flops=_conv_flops(*_s),
             impls=("seed",), hidden=True)(_conv_factory(_name))

POOL = (32, 32, 28, 28)


@workload("maxpool", op="pool2d", shape="N=32 C=32 28x28, 2x2 stride 2", flops=2 * np.prod(POOL),
          note="max_pool2d forward + backward; 'flops' counts compared/added elements")
def maxpool(impl):
    x = np.random.default_rng(0).standard_normal(POOL, dtype=np.float32)
    g = np.random.default_rng(1).standard_normal((32, 32, 14, 14), dtype=np.float32)
    if impl == "torch":
        import torch

        xt = torch.from_numpy(x).requires_grad_(True)
        gt = torch.from_numpy(g)

        def step():
            xt.grad = None
            torch.nn.functional.max_pool2d(xt, 2).backward(gt)

        return step
    from fastnn import functional as F

    def step():
        F.max_pool2d(x, 2)
        F.max_pool2d_backward(g, x, 2)

    return step


CNN_BATCH = 64


def _cnn_flops(batch=CNN_BATCH):
    c1 = 2 * batch * 32 * 28 * 28 * 25 * 2  # forward + grad_w (no grad_x for the first layer)
    c2 = 2 * batch * 64 * 14 * 14 * 32 * 9 * 3
    fc = 2 * batch * 64 * 7 * 7 * 10 * 3
    return c1 + c2 + fc


@workload("cnn_step", op="cnn", shape=f"batch {CNN_BATCH}, MNIST CNN (issue 3)", flops=_cnn_flops(),
          impls=tuple(i for i in FASTNN_IMPLS if i != "reference") + ("torch",),
          note="Adam step: forward, cross-entropy, backward, update")
def cnn_step(impl):
    rng = np.random.default_rng(0)
    x = rng.random((CNN_BATCH, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, CNN_BATCH)
    if impl == "torch":
        import torch

        tnn = torch.nn
        return train_step(impl, tnn.Sequential(tnn.Conv2d(1, 32, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                                               tnn.Conv2d(32, 64, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
                                               tnn.Flatten(), tnn.Linear(64 * 7 * 7, 10)), x, y)
    from fastnn import train

    return train_step(impl, train.cnn(rng=rng), x, y)
