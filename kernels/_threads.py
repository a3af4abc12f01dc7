"""Worker threads and single-threaded BLAS: shared by the kernels that drive BLAS themselves.

Some drivers (tiled attention, the NumPy backend's LSTM and GRU time loops) split their work
into parts that Python worker threads run side by side, each calling BLAS through NumPy (which
releases the GIL) and compiled ``nogil`` loops. BLAS then runs on one thread per call: a
multi-threaded BLAS call meets its team at a barrier inside every GEMM, and on a 2-core
machine with any other load one descheduled BLAS worker stalled a small GEMM for a scheduler
tick (a 64x576 @ 576x3136 GEMM: 24-32 ms on 2 OpenBLAS threads against 3.5-7 ms on one; an
LSTM step's 0.29 ms GEMM sometimes took 24-32 ms; measured).

* :func:`executor` — one process-wide ``ThreadPoolExecutor`` per (name, size), started afresh
  in a forked child (the child inherits the executor objects but not their threads);
* :func:`single_thread_blas` — BLAS on one thread inside the block; callers may nest and run
  concurrently: the thread counts are saved by the first to enter and restored by the last to
  leave. The compiled kernels that call GEMM from inside their OpenMP regions (convolution,
  linear, the LSTM) run those regions inside it.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

_lock = threading.Lock()
_pools = {}
_blas = None
_depth = 0
_saved = []


def _reset_after_fork():
    global _lock, _blas, _depth, _saved
    _pools.clear()
    _lock, _blas, _depth, _saved = threading.Lock(), None, 0, []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def executor(workers, name):
    """The process-wide pool of ``workers`` threads named ``fastnn-<name>``."""
    with _lock:
        ex = _pools.get((name, workers))
        if ex is None:
            ex = _pools[(name, workers)] = ThreadPoolExecutor(workers, thread_name_prefix=f"fastnn-{name}")
    return ex


def _blas_controllers():
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    return _blas


@contextmanager
def single_thread_blas():
    """Run BLAS on one thread inside the block (a ctypes call, ~1 us; restored after)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = [(c, c.num_threads) for c in _blas_controllers()]
            for c, n in _saved:
                if n != 1:
                    c.set_num_threads(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for c, n in _saved:
                    if n != 1:
                        c.set_num_threads(n)
