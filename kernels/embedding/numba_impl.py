"""Numba embedding: parallel gather over rows; scatter-add parallel over column blocks.

Two ids may be equal, so threads that split the *rows* of ``grad_out`` could add into the
same ``grad_weight`` row at once (a race). Splitting the *columns* instead gives every thread
its own slice of every row: each thread walks all ids in order and adds its columns, so no
two threads ever write the same element and the sum order is the same on every run.
"""
from numba import njit, prange

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
_BLOCK = 16


@njit(**_jit)
def embedding_forward(weight, ids, out):
    n, d = out.shape
    for r in prange(n):
        k = ids[r]
        for j in range(d):
            out[r, j] = weight[k, j]


@njit(**_jit)
def embedding_backward(grad_out, ids, grad_weight):
    n, d = grad_out.shape
    v = grad_weight.shape[0]
    nblk = (d + _BLOCK - 1) // _BLOCK
    for blk in prange(nblk):
        j0 = blk * _BLOCK
        j1 = min(d, j0 + _BLOCK)
        for r in range(v):
            for j in range(j0, j1):
                grad_weight[r, j] = 0
        for r in range(n):
            k = ids[r]
            for j in range(j0, j1):
                grad_weight[k, j] += grad_out[r, j]
