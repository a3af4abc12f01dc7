"""nn.MultiheadAttention and nn.ScaledDotProductAttention against torch (loaded state_dict):
outputs, weights, input and parameter gradients, masks, layouts, bad input."""
import numpy as np
import pytest

from fastnn import functional as F
from fastnn import nn
from fnn_testing import assert_close, to_torch


def _pair(torch, dtype, E, H, rng, **kw):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    torch.manual_seed(int(rng.integers(1 << 30)))
    tm = torch.nn.MultiheadAttention(E, H, dtype=tdt, **kw)
    with torch.no_grad():  # torch starts biases at 0: make them matter
        for name, p in tm.named_parameters():
            if "bias" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    m = nn.MultiheadAttention(E, H, dtype=dtype, **kw)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return tm, m


def _compare(torch, tm, m, dtype, rng, q, k, v, same=False, tol=3.0, **kw):
    tq = to_torch(torch, q, True)
    tk, tv = (tq, tq) if same else (to_torch(torch, k, True), to_torch(torch, v, True))
    tkw = {n: (to_torch(torch, a) if isinstance(a, np.ndarray) else a) for n, a in kw.items()}
    ty, tw = tm(tq, tk, tv, **tkw)
    g = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(to_torch(torch, g))
    y, w = m(q, q, q, **kw) if same else m(q, k, v, **kw)
    assert y.dtype == dtype
    assert_close(y, ty.detach().numpy(), dtype, scale=tol, err_msg="output")
    if tw is None:
        assert w is None
    else:
        assert_close(w, tw.detach().numpy(), dtype, scale=tol, err_msg="weights")
    gq, gk, gv = m.backward(g)
    if same:  # torch sums the three roles' gradients into x.grad
        assert_close(gq + gk + gv, tq.grad.numpy(), dtype, scale=tol, err_msg="grad x")
    else:
        for name, a, t in (("grad_query", gq, tq), ("grad_key", gk, tk), ("grad_value", gv, tv)):
            assert_close(a, t.grad.numpy(), dtype, scale=tol, err_msg=name)
    tparams = dict(tm.named_parameters())
    assert sorted(n for n, _ in m.named_parameters()) == sorted(tparams)
    for name, p in m.named_parameters():
        assert_close(p.grad, tparams[name].grad.numpy(), dtype, scale=tol, err_msg=name)


def _x(rng, dtype, *shape):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("batch_first,kind", [(False, "bool"), (True, "float")])
def test_self_attention_masks(backend, dtype, torch, rng, batch_first, kind):
    E, H, N, L = 16, 4, 3, 7
    tm, m = _pair(torch, dtype, E, H, rng, batch_first=batch_first)
    x = _x(rng, dtype, *((N, L, E) if batch_first else (L, N, E)))
    kpm = rng.random((N, L)) < 0.3  # True = padding
    kpm[:, 0] = False
    am = rng.random((L, L)) < 0.3  # True = not allowed
    am[:, 0] = False
    if kind == "float":
        kpm = np.where(kpm, -np.inf, 0.0).astype(dtype)
        am = np.where(am, -np.inf, _x(rng, dtype, L, L)).astype(dtype)
    _compare(torch, tm, m, dtype, rng, x, x, x, same=True, key_padding_mask=kpm, attn_mask=am)


def test_cross_attention_kdim_vdim(backend, dtype, torch, rng):
    E, H, N, L, S = 12, 3, 2, 5, 11
    tm, m = _pair(torch, dtype, E, H, rng, kdim=7, vdim=5, batch_first=True)
    q, k, v = _x(rng, dtype, N, L, E), _x(rng, dtype, N, S, 7), _x(rng, dtype, N, S, 5)
    am = rng.random((N * H, L, S)) < 0.3  # bool: True = not allowed
    am[..., 0] = False
    _compare(torch, tm, m, dtype, rng, q, k, v, attn_mask=am, average_attn_weights=False)


def test_cross_attention_packed_no_bias(dtype, torch, rng):
    E, H, N, L, S = 16, 2, 3, 6, 4
    tm, m = _pair(torch, dtype, E, H, rng, bias=False)
    q, k, v = _x(rng, dtype, L, N, E), _x(rng, dtype, S, N, E), _x(rng, dtype, S, N, E)
    kpm = np.where(rng.random((N, S)) < 0.3, -np.inf, 0.0).astype(dtype)
    kpm[:, 0] = 0
    _compare(torch, tm, m, dtype, rng, q, k, v, key_padding_mask=kpm, need_weights=False)


