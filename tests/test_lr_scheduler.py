"""Learning-rate schedulers: the lr sequence over 100 steps equals torch's (every group),
state_dicts have torch's keys and resume mid-run in both directions."""
import math

import numpy as np
import pytest

from fastnn import nn, optim
from fastnn.optim import lr_scheduler as S


class Warmup:  # a callable object: its __dict__ is saved, as torch does
    def __init__(self, k):
        self.k = k

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.k)


CASES = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[10, 30, 30, 75], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.97)),
    ("CosineAnnealingLR", dict(T_max=30, eta_min=1e-4)),
    ("CosineAnnealingLR", dict(T_max=100)),
    ("LinearLR", dict(start_factor=0.1, end_factor=0.9, total_iters=40)),
    ("LinearLR", dict()),
    ("OneCycleLR", dict(max_lr=[0.5, 0.2], total_steps=101)),
    ("OneCycleLR", dict(max_lr=0.3, epochs=10, steps_per_epoch=11, anneal_strategy="linear", three_phase=True,
                        pct_start=0.25)),
    ("LambdaLR", dict(lr_lambda=lambda e: 0.95 ** e)),
    ("LambdaLR", dict(lr_lambda="objects")),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
OPTS = {"SGD": dict(lr=0.1, momentum=0.9), "Adam": dict(lr=0.01)}


def _pair(torch, opt_name, kw):
    ps = [nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(3))]
    tps = [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)), torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))]
    o = getattr(optim, opt_name)([{"params": ps[:1]}, {"params": ps[1:], "lr": OPTS[opt_name]["lr"] / 2}],
                                 **OPTS[opt_name])
    to = getattr(torch.optim, opt_name)([{"params": tps[:1]}, {"params": tps[1:], "lr": OPTS[opt_name]["lr"] / 2}],
                                        **OPTS[opt_name])
    return ps, tps, o, to


def _make(cls_name, opt, kw):
    if kw.get("lr_lambda") == "objects":
        kw = dict(lr_lambda=[Warmup(10), Warmup(25)])
    mod = S if isinstance(opt, optim.Optimizer) else __import__("torch").optim.lr_scheduler
    return getattr(mod, cls_name)(opt, **kw)


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


@pytest.mark.parametrize("opt_name", sorted(OPTS))
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_lr_sequence_matches_torch(torch, name, kw, opt_name):
    ps, tps, o, to = _pair(torch, opt_name, kw)
    s, ts = _make(name, o, kw), _make(name, to, kw)
    assert s.get_last_lr() == ts.get_last_lr()
    steps = 100 if name != "OneCycleLR" else min(100, ts.total_steps - 1)
    for k in range(steps):
        o.step()
        to.step()
        s.step()
        ts.step()
        np.testing.assert_allclose(s.get_last_lr(), ts.get_last_lr(), rtol=1e-14, atol=0, err_msg=f"step {k}")
        assert [g["lr"] for g in o.param_groups] == s.get_last_lr()
        np.testing.assert_allclose(_momenta(o), _momenta(to), rtol=1e-14)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_state_dict_resumes_both_ways(torch, name, kw):
    ps, tps, o, to = _pair(torch, "SGD", kw)
    s, ts = _make(name, o, kw), _make(name, to, kw)
    for _ in range(37):
        o.step(), to.step(), s.step(), ts.step()
    sd, tsd = s.state_dict(), ts.state_dict()
    assert sorted(sd) == sorted(tsd)
    # torch's scheduler state (and the optimiser's groups: lr, initial_lr) resumes in fastnn;
    # as torch documents, the scheduler is created before the optimiser's state is loaded
    _, _, o2, _ = _pair(torch, "SGD", kw)
    s2 = _make(name, o2, kw)
    o2.load_state_dict({"state": {}, "param_groups": to.state_dict()["param_groups"]})
    s2.load_state_dict(tsd)
    # fastnn's resumes in torch
    _, _, _, to2 = _pair(torch, "SGD", kw)
    ts2 = _make(name, to2, kw)
    to2.load_state_dict({"state": {}, "param_groups": o.state_dict()["param_groups"]})
    ts2.load_state_dict(sd)
    for _ in range(40 if name != "OneCycleLR" else 20):
        for x in (o, to, o2, to2):
            x.step()
        for x in (s, ts, s2, ts2):
            x.step()
        want = ts.get_last_lr()
        np.testing.assert_allclose(s2.get_last_lr(), want, rtol=1e-14)
        np.testing.assert_allclose(ts2.get_last_lr(), want, rtol=1e-14)
        np.testing.assert_allclose([g["lr"] for g in o2.param_groups], want, rtol=1e-14)


