"""Sharding a data set over ranks (:class:`DistributedSampler`) and evaluating on all of them."""
import math
import numbers

import numpy as np

from .. import _validate as _v
from .comm import all_reduce, get_comm


class DistributedSampler:
    """This rank's share of the indices ``0..n-1`` of a data set, like
    ``torch.utils.data.DistributedSampler``.

    Each epoch the indices are shuffled (if ``shuffle``) with the same seed on every rank,
    ``seed + epoch``, so the shares never overlap; then either padded by repeating indices from
    the start (``drop_last=False``) or cut (``drop_last=True``) so that every rank gets the same
    number, ``len(sampler)``; rank ``r`` takes every ``num_replicas``-th index from position
    ``r``. Call :meth:`set_epoch` before each epoch for a new order (torch's rule).

    The shuffle is ``numpy.random.default_rng(seed + epoch).permutation(n)``, not torch's
    ``randperm``: same semantics, other numbers.

    Parameters
    ----------
    dataset : int or sized
        Number of samples, or anything with ``len()``.
    num_replicas, rank : int, optional
        Default: world size and rank of :func:`fastnn.distributed.init`.
    shuffle : bool, default True
    seed : int, default 0
        The same on every rank.
    drop_last : bool, default False

    Examples
    --------
    >>> s = DistributedSampler(10, num_replicas=3, rank=1, shuffle=False)
    >>> s.indices()
    array([1, 4, 7, 0])
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if isinstance(dataset, numbers.Integral) and not isinstance(dataset, bool):
            n = int(dataset)
        elif hasattr(dataset, "__len__") and not isinstance(dataset, (str, bytes)):
            n = len(dataset)
        else:
            raise TypeError(f"dataset: expected a number of samples (int) or a sized data set, got {type(dataset).__name__}")
        if n < 0:
            raise ValueError(f"dataset: expected a number of samples >= 0, got {n}")
        if num_replicas is None:
            num_replicas = get_comm().Get_size()
        if rank is None:
            rank = get_comm().Get_rank()
        self.num_replicas = _v.positive_int(num_replicas, "num_replicas")
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
            raise TypeError(f"rank: expected an int, got {type(rank).__name__}")
        if not 0 <= rank < self.num_replicas:
            raise _v.IndexOutOfRangeError(f"rank: expected a rank in [0, {self.num_replicas}), got {rank}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
        self.n, self.rank, self.seed = n, int(rank), int(seed)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.epoch = 0
        self.num_samples = n // self.num_replicas if drop_last else math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        """Use the order of epoch ``epoch`` (every rank must pass the same number)."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
            raise TypeError(f"epoch: expected an int, got {type(epoch).__name__}")
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch: int64 array of length ``len(self)``."""
        order = (np.random.default_rng(self.seed + self.epoch).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        order = np.resize(order, self.total_size)  # pads by repeating from the start, or cuts
        return order[self.rank :: self.num_replicas].astype(np.int64, copy=False)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples

    def __repr__(self):
        return (f"DistributedSampler(n={self.n}, num_replicas={self.num_replicas}, rank={self.rank}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last})")


def shard(n, rank=None, num_replicas=None):
    """``slice`` of this rank's contiguous share of ``n`` items (shares differ by at most one,
    no padding: for evaluation, where a repeated sample would count twice)."""
    if num_replicas is None:
        num_replicas = get_comm().Get_size()
    if rank is None:
        rank = get_comm().Get_rank()
    return slice(rank * n // num_replicas, (rank + 1) * n // num_replicas)


def evaluate(model, x, y, batch_size=1000, comm=None):
    """Classification accuracy over the whole ``(x, y)``, each rank scoring its share.

    Every rank passes the same ``x`` and ``y`` (or arrays of the same length: only the rank's
    contiguous share is read); correct counts are summed over the ranks, so the result is the
    accuracy of the full set, the same on every rank.

    Parameters
    ----------
    model : fastnn.nn.Module (or a DistributedDataParallel)
    x : array of shape (n, ...); y : int array of shape (n,)
    batch_size : int, default 1000
    comm : mpi4py.MPI.Intracomm, optional

    Returns
    -------
    float, a fraction in [0, 1]
    """
    from ..train import count_correct

    c = get_comm(comm)
    if len(x) != len(y):
        raise ValueError(f"y: expected {len(x)} labels (one per sample of x), got {len(y)}")
    part = shard(len(x), c.Get_rank(), c.Get_size())
    correct = count_correct(model, x[part], y[part], batch_size)
    total = all_reduce(np.array([correct, len(x[part])], dtype=np.int64), comm=c)
    return int(total[0]) / max(int(total[1]), 1)
