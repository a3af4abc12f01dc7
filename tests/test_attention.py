"""F.scaled_dot_product_attention and its backward: torch parity, masks, fully masked rows,
the tiled kernels' block paths, memory, bad input. Expected values come from torch, the
reference kernel or float64 central differences."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import functional as F
from fastnn.kernels.attention import _tiled
from fnn_testing import assert_close, central_diff, noncontiguous, readonly, to_torch

FUSED = [b for b in fastnn.backends() if b in ("numba", "cython")]


def _qkv(rng, dtype, batch, L, S, E, Ev, gain=1.0):
    q = (rng.standard_normal(batch + (L, E)) * gain).astype(dtype)
    k = (rng.standard_normal(batch + (S, E)) * gain).astype(dtype)
    v = rng.standard_normal(batch + (S, Ev)).astype(dtype)
    return q, k, v


def _torch_sdpa(torch, q, k, v, g, mask=None, causal=False, scale=None):
    """Output and gradients of torch's SDPA, computed in float64 from the same inputs."""
    tq, tk, tv = (to_torch(torch, a.astype(np.float64), True) for a in (q, k, v))
    tm = None
    if mask is not None:
        tm = to_torch(torch, mask if mask.dtype == np.bool_ else mask.astype(np.float64))
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, is_causal=causal, scale=scale)
    out.backward(to_torch(torch, g.astype(np.float64)))
    return out.detach().numpy(), tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy()


def _check_vs_torch(torch, rng, dtype, q, k, v, mask=None, causal=False, scale=None, tol=1.0):
    out, lse = F.scaled_dot_product_attention(q, k, v, mask, causal, scale, return_lse=True)
    g = rng.standard_normal(out.shape).astype(dtype)
    grads = F.scaled_dot_product_attention_backward(g, q, k, v, mask, causal, scale, out=out, lse=lse)
    expected = _torch_sdpa(torch, q, k, v, g, mask, causal, scale)
    for name, a, e in zip(("out", "grad_q", "grad_k", "grad_v"), (out,) + grads, expected):
        assert a.dtype == dtype
        assert_close(a, e, dtype, scale=tol, err_msg=name)


def _bool_mask(rng, shape):
    m = rng.random(shape) < 0.6
    m[..., 0] = True  # every query keeps one key: torch would give NaN otherwise
    return m


CASES = {  # batch, L, S, E, Ev, mask kind, causal
    "plain": ((2, 3), 5, 7, 16, 16, None, False),
    "cross_L<S": ((3,), 4, 11, 8, 5, None, False),
    "cross_L>S_causal": ((2,), 11, 5, 16, 3, None, True),
    "causal_L<S": ((2, 2), 7, 13, 4, 4, None, True),
    "causal_square_e1": ((1,), 13, 13, 1, 2, None, True),
    "bool_LS": ((2, 3), 6, 9, 16, 16, "bool_LS", False),
    "bool_full": ((2, 2), 5, 6, 8, 8, "bool_full", False),
    "float_LS": ((2,), 7, 5, 16, 16, "float_LS", False),
    "float_keypad": ((3, 2), 4, 9, 64, 64, "float_keypad", False),
    "bool_heads": ((2, 3), 5, 8, 80, 80, "bool_heads", False),
    "float_S_only": ((2,), 3, 6, 16, 16, "float_S", False),
    "multi_tile": ((2, 2), 37, 300, 16, 16, "float_keypad", False),
    "multi_tile_causal": ((3,), 300, 290, 16, 8, None, True),
}


def _mask_for(kind, rng, batch, L, S, dtype):
    if kind is None:
        return None
    if kind == "bool_LS":
        return _bool_mask(rng, (L, S))
    if kind == "bool_full":
        return _bool_mask(rng, batch + (L, S))
    if kind == "bool_heads":  # (1, H, L, S): shared across the first batch dim
        return _bool_mask(rng, (1,) + batch[1:] + (L, S))
    if kind == "float_LS":
        return rng.standard_normal((L, S)).astype(dtype)
    if kind == "float_keypad":  # (N, 1, 1, S) with -inf padding, as MultiheadAttention builds it
        m = np.where(rng.random(batch[:1] + (1,) * (len(batch) - 1) + (1, S)) < 0.3, -np.inf, 0.5)
        m[..., 0] = 0
        return m.astype(dtype)
    if kind == "float_S":
        return rng.standard_normal(S).astype(dtype)
    raise AssertionError(kind)


