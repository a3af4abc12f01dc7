"""Numba attention: the fused tiled online-softmax of :mod:`._tiled` with Numba row kernels.

The tile products run in BLAS (called from Python, outside any ``prange``); the kernels
here do everything between them in one pass per tile, parallel over the tile's rows: scale,
mask, causal cut, running max/sum update and exponentials (forward), probabilities from the
saved log-sum-exp and ``ds`` (backward). Exponentials of float32 scores use ``_exp``, a
vectorisable polynomial (Numba has no vector ``expf`` without SVML), accurate to ~2 ulp.

``FASTMATH`` keeps ``nnan``/``ninf`` off: masked scores are ``-inf`` and must give exactly 0.
Sweeping the whole weights matrix (``sdpa_weights``) is the unfused NumPy path.
"""
import types as _pytypes

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import _tiled
from .numpy_impl import sdpa_weights  # noqa: F401  (weights need the full matrix anyway)

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)

# float32 exp(x) for x <= 0 (scores minus their row max): Cody-Waite reduction x = n ln2 + r,
# |r| <= ln2/2, degree-6 Taylor polynomial (rel. error < 3e-7), 2**n from a table. Branch-free
# so LLVM vectorises it; x < -87 (exp < 2e-38, -inf included) gives exactly 0, NaN stays NaN.
_F = np.float32
_POW2 = (2.0 ** -np.arange(128)).astype(np.float32)
_L2E, _LN2_HI, _LN2_LO = _F(1.4426950408889634), _F(0.693145751953125), _F(1.4286068203094172e-06)
_C2, _C3, _C4, _C5, _C6 = (_F(1 / f) for f in (2, 6, 24, 120, 720))
_LIM, _HALF, _ONE, _ZERO = _F(-87.0), _F(0.5), _F(1), _F(0)


def _exp(x):
    """exp(x) for x <= 0 (see the overload)."""


@overload(_exp, fastmath=FASTMATH)
def _exp_impl(x):
    if x != types.float32:
        return lambda x: np.exp(x)  # float64: libm, exact to the last bit that matters

    def exp32(x):
        xc = x if x > _LIM else _LIM
        n = min(np.floor(xc * _L2E + _HALF), _ZERO)
        r = xc - n * _LN2_HI - n * _LN2_LO
        p = _ONE + r * (_ONE + r * (_HALF + r * (_C3 + r * (_C4 + r * (_C5 + r * _C6)))))
        e = p * _POW2[np.int32(-n)]
        return e if x >= _LIM else (x if x != x else _ZERO)

    return exp32


# Row helpers, each a loop LLVM vectorises. A float max reduction is not vectorised without
# ``nnan``/``ninf`` (which would break -inf masks), so the max runs 8 independent accumulators.
@njit(fastmath=FASTMATH, cache=True)
def _row_scale(s, b, i, n, sc, mask, mb, mr, j0, has_mask):
    if has_mask:
        for j in range(n):
            s[b, i, j] = s[b, i, j] * sc + mask[mb, mr, j0 + j]
    else:
        for j in range(n):
            s[b, i, j] = s[b, i, j] * sc


@njit(fastmath=FASTMATH, cache=True)
def _row_max(s, b, i, n, m):
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = m
    j = 0
    while j + 8 <= n:
        a0 = max(a0, s[b, i, j])
        a1 = max(a1, s[b, i, j + 1])
        a2 = max(a2, s[b, i, j + 2])
        a3 = max(a3, s[b, i, j + 3])
        a4 = max(a4, s[b, i, j + 4])
        a5 = max(a5, s[b, i, j + 5])
        a6 = max(a6, s[b, i, j + 6])
        a7 = max(a7, s[b, i, j + 7])
        j += 8
    for jj in range(j, n):
        m = max(m, s[b, i, jj])
    return max(max(max(a0, a1), max(a2, a3)), max(max(a4, a5), max(max(a6, a7), m)))


@njit(fastmath=FASTMATH, cache=True)
def _row_exp(s, b, i, n, nt, c):
    for j in range(n):
        s[b, i, j] = _exp(s[b, i, j] - c)
    for j in range(n, nt):
        s[b, i, j] = 0


@njit(fastmath=FASTMATH, cache=True)
def _row_sum(s, b, i, n):
    t = s[b, i, 0] * 0
    for j in range(n):
        t += s[b, i, j]
    return t


