"""The rest of the convolution family: conv1d, conv_transpose2d, adaptive_avg_pool2d, 1-D
pooling, dropout2d, interpolate/Upsample, Permute: every backend against torch (forward and
every gradient), the reference, float64 central differences, odd shapes, layouts, modules
and their state_dicts, bad input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnn
from fastnn import functional as F
from fastnn import nn
from fnn_testing import assert_close, central_diff, noncontiguous, readonly, to_torch


def ref(fn, *args, **kw):
    with fastnn.use_backend("reference"):
        return fn(*args, **kw)


def _torch_grads(torch, fn, arrays, g_shape_fn, rng, dtype, **kw):
    """torch's output and the gradients of sum(out * g) w.r.t. each of ``arrays``."""
    ts = [None if a is None else to_torch(torch, a, True) for a in arrays]
    y = fn(*ts, **kw)
    g = rng.standard_normal(tuple(y.shape)).astype(dtype)
    y.backward(to_torch(torch, g))
    return y.detach().numpy(), g, [None if t is None else t.grad.numpy() for t in ts]


# ------------------------------------------------------------------------------- conv1d
CONV1D = [  # (N, C, L, K, k, options)
    (2, 3, 11, 4, 3, {}),
    (1, 1, 7, 1, 1, {}),
    (3, 4, 13, 6, 5, dict(stride=2, padding=2, dilation=2, groups=2)),
    (2, 2, 9, 4, 3, dict(padding="same")),
    (2, 3, 8, 5, 4, dict(padding="same", dilation=2)),
    (1, 6, 17, 6, 3, dict(groups=6, padding=1, stride=3)),  # depthwise: the direct kernels
    (4, 2, 5, 3, 5, dict(padding="valid")),
    (2, 3, 1, 2, 1, dict(stride=(1,), padding=(0,), dilation=(1,))),
]