def test_causal_hint_and_unbatched(dtype, torch, rng):
    E, H, L = 8, 2, 6
    tm, m = _pair(torch, dtype, E, H, rng)
    x = _x(rng, dtype, L, E)
    causal = np.triu(np.ones((L, L), bool), 1)
    _compare(torch, tm, m, dtype, rng, x, x, x, attn_mask=causal, is_causal=True, need_weights=False)
    _compare(torch, tm, m, dtype, rng, x, _x(rng, dtype, 4, E), _x(rng, dtype, 4, E))


def test_heads_of_64_and_80(torch, rng):
    for E, H in ((128, 2), (160, 2)):
        tm, m = _pair(torch, np.float64, E, H, rng, batch_first=True)
        x = _x(rng, np.float64, 2, 9, E)
        _compare(torch, tm, m, np.float64, rng, x, x, x, same=True)


def test_fully_masked_query_is_finite(backend, dtype, rng):
    m = nn.MultiheadAttention(8, 2, dtype=dtype, batch_first=True)
    x = _x(rng, dtype, 2, 5, 8)
    kpm = np.zeros((2, 5), bool)
    kpm[1] = True  # batch element 1 may attend to nothing
    y, w = m(x, x, x, key_padding_mask=kpm)
    grads = m.backward(np.ones_like(y))
    for a in (y, w) + grads + tuple(p.grad for p in m.parameters()):
        assert np.isfinite(a).all()
    assert (w[1] == 0).all()
    np.testing.assert_allclose(y[1], np.broadcast_to(m.out_proj.bias.data, (5, 8)), rtol=0, atol=0)


def test_state_dict_and_init(torch):
    tm = torch.nn.MultiheadAttention(12, 3, kdim=5, vdim=6)
    m = nn.MultiheadAttention(12, 3, kdim=5, vdim=6)
    assert list(m.state_dict()) == list(tm.state_dict())
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    m2 = nn.MultiheadAttention(12, 3, dtype=np.float64)
    assert list(m2.state_dict()) == list(torch.nn.MultiheadAttention(12, 3).state_dict())
    assert (m2.in_proj_bias.data == 0).all() and (m2.out_proj.bias.data == 0).all()
    bound = np.sqrt(6 / (12 + 36))
    assert np.abs(m2.in_proj_weight.data).max() <= bound


def test_input_of_other_dtype_is_cast(rng):
    m = nn.MultiheadAttention(8, 2, batch_first=True)
    x = _x(rng, np.float64, 2, 3, 8)
    y, w = m(x, x, x)
    assert y.dtype == np.float32 and w.dtype == np.float32
    assert all(g.dtype == np.float32 for g in m.backward(np.ones((2, 3, 8))))


def _bad(m, x, **kw):
    return lambda: m(x, x, x, **kw)


def test_bad_input(rng):
    with pytest.raises(ValueError, match="embed_dim: expected a multiple of num_heads"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="dropout"):
        nn.MultiheadAttention(8, 2, dropout=1.5)
    m = nn.MultiheadAttention(8, 2, batch_first=True)
    x = _x(rng, np.float32, 2, 5, 8)
    cases = [
        (lambda: m(x, x[:1], x[:1]), ValueError, "key, value: expected batch size"),
        (lambda: m(x, x, x[:, :3]), ValueError, "value: expected S"),
        (lambda: m(x, x[..., :4], x), ValueError, "key: expected shape"),
        (lambda: m(x[0, 0], x, x), ValueError, "query: expected a 3-D"),
        (_bad(m, x, attn_mask=np.zeros((5, 4))), ValueError, "attn_mask: expected shape"),
        (_bad(m, x, attn_mask=np.zeros((3, 5, 5))), ValueError, "attn_mask: expected shape"),
        (_bad(m, x, attn_mask=np.zeros((5, 5), int)), TypeError, "attn_mask"),
        (_bad(m, x, key_padding_mask=np.zeros((5, 2), bool)), ValueError, "key_padding_mask: expected shape"),
        (_bad(m, x, is_causal=True), ValueError, "is_causal: needs attn_mask"),
        (_bad(m, x, is_causal=1), TypeError, "is_causal"),
        (lambda: m.backward(np.ones((2, 5, 8))), ValueError, "no forward call"),
        (lambda: m(x.astype(int), x, x), TypeError, "query"),
    ]
    for fn, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fn()
    m(x, x, x)
    with pytest.raises(ValueError, match="grad_output: expected shape"):
        m.backward(np.ones((5, 2, 8)))