@njit(**_jit)
def fwd_tile(s, mask, mask_idx, b0, i0, j0, causal, scale, m, l, alpha):
    nb, nq, nt = s.shape
    has_mask = mask.shape[0] > 0
    per_row = mask.shape[1] > 1
    for r in prange(nb * nq):
        b = r // nq
        i = r - b * nq
        gi = i0 + i
        jend = min(nt, gi - j0 + 1) if causal else nt  # >= 1: the driver skips rows above j0
        mb = mask_idx[b0 + b] if has_mask else 0
        _row_scale(s, b, i, jend, scale, mask, mb, gi if per_row else 0, j0, has_mask)
        mold = m[b, i]
        mx = _row_max(s, b, i, jend, mold)
        if mx == -np.inf:  # nothing allowed yet: the row stays 0
            _row_exp(s, b, i, 0, nt, mx)
            alpha[b, i] = 1
            continue
        _row_exp(s, b, i, jend, nt, mx)
        a = _exp(mold - mx)
        alpha[b, i] = a
        l[b, i] = l[b, i] * a + _row_sum(s, b, i, jend)
        m[b, i] = mx


@njit(**_jit)
def rescale_add(out, alpha, t):
    nb, nq, ev = out.shape
    for r in prange(nb * nq):
        b = r // nq
        i = r - b * nq
        a = alpha[b, i]
        for e in range(ev):
            out[b, i, e] = out[b, i, e] * a + t[b, i, e]


@njit(**_jit)
def finish(out, m, l, lse):
    nb, nq, ev = out.shape
    for r in prange(nb * nq):
        b = r // nq
        i = r - b * nq
        tot = l[b, i]
        if tot > 0:
            inv = 1 / tot
            for e in range(ev):
                out[b, i, e] *= inv
            lse[b, i] = m[b, i] + np.log(tot)
        else:
            for e in range(ev):
                out[b, i, e] = 0
            lse[b, i] = -np.inf


@njit(**_jit)
def bwd_probs(s, mask, mask_idx, b0, i0, j0, causal, scale, lse):
    nb, nq, nt = s.shape
    has_mask = mask.shape[0] > 0
    per_row = mask.shape[1] > 1
    for r in prange(nb * nq):
        b = r // nq
        i = r - b * nq
        gi = i0 + i
        jend = min(nt, gi - j0 + 1) if causal else nt
        c = lse[b, i]
        if c == -np.inf:
            jend = 0
        mb = mask_idx[b0 + b] if has_mask else 0
        _row_scale(s, b, i, jend, scale, mask, mb, gi if per_row else 0, j0, has_mask)
        _row_exp(s, b, i, jend, nt, c)


@njit(**_jit)
def bwd_dscores(p, dp, dsum, scale):
    nb, nq, nt = p.shape
    for r in prange(nb * nq):
        b = r // nq
        i = r - b * nq
        d = dsum[b, i]
        for j in range(nt):
            dp[b, i, j] = p[b, i, j] * (dp[b, i, j] - d) * scale


@njit(**_jit)
def rowdot(a, c, out):
    nb, nq, ev = a.shape
    for r in prange(nb * nq):
        b = r // nq
        i = r - b * nq
        acc = 0.0
        for e in range(ev):
            acc += a[b, i, e] * c[b, i, e]
        out[b, i] = acc


class _Kernels:
    def __init__(self, **fns):
        self.__dict__.update(fns)


def _serial(f):
    """The same kernel compiled without ``parallel`` (``prange`` runs as ``range``).

    A copy of the Python function under another name: Numba's cache files are keyed by the
    function's name and line, not by its compile flags, so two builds of one function would
    load each other's machine code from the cache.
    """
    py = f.py_func
    g = _pytypes.FunctionType(py.__code__, py.__globals__, py.__name__ + "_serial", py.__defaults__, py.__closure__)
    g.__qualname__ = py.__qualname__ + "_serial"
    return njit(cache=True, fastmath=FASTMATH, nogil=True)(g)


_KERNELS = (fwd_tile, rescale_add, finish, bwd_probs, bwd_dscores, rowdot)
_ops = _Kernels(
    parallel=_Kernels(**{f.__name__: f for f in _KERNELS}),
    serial=_Kernels(**{f.__name__: _serial(f) for f in _KERNELS}),
)


def sdpa_forward(q, k, v, mask, mask_idx, causal, scale, out, lse):
    _tiled.forward(_ops, q, k, v, mask, mask_idx, causal, scale, out, lse)


def sdpa_backward(grad_out, q, k, v, mask, mask_idx, causal, scale, out, lse, grad_q, grad_k, grad_v):
    _tiled.backward(_ops, grad_out, q, k, v, mask, mask_idx, causal, scale, out, lse, grad_q, grad_k, grad_v)
