"""Embedding kernels: a row gather forward and a scatter-add backward.

Shared signature of every backend (arrays C-contiguous; ``ids`` int64 already checked to lie
in ``[0, V)``; outputs allocated by the caller)::

    embedding_forward(weight, ids, out)            weight (V, D), ids (N,), out (N, D): out[n] = weight[ids[n]]
    embedding_backward(grad_out, ids, grad_weight) grad_out (N, D), grad_weight (V, D) overwritten:
                                                   grad_weight[v] = sum of grad_out[n] over n with ids[n] == v
"""