@pytest.mark.parametrize("case", CONV1D, ids=[f"c{i}" for i in range(len(CONV1D))])
def test_conv1d_matches_torch(case, backend, dtype, rng, torch):
    N, C, L, K, k, opts = case
    x = rng.standard_normal((N, C, L)).astype(dtype)
    w = rng.standard_normal((K, C // opts.get("groups", 1), k)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    y_t, g, (gx_t, gw_t, gb_t) = _torch_grads(torch, torch.nn.functional.conv1d, (x, w, b), None, rng, dtype, **opts)
    y = F.conv1d(x, w, b, **opts)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_close(y, y_t, dtype, scale=3)
    gx, gw, gb = F.conv1d_backward(g, x, w, **opts)
    assert_close(gx, gx_t, dtype, scale=3)
    assert_close(gw, gw_t, dtype, scale=10)
    assert_close(gb, gb_t, dtype, scale=10)
    assert F.conv1d_backward(g, x, w, need_input_grad=False, **opts)[0] is None


# --------------------------------------------------------------------- conv_transpose2d
CONVT = [  # (N, C_in, H, W, C_out, kh, kw, options)
    (2, 4, 5, 6, 3, 3, 3, {}),
    (2, 4, 5, 5, 2, 3, 3, dict(stride=2, padding=1, output_padding=1)),
    (1, 4, 3, 4, 6, 3, 2, dict(stride=(2, 3), padding=(0, 2), output_padding=(1, 0), groups=2, dilation=(1, 2))),
    (2, 3, 4, 4, 2, 2, 2, dict(stride=1, dilation=3, output_padding=2, padding=1)),  # output_padding >= stride
    (1, 1, 1, 1, 1, 1, 1, {}),
    (3, 2, 7, 3, 5, 4, 4, dict(stride=2, padding=1)),
    (2, 6, 4, 5, 6, 3, 3, dict(groups=6, padding=1)),  # depthwise
]


@pytest.mark.parametrize("case", CONVT, ids=[f"c{i}" for i in range(len(CONVT))])
def test_conv_transpose2d_matches_torch(case, backend, dtype, rng, torch):
    N, C, H, W, K, kh, kw, opts = case
    groups = opts.get("groups", 1)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C, K // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    y_t, g, (gx_t, gw_t, gb_t) = _torch_grads(torch, torch.nn.functional.conv_transpose2d, (x, w, b), None, rng,
                                              dtype, **opts)
    y = F.conv_transpose2d(x, w, b, **opts)
    assert y.dtype == dtype
    assert_close(y, y_t, dtype, scale=3)
    gx, gw, gb = F.conv_transpose2d_backward(g, x, w, **opts)
    assert_close(gx, gx_t, dtype, scale=3)
    assert_close(gw, gw_t, dtype, scale=10)
    assert_close(gb, gb_t, dtype, scale=10)
    assert F.conv_transpose2d_backward(g, x, w, need_input_grad=False, **opts)[0] is None


def test_conv1d_and_transpose_central_differences(rng):
    x, w, b = rng.standard_normal((2, 4, 7)), rng.standard_normal((4, 2, 3)), rng.standard_normal(4)
    opts = dict(stride=2, padding=1, dilation=2, groups=2)
    g = rng.standard_normal(F.conv1d(x, w, b, **opts).shape)
    gx, gw, gb = F.conv1d_backward(g, x, w, **opts)
    assert_close(gx, central_diff(lambda a: np.sum(F.conv1d(a, w, b, **opts) * g), x), scale=1e4)
    assert_close(gw, central_diff(lambda a: np.sum(F.conv1d(x, a, b, **opts) * g), w), scale=1e4)
    assert_close(gb, central_diff(lambda a: np.sum(F.conv1d(x, w, a, **opts) * g), b), scale=1e4)
    x, w, b = rng.standard_normal((2, 4, 3, 4)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(6)
    opts = dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), groups=2, dilation=(1, 2))
    g = rng.standard_normal(F.conv_transpose2d(x, w, b, **opts).shape)
    gx, gw, gb = F.conv_transpose2d_backward(g, x, w, **opts)
    assert_close(gx, central_diff(lambda a: np.sum(F.conv_transpose2d(a, w, b, **opts) * g), x), scale=1e4)
    assert_close(gw, central_diff(lambda a: np.sum(F.conv_transpose2d(x, a, b, **opts) * g), w), scale=1e4)
    assert_close(gb, central_diff(lambda a: np.sum(F.conv_transpose2d(x, w, a, **opts) * g), b), scale=1e4)


def test_conv_transpose2d_is_the_conv2d_input_gradient(rng):
    # the defining identity, checked with the reference conv2d kernels
    x = rng.standard_normal((2, 3, 9, 8))
    w = rng.standard_normal((5, 3, 3, 3))
    g = rng.standard_normal(F.conv2d(x, w, stride=2, padding=1).shape)
    gx = ref(F.conv2d_backward, g, x, w, stride=2, padding=1)[0]
    assert_close(F.conv_transpose2d(g, w, stride=2, padding=1, output_padding=(0, 1)), gx)


# --------------------------------------------------------------------- adaptive avg pool
ADAPTIVE = [((2, 3, 7, 5), 1), ((2, 3, 7, 5), (2, 3)), ((1, 2, 6, 6), (3, None)), ((2, 1, 5, 4), (10, 9)),
            ((1, 2, 13, 11), (5, 7)), ((3, 2, 4, 4), (4, 4)), ((1, 1, 1, 1), 3)]


@pytest.mark.parametrize("shape,size", ADAPTIVE, ids=[f"a{i}" for i in range(len(ADAPTIVE))])
def test_adaptive_avg_pool2d_matches_torch(shape, size, backend, dtype, rng, torch):
    x = rng.standard_normal(shape).astype(dtype)
    y_t, g, (gx_t,) = _torch_grads(torch, torch.nn.functional.adaptive_avg_pool2d, (x,), None, rng, dtype,
                                   output_size=size)
    y = F.adaptive_avg_pool2d(x, size)
    assert y.dtype == dtype
    assert_close(y, y_t, dtype)
    assert_close(F.adaptive_avg_pool2d_backward(g, x, size), gx_t, dtype)


