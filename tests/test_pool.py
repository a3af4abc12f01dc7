"""max_pool2d / avg_pool2d: every backend against torch (forward and backward), ties to the
first maximal element, NaN, odd inputs, bad input, the MaxPool2d/AvgPool2d modules."""
import numpy as np
import pytest

import fastnn
from fastnn import functional as F
from fastnn import nn

from fnn_testing import assert_close, noncontiguous, readonly, to_torch

# (N, C, H, W, kernel, stride, padding, ceil_mode)
CASES = [
    (2, 3, 8, 8, 2, None, 0, False),
    (1, 2, 7, 5, 3, 2, 1, False),
    (2, 1, 7, 5, 3, 2, 1, True),
    (1, 3, 9, 11, (3, 2), (2, 3), (1, 1), True),
    (3, 2, 5, 5, 3, 1, 1, False),  # overlapping windows
    (1, 1, 1, 1, 1, None, 0, False),
    (2, 2, 6, 7, 4, 3, 2, True),
]
IDS = [f"case{i}" for i in range(len(CASES))]


def _torch_pool(torch, kind, x, g, opts):
    xt = to_torch(torch, x.astype(np.float64), True)
    fn = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    y = fn(xt, **opts)
    y.backward(torch.from_numpy(g.astype(np.float64)))
    return y.detach().numpy(), xt.grad.numpy()


def _opts(case):
    _, _, _, _, k, s, p, ceil = case
    return dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_max_pool_matches_torch(case, backend, dtype, rng, torch):
    x = rng.standard_normal(case[:4]).astype(dtype)
    opts = _opts(case)
    y = F.max_pool2d(x, **opts)
    g = rng.standard_normal(y.shape).astype(dtype)
    y_t, gx_t = _torch_pool(torch, "max", x, g, opts)
    assert y.dtype == dtype
    assert_close(y, y_t, dtype)
    assert_close(F.max_pool2d_backward(g, x, **opts), gx_t, dtype)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_avg_pool_matches_torch(case, count_include_pad, backend, dtype, rng, torch):
    x = rng.standard_normal(case[:4]).astype(dtype)
    opts = dict(_opts(case), count_include_pad=count_include_pad)
    y = F.avg_pool2d(x, **opts)
    g = rng.standard_normal(y.shape).astype(dtype)
    y_t, gx_t = _torch_pool(torch, "avg", x, g, opts)
    assert y.dtype == dtype
    assert_close(y, y_t, dtype)
    assert_close(F.avg_pool2d_backward(g, x, **opts), gx_t, dtype)


def test_parallel_pool_repeatable(fast_backend):
    # regression: the Cython average-pool kernels once shared the window bounds between
    # OpenMP threads (set through pointers, so not made private)
    x = np.random.default_rng(2).standard_normal((8, 16, 16, 16))
    with fastnn.use_backend("reference"):
        ref = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    for _ in range(100):
        assert_close(F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), ref)


def test_max_pool_ties_go_to_first_max(backend, torch):
    # constant and two-valued inputs: every window has ties
    x = np.ones((1, 2, 5, 5))
    x[0, 1, ::2, ::2] = 2.0
    opts = dict(kernel_size=3, stride=1, padding=1)
    g = np.arange(2 * 25, dtype=np.float64).reshape(1, 2, 5, 5) + 1
    _, gx_t = _torch_pool(torch, "max", x, g, opts)
    np.testing.assert_array_equal(F.max_pool2d_backward(g, x, **opts), gx_t)
    # and explicitly: a 2x2 window of equal values sends everything to its top-left element
    gx = F.max_pool2d_backward(np.ones((1, 1, 1, 1)), np.zeros((1, 1, 2, 2)), 2)
    np.testing.assert_array_equal(gx[0, 0], [[1, 0], [0, 0]])


