"""Modules: torch parity from a loaded state_dict, caches, dtypes, state_dict errors."""
import numpy as np
import pytest

import fastnn
from fastnn import functional as F
from fastnn import nn
from fnn_testing import assert_close, to_torch


def torch_mlp(torch, dtype):
    tm = torch.nn.Sequential(torch.nn.Linear(11, 7), torch.nn.Sigmoid(), torch.nn.Linear(7, 5), torch.nn.Tanh(),
                             torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    return tm.to(torch.float64 if dtype == np.float64 else torch.float32)


def fastnn_mlp(dtype):
    return nn.Sequential(nn.Linear(11, 7, dtype=dtype), nn.Sigmoid(), nn.Linear(7, 5, dtype=dtype),
                         nn.Tanh(), nn.Linear(5, 4, dtype=dtype), nn.ReLU(),
                         nn.Linear(4, 3, dtype=dtype))


def test_sequential_matches_torch(torch, backend, dtype, rng):
    tm = torch_mlp(torch, dtype)
    m = fastnn_mlp(dtype)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    assert list(m.state_dict()) == list(tm.state_dict())
    x = rng.standard_normal((6, 11)).astype(dtype)
    t = rng.integers(0, 3, 6)
    xt = to_torch(torch, x, True)
    loss_t = torch.nn.functional.cross_entropy(tm(xt), torch.from_numpy(t))
    loss_t.backward()
    logits = m(x)
    assert_close(F.cross_entropy(logits, t), loss_t.detach().numpy(), dtype)
    gx = m.backward(F.cross_entropy_backward(logits, t))
    assert_close(gx, xt.grad.numpy(), dtype)
    tgrads = {k: p.grad.numpy() for k, p in tm.named_parameters()}
    for name, p in m.named_parameters():
        assert_close(p.grad, tgrads[name], dtype, err_msg=name)


def test_grads_accumulate_and_zero(rng):
    m = nn.Linear(3, 2, dtype=np.float64)
    x = rng.standard_normal((4, 3))
    g = rng.standard_normal((4, 2))
    m(x)
    m.backward(g)
    first = m.weight.grad.copy()
    m(x)
    m.backward(g)
    assert_close(m.weight.grad, 2 * first)
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None


def test_stack_of_caches_pops_in_reverse(rng):
    m = nn.Linear(3, 2, dtype=np.float64)
    x1, x2 = rng.standard_normal((2, 3)), rng.standard_normal((5, 3))
    g1, g2 = rng.standard_normal((2, 2)), rng.standard_normal((5, 2))
    m(x1)
    m(x2)
    assert m.backward(g2).shape == (5, 3)
    assert m.backward(g1).shape == (2, 3)
    assert_close(m.weight.grad, g1.T @ x1 + g2.T @ x2)
    with pytest.raises(ValueError, match="no forward call is waiting"):
        m.backward(g1)


def test_eval_and_no_grad_bound_the_caches(rng):
    m = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    x = rng.random((2, 3), dtype=np.float32)
    m.eval()
    for _ in range(5):
        m(x)
    assert len(m[0]._caches) == 1
    m.train()
    m[0]._caches.clear()
    with nn.no_grad():
        m(x)
    assert not m[0]._caches and nn.is_grad_enabled()


def test_dtype_casting_and_to(rng):
    m = nn.Linear(3, 2)
    assert m.weight.dtype == np.float32
    y = m(rng.standard_normal((2, 3)))  # float64 input is cast to the module's float32
    assert y.dtype == np.float32
    m.to(np.float64)
    assert m.weight.dtype == np.float64 and m(np.ones((1, 3), np.float32)).dtype == np.float64
    with pytest.raises(TypeError, match="input: expected a float32 or float64"):
        m(np.ones((1, 3), dtype=int))
    with pytest.raises(TypeError, match="dtype: expected np.float32 or np.float64"):
        nn.Linear(2, 2, dtype=np.int32)


def test_linear_init_like_torch():
    fastnn.manual_seed(0)
    m = nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    assert m.weight.shape == (300, 400) and m.bias.shape == (300,)
    assert np.abs(m.weight.data).max() <= bound and np.abs(m.weight.data).max() > 0.95 * bound
    assert abs(m.weight.data.std() - bound / np.sqrt(3)) < 0.01 * bound
    assert nn.Linear(3, 2, bias=False).bias is None
    assert [k for k, _ in nn.Linear(3, 2, bias=False).named_parameters()] == ["weight"]


def test_load_state_dict_errors_and_casting():
    m = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid(), nn.Linear(2, 1))
    sd = m.state_dict()
    with pytest.raises(KeyError, match=r"missing \['2.bias'\]"):
        m.load_state_dict({k: v for k, v in sd.items() if k != "2.bias"})
    with pytest.raises(KeyError, match=r"unexpected \['extra'\]"):
        m.load_state_dict({**sd, "extra": np.ones(1)})
    with pytest.raises(ValueError, match=r"state_dict\['0.weight'\]: expected shape \(2, 3\), got \(3, 2\)"):
        m.load_state_dict({**sd, "0.weight": np.ones((3, 2))})
    with pytest.raises(TypeError, match="expected a real numeric array"):
        m.load_state_dict({**sd, "0.bias": np.array(["a", "b"])})
    with pytest.raises(TypeError, match="state_dict: expected a mapping"):
        m.load_state_dict([1, 2])
    before = m.state_dict()
    with pytest.raises(ValueError):  # nothing is copied unless every entry passes
        m.load_state_dict({**{k: v + 1 for k, v in sd.items()}, "2.weight": np.ones(3)})
    for k in before:
        np.testing.assert_array_equal(m.state_dict()[k], before[k])
    missing, unexpected = m.load_state_dict({"0.weight": np.zeros((2, 3))}, strict=False)
    assert "0.bias" in missing and not unexpected
    m.load_state_dict({k: v.astype(np.float64) + 1 for k, v in sd.items()})
    assert m[0].weight.dtype == np.float32
    assert_close(m[0].weight.data, sd["0.weight"] + 1)