@given(n=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12), oh=st.integers(1, 14), ow=st.integers(1, 14),
       seed=st.integers(0, 2**16))
def test_adaptive_avg_pool2d_backends_match_reference(n, h, w, oh, ow, seed):
    r = np.random.default_rng(seed)
    for dt in (np.float32, np.float64):
        x = r.standard_normal((n, 2, h, w)).astype(dt)
        g = r.standard_normal((n, 2, oh, ow)).astype(dt)
        y_ref, gx_ref = ref(F.adaptive_avg_pool2d, x, (oh, ow)), ref(F.adaptive_avg_pool2d_backward, g, x, (oh, ow))
        for be in fastnn.backends():
            with fastnn.use_backend(be):
                assert_close(F.adaptive_avg_pool2d(x, (oh, ow)), y_ref, dt, err_msg=be)
                assert_close(F.adaptive_avg_pool2d_backward(g, x, (oh, ow)), gx_ref, dt, err_msg=be)


# ---------------------------------------------------------------------------- 1-D pooling
POOL1D = [((2, 3, 10), dict(kernel_size=2)), ((1, 2, 11), dict(kernel_size=3, stride=2, padding=1)),
          ((2, 1, 7), dict(kernel_size=3, stride=2, ceil_mode=True)), ((3, 5), dict(kernel_size=2, stride=1)),
          ((2, 2, 1), dict(kernel_size=1)), ((1, 3, 9), dict(kernel_size=(4,), stride=(3,), padding=(2,), ceil_mode=True))]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape,opts", POOL1D, ids=[f"p{i}" for i in range(len(POOL1D))])
def test_pool1d_matches_torch(kind, shape, opts, backend, dtype, rng, torch):
    x = rng.standard_normal(shape).astype(dtype)
    fwd, bwd = (F.max_pool1d, F.max_pool1d_backward) if kind == "max" else (F.avg_pool1d, F.avg_pool1d_backward)
    tfn = torch.nn.functional.max_pool1d if kind == "max" else torch.nn.functional.avg_pool1d
    cips = [True] if kind == "max" else [True, False]
    for cip in cips:
        kw = dict(opts) if kind == "max" else dict(opts, count_include_pad=cip)
        y_t, g, (gx_t,) = _torch_grads(torch, tfn, (x,), None, rng, dtype, **kw)
        y = fwd(x, **kw)
        assert y.dtype == dtype and y.shape == y_t.shape
        assert_close(y, y_t, dtype)
        assert_close(bwd(g, x, **kw), gx_t, dtype)


# --------------------------------------------------------------------------- dropout2d
def test_dropout2d_zeroes_whole_channels(dtype):
    x = np.ones((40, 50, 3, 3), dtype)
    out, mask = F.dropout2d(x, 0.3, rng=np.random.default_rng(0), return_mask=True)
    assert out.dtype == dtype and mask.shape == (40, 50, 1, 1)
    per_channel = out.reshape(40, 50, 9)
    assert np.all(per_channel.min(axis=2) == per_channel.max(axis=2))  # all or nothing per channel
    kept = per_channel[:, :, 0] != 0
    assert 0.65 < kept.mean() < 0.75
    np.testing.assert_allclose(per_channel[kept], 1 / 0.7, rtol=1e-6)
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(F.dropout2d_backward(g, mask), g * mask)
    np.testing.assert_array_equal(F.dropout2d(x, 0.3, training=False), x)
    np.testing.assert_array_equal(F.dropout2d(x, 1.0), np.zeros_like(x))
    out3, mask3 = F.dropout2d(np.ones((4, 6, 5), dtype), 0.5, rng=np.random.default_rng(0), return_mask=True)
    assert mask3.shape == (4, 6, 1) and np.all((out3 == 0).all(axis=2) | (out3 != 0).all(axis=2))
    m = nn.Dropout2d(0.5, rng=np.random.default_rng(0))
    y = m(x)
    assert_close(m.backward(np.ones_like(x)), (y != 0) * 2.0)
    m.eval()
    np.testing.assert_array_equal(m(x), x)


