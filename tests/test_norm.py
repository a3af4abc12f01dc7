"""Normalisation: batch/layer/group norm against torch (forward, every gradient, running
statistics over several steps, momentum=None, eval mode), every backend against the
reference, float64 central differences, odd shapes, layouts, buffers in state_dict, bad input."""
import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnn
from fastnn import functional as F
from fastnn import nn
from fnn_testing import assert_close, central_diff, noncontiguous, readonly, to_torch

BN_SHAPES = [(5, 3, 7, 4), (1, 2, 3, 5), (6, 1, 1, 1), (2, 3, 1, 1), (3, 4), (1, 3, 11), (7, 5, 13)]
BN_IDS = ["prime4d", "batch1", "onechannel1x1", "1x1", "2d", "batch1-3d", "3d"]


def ref(fn, *args, **kw):
    with fastnn.use_backend("reference"):
        return fn(*args, **kw)


def tt(torch, a, grad=False):
    return to_torch(torch, a, grad)


# ------------------------------------------------------------------ functional vs torch
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=BN_IDS)
def test_batch_norm_matches_torch(shape, training, backend, dtype, rng, torch):
    if training and shape[0] * int(np.prod(shape[2:])) == 1:
        pytest.skip("one value per channel: refused in training (tested in test_batch_norm_bad_input)")
    C = shape[1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    w, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    rm, rv = rng.standard_normal(C).astype(dtype), rng.random(C).astype(dtype) + 0.5
    rmt, rvt = tt(torch, rm.copy()), tt(torch, rv.copy())
    xt, wt, bt = tt(torch, x, True), tt(torch, w, True), tt(torch, b, True)
    yt = torch.nn.functional.batch_norm(xt, rmt, rvt, wt, bt, training, 0.3, 1e-3)
    yt.backward(tt(torch, g))
    y, mean, rstd = F.batch_norm(x, rm, rv, w, b, training, 0.3, 1e-3, return_stats=True)
    assert y.dtype == dtype and mean.dtype == np.float64
    assert_close(y, yt.detach().numpy(), dtype, scale=3)
    assert_close(rm, rmt.numpy(), dtype)
    assert_close(rv, rvt.numpy(), dtype)
    gx, gw, gb = F.batch_norm_backward(g, x, mean, rstd, w, training)
    assert_close(gx, xt.grad.numpy(), dtype, scale=10)
    assert_close(gw, wt.grad.numpy(), dtype, scale=10)
    assert_close(gb, bt.grad.numpy(), dtype, scale=10)


def test_batch_norm_without_running_stats_or_affine(backend, dtype, rng, torch):
    x = rng.standard_normal((4, 3, 5)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    xt = tt(torch, x, True)
    yt = torch.nn.functional.batch_norm(xt, None, None, training=True)
    yt.backward(tt(torch, g))
    y, mean, rstd = F.batch_norm(x, None, None, training=True, return_stats=True)
    assert_close(y, yt.detach().numpy(), dtype)
    assert_close(F.batch_norm_backward(g, x, mean, rstd)[0], xt.grad.numpy(), dtype, scale=10)


@pytest.mark.parametrize("shape,nshape", [((4, 6, 10), (10,)), ((3, 5, 2, 7), (2, 7)), ((1, 1), 1), ((13,), 13),
                                          ((2, 3, 4), (2, 3, 4))], ids=["last", "two", "one", "1d", "all"])
def test_layer_norm_matches_torch(shape, nshape, backend, dtype, rng, torch):
    ns = (nshape,) if isinstance(nshape, int) else nshape
    x = (rng.standard_normal(shape) * 2 - 1).astype(dtype)
    w, b = rng.standard_normal(ns).astype(dtype), rng.standard_normal(ns).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    xt, wt, bt = tt(torch, x, True), tt(torch, w, True), tt(torch, b, True)
    yt = torch.nn.functional.layer_norm(xt, ns, wt, bt, 1e-5)
    yt.backward(tt(torch, g))
    y, mean, rstd = F.layer_norm(x, nshape, w, b, return_stats=True)
    assert y.dtype == dtype and mean.shape == shape[: len(shape) - len(ns)]
    assert_close(y, yt.detach().numpy(), dtype, scale=3)
    gx, gw, gb = F.layer_norm_backward(g, x, nshape, mean, rstd, w)
    assert_close(gx, xt.grad.numpy(), dtype, scale=30)
    assert_close(gw, wt.grad.numpy(), dtype, scale=10)
    assert_close(gb, bt.grad.numpy(), dtype, scale=10)


@pytest.mark.parametrize("shape,groups", [((3, 6, 5, 7), 3), ((2, 4, 3), 1), ((1, 5, 2, 2), 5), ((4, 2), 2),
                                          ((2, 6, 1, 1), 2)], ids=["g3", "g1", "per-channel", "2d", "1x1"])
def test_group_norm_matches_torch(shape, groups, backend, dtype, rng, torch):
    C = shape[1]
    x = (rng.standard_normal(shape) + 1).astype(dtype)
    w, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    xt, wt, bt = tt(torch, x, True), tt(torch, w, True), tt(torch, b, True)
    yt = torch.nn.functional.group_norm(xt, groups, wt, bt, 1e-5)
    yt.backward(tt(torch, g))
    y, mean, rstd = F.group_norm(x, groups, w, b, return_stats=True)
    assert y.dtype == dtype and mean.shape == (shape[0], groups)
    assert_close(y, yt.detach().numpy(), dtype, scale=3)
    gx, gw, gb = F.group_norm_backward(g, x, groups, mean, rstd, w)
    assert_close(gx, xt.grad.numpy(), dtype, scale=30)
    assert_close(gw, wt.grad.numpy(), dtype, scale=10)
    assert_close(gb, bt.grad.numpy(), dtype, scale=10)


# ------------------------------------------------------------------ backends vs reference
@given(n=st.integers(1, 6), c=st.integers(1, 5), m=st.integers(1, 40), training=st.booleans(),
       seed=st.integers(0, 2**16))
def test_batch_norm_backends_match_reference(n, c, m, training, seed):
    training = training and n * m > 1
    r = np.random.default_rng(seed)
    for dt in (np.float32, np.float64):
        x = (r.standard_normal((n, c, m)) * 2 + 5).astype(dt)
        g = r.standard_normal(x.shape).astype(dt)
        w, b = r.standard_normal(c).astype(dt), r.standard_normal(c).astype(dt)
        rm0, rv0 = r.standard_normal(c).astype(dt), r.random(c).astype(dt) + 0.1
        rm, rv = rm0.copy(), rv0.copy()
        y_ref, mean, rstd = ref(F.batch_norm, x, rm, rv, w, b, training, 0.1, 1e-5, return_stats=True)
        grads_ref = ref(F.batch_norm_backward, g, x, mean, rstd, w, training)
        for be in fastnn.backends():
            with fastnn.use_backend(be):
                rm2, rv2 = rm0.copy(), rv0.copy()
                y, mean2, rstd2 = F.batch_norm(x, rm2, rv2, w, b, training, 0.1, 1e-5, return_stats=True)
                assert_close(y, y_ref, dt, scale=3, err_msg=be)
                assert_close(mean2, mean, np.float64, scale=1e3, err_msg=be)
                assert_close(rstd2, rstd, np.float64, scale=1e3, err_msg=be)
                assert_close(rm2, rm, dt, err_msg=be)
                assert_close(rv2, rv, dt, err_msg=be)
                for got, want in zip(F.batch_norm_backward(g, x, mean, rstd, w, training), grads_ref):
                    assert_close(got, want, dt, scale=10, err_msg=be)


@given(lead=st.tuples(st.integers(1, 5), st.integers(1, 4)), d=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_layer_norm_backends_match_reference(lead, d, seed):
    r = np.random.default_rng(seed)
    for dt in (np.float32, np.float64):
        x = (r.standard_normal(lead + (d,)) * 3 + 1).astype(dt)
        g = r.standard_normal(x.shape).astype(dt)
        w, b = r.standard_normal(d).astype(dt), r.standard_normal(d).astype(dt)
        y_ref, mean, rstd = ref(F.layer_norm, x, d, w, b, return_stats=True)
        grads_ref = ref(F.layer_norm_backward, g, x, d, mean, rstd, w)
        for be in fastnn.backends():
            with fastnn.use_backend(be):
                y, mean2, rstd2 = F.layer_norm(x, d, w, b, return_stats=True)
                assert_close(y, y_ref, dt, scale=3, err_msg=be)
                assert_close(rstd2, rstd, np.float64, scale=1e3, err_msg=be)
                for got, want in zip(F.layer_norm_backward(g, x, d, mean, rstd, w), grads_ref):
                    assert_close(got, want, dt, scale=30, err_msg=be)


@given(n=st.integers(1, 4), groups=st.integers(1, 3), cg=st.integers(1, 3), m=st.integers(1, 20),
       seed=st.integers(0, 2**16))
def test_group_norm_backends_match_reference(n, groups, cg, m, seed):
    r = np.random.default_rng(seed)
    C = groups * cg
    for dt in (np.float32, np.float64):
        x = (r.standard_normal((n, C, m)) * 2 - 3).astype(dt)
        g = r.standard_normal(x.shape).astype(dt)
        w, b = r.standard_normal(C).astype(dt), r.standard_normal(C).astype(dt)
        y_ref, mean, rstd = ref(F.group_norm, x, groups, w, b, return_stats=True)
        grads_ref = ref(F.group_norm_backward, g, x, groups, mean, rstd, w)
        for be in fastnn.backends():
            with fastnn.use_backend(be):
                assert_close(F.group_norm(x, groups, w, b), y_ref, dt, scale=3, err_msg=be)
                for got, want in zip(F.group_norm_backward(g, x, groups, mean, rstd, w), grads_ref):
                    assert_close(got, want, dt, scale=30, err_msg=be)


def test_large_inputs_take_the_parallel_paths(fast_backend, dtype, rng):
    x = (rng.standard_normal((33, 8, 17, 19)) * 4 + 100).astype(dtype)  # a large mean: float64 statistics
    g = rng.standard_normal(x.shape).astype(dtype)
    w, b = rng.standard_normal(8).astype(dtype), rng.standard_normal(8).astype(dtype)
    y_ref, mean, rstd = ref(F.batch_norm, x, None, None, w, b, True, return_stats=True)
    y, mean2, rstd2 = F.batch_norm(x, None, None, w, b, True, return_stats=True)
    assert_close(mean2, mean, np.float64, scale=1e3)
    assert_close(rstd2, rstd, np.float64, scale=1e3)
    assert_close(y, y_ref, dtype, scale=10)
    for got, want in zip(F.batch_norm_backward(g, x, mean, rstd, w), ref(F.batch_norm_backward, g, x, mean, rstd, w)):
        assert_close(got, want, dtype, scale=100)
    x2 = x.reshape(33 * 8, 17 * 19)
    y_ref, mean, rstd = ref(F.layer_norm, x2, 323, None, None, return_stats=True)
    assert_close(F.layer_norm(x2, 323), y_ref, dtype, scale=10)
    g2 = g.reshape(x2.shape)
    for got, want in zip(F.layer_norm_backward(g2, x2, 323, mean, rstd), ref(F.layer_norm_backward, g2, x2, 323, mean,
                                                                                rstd)):
        assert_close(got, want, dtype, scale=100)
    y_ref, mean, rstd = ref(F.group_norm, x, 4, w, b, return_stats=True)
    assert_close(F.group_norm(x, 4, w, b), y_ref, dtype, scale=10)
    for got, want in zip(F.group_norm_backward(g, x, 4, mean, rstd, w), ref(F.group_norm_backward, g, x, 4, mean,
                                                                            rstd, w)):
        assert_close(got, want, dtype, scale=100)


def test_float32_statistics_are_accumulated_in_float64(fast_backend):
    # 2**20 values of 1 + 1e-3 * noise: a float32 running sum would be off in the 4th digit
    r = np.random.default_rng(0)
    x = (1 + 1e-3 * r.standard_normal((16, 2, 1 << 16))).astype(np.float32)
    _, mean, rstd = F.batch_norm(x, None, None, training=True, eps=0.0, return_stats=True)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(rstd, 1 / x64.std(axis=(0, 2)), rtol=1e-9)


@pytest.mark.parametrize("d", [4096, 4097])  # the Numba kernels' float32 row sums and the float64 ones
def test_layer_norm_long_rows_offset_mean(d, fast_backend, rng):
    x = (100 + rng.standard_normal((6, d))).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    x64 = x.astype(np.float64)
    y, mean, rstd = F.layer_norm(x, d, return_stats=True)
    np.testing.assert_allclose(mean, x64.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(x64.var(axis=1) + 1e-5), rtol=1e-4)
    y_ref, m_ref, r_ref = ref(F.layer_norm, x64, d, return_stats=True)
    assert_close(y, y_ref, np.float32, scale=10)
    for got, want in zip(F.layer_norm_backward(g, x, d, mean, rstd), ref(F.layer_norm_backward, g.astype(np.float64),
                                                                         x64, d, m_ref, r_ref)):
        assert_close(got, want, np.float32, scale=30)


def test_functional_noncontiguous_and_readonly_inputs(backend, dtype, rng):
    x = (rng.standard_normal((4, 3, 5, 6)) + 2).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    w, b = rng.standard_normal(3).astype(dtype), rng.standard_normal(3).astype(dtype)
    wl = rng.standard_normal(6).astype(dtype)

    def run(x, g, w, b, wl):
        y1, m1, r1 = F.batch_norm(x, None, None, w, b, True, return_stats=True)
        y2, m2, r2 = F.layer_norm(x, 6, wl, None, return_stats=True)
        y3, m3, r3 = F.group_norm(x, 3, w, b, return_stats=True)
        return (y1, *F.batch_norm_backward(g, x, m1, r1, w), y2, *F.layer_norm_backward(g, x, 6, m2, r2, wl),
                y3, *F.group_norm_backward(g, x, 3, m3, r3, w))

    want = run(x, g, w, b, wl)
    for make in (noncontiguous, readonly, lambda a: np.asfortranarray(a)):
        args = [make(a) for a in (x, g, w, b, wl)]
        before = [a.copy() for a in args]
        for got, exp in zip(run(*args), want):
            assert_close(got, exp, dtype)
        for a, a0 in zip(args, before):
            np.testing.assert_array_equal(a, a0)


def test_parallel_backward_sums_have_no_race(fast_backend, rng):
    # regression: the Cython backward kernels once returned row/channel sums through pointers
    # to prange variables that were never assigned in the loop body, so the OpenMP threads
    # shared them (with that build, 13-93 of 300 layer-norm backwards of this shape were wrong)
    x = (rng.standard_normal((264, 323)) * 4 + 100)
    g = rng.standard_normal(x.shape)
    x4, g4 = x.reshape(33, 8, 17, 19), g.reshape(33, 8, 17, 19)
    _, lm, lr = F.layer_norm(x, 323, return_stats=True)
    _, bm, br = F.batch_norm(x4, None, None, training=True, return_stats=True)
    _, gm, gr = F.group_norm(x4, 4, return_stats=True)
    want = (ref(F.layer_norm_backward, g, x, 323, lm, lr), ref(F.batch_norm_backward, g4, x4, bm, br),
            ref(F.group_norm_backward, g4, x4, 4, gm, gr))
    for _ in range(100):
        got = (F.layer_norm_backward(g, x, 323, lm, lr), F.batch_norm_backward(g4, x4, bm, br),
               F.group_norm_backward(g4, x4, 4, gm, gr))
        for gs, ws in zip(got, want):
            for a, b in zip(gs, ws):
                assert_close(a, b, np.float64, scale=100)


def test_results_are_repeatable(fast_backend, rng):
    x = rng.standard_normal((40, 16, 9, 9)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    first = None
    for _ in range(5):
        y, m, r = F.batch_norm(x, None, None, training=True, return_stats=True)
        res = (y, *F.batch_norm_backward(g, x, m, r), F.layer_norm(x, (9, 9)),
               *F.layer_norm_backward(g, x, (9, 9), *F.layer_norm(x, (9, 9), return_stats=True)[1:]),
               *F.group_norm_backward(g, x, 4, *F.group_norm(x, 4, return_stats=True)[1:]))
        if first is None:
            first = res
        for a, b in zip(res, first):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ finite differences
def test_backwards_match_central_differences(rng):
    x = rng.standard_normal((3, 4, 5)) * 2 + 1
    g = rng.standard_normal(x.shape)
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    rm, rv = rng.standard_normal(4), rng.random(4) + 0.5
    with fastnn.use_backend("reference"):
        for training in (True, False):
            def f(xx=x, ww=w, bb=b):
                return np.sum(F.batch_norm(xx, rm.copy(), rv.copy(), ww, bb, training) * g)

            _, mean, rstd = F.batch_norm(x, rm.copy(), rv.copy(), w, b, training, return_stats=True)
            gx, gw, gb = F.batch_norm_backward(g, x, mean, rstd, w, training)
            assert_close(gx, central_diff(lambda a: f(xx=a), x), scale=1e4, err_msg=str(training))
            assert_close(gw, central_diff(lambda a: f(ww=a), w), scale=1e4)
            assert_close(gb, central_diff(lambda a: f(bb=a), b), scale=1e4)
        wl, bl = rng.standard_normal(5), rng.standard_normal(5)
        _, mean, rstd = F.layer_norm(x, 5, wl, bl, return_stats=True)
        gx, gw, gb = F.layer_norm_backward(g, x, 5, mean, rstd, wl)
        assert_close(gx, central_diff(lambda a: np.sum(F.layer_norm(a, 5, wl, bl) * g), x), scale=1e4)
        assert_close(gw, central_diff(lambda a: np.sum(F.layer_norm(x, 5, a, bl) * g), wl), scale=1e4)
        assert_close(gb, central_diff(lambda a: np.sum(F.layer_norm(x, 5, wl, a) * g), bl), scale=1e4)
        _, mean, rstd = F.group_norm(x, 2, w, b, return_stats=True)
        gx, gw, gb = F.group_norm_backward(g, x, 2, mean, rstd, w)
        assert_close(gx, central_diff(lambda a: np.sum(F.group_norm(a, 2, w, b) * g), x), scale=1e4)
        assert_close(gw, central_diff(lambda a: np.sum(F.group_norm(x, 2, a, b) * g), w), scale=1e4)
        assert_close(gb, central_diff(lambda a: np.sum(F.group_norm(x, 2, w, a) * g), b), scale=1e4)


# ------------------------------------------------------------------ modules vs torch
def _sd(tm):
    return {k: v.detach().numpy() for k, v in tm.state_dict().items()}


@pytest.mark.parametrize("momentum", [0.1, None, 0.5])
@pytest.mark.parametrize("kind,shape", [("1d", (6, 4)), ("1d", (5, 4, 3)), ("2d", (3, 4, 5, 2)), ("2d", (1, 4, 3, 3))],
                         ids=["1d-2", "1d-3", "2d", "2d-batch1"])
def test_batchnorm_module_steps_match_torch(kind, shape, momentum, backend, dtype, rng, torch):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tcls, cls = (torch.nn.BatchNorm1d, nn.BatchNorm1d) if kind == "1d" else (torch.nn.BatchNorm2d, nn.BatchNorm2d)
    tm = tcls(4, momentum=momentum, eps=1e-4).to(tdt)
    with torch.no_grad():
        tm.weight.copy_(torch.from_numpy(rng.standard_normal(4)))
        tm.bias.copy_(torch.from_numpy(rng.standard_normal(4)))
    m = cls(4, momentum=momentum, eps=1e-4, dtype=dtype)
    m.load_state_dict(_sd(tm))
    for step in range(4):
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        xt = tt(torch, x, True)
        tm.zero_grad()
        yt = tm(xt)
        yt.backward(tt(torch, g))
        m.zero_grad()
        assert_close(m(x), yt.detach().numpy(), dtype, scale=10)
        assert_close(m.backward(g), xt.grad.numpy(), dtype, scale=30)
        assert_close(m.weight.grad, tm.weight.grad.numpy(), dtype, scale=30)
        assert_close(m.bias.grad, tm.bias.grad.numpy(), dtype, scale=30)
    sd, tsd = m.state_dict(), _sd(tm)
    assert list(sd) == list(tsd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    for k in sd:
        assert sd[k].dtype == tsd[k].dtype, k
        assert_close(sd[k], tsd[k], dtype, scale=10, err_msg=k)
    assert int(sd["num_batches_tracked"]) == 4
    # eval mode: the running statistics
    m.eval()
    tm.eval()
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    xt = tt(torch, x, True)
    yt = tm(xt)
    yt.backward(tt(torch, g))
    assert_close(m(x), yt.detach().numpy(), dtype, scale=10)
    assert_close(m.backward(g), xt.grad.numpy(), dtype, scale=10)
    assert int(m.num_batches_tracked) == 4
    # and back into torch
    tm2 = tcls(4, momentum=momentum, eps=1e-4).to(tdt)
    tm2.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    assert int(tm2.num_batches_tracked) == 4
    assert_close(tm2.eval()(tt(torch, x)).detach().numpy(), yt.detach().numpy(), dtype)


@pytest.mark.parametrize("affine,track", [(False, True), (True, False), (False, False)])
def test_batchnorm_options_match_torch(affine, track, backend, dtype, rng, torch):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tm = torch.nn.BatchNorm2d(3, affine=affine, track_running_stats=track).to(tdt)
    m = nn.BatchNorm2d(3, affine=affine, track_running_stats=track, dtype=dtype)
    assert list(m.state_dict()) == list(tm.state_dict())
    assert len(m.parameters()) == (2 if affine else 0)
    for mode in ("train", "eval", "train"):
        tm.train(mode == "train")
        m.train(mode == "train")
        x = (rng.standard_normal((4, 3, 2, 3)) + 1).astype(dtype)
        g = rng.standard_normal(x.shape).astype(dtype)
        xt = tt(torch, x, True)
        yt = tm(xt)
        yt.backward(tt(torch, g))
        assert_close(m(x), yt.detach().numpy(), dtype, scale=10, err_msg=mode)
        assert_close(m.backward(g), xt.grad.numpy(), dtype, scale=30, err_msg=mode)
    for k, v in tm.state_dict().items():
        assert_close(m.state_dict()[k], v.numpy(), dtype, err_msg=k)


def test_layernorm_groupnorm_modules_match_torch(backend, dtype, rng, torch):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    cases = [
        (torch.nn.LayerNorm((3, 5)), nn.LayerNorm((3, 5), dtype=dtype), (2, 4, 3, 5)),
        (torch.nn.LayerNorm(7, bias=False), nn.LayerNorm(7, bias=False, dtype=dtype), (3, 7)),
        (torch.nn.LayerNorm(6, elementwise_affine=False), nn.LayerNorm(6, elementwise_affine=False, dtype=dtype),
         (2, 6)),
        (torch.nn.GroupNorm(2, 6), nn.GroupNorm(2, 6, dtype=dtype), (3, 6, 4, 5)),
        (torch.nn.GroupNorm(3, 3, affine=False), nn.GroupNorm(3, 3, affine=False, dtype=dtype), (2, 3, 7)),
    ]
    for tm, m, shape in cases:
        tm = tm.to(tdt)
        with torch.no_grad():
            for p in tm.parameters():
                p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape))))
        assert list(m.state_dict()) == list(tm.state_dict())
        m.load_state_dict(_sd(tm))
        x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        xt = tt(torch, x, True)
        yt = tm(xt)
        yt.backward(tt(torch, g))
        assert_close(m(x), yt.detach().numpy(), dtype, scale=10)
        assert_close(m.backward(g), xt.grad.numpy(), dtype, scale=30)
        for (name, p), (tname, tp) in zip(m.named_parameters(), tm.named_parameters()):
            assert name == tname
            assert_close(p.grad, tp.grad.numpy(), dtype, scale=30, err_msg=name)
        tm2 = copy.deepcopy(tm)  # and back into torch
        with torch.no_grad():
            for p in tm2.parameters():
                p.zero_()
        tm2.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
        assert_close(tm2(tt(torch, x)).detach().numpy(), yt.detach().numpy(), dtype)


def test_norm_modules_in_sequential_dtype_and_layouts(rng, torch):
    m = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 3))
    tm = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8), torch.nn.ReLU(), torch.nn.BatchNorm1d(8),
                             torch.nn.Linear(8, 3))
    m.load_state_dict(_sd(tm))
    x = rng.standard_normal((5, 6))  # float64 input, float32 modules: cast
    for make in (lambda a: a, noncontiguous, readonly):
        xs = make(x)
        before = np.array(xs, copy=True)
        y = m(xs)
        assert y.dtype == np.float32
        np.testing.assert_array_equal(xs, before)
        assert m.backward(np.ones_like(y)).shape == x.shape
    yt = tm(torch.from_numpy(x.astype(np.float32)))
    assert_close(m(x), yt.detach().numpy(), np.float32, scale=10)
    m.to(np.float64)
    assert m[3].running_mean.dtype == np.float64 and m[3].num_batches_tracked.dtype == np.int64
    assert m(x).dtype == np.float64


