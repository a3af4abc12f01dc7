"""Dense functional ops: every backend vs the reference kernel, the reference vs torch and
float64 central differences, odd shapes, layouts, stability and refused inputs."""
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnn
from fastnn import functional as F
from fnn_testing import assert_close, central_diff, noncontiguous, readonly, to_torch

UNARY = {  # name -> (forward, backward, backward takes output y?)
    "relu": (F.relu, F.relu_backward),
    "sigmoid": (F.sigmoid, F.sigmoid_backward),
    "tanh": (F.tanh, F.tanh_backward),
}
ROWS = {"softmax": (F.softmax, F.softmax_backward), "log_softmax": (F.log_softmax, F.log_softmax_backward)}


def ref(fn, *args, **kw):
    with fastnn.use_backend("reference"):
        return fn(*args, **kw)


shapes = st.tuples(st.integers(1, 9), st.integers(1, 13))


# ---------------------------------------------------------------- backends agree with reference
@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_unary_backends_match_reference(name, shape, seed):
    fwd, bwd = UNARY[name]
    r = np.random.default_rng(seed)
    for dt in (np.float32, np.float64):
        x = (r.standard_normal(shape) * 5).astype(dt)
        g = r.standard_normal(shape).astype(dt)
        y_ref = ref(fwd, x)
        gx_ref = ref(bwd, g, y_ref)
        for b in fastnn.backends():
            with fastnn.use_backend(b):
                y = fwd(x)
                assert y.dtype == dt
                assert_close(y, y_ref, dt, err_msg=b)
                assert_close(bwd(g, y_ref), gx_ref, dt, err_msg=b)


@pytest.mark.parametrize("name", sorted(ROWS))
@given(shape=st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 11)), axis=st.integers(-3, 2),
       seed=st.integers(0, 2**16))
def test_row_ops_backends_match_reference(name, shape, axis, seed):
    fwd, bwd = ROWS[name]
    r = np.random.default_rng(seed)
    for dt in (np.float32, np.float64):
        x = (r.standard_normal(shape) * 4).astype(dt)
        g = r.standard_normal(shape).astype(dt)
        y_ref = ref(fwd, x, axis=axis)
        gx_ref = ref(bwd, g, y_ref, axis=axis)
        for b in fastnn.backends():
            with fastnn.use_backend(b):
                assert_close(fwd(x, axis=axis), y_ref, dt, err_msg=b)
                assert_close(bwd(g, y_ref, axis=axis), gx_ref, dt, err_msg=b)