# ------------------------------------------------------------------------ interpolate
INTERP = [dict(scale_factor=2), dict(size=(7, 5)), dict(scale_factor=(1.7, 0.6)), dict(size=(3, 11)),
          dict(scale_factor=3.3), dict(scale_factor=1.0001), dict(size=(1, 1)), dict(size=6),
          dict(scale_factor=0.5, recompute_scale_factor=True)]
MODES = [("nearest", None), ("bilinear", False), ("bilinear", True)]


@pytest.mark.parametrize("mode,align", MODES, ids=["nearest", "bilinear", "bilinear-align"])
@pytest.mark.parametrize("opts", INTERP, ids=[f"i{i}" for i in range(len(INTERP))])
def test_interpolate_matches_torch(opts, mode, align, backend, dtype, rng, torch):
    x = rng.standard_normal((2, 3, 6, 9)).astype(dtype)
    kw = dict(opts, mode=mode, align_corners=align)
    y_t, g, (gx_t,) = _torch_grads(torch, torch.nn.functional.interpolate, (x,), None, rng, dtype, **kw)
    y = F.interpolate(x, **kw)
    assert y.dtype == dtype
    assert_close(y, y_t, dtype)
    assert_close(F.interpolate_backward(g, x, **kw), gx_t, dtype, scale=3)


@given(h=st.integers(1, 9), w=st.integers(1, 9), oh=st.integers(1, 20), ow=st.integers(1, 20),
       mode=st.sampled_from(MODES), seed=st.integers(0, 2**16))
def test_interpolate_backends_match_reference(h, w, oh, ow, mode, seed):
    r = np.random.default_rng(seed)
    kw = dict(size=(oh, ow), mode=mode[0], align_corners=mode[1])
    for dt in (np.float32, np.float64):
        x = r.standard_normal((2, 2, h, w)).astype(dt)
        g = r.standard_normal((2, 2, oh, ow)).astype(dt)
        y_ref, gx_ref = ref(F.interpolate, x, **kw), ref(F.interpolate_backward, g, x, **kw)
        for be in fastnn.backends():
            with fastnn.use_backend(be):
                assert_close(F.interpolate(x, **kw), y_ref, dt, err_msg=be)
                assert_close(F.interpolate_backward(g, x, **kw), gx_ref, dt, scale=3, err_msg=be)


def test_pool_and_interpolate_central_differences(rng):
    x = rng.standard_normal((1, 2, 5, 4))
    g = rng.standard_normal((1, 2, 3, 3))
    assert_close(F.adaptive_avg_pool2d_backward(g, x, 3),
                 central_diff(lambda a: np.sum(F.adaptive_avg_pool2d(a, 3) * g), x), scale=1e4)
    for mode, align in MODES:
        kw = dict(size=(7, 6), mode=mode, align_corners=align)
        g = rng.standard_normal((1, 2, 7, 6))
        assert_close(F.interpolate_backward(g, x, **kw), central_diff(lambda a: np.sum(F.interpolate(a, **kw) * g), x),
                     scale=1e4, err_msg=mode)
    x1 = rng.standard_normal((2, 2, 9))
    for fwd, bwd in ((F.max_pool1d, F.max_pool1d_backward), (F.avg_pool1d, F.avg_pool1d_backward)):
        g = rng.standard_normal(fwd(x1, 3, 2, 1).shape)
        assert_close(bwd(g, x1, 3, 2, 1), central_diff(lambda a: np.sum(fwd(a, 3, 2, 1) * g), x1), scale=1e4)