def test_max_pool_nan_and_inf(backend):
    x = np.zeros((2, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    x[1, 0] = -np.inf
    y = F.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and np.isfinite(y[0, 0].ravel()[1:]).all()
    assert (y[1] == -np.inf).all()
    gx = F.max_pool2d_backward(np.ones_like(y), x, 2)
    assert gx[0, 0, 1, 1] == 1 and gx[0, 0, :2, :2].sum() == 1  # the NaN took the gradient
    assert gx[1, 0, ::2, ::2].sum() == 4  # all -inf: the first element of each window


def test_noncontiguous_readonly(backend, rng):
    x = rng.standard_normal((2, 3, 7, 6))
    g = rng.standard_normal((2, 3, 3, 3))
    with fastnn.use_backend("reference"):
        ref = (F.max_pool2d(x, 2), F.max_pool2d_backward(g, x, 2), F.avg_pool2d(x, 2), F.avg_pool2d_backward(g, x, 2))
    for xi, gi in ((noncontiguous(x), noncontiguous(g)), (readonly(x), readonly(g))):
        got = (F.max_pool2d(xi, 2), F.max_pool2d_backward(gi, xi, 2), F.avg_pool2d(xi, 2), F.avg_pool2d_backward(gi, xi, 2))
        for a, e in zip(got, ref):
            assert_close(a, e)
    np.testing.assert_array_equal(readonly(x), x)


def test_empty_batch(backend):
    x = np.zeros((0, 2, 4, 4), np.float32)
    assert F.max_pool2d(x, 2).shape == (0, 2, 2, 2)
    assert F.avg_pool2d_backward(np.zeros((0, 2, 2, 2), np.float32), x, 2).shape == x.shape


@pytest.mark.parametrize(
    "x, kwargs, err, match",
    [
        (np.zeros((2, 4, 4)), {}, ValueError, "input"),
        (np.zeros((1, 2, 4, 4), np.int32), {}, TypeError, "input"),
        (np.zeros((1, 2, 4, 4), np.complex64), {}, TypeError, "input"),
        (np.zeros((1, 2, 4, 4)), dict(kernel_size=5), ValueError, "kernel_size"),
        (np.zeros((1, 2, 4, 4)), dict(kernel_size=0), ValueError, "kernel_size"),
        (np.zeros((1, 2, 4, 4)), dict(stride=0), ValueError, "stride"),
        (np.zeros((1, 2, 4, 4)), dict(padding=2), ValueError, "padding"),  # more than half the kernel
        (np.zeros((1, 2, 4, 4)), dict(padding=-1), ValueError, "padding"),
        (np.zeros((1, 2, 4, 4)), dict(ceil_mode=1), TypeError, "ceil_mode"),
        (np.zeros((1, 2, 4, 4)), dict(kernel_size=(2, 2, 2)), ValueError, "kernel_size"),
    ],
)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_refuses(kind, x, kwargs, err, match):
    kwargs = dict(dict(kernel_size=2), **kwargs)
    fn, grad = (F.max_pool2d, F.max_pool2d_backward) if kind == "max" else (F.avg_pool2d, F.avg_pool2d_backward)
    with pytest.raises(err, match=match):
        fn(x, **kwargs)
    with pytest.raises(err, match=match):
        grad(np.zeros((1, 2, 2, 2)), x, **kwargs)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_backward_refuses_grad_out(kind):
    grad = F.max_pool2d_backward if kind == "max" else F.avg_pool2d_backward
    x = np.zeros((1, 2, 4, 4))
    for g, err in ((np.zeros((1, 2, 3, 2)), ValueError), (np.zeros((1, 2, 2, 2), np.float32), TypeError)):
        with pytest.raises(err, match="grad_out"):
            grad(g, x, 2)
    with pytest.raises(TypeError, match="count_include_pad"):
        F.avg_pool2d(x, 2, count_include_pad="yes")


def test_modules_match_torch(torch, rng, dtype):
    x = rng.standard_normal((2, 3, 7, 7)).astype(dtype)
    for m, tm in (
        (nn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)),
        (nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False),
         torch.nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)),
    ):
        y = m(x)
        assert y.dtype == dtype and m.state_dict() == {}
        xt = to_torch(torch, x, True)
        yt = tm(xt)
        g = rng.standard_normal(y.shape)
        yt.backward(torch.from_numpy(g))
        assert_close(y, yt.detach().numpy(), dtype)
        assert_close(m.backward(g.astype(dtype)), xt.grad.numpy(), dtype)


@pytest.mark.parametrize("hw", [(6, 8), (7, 9), (2, 2), (3, 5)])
def test_max_pool_2x2_fast_path_ties_nans_odd_sizes(backend, dtype, hw, rng):
    """The compiled 2x2 / stride 2 path: ties go to the first maximal element (row-major), a NaN
    wins, and rows/columns no window covers get no gradient; same values as the reference."""
    x = rng.integers(-2, 3, (2, 3) + hw).astype(dtype)  # many ties
    x[0, 0, 0, 1] = np.nan
    x[1, 2, -1, -1] = np.nan
    g = rng.standard_normal((2, 3, hw[0] // 2, hw[1] // 2)).astype(dtype)
    with fastnn.use_backend("reference"):
        y_ref, gx_ref = F.max_pool2d(x, 2), F.max_pool2d_backward(g, x, 2)
    np.testing.assert_array_equal(F.max_pool2d(x, 2), y_ref)
    np.testing.assert_array_equal(F.max_pool2d_backward(g, x, 2), gx_ref)
