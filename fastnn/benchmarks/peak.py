"""The machine's sgemm peak, measured in the same run as everything else (NumPy's BLAS)."""
import numpy as np

from . import workload

N = 1024


@workload("sgemm_peak", op="peak", shape=f"{N}x{N}x{N}", flops=2 * N**3, impls=("numpy",),
          note="float32 GEMM through NumPy's BLAS: the reference for % of peak")
def sgemm(impl):
    rng = np.random.default_rng(0)
    a = rng.random((N, N), dtype=np.float32)
    b = rng.random((N, N), dtype=np.float32)
    out = np.empty((N, N), np.float32)
    return lambda: np.matmul(a, b, out=out)
