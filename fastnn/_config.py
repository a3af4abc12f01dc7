"""Run-time configuration: the one thread knob for Numba, OpenMP (Cython kernels) and BLAS.

Environment variables read at import
------------------------------------
FASTNN_NUM_THREADS   initial thread count (default: all cores).
FASTNN_BACKEND       initial default backend (read by :mod:`fastnn._dispatch`).
"""
import os
import threading

# fastnn changes no environment variable and no setting of another library at import. In
# particular it leaves the OpenMP wait policy alone: the GNU OpenMP runtime is one per process,
# shared by fastnn's Cython and Numba kernels and by torch (same soname, whichever loads it
# first), and it reads OMP_WAIT_POLICY once, when it loads. fastnn's compiled kernels keep all
# their work on the OpenMP team (their GEMMs run inside it), so they need no particular policy;
# see README "Threads" and docs/performance.md.

_num_threads = None


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def get_num_threads():
    """Number of threads fastnn's kernels use (Numba, OpenMP ``prange`` and BLAS).

    1 in a process forked after fastnn's OpenMP or Numba threads ran (see :func:`forked_child`).
    """
    if _forked:
        return 1
    return _num_threads if _num_threads is not None else _cpu_count()


_forked = False  # this process was forked after an OpenMP runtime was loaded


def forked_child():
    """True in a process forked (``os.fork``, multiprocessing's default start method on Linux)
    from one whose OpenMP runtime was loaded. GNU OpenMP does not survive fork: a child that
    starts a thread team hangs, and Numba's OpenMP layer ends such a child on purpose. So
    there fastnn runs one thread (an OpenMP region of one thread starts no team) and the
    dispatcher gives Numba's work to the Cython kernels (see :func:`fastnn._dispatch.kernel`).
    """
    return _forked


def _after_fork_in_child():
    global _forked, _local
    _local = threading.local()
    if _numba_started or _openmp_loaded():
        _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def set_num_threads(n):
    """Set the thread count for Numba, the Cython kernels' OpenMP loops and BLAS together.

    Parameters
    ----------
    n : int
        Number of threads, ``>= 1``. Numba cannot use more threads than it started with
        (``NUMBA_NUM_THREADS``, all cores by default); it is capped there.

    Examples
    --------
    >>> import fastnn
    >>> fastnn.set_num_threads(1)
    >>> fastnn.get_num_threads()
    1
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int,)) and not hasattr(n, "__index__"):
        raise TypeError(f"n: expected an int >= 1, got {type(n).__name__}")
    n = int(n.__index__()) if not isinstance(n, int) else n
    if n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n}")
    _num_threads = n
    sync_numba_threads()
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)  # global: BLAS pools and the OpenMP runtime


def _openmp_loaded():
    try:
        with open("/proc/self/maps") as f:
            return any("libgomp" in line or "libomp" in line or "libiomp" in line for line in f)
    except OSError:  # pragma: no cover - not Linux: assume it may be
        return True


_local = threading.local()


def sync_numba_threads():
    """Give Numba fastnn's thread count in the calling thread.

    Numba's thread count is per thread (a thread it has not been set in uses all of Numba's
    threads), so the dispatcher calls this before handing out a Numba kernel: a kernel run from
    a user's worker thread uses the same count as one run from the main thread.
    """
    n = get_num_threads()
    if getattr(_local, "numba", None) != n:
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a dependency
            return
        _start_numba()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        _local.numba = n


_numba_started = False
_start_lock = threading.Lock()


def _start_numba():
    """Start Numba's thread pool, then undo the one process-wide OpenMP setting it changes.

    Numba's OpenMP threading layer calls ``omp_set_max_active_levels(255)`` when it starts
    (nested parallel regions allowed). The OpenMP runtime is one per process, shared with
    torch, and torch with nesting allowed ran its MLP training step 6x slower (1.6 -> 9.3 ms,
    measured): its nested regions each start a team. fastnn never nests parallel regions, so
    the level is put back to what it was before Numba started.
    """
    global _numba_started
    with _start_lock:
        if _numba_started:
            return
        import ctypes

        from numba.np.ufunc import parallel

        gomp = _libgomp(ctypes)
        before = gomp.omp_get_max_active_levels() if gomp is not None else None
        parallel._launch_threads()
        if before is not None and parallel.threading_layer() == "omp":
            gomp.omp_set_max_active_levels(before)
        _numba_started = True


def _libgomp(ctypes):
    """The process's GNU OpenMP runtime (loaded if it is not yet: Numba loads it anyway), or None."""
    try:
        return ctypes.CDLL("libgomp.so.1")
    except OSError:  # pragma: no cover - another OpenMP runtime, or none
        return None


def _init_from_env():
    value = os.environ.get("FASTNN_NUM_THREADS")
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"FASTNN_NUM_THREADS: expected an int >= 1, got {value!r}") from None
        set_num_threads(n)


_init_from_env()