def test_large_inputs_take_the_parallel_paths(fast_backend, dtype, rng):
    x = rng.standard_normal((8, 16, 20, 18)).astype(dtype)
    for kw in (dict(scale_factor=2, mode="nearest"), dict(size=(31, 40), mode="bilinear", align_corners=False)):
        y = F.interpolate(x, **kw)
        g = rng.standard_normal(y.shape).astype(dtype)
        assert_close(y, ref(F.interpolate, x, **kw), dtype)
        assert_close(F.interpolate_backward(g, x, **kw), ref(F.interpolate_backward, g, x, **kw), dtype, scale=3)
    g = rng.standard_normal((8, 16, 3, 5)).astype(dtype)
    assert_close(F.adaptive_avg_pool2d(x, (3, 5)), ref(F.adaptive_avg_pool2d, x, (3, 5)), dtype)
    assert_close(F.adaptive_avg_pool2d_backward(g, x, (3, 5)), ref(F.adaptive_avg_pool2d_backward, g, x, (3, 5)),
                 dtype)


def test_noncontiguous_and_readonly_inputs(backend, dtype, rng):
    x4 = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    x3 = rng.standard_normal((2, 4, 9)).astype(dtype)
    w1 = rng.standard_normal((2, 4, 3)).astype(dtype)
    wt = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    calls = [
        lambda a, b, c: F.conv1d(b, c[0]),
        lambda a, b, c: F.conv1d_backward(np.ones((2, 2, 7), dtype), b, c[0])[1],
        lambda a, b, c: F.conv_transpose2d(a, c[1], stride=2),
        lambda a, b, c: F.conv_transpose2d_backward(np.ones((2, 2, 13, 11), dtype), a, c[1], stride=2)[1],
        lambda a, b, c: F.adaptive_avg_pool2d(a, (2, 3)),
        lambda a, b, c: F.max_pool1d(b, 2),
        lambda a, b, c: F.avg_pool1d(b, 3, 2, 1),
        lambda a, b, c: F.interpolate(a, scale_factor=1.5, mode="bilinear"),
    ]
    want = [f(x4, x3, (w1, wt)) for f in calls]
    for make in (noncontiguous, readonly):
        a, b, c = make(x4), make(x3), (make(w1), make(wt))
        before = [v.copy() for v in (a, b, *c)]
        for f, w_ in zip(calls, want):
            assert_close(f(a, b, c), w_, dtype)
        for v, v0 in zip((a, b, *c), before):
            np.testing.assert_array_equal(v, v0)


# ------------------------------------------------------------------------------ modules
def _sd(tm):
    return {k: v.detach().numpy() for k, v in tm.state_dict().items()}


@pytest.mark.parametrize("which", ["conv1d", "conv_transpose2d"])
def test_conv_modules_match_torch_and_state_dict(which, backend, dtype, rng, torch):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    if which == "conv1d":
        tmake = lambda: torch.nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2).to(tdt)  # noqa: E731
        m = nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2, dtype=dtype)
        x = rng.standard_normal((3, 4, 11)).astype(dtype)
    else:
        tmake = lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,  # noqa: E731
                                                 groups=2).to(tdt)
        m = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dtype=dtype)
        x = rng.standard_normal((3, 4, 5, 4)).astype(dtype)
    tm = tmake()
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    m.load_state_dict(_sd(tm))
    xt = to_torch(torch, x, True)
    yt = tm(xt)
    g = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(to_torch(torch, g))
    assert_close(m(x), yt.detach().numpy(), dtype, scale=3)
    assert_close(m.backward(g), xt.grad.numpy(), dtype, scale=3)
    for name, p in m.named_parameters():
        assert_close(p.grad, dict(tm.named_parameters())[name].grad.numpy(), dtype, scale=10, err_msg=name)
    tm2 = tmake()  # and back into torch
    tm2.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    assert_close(tm2(to_torch(torch, x)).detach().numpy(), yt.detach().numpy(), dtype)


