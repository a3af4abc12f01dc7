"""The tiled online-softmax driver shared by the Numba and Cython backends.

FlashAttention's algorithm with BLAS for the tile products. The keys are cut into tiles of
``nt`` columns and the queries into blocks of ``nq`` rows (all L rows when they fit), and
``nb`` batch elements are processed together so one stacked BLAS call covers them:

forward, per key tile t (only tiles with a key ``j <= i`` when causal, and only those rows)
    s   = q_blk @ k_t.T                                     BLAS, (nb, nq, nt) scratch
    p   = exp(scale*s + mask - m_new), running max m and sum l per row, alpha = exp(m_old - m_new)
                                                            compiled ``fwd_tile``
    out = alpha * out + p @ v_t                             BLAS + compiled ``rescale_add``
    finally out /= l, lse = m + log(l)                      compiled ``finish``

backward, per key tile t and query block, from the saved log-sum-exp (no L x S matrix)
    p   = exp(scale * q_blk @ k_t.T + mask - lse)           BLAS + compiled ``bwd_probs``
    dv_t += p.T @ dO ; dp = dO @ v_t.T                      BLAS
    ds  = p * (dp - rowsum(dO * out)) * scale               compiled ``bwd_dscores``
    dq  += ds @ k_t ; dk_t += ds.T @ q_blk                  BLAS

Extra memory is the (nb, nq, nt) scratch (at most ``BUDGET`` bytes each), a few (nb, nq)
row statistics and per-tile product buffers, whatever L and S are.

Parallelism. The tile products are small (256 x 64 x 128 in the benchmark), and a 2-thread
BLAS call on them spends much of its time waking and joining threads. So the work is split
into one part per thread, each run in a Python worker thread with single-threaded BLAS
(which releases the GIL) and the serial build of the compiled kernels (``ops.serial``):
contiguous ranges of the batch when it has at least as many elements as threads, otherwise
ranges of query rows (B=1, long sequences; cut so causal parts get equal work). Work too
small to split runs as one part with the parallel kernels (``ops.parallel``). BLAS is never
called inside a compiled parallel loop.

Who writes what: a part's thread alone writes its rows of ``out``, ``lse`` and ``grad_q`` and
its own scratch. Batch parts own whole batch elements, so also their ``grad_k``/``grad_v``.
Query-row parts all touch every key, so each gets its own ``grad_k``/``grad_v`` (the first
part the output arrays themselves), added after all parts finished, in part order. The parts
are fixed by the shapes and the thread count, so the result is the same bits on every run.
"""
import numpy as np

from fastnn._config import get_num_threads

from .._threads import executor, single_thread_blas

BUDGET = 1 << 20  # bytes of one score scratch buffer (L2-sized)
TILE = 256        # keys per tile (256 vs 128: ~5% faster on the L=S=8192 forward)
CAUSAL_TILE = 64  # causal: smaller tiles skip more of the masked triangle
MIN_ROWS = 64     # query rows per thread below which a small batch is not split by rows


