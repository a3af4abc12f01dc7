"""BLAS GEMM for compiled kernels: the GEMM of the BLAS NumPy uses, called from inside a parallel loop.

The compiled convolution splits the batch over the threads of its OpenMP team and has each
thread run its own single-threaded GEMMs. So a convolution uses one thread team, as torch
does, not an OpenMP team beside OpenBLAS's own thread pool: a pool left spinning after its
work took the cores from the other (an MLP step ran 8 ms instead of 1.5 with OpenMP's default
wait policy) and, on a busy machine, each pool waited for its own descheduled threads.

What is looked up, in the BLAS library NumPy loaded (found by threadpoolctl): the CBLAS GEMM,
with 64-bit integers (``scipy_cblas_sgemm64_`` in NumPy's own OpenBLAS wheels,
``cblas_sgemm64_``) or 32-bit (``cblas_sgemm``). The callers run the parallel region inside
:func:`kernels._threads.single_thread_blas`, so each GEMM runs on its calling thread. (OpenBLAS's
``openblas_set_num_threads_local`` is no way around that: measured, it changes the count every
thread sees.)

:func:`get` returns None when no usable GEMM is found; the compiled backends then run the
convolution with NumPy's (``numpy_impl``).
"""
import ctypes

_CANDIDATES = (  # (sgemm, dgemm, integer type)
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", ctypes.c_int64),
    ("cblas_sgemm64_", "cblas_dgemm64_", ctypes.c_int64),
    ("cblas_sgemm", "cblas_dgemm", ctypes.c_int32),
)

# CBLAS enums
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


class Blas:
    """Addresses of ``sgemm`` and ``dgemm``, whether their integers are 64-bit, and ctypes
    function objects for Numba."""

    def __init__(self, sgemm, dgemm, int_type, path):
        self.sgemm, self.dgemm = sgemm, dgemm
        self.ilp64 = int_type is ctypes.c_int64
        self.path = path
        i, c = int_type, ctypes.c_int

        def proto(real):
            p = ctypes.POINTER(real)
            return ctypes.CFUNCTYPE(None, c, c, c, i, i, i, real, p, i, p, i, real, p, i)

        self.numba_sgemm = proto(ctypes.c_float)(sgemm)
        self.numba_dgemm = proto(ctypes.c_double)(dgemm)


_blas = False


def get():
    """The :class:`Blas` of the library NumPy uses, or None (looked up once)."""
    global _blas
    if _blas is False:
        _blas = _find()
    return _blas


def _find():
    import numpy  # noqa: F401  (loads NumPy's BLAS)
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        try:
            lib = ctypes.CDLL(info["filepath"])
        except OSError:
            continue
        for s, d, int_type in _CANDIDATES:
            if hasattr(lib, s) and hasattr(lib, d):
                addr = lambda name: ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                return Blas(addr(s), addr(d), int_type, info["filepath"])
    return None