def test_conv_module_init_like_torch():
    fastnn.manual_seed(0)
    m = nn.ConvTranspose2d(64, 32, 4, groups=2)
    bound = 1 / np.sqrt(32 // 2 * 16)  # torch: fan_in from weight dim 1 of (in, out // groups, kh, kw)
    assert m.weight.shape == (64, 16, 4, 4) and m.bias.shape == (32,)
    assert 0.95 * bound < np.abs(m.weight.data).max() <= bound
    c = nn.Conv1d(6, 9, 5, groups=3, bias=False)
    bound = 1 / np.sqrt(2 * 5)
    assert c.weight.shape == (9, 2, 5) and c.bias is None
    assert 0.9 * bound < np.abs(c.weight.data).max() <= bound


PARAMETER_FREE = [
    (lambda: nn.AdaptiveAvgPool2d((2, 3)), lambda t: t.nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 7, 5)),
    (lambda: nn.MaxPool1d(3, 2, 1, ceil_mode=True), lambda t: t.nn.MaxPool1d(3, 2, 1, ceil_mode=True), (2, 3, 10)),
    (lambda: nn.AvgPool1d(2, count_include_pad=False), lambda t: t.nn.AvgPool1d(2, count_include_pad=False),
     (2, 3, 9)),
    (lambda: nn.Upsample(scale_factor=2), lambda t: t.nn.Upsample(scale_factor=2), (2, 3, 4, 5)),
    (lambda: nn.Upsample(size=(7, 3), mode="bilinear", align_corners=True),
     lambda t: t.nn.Upsample(size=(7, 3), mode="bilinear", align_corners=True), (2, 3, 4, 5)),
    (lambda: nn.Permute(0, 2, 3, 1), None, (2, 3, 4, 5)),
    (lambda: nn.Dropout2d(0.3, rng=np.random.default_rng(0)), None, (2, 3, 4, 5)),
]


@pytest.mark.parametrize("i", range(len(PARAMETER_FREE)))
@pytest.mark.parametrize("train", [True, False])
def test_parameter_free_modules_match_torch_and_keep_dtype(i, train, dtype, rng, torch):
    make, tmake, shape = PARAMETER_FREE[i]
    m = make().train(train)
    assert m.dtype is None and m.parameters() == []
    x = rng.standard_normal(shape).astype(dtype)
    y = m(x)
    assert y.dtype == dtype
    other = np.float32 if dtype == np.float64 else np.float64
    g = rng.standard_normal(y.shape).astype(np.float32)
    gx = m.backward(g.astype(other))
    assert gx.dtype == dtype and gx.shape == x.shape
    if tmake is not None:
        xt = to_torch(torch, x, True)
        yt = tmake(torch)(xt)
        yt.backward(to_torch(torch, g.astype(dtype)))
        assert_close(y, yt.detach().numpy(), dtype)
        assert_close(gx, xt.grad.numpy(), dtype)
    with pytest.raises(TypeError):
        type(m)(dtype=np.float64)


def test_permute_backward_inverts():
    x = np.arange(24.0).reshape(2, 3, 4)
    m = nn.Permute(2, 0, 1)
    y = m(x)
    np.testing.assert_array_equal(y, x.transpose(2, 0, 1))
    assert y.flags.c_contiguous
    np.testing.assert_array_equal(m.backward(y), x)
    assert nn.Permute((0, -1, 1)).dims == (0, 2, 1)