@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch(case, backend, dtype, torch, rng):
    batch, L, S, E, Ev, kind, causal = CASES[case]
    q, k, v = _qkv(rng, dtype, batch, L, S, E, Ev)
    _check_vs_torch(torch, rng, dtype, q, k, v, _mask_for(kind, rng, batch, L, S, dtype), causal)


@pytest.mark.parametrize("causal", [False, True])
def test_large_logits_stay_exact(backend, dtype, torch, rng, causal):
    # scores of magnitude ~1e3: a naive exp overflows; float32 rounding of the scores
    # themselves (not the softmax) limits float32 agreement, hence the wider tolerance
    q, k, v = _qkv(rng, dtype, (2,), 9, 9, 8, 4, gain=10.0)
    _check_vs_torch(torch, rng, dtype, q, k, v, causal=causal, tol=1.0 if dtype == np.float64 else 30.0)


def test_custom_scale(backend, dtype, torch, rng):
    q, k, v = _qkv(rng, dtype, (2,), 5, 6, 8, 3)
    _check_vs_torch(torch, rng, dtype, q, k, v, _bool_mask(rng, (5, 6)), scale=0.37)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [(1,), (5,)])
def test_tiled_blocks_match_reference(threads, batch, dtype, rng, monkeypatch):
    """Small tiles and budget force several key tiles, query blocks and batch chunks, with
    the work split over threads by batch (B >= threads) or by query rows (B = 1); compared
    with the reference kernel."""
    monkeypatch.setattr(_tiled, "TILE", 8)
    monkeypatch.setattr(_tiled, "CAUSAL_TILE", 8)
    monkeypatch.setattr(_tiled, "BUDGET", 16 * 8 * 8 * 2)
    monkeypatch.setattr(_tiled, "MIN_ROWS", 8)  # B=1 splits the query rows over the threads
    q, k, v = _qkv(rng, dtype, batch, 45, 29, 6, 5)
    mask = np.where(rng.random(batch + (45, 29)) < 0.3, -np.inf, rng.standard_normal(batch + (45, 29)))
    mask[..., 3, :] = -np.inf  # one fully masked row
    mask = mask.astype(dtype)
    g = rng.standard_normal(batch + (45, 5)).astype(dtype)
    with fastnn.use_backend("reference"):
        want = [F.scaled_dot_product_attention(q, k, v, mask, False)]
        want += F.scaled_dot_product_attention_backward(g, q, k, v, mask, False)
        want_c = [F.scaled_dot_product_attention(q, k, v, None, True)]
        want_c += F.scaled_dot_product_attention_backward(g, q, k, v, None, True)
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(threads)
    try:
        for b in FUSED:
            with fastnn.use_backend(b):
                got = [F.scaled_dot_product_attention(q, k, v, mask, False)]
                got += F.scaled_dot_product_attention_backward(g, q, k, v, mask, False)
                got_c = [F.scaled_dot_product_attention(q, k, v, None, True)]
                got_c += F.scaled_dot_product_attention_backward(g, q, k, v, None, True)
            for a, e in zip(got + got_c, want + want_c):
                assert_close(a, e, dtype, err_msg=b)
    finally:
        fastnn.set_num_threads(old)