@given(n=st.integers(1, 17), i=st.integers(1, 19), o=st.integers(1, 11), lead=st.integers(0, 1),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_backends_match_reference(n, i, o, lead, bias, seed):
    r = np.random.default_rng(seed)
    for dt in (np.float32, np.float64):
        x = r.standard_normal((2,) * lead + (n, i)).astype(dt)
        w = r.standard_normal((o, i)).astype(dt)
        b = r.standard_normal(o).astype(dt) if bias else None
        g = r.standard_normal((2,) * lead + (n, o)).astype(dt)
        y_ref = ref(F.linear, x, w, b)
        grads_ref = ref(F.linear_backward, g, x, w)
        for be in fastnn.backends():
            with fastnn.use_backend(be):
                assert_close(F.linear(x, w, b), y_ref, dt, scale=10, err_msg=be)
                for got, want in zip(F.linear_backward(g, x, w), grads_ref):
                    assert_close(got, want, dt, scale=10, err_msg=be)


@given(n=st.integers(1, 23), c=st.integers(1, 17), seed=st.integers(0, 2**16))
def test_losses_backends_match_reference(n, c, seed):
    r = np.random.default_rng(seed)
    for dt in (np.float32, np.float64):
        logits = (r.standard_normal((n, c)) * 3).astype(dt)
        t = r.integers(0, c, n)
        y, tt = r.standard_normal((n, c)).astype(dt), r.standard_normal((n, c)).astype(dt)
        want = {red: ref(F.cross_entropy, logits, t, red) for red in ("mean", "sum", "none")}
        gwant = {red: ref(F.cross_entropy_backward, logits, t, red) for red in ("mean", "sum")}
        mwant, mgwant = ref(F.mse_loss, y, tt), ref(F.mse_loss_backward, y, tt)
        for be in fastnn.backends():
            with fastnn.use_backend(be):
                for red in want:
                    got = F.cross_entropy(logits, t, red)
                    assert got.dtype == dt
                    assert_close(got, want[red], dt, err_msg=f"{be} {red}")
                for red in gwant:
                    assert_close(F.cross_entropy_backward(logits, t, red), gwant[red], dt, err_msg=be)
                assert_close(F.mse_loss(y, tt), mwant, dt, err_msg=be)
                assert_close(F.mse_loss_backward(y, tt), mgwant, dt, err_msg=be)


def test_large_arrays_take_the_parallel_paths(fast_backend, dtype, rng):
    # big enough for the compiled kernels' multi-threaded branches and auto's switch points
    x = (rng.standard_normal((300, 257)) * 3).astype(dtype)
    t = rng.integers(0, 257, 300)
    g = rng.standard_normal(x.shape).astype(dtype)
    for name, (fwd, bwd) in {**UNARY, **ROWS}.items():
        y = fwd(x)
        assert_close(y, ref(fwd, x), dtype, err_msg=name)
        assert_close(bwd(g, y), ref(bwd, g, y), dtype, err_msg=name)
    assert_close(F.cross_entropy(x, t), ref(F.cross_entropy, x, t), dtype)
    assert_close(F.cross_entropy_backward(x, t), ref(F.cross_entropy_backward, x, t), dtype)
    assert_close(F.mse_loss(x, g), ref(F.mse_loss, x, g), dtype)
    w = rng.standard_normal((129, 257)).astype(dtype)
    bias = rng.standard_normal(129).astype(dtype)
    assert_close(F.linear(x, w, bias), ref(F.linear, x, w, bias), dtype, scale=10)
    gy = rng.standard_normal((300, 129)).astype(dtype)
    for got, want in zip(F.linear_backward(gy, x, w), ref(F.linear_backward, gy, x, w)):
        assert_close(got, want, dtype, scale=10)


# ---------------------------------------------------------------- reference vs torch
def test_reference_matches_torch(torch, dtype, rng):
    tf = torch.nn.functional
    x = (rng.standard_normal((7, 13)) * 4).astype(dtype)
    g = rng.standard_normal((7, 13)).astype(dtype)
    w = rng.standard_normal((5, 13)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    gy = rng.standard_normal((7, 5)).astype(dtype)
    t = rng.integers(0, 13, 7)
    with fastnn.use_backend("reference"):
        for name, tfn in (("relu", torch.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                          ("softmax", lambda a: torch.softmax(a, -1)),
                          ("log_softmax", lambda a: torch.log_softmax(a, -1))):
            fwd, bwd = {**UNARY, **ROWS}[name]
            xt = to_torch(torch, x, True)
            yt = tfn(xt)
            yt.backward(to_torch(torch, g))
            y = fwd(x)
            assert_close(y, yt.detach().numpy(), dtype, err_msg=name)
            assert_close(bwd(g, y), xt.grad.numpy(), dtype, err_msg=name)
        xt, wt, bt = (to_torch(torch, a, True) for a in (x, w, b))
        yt = tf.linear(xt, wt, bt)
        yt.backward(to_torch(torch, gy))
        assert_close(F.linear(x, w, b), yt.detach().numpy(), dtype)
        for got, want in zip(F.linear_backward(gy, x, w), (xt.grad, wt.grad, bt.grad)):
            assert_close(got, want.numpy(), dtype)
        for red in ("mean", "sum"):
            xt = to_torch(torch, x, True)
            lt = tf.cross_entropy(xt, torch.from_numpy(t), reduction=red)
            lt.backward()
            assert_close(F.cross_entropy(x, t, red), lt.detach().numpy(), dtype)
            assert_close(F.cross_entropy_backward(x, t, red), xt.grad.numpy(), dtype)
            xt = to_torch(torch, x, True)
            lt = tf.mse_loss(xt, to_torch(torch, g), reduction=red)
            lt.backward()
            assert_close(F.mse_loss(x, g, red), lt.detach().numpy(), dtype)
            assert_close(F.mse_loss_backward(x, g, red), xt.grad.numpy(), dtype)
        lt = tf.cross_entropy(to_torch(torch, x), torch.from_numpy(t), reduction="none")
        assert_close(F.cross_entropy(x, t, "none"), lt.numpy(), dtype)


# ---------------------------------------------------------------- finite differences (float64)
def test_backwards_match_central_differences(rng):
    x = rng.standard_normal((3, 5))
    g = rng.standard_normal((3, 5))
    t = rng.integers(0, 5, 3)
    with fastnn.use_backend("reference"):
        for name, (fwd, bwd) in {**UNARY, **ROWS}.items():
            x_ = x + 0.1 * np.sign(x) if name == "relu" else x  # keep away from the kink
            want = central_diff(lambda a: np.sum(fwd(a) * g), x_)
            assert_close(bwd(g, fwd(x_)), want, scale=1e4, err_msg=name)
        w = rng.standard_normal((4, 5))
        b = rng.standard_normal(4)
        gy = rng.standard_normal((3, 4))
        gx, gw, gb = F.linear_backward(gy, x, w)
        assert_close(gx, central_diff(lambda a: np.sum(F.linear(a, w, b) * gy), x), scale=1e4)
        assert_close(gw, central_diff(lambda a: np.sum(F.linear(x, a, b) * gy), w), scale=1e4)
        assert_close(gb, central_diff(lambda a: np.sum(F.linear(x, w, a) * gy), b), scale=1e4)
        assert_close(F.cross_entropy_backward(x, t), central_diff(lambda a: F.cross_entropy(a, t), x), scale=1e4)
        assert_close(F.mse_loss_backward(x, g), central_diff(lambda a: F.mse_loss(a, g), x), scale=1e4)


# ---------------------------------------------------------------- stability, special values
def test_numerical_stability(backend, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = F.sigmoid(np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=dtype))
        np.testing.assert_array_equal(s[[0, 2, 4]], np.array([0, 0.5, 1], dtype=dtype))
        logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0]], dtype=dtype)
        loss = F.cross_entropy(logits, [2, 1])
        assert np.isfinite(loss) and abs(float(loss) - 1e4) < 1
        assert np.all(np.isfinite(F.cross_entropy_backward(logits, [2, 1])))
        assert np.all(np.isfinite(F.log_softmax(logits)))
        assert_close(F.softmax(logits), np.array([[1, 0, 0], [0, 1, 0]], dtype=dtype), dtype)


