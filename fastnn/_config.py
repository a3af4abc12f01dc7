"""Run-time configuration: the one thread knob for Numba, OpenMP (Cython kernels) and BLAS.

Environment variables read at import
------------------------------------
FASTNN_NUM_THREADS   initial thread count (default: all cores).
FASTNN_BACKEND       initial default backend (read by :mod:`fastnn._dispatch`).
"""
import os

# Idle OpenMP threads must sleep, not spin: Numba's and the Cython kernels' OpenMP teams share
# 2 cores with OpenBLAS's own threads, and spinning OpenMP workers made every BLAS call after a
# parallel loop 10-20x slower (MLP train step: 40 ms spinning vs 2.3 ms passive, measured).
# Set before any OpenMP runtime is loaded; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    else:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)  # global: BLAS pools and the OpenMP runtime


def _init_from_env():
    value = os.environ.get("FASTNN_NUM_THREADS")
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"FASTNN_NUM_THREADS: expected an int >= 1, got {value!r}") from None
        set_num_threads(n)


_init_from_env()