def test_fully_masked_rows_are_zero(backend, dtype, torch, rng):
    L, S = 6, 5
    q, k, v = _qkv(rng, dtype, (2, 2), L, S, 4, 3)
    bmask = _bool_mask(rng, (2, 1, L, S))
    bmask[0, :, 2, :] = False  # query 2 of batch 0 sees no key
    fmask = np.where(bmask, 0.0, -np.inf).astype(dtype)
    g = rng.standard_normal((2, 2, L, 3)).astype(dtype)
    for mask in (bmask, fmask):
        out = F.scaled_dot_product_attention(q, k, v, mask)
        gq, gk, gv = F.scaled_dot_product_attention_backward(g, q, k, v, mask)
        for a in (out, gq, gk, gv):
            assert np.isfinite(a).all()
        assert (out[0, :, 2] == 0).all() and (gq[0, :, 2] == 0).all()
        # everything else is what torch computes once the dead row's upstream gradient is 0
        g2 = g.copy()
        g2[0, :, 2] = 0
        m2 = bmask.copy()
        m2[0, :, 2, 0] = True  # give torch a live key there; that row's grad is 0 anyway
        e_out, e_gq, e_gk, e_gv = _torch_sdpa(torch, q, k, v, g2, np.broadcast_to(m2, (2, 2, L, S)).copy())
        gq2, gk2, gv2 = F.scaled_dot_product_attention_backward(g2, q, k, v, mask)
        live = np.ones(out.shape[:-1], bool)
        live[0, :, 2] = False
        assert_close(out[live], e_out[live], dtype)
        assert_close(gq2[live], e_gq[live], dtype)
        assert_close(gk2, e_gk, dtype)
        assert_close(gv2, e_gv, dtype)
        np.testing.assert_array_equal(gk, gk2)  # the dead row adds nothing to grad_k/grad_v
        np.testing.assert_array_equal(gv, gv2)


def test_all_keys_masked_everywhere(backend, dtype, rng):
    q, k, v = _qkv(rng, dtype, (3,), 4, 5, 2, 2)
    mask = np.zeros((4, 5), bool)
    out = F.scaled_dot_product_attention(q, k, v, mask)
    grads = F.scaled_dot_product_attention_backward(np.ones_like(out), q, k, v, mask)
    for a in (out,) + grads:
        assert np.isfinite(a).all() and (a == 0).all()


def test_central_differences(backend, rng):
    q, k, v = _qkv(rng, np.float64, (2,), 3, 4, 3, 2)
    mask = rng.standard_normal((3, 4))
    g = rng.standard_normal((2, 3, 2))
    grads = F.scaled_dot_product_attention_backward(g, q, k, v, mask)
    with fastnn.use_backend("reference"):
        fs = (lambda x: (F.scaled_dot_product_attention(x, k, v, mask) * g).sum(),
              lambda x: (F.scaled_dot_product_attention(q, x, v, mask) * g).sum(),
              lambda x: (F.scaled_dot_product_attention(q, k, x, mask) * g).sum())
        for got, f, x in zip(grads, fs, (q, k, v)):
            np.testing.assert_allclose(got, central_diff(f, x), rtol=1e-6, atol=1e-8)


def test_odd_layouts_and_inputs_untouched(backend, dtype, rng):
    q, k, v = _qkv(rng, dtype, (2,), 5, 7, 3, 4)
    mask = _bool_mask(rng, (5, 7))
    g = rng.standard_normal((2, 5, 4)).astype(dtype)
    want = [F.scaled_dot_product_attention(q, k, v, mask)] + list(
        F.scaled_dot_product_attention_backward(g, q, k, v, mask))
    args = (noncontiguous(q), readonly(k), noncontiguous(v))
    copies = [a.copy() for a in args]
    got = [F.scaled_dot_product_attention(*args, readonly(mask))] + list(
        F.scaled_dot_product_attention_backward(noncontiguous(g), *args, noncontiguous(mask)))
    for a, e in zip(got, want):
        np.testing.assert_array_equal(a, e)
    for a, c in zip(args, copies):
        np.testing.assert_array_equal(a, c)


def test_lse_and_recompute_agree(backend, dtype, rng):
    q, k, v = _qkv(rng, dtype, (2,), 5, 6, 4, 4)
    out, lse = F.scaled_dot_product_attention(q, k, v, is_causal=True, return_lse=True)
    s = q.astype(np.float64) @ k.astype(np.float64).transpose(0, 2, 1) / 2.0
    s[:, np.triu(np.ones((5, 6), bool), 1)] = -np.inf
    assert_close(lse, np.log(np.exp(s).sum(-1)), dtype)
    g = rng.standard_normal(out.shape).astype(dtype)
    a = F.scaled_dot_product_attention_backward(g, q, k, v, is_causal=True, out=out, lse=lse)
    b = F.scaled_dot_product_attention_backward(g, q, k, v, is_causal=True)
    for x, y in zip(a, b):
        assert_close(x, y, dtype)