def test_nan_propagates_like_torch(backend):
    x = np.array([np.nan, -1.0, 2.0])
    assert np.isnan(F.relu(x)[0]) and np.isnan(F.sigmoid(x)[0]) and np.isnan(F.tanh(x)[0])
    np.testing.assert_array_equal(F.relu_backward(np.ones(3), np.array([np.nan, -1.0, 2.0]))[[0, 1, 2]],
                                  [1.0, 0.0, 1.0])
    row = np.array([[1.0, np.nan], [1.0, 2.0]])
    assert np.all(np.isnan(F.softmax(row)[0])) and np.all(np.isfinite(F.softmax(row)[1]))


def test_empty_batch(backend, dtype):
    z = np.zeros((0, 4), dtype)
    assert F.linear(z, np.ones((3, 4), dtype)).shape == (0, 3)
    assert F.softmax(z).shape == (0, 4)
    assert np.isnan(F.cross_entropy(z, np.zeros(0, int)))
    assert F.cross_entropy_backward(z, np.zeros(0, int)).shape == (0, 4)
    assert F.sigmoid(np.zeros(0, dtype)).shape == (0,)


# ---------------------------------------------------------------- layouts, inputs untouched
def test_noncontiguous_and_readonly_inputs(backend, dtype, rng):
    x = rng.standard_normal((6, 9)).astype(dtype)
    w = rng.standard_normal((4, 9)).astype(dtype)
    g = rng.standard_normal((6, 4)).astype(dtype)
    t = rng.integers(0, 9, 6)
    want = (F.linear(x, w), F.linear_backward(g, x, w), F.sigmoid(x), F.softmax(x, axis=0),
            F.cross_entropy(x, t), F.cross_entropy_backward(x, t))
    for make in (noncontiguous, readonly, lambda a: np.asfortranarray(a)):
        xs, ws, gs = make(x), make(w), make(g)
        before = xs.copy()
        got = (F.linear(xs, ws), F.linear_backward(gs, xs, ws), F.sigmoid(xs), F.softmax(xs, axis=0),
               F.cross_entropy(xs, make(t)), F.cross_entropy_backward(xs, t))
        np.testing.assert_array_equal(xs, before)
        for a, b in zip(got, want):
            if isinstance(a, tuple):
                for aa, bb in zip(a, b):
                    assert_close(aa, bb, dtype)
            else:
                assert_close(a, b, dtype)
    xt = x.T  # transposed view, softmax over its last axis
    assert_close(F.softmax(xt), ref(F.softmax, np.ascontiguousarray(xt)), dtype)


def test_linear_without_input_grad(dtype, rng):
    x, w, g = (rng.standard_normal(s).astype(dtype) for s in ((3, 4), (2, 4), (3, 2)))
    gx, gw, gb = F.linear_backward(g, x, w, need_input_grad=False)
    assert gx is None
    assert_close(gw, ref(F.linear_backward, g, x, w)[1], dtype)


# ---------------------------------------------------------------- refused inputs
@pytest.mark.parametrize("bad", [np.arange(4), np.ones(4, np.complex128), np.array([1.0, None]), "abc", None],
                         ids=["int", "complex", "object", "str", "none"])
def test_non_float_inputs_raise_type_error(bad):
    for fn in (F.relu, F.sigmoid, F.tanh, F.softmax, F.log_softmax):
        with pytest.raises(TypeError, match="x: expected a float32 or float64"):
            fn(bad)


