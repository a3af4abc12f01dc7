"""Activations (GELU, SiLU, LeakyReLU, ELU, Softplus, Hardswish, PReLU, LogSoftmax, Identity):
every backend against torch (forward and input gradient, PReLU's weight gradient), against
the reference, float64 central differences, NaN and extreme values, layouts, modules, bad input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnn
from fastnn import functional as F
from fastnn import nn
from fnn_testing import assert_close, central_diff, noncontiguous, readonly, to_torch

# name -> (fastnn forward, backward, options, torch function of (tensor, **options))
ACTS = {
    "gelu": (F.gelu, F.gelu_backward, {}, lambda t, tf: tf.gelu(t)),
    "gelu_tanh": (F.gelu, F.gelu_backward, {"approximate": "tanh"}, lambda t, tf: tf.gelu(t, approximate="tanh")),
    "silu": (F.silu, F.silu_backward, {}, lambda t, tf: tf.silu(t)),
    "leaky_relu": (F.leaky_relu, F.leaky_relu_backward, {}, lambda t, tf: tf.leaky_relu(t)),
    "leaky_relu_0.3": (F.leaky_relu, F.leaky_relu_backward, {"negative_slope": 0.3},
                       lambda t, tf: tf.leaky_relu(t, 0.3)),
    "elu": (F.elu, F.elu_backward, {}, lambda t, tf: tf.elu(t)),
    "elu_2.5": (F.elu, F.elu_backward, {"alpha": 2.5}, lambda t, tf: tf.elu(t, 2.5)),
    "softplus": (F.softplus, F.softplus_backward, {}, lambda t, tf: tf.softplus(t)),
    "softplus_b2_t3": (F.softplus, F.softplus_backward, {"beta": 2.0, "threshold": 3.0},
                       lambda t, tf: tf.softplus(t, 2.0, 3.0)),
    "softplus_neg_beta": (F.softplus, F.softplus_backward, {"beta": -0.5}, lambda t, tf: tf.softplus(t, -0.5)),
    "hardswish": (F.hardswish, F.hardswish_backward, {}, lambda t, tf: tf.hardswish(t)),
}
NAMES = sorted(ACTS)


def ref(fn, *args, **kw):
    with fastnn.use_backend("reference"):
        return fn(*args, **kw)


def _inputs(rng, dtype, n=997):
    """Random values plus the kinks, thresholds and extremes of every activation."""
    special = [0.0, -0.0, -3.0, 3.0, 1e-8, -1e-8, 10.0, -10.0, 20.0, 19.999, 20.001, 1.5, 1.5001, 30.0, -30.0,
               50.0, -50.0, 100.0, -100.0]
    x = np.concatenate([rng.standard_normal(n) * 4, special]).astype(dtype)
    return x, rng.standard_normal(x.shape).astype(dtype)


def _torch_ref(torch, name, x, g):
    tfn = ACTS[name][3]
    xt = to_torch(torch, x, True)
    yt = tfn(xt, torch.nn.functional)
    yt.backward(to_torch(torch, g))
    return yt.detach().numpy(), xt.grad.numpy()


# ------------------------------------------------------------------ every backend vs torch
@pytest.mark.parametrize("name", NAMES)
def test_activation_matches_torch(name, backend, dtype, rng, torch):
    fwd, bwd, opts, _ = ACTS[name]
    x, g = _inputs(rng, dtype)
    y_t, gx_t = _torch_ref(torch, name, x, g)
    y = fwd(x, **opts)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, y_t, dtype, err_msg=name)
    assert_close(bwd(g, x, **opts), gx_t, dtype, err_msg=name)


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_infinities_follow_torch(name, backend, torch):
    fwd, bwd, opts, _ = ACTS[name]
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0, 2.0])
    g = np.ones_like(x)
    y_t, gx_t = _torch_ref(torch, name, x, g)
    with np.errstate(all="ignore"):
        y, gx = fwd(x, **opts), bwd(g, x, **opts)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_t), err_msg=name)
    np.testing.assert_array_equal(np.isnan(gx[:1]), np.isnan(gx_t[:1]), err_msg=name)  # NaN input's gradient
    finite = np.isfinite(x)
    assert_close(y[finite], y_t[finite], err_msg=name)
    assert_close(gx[finite], gx_t[finite], err_msg=name)


@given(shape=st.tuples(st.integers(1, 7), st.integers(1, 33)), scale=st.sampled_from([0.1, 3.0, 30.0]),
       seed=st.integers(0, 2**16))
def test_backends_match_reference(shape, scale, seed):
    r = np.random.default_rng(seed)
    for dt in (np.float32, np.float64):
        x = (r.standard_normal(shape) * scale).astype(dt)
        g = r.standard_normal(shape).astype(dt)
        for name in NAMES:
            fwd, bwd, opts, _ = ACTS[name]
            y_ref, gx_ref = ref(fwd, x, **opts), ref(bwd, g, x, **opts)
            for be in fastnn.backends():
                with fastnn.use_backend(be):
                    assert_close(fwd(x, **opts), y_ref, dt, err_msg=f"{name} {be}")
                    assert_close(bwd(g, x, **opts), gx_ref, dt, err_msg=f"{name} {be}")


def test_large_arrays_take_the_parallel_paths(fast_backend, dtype, rng):
    x = (rng.standard_normal((300, 257)) * 5).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    for name in NAMES:
        fwd, bwd, opts, _ = ACTS[name]
        first = fwd(x, **opts), bwd(g, x, **opts)
        assert_close(first[0], ref(fwd, x, **opts), dtype, err_msg=name)
        assert_close(first[1], ref(bwd, g, x, **opts), dtype, err_msg=name)
        for _ in range(3):  # bitwise repeatable
            np.testing.assert_array_equal(fwd(x, **opts), first[0])
            np.testing.assert_array_equal(bwd(g, x, **opts), first[1])


def test_float32_gelu_accuracy_on_a_dense_grid(fast_backend):
    # the Cython float kernels use an inline rational erf (3.6e-7 max abs error): check every
    # 1e-4 step of [-8, 8] against the float64 reference
    x = np.linspace(-8, 8, 160001).astype(np.float32)
    g = np.ones_like(x)
    x64 = x.astype(np.float64)
    for fwd, want in ((F.gelu(x), ref(F.gelu, x64)), (F.gelu_backward(g, x), ref(F.gelu_backward, g.astype(np.float64), x64))):
        err = np.abs(fwd.astype(np.float64) - want) / (1 + np.abs(x64))
        assert err.max() < 1e-6


def test_backwards_match_central_differences(backend, rng):
    x = rng.standard_normal(40) * 3
    x = x[np.abs(x) > 0.05]  # away from the kinks at 0
    x = x[np.abs(np.abs(x) - 3) > 0.05]  # and hardswish's at +-3
    g = rng.standard_normal(x.shape)
    for name in NAMES:
        fwd, bwd, opts, _ = ACTS[name]
        want = central_diff(lambda a: np.sum(fwd(a, **opts) * g), x)
        assert_close(bwd(g, x, **opts), want, scale=1e4, err_msg=name)
    w = np.array([0.3, -0.7, 1.2])
    x3 = rng.standard_normal((2, 3, 4))
    x3[np.abs(x3) < 0.05] = 0.5
    g3 = rng.standard_normal(x3.shape)
    gx, gw = F.prelu_backward(g3, x3, w)
    assert_close(gx, central_diff(lambda a: np.sum(F.prelu(a, w) * g3), x3), scale=1e4)
    assert_close(gw, central_diff(lambda a: np.sum(F.prelu(x3, a) * g3), w), scale=1e4)
    gx, gw = F.prelu_backward(g3, x3, w[:1])
    assert_close(gw, central_diff(lambda a: np.sum(F.prelu(x3, a) * g3), w[:1]), scale=1e4)


def test_noncontiguous_and_readonly_inputs(backend, dtype, rng):
    x = (rng.standard_normal((6, 9)) * 3).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    w = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], dtype)
    for name in NAMES:
        fwd, bwd, opts, _ = ACTS[name]
        want = fwd(x, **opts), bwd(g, x, **opts)
        for make in (noncontiguous, readonly, np.asfortranarray):
            xs, gs = make(x), make(g)
            before = xs.copy()
            assert_close(fwd(xs, **opts), want[0], dtype)
            assert_close(bwd(gs, xs, **opts), want[1], dtype)
            np.testing.assert_array_equal(xs, before)
    xt = np.ascontiguousarray(x.T).T  # (6, 9) Fortran view, channels on dim 1
    gt = np.asfortranarray(g)
    for a, b in zip(F.prelu_backward(gt, xt, w), F.prelu_backward(g, x, w)):
        assert_close(a, b, dtype)
    assert_close(F.prelu(noncontiguous(x), readonly(w)), F.prelu(x, w), dtype)


def test_empty_arrays(backend, dtype):
    z = np.zeros((0, 3), dtype)
    for name in NAMES:
        fwd, bwd, opts, _ = ACTS[name]
        assert fwd(z, **opts).shape == (0, 3) and bwd(z, z, **opts).shape == (0, 3)
    gx, gw = F.prelu_backward(z, z, np.ones(3, dtype))
    assert gx.shape == (0, 3) and np.all(gw == 0)


# ------------------------------------------------------------------ PReLU
@pytest.mark.parametrize("shape,num", [((4, 5, 3, 2), 5), ((4, 5, 3, 2), 1), ((7, 3), 3), ((11,), 1), ((1, 1, 1, 1), 1),
                                       ((2, 13, 7), 13)], ids=["4d-per-ch", "4d-one", "2d", "1d", "single", "3d"])
def test_prelu_matches_torch(shape, num, backend, dtype, rng, torch):
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(num).astype(dtype)
    xt, wt = to_torch(torch, x, True), to_torch(torch, w, True)
    yt = torch.nn.functional.prelu(xt, wt)
    yt.backward(to_torch(torch, g))
    assert_close(F.prelu(x, w), yt.detach().numpy(), dtype)
    gx, gw = F.prelu_backward(g, x, w)
    assert gw.shape == w.shape and gw.dtype == dtype
    assert_close(gx, xt.grad.numpy(), dtype)
    assert_close(gw, wt.grad.numpy(), dtype, scale=10)


def test_prelu_module_matches_torch_and_state_dict(backend, dtype, rng, torch):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    for num in (1, 4):
        tm = torch.nn.PReLU(num, init=0.1).to(tdt)
        with torch.no_grad():
            tm.weight.copy_(torch.from_numpy(rng.standard_normal(num)))
        m = nn.PReLU(num, dtype=dtype)
        assert m.weight.shape == (num,) and np.all(m.weight.data == dtype(0.25))
        m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
        assert list(m.state_dict()) == ["weight"]
        x = rng.standard_normal((3, 4, 5, 5)).astype(dtype)
        g = rng.standard_normal(x.shape).astype(dtype)
        xt = to_torch(torch, x, True)
        yt = tm(xt)
        yt.backward(to_torch(torch, g))
        assert_close(m(x), yt.detach().numpy(), dtype)
        assert_close(m.backward(g), xt.grad.numpy(), dtype)
        assert_close(m.weight.grad, tm.weight.grad.numpy(), dtype, scale=10)
        tm2 = torch.nn.PReLU(num).to(tdt)
        tm2.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
        assert_close(tm2.weight.detach().numpy(), tm.weight.detach().numpy(), dtype)


# ------------------------------------------------------------------ modules
MODULES = [
    (lambda: nn.GELU(), lambda t: t.nn.GELU()),
    (lambda: nn.GELU("tanh"), lambda t: t.nn.GELU("tanh")),
    (lambda: nn.SiLU(), lambda t: t.nn.SiLU()),
    (lambda: nn.LeakyReLU(0.2), lambda t: t.nn.LeakyReLU(0.2)),
    (lambda: nn.ELU(0.7), lambda t: t.nn.ELU(0.7)),
    (lambda: nn.Softplus(1.5, 4.0), lambda t: t.nn.Softplus(1.5, 4.0)),
    (lambda: nn.Hardswish(), lambda t: t.nn.Hardswish()),
    (lambda: nn.LogSoftmax(dim=1), lambda t: t.nn.LogSoftmax(dim=1)),
    (lambda: nn.Identity(3, x=1), lambda t: t.nn.Identity(3, x=1)),
]


@pytest.mark.parametrize("i", range(len(MODULES)))
@pytest.mark.parametrize("train", [True, False])
def test_parameter_free_modules_match_torch_and_keep_dtype(i, train, dtype, rng, torch):
    make, tmake = MODULES[i]
    m, tm = make().train(train), tmake(torch)
    assert m.dtype is None and m.parameters() == [] and m.state_dict() == {}
    other = np.float32 if dtype == np.float64 else np.float64
    x = (rng.standard_normal((2, 3, 4, 5)) * 3).astype(dtype)
    g = rng.standard_normal(x.shape).astype(np.float32).astype(dtype)  # exact in both dtypes
    xt = to_torch(torch, x, True)
    yt = tm(xt)
    yt.backward(to_torch(torch, g))
    y = m(x)
    assert y.dtype == dtype
    assert_close(y, yt.detach().numpy(), dtype)
    gx = m.backward(g.astype(other))
    assert gx.dtype == dtype
    assert_close(gx, xt.grad.numpy(), dtype, scale=10)
    if not isinstance(m, nn.Identity):  # Identity accepts any arguments, like torch's
        with pytest.raises(TypeError):
            type(m)(dtype=np.float64)


def test_activations_in_sequential_match_torch(backend, rng, torch):
    m = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 8), nn.PReLU(), nn.Linear(8, 8), nn.SiLU(),
                      nn.Linear(8, 8), nn.Hardswish(), nn.Identity(), nn.Linear(8, 4), nn.LogSoftmax(dim=1))
    tm = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 8), torch.nn.PReLU(),
                             torch.nn.Linear(8, 8), torch.nn.SiLU(), torch.nn.Linear(8, 8), torch.nn.Hardswish(),
                             torch.nn.Identity(), torch.nn.Linear(8, 4), torch.nn.LogSoftmax(dim=1))
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = rng.standard_normal((5, 6)).astype(np.float32)
    g = rng.standard_normal((5, 4)).astype(np.float32)
    xt = to_torch(torch, x, True)
    yt = tm(xt)
    yt.backward(to_torch(torch, g))
    assert_close(m(x), yt.detach().numpy(), np.float32, scale=3)
    assert_close(m.backward(g), xt.grad.numpy(), np.float32, scale=10)
    for name, p in m.named_parameters():
        assert_close(p.grad, dict(tm.named_parameters())[name].grad.numpy(), np.float32, scale=10, err_msg=name)


# ------------------------------------------------------------------ refused inputs
def test_bad_inputs_name_the_argument():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="approximate: expected one of"):
        F.gelu(x, approximate="erf")
    with pytest.raises(ValueError, match="approximate: expected one of"):
        nn.GELU("fast")
    with pytest.raises(TypeError, match="negative_slope: expected a float"):
        F.leaky_relu(x, "0.1")
    with pytest.raises(TypeError, match="alpha: expected a float"):
        nn.ELU(alpha=None)
    with pytest.raises(ValueError, match="beta: expected a non-zero float"):
        F.softplus(x, beta=0)
    with pytest.raises(TypeError, match="x: expected a float32 or float64"):
        F.silu(np.ones(3, int))
    with pytest.raises(ValueError, match="grad_out: expected the shape of x"):
        F.hardswish_backward(np.ones(4), np.ones(3))
    with pytest.raises(TypeError, match="grad_out: expected dtype float64"):
        F.gelu_backward(np.ones(3, np.float32), np.ones(3))
    with pytest.raises(ValueError, match=r"weight: expected 1 or 3 slopes"):
        F.prelu(x, np.ones(2))
    with pytest.raises(ValueError, match=r"weight: expected a 1-D array"):
        F.prelu(x, np.ones((3, 1)))
    with pytest.raises(TypeError, match="weight: expected dtype float64"):
        F.prelu(x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="num_parameters: expected an int >= 1"):
        nn.PReLU(0)
    with pytest.raises(ValueError, match=r"weight: expected 1 or 3 slopes"):
        nn.PReLU(2, dtype=np.float64)(x)
