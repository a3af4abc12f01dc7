"""Numba normalisation: each forward and backward in one or two parallel passes over the data.

* ``batch_norm_stats``: ``prange`` over channels; each (image, channel) row of ``M`` values is
  summed and its squared deviations summed while it is in cache (float64), and the rows are
  merged in image order with Chan's parallel-variance update: one pass over memory.
* ``batch_norm_apply`` / ``batch_norm_backward_apply``: one fused elementwise pass, ``prange``
  over (image, channel) planes, in the input dtype.
* ``batch_norm_backward_reduce``: one pass, ``prange`` over channels, float64 sums.
* ``layer_norm_*`` and ``group_norm_*``: ``prange`` over rows (sample, group); a row's sum,
  squared deviations and output are three sweeps over a row that stays in cache (one pass
  over memory); the backward's two row sums and the input gradient likewise. The parameter
  gradients are summed per chunk of samples into float64 partials (``kernels.norm.chunks``)
  that are added in chunk order. Layer norm (the transformer case: short rows, many of them)
  sums rows of up to ``ROW_SUM_MAX`` values, and its parameter gradients over blocks of 64
  rows, in the input dtype (float32 SIMD lanes: no float64 conversions in the inner loops,
  1.4x faster forward, 2-3x faster backward); the blocks go into float64 chunk partials.

Every thread writes only its own channels, rows or chunk partials: no atomics, and the
results do not depend on the thread count or the schedule.
"""
import numpy as np
from numba import njit, prange

from . import chunks

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
# layer norm: rows of up to ROW_SUM_MAX values are summed in the input dtype (float32 SIMD
# lanes: each lane adds at most ROW_SUM_MAX / 8 values), longer ones in float64; the backward
# sums its parameter gradients over blocks of BLOCK rows in the input dtype, then adds each
# block into the float64 chunk partials
ROW_SUM_MAX = 4096
BLOCK = 64
_jit = dict(parallel=True, cache=True, fastmath=FASTMATH, nogil=True)
_ijit = dict(inline="always", fastmath=FASTMATH)


# ------------------------------------------------------------------------------ batch norm
@njit(**_jit)
def batch_norm_stats(x, mean, var):
    N, C, M = x.shape
    for c in prange(C):
        cnt = 0.0
        mu = 0.0
        m2 = 0.0
        for n in range(N):
            row = x[n, c]
            s = 0.0
            for m in range(M):
                s += row[m]
            rm = s / M
            q = 0.0
            for m in range(M):
                d = row[m] - rm
                q += d * d
            tot = cnt + M  # Chan et al.: merge (cnt, mu, m2) with the row's (M, rm, q)
            delta = rm - mu
            mu += delta * (M / tot)
            m2 += q + delta * delta * (cnt * M / tot)
            cnt = tot
        mean[c] = mu
        var[c] = m2 / cnt


@njit(**_jit)
def batch_norm_apply(x, mean, scale, shift, out):
    N, C, M = x.shape
    for t in prange(N * C):
        n, c = t // C, t % C
        mu, s, b = mean[c], scale[c], shift[c]
        xr, o = x[n, c], out[n, c]
        for m in range(M):
            o[m] = (xr[m] - mu) * s + b


@njit(**_jit)
def batch_norm_backward_reduce(grad_out, x, mean, sum_g, sum_gxc):
    N, C, M = x.shape
    for c in prange(C):
        mu = mean[c]
        sg = 0.0
        sgx = 0.0
        for n in range(N):
            g, xr = grad_out[n, c], x[n, c]
            for m in range(M):
                sg += g[m]
                sgx += g[m] * (xr[m] - mu)
        sum_g[c] = sg
        sum_gxc[c] = sgx


@njit(**_jit)
def batch_norm_backward_apply(grad_out, x, mean, a, b, k, grad_x):
    N, C, M = x.shape
    for t in prange(N * C):
        n, c = t // C, t % C
        mu, av, bv, kv = mean[c], a[c], b[c], k[c]
        g, xr, o = grad_out[n, c], x[n, c], grad_x[n, c]
        for m in range(M):
            o[m] = av * g[m] + bv * (xr[m] - mu) + kv


# ------------------------------------------------------------------ layer norm, group norm
@njit(**_ijit)
def _mean_var(row, acc):
    """Mean and biased variance of a 1-D row, summed in the type of ``acc`` (two sweeps)."""
    n = row.dtype.type(row.size)
    s = acc
    for i in range(row.size):
        s += row[i]
    mu = s / n
    q = acc
    for i in range(row.size):
        d = row[i] - mu
        q += d * d
    return mu, q / n


def _acc(x):
    """The accumulator of a layer norm's row sums: the input dtype for rows up to ROW_SUM_MAX
    values (SIMD lanes, no conversions), float64 above."""
    return x.dtype.type(0) if x.shape[1] <= ROW_SUM_MAX else np.float64(0)


@njit(**_jit)
def _layer_norm_forward(x, weight, bias, eps, out, mean, rstd, acc):
    R, D = x.shape
    for r in prange(R):
        mu, var = _mean_var(x[r], acc)
        rs = 1.0 / np.sqrt(np.float64(var) + eps)
        mean[r] = mu
        rstd[r] = rs
        mu_x, rs_x = x.dtype.type(mu), x.dtype.type(rs)  # the output pass in the input dtype
        xr, o = x[r], out[r]
        for d in range(D):
            o[d] = (xr[d] - mu_x) * rs_x * weight[d] + bias[d]