def blocks(B, L, S, itemsize, causal=False):
    """(nb, nq, nt): batch elements, query rows and keys per tile."""
    nt = min(S, CAUSAL_TILE if causal else TILE)
    nq = min(L, max(16, BUDGET // (nt * itemsize)))
    nb = min(B, max(1, BUDGET // (nq * nt * itemsize)))
    return nb, nq, nt


def _scratch(buf, *shape):
    return buf[: int(np.prod(shape))].reshape(shape)


def _parts(B, L, causal):
    """[(b0, b1, r0, r1)] work parts, one per thread, or None to run as one part."""
    nth = get_num_threads()
    if nth <= 1:
        return None
    if B >= nth:
        cuts = [B * t // nth for t in range(nth + 1)]
        return [(cuts[t], cuts[t + 1], 0, L) for t in range(nth)]
    if L < MIN_ROWS * nth:
        return None
    # row i of a causal problem costs ~i: cut at L*sqrt(t/nth) for equal work
    cuts = [int(round(L * ((t / nth) ** 0.5 if causal else t / nth))) for t in range(nth + 1)]
    return [(0, B, cuts[t], cuts[t + 1]) for t in range(nth)]


def _run(body, ops, parts, args_of):
    """Run ``body(ops.serial, *part, *args_of(t))`` for each part, one thread each."""
    ex = executor(len(parts), "attention")
    with single_thread_blas():
        jobs = [ex.submit(body, ops.serial, *part, *args_of(t)) for t, part in enumerate(parts)]
        for job in jobs:
            job.result()


def forward(ops, q, k, v, mask, mask_idx, causal, scale, out, lse):
    B, L = q.shape[:2]
    args = (q, k, v, mask, mask_idx, causal, scale, out, lse)
    parts = _parts(B, L, causal)
    if parts is None:
        _forward(ops.parallel, 0, B, 0, L, *args)
    else:
        _run(_forward, ops, parts, lambda t: args)


def backward(ops, grad_out, q, k, v, mask, mask_idx, causal, scale, out, lse, grad_q, grad_k, grad_v):
    B, L = q.shape[:2]
    args = (grad_out, q, k, v, mask, mask_idx, causal, scale, out, lse, grad_q)
    parts = _parts(B, L, causal)
    if parts is None:
        _backward(ops.parallel, 0, B, 0, L, *args, grad_k, grad_v)
    elif parts[0][1] - parts[0][0] < B:  # batch parts write disjoint slices
        _run(_backward, ops, parts, lambda t: args + (grad_k, grad_v))
    else:  # row parts: private grad_k/grad_v after the first, summed
        private = [(grad_k, grad_v)] + [(np.empty_like(grad_k), np.empty_like(grad_v)) for _ in parts[1:]]
        _run(_backward, ops, parts, lambda t: args + private[t])
        for gk, gv in private[1:]:
            grad_k += gk
            grad_v += gv


def _forward(ops, p0, p1, r0, r1, q, k, v, mask, mask_idx, causal, scale, out, lse):
    S, Ev = k.shape[1], v.shape[2]
    nb, nq, nt = blocks(p1 - p0, r1 - r0, S, q.itemsize, causal)
    sbuf = np.empty(nb * nq * nt, q.dtype)
    tbuf = np.empty(nb * nq * Ev, q.dtype)
    stats = np.empty((3, nb * nq), q.dtype)
    for b0 in range(p0, p1, nb):
        b1 = min(p1, b0 + nb)
        for i0 in range(r0, r1, nq):
            i1 = min(r1, i0 + nq)
            m, l, alpha = (_scratch(st, b1 - b0, i1 - i0) for st in stats)
            m.fill(-np.inf)
            l.fill(0)
            for j0 in range(0, min(S, i1) if causal else S, nt):
                j1 = min(S, j0 + nt)
                qs = max(i0, j0) if causal else i0  # causal: rows above j0 see no key of this tile
                r = qs - i0
                s = _scratch(sbuf, b1 - b0, i1 - qs, j1 - j0)
                np.matmul(q[b0:b1, qs:i1], k[b0:b1, j0:j1].transpose(0, 2, 1), out=s)
                ops.fwd_tile(s, mask, mask_idx, b0, qs, j0, causal, scale, m[:, r:], l[:, r:], alpha[:, r:])
                o = out[b0:b1, qs:i1]
                if j0 == 0:  # first tile: every row, out starts here
                    np.matmul(s, v[b0:b1, j0:j1], out=o)
                else:
                    t = _scratch(tbuf, b1 - b0, i1 - qs, Ev)
                    np.matmul(s, v[b0:b1, j0:j1], out=t)
                    ops.rescale_add(o, alpha[:, r:], t)
            ops.finish(out[b0:b1, i0:i1], m, l, lse[b0:b1, i0:i1])


def _backward(ops, p0, p1, r0, r1, grad_out, q, k, v, mask, mask_idx, causal, scale, out, lse, grad_q,
              grad_k, grad_v):
    S = k.shape[1]
    nb, nq, nt = blocks(p1 - p0, r1 - r0, S, q.itemsize, causal)
    sbuf = np.empty(nb * nq * nt, q.dtype)
    pbuf = np.empty(nb * nq * nt, q.dtype)
    dsum = np.empty((p1 - p0, r1 - r0), q.dtype)
    ops.rowdot(grad_out[p0:p1, r0:r1], out[p0:p1, r0:r1], dsum)
    for b0 in range(p0, p1, nb):
        b1 = min(p1, b0 + nb)
        for j0 in range(0, S, nt):
            j1 = min(S, j0 + nt)
            kt, vt = k[b0:b1, j0:j1], v[b0:b1, j0:j1]
            gk, gv = grad_k[b0:b1, j0:j1], grad_v[b0:b1, j0:j1]
            first = True
            for i0 in range(r0 + (max(j0 - r0, 0) // nq) * nq if causal else r0, r1, nq):
                i1 = min(r1, i0 + nq)
                qs = max(i0, j0) if causal else i0
                if qs >= i1:
                    continue
                qb, gob = q[b0:b1, qs:i1], grad_out[b0:b1, qs:i1]
                p = _scratch(pbuf, b1 - b0, i1 - qs, j1 - j0)
                np.matmul(qb, kt.transpose(0, 2, 1), out=p)
                ops.bwd_probs(p, mask, mask_idx, b0, qs, j0, causal, scale, lse[b0:b1, qs:i1])
                ds = _scratch(sbuf, b1 - b0, i1 - qs, j1 - j0)
                np.matmul(gob, vt.transpose(0, 2, 1), out=ds)
                ops.bwd_dscores(p, ds, dsum[b0 - p0:b1 - p0, qs - r0:i1 - r0], scale)
                if first:
                    np.matmul(p.transpose(0, 2, 1), gob, out=gv)
                    np.matmul(ds.transpose(0, 2, 1), qb, out=gk)
                else:
                    gv += np.matmul(p.transpose(0, 2, 1), gob)
                    gk += np.matmul(ds.transpose(0, 2, 1), qb)
                first = False
                if j0 == 0:
                    np.matmul(ds, kt, out=grad_q[b0:b1, qs:i1])
                else:
                    grad_q[b0:b1, qs:i1] += np.matmul(ds, kt)
            if first:  # causal, keys past this part's last query: nobody here attends to them
                gk.fill(0)
                gv.fill(0)