def test_buffers_in_state_dict_and_load_errors():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    sd = m.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                        "1.num_batches_tracked"]
    assert [k for k, _ in m.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert [k for k, _ in m.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    with pytest.raises(KeyError, match=r"missing \['1.num_batches_tracked'\]"):
        m.load_state_dict({k: v for k, v in sd.items() if k != "1.num_batches_tracked"})
    before = m.state_dict()
    bad = {**{k: v + 1 for k, v in sd.items()}, "1.running_var": np.ones(3)}
    with pytest.raises(ValueError, match=r"state_dict\['1.running_var'\]: expected shape \(2,\)"):
        m.load_state_dict(bad)
    for k in before:  # all or nothing
        np.testing.assert_array_equal(m.state_dict()[k], before[k])
    m.load_state_dict({**sd, "1.running_mean": np.array([1, 2]), "1.num_batches_tracked": np.array(7.0)})
    assert m[1].running_mean.dtype == np.float32 and m[1].num_batches_tracked.dtype == np.int64
    assert int(m[1].num_batches_tracked) == 7
    sd2 = m.state_dict()
    sd2["1.running_mean"][0] = 99  # a copy
    assert m[1].running_mean[0] == 1
    with pytest.raises(TypeError, match="value: expected an ndarray or None"):
        m[1].register_buffer("extra", [1, 2])
    with pytest.raises(KeyError, match="already a parameter"):
        m[1].register_buffer("weight", np.ones(2))
    m[1].register_buffer("scratch", np.zeros(2), persistent=False)
    assert "1.scratch" not in m.state_dict() and any(k == "1.scratch" for k, _ in m.named_buffers())


# ------------------------------------------------------------------ refused inputs
def test_batch_norm_bad_input():
    x = np.ones((4, 3))
    r = np.zeros(3)
    with pytest.raises(ValueError, match="input: expected more than 1 value per channel when training"):
        F.batch_norm(np.ones((1, 3)), None, None, training=True)
    with pytest.raises(ValueError, match="running_mean: expected arrays when training is False"):
        F.batch_norm(x, None, None)
    with pytest.raises(ValueError, match="expected both arrays or both None"):
        F.batch_norm(x, r, None, training=True)
    with pytest.raises(ValueError, match=r"running_var: expected shape \(3,\)"):
        F.batch_norm(x, r, np.ones(4))
    with pytest.raises(TypeError, match="running_mean: expected a float32 or float64 ndarray"):
        F.batch_norm(x, [0.0, 0, 0], r)
    with pytest.raises(ValueError, match="running_mean: expected a writeable array"):
        F.batch_norm(x, readonly(r), r.copy(), training=True)
    with pytest.raises(ValueError, match=r"weight: expected shape \(3,\)"):
        F.batch_norm(x, r, r, np.ones(2))
    with pytest.raises(TypeError, match="bias: expected dtype float64"):
        F.batch_norm(x, r, r, None, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="input: expected an array of shape \\(N, C, \\*\\)"):
        F.batch_norm(np.ones(3), r, r)
    with pytest.raises(TypeError, match="input: expected a float32 or float64"):
        F.batch_norm(np.ones((2, 3), int), r, r)
    with pytest.raises(ValueError, match="eps: expected a float >= 0"):
        F.batch_norm(x, r, r, eps=-1)
    with pytest.raises(TypeError, match="training: expected a bool"):
        F.batch_norm(x, r, r, training=1)
    with pytest.raises(ValueError, match=r"mean: expected shape \(3,\)"):
        F.batch_norm_backward(x, x, np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match="grad_out: expected the shape of input"):
        F.batch_norm_backward(np.ones((4, 2)), x, r, r)
    with pytest.raises(ValueError, match="input: expected a 4-D array for BatchNorm2d"):
        nn.BatchNorm2d(3)(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="input: expected 3 channels"):
        nn.BatchNorm1d(3)(np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match="momentum: expected a float or None"):
        nn.BatchNorm1d(3, momentum="a")
    with pytest.raises(ValueError, match="num_features: expected an int >= 1"):
        nn.BatchNorm2d(0)


def test_layer_and_group_norm_bad_input():
    x = np.ones((2, 6, 4))
    with pytest.raises(ValueError, match=r"input: expected a shape ending in normalized_shape \(5,\)"):
        F.layer_norm(x, 5)
    with pytest.raises(TypeError, match="normalized_shape: expected an int or a non-empty tuple"):
        F.layer_norm(x, "4")
    with pytest.raises(ValueError, match="normalized_shape: expected an int >= 1"):
        F.layer_norm(x, (0,))
    with pytest.raises(ValueError, match=r"weight: expected shape \(6, 4\)"):
        F.layer_norm(x, (6, 4), np.ones(4))
    with pytest.raises(ValueError, match=r"rstd: expected shape \(2, 6\)"):
        F.layer_norm_backward(x, x, 4, np.zeros((2, 6)), np.zeros(2))
    with pytest.raises(ValueError, match="num_groups: expected a divisor of the input's 6 channels"):
        F.group_norm(x, 4)
    with pytest.raises(ValueError, match="num_groups: expected a divisor of num_channels=6"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"input: expected shape \(N, 6, \*\)"):
        nn.GroupNorm(2, 6)(np.ones((2, 4, 3), np.float32))
    with pytest.raises(TypeError, match="input: expected a float32 or float64"):
        F.group_norm(np.ones((2, 6), complex), 2)


def test_empty_batch(backend, dtype):
    z = np.zeros((0, 3, 4), dtype)
    assert F.layer_norm(z, 4).shape == z.shape
    assert F.group_norm(z, 3).shape == z.shape
    assert F.batch_norm(z, np.zeros(3, dtype), np.ones(3, dtype)).shape == z.shape
