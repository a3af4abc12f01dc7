"""nn.Embedding / F.embedding: gather and scatter-add kernels vs the reference (repeated ids),
torch parity (padding_idx, state_dict), odd inputs, refused inputs."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastnn
from fastnn import functional as F, nn
from fastnn._validate import IndexOutOfRangeError
from fastnn.kernels.embedding import reference as ref

from fnn_testing import assert_close, noncontiguous, readonly, to_torch


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])  # backend: fixed per test
@given(V=st.sampled_from([1, 2, 7, 31]), D=st.sampled_from([1, 3, 16, 17, 40]), N=st.sampled_from([0, 1, 5, 97]))
def test_kernels_match_reference(fast_backend, dtype, V, D, N):
    rng = np.random.default_rng(V * 1000 + D * 10 + N)
    w = rng.standard_normal((V, D)).astype(dtype)
    ids = rng.integers(0, V, N).astype(np.int64)        # many repeats when N > V
    g = rng.standard_normal((N, D)).astype(dtype)
    out_ref, gw_ref = np.empty((N, D), dtype), np.empty((V, D), dtype)
    ref.embedding_forward(w, ids, out_ref)
    ref.embedding_backward(g, ids, gw_ref)
    assert_close(F.embedding(ids, w), out_ref)
    assert_close(F.embedding_backward(g, ids, V), gw_ref, scale=10)


def test_matches_torch_repeated_ids_and_padding(torch, backend, dtype, rng):
    V, D = 11, 6
    ids = np.array([[1, 3, 3, 0], [3, 10, 1, 3], [0, 0, 5, 3]])  # repeated ids and padding
    m = nn.Embedding(V, D, padding_idx=0, dtype=dtype, rng=rng)
    t = torch.nn.Embedding(V, D, padding_idx=0).to(torch.float64 if dtype == np.float64 else torch.float32)
    assert not m.weight.data[0].any()                        # padding row starts at zero, as torch
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    g = rng.standard_normal((3, 4, D)).astype(dtype)
    out = m(ids)
    assert m.backward(g) is None
    ot = t(torch.from_numpy(ids))
    ot.backward(to_torch(torch, g))
    assert out.dtype == dtype and out.shape == (3, 4, D)
    assert_close(out, ot.detach().numpy())
    assert_close(m.weight.grad, t.weight.grad.numpy(), scale=10)
    assert not m.weight.grad[0].any()


def test_stack_of_caches_accumulates(rng):
    m = nn.Embedding(5, 3, dtype=np.float64)
    a, b = np.array([1, 1, 2]), np.array([[4], [1]])
    ga, gb = rng.standard_normal((3, 3)), rng.standard_normal((2, 1, 3))
    m(a), m(b)
    m.backward(gb)
    m.backward(ga)
    want = np.zeros((5, 3))
    np.add.at(want, a, ga)
    np.add.at(want, b.ravel(), gb.reshape(2, 3))
    assert_close(m.weight.grad, want)


def test_noncontiguous_readonly_and_unchanged(fast_backend, rng):
    w = rng.standard_normal((9, 4))
    ids = np.array([[8, 0, 8], [2, 2, 1]])
    want = w[ids]
    wr, idr = readonly(w), readonly(ids)
    assert_close(F.embedding(noncontiguous(ids), noncontiguous(w)), want)
    assert_close(F.embedding(idr, wr), want)
    g = readonly(rng.standard_normal((2, 3, 4)))
    gw = F.embedding_backward(noncontiguous(g), idr, 9)
    exp = np.zeros((9, 4))
    np.add.at(exp, ids.ravel(), g.reshape(6, 4))
    assert_close(gw, exp)
    assert np.array_equal(wr, w) and np.array_equal(idr, ids)


def test_ids_of_other_int_dtypes(rng):
    w = rng.standard_normal((4, 2))
    for dt in (np.int8, np.uint16, np.int32):
        assert_close(F.embedding(np.array([3, 0], dtype=dt), w), w[[3, 0]])


@pytest.mark.parametrize("ids, err, match", [
    (np.array([0, 5]), IndexError, r"\[0, 5\)"),
    (np.array([-1, 2]), IndexError, r"\[0, 5\)"),
    (np.array([0.0, 1.0]), TypeError, "integer"),
    (np.array([True, False]), TypeError, "integer"),
    ("ab", TypeError, "integer"),
])
def test_refuses_bad_ids(ids, err, match):
    m = nn.Embedding(5, 3)
    with pytest.raises(err, match=match):
        m(ids)
    with pytest.raises(err, match=match):
        F.embedding_backward(np.zeros(np.shape(ids) + (3,)), ids, 5)


def test_out_of_range_is_also_a_value_error():
    with pytest.raises(IndexOutOfRangeError):
        F.embedding(np.array([7]), np.zeros((5, 2)))


def test_refuses_bad_weight_grad_and_args():
    with pytest.raises(TypeError, match="weight"):
        F.embedding(np.array([0]), np.zeros((3, 2), dtype=int))
    with pytest.raises(ValueError, match="weight"):
        F.embedding(np.array([0]), np.zeros(3))
    with pytest.raises(ValueError, match="grad_out"):
        F.embedding_backward(np.zeros((2, 3)), np.array([0, 1, 1]), 4)
    with pytest.raises(TypeError, match="grad_out"):
        F.embedding_backward(np.zeros((3, 3), dtype=int), np.array([0, 1, 1]), 4)
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(4, 2, padding_idx=4)
    with pytest.raises(TypeError, match="padding_idx"):
        nn.Embedding(4, 2, padding_idx=1.0)
    with pytest.raises(ValueError, match="num_embeddings"):
        nn.Embedding(0, 2)
    with pytest.raises(ValueError, match="no forward call"):
        nn.Embedding(4, 2).backward(np.zeros((1, 2)))
    assert nn.Embedding(4, 2, padding_idx=-1).padding_idx == 3  # negative counts from the end, as torch
