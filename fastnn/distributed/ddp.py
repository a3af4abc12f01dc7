"""DistributedDataParallel: one replica of a module per rank, gradients averaged over ranks.

Why the replicas stay bit-for-bit identical: they start from the same bytes (rank 0's,
broadcast at construction); after each backward every rank holds the same reduced bytes,
because MPI requires that all processes of an allreduce receive identical results (MPICH
computes each element once and copies it, or combines the same partial sums the same way on
every rank); each rank then divides them by the world size and runs the optimiser on them, both
deterministic element-wise code. Same inputs, same code, same bytes out, step after step.
"""
import math
import numbers
import time
from contextlib import contextmanager

import numpy as np

from ..nn.module import Module
from .comm import _mpi, get_comm


class _Bucket:
    """Consecutive parameters of one dtype whose gradients travel in one flat buffer.

    Buffer layout: every gradient flattened, then one slot per parameter that counts the ranks
    that had a gradient for it (so a parameter without gradient on every rank keeps ``None``)."""

    __slots__ = ("params", "names", "offsets", "buffer")

    def __init__(self, named):
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.offsets = np.cumsum([0] + [p.data.size for p in self.params]).tolist()
        self.buffer = np.empty(self.offsets[-1] + len(self.params), self.params[0].data.dtype)

    def pack(self):
        buf, flags = self.buffer, self.buffer[self.offsets[-1]:]
        for i, p in enumerate(self.params):
            view = buf[self.offsets[i] : self.offsets[i + 1]]
            g = p.grad
            if g is None:
                view[...] = 0
                flags[i] = 0
            else:
                if g.shape != p.data.shape:
                    raise ValueError(f"{self.names[i]}.grad: expected shape {p.data.shape}, got {g.shape}")
                np.copyto(view.reshape(g.shape), g)
                flags[i] = 1

    def unpack(self, world):
        buf, flags = self.buffer, self.buffer[self.offsets[-1]:]
        for i, p in enumerate(self.params):
            if flags[i] == 0:  # no rank had a gradient for it
                p.grad = None
                continue
            view = buf[self.offsets[i] : self.offsets[i + 1]].reshape(p.data.shape)
            g = p.grad
            if g is not None and g.dtype == view.dtype and g.flags.c_contiguous and g.flags.writeable:
                np.divide(view, world, out=g)
            else:
                p.grad = view / world


def _buckets(named, cap_bytes):
    """Parameters in reverse order (torch's: the last layer's gradient is ready first), cut into
    buckets of at most ``cap_bytes`` (a larger parameter gets a bucket of its own) and one dtype."""
    out, cur, size = [], [], 0
    for name, p in reversed(named):
        nbytes = p.data.nbytes
        if cur and (p.data.dtype != cur[0][1].data.dtype or size + nbytes > cap_bytes):
            out.append(_Bucket(cur))
            cur, size = [], 0
        cur.append((name, p))
        size += nbytes
    if cur:
        out.append(_Bucket(cur))
    return out


def _check_same_model(comm, named):
    """``ValueError`` on every rank, naming the first parameter whose name, shape or dtype
    differs from rank 0's."""
    mine = [(n, p.data.shape, p.data.dtype.str) for n, p in named]
    every = comm.allgather(mine)
    ref = every[0]
    for r, theirs in enumerate(every[1:], 1):
        for i in range(max(len(ref), len(theirs))):
            a = ref[i] if i < len(ref) else None
            b = theirs[i] if i < len(theirs) else None
            if a == b:
                continue
            if a is None or b is None:
                name, here, there = (b[0], "has", "lacks") if a is None else (a[0], "lacks", "has")
                raise ValueError(
                    f"module: the replicas differ at parameter {name!r}: rank {r} {here} it, rank 0 {there} it "
                    f"({len(theirs)} parameters on rank {r}, {len(ref)} on rank 0); every rank must build the same model"
                )
            what = (f"is named {b[0]!r} on rank {r} but {a[0]!r} on rank 0" if a[0] != b[0] else
                    f"has shape {b[1]} dtype {np.dtype(b[2])} on rank {r} but shape {a[1]} dtype {np.dtype(a[2])} on rank 0")
            raise ValueError(f"module: the replicas differ at parameter {a[0]!r}, which {what}; "
                             "every rank must build the same model")


