"""Vectorised NumPy embedding. ``np.add.at`` is slow (one Python-level ufunc step per id);
here the ids are sorted once and each run of equal ids is summed with ``np.add.reduceat``,
then written to its row with one fancy-indexed store."""
import numpy as np


def embedding_forward(weight, ids, out):
    np.take(weight, ids, axis=0, out=out)


def embedding_backward(grad_out, ids, grad_weight):
    grad_weight[...] = 0
    if ids.size == 0:
        return
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    grad_weight[sorted_ids[starts]] = np.add.reduceat(grad_out[order], starts, axis=0)
