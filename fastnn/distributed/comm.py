"""The process group and its collectives, on MPI through mpi4py.

mpi4py is imported only when a function here needs it (``import fastnn.distributed`` works
without it; :func:`init` then says what to install). Every collective must be called by every
rank of the communicator, in the same order, like the MPI calls underneath.
"""
import contextlib
import numbers
import sys
import traceback

import numpy as np

from .. import _validate as _v

INSTALL_HINT = (
    "fastnn.distributed needs mpi4py and an MPI library: pip install 'fastnn[distributed]' "
    "(or: pip install mpi4py mpich; the mpich wheel ships mpiexec). On a cluster, build mpi4py "
    "against the cluster's MPI instead: module load <mpi>; pip install --no-binary=mpi4py mpi4py"
)
_DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64))
_OPS = ("sum", "mean")

_comm = None
_prev_excepthook = None


def is_available():
    """True when mpi4py can be imported (MPI itself is not initialised by this check)."""
    try:
        import mpi4py  # noqa: F401  (the package only: mpi4py.MPI is what initialises MPI)
    except ImportError:
        return False
    return True


def _mpi():
    """The ``mpi4py.MPI`` module, or an ``ImportError`` saying what to install."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as e:  # RuntimeError: mpi4py present, no MPI library found
        raise ImportError(f"{INSTALL_HINT} ({type(e).__name__}: {e})") from None
    return MPI


def init(comm=None, abort_on_exception=True):
    """Start (or join) the process group: ``MPI.COMM_WORLD`` or the communicator ``comm``.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm, optional
        The ranks that train together (default ``MPI.COMM_WORLD``: every process that
        ``mpiexec``/``srun`` started). It becomes the default of every function here.
    abort_on_exception : bool, default True
        Install a ``sys.excepthook`` that, when more than one rank runs, prints the uncaught
        exception with the rank's number and calls ``MPI_Abort`` so that the whole job stops
        (without it, the other ranks would wait forever in their next collective).

    Returns
    -------
    mpi4py.MPI.Intracomm

    Examples
    --------
    >>> from fastnn import distributed as dist     # doctest: +SKIP
    >>> dist.init(); dist.get_rank(), dist.get_world_size()  # doctest: +SKIP
    (0, 2)
    """
    global _comm, _prev_excepthook
    MPI = _mpi()
    if comm is None:
        comm = MPI.COMM_WORLD
    elif not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
        raise TypeError(f"comm: expected an mpi4py.MPI.Intracomm such as MPI.COMM_WORLD, got {comm!r}")
    _comm = comm
    if abort_on_exception and _prev_excepthook is None:
        _prev_excepthook = sys.excepthook
        sys.excepthook = _excepthook
    return comm


def is_initialized():
    """True after :func:`init`."""
    return _comm is not None


def get_comm(comm=None):
    """``comm`` if given, else the communicator of :func:`init` (``ValueError`` before init)."""
    if comm is not None:
        return comm
    if _comm is None:
        raise ValueError("fastnn.distributed is not initialised: call fastnn.distributed.init() first")
    return _comm


def get_rank(comm=None):
    """This process's rank, in ``[0, get_world_size())``."""
    return get_comm(comm).Get_rank()


def get_world_size(comm=None):
    """Number of ranks in the process group."""
    return get_comm(comm).Get_size()


def get_local_world_size(comm=None):
    """Number of ranks of the process group on this machine (they share its cores)."""
    MPI = _mpi()
    local = get_comm(comm).Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return local.Get_size()
    finally:
        local.Free()


def barrier(comm=None):
    """Wait until every rank has called ``barrier``."""
    get_comm(comm).Barrier()


def _array(array, name):
    if not isinstance(array, np.ndarray):
        if array is None or isinstance(array, (str, bytes, dict, set)):
            raise TypeError(f"{name}: expected a float32, float64, int32 or int64 array, got {type(array).__name__}")
        array = np.asarray(array)
    if array.dtype not in _DTYPES:
        raise TypeError(f"{name}: expected a float32, float64, int32 or int64 array, got dtype {array.dtype}")
    return array


def _same_everywhere(comm, a, what, root=0):
    """``ValueError`` on every rank (so none is left waiting) unless all ranks pass ``a`` with
    the shape and dtype of rank ``root``'s."""
    metas = comm.allgather((a.dtype.str, a.shape))
    for r, meta in enumerate(metas):
        if meta != metas[root]:
            raise ValueError(
                f"{what}: every rank must pass an array of the same shape and dtype; rank {r} passed "
                f"shape {meta[1]} dtype {np.dtype(meta[0])}, rank {root} shape {metas[root][1]} "
                f"dtype {np.dtype(metas[root][0])}"
            )