class DistributedDataParallel(Module):
    """Data-parallel training of ``module`` over the ranks of an MPI communicator
    (``torch.nn.parallel.DistributedDataParallel``'s role and names).

    Every rank holds a replica and feeds it its own share of each batch. At construction the
    replicas get rank 0's parameters (broadcast), after checking that every rank built the same
    model. ``backward`` runs the module's backward, then averages every parameter's gradient
    over the ranks: the gradients are packed into a few flat buckets of at most ``bucket_mb``
    megabytes (one dtype each) and each bucket is reduced with a non-blocking ``Iallreduce``
    started as soon as it is packed, so it travels while the next ones are being packed. After
    the optimiser step the replicas hold bit-for-bit the same parameters (see the module
    docstring for why): N ranks with batches of B train like one process with batches of N*B.

    Parameters
    ----------
    module : fastnn.nn.Module
        The replica on this rank; ``.module`` keeps it. Same names, shapes and dtypes on every
        rank (``ValueError`` naming the first differing parameter otherwise).
    bucket_mb : float, default 25
        Largest bucket, in megabytes (10**6 bytes). A larger parameter gets a bucket alone.
    comm : mpi4py.MPI.Intracomm, optional
        Default: the communicator of :func:`fastnn.distributed.init`.

    Attributes
    ----------
    sync_seconds : float
        Time spent averaging gradients (packing, allreduce including waiting for slower
        ranks, unpacking), summed over all steps; ``sync_calls`` counts them.

    Notes
    -----
    A parameter with no gradient on some ranks counts as a zero gradient there; one with no
    gradient on any rank keeps ``grad = None``. ``state_dict`` keys carry torch's ``module.``
    prefix.

    Examples
    --------
    >>> dist.init()                                            # doctest: +SKIP
    >>> model = dist.DistributedDataParallel(nn.Linear(4, 2))   # doctest: +SKIP
    >>> y = model(x_shard); model.backward(dy); opt.step()       # doctest: +SKIP
    >>> with model.no_sync():                                   # doctest: +SKIP
    ...     model(x1); model.backward(dy1)                      # local accumulation only
    """

    def __init__(self, module, bucket_mb=25, comm=None):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"module: expected a fastnn.nn.Module, got {type(module).__name__}")
        if (isinstance(bucket_mb, bool) or not isinstance(bucket_mb, numbers.Real)
                or not math.isfinite(bucket_mb) or bucket_mb <= 0):
            raise ValueError(f"bucket_mb: expected a finite number > 0, got {bucket_mb!r}")
        named = list(module.named_parameters())
        if not named:
            raise ValueError(f"module: expected a module with parameters, got {type(module).__name__} with none")
        c = get_comm(comm)
        self.module = module
        self.comm = c
        self.bucket_mb = float(bucket_mb)
        _check_same_model(c, named)
        for _, p in named:  # replicas start from rank 0's bytes
            if not (p.data.flags.c_contiguous and p.data.flags.writeable):
                p.data = np.array(p.data, order="C")
            c.Bcast(p.data, root=0)
        self._buckets = _buckets(named, self.bucket_mb * 1e6)
        self._sync = True
        self.sync_seconds = 0.0
        self.sync_calls = 0

    @property
    def bucket_sizes(self):
        """Number of parameters in each bucket, in reduction order."""
        return [len(b.params) for b in self._buckets]

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, grad_output, *args, **kwargs):
        """The module's backward, then (outside :meth:`no_sync`) :meth:`sync_gradients`."""
        grad_input = self.module.backward(grad_output, *args, **kwargs)
        if self._sync:
            self.sync_gradients()
        return grad_input

    @contextmanager
    def no_sync(self):
        """Backward calls inside this block only accumulate local gradients; the first backward
        after it averages the accumulated sum (gradient accumulation without communication)."""
        prev = self._sync
        self._sync = False
        try:
            yield
        finally:
            self._sync = prev

    def sync_gradients(self):
        """Average every parameter's gradient over the ranks, in place (what ``backward`` does).

        Call it yourself when you run ``.module.backward`` directly. Collective: every rank calls
        it, the same number of times."""
        MPI = _mpi()
        t0 = time.perf_counter()
        pending = []
        for b in self._buckets:  # bucket k reduces while bucket k+1 is packed
            b.pack()
            pending.append(self.comm.Iallreduce(MPI.IN_PLACE, b.buffer, op=MPI.SUM))
            MPI.Request.Testall(pending)  # lets MPI progress the buckets already started
        world = self.comm.Get_size()
        for b, req in zip(self._buckets, pending):
            req.Wait()
            b.unpack(world)
        self.sync_seconds += time.perf_counter() - t0
        self.sync_calls += 1

    def extra_repr(self):
        return f"world_size={self.comm.Get_size()}, buckets={len(self._buckets)}, bucket_mb={self.bucket_mb:g}"