def test_weights_match_torch(backend, dtype, torch, rng):
    q, k, _ = _qkv(rng, dtype, (2, 2), 5, 6, 4, 1)
    mask = _bool_mask(rng, (2, 1, 5, 6))
    w = F.attention_weights(q, k, mask)
    tq, tk = to_torch(torch, q.astype(np.float64)), to_torch(torch, k.astype(np.float64))
    s = (tq @ tk.transpose(-1, -2) / 2.0).masked_fill(~to_torch(torch, mask), float("-inf"))
    assert w.dtype == dtype
    assert_close(w, torch.softmax(s, -1).numpy(), dtype)


@settings(max_examples=12)
@given(B=st.integers(1, 3), L=st.integers(1, 9), S=st.integers(1, 9), E=st.integers(1, 5), Ev=st.integers(1, 4),
       kind=st.sampled_from(["none", "causal", "bool", "float"]), seed=st.integers(0, 2**16))
def test_backends_agree_with_reference(B, L, S, E, Ev, kind, seed):
    rng = np.random.default_rng(seed)
    q, k, v = _qkv(rng, np.float64, (B,), L, S, E, Ev)
    mask = None
    if kind == "bool":
        mask = rng.random((B, L, S)) < 0.5  # fully masked rows included
    elif kind == "float":
        mask = np.where(rng.random((L, S)) < 0.3, -np.inf, rng.standard_normal((L, S)))
    g = rng.standard_normal((B, L, Ev))
    res = {}
    for b in fastnn.backends():
        with fastnn.use_backend(b):
            o = F.scaled_dot_product_attention(q, k, v, mask, kind == "causal")
            res[b] = [o, *F.scaled_dot_product_attention_backward(g, q, k, v, mask, kind == "causal")]
    for b, got in res.items():
        for a, e in zip(got, res["reference"]):
            assert_close(a, e, np.float64, err_msg=b)


def test_empty_sizes(backend):
    q, k, v = np.ones((2, 0, 3)), np.ones((2, 4, 3)), np.ones((2, 4, 5))
    assert F.scaled_dot_product_attention(q, k, v).shape == (2, 0, 5)
    out = F.scaled_dot_product_attention(np.ones((2, 3, 3)), np.ones((2, 0, 3)), np.ones((2, 0, 5)))
    assert out.shape == (2, 3, 5) and (out == 0).all()


@pytest.mark.parametrize("b", FUSED)
def test_fused_forward_never_builds_the_score_matrix(b, rng):
    L = S = 2048
    q, k, v = _qkv(rng, np.float32, (1,), L, S, 16, 16)
    full = L * S * 4  # 16 MiB: the (L, S) float32 score matrix
    with fastnn.use_backend(b):
        F.scaled_dot_product_attention(q, k, v, is_causal=True)  # JIT, warm-up
        tracemalloc.start()
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < full / 2, f"peak {peak / 2**20:.1f} MiB"


