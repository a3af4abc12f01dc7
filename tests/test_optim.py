"""Optimisers follow torch's update rules step for step (every backend, parameter groups,
parameters without gradients), and their state_dicts load both ways: torch's state (as
arrays) resumes in fastnn and fastnn's (as tensors) resumes in torch."""
import copy

import numpy as np
import pytest

from fastnn import nn, optim
from fnn_testing import assert_close

SHAPES = [(4, 3), (130, 131), (5,)]  # (130, 131): the kernels' multi-threaded branch

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, weight_decay=0.05, amsgrad=True)),
    ("Adam", dict(lr=0.02, betas=(0.3, 0.9), eps=1e-6, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True, betas=(0.6, 0.99))),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, alpha=0.3)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, eps=1e-4)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.02, initial_accumulator_value=0.1, eps=1e-6)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for n, kw in CASES]
GROUP2 = {"SGD": dict(lr=0.05, momentum=0.5), "Adam": dict(lr=0.003, amsgrad=False),
          "AdamW": dict(weight_decay=0.3), "RMSprop": dict(lr=0.02, alpha=0.9), "Adagrad": dict(lr=0.05)}


def _grads(seed, steps, dtype):
    r = np.random.default_rng(seed)
    out = []
    for k in range(steps):
        gs = [r.standard_normal(s).astype(dtype) for s in SHAPES]
        if k % 3 == 1:
            gs[2] = None  # a parameter without a gradient this step is skipped
        out.append(gs)
    return out


def _make(torch, name, kw, dtype, seed=0, values=None):
    """fastnn and torch optimisers over the same three parameters in two groups."""
    r = np.random.default_rng(seed)
    values = values or [r.standard_normal(s).astype(dtype) for s in SHAPES]
    ps = [nn.Parameter(v.copy()) for v in values]
    tps = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in values]
    g2 = GROUP2[name]
    opt = getattr(optim, name)([{"params": ps[:2]}, {"params": [ps[2]], **g2}], **kw)
    topt = getattr(torch.optim, name)([{"params": tps[:2]}, {"params": [tps[2]], **g2}], **kw)
    return ps, tps, opt, topt


def _step(ps, tps, opt, topt, gs):
    for p, tp, g in zip(ps, tps, gs):
        p.grad = None if g is None else g.copy()
        tp.grad = None if g is None else torch_from(tp, g)
    opt.step()
    topt.step()


def torch_from(tp, g):
    import torch

    return torch.from_numpy(g.copy())


def _check(ps, tps, dtype, msg=""):
    for i, (p, tp) in enumerate(zip(ps, tps)):
        assert p.data.dtype == dtype
        assert_close(p.data, tp.detach().numpy(), dtype, err_msg=f"param {i} {msg}")


def to_arrays(sd):
    """A torch optimiser state_dict with every tensor converted to an ndarray."""
    state = {k: {n: (v.numpy().copy() if hasattr(v, "numpy") else v) for n, v in st.items()}
             for k, st in sd["state"].items()}
    return {"state": state, "param_groups": copy.deepcopy(sd["param_groups"])}