def _seed_sdpa(torch, q, k, v, d_k, mask=None):
    """The seed's ScaledDotProductAttention.forward (common-networks.md), verbatim in torch."""
    scores = torch.matmul(q, k.transpose(-2, -1)) / torch.sqrt(torch.tensor(d_k, dtype=q.dtype))
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)
    p_attn = torch.nn.functional.softmax(scores, dim=-1)
    return torch.matmul(p_attn, v), p_attn


def test_seed_scaled_dot_product_attention(backend, dtype, torch, rng):
    q, k, v = _x(rng, dtype, 2, 3, 5, 8), _x(rng, dtype, 2, 3, 6, 8), _x(rng, dtype, 2, 3, 6, 4)
    mask = (rng.random((2, 1, 5, 6)) < 0.7).astype(np.int64)
    mask[..., 0] = 1
    m = nn.ScaledDotProductAttention(8)
    out, w = m(q, k, v, mask)
    tq, tk, tv = (to_torch(torch, a, True) for a in (q, k, v))
    tout, tw = _seed_sdpa(torch, tq, tk, tv, 8, to_torch(torch, mask))
    assert_close(out, tout.detach().numpy(), dtype)
    assert_close(w, tw.detach().numpy(), dtype)
    g = _x(rng, dtype, *out.shape)
    tout.backward(to_torch(torch, g))
    for a, t in zip(m.backward(g), (tq, tk, tv)):
        assert_close(a, t.grad.numpy(), dtype)


def test_attention_dropout_in_training(dtype, torch, rng, monkeypatch):
    """Training with dropout > 0: torch's math (written out in torch) with the keep-mask our
    F.dropout drew (captured by a spy), for output, weights and every gradient."""
    E, H, N, L, p = 8, 2, 3, 5, 0.3
    tm, m = _pair(torch, dtype, E, H, rng, batch_first=True, dropout=p)
    m.rng = np.random.default_rng(7)
    masks = []
    real = F.dropout

    def spy(*a, **k):
        out, mask = real(*a, **k)
        masks.append(mask)
        return out, mask

    monkeypatch.setattr(F, "dropout", spy)
    x = _x(rng, dtype, N, L, E)
    kpm = rng.random((N, L)) < 0.3
    kpm[:, 0] = False
    y, w = m(x, x, x, key_padding_mask=kpm)
    (drop,) = masks
    assert set(np.unique(drop)) <= {0, dtype(1 / (1 - p))} and (drop == 0).any()
    g = _x(rng, dtype, N, L, E)
    gq, gk, gv = m.backward(g)

    tx = to_torch(torch, x, True)
    P = dict(tm.named_parameters())
    qkv = torch.nn.functional.linear(tx, P["in_proj_weight"], P["in_proj_bias"])
    q, k, v = (t.reshape(N, L, H, E // H).transpose(1, 2) for t in qkv.split(E, dim=-1))
    s = q @ k.transpose(-1, -2) / np.sqrt(E // H)
    s = s.masked_fill(to_torch(torch, kpm)[:, None, None, :], float("-inf"))
    tw = torch.softmax(s, -1) * to_torch(torch, drop)
    o = (tw @ v).transpose(1, 2).reshape(N, L, E)
    ty = torch.nn.functional.linear(o, P["out_proj.weight"], P["out_proj.bias"])
    ty.backward(to_torch(torch, g))
    assert_close(y, ty.detach().numpy(), dtype, scale=3)
    assert_close(w, tw.mean(1).detach().numpy(), dtype, scale=3)
    assert_close(gq + gk + gv, tx.grad.numpy(), dtype, scale=3)
    for name, prm in m.named_parameters():
        assert_close(prm.grad, P[name].grad.numpy(), dtype, scale=3, err_msg=name)
    m.eval()  # dropout off: the fused path, deterministic
    np.testing.assert_array_equal(m(x, x, x)[0], m(x, x, x)[0])
