"""nn.GRU / F.gru and the cells nn.LSTMCell / nn.GRUCell: kernel ladder vs the reference,
torch parity (outputs, states, every gradient from a torch state dict), cells step by step
over 20 steps, stack of caches, dropout, odd inputs, refused inputs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastnn
from fastnn import functional as F, nn
from fastnn.kernels.gru import reference as ref

from fnn_testing import assert_close, central_diff, noncontiguous, readonly, to_torch

IMPLS = {"numpy": "numpy_impl", "numba": "numba_impl", "cython": "cython_impl"}


def _layer_args(rng, T, B, I, H, dtype, bias=True):
    r = lambda *s: rng.standard_normal(s).astype(dtype)
    z = np.zeros(3 * H, dtype)
    return dict(x=r(T, B, I), w_ih=r(3 * H, I) * 0.5, w_hh=r(3 * H, H) * 0.5, b_ih=r(3 * H) if bias else z,
                b_hh=r(3 * H) if bias else z, h0=r(B, H))


def _run_layer(mod, a, grads):
    T, B, _ = a["x"].shape
    H = a["h0"].shape[1]
    dt = a["x"].dtype
    hs, acts = np.empty((T, B, H), dt), np.empty((T, B, 4 * H), dt)
    mod.gru_layer_forward(a["x"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["h0"], hs, acts)
    outs = [np.empty_like(a["x"]), np.empty_like(a["w_ih"]), np.empty_like(a["w_hh"]), np.empty(3 * H, dt),
            np.empty(3 * H, dt), np.empty_like(a["h0"])]
    mod.gru_layer_backward(*grads, a["x"], a["w_ih"], a["w_hh"], a["h0"], hs, acts, *outs)
    return [hs, acts] + outs


NAMES = ["hs", "acts", "grad_x", "grad_w_ih", "grad_w_hh", "grad_b_ih", "grad_b_hh", "grad_h0"]


@settings(max_examples=6)
@given(T=st.sampled_from([1, 2, 5, 19]), B=st.sampled_from([1, 3, 7]), I=st.sampled_from([1, 5]),
       H=st.sampled_from([1, 2, 13]), bias=st.booleans())
@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_layer_kernels_match_reference(impl, dtype, T, B, I, H, bias):
    if impl not in fastnn.backends():
        pytest.skip(f"{impl} not available")
    mod = __import__(f"fastnn.kernels.gru.{IMPLS[impl]}", fromlist=["_"])
    rng = np.random.default_rng(T * 100 + B * 10 + H)
    a = _layer_args(rng, T, B, I, H, dtype, bias)
    grads = [rng.standard_normal((T, B, H)).astype(dtype), rng.standard_normal((B, H)).astype(dtype)]
    for n, g, w in zip(NAMES, _run_layer(mod, a, grads), _run_layer(ref, a, grads)):
        assert_close(g, w, dtype, scale=10, err_msg=n)


def test_reference_matches_central_differences(rng):
    a = _layer_args(rng, 3, 2, 3, 4, np.float64)
    gh, gn = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 4))

    def loss(**over):
        b = dict(a, **over)
        hs, acts = np.empty((3, 2, 4)), np.empty((3, 2, 16))
        ref.gru_layer_forward(b["x"], b["w_ih"], b["w_hh"], b["b_ih"], b["b_hh"], b["h0"], hs, acts)
        return float((hs * gh).sum() + (hs[-1] * gn).sum())

    got = dict(zip(NAMES, _run_layer(ref, a, [gh, gn])))
    for name, key in (("grad_x", "x"), ("grad_w_ih", "w_ih"), ("grad_w_hh", "w_hh"), ("grad_b_ih", "b_ih"),
                      ("grad_b_hh", "b_hh"), ("grad_h0", "h0")):
        assert_close(got[name], central_diff(lambda v: loss(**{key: v}), a[key]), np.float64, scale=1e4, err_msg=name)


def _torch_rnn(torch, m, dtype, cls="GRU"):
    t = getattr(torch.nn, cls)(m.input_size, m.hidden_size, m.num_layers, bias=m.bias, batch_first=m.batch_first)
    t = t.to(torch.float64 if dtype == np.float64 else torch.float32)
    # the torch net's own init, loaded into fastnn: parity from a torch state dict
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return t


@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("batch_first", [False, True])
def test_matches_torch(torch, backend, dtype, num_layers, batch_first, rng):
    T, B, I, H = 6, 3, 7, 11
    m = nn.GRU(I, H, num_layers, batch_first=batch_first, dtype=dtype, rng=rng)
    t = _torch_rnn(torch, m, dtype)
    xs = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(xs).astype(dtype)
    h0 = rng.standard_normal((num_layers, B, H)).astype(dtype)
    g_out = rng.standard_normal(xs[:2] + (H,)).astype(dtype)
    g_h = rng.standard_normal((num_layers, B, H)).astype(dtype)

    out, h = m(x, h0)
    gx, gh0 = m.backward(g_out, g_h)

    xt, h0t = to_torch(torch, x, True), to_torch(torch, h0, True)
    ot, ht = t(xt, h0t)
    torch.autograd.backward([ot, ht], [to_torch(torch, g_out), to_torch(torch, g_h)])
    s = 30
    assert out.dtype == dtype and gx.dtype == dtype
    assert_close(out, ot.detach().numpy(), dtype, s, "output")
    assert_close(h, ht.detach().numpy(), dtype, s, "h_n")
    assert_close(gx, xt.grad.numpy(), dtype, s, "grad_x")
    assert_close(gh0, h0t.grad.numpy(), dtype, s, "grad_h0")
    for name, p in m.named_parameters():
        assert_close(p.grad, getattr(t, name).grad.numpy(), dtype, s, name)


def test_no_bias_default_state_unbatched_and_no_grad_output(torch, dtype, rng):
    T, I, H = 4, 3, 5
    m = nn.GRU(I, H, 2, bias=False, dtype=dtype, rng=rng)
    t = _torch_rnn(torch, m, dtype)
    x = rng.standard_normal((T, I)).astype(dtype)          # unbatched, zero initial state
    g_h = rng.standard_normal((2, H)).astype(dtype)
    out, h = m(x)
    gx, gh0 = m.backward(None, g_h)                        # only h_n feeds the loss
    xt = to_torch(torch, x, True)
    ot, ht = t(xt)
    ht.backward(to_torch(torch, g_h))
    assert out.shape == (T, H) and h.shape == (2, H) and gx.shape == (T, I) and gh0.shape == (2, H)
    assert_close(out, ot.detach().numpy(), dtype, 30)
    assert_close(gx, xt.grad.numpy(), dtype, 30)
    for name, p in m.named_parameters():
        assert_close(p.grad, getattr(t, name).grad.numpy(), dtype, 30, name)


def test_stack_of_caches(torch, rng):
    # called twice (the second call continues from the first's state), then two backwards
    m = nn.GRU(3, 4, 2, dtype=np.float64)
    t = _torch_rnn(torch, m, np.float64)
    x1, x2 = rng.standard_normal((2, 2, 3)), rng.standard_normal((3, 2, 3))
    g1, g2 = rng.standard_normal((2, 2, 4)), rng.standard_normal((3, 2, 4))
    o1, h1 = m(x1)
    o2, _ = m(x2, h1)
    gx2, gh = m.backward(g2)
    gx1, _ = m.backward(g1, gh)
    x1t, x2t = to_torch(torch, x1, True), to_torch(torch, x2, True)
    o1t, h1t = t(x1t)
    o2t, _ = t(x2t, h1t)
    torch.autograd.backward([o1t, o2t], [to_torch(torch, g1), to_torch(torch, g2)])
    assert_close(o2, o2t.detach().numpy())
    assert_close(gx1, x1t.grad.numpy())
    assert_close(gx2, x2t.grad.numpy())
    for name, p in m.named_parameters():
        assert_close(p.grad, getattr(t, name).grad.numpy(), err_msg=name)
    with pytest.raises(ValueError, match="no forward call"):
        m.backward(g1)


def test_init_and_keys_like_torch(torch):
    m = nn.GRU(6, 9, 2, rng=np.random.default_rng(0))
    t = torch.nn.GRU(6, 9, 2)
    assert list(m.state_dict()) == list(t.state_dict())
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: tuple(v.shape) for k, v in t.state_dict().items()}
    allp = np.concatenate([p.data.ravel() for p in m.parameters()])
    assert np.abs(allp).max() <= 1 / 3 and np.abs(allp).max() > 0.3  # U(-1/sqrt(H), 1/sqrt(H))
    assert list(nn.GRU(2, 3, bias=False).state_dict()) == list(torch.nn.GRU(2, 3, bias=False).state_dict())
    for cls in ("LSTMCell", "GRUCell"):
        for bias in (True, False):
            mc, tc = getattr(nn, cls)(5, 7, bias=bias), getattr(torch.nn, cls)(5, 7, bias=bias)
            assert {k: v.shape for k, v in mc.state_dict().items()} == \
                   {k: tuple(v.shape) for k, v in tc.state_dict().items()}
            assert np.abs(mc.weight_hh.data).max() <= 1 / np.sqrt(7)


def test_noncontiguous_readonly_inputs_unchanged(fast_backend, rng):
    m = nn.GRU(3, 4, 2, dtype=np.float64, rng=rng)
    x = rng.standard_normal((5, 2, 3))
    h0 = rng.standard_normal((2, 2, 4))
    want, wh = m(x, h0)
    got, gh = m(noncontiguous(x), readonly(h0))
    xr = readonly(x)
    got2, _ = m(xr)
    assert_close(got, want)
    assert_close(gh, wh)
    assert_close(got2, m(x)[0])
    g = rng.standard_normal((5, 2, 4))
    gr = readonly(g)
    m.backward(gr)
    assert np.array_equal(gr, g) and np.array_equal(xr, x)


def test_dropout_between_layers(rng):
    m = nn.GRU(2, 3, 3, dropout=0.5, dtype=np.float64, rng=np.random.default_rng(0))
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
    m = nn.GRU(3, 4)
    out, h = m(rng.standard_normal((2, 1, 3)), np.zeros((1, 1, 4)))
    assert out.dtype == h.dtype == np.float32


@pytest.mark.parametrize("impl", ["numba", "cython"])
def test_saturated_gates_match_reference(impl, dtype):
    if impl not in fastnn.backends():
        pytest.skip(f"{impl} not available")
    mod = __import__(f"fastnn.kernels.gru.{impl}_impl", fromlist=["_"])
    rng = np.random.default_rng(5)
    a = _layer_args(rng, 3, 4, 6, 5, dtype)
    a["w_ih"] = (a["w_ih"] * 100).astype(dtype)   # pre-activations of +-200
    grads = [rng.standard_normal((3, 4, 5)).astype(dtype), np.zeros((4, 5), dtype)]
    for n, g, w in zip(NAMES, _run_layer(mod, a, grads), _run_layer(ref, a, grads)):
        assert np.all(np.isfinite(g)), n
        assert_close(g, w, dtype, scale=100, err_msg=n)


def test_one_thread_matches(rng):
    m = nn.GRU(4, 6, 2, dtype=np.float64, rng=rng)
    x, g = rng.standard_normal((23, 3, 4)), rng.standard_normal((23, 3, 6))
    outs = []
    for n in (1, max(2, fastnn.get_num_threads())):
        prev = fastnn.get_num_threads()
        fastnn.set_num_threads(n)
        try:
            m.zero_grad()
            out, _ = m(x)
            gx, _ = m.backward(g)
            outs.append((out, gx, [p.grad.copy() for p in m.parameters()]))
        finally:
            fastnn.set_num_threads(prev)
    for a, b in zip([outs[0][0], outs[0][1]] + outs[0][2], [outs[1][0], outs[1][1]] + outs[1][2]):
        assert_close(a, b)


@pytest.mark.parametrize("bad, err, match", [
    (lambda r: (r.standard_normal((4, 2, 5)), None), ValueError, "input_size"),
    (lambda r: (r.standard_normal((2, 5)).astype(int), None), TypeError, "dtype"),
    (lambda r: (r.standard_normal((4,)), None), ValueError, "3-D"),
    (lambda r: (r.standard_normal((4, 2, 3)), np.zeros((1, 2, 6))), ValueError, "h0"),
    (lambda r: (r.standard_normal((4, 2, 3)), np.zeros((2, 2, 5))), ValueError, "h0"),
    (lambda r: (r.standard_normal((4, 2, 3)), (np.zeros((1, 2, 5)), np.zeros((1, 2, 5)))), TypeError, "no cell state"),
    (lambda r: (r.standard_normal((0, 2, 3)), None), ValueError, "time step"),
])
def test_refuses_bad_input(bad, err, match, rng):
    m = nn.GRU(3, 5)
    x, hx = bad(rng)
    with pytest.raises(err, match=match):
        m(x, hx)


def test_functional_refuses_bad_weights_and_grads(rng):
    x = rng.standard_normal((2, 1, 3))
    w = (rng.standard_normal((6, 3)), rng.standard_normal((6, 2)), None, None)
    out, h, cache = F.gru(x, None, [w], return_cache=True)
    with pytest.raises(ValueError, match=r"w_ih\) expected shape \(6, 3\)|w_ih"):
        F.gru(x, None, [(w[0][:, :2], w[1], None, None)])
    with pytest.raises(ValueError, match=r"w_hh.*\(3\*hidden_size|w_hh"):
        F.gru(x, None, [(w[0], w[1][:5], None, None)])
    with pytest.raises(ValueError, match="both biases"):
        F.gru(x, None, [(w[0], w[1], np.zeros(6), None)])
    with pytest.raises(TypeError, match="dtype"):
        F.gru(x.astype(np.float32), None, [w])
    with pytest.raises(ValueError, match="dropout_p"):
        F.gru(x, None, [w], dropout_p=-0.5)
    with pytest.raises(ValueError, match="grad_output"):
        F.gru_backward(np.zeros((2, 1, 3)), None, cache)
    with pytest.raises(ValueError, match="grad_h_n"):
        F.gru_backward(None, np.zeros((2, 1, 2)), cache)
    with pytest.raises(TypeError, match="GRUCache"):
        F.gru_backward(None, None, (1, 2))
    with pytest.raises(ValueError, match="hidden_size"):
        nn.GRU(3, 0)


# ---------------------------------------------------------------- cells, step by step
@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell"])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_cells_over_20_steps_match_torch(torch, backend, dtype, cls, unbatched, bias, rng):
    I, H, B, T = 5, 7, 3, 20
    m = getattr(nn, cls)(I, H, bias=bias, dtype=dtype, rng=rng)
    t = getattr(torch.nn, cls)(I, H, bias=bias).to(torch.float64 if dtype == np.float64 else torch.float32)
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    lead = () if unbatched else (B,)
    xs = [rng.standard_normal(lead + (I,)).astype(dtype) for _ in range(T)]
    gs = [rng.standard_normal(lead + (H,)).astype(dtype) for _ in range(T)]
    lstm = cls == "LSTMCell"
    h0 = rng.standard_normal(lead + (H,)).astype(dtype)
    c0 = rng.standard_normal(lead + (H,)).astype(dtype)
    # fastnn: T calls, then T backward calls in reverse order, carrying the state gradients
    state = (h0, c0) if lstm else h0
    outs = []
    for x in xs:
        state = m(x, state)
        outs.append(state[0] if lstm else state)
    gx = [None] * T
    gstate = (None, None) if lstm else None
    for k in range(T - 1, -1, -1):
        if lstm:
            gh = gs[k] if gstate[0] is None else gs[k] + gstate[0]
            gx[k], gstate = m.backward(gh, gstate[1])
        else:
            gh = gs[k] if gstate is None else gs[k] + gstate
            gx[k], gstate = m.backward(gh)
    # torch
    xts = [to_torch(torch, x, True) for x in xs]
    h0t, c0t = to_torch(torch, h0, True), to_torch(torch, c0, True)
    st_ = (h0t, c0t) if lstm else h0t
    touts = []
    for xt in xts:
        st_ = t(xt, st_)
        touts.append(st_[0] if lstm else st_)
    torch.autograd.backward(touts, [to_torch(torch, g) for g in gs])
    s = 30
    for k in range(T):
        assert outs[k].dtype == dtype
        assert_close(outs[k], touts[k].detach().numpy(), dtype, s, f"h step {k}")
        assert_close(gx[k], xts[k].grad.numpy(), dtype, s, f"grad_x step {k}")
    assert_close(gstate[0] if lstm else gstate, h0t.grad.numpy(), dtype, s, "grad_h0")
    if lstm:
        assert_close(gstate[1], c0t.grad.numpy(), dtype, s, "grad_c0")
    for name, p in m.named_parameters():
        assert_close(p.grad, getattr(t, name).grad.numpy(), dtype, s, name)


def test_cells_default_state_and_refusals(rng):
    c = nn.LSTMCell(3, 4, dtype=np.float64)
    h, cc = c(np.ones((2, 3)))
    assert h.shape == cc.shape == (2, 4)
    gx, (gh, gc) = c.backward(None, np.ones((2, 4)))
    assert gx.shape == (2, 3) and gh.shape == gc.shape == (2, 4)
    g = nn.GRUCell(3, 4, dtype=np.float64)
    with pytest.raises(ValueError, match=r"input: expected shape \(batch, 3\)"):
        g(np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"h_0: expected shape \(2, 4\)"):
        g(np.ones((2, 3)), np.ones((3, 4)))
    with pytest.raises(TypeError, match="hx: expected a tuple"):
        c(np.ones((2, 3)), np.ones((2, 4)))
    g(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"grad_h: expected shape \(2, 4\)"):
        g.backward(np.ones((2, 5)))
