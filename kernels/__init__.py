"""fastnn.kernels: every implementation of every op, side by side, one folder per op.

Each folder holds the ladder with one signature: ``reference`` (the seed's naive code made
correct), ``numpy_impl``, ``numba_impl`` and ``cython_impl``. Kernels compute and nothing else:
they assume validated, C-contiguous float32/float64 inputs and caller-allocated outputs.
"""