BAD = {
    "head_dim": (lambda q, k, v: F.scaled_dot_product_attention(q, k[..., :2], v), ValueError, "k: expected last dim"),
    "v_len": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v[:, :3]), ValueError, "v: expected S"),
    "k_batch": (lambda q, k, v: F.scaled_dot_product_attention(q, k[:1], v[:1]), ValueError, "k: expected batch"),
    "v_batch": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v[:1]), ValueError, "v: expected batch"),
    "1d_q": (lambda q, k, v: F.scaled_dot_product_attention(q[0, 0], k, v), ValueError, "q: expected"),
    "mask_shape": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, np.ones((5, 4), bool)), ValueError,
                   "attn_mask: expected a shape broadcastable"),
    "mask_ndim": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, np.ones((1, 2, 5, 7), bool)), ValueError,
                  "attn_mask"),
    "mask_causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, np.ones((5, 7), bool), True), ValueError,
                    "is_causal"),
    "mask_int": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, np.ones((5, 7), int)), TypeError, "attn_mask"),
    "mask_dtype": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, np.ones((5, 7), np.float32)), TypeError,
                   "attn_mask"),
    "mixed_dtype": (lambda q, k, v: F.scaled_dot_product_attention(q, k.astype(np.float32), v), TypeError, "k:"),
    "int_q": (lambda q, k, v: F.scaled_dot_product_attention(q.astype(int), k, v), TypeError, "q:"),
    "causal_type": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal="yes"), TypeError, "is_causal"),
    "scale_type": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale="1"), TypeError, "scale"),
    "grad_shape": (lambda q, k, v: F.scaled_dot_product_attention_backward(np.ones((2, 5, 3)), q, k, v), ValueError,
                   "grad_out"),
    "grad_dtype": (lambda q, k, v: F.scaled_dot_product_attention_backward(np.ones((2, 5, 4), np.float32), q, k, v),
                   TypeError, "grad_out"),
    "out_without_lse": (lambda q, k, v: F.scaled_dot_product_attention_backward(
        np.ones((2, 5, 4)), q, k, v, out=np.ones((2, 5, 4))), ValueError, "out, lse"),
    "lse_shape": (lambda q, k, v: F.scaled_dot_product_attention_backward(
        np.ones((2, 5, 4)), q, k, v, out=np.ones((2, 5, 4)), lse=np.ones((2, 4))), ValueError, "lse"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case, rng):
    fn, exc, msg = BAD[case]
    q, k, v = _qkv(rng, np.float64, (2,), 5, 7, 3, 4)
    with pytest.raises(exc, match=msg):
        fn(q, k, v)


def test_numba_serial_and_parallel_builds_do_not_share_a_cache_entry():
    """Numba keys its on-disk cache by function name and line, not by compile flags: the serial
    copies used by the thread-split driver must have their own names, or a process could
    load the other build's machine code."""
    nb = pytest.importorskip("fastnn.kernels.attention.numba_impl")
    for name in ("fwd_tile", "rescale_add", "finish", "bwd_probs", "bwd_dscores", "rowdot"):
        par, ser = getattr(nb._ops.parallel, name), getattr(nb._ops.serial, name)
        assert par.targetoptions.get("parallel") and not ser.targetoptions.get("parallel")
        assert par.py_func.__qualname__ != ser.py_func.__qualname__


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.parametrize("b", FUSED)
def test_works_in_a_forked_child(b, rng):
    """The tiled driver's worker pool does not survive fork(): the child must start its own (on
    one thread: GNU OpenMP cannot start a team in a forked child; Numba's work then runs on the
    Cython kernels, so only rounding may differ)."""
    import os
    import time

    q, k, v = _qkv(rng, np.float32, (4,), 70, 70, 8, 8)
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(2)  # the thread-split path (B >= threads)
    try:
        with fastnn.use_backend(b):
            y = F.scaled_dot_product_attention(q, k, v)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                ok = np.allclose(F.scaled_dot_product_attention(q, k, v), y, rtol=1e-5, atol=1e-6)
                os._exit(0 if ok else 1)
    finally:
        fastnn.set_num_threads(old)
    for _ in range(200):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("attention hung in a forked child")


@pytest.mark.parametrize("b", FUSED)
def test_concurrent_callers(b, rng):
    """Calls from several Python threads give the reference result and leave BLAS's
    process-wide thread count as it was (the driver limits it to 1 during a split run)."""
    import threading

    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    q = rng.standard_normal((4, 40, 8)).astype(np.float32)
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(2)
    try:
        before = blas_threads()
        with fastnn.use_backend("reference"):
            want = F.scaled_dot_product_attention(q, q, q)
        bad = []

        def work():
            with fastnn.use_backend(b):
                for _ in range(10):
                    got = F.scaled_dot_product_attention(q, q, q)
                    if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
                        bad.append(got)

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not bad
        assert blas_threads() == before
    finally:
        fastnn.set_num_threads(old)
