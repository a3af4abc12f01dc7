# cython: language_level=3
"""Cython embedding: parallel gather over rows; scatter-add parallel over column blocks, so
that repeated ids never make two threads write the same element (see the Numba backend)."""
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memcpy

from fastnn._config import get_num_threads

ctypedef fused floating:
    float
    double

cdef Py_ssize_t _SERIAL = 1 << 14
cdef Py_ssize_t _BLOCK = 16


cdef inline int _threads(Py_ssize_t work):
    return 1 if work < _SERIAL else get_num_threads()


def embedding_forward(const floating[:, ::1] weight, const int64_t[::1] ids, floating[:, ::1] out):
    cdef Py_ssize_t r, n = out.shape[0], d = out.shape[1]
    cdef int nt = _threads(n * d)
    if d == 0:
        return
    for r in prange(n, nogil=True, schedule="static", num_threads=nt):
        memcpy(&out[r, 0], &weight[ids[r], 0], d * sizeof(floating))


def embedding_backward(const floating[:, ::1] grad_out, const int64_t[::1] ids, floating[:, ::1] grad_weight):
    cdef Py_ssize_t blk, r, j, j0, j1, k, n = grad_out.shape[0], d = grad_out.shape[1]
    cdef Py_ssize_t v = grad_weight.shape[0]
    cdef Py_ssize_t nblk = (d + _BLOCK - 1) // _BLOCK
    cdef int nt = _threads(n * d + v * d)
    for blk in prange(nblk, nogil=True, schedule="static", num_threads=nt):
        j0 = blk * _BLOCK
        j1 = min(d, j0 + _BLOCK)
        for r in range(v):
            for j in range(j0, j1):
                grad_weight[r, j] = 0
        for r in range(n):
            k = ids[r]
            for j in range(j0, j1):
                grad_weight[k, j] += grad_out[r, j]
