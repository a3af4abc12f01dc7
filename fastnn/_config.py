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
# first), and it reads OMP_WAIT_POLICY once, when it loads. Passive waiting suits fastnn (its
# OpenMP teams share the cores with OpenBLAS's threads) and slows torch; see README
# "Threads" and docs/performance.md for the measured cost both ways. The ``fastnn`` command
# line, a process of its own, opts in (see :func:`prefer_passive_openmp`).

_num_threads = None


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def get_num_threads():
    """Number of threads fastnn's kernels use (Numba, OpenMP ``prange`` and BLAS)."""
    return _num_threads if _num_threads is not None else _cpu_count()


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


def prefer_passive_openmp():
    """Ask for passive OpenMP waiting (idle threads sleep) in this process, unless the user set a
    policy or an OpenMP runtime is already loaded. For programs that own their process (the
    ``fastnn`` command); a library import never calls it. Returns True when it set the policy.
    """
    if "OMP_WAIT_POLICY" in os.environ or _openmp_loaded():
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


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
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        _local.numba = n


def _init_from_env():
    value = os.environ.get("FASTNN_NUM_THREADS")
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"FASTNN_NUM_THREADS: expected an int >= 1, got {value!r}") from None
        set_num_threads(n)


_init_from_env()