def layer_norm_forward(x, weight, bias, eps, out, mean, rstd):
    _layer_norm_forward(x, weight, bias, eps, out, mean, rstd, _acc(x))


@njit(**_jit)
def _layer_norm_backward(grad_out, x, weight, mean, rstd, grad_x, pw, pb, bw, bb, per, acc):
    R, D = x.shape
    for q in prange(pw.shape[0]):
        pwq, pbq, bwq, bbq = pw[q], pb[q], bw[q], bb[q]
        for d in range(D):
            pwq[d] = 0.0
            pbq[d] = 0.0
        r1 = min(R, (q + 1) * per)
        for r0 in range(q * per, r1, BLOCK):
            for d in range(D):
                bwq[d] = 0
                bbq[d] = 0
            for r in range(r0, min(r1, r0 + BLOCK)):
                g, xr, gx = grad_out[r], x[r], grad_x[r]
                mu_x, rs_x = x.dtype.type(mean[r]), x.dtype.type(rstd[r])
                s1 = acc
                s2 = acc
                for d in range(D):  # one sweep: the row's two sums and the block's partials
                    xh = (xr[d] - mu_x) * rs_x
                    gw = g[d] * weight[d]
                    s1 += gw
                    s2 += gw * xh
                    bwq[d] += g[d] * xh
                    bbq[d] += g[d]
                c1, c2 = x.dtype.type(s1 / D), x.dtype.type(s2 / D)
                for d in range(D):
                    gx[d] = rs_x * (g[d] * weight[d] - c1 - (xr[d] - mu_x) * rs_x * c2)
            for d in range(D):  # the block's sums into the chunk's float64 partials
                pwq[d] += bwq[d]
                pbq[d] += bbq[d]


@njit(**_jit)
def _sum_partials(p, out):
    # out[j] = sum of p[:, j] in chunk order, parallel over columns
    Q, J = p.shape
    for j in prange(J):
        s = 0.0
        for q in range(Q):
            s += p[q, j]
        out[j] = s


def layer_norm_backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    nq, per = chunks(x.shape[0])
    pw, pb = np.empty((nq, x.shape[1])), np.empty((nq, x.shape[1]))
    bw, bb = np.empty((nq, x.shape[1]), x.dtype), np.empty((nq, x.shape[1]), x.dtype)
    _layer_norm_backward(grad_out, x, weight, mean, rstd, grad_x, pw, pb, bw, bb, per, _acc(x))
    _sum_partials(pw, grad_weight)
    _sum_partials(pb, grad_bias)


@njit(**_jit)
def group_norm_forward(x, weight, bias, eps, out, mean, rstd):
    N, G, D, M = x.shape
    for t in prange(N * G):
        n, g = t // G, t % G
        mu, var = _mean_var(x[n, g].reshape(D * M), 0.0)
        rs = 1.0 / np.sqrt(var + eps)
        mean[n, g] = mu
        rstd[n, g] = rs
        mu_x = x.dtype.type(mu)
        for d in range(D):
            sc = x.dtype.type(rs * weight[g, d])
            b = bias[g, d]
            xr, o = x[n, g, d], out[n, g, d]
            for m in range(M):
                o[m] = (xr[m] - mu_x) * sc + b


@njit(**_jit)
def _group_norm_backward(grad_out, x, weight, mean, rstd, grad_x, pw, pb, per):
    N, G, D, M = x.shape
    L = D * M
    for q in prange(pw.shape[0]):
        pwq, pbq = pw[q], pb[q]
        for g in range(G):
            for d in range(D):
                pwq[g, d] = 0.0
                pbq[g, d] = 0.0
        for n in range(q * per, min(N, (q + 1) * per)):
            for g in range(G):
                mu, rs = mean[n, g], rstd[n, g]
                s1 = 0.0
                s2 = 0.0
                for d in range(D):
                    gr, xr = grad_out[n, g, d], x[n, g, d]
                    sg = 0.0
                    sgx = 0.0
                    for m in range(M):
                        sg += gr[m]
                        sgx += gr[m] * (xr[m] - mu)
                    pbq[g, d] += sg
                    pwq[g, d] += sgx * rs
                    s1 += sg * weight[g, d]
                    s2 += sgx * rs * weight[g, d]
                # grad_x = rs * (g * w - c1 - xhat * c2) = a * g + b * (x - mu) + k
                b = x.dtype.type(-rs * rs * s2 / L)
                k = x.dtype.type(-rs * s1 / L)
                mu_x = x.dtype.type(mu)
                for d in range(D):
                    a = x.dtype.type(rs * weight[g, d])
                    gr, xr, gx = grad_out[n, g, d], x[n, g, d], grad_x[n, g, d]
                    for m in range(M):
                        gx[m] = a * gr[m] + b * (xr[m] - mu_x) + k


def group_norm_backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias):
    nq, per = chunks(x.shape[0])
    G, D = weight.shape
    pw = np.empty((nq, G, D))
    pb = np.empty((nq, G, D))
    _group_norm_backward(grad_out, x, weight, mean, rstd, grad_x, pw, pb, per)
    _sum_partials(pw.reshape(nq, G * D), grad_weight.reshape(G * D))
    _sum_partials(pb.reshape(nq, G * D), grad_bias.reshape(G * D))