def all_reduce(array, op="sum", comm=None):
    """The element-wise sum (or mean) of ``array`` over all ranks, returned on every rank.

    Unlike ``torch.distributed.all_reduce`` the input is not modified: a new array is returned.
    Every rank gets the same bytes (MPI requires that all processes receive identical results).

    Parameters
    ----------
    array : array of any shape, float32, float64, int32 or int64
        Same shape and dtype on every rank (checked: ``ValueError`` on every rank otherwise).
    op : {"sum", "mean"}
        ``"mean"`` divides the sum by the world size (float arrays only).
    comm : mpi4py.MPI.Intracomm, optional (default: the one of :func:`init`)

    Returns
    -------
    ndarray, same shape and dtype as ``array``

    Examples
    --------
    >>> dist.all_reduce(np.array([dist.get_rank()], dtype=np.int64))  # doctest: +SKIP
    array([1])                                                         # on 2 ranks: 0 + 1
    """
    c = get_comm(comm)
    if not isinstance(op, str) or op not in _OPS:
        raise ValueError(f"op: expected 'sum' or 'mean', got {op!r}")
    a = _array(array, "array")
    if op == "mean" and a.dtype.kind != "f":
        raise TypeError(f"array: op='mean' expects a float32 or float64 array, got dtype {a.dtype}")
    _same_everywhere(c, a, "all_reduce")
    MPI = _mpi()
    out = np.empty(a.shape, a.dtype)
    c.Allreduce(_v.contiguous(a), out, op=MPI.SUM)
    if op == "mean":
        out /= c.Get_size()
    return out


def broadcast(array, root=0, comm=None):
    """Rank ``root``'s ``array``, returned on every rank (the input is not modified).

    Parameters
    ----------
    array : array of any shape, float32, float64, int32 or int64
        Same shape and dtype on every rank (checked); only rank ``root``'s values are used.
    root : int, rank in ``[0, world size)``
    comm : mpi4py.MPI.Intracomm, optional

    Returns
    -------
    ndarray, a copy of rank ``root``'s array

    Examples
    --------
    >>> w = dist.broadcast(np.random.rand(3), root=0)  # doctest: +SKIP
    """
    c = get_comm(comm)
    if isinstance(root, bool) or not isinstance(root, numbers.Integral):
        raise TypeError(f"root: expected an int rank, got {type(root).__name__}")
    if not 0 <= root < c.Get_size():
        raise _v.IndexOutOfRangeError(f"root: expected a rank in [0, {c.Get_size()}), got {root}")
    a = _array(array, "array")
    _same_everywhere(c, a, "broadcast", int(root))
    out = np.array(a, order="C", copy=True)
    c.Bcast(out, root=int(root))
    return out


def abort(errorcode=1, comm=None):
    """End every process of the job now (``MPI_Abort``), with exit status ``errorcode``."""
    sys.stdout.flush()
    sys.stderr.flush()
    get_comm(comm).Abort(errorcode)


def _report_and_abort(exc, comm):
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    sys.stderr.write(
        f"fastnn.distributed: rank {comm.Get_rank()} of {comm.Get_size()} failed; aborting the job\n{text}"
    )
    abort(1, comm)


def _excepthook(etype, value, tb):
    if _comm is not None and _comm.Get_size() > 1:
        _report_and_abort(value.with_traceback(tb), _comm)
    (_prev_excepthook or sys.__excepthook__)(etype, value, tb)


@contextlib.contextmanager
def abort_on_error(comm=None):
    """An exception inside this block, on any rank, stops the whole job with that rank's error.

    The failing rank prints its traceback (with its rank) to stderr and calls ``MPI_Abort``,
    which ends every rank, including those waiting in a collective for it. With one rank the
    exception propagates as usual. ``SystemExit(0)`` propagates too.

    Examples
    --------
    >>> with dist.abort_on_error():   # doctest: +SKIP
    ...     train()
    """
    c = get_comm(comm)
    try:
        yield
    except BaseException as e:
        if c.Get_size() > 1 and not (isinstance(e, SystemExit) and e.code in (None, 0)):
            _report_and_abort(e, c)
        raise
