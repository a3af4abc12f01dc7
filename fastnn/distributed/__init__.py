"""Data-parallel training over MPI (mpi4py): an optional part of fastnn.

Install with ``pip install 'fastnn[distributed]'`` (mpi4py and the mpich wheel, which ships
``mpiexec``) or use an mpi4py built against a cluster's MPI. ``import fastnn`` never imports
this package, and importing it does not import mpi4py: :func:`init` does.

>>> from fastnn import distributed as dist, nn, optim      # doctest: +SKIP
>>> dist.init()                                            # MPI.COMM_WORLD
>>> model = dist.DistributedDataParallel(nn.Linear(784, 10))
>>> opt = optim.SGD(model.parameters(), lr=0.1)
>>> sampler = dist.DistributedSampler(len(x), seed=0)
>>> for epoch in range(3):
...     sampler.set_epoch(epoch)
...     for idx in np.array_split(sampler.indices(), 100):
...         opt.zero_grad(); y = model(x[idx]); model.backward(dy(y)); opt.step()

Run it with ``mpiexec -n 4 python train.py`` (or ``srun`` under Slurm); see
``docs/distributed.md``.
"""
from .comm import (INSTALL_HINT, abort, abort_on_error, all_reduce, barrier, broadcast, get_comm,
                   get_local_world_size, get_rank, get_world_size, init, is_available, is_initialized)
from .data import DistributedSampler, evaluate, shard
from .ddp import DistributedDataParallel
from . import training  # noqa: E402  (fit and train_mnist, used by the CLI)

__all__ = [
    "init", "is_available", "is_initialized", "get_comm", "get_rank", "get_world_size",
    "get_local_world_size", "barrier", "all_reduce", "broadcast", "abort", "abort_on_error",
    "DistributedDataParallel", "DistributedSampler", "evaluate", "shard", "INSTALL_HINT",
]
