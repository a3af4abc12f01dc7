# The BLAS GEMM for Cython kernels: included (``include "_blas.pxi"``) by the kernels that call
# GEMM from inside their parallel regions (which their callers run inside single_thread_blas()).
# The addresses come from kernels/_blas.py (the BLAS NumPy uses); see there for why. Call
# ``_blas_init()`` once at import.
from libc.stdint cimport int32_t, int64_t

ctypedef void (*_sgemm64_t)(int, int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                            const float *, int64_t, float, float *, int64_t) noexcept nogil
ctypedef void (*_dgemm64_t)(int, int, int, int64_t, int64_t, int64_t, double, const double *, int64_t,
                            const double *, int64_t, double, double *, int64_t) noexcept nogil
ctypedef void (*_sgemm32_t)(int, int, int, int32_t, int32_t, int32_t, float, const float *, int32_t,
                            const float *, int32_t, float, float *, int32_t) noexcept nogil
ctypedef void (*_dgemm32_t)(int, int, int, int32_t, int32_t, int32_t, double, const double *, int32_t,
                            const double *, int32_t, double, double *, int32_t) noexcept nogil
cdef size_t _sgemm_addr = 0, _dgemm_addr = 0
cdef bint _ilp64 = True

cdef enum:
    ROW_MAJOR = 101
    NO_TRANS = 111
    TRANS = 112


cdef object _blas_init():
    """The kernels/_blas.py lookup, kept in module globals; returns it (None: no GEMM found)."""
    global _sgemm_addr, _dgemm_addr, _ilp64
    from fastnn.kernels import _blas

    b = _blas.get()
    if b is not None:
        _sgemm_addr, _dgemm_addr, _ilp64 = b.sgemm, b.dgemm, b.ilp64
    return b


cdef inline void _blas_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const floating *a, int64_t lda,
                       const floating *b, int64_t ldb, floating beta, floating *c, int64_t ldc) noexcept nogil:
    """Row-major ``c = op(a) @ op(b) + beta * c`` on the calling thread (``ta``/``tb``: NO_TRANS or TRANS)."""
    if floating is float:
        if _ilp64:
            (<_sgemm64_t> _sgemm_addr)(ROW_MAJOR, ta, tb, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
        else:
            (<_sgemm32_t> _sgemm_addr)(ROW_MAJOR, ta, tb, <int32_t> m, <int32_t> n, <int32_t> k, 1, a,
                                       <int32_t> lda, b, <int32_t> ldb, beta, c, <int32_t> ldc)
    else:
        if _ilp64:
            (<_dgemm64_t> _dgemm_addr)(ROW_MAJOR, ta, tb, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
        else:
            (<_dgemm32_t> _dgemm_addr)(ROW_MAJOR, ta, tb, <int32_t> m, <int32_t> n, <int32_t> k, 1, a,
                                       <int32_t> lda, b, <int32_t> ldb, beta, c, <int32_t> ldc)