def test_conv_family_in_sequential(backend, rng, torch):
    m = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(4, 4, 3), nn.AvgPool1d(2),
                      nn.Flatten(), nn.Linear(12, 3))
    tm = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool1d(2),
                             torch.nn.Conv1d(4, 4, 3), torch.nn.AvgPool1d(2), torch.nn.Flatten(), torch.nn.Linear(12, 3))
    m.load_state_dict(_sd(tm))
    x = rng.standard_normal((5, 2, 16)).astype(np.float32)
    xt = to_torch(torch, x, True)
    yt = tm(xt)
    yt.sum().backward()
    assert_close(m(x), yt.detach().numpy(), np.float32, scale=3)
    assert_close(m.backward(np.ones((5, 3), np.float32)), xt.grad.numpy(), np.float32, scale=3)
    d = nn.Sequential(nn.ConvTranspose2d(3, 4, 2, stride=2), nn.Upsample(scale_factor=2, mode="bilinear"),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
    td = torch.nn.Sequential(torch.nn.ConvTranspose2d(3, 4, 2, stride=2), torch.nn.Upsample(scale_factor=2,
                             mode="bilinear"), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    d.load_state_dict(_sd(td))
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    xt = to_torch(torch, x, True)
    yt = td(xt)
    yt.sum().backward()
    assert_close(d(x), yt.detach().numpy(), np.float32, scale=3)
    assert_close(d.backward(np.ones((2, 4), np.float32)), xt.grad.numpy(), np.float32, scale=3)


# ------------------------------------------------------------------------ refused input
@pytest.mark.parametrize("call,err,match", [
    (lambda: F.conv1d(np.ones((2, 3, 5, 5)), np.ones((2, 3, 3))), ValueError, r"input: expected a 3-D array"),
    (lambda: F.conv1d(np.ones((2, 3, 5)), np.ones((2, 3, 3, 3))), ValueError, r"weight: expected a 3-D array"),
    (lambda: F.conv1d(np.ones((2, 3, 5)), np.ones((2, 3, 3)), stride=(1, 2)), ValueError, "stride: expected an int or a 1-tuple"),
    (lambda: F.conv1d(np.ones((2, 3, 5)), np.ones((2, 3, 3)), padding="same", stride=2), ValueError, "padding: 'same' needs stride 1"),
    (lambda: F.conv1d(np.ones((2, 3, 5)), np.ones((2, 3, 3)), dilation=1.0), TypeError, "dilation: expected an int"),
    (lambda: F.conv1d(np.ones((2, 3, 5)), np.ones((2, 2, 3))), ValueError, "weight: expected shape"),
    (lambda: F.conv_transpose2d(np.ones((1, 3, 4, 4)), np.ones((2, 2, 3, 3))), ValueError, r"weight: expected shape\[0\] == C_in = 3"),
    (lambda: F.conv_transpose2d(np.ones((1, 4, 4, 4)), np.ones((4, 2, 3, 3)), stride=2, output_padding=2), ValueError,
     "output_padding: expected smaller than either stride"),
    (lambda: F.conv_transpose2d(np.ones((1, 4, 4, 4)), np.ones((4, 2, 3, 3)), groups=3), ValueError, "groups: expected a divisor of C_in=4"),
    (lambda: F.conv_transpose2d(np.ones((1, 4, 1, 1)), np.ones((4, 2, 1, 1)), padding=1), ValueError, "padding: the output would be empty"),
    (lambda: F.conv_transpose2d(np.ones((1, 4, 2, 2)), np.ones((4, 2, 1, 1)), padding="same"), ValueError, "padding: expected an int"),
    (lambda: F.conv_transpose2d(np.ones((1, 4, 2, 2)), np.ones((4, 2, 1, 1), np.float32)), TypeError, "weight: expected dtype float64"),
    (lambda: F.conv_transpose2d(np.ones((1, 4, 2, 2)), np.ones((4, 2, 1, 1)), np.ones(3)), ValueError, r"bias: expected shape \(2,\)"),
    (lambda: F.conv_transpose2d_backward(np.ones((1, 2, 3, 3)), np.ones((1, 4, 2, 2)), np.ones((4, 2, 1, 1))), ValueError,
     r"grad_out: expected shape \(1, 2, 2, 2\)"),
    (lambda: F.adaptive_avg_pool2d(np.ones((2, 3, 4)), 2), ValueError, "input: expected a 4-D array"),
    (lambda: F.adaptive_avg_pool2d(np.ones((1, 1, 4, 4)), 0), ValueError, "output_size: expected an int >= 1"),
    (lambda: F.adaptive_avg_pool2d(np.ones((1, 1, 4, 4)), (1, 2, 3)), ValueError, "output_size: expected an int or a pair"),
    (lambda: F.adaptive_avg_pool2d_backward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 4, 4)), 3), ValueError,
     r"grad_out: expected shape \(1, 1, 3, 3\)"),
    (lambda: F.max_pool1d(np.ones((2, 3, 4, 4)), 2), ValueError, r"input: expected a 2 or 3-D array"),
    (lambda: F.max_pool1d(np.ones((2, 3, 4)), 2, padding=2), ValueError, "padding: expected at most half"),
    (lambda: F.avg_pool1d(np.ones((2, 3, 4)), (2, 2)), ValueError, "kernel_size: expected an int or a 1-tuple"),
    (lambda: F.avg_pool1d_backward(np.ones((2, 3, 4)), np.ones((2, 3, 4)), 2), ValueError, r"grad_out: expected shape"),
    (lambda: F.dropout2d(np.ones((2, 3)), 0.5), ValueError, "x: expected a 3 or 4-D array"),
    (lambda: F.dropout2d(np.ones((2, 3, 4)), 1.5), ValueError, "p: expected a probability"),
    (lambda: F.dropout2d_backward(np.ones((2, 3, 4)), np.ones((2, 3, 4))), ValueError, r"mask: expected shape \(2, 3, 1\)"),
    (lambda: F.interpolate(np.ones((1, 1, 2, 2)), scale_factor=2, mode="bicubic"), ValueError, "mode: expected one of"),
    (lambda: F.interpolate(np.ones((1, 1, 2, 2)), scale_factor=2, align_corners=True), ValueError, "align_corners: can only be set"),
    (lambda: F.interpolate(np.ones((1, 1, 2, 2)), size=3, scale_factor=2), ValueError, "expected exactly one of them, got both"),
    (lambda: F.interpolate(np.ones((1, 1, 2, 2))), ValueError, "expected exactly one of them, got neither"),
    (lambda: F.interpolate(np.ones((1, 1, 2, 2)), scale_factor=0.1), ValueError, "scale_factor: 0.1 gives an empty output"),
    (lambda: F.interpolate(np.ones((1, 1, 2, 2)), scale_factor=-1.0), ValueError, "scale_factor: expected positive"),
    (lambda: F.interpolate(np.ones((1, 1, 2, 2)), size=(2.5, 3)), TypeError, "size: expected an int"),
    (lambda: F.interpolate(np.ones((1, 2, 2)), size=2), ValueError, "input: expected a 4-D array"),
    (lambda: F.interpolate_backward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), size=4), ValueError, r"grad_out: expected shape"),
    (lambda: nn.Permute(0, 0, 1), ValueError, "dims: expected a permutation"),
    (lambda: nn.Permute(0, 2, 1)(np.ones((2, 3))), ValueError, "input: expected a 3-D array for Permute"),
    (lambda: nn.Upsample(scale_factor=2, mode="area"), ValueError, "mode: expected one of"),
    (lambda: nn.Conv1d(3, 4, 3, groups=2), ValueError, "groups: expected a divisor"),
    (lambda: nn.ConvTranspose2d(4, 4, 3, stride=2, output_padding=3), ValueError, "output_padding: expected smaller"),
    (lambda: nn.AdaptiveAvgPool2d(-1), ValueError, "output_size: expected an int >= 1"),
])
def test_refused_inputs(call, err, match):
    with pytest.raises(err, match=match):
        call()
