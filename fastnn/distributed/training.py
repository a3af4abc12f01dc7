"""``fastnn train mlp|cnn --distributed``: the epoch split over the ranks of an MPI job."""
import time

import numpy as np

from ..train import mnist_setup, train_step
from .comm import all_reduce, get_comm
from .data import DistributedSampler, evaluate
from .ddp import DistributedDataParallel


def fit(model, opt, train, test, epochs, batch_size, seed=0, progress=True, log=print, lr_gamma=1.0,
        bucket_mb=25, comm=None):
    """Data-parallel :func:`fastnn.train.fit`: each rank trains on its :class:`DistributedSampler`
    share of every epoch with batches of ``batch_size`` (a step sees ``world_size * batch_size``
    samples), gradients averaged by :class:`DistributedDataParallel`; the test accuracy is
    computed over all ranks. Rank 0 alone shows the progress bar and calls ``log``. Every rank
    returns the test accuracy (a fraction)."""
    from tqdm import tqdm

    ddp = model if isinstance(model, DistributedDataParallel) else DistributedDataParallel(model, bucket_mb, comm)
    c = ddp.comm
    rank, world = c.Get_rank(), c.Get_size()
    lead = rank == 0
    x_train, y_train = train
    from .. import optim

    sched = optim.lr_scheduler.ExponentialLR(opt, lr_gamma)  # the learning rate times lr_gamma after each epoch
    sampler = DistributedSampler(len(x_train), world, rank, shuffle=True, seed=seed)
    acc = 0.0
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch - 1)
        order = sampler.indices()
        t0, sync0 = time.perf_counter(), ddp.sync_seconds
        bar = tqdm(range(0, len(order), batch_size), desc=f"epoch {epoch}/{epochs}", unit="batch",
                   disable=not (progress and lead), leave=True)
        running = None
        for k, i in enumerate(bar):
            idx = order[i : i + batch_size]
            loss = train_step(ddp, opt, x_train[idx], y_train[idx])
            running = loss if running is None else 0.95 * running + 0.05 * loss
            if k % 20 == 0:
                elapsed = time.perf_counter() - t0
                bar.set_postfix(loss=f"{running:.4f}", samples_s=f"{(i + len(idx)) * world / max(elapsed, 1e-9):,.0f}",
                                refresh=False)
        dt = time.perf_counter() - t0
        sync = ddp.sync_seconds - sync0
        loss = float(all_reduce(np.array([running if running is not None else np.nan]), "mean", comm=c)[0])
        acc = evaluate(ddp, *test, comm=c)
        if lead:
            log(f"epoch {epoch}: loss {loss:.4f}, {dt:.1f} s ({len(x_train) / dt:,.0f} samples/s on {world} ranks; "
                f"gradient allreduce {sync:.2f} s, {100 * sync / dt:.1f}% of the epoch), test accuracy {acc * 100:.2f}%")
        sched.step()
    return acc


def train_mnist(name, epochs=3, batch_size=64, lr=None, seed=0, limit=None, progress=True, log=print,
                bucket_mb=25, comm=None):
    """``fastnn train mlp|cnn --distributed``: the single-process model, optimiser, data and
    hyper-parameters of :func:`fastnn.train.mnist_setup`, trained with :func:`fit`.

    ``batch_size`` is the batch of one step over all ranks, as in the single-process command:
    each rank takes ``ceil(batch_size / world_size)`` samples (all of it when that divides), so
    adding ranks splits the same optimisation across them instead of changing it (a larger
    batch would need another learning rate to reach the same accuracy in as many epochs)."""
    c = get_comm(comm)
    per_rank = -(-batch_size // c.Get_size())
    model, opt, train, test, gamma = mnist_setup(name, lr, seed, limit)
    log(f"{c.Get_size()} ranks x {per_rank} samples per step (batch {per_rank * c.Get_size()})")
    return fit(model, opt, train, test, epochs, per_rank, seed, progress, log, gamma, bucket_mb, c)
