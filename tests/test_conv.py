"""conv2d: every backend against torch (forward and the three gradients), against the
reference kernel (hypothesis), against float64 central differences; odd inputs; bad input;
NaN isolation; the Conv2d module (init, state_dict, torch parity)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
import fastnn.kernels.conv2d as conv_kernels
from fastnn import functional as F
from fastnn import nn
from fastnn.kernels.conv2d import reference as ref_kernels
from fastnn.kernels.conv2d import _gemm as conv_gemm

from fnn_testing import assert_close, central_diff, noncontiguous, readonly, to_torch

# (N, C, H, W, K, kh, kw, options): stride > 1, asymmetric padding pairs, dilation 2, groups 2,
# depthwise, 1x1, kernels as large as the padded input, odd/prime sizes, batch 1
CASES = [
    (2, 3, 7, 5, 4, 3, 3, dict()),
    (1, 3, 11, 7, 5, 3, 2, dict(stride=(2, 3), padding=(1, 2))),
    (2, 4, 9, 9, 6, 3, 3, dict(padding=(2, 0), dilation=2)),
    (3, 4, 6, 7, 6, 3, 3, dict(groups=2, padding=1, stride=2)),
    (2, 5, 7, 7, 5, 3, 3, dict(groups=5, padding=1)),  # depthwise
    (2, 6, 5, 5, 12, 3, 3, dict(groups=6, padding=(0, 1))),  # depthwise, multiplier 2
    (2, 7, 5, 3, 3, 1, 1, dict(stride=2)),  # 1x1
    (1, 2, 5, 4, 3, 7, 6, dict(padding=1)),  # kernel as large as the padded input
    (2, 1, 13, 11, 8, 5, 5, dict(padding=2)),  # C=1, the CNN's first layer
    (2, 16, 5, 6, 16, 3, 3, dict(padding=1)),  # many channels: the im2col path
    (1, 24, 7, 5, 16, 2, 3, dict(padding="same", dilation=(2, 1))),  # even kernel: asymmetric "same"
    (2, 8, 6, 6, 8, 3, 3, dict(padding="valid", stride=(1, 2))),
]
IDS = [f"case{i}" for i in range(len(CASES))]


def _data(rng, dtype, N, C, H, W, K, kh, kw, opts):
    g = opts.get("groups", 1)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // g, kh, kw)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    return x, w, b


def _torch_conv(torch, x, w, b, gout, opts):
    xt, wt, bt = (to_torch(torch, a.astype(np.float64), True) for a in (x, w, b))
    y = torch.nn.functional.conv2d(xt, wt, bt, **opts)
    if gout is None:
        return y.detach().numpy(), None
    y.backward(torch.from_numpy(gout.astype(np.float64)))
    return y.detach().numpy(), (xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_torch(case, backend, dtype, rng, torch):
    N, C, H, W, K, kh, kw, opts = case
    x, w, b = _data(rng, dtype, *case)
    y = F.conv2d(x, w, b, **opts)
    gout = rng.standard_normal(y.shape).astype(dtype)
    y_t, grads_t = _torch_conv(torch, x, w, b, gout, opts)
    assert y.dtype == dtype
    scale = 10 if dtype == np.float32 else 1  # sums of up to a few hundred float32 products
    assert_close(y, y_t, dtype, scale, "forward")
    grads = F.conv2d_backward(gout, x, w, **opts)
    for name, g, gt in zip(("grad_input", "grad_weight", "grad_bias"), grads, grads_t):
        assert g.dtype == dtype
        assert_close(g, gt, dtype, scale, name)


def test_need_input_grad_false(rng, backend):
    x, w, b = _data(rng, np.float64, 2, 3, 6, 6, 4, 3, 3, {})
    g = rng.standard_normal((2, 4, 4, 4))
    gx, gw, gb = F.conv2d_backward(g, x, w, need_input_grad=False)
    _, gw_full, gb_full = F.conv2d_backward(g, x, w)
    assert gx is None
    assert_close(gw, gw_full)
    assert_close(gb, gb_full)


def test_central_differences(rng):
    # independent of torch: d sum(conv * g) / d(x, w, b) by float64 central differences
    opts = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    x, w, b = _data(rng, np.float64, 2, 4, 5, 6, 4, 2, 3, opts)
    g = rng.standard_normal(F.conv2d(x, w, b, **opts).shape)
    gx, gw, gb = F.conv2d_backward(g, x, w, **opts)
    assert_close(gx, central_diff(lambda v: np.sum(F.conv2d(v, w, b, **opts) * g), x), scale=1e4)
    assert_close(gw, central_diff(lambda v: np.sum(F.conv2d(x, v, b, **opts) * g), w), scale=1e4)
    assert_close(gb, central_diff(lambda v: np.sum(F.conv2d(x, w, v, **opts) * g), b), scale=1e4)


@st.composite
def conv_problems(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, kg = draw(st.integers(1, 6)), draw(st.integers(1, 10))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 9))
    W = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 9))
    N = draw(st.integers(1, 5))
    opts = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups)
    return (N, cg * groups, H, W, kg * groups, kh, kw, opts)


@settings(max_examples=20)
@given(conv_problems())
def test_backends_agree_with_reference(problem):
    rng = np.random.default_rng(0)
    x, w, b = _data(rng, np.float64, *problem)
    opts = problem[-1]
    with fastnn.use_backend("reference"):
        out_ref = F.conv2d(x, w, b, **opts)
        g = rng.standard_normal(out_ref.shape)
        grads_ref = F.conv2d_backward(g, x, w, **opts)
    for be in fastnn.backends():
        with fastnn.use_backend(be):
            assert_close(F.conv2d(x, w, b, **opts), out_ref, err_msg=be)
            for a, e in zip(F.conv2d_backward(g, x, w, **opts), grads_ref):
                assert_close(a, e, err_msg=be)


def test_both_strategies_and_chunks(rng, fast_backend, monkeypatch):
    # direct and im2col paths, and im2col cut into many small batch chunks
    x, w, b = _data(rng, np.float64, 7, 8, 9, 8, 8, 3, 3, {})
    with fastnn.use_backend("reference"):
        y_ref = F.conv2d(x, w, b, padding=1)
        g = rng.standard_normal(y_ref.shape)
        grads_ref = F.conv2d_backward(g, x, w, padding=1)
    for strategy in ("direct", "im2col"):
        for col_bytes in (1, 1 << 23):
            monkeypatch.setattr(conv_kernels, "COL_BYTES", col_bytes)
            # the one place the compiled backends ask for a strategy
            monkeypatch.setattr(conv_gemm, "choose_strategy", lambda *a, s=strategy: s)
            assert_close(F.conv2d(x, w, b, padding=1), y_ref, err_msg=strategy)
            for a, e in zip(F.conv2d_backward(g, x, w, padding=1), grads_ref):
                assert_close(a, e, err_msg=f"{strategy} {col_bytes}")


def test_parallel_direct_kernel_repeatable(fast_backend):
    # regression: the Cython direct kernels once shared two loop variables between OpenMP
    # threads (set through pointers, so not made private): ~1.5 % of calls were wrong
    rng = np.random.default_rng(7)
    x, w, b = _data(rng, np.float64, 8, 16, 16, 16, 16, 3, 3, dict(groups=16))
    with fastnn.use_backend("reference"):
        y_ref = F.conv2d(x, w, b, padding=1, groups=16)
        g = rng.standard_normal(y_ref.shape)
        gx_ref = F.conv2d_backward(g, x, w, padding=1, groups=16)[0]
    for _ in range(100):
        assert_close(F.conv2d(x, w, b, padding=1, groups=16), y_ref)
    for _ in range(30):
        assert_close(F.conv2d_backward(g, x, w, padding=1, groups=16)[0], gx_ref)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_works_in_a_forked_child(fast_backend):
    # the im2col driver's thread pool does not survive fork(); the child must start its own
    import os

    x, w = np.ones((8, 16, 6, 6)), np.ones((16, 16, 3, 3))
    y = F.conv2d(x, w, padding=1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        ok = np.array_equal(F.conv2d(x, w, padding=1), y)
        os._exit(0 if ok else 1)
    import time

    for _ in range(200):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("conv2d hung in a forked child")


def test_strategy_rule():
    assert conv_kernels.choose_strategy(1, 5, 5, 32) == "im2col"
    assert conv_kernels.choose_strategy(1, 3, 3, 1) == "direct"  # depthwise
    assert conv_kernels.choose_strategy(2, 1, 1, 16) == "direct"
    assert conv_kernels.choose_chunk(100, 576, 3136, 4) == 1
    assert conv_kernels.choose_chunk(3, 9, 4, 4) == 3


def test_noncontiguous_readonly_not_modified(rng, backend, dtype):
    x, w, b = _data(rng, dtype, 2, 4, 6, 5, 6, 3, 3, {})
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    x_nc = nhwc.transpose(0, 3, 1, 2)  # an NHWC array seen as NCHW
    assert not x_nc.flags.c_contiguous
    with fastnn.use_backend("reference"):
        y_ref = F.conv2d(x, w, b, padding=1)
        g = rng.standard_normal(y_ref.shape).astype(dtype)
        grads_ref = F.conv2d_backward(g, x, w, padding=1)
    w_ro, b_ro, x_ro = readonly(w), readonly(b), readonly(x)
    for xi, wi, bi, gi in ((x_nc, noncontiguous(w), noncontiguous(b), noncontiguous(g)), (x_ro, w_ro, b_ro, readonly(g))):
        keep = [a.copy() for a in (xi, wi, bi, gi)]
        assert_close(F.conv2d(xi, wi, bi, padding=1), y_ref)
        for a, e in zip(F.conv2d_backward(gi, xi, wi, padding=1), grads_ref):
            assert_close(a, e)
        for a, k in zip((xi, wi, bi, gi), keep):
            np.testing.assert_array_equal(a, k)


def test_empty_batch(backend):
    x = np.zeros((0, 3, 5, 5), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    y = F.conv2d(x, w, np.ones(4, np.float32), padding=1)
    assert y.shape == (0, 4, 5, 5) and y.dtype == np.float32
    gx, gw, gb = F.conv2d_backward(np.zeros((0, 4, 5, 5), np.float32), x, w, padding=1)
    assert gx.shape == x.shape
    np.testing.assert_array_equal(gw, 0)
    np.testing.assert_array_equal(gb, 0)


@pytest.mark.parametrize("shape", [(4, 1, 9, 9, 8, 5, 5), (4, 8, 6, 6, 16, 3, 3), (4, 4, 6, 6, 4, 3, 3)])
def test_nan_stays_in_its_image(shape, backend):
    rng = np.random.default_rng(3)
    groups = 4 if shape[-3] == 4 else 1  # the last one is depthwise: the direct kernel
    x, w, b = _data(rng, np.float64, *shape, dict(groups=groups))
    x[1, 0, 2, 3] = np.nan
    y = F.conv2d(x, w, b, padding=1, groups=groups)
    assert np.isnan(y[1]).any()
    assert np.isfinite(np.delete(y, 1, axis=0)).all()
    gx, _, _ = F.conv2d_backward(np.where(np.isnan(y), 0, 1.0), x, w, padding=1, groups=groups)
    assert np.isfinite(np.delete(gx, 1, axis=0)).all()


def test_output_size_formula():
    x = np.zeros((1, 2, 10, 13))
    w = np.zeros((3, 2, 3, 4))
    y = F.conv2d(x, w, stride=(3, 2), padding=(1, 2), dilation=(2, 1))
    assert y.shape == (1, 3, (10 + 2 - 2 * 2 - 1) // 3 + 1, (13 + 4 - 3 - 1) // 2 + 1)
    assert F.conv2d(x, np.zeros((3, 2, 4, 4)), padding="same").shape == (1, 3, 10, 13)


# ------------------------------------------------------------------------------ bad input
def _ok():
    return np.zeros((2, 4, 6, 6)), np.zeros((6, 2, 3, 3))


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(x=np.zeros((4, 6, 6))), ValueError, "input"),  # 3-D
        (dict(x=np.zeros((2, 4, 6, 6), np.int64)), TypeError, "input"),
        (dict(x=np.zeros((2, 4, 6, 6), np.complex128)), TypeError, "input"),
        (dict(x=np.zeros((2, 4, 6, 6), np.float32)), TypeError, "weight"),  # mixed dtypes
        (dict(w=np.zeros((6, 3, 3, 3))), ValueError, "weight"),  # channel/group mismatch
        (dict(w=np.zeros((6, 2, 3))), ValueError, "weight"),
        (dict(groups=3), ValueError, "groups"),
        (dict(groups=0), ValueError, "groups"),
        (dict(groups=2.0), TypeError, "groups"),
        (dict(w=np.zeros((6, 2, 9, 3))), ValueError, "larger"),  # kernel larger than padded input
        (dict(w=np.zeros((6, 2, 4, 4)), dilation=3), ValueError, "larger"),
        (dict(stride=0), ValueError, "stride"),
        (dict(stride=(1, -1)), ValueError, "stride"),
        (dict(stride=(1, 1, 1)), ValueError, "stride"),
        (dict(stride=1.5), TypeError, "stride"),
        (dict(padding=-1), ValueError, "padding"),
        (dict(padding="full"), ValueError, "padding"),
        (dict(padding="same", stride=2), ValueError, "padding"),
        (dict(dilation=0), ValueError, "dilation"),
        (dict(bias=np.zeros(5)), ValueError, "bias"),
        (dict(bias=np.zeros(6, np.float32)), TypeError, "bias"),
        (dict(bias=np.zeros(6, np.int32)), TypeError, "bias"),
        (dict(w=np.zeros((0, 2, 3, 3))), ValueError, "weight"),
    ],
)
def test_conv2d_refuses(kwargs, err, match):
    x, w = _ok()
    x, w = kwargs.pop("x", x), kwargs.pop("w", w)
    kwargs.setdefault("groups", 2)
    with pytest.raises(err, match=match):
        F.conv2d(x, w, **kwargs)
    if "bias" not in kwargs:
        with pytest.raises(err, match=match):
            F.conv2d_backward(np.zeros((2, 6, 4, 4)), x, w, **kwargs)


@pytest.mark.parametrize(
    "g, err",
    [(np.zeros((2, 6, 4, 5)), ValueError), (np.zeros((2, 5, 4, 4)), ValueError), (np.zeros((6, 4, 4)), ValueError),
     (np.zeros((2, 6, 4, 4), np.float32), TypeError), (np.zeros((2, 6, 4, 4), np.int64), TypeError)],
)
def test_conv2d_backward_refuses_grad_out(g, err):
    x, w = _ok()
    with pytest.raises(err, match="grad_out"):
        F.conv2d_backward(g, x, w, groups=2)


# ------------------------------------------------------------------------------ module
def test_conv2d_module_matches_torch(torch, rng, dtype):
    m = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, dtype=dtype)
    tm = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2).double()
    assert list(m.state_dict()) == list(tm.state_dict())
    m.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    x = rng.standard_normal((2, 4, 7, 6))
    y = m(x)
    assert y.dtype == dtype
    xt = to_torch(torch, x, True)
    yt = tm(xt)
    g = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(g))
    scale = 10 if dtype == np.float32 else 1
    assert_close(y, yt.detach().numpy(), dtype, scale)
    assert_close(m.backward(g.astype(dtype)), xt.grad.numpy(), dtype, scale)
    assert_close(m.weight.grad, tm.weight.grad.numpy(), dtype, scale)
    assert_close(m.bias.grad, tm.bias.grad.numpy(), dtype, scale)


def test_conv2d_module_init():
    m = nn.Conv2d(8, 16, 3, groups=2, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(4 * 9)  # fan_in = in_channels // groups * kH * kW
    assert m.weight.shape == (16, 4, 3, 3) and m.weight.dtype == np.float32
    for p in (m.weight.data, m.bias.data):
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.8 * bound
    assert nn.Conv2d(2, 2, 1, bias=False).bias is None
    assert list(nn.Conv2d(2, 2, 1, bias=False).state_dict()) == ["weight"]
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="stride"):
        nn.Conv2d(3, 4, 3, stride=0)
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2d(3, 4, 3, padding="full")


def test_reference_is_the_seed_loop():
    # the seed's HWC convolve (valid, stride 1), transcribed, equals the reference kernel
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 5, 2))
    Wt = rng.standard_normal((3, 2, 2, 4))  # seed layout (kh, kw, kc, nc)
    b = rng.standard_normal(4)
    h, w, c = X.shape
    kh, kw, kc, nc = Wt.shape
    Y = np.zeros((h - kh + 1, w - kw + 1, nc))
    for i in range(h - kh + 1):
        for j in range(w - kw + 1):
            for k in range(nc):
                Y[i, j, k] = np.sum(X[i : i + kh, j : j + kw, :] * Wt[:, :, :, k]) + b[k]
    out = np.empty((1, nc, h - kh + 1, w - kw + 1))
    ref_kernels.conv2d_forward(X.transpose(2, 0, 1)[None], Wt.transpose(3, 2, 0, 1), b, out, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    assert_close(out[0].transpose(1, 2, 0), Y)


# ------------------------------------------------------------------------------ CLI
def test_cli_train_cnn(tmp_path, monkeypatch, capsys):
    from test_datasets_cli import write_idx

    from fastnn import cli

    write_idx(tmp_path)  # a small learnable MNIST-shaped set: class k lights up row block k
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    assert cli.main(["train", "cnn", "--epochs", "2", "--batch-size", "32", "--no-progress", "--lr", "2e-3"]) == 0
    out = capsys.readouterr().out
    epochs = [ln for ln in out.splitlines() if ln.startswith("epoch ")]
    assert len(epochs) == 2 and all(" s (" in ln for ln in epochs)  # the epoch time is printed
    acc = float([ln for ln in out.splitlines() if ln.startswith("test accuracy: ")][-1].split()[-1].rstrip("%"))
    assert acc > 80  # chance is 10 %


@pytest.mark.parametrize("pad", [0, 2])
def test_seed_loop_rung_matches_reference(pad, rng):
    """The seed's own loops (the first rung ``fastnn bench`` times) compute the same convolution."""
    from fastnn.kernels.conv2d import reference, seed

    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    geo = ((1, 1), (pad, pad, pad, pad), (1, 1), 1)
    oh, ow = 6 + 2 * pad - 2, 5 + 2 * pad - 1
    g = rng.standard_normal((2, 4, oh, ow))
    outs = []
    for mod in (seed, reference):
        out, gx, gw, gb = np.empty((2, 4, oh, ow)), np.empty_like(x), np.empty_like(w), np.empty_like(b)
        mod.conv2d_forward(x, w, b, out, *geo)
        mod.conv2d_backward(g, x, w, gx, gw, gb, *geo)
        outs.append((out, gx, gw, gb))
    for a, e in zip(*outs):
        assert_close(a, e, np.float64)
    with pytest.raises(ValueError, match="stride 1"):
        seed.conv2d_forward(x, w, b, np.empty((2, 4, 2, 2)), (2, 2), (0,) * 4, (1, 1), 1)
