"""Optimisers follow torch's update rules step for step."""
import numpy as np
import pytest

from fastnn import nn, optim
from fnn_testing import assert_close


def run_both(torch, make_fastnn, make_torch, steps=5, seed=0, shape=(4, 3), dtype=np.float64):
    r = np.random.default_rng(seed)
    w0 = r.standard_normal(shape).astype(dtype)
    grads = [r.standard_normal(shape).astype(dtype) for _ in range(steps)]
    p = nn.Parameter(w0.copy())
    tp = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt, topt = make_fastnn([p]), make_torch([tp])
    for g in grads:
        p.grad = g.copy()
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        assert_close(p.data, tp.detach().numpy(), dtype)


@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9), dict(momentum=0.9, weight_decay=0.01),
                                dict(momentum=0.8, dampening=0.3), dict(momentum=0.9, nesterov=True)])
@pytest.mark.parametrize("shape", [(4, 3), (130, 131)], ids=["small", "parallel"])
def test_sgd_matches_torch(torch, backend, dtype, shape, kw):
    run_both(torch, lambda ps: optim.SGD(ps, lr=0.1, **kw), lambda ps: torch.optim.SGD(ps, lr=0.1, **kw),
             shape=shape, dtype=dtype)


@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=0.01), dict(amsgrad=True), dict(betas=(0.5, 0.9), eps=1e-6)])
@pytest.mark.parametrize("shape", [(4, 3), (130, 131)], ids=["small", "parallel"])
def test_adam_matches_torch(torch, backend, dtype, shape, kw):
    run_both(torch, lambda ps: optim.Adam(ps, lr=0.01, **kw), lambda ps: torch.optim.Adam(ps, lr=0.01, **kw),
             shape=shape, dtype=dtype)


def test_params_without_grad_are_skipped_and_dtype_kept():
    p = nn.Parameter(np.ones(3, np.float32))
    q = nn.Parameter(np.ones(3, np.float32))
    opt = optim.Adam([p, q], lr=0.1)
    p.grad = np.ones(3, np.float32)
    opt.step()
    assert p.data.dtype == np.float32 and np.all(p.data < 1) and np.all(q.data == 1)
    opt.zero_grad()
    assert p.grad is None


def test_bad_arguments():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="lr: expected a finite number >= 0"):
        optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="params: expected a non-empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]: expected a fastnn.nn.Parameter"):
        optim.Adam([np.ones(2)])
    with pytest.raises(ValueError, match="betas: expected two numbers"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov: requires momentum"):
        optim.SGD([p], lr=0.1, nesterov=True)
    p.grad = np.ones(3)
    with pytest.raises(ValueError, match=r"params\[0\].grad: expected shape \(2,\)"):
        optim.SGD([p], lr=0.1).step()