def test_bad_inputs_name_the_argument():
    f32, f64 = np.ones((2, 3), np.float32), np.ones((2, 3))
    with pytest.raises(ValueError, match=r"x: expected last dimension 3"):
        F.linear(np.ones((2, 4)), np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"weight: expected a 2-D array"):
        F.linear(f64, np.ones(3))
    with pytest.raises(ValueError, match=r"bias: expected shape \(5,\)"):
        F.linear(f64, np.ones((5, 3)), np.ones(4))
    with pytest.raises(TypeError, match="weight: expected dtype float32"):
        F.linear(f32, np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"grad_out: expected shape \(2, 5\)"):
        F.linear_backward(np.ones((2, 4)), f64, np.ones((5, 3)))
    with pytest.raises(ValueError, match="grad_out: expected the shape of y"):
        F.sigmoid_backward(np.ones(3), np.ones(4))
    with pytest.raises(TypeError, match="grad_out: expected dtype float64"):
        F.tanh_backward(np.ones(3, np.float32), np.ones(3))
    with pytest.raises(ValueError, match="axis: expected an int in"):
        F.softmax(f64, axis=2)
    with pytest.raises(TypeError, match="axis: expected an int"):
        F.softmax(f64, axis=1.0)
    with pytest.raises(ValueError, match=r"target: expected shape \(\), got \(1,\)"):
        F.cross_entropy(np.ones(3), [0])  # (C,) logits are one unbatched sample, as torch
    with pytest.raises(ValueError, match="logits: expected an array of shape"):
        F.cross_entropy(np.ones(()), 0)
    with pytest.raises(ValueError, match=r"target: expected shape \(2,\)"):
        F.cross_entropy(f64, [0, 1, 2])
    with pytest.raises(TypeError, match="target: expected an integer array"):
        F.cross_entropy(f64, [0.0, 1.0])
    with pytest.raises(TypeError, match="target: expected an integer array"):
        F.cross_entropy(f64, np.array([True, False]))
    with pytest.raises(ValueError, match="reduction: expected one of"):
        F.cross_entropy(f64, [0, 1], reduction="avg")
    with pytest.raises(TypeError, match="target: expected dtype float64"):
        F.mse_loss(f64, f32.astype(np.float32))
    with pytest.raises(ValueError, match="target: expected the shape of input"):
        F.mse_loss(f64, np.ones(3))
    with pytest.raises(ValueError, match="p: expected a probability"):
        F.dropout(f64, p=1.5)


@pytest.mark.parametrize("labels,bad", [([0, 3], 3), ([-1, 0], -1)])
def test_out_of_range_labels(labels, bad):
    x = np.ones((2, 3))
    for fn in (F.cross_entropy, F.cross_entropy_backward):
        with pytest.raises(IndexError, match=rf"target: expected values in \[0, 3\) or ignore_index -100, got {bad}"):
            fn(x, labels)
        with pytest.raises(ValueError):  # also a ValueError
            fn(x, labels)


def test_dropout_scales_and_masks(dtype):
    x = np.ones((200, 50), dtype)
    out, mask = F.dropout(x, 0.3, rng=np.random.default_rng(0), return_mask=True)
    assert out.dtype == dtype
    kept = out != 0
    assert 0.65 < kept.mean() < 0.75
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(F.dropout_backward(np.full_like(x, 2.0), mask), 2 * mask)
    np.testing.assert_array_equal(F.dropout(x, 0.3, training=False), x)
    np.testing.assert_array_equal(F.dropout(x, 1.0), np.zeros_like(x))


@pytest.mark.parametrize("shape", [(64, 300, 200), (3, 700, 300)], ids=["split-rows", "split-columns"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_linear_threaded_gemm_matches_reference(shape, threads, fast_backend, dtype, rng):
    """Big enough for the compiled backends to split the GEMMs over threads (by rows of the
    output, or by its columns when there are few rows): the reference's result, every time."""
    M, K, N = shape
    x, w, b = rng.standard_normal((M, K)), rng.standard_normal((N, K)), rng.standard_normal(N)
    g = rng.standard_normal((M, N))
    with fastnn.use_backend("reference"):
        want = [F.linear(x, w, b), *F.linear_backward(g, x, w)]
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(threads)
    try:
        c = [a.astype(dtype) for a in (x, w, b, g)]
        got = [F.linear(*c[:3]), *F.linear_backward(c[3], c[0], c[1])]
        again = [F.linear(*c[:3]), *F.linear_backward(c[3], c[0], c[1])]
    finally:
        fastnn.set_num_threads(old)
    for a, e, r in zip(got, want, again):
        assert_close(a, e, dtype, scale=30)
        assert np.array_equal(a, r)