@pytest.mark.parametrize("kw", [dict(), dict(mode="max", factor=0.5, patience=2, threshold=0.1, cooldown=3),
                                dict(threshold_mode="abs", threshold=0.05, patience=0, min_lr=[0.01, 0.02]),
                                dict(mode="max", threshold_mode="abs", patience=1, eps=0.02)])
def test_reduce_on_plateau_matches_torch(torch, kw):
    ps, tps, o, to = _pair(torch, "SGD", kw)
    s, ts = S.ReduceLROnPlateau(o, **kw), torch.optim.lr_scheduler.ReduceLROnPlateau(to, **kw)
    r = np.random.default_rng(0)
    metric = 10.0
    for k in range(100):
        metric = metric * (0.97 if k % 9 < 3 else 1.01) + 0.05 * r.standard_normal()
        s.step(metric)
        ts.step(metric)
        assert s.get_last_lr() == ts.get_last_lr(), k
        if k == 50:  # swap: fastnn goes on from torch's state, torch from fastnn's
            assert sorted(s.state_dict()) == sorted(ts.state_dict())
            s2 = S.ReduceLROnPlateau(o, **kw)
            s2.load_state_dict(ts.state_dict())
            ts2 = torch.optim.lr_scheduler.ReduceLROnPlateau(to, **kw)
            ts2.load_state_dict(s.state_dict())
            s, ts = s2, ts2
    if kw.get("patience", 10) < 10:
        assert s.get_last_lr() != [0.1, 0.05]  # it did reduce


def test_bad_arguments():
    o = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    with pytest.raises(TypeError, match="optimizer: expected a fastnn.optim.Optimizer"):
        S.StepLR(object(), 3)
    with pytest.raises(ValueError, match="step_size: expected an int >= 1"):
        S.StepLR(o, 0)
    with pytest.raises(ValueError, match="T_max: expected an int >= 1"):
        S.CosineAnnealingLR(o, 2.5)
    with pytest.raises(ValueError, match=r"start_factor: expected a number in \(0, 1\]"):
        S.LinearLR(o, start_factor=0)
    with pytest.raises(ValueError, match="total_steps: expected total_steps, or epochs"):
        S.OneCycleLR(o, max_lr=0.1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        S.OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="exp")
    with pytest.raises(ValueError, match="cycle_momentum"):
        S.OneCycleLR(optim.Adagrad([nn.Parameter(np.zeros(1))]), max_lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="lr_lambda: expected 1 functions"):
        S.LambdaLR(o, [math.exp, math.exp])
    with pytest.raises(ValueError, match=r"factor: expected a number in \[None, 1.0\)"):
        S.ReduceLROnPlateau(o, factor=1.0)
    with pytest.raises(ValueError, match="mode: expected 'min' or 'max'"):
        S.ReduceLROnPlateau(o, mode="up")
    with pytest.raises(KeyError, match="no 'initial_lr' to resume from"):
        S.StepLR(optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1), 3, last_epoch=5)
    s = S.OneCycleLR(o, max_lr=0.1, total_steps=3)
    s.step(), s.step(), s.step()
    with pytest.raises(ValueError, match="more than total_steps=3"):
        s.step()
