"""Gradient clipping matches torch.nn.utils: the returned total norm (a 0-d array of the
gradients' dtype) and the clipped gradients, for every norm type."""
import numpy as np
import pytest

from fastnn import nn
from fnn_testing import assert_close

SHAPES = [(3, 4), (7,), (2, 3, 5), (1,)]


def _pair(torch, dtype, seed=0, scale=1.0, none_at=2):
    r = np.random.default_rng(seed)
    ps, tps = [], []
    for i, s in enumerate(SHAPES):
        p = nn.Parameter(np.zeros(s, dtype))
        tp = torch.nn.Parameter(torch.zeros(s, dtype=torch.float32 if dtype == np.float32 else torch.float64))
        if i != none_at:  # one parameter without a gradient
            g = (r.standard_normal(s) * scale).astype(dtype)
            g.reshape(-1)[0] = 0.0  # a zero, for the 0-"norm" (count of non-zeros)
            p.grad = g.copy()
            tp.grad = torch.from_numpy(g.copy())
        ps.append(p)
        tps.append(tp)
    return ps, tps


@pytest.mark.parametrize("norm_type", [2.0, 1, 3, 0.5, float("inf"), "inf", -float("inf"), 0])
@pytest.mark.parametrize("max_norm", [0.1, 1e3], ids=["clips", "keeps"])
def test_clip_grad_norm_matches_torch(torch, dtype, norm_type, max_norm):
    ps, tps = _pair(torch, dtype)
    total = nn.utils.clip_grad_norm_(ps, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type=norm_type)
    assert isinstance(total, np.ndarray) and total.shape == () and total.dtype == dtype
    assert_close(total, ttotal.numpy(), dtype)
    for p, tp in zip(ps, tps):
        if tp.grad is None:
            assert p.grad is None
        else:
            assert_close(p.grad, tp.grad.numpy(), dtype)


def test_single_parameter_and_generator(torch):
    ps, tps = _pair(torch, np.float64, none_at=-1)
    assert_close(nn.utils.clip_grad_norm_(ps[0], 0.5), torch.nn.utils.clip_grad_norm_(tps[0], 0.5).numpy())
    assert_close(nn.utils.clip_grad_norm_((p for p in ps), 0.5),
                 torch.nn.utils.clip_grad_norm_((p for p in tps), 0.5).numpy())
    for p, tp in zip(ps, tps):
        assert_close(p.grad, tp.grad.numpy())


def test_no_gradients_returns_zero(torch):
    p = nn.Parameter(np.zeros(3))
    total = nn.utils.clip_grad_norm_([p], 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_([torch.nn.Parameter(torch.zeros(3))], 1.0)
    assert total.shape == () and total.dtype == np.float32 and float(total) == float(ttotal) == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_norm(torch, bad):
    ps, tps = _pair(torch, np.float64)
    ps[0].grad[1, 1] = bad
    tps[0].grad[1, 1] = bad
    before = [None if p.grad is None else p.grad.copy() for p in ps]
    with pytest.raises(ValueError, match="non-finite"):
        nn.utils.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_(tps, 1.0, error_if_nonfinite=True)
    for p, b in zip(ps, before):  # untouched after the error
        if b is not None:
            np.testing.assert_array_equal(p.grad, b)
    total = nn.utils.clip_grad_norm_(ps, 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, 1.0)
    np.testing.assert_array_equal(total, ttotal.numpy())
    for p, tp in zip(ps, tps):
        if p.grad is not None:
            np.testing.assert_array_equal(p.grad, tp.grad.numpy())  # NaN where torch has NaN


@pytest.mark.parametrize("clip", [0.3, 2.0])
def test_clip_grad_value_matches_torch(torch, dtype, clip):
    ps, tps = _pair(torch, dtype, scale=2.0)
    ps[0].grad[0, 1] = np.nan
    tps[0].grad[0, 1] = np.nan
    assert nn.utils.clip_grad_value_(ps, clip) is None
    torch.nn.utils.clip_grad_value_(tps, clip)
    for p, tp in zip(ps, tps):
        if p.grad is not None:
            np.testing.assert_array_equal(p.grad, tp.grad.numpy())


def test_readonly_gradients_are_replaced_not_written():
    p = nn.Parameter(np.zeros(2))
    g = np.array([3.0, 4.0])
    g.setflags(write=False)
    p.grad = g
    nn.utils.clip_grad_norm_([p], 1.0)
    np.testing.assert_array_equal(g, [3.0, 4.0])
    np.testing.assert_allclose(p.grad, [0.6, 0.8], rtol=1e-6)
    p.grad = g
    nn.utils.clip_grad_value_([p], 3.5)
    np.testing.assert_array_equal(p.grad, [3.0, 3.5])


def test_bad_arguments():
    p = nn.Parameter(np.zeros(2))
    with pytest.raises(TypeError, match=r"parameters\[0\]: expected a fastnn.nn.Parameter"):
        nn.utils.clip_grad_norm_([np.zeros(2)], 1.0)
    with pytest.raises(TypeError, match="parameters: expected a Parameter or an iterable"):
        nn.utils.clip_grad_value_(3, 1.0)
    with pytest.raises(TypeError, match="max_norm: expected a real number"):
        nn.utils.clip_grad_norm_([p], "1")
    with pytest.raises(TypeError, match="norm_type: expected a number or 'inf'"):
        nn.utils.clip_grad_norm_([p], 1.0, norm_type="l2")
    with pytest.raises(TypeError, match="clip_value: expected a real number"):
        nn.utils.clip_grad_value_([p], None)
