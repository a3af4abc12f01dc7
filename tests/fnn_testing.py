"""Test helpers: one tolerance table, closeness checks, finite differences, odd inputs."""
import numpy as np

# Tolerances keyed by dtype (DESIGN.md: float64 ~1e-10 rel, float32 ~1e-4 rel).
TOL = {
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
}


def assert_close(actual, expected, dtype=None, scale=1.0, err_msg=""):
    """Compare with the dtype's tolerance (``scale`` widens it for long reductions)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    dt = np.dtype(dtype) if dtype is not None else actual.dtype
    tol = TOL[dt]
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape} {err_msg}"
    np.testing.assert_allclose(
        actual, expected, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale, err_msg=err_msg
    )


def central_diff(f, x, eps=1e-6):
    """d f(x) / dx by central differences in float64; ``f`` returns a scalar. ``x`` is not modified."""
    x = np.array(x, dtype=np.float64, copy=True)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = float(f(x.copy()))
        flat[i] = old - eps
        fm = float(f(x.copy()))
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def noncontiguous(a):
    """The same values as ``a`` in a non-C-contiguous array (a strided view of a bigger one)."""
    big = np.zeros(a.shape + (2,), dtype=a.dtype)
    big[..., 0] = a
    v = big[..., 0]
    assert not v.flags.c_contiguous or a.size <= 1
    return v


def readonly(a):
    """A read-only copy of ``a``."""
    b = np.array(a, copy=True)
    b.setflags(write=False)
    return b


def to_torch(torch, a, requires_grad=False):
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.requires_grad_(requires_grad)