def test_flatten_softmax_dropout_modules(torch, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    f = nn.Flatten()
    y = f(x)
    assert y.shape == (2, 60)
    assert f.backward(np.ones_like(y)).shape == x.shape
    assert nn.Flatten(0, 2)(x).shape == (24, 5)
    s = nn.Softmax(dim=1)
    xt = to_torch(torch, x, True)
    yt = torch.softmax(xt, 1)
    g = rng.standard_normal(x.shape).astype(np.float32)
    yt.backward(to_torch(torch, g))
    assert_close(s(x), yt.detach().numpy())
    assert_close(s.backward(g), xt.grad.numpy())
    d = nn.Dropout(0.5, rng=np.random.default_rng(0))
    out = d(x)
    assert_close(d.backward(np.ones_like(x)), (out != 0) * 2.0)
    d.eval()
    np.testing.assert_array_equal(d(x), x)
    with pytest.raises(ValueError, match="p: expected a probability"):
        nn.Dropout(2)
    with pytest.raises(TypeError, match=r"modules\[1\]: expected a fastnn.nn.Module"):
        nn.Sequential(nn.ReLU(), "relu")


def test_repr_and_parameters():
    m = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    assert "Linear(in_features=3, out_features=2, bias=True)" in repr(m)
    assert len(m.parameters()) == 2 and len(m) == 2


PARAMETER_FREE = [
    lambda: nn.ReLU(), lambda: nn.Sigmoid(), lambda: nn.Tanh(), lambda: nn.Softmax(1), lambda: nn.Flatten(),
    lambda: nn.Dropout(0.3, rng=np.random.default_rng(0)), lambda: nn.MaxPool2d(2), lambda: nn.AvgPool2d(2),
]


@pytest.mark.parametrize("make", PARAMETER_FREE)
@pytest.mark.parametrize("train", [True, False])
def test_parameter_free_modules_keep_the_input_dtype(make, train, dtype, rng):
    """Like torch: a module without parameters has no dtype; output and input gradient take the
    input's dtype (a float32 gradient for a float64 forward is cast to float64)."""
    m = make().train(train)
    assert m.dtype is None
    x = rng.standard_normal((2, 3, 4, 4)).astype(dtype)
    y = m(x)
    assert y.dtype == dtype
    other = np.float32 if dtype == np.float64 else np.float64
    g = m.backward(rng.standard_normal(y.shape).astype(other))
    assert g.dtype == dtype and g.shape == x.shape
    with pytest.raises(TypeError):
        type(m)(dtype=np.float64)


def test_float64_model_stays_float64(torch, rng):
    """The float64 MLP of the reliability issue: its sigmoid used to run in float32 (1e-8 off)."""
    m = nn.Sequential(nn.Linear(784, 256, dtype=np.float64), nn.Sigmoid(), nn.Linear(256, 10, dtype=np.float64))
    tm = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.Sigmoid(), torch.nn.Linear(256, 10)).double()
    m.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    x = rng.standard_normal((5, 784))
    y = m(x)
    assert y.dtype == np.float64
    assert_close(y, tm(torch.from_numpy(x)).detach().numpy(), np.float64)
    m.to(np.float32)
    assert m[1].dtype is None and m[0].dtype == np.float32 and m(x).dtype == np.float32


@pytest.mark.parametrize("train", [True, False])
def test_sequential_fuses_conv_relu_with_the_same_result(backend, dtype, rng, train):
    """Conv2d followed by ReLU runs fused inside Sequential; the result and every gradient are
    those of the two modules called one after the other."""
    layers = [nn.Conv2d(3, 8, 3, padding=1, dtype=dtype, rng=np.random.default_rng(1)), nn.ReLU(), nn.MaxPool2d(2),
              nn.Conv2d(8, 4, 3, dtype=dtype, rng=np.random.default_rng(2)), nn.ReLU()]
    seq = nn.Sequential(*layers).train(train)
    x = rng.standard_normal((5, 3, 10, 10)).astype(dtype)
    y = seq(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = seq.backward(g)
    grads = [p.grad.copy() for p in seq.parameters()]
    seq.zero_grad()
    h = x
    for m in layers:  # one by one: no fusion
        h = m(h)
    gh = g
    for m in reversed(layers):
        gh = m.backward(gh)
    np.testing.assert_array_equal(y, h)
    np.testing.assert_array_equal(gx, gh)
    for a, p in zip(grads, seq.parameters()):
        np.testing.assert_array_equal(a, p.grad)
    with pytest.raises(ValueError, match="no forward call"):
        seq.backward(g)