def to_tensors(torch, sd):
    state = {k: {n: (torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v) for n, v in st.items()}
             for k, st in sd["state"].items()}
    return {"state": state, "param_groups": copy.deepcopy(sd["param_groups"])}


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_matches_torch_for_20_steps(torch, backend, dtype, name, kw):
    ps, tps, opt, topt = _make(torch, name, kw, dtype)
    for k, gs in enumerate(_grads(1, 20, dtype)):
        _step(ps, tps, opt, topt, gs)
        _check(ps, tps, dtype, f"step {k + 1}")


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_state_dict_layout_is_torchs(torch, name, kw):
    ps, tps, opt, topt = _make(torch, name, kw, np.float64)
    for gs in _grads(2, 3, np.float64):
        _step(ps, tps, opt, topt, gs)
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sorted(sd["state"]) == sorted(tsd["state"])
    for i in tsd["state"]:
        assert sorted(sd["state"][i]) == sorted(tsd["state"][i]), i
        for key, tv in tsd["state"][i].items():
            v = sd["state"][i][key]
            if key == "step":
                assert v.dtype == np.float32 and v.shape == () and float(v) == float(tv)
            else:
                assert_close(v, tv.numpy(), np.float64, err_msg=key)
    assert len(sd["param_groups"]) == len(tsd["param_groups"])
    for g, tg in zip(sd["param_groups"], tsd["param_groups"]):
        assert g == tg


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_resume_from_torch_state_and_torch_from_ours(torch, backend, name, kw):
    dt = np.float64
    grads = _grads(3, 20, dt)
    # torch runs 10 steps, saves; fastnn loads (arrays) and both go on for 10 steps
    ps, tps, opt, topt = _make(torch, name, kw, dt)
    for gs in grads[:10]:
        _step(ps, tps, opt, topt, gs)
    values = [tp.detach().numpy().copy() for tp in tps]
    ps2, _, opt2, _ = _make(torch, name, kw, dt, values=values)
    opt2.load_state_dict(to_arrays(topt.state_dict()))
    for k, gs in enumerate(grads[10:]):
        for p, g in zip(ps2, gs):
            p.grad = None if g is None else g.copy()
        opt2.step()
        _step(ps, tps, opt, topt, gs)
        _check(ps2, tps, dt, f"fastnn resumed from torch, step {k + 11}")
    # fastnn runs 10 steps, saves; torch loads (tensors) and both go on for 10 steps
    ps, tps, opt, topt = _make(torch, name, kw, dt, seed=5)
    for gs in grads[:10]:
        _step(ps, tps, opt, topt, gs)
    values = [p.data.copy() for p in ps]
    _, tps2, _, topt2 = _make(torch, name, kw, dt, values=values)
    topt2.load_state_dict(to_tensors(torch, opt.state_dict()))
    for k, gs in enumerate(grads[10:]):
        for tp, g in zip(tps2, gs):
            tp.grad = None if g is None else torch.from_numpy(g.copy())
        topt2.step()
        _step(ps, tps, opt, topt, gs)
        _check(ps, tps2, dt, f"torch resumed from fastnn, step {k + 11}")


def test_own_state_dict_round_trip_is_a_copy():
    p = nn.Parameter(np.ones(3))
    opt = optim.Adam([p], lr=0.1)
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"][...] = 99  # a copy: the optimiser's state is untouched
    assert not np.any(opt.state[p]["exp_avg"] == 99)
    q = nn.Parameter(p.data.copy())
    opt2 = optim.Adam([q], lr=0.5)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[0]["lr"] == 0.1 and opt2.param_groups[0]["params"][0] is q
    q.grad, p.grad = np.ones(3), np.ones(3)
    opt.step()
    opt2.step()
    np.testing.assert_array_equal(q.data, p.data)  # both took the same two steps
    assert float(opt2.state[q]["step"]) == 2.0


def test_param_groups_and_add_param_group():
    a, b, c = (nn.Parameter(np.ones(2)) for _ in range(3))
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.9
    opt.add_param_group({"params": [c], "lr": 0.01})
    assert opt.params == [a, b, c]
    for p in (a, b, c):
        p.grad = np.ones(2)
    opt.step()
    np.testing.assert_allclose([a.data[0], b.data[0], c.data[0]], [0.9, 0.5, 0.99])
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(TypeError, match="param_group: expected a dict"):
        opt.add_param_group([c])
    with pytest.raises(ValueError, match="lr: expected a finite number >= 0"):
        opt.add_param_group({"params": [nn.Parameter(np.ones(1))], "lr": -1})


