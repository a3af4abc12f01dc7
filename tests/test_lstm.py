"""nn.LSTM / F.lstm: kernel ladder vs the reference, torch parity (outputs, states, every
gradient), stack of caches, dropout, odd inputs, refused inputs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastnn
from fastnn import functional as F, nn
from fastnn.kernels.lstm import reference as ref

from fnn_testing import assert_close, central_diff, noncontiguous, readonly, to_torch


def _layer_args(rng, T, B, I, H, dtype, bias=True):
    r = lambda *s: rng.standard_normal(s).astype(dtype)
    return dict(x=r(T, B, I), w_ih=r(4 * H, I) * 0.5, w_hh=r(4 * H, H) * 0.5, bias=r(4 * H) if bias else None,
                h0=r(B, H), c0=r(B, H))


def _run_layer(mod, a, grads):
    T, B, _ = a["x"].shape
    H = a["h0"].shape[1]
    dt = a["x"].dtype
    hs, cs, acts = np.empty((T, B, H), dt), np.empty((T, B, H), dt), np.empty((T, B, 4 * H), dt)
    mod.lstm_layer_forward(a["x"], a["w_ih"], a["w_hh"], a["bias"], a["h0"], a["c0"], hs, cs, acts)
    outs = [np.empty_like(a["x"]), np.empty_like(a["w_ih"]), np.empty_like(a["w_hh"]),
            np.empty(4 * H, dt), np.empty_like(a["h0"]), np.empty_like(a["c0"])]
    mod.lstm_layer_backward(*grads, a["x"], a["w_ih"], a["w_hh"], a["h0"], a["c0"], hs, cs, acts, *outs)
    return [hs, cs, acts] + outs


@settings(max_examples=6)
@given(T=st.sampled_from([1, 2, 5]), B=st.sampled_from([1, 3, 7]), I=st.sampled_from([1, 5]),
       H=st.sampled_from([1, 2, 13]), bias=st.booleans())
@pytest.mark.parametrize("impl", ["numpy", "numba", "cython"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_layer_kernels_match_reference(impl, dtype, T, B, I, H, bias):
    if impl not in fastnn.backends():
        pytest.skip(f"{impl} not available")
    mod = __import__(f"fastnn.kernels.lstm.{ {'numpy': 'numpy_impl', 'numba': 'numba_impl', 'cython': 'cython_impl'}[impl]}",
                     fromlist=["_"])
    rng = np.random.default_rng(T * 100 + B * 10 + H)
    a = _layer_args(rng, T, B, I, H, dtype, bias)
    grads = [rng.standard_normal((T, B, H)).astype(dtype), rng.standard_normal((B, H)).astype(dtype),
             rng.standard_normal((B, H)).astype(dtype)]
    want = _run_layer(ref, a, grads)
    got = _run_layer(mod, a, grads)
    names = ["hs", "cs", "acts", "grad_x", "grad_w_ih", "grad_w_hh", "grad_b", "grad_h0", "grad_c0"]
    for n, g, w in zip(names, got, want):
        assert_close(g, w, dtype, scale=10, err_msg=n)


def _torch_lstm(torch, m, dtype):
    t = torch.nn.LSTM(m.input_size, m.hidden_size, m.num_layers, bias=m.bias, batch_first=m.batch_first)
    t = t.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        for k, v in m.state_dict().items():
            getattr(t, k).copy_(torch.from_numpy(v))
    return t


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
def test_matches_torch(torch, backend, dtype, num_layers, batch_first, rng):
    T, B, I, H = 5, 3, 7, 11
    m = nn.LSTM(I, H, num_layers, batch_first=batch_first, dtype=dtype, rng=rng)
    t = _torch_lstm(torch, m, dtype)
    xs = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(xs).astype(dtype)
    h0 = rng.standard_normal((num_layers, B, H)).astype(dtype)
    c0 = rng.standard_normal((num_layers, B, H)).astype(dtype)
    g_out = rng.standard_normal(xs[:2] + (H,)).astype(dtype)
    g_h = rng.standard_normal((num_layers, B, H)).astype(dtype)
    g_c = rng.standard_normal((num_layers, B, H)).astype(dtype)

    out, (h, c) = m(x, (h0, c0))
    gx, (gh0, gc0) = m.backward(g_out, (g_h, g_c))

    xt, h0t, c0t = (to_torch(torch, a, True) for a in (x, h0, c0))
    ot, (ht, ct) = t(xt, (h0t, c0t))
    torch.autograd.backward([ot, ht, ct], [to_torch(torch, a) for a in (g_out, g_h, g_c)])
    s = 30
    assert_close(out, ot.detach().numpy(), dtype, s, "output")
    assert_close(h, ht.detach().numpy(), dtype, s, "h_n")
    assert_close(c, ct.detach().numpy(), dtype, s, "c_n")
    assert_close(gx, xt.grad.numpy(), dtype, s, "grad_x")
    assert_close(gh0, h0t.grad.numpy(), dtype, s, "grad_h0")
    assert_close(gc0, c0t.grad.numpy(), dtype, s, "grad_c0")
    for name, p in m.named_parameters():
        assert_close(p.grad, getattr(t, name).grad.numpy(), dtype, s, name)


def test_default_states_unbatched_and_no_grad_output(torch, dtype, rng):
    T, I, H = 4, 3, 5
    m = nn.LSTM(I, H, 2, dtype=dtype, rng=rng)
    t = _torch_lstm(torch, m, dtype)
    x = rng.standard_normal((T, I)).astype(dtype)             # unbatched, zero initial states
    g_h = rng.standard_normal((2, H)).astype(dtype)
    out, (h, c) = m(x)
    gx, (gh0, gc0) = m.backward(None, (g_h, None))             # only h_n feeds the loss
    xt = to_torch(torch, x, True)
    ot, (ht, ct) = t(xt)
    ht.backward(to_torch(torch, g_h))
    assert out.shape == (T, H) and h.shape == (2, H)
    assert_close(out, ot.detach().numpy(), dtype, 30)
    assert_close(c, ct.detach().numpy(), dtype, 30)
    assert_close(gx, xt.grad.numpy(), dtype, 30)
    for name, p in m.named_parameters():
        assert_close(p.grad, getattr(t, name).grad.numpy(), dtype, 30, name)


def test_stack_of_caches_and_state_dict(torch, rng):
    # called twice (the second call continues from the first's states), then two backwards
    dtype = np.float64
    m = nn.LSTM(3, 4, 1, dtype=dtype)
    t = torch.nn.LSTM(3, 4, 1).double()
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    x1, x2 = rng.standard_normal((2, 2, 3)), rng.standard_normal((3, 2, 3))
    g1, g2 = rng.standard_normal((2, 2, 4)), rng.standard_normal((3, 2, 4))
    o1, s1 = m(x1)
    o2, _ = m(x2, s1)
    gx2, (gh, gc) = m.backward(g2)
    gx1, _ = m.backward(g1, (gh, gc))
    x1t, x2t = to_torch(torch, x1, True), to_torch(torch, x2, True)
    o1t, s1t = t(x1t)
    o2t, _ = t(x2t, s1t)
    torch.autograd.backward([o1t, o2t], [to_torch(torch, g1), to_torch(torch, g2)])
    assert_close(o2, o2t.detach().numpy(), dtype)
    assert_close(gx1, x1t.grad.numpy(), dtype)
    assert_close(gx2, x2t.grad.numpy(), dtype)
    for name, p in m.named_parameters():
        assert_close(p.grad, getattr(t, name).grad.numpy(), dtype, err_msg=name)
    with pytest.raises(ValueError, match="no forward call"):
        m.backward(g1)


def test_init_like_torch():
    m = nn.LSTM(6, 9, 2, rng=np.random.default_rng(0))
    names = [n for n, _ in m.named_parameters()]
    assert names == [f"{w}_l{k}" for k in range(2) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    shapes = {n: p.shape for n, p in m.named_parameters()}
    assert shapes["weight_ih_l0"] == (36, 6) and shapes["weight_ih_l1"] == (36, 9) and shapes["bias_hh_l1"] == (36,)
    allp = np.concatenate([p.data.ravel() for p in m.parameters()])
    assert np.abs(allp).max() <= 1 / 3 and np.abs(allp).max() > 0.3  # U(-1/sqrt(H), 1/sqrt(H))
    assert [n for n, _ in nn.LSTM(2, 3, bias=False).named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]


def test_noncontiguous_readonly_inputs_unchanged(fast_backend, rng):
    m = nn.LSTM(3, 4, 2, dtype=np.float64, rng=rng)
    x = rng.standard_normal((5, 2, 3))
    h0, c0 = rng.standard_normal((2, 2, 4)), rng.standard_normal((2, 2, 4))
    want, (wh, wc) = m(x, (h0, c0))
    got, (gh, gc) = m(noncontiguous(x), (readonly(h0), noncontiguous(c0)))
    xr = readonly(x)
    got2, _ = m(xr)
    assert_close(got, want)
    assert_close(gc, wc)
    assert_close(got2, m(x)[0])
    g = rng.standard_normal((5, 2, 4))
    gr = readonly(g)
    m.backward(gr)
    assert np.array_equal(gr, g) and np.array_equal(xr, x)


def test_dropout_between_layers(rng):
    # training: seeded masks are reproducible and the gradient is the masked network's (finite diffs);
    # eval: no dropout
    m = nn.LSTM(2, 3, 2, dropout=0.5, dtype=np.float64, rng=np.random.default_rng(0))
    x = rng.standard_normal((3, 2, 2))
    g = rng.standard_normal((3, 2, 3))

    def f(xv):
        m.rng = np.random.default_rng(7)
        out, _ = m(xv)
        m._caches.clear()
        return float((out * g).sum())

    m.rng = np.random.default_rng(7)
    out, _ = m(x)
    gx, _ = m.backward(g)
    assert_close(gx, central_diff(f, x), np.float64, scale=1e4)
    m.eval()
    e1, _ = m(x)
    m.rng = np.random.default_rng(8)
    e2, _ = m(x)
    assert_close(e1, e2)
    assert not np.allclose(e1, out)


def test_float32_module_casts_float64_input(rng):
    m = nn.LSTM(3, 4)
    out, (h, c) = m(rng.standard_normal((2, 1, 3)))
    assert out.dtype == h.dtype == c.dtype == np.float32


@pytest.mark.parametrize("bad, err, match", [
    (lambda r: (r.standard_normal((4, 2, 5)), None), ValueError, "input_size"),                      # wrong feature size
    (lambda r: (r.standard_normal((2, 5)).astype(int), None), TypeError, "dtype"),                     # ints
    (lambda r: (r.standard_normal((4,)), None), ValueError, "3-D"),                                    # 1-D
    (lambda r: (r.standard_normal((4, 2, 3)), (np.zeros((1, 2, 6)), np.zeros((1, 2, 6)))), ValueError, "h0"),
    (lambda r: (r.standard_normal((4, 2, 3)), (np.zeros((1, 2, 6)), np.zeros((1, 3, 6)))), ValueError, "h0"),
    (lambda r: (r.standard_normal((4, 2, 3)), (np.zeros((1, 2, 5)), np.zeros((1, 2, 6)))), ValueError, "c0"),
    (lambda r: (r.standard_normal((4, 2, 3)), (np.zeros((2, 2, 5)), np.zeros((2, 2, 5)))), ValueError, "h0"),
    (lambda r: (r.standard_normal((4, 2, 3)), (np.zeros((1, 2, 5)), np.zeros((1, 3, 5)))), ValueError, "c0"),
    (lambda r: (r.standard_normal((4, 2, 3)), np.zeros((1, 2, 5))), TypeError, "hx"),
    (lambda r: (r.standard_normal((0, 2, 3)), None), ValueError, "time step"),
])
def test_refuses_bad_input(bad, err, match, rng):
    m = nn.LSTM(3, 5)
    x, hx = bad(rng)
    with pytest.raises(err, match=match):
        m(x, hx)


def test_functional_refuses_bad_weights_and_grads(rng):
    x = rng.standard_normal((2, 1, 3))
    w = (rng.standard_normal((8, 3)), rng.standard_normal((8, 2)), None, None)
    out, hx, cache = F.lstm(x, None, [w], return_cache=True)
    with pytest.raises(ValueError, match="w_ih"):
        F.lstm(x, None, [(w[0][:, :2], w[1], None, None)])
    with pytest.raises(ValueError, match="w_hh"):
        F.lstm(x, None, [(w[0], w[1][:7], None, None)])
    with pytest.raises(ValueError, match="both biases"):
        F.lstm(x, None, [(w[0], w[1], np.zeros(8), None)])
    with pytest.raises(TypeError, match="dtype"):
        F.lstm(x.astype(np.float32), None, [w])
    with pytest.raises(TypeError, match="weights"):
        F.lstm(x, None, w)
    with pytest.raises(ValueError, match="dropout_p"):
        F.lstm(x, None, [w], dropout_p=1.5)
    with pytest.raises(ValueError, match="grad_output"):
        F.lstm_backward(np.zeros((2, 1, 3)), None, cache)
    with pytest.raises(ValueError, match="grad_h_n"):
        F.lstm_backward(None, (np.zeros((2, 1, 2)), None), cache)
    with pytest.raises(TypeError, match="cache"):
        F.lstm_backward(None, None, (1, 2))
    with pytest.raises(ValueError, match="dropout"):
        nn.LSTM(3, 4, dropout=2)
    with pytest.raises(ValueError, match="hidden_size"):
        nn.LSTM(3, 0)


@pytest.mark.parametrize("impl", ["numba", "cython"])
def test_saturated_gates_match_reference(impl, dtype):
    # pre-activations of +-200 (exp under/overflow territory): finite, and the reference's values
    if impl not in fastnn.backends():
        pytest.skip(f"{impl} not available")
    mod = __import__(f"fastnn.kernels.lstm.{impl}_impl", fromlist=["_"])
    rng = np.random.default_rng(5)
    a = _layer_args(rng, 3, 4, 6, 5, dtype)
    a["w_ih"] = (a["w_ih"] * 100).astype(dtype)
    grads = [rng.standard_normal((3, 4, 5)).astype(dtype), np.zeros((4, 5), dtype), np.zeros((4, 5), dtype)]
    want = _run_layer(ref, a, grads)
    got = _run_layer(mod, a, grads)
    for g, w in zip(got, want):
        assert np.all(np.isfinite(g))
        assert_close(g, w, dtype, scale=100)


def test_one_thread_matches(rng):
    # fastnn.set_num_threads(1) runs the big GEMMs inline instead of on the helper thread
    m = nn.LSTM(4, 6, 2, dtype=np.float64, rng=rng)
    x, g = rng.standard_normal((23, 3, 4)), rng.standard_normal((23, 3, 6))
    outs = []
    for n in (1, fastnn.get_num_threads() or 2):
        prev = fastnn.get_num_threads()
        fastnn.set_num_threads(n)
        try:
            m.zero_grad()
            out, _ = m(x)
            gx, _ = m.backward(g)
            outs.append((out, gx, [p.grad.copy() for p in m.parameters()]))
        finally:
            fastnn.set_num_threads(prev)
    assert_close(outs[0][0], outs[1][0])
    assert_close(outs[0][1], outs[1][1])
    for a, b in zip(outs[0][2], outs[1][2]):
        assert_close(a, b)