def test_adagrad_state_exists_from_construction(torch):
    p = nn.Parameter(np.ones((2, 2)))
    tp = torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64))
    sd = optim.Adagrad([p], initial_accumulator_value=0.5).state_dict()
    tsd = to_arrays(torch.optim.Adagrad([tp], initial_accumulator_value=0.5).state_dict())
    assert sorted(sd["state"][0]) == sorted(tsd["state"][0]) == ["step", "sum"]
    np.testing.assert_array_equal(sd["state"][0]["sum"], tsd["state"][0]["sum"])


def test_params_without_grad_are_skipped_and_dtype_kept():
    p = nn.Parameter(np.ones(3, np.float32))
    q = nn.Parameter(np.ones(3, np.float32))
    opt = optim.AdamW([p, q], lr=0.1)
    p.grad = np.ones(3, np.float32)
    assert opt.step(lambda: 1.5) == 1.5  # the closure's loss is returned
    assert p.data.dtype == np.float32 and np.all(p.data < 1) and np.all(q.data == 1)
    assert list(opt.state_dict()["state"]) == [0]
    opt.zero_grad()
    assert p.grad is None


def test_readonly_and_noncontiguous_parameter_data():
    p = nn.Parameter(np.ones(4))
    p.data = np.ones((4, 2))[:, 0]  # a strided view
    p.data.setflags(write=False)
    opt = optim.SGD([p], lr=0.5)
    p.grad = np.ones(4)
    opt.step()
    np.testing.assert_array_equal(p.data, np.full(4, 0.5))


def test_bad_arguments():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="lr: expected a finite number >= 0"):
        optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="params: expected a non-empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]: expected a fastnn.nn.Parameter"):
        optim.Adam([np.ones(2)])
    with pytest.raises(TypeError, match="a set has no order"):
        optim.Adam({p})
    with pytest.raises(ValueError, match="betas: expected two numbers"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov: requires momentum"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="alpha: expected a finite number >= 0"):
        optim.RMSprop([p], alpha=-0.5)
    with pytest.raises(ValueError, match="lr_decay: expected a finite number >= 0"):
        optim.Adagrad([p], lr_decay=float("nan"))
    with pytest.raises(ValueError, match="a parameter appears twice"):
        optim.SGD([p, p], lr=0.1)
    p.grad = np.ones(3)
    with pytest.raises(ValueError, match=r"params\[0\].grad: expected shape \(2,\)"):
        optim.SGD([p], lr=0.1).step()


def test_bad_state_dicts():
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))
    opt = optim.Adam([p, q])
    p.grad, q.grad = np.ones(2), np.ones(3)
    opt.step()
    good = opt.state_dict()
    fresh = optim.Adam([nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))])
    with pytest.raises(TypeError, match="expected a dict with keys 'state' and 'param_groups'"):
        fresh.load_state_dict({"state": {}})
    bad = copy.deepcopy(good)
    bad["param_groups"][0]["params"] = [0]
    with pytest.raises(ValueError, match=r"param_groups'\]\[0\]: expected 2 params, got 1"):
        fresh.load_state_dict(bad)
    bad = copy.deepcopy(good)
    bad["state"][1]["exp_avg"] = np.ones(2)
    with pytest.raises(ValueError, match=r"\['exp_avg'\]: expected shape \(3,\), got \(2,\)"):
        fresh.load_state_dict(bad)
    bad = copy.deepcopy(good)
    bad["state"][7] = bad["state"].pop(1)
    with pytest.raises(KeyError, match="index 7 is not a parameter"):
        fresh.load_state_dict(bad)
    bad = copy.deepcopy(good)
    bad["state"][0]["exp_avg"] = "abc"
    with pytest.raises(TypeError, match="expected a real number or array"):
        fresh.load_state_dict(bad)
    bad = copy.deepcopy(good)
    bad["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr: expected a finite number"):
        fresh.load_state_dict(bad)
    assert fresh.state == {}  # nothing loaded from the refused state dicts
    with pytest.raises(ValueError, match="has 2 parameter groups, this optimiser 1"):
        optim.Adam([p]).load_state_dict({"state": {}, "param_groups": [{"params": []}, {"params": []}]})
