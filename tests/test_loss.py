"""Losses: every option against torch (forward and input gradient, with upstream gradients),
every backend against the reference kernel, float64 central differences, extreme logits,
layouts, modules and refused inputs."""
import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnn
from fastnn import functional as F
from fastnn import nn
from fnn_testing import assert_close, central_diff, noncontiguous, readonly, to_torch


def ref(fn, *args, **kw):
    with fastnn.use_backend("reference"):
        return fn(*args, **kw)


REDUCTIONS = ("mean", "sum", "none")


def _upstream(loss_shape, reduction, dtype, r):
    return r.standard_normal(loss_shape).astype(dtype) if reduction == "none" else 1.7


def _torch_grad(torch, fn, x, *args, upstream, **kw):
    xt = to_torch(torch, x, True)
    lt = fn(xt, *args, **kw)
    lt.backward(torch.as_tensor(upstream, dtype=lt.dtype) if np.ndim(upstream) else torch.tensor(upstream, dtype=lt.dtype))
    return lt.detach().numpy(), xt.grad.numpy()


# ---------------------------------------------------------------- pointwise losses
def _put(a, values):
    """Write special values into the first elements of ``a`` (as many as fit)."""
    flat = a.reshape(-1)
    k = min(flat.size, len(values))
    flat[:k] = values[:k]


def _pointwise_cases(r, shape, dtype):
    """(name, fastnn forward, fastnn backward, torch function, input, target, fastnn kw, torch kw)."""
    x = (r.standard_normal(shape) * 2).astype(dtype)
    t = (r.standard_normal(shape) * 2).astype(dtype)
    _put(t, x.reshape(-1)[:2])  # d == 0: the kinks of L1 and smooth L1
    p = r.uniform(0.02, 0.98, shape).astype(dtype)
    _put(p, [0.0, 1.0])  # log clamped at -100
    q = r.uniform(0, 1, shape).astype(dtype)
    _put(q, [0.3, 0.0, 1.0])
    logq = np.log(r.uniform(0.05, 1, shape)).astype(dtype)
    w = r.uniform(0.5, 2, shape[-1:]).astype(dtype)
    pw = r.uniform(0.5, 3, shape[-1:]).astype(dtype)
    logits = (r.standard_normal(shape) * 3).astype(dtype)
    _put(logits, [1e4, -1e4])
    logp = np.log(r.dirichlet(np.ones(shape[-1]), shape[:-1])).astype(dtype)
    cases = [
        ("mse", F.mse_loss, F.mse_loss_backward, "mse_loss", x, t, {}),
        ("l1", F.l1_loss, F.l1_loss_backward, "l1_loss", x, t, {}),
        ("smooth_l1", F.smooth_l1_loss, F.smooth_l1_loss_backward, "smooth_l1_loss", x, t, {}),
        ("smooth_l1 beta=0.5", F.smooth_l1_loss, F.smooth_l1_loss_backward, "smooth_l1_loss", x, t, dict(beta=0.5)),
        ("smooth_l1 beta=0", F.smooth_l1_loss, F.smooth_l1_loss_backward, "smooth_l1_loss", x, t, dict(beta=0.0)),
        ("huber", F.huber_loss, F.huber_loss_backward, "huber_loss", x, t, {}),
        ("huber delta=2.5", F.huber_loss, F.huber_loss_backward, "huber_loss", x, t, dict(delta=2.5)),
        ("bce", F.binary_cross_entropy, F.binary_cross_entropy_backward, "binary_cross_entropy", p, q, {}),
        ("bce weight", F.binary_cross_entropy, F.binary_cross_entropy_backward, "binary_cross_entropy", p, q,
         dict(weight=w)),
        ("bce_logits", F.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits_backward,
         "binary_cross_entropy_with_logits", logits, q, {}),
        ("bce_logits weight pos_weight", F.binary_cross_entropy_with_logits,
         F.binary_cross_entropy_with_logits_backward, "binary_cross_entropy_with_logits", logits, q,
         dict(weight=w, pos_weight=pw)),
        ("kl", F.kl_div, F.kl_div_backward, "kl_div", logp, q, {}),
        ("kl log_target", F.kl_div, F.kl_div_backward, "kl_div", logp, logq, dict(log_target=True)),
    ]
    return cases


def _torch_kw(torch, kw):
    return {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}


@pytest.mark.parametrize("shape", [(7, 5), (3, 1, 4, 2), (1,)], ids=["2d", "4d", "one"])
def test_pointwise_losses_match_torch(torch, backend, dtype, shape):
    r = np.random.default_rng(sum(shape))
    for name, fwd, bwd, tname, x, t, kw in _pointwise_cases(r, shape, dtype):
        reductions = REDUCTIONS + (("batchmean",) if tname == "kl_div" else ())
        for red in reductions:
            g = _upstream(shape, red, dtype, r)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's warning about kl_div's "mean"
                want, gwant = _torch_grad(torch, getattr(torch.nn.functional, tname), x, to_torch(torch, t),
                                          upstream=g, reduction=red, **_torch_kw(torch, kw))
            msg = f"{name} {red} {backend}"
            got = fwd(x, t, reduction=red, **kw)
            assert got.dtype == dtype and got.shape == want.shape, msg
            assert_close(got, want, dtype, err_msg=msg)
            assert_close(bwd(x, t, reduction=red, grad_output=g, **kw), gwant, dtype, err_msg=msg)
            if red != "none":  # default upstream gradient: 1
                assert_close(bwd(x, t, reduction=red, **kw), gwant / 1.7, dtype, err_msg=msg)


def test_bce_with_logits_is_stable_for_extreme_logits(torch, backend, dtype):
    x = np.array([[1e4, -1e4, 50.0], [-50.0, 1e4, -1e4]], dtype)
    t = np.array([[1.0, 0.0, 0.3], [0.0, 0.0, 1.0]], dtype)
    pw = np.array([3.0, 0.5, 2.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kw in ({}, dict(pos_weight=pw)):
            for red in REDUCTIONS:
                want, gwant = _torch_grad(torch, torch.nn.functional.binary_cross_entropy_with_logits, x,
                                          to_torch(torch, t), upstream=_upstream(x.shape, red, dtype,
                                                                                 np.random.default_rng(0)),
                                          reduction=red, **_torch_kw(torch, kw))
                got = F.binary_cross_entropy_with_logits(x, t, reduction=red, **kw)
                g = F.binary_cross_entropy_with_logits_backward(
                    x, t, reduction=red, grad_output=_upstream(x.shape, red, dtype, np.random.default_rng(0)), **kw)
                assert np.all(np.isfinite(got)) and np.all(np.isfinite(g))
                assert_close(got, want, dtype)
                assert_close(g, gwant, dtype)


# ---------------------------------------------------------------- class losses
def _class_data(r, shape, dtype, ignore_index, n_ignored):
    c = shape[1] if len(shape) > 1 else shape[0]
    loss_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    logits = (r.standard_normal(shape) * 3).astype(dtype)
    t = r.integers(0, c, loss_shape)
    if n_ignored and t.size:
        flat = t.reshape(-1)
        flat[r.choice(flat.size, min(n_ignored, flat.size), replace=False)] = ignore_index
    return logits, t, c, loss_shape


CE_SHAPES = [(7, 5), (3, 4, 2, 3), (2, 3, 5), (5,), (1, 1)]


@pytest.mark.parametrize("shape", CE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cross_entropy_matches_torch(torch, backend, dtype, shape):
    tf = torch.nn.functional
    r = np.random.default_rng(len(shape) * 31 + shape[0])
    c = shape[1] if len(shape) > 1 else shape[0]
    w = r.uniform(0.2, 3, c).astype(dtype)
    for weight, (ii, n_ign), eps, red in itertools.product(
        (None, w), ((-100, 0), (-100, 2), (1, 2)), (0.0, 0.3), REDUCTIONS
    ):
        logits, t, c, loss_shape = _class_data(r, shape, dtype, ii, n_ign)
        kw = dict(weight=weight, ignore_index=ii, label_smoothing=eps)
        g = _upstream(loss_shape, red, dtype, r)
        want, gwant = _torch_grad(torch, tf.cross_entropy, logits, torch.from_numpy(t), upstream=g, reduction=red,
                                  **_torch_kw(torch, kw))
        msg = f"{kw} {red} {backend}"
        got = F.cross_entropy(logits, t, red, **kw)
        assert got.dtype == dtype and got.shape == want.shape, msg
        assert_close(got, want, dtype, err_msg=msg)
        assert_close(F.cross_entropy_backward(logits, t, red, grad_output=g, **kw), gwant, dtype, err_msg=msg)
        # NLL of the log-softmax: the same loss
        lp = tf.log_softmax(to_torch(torch, logits), dim=0 if len(shape) == 1 else 1).numpy()
        nkw = dict(weight=weight, ignore_index=ii)
        want, gwant = _torch_grad(torch, tf.nll_loss, lp, torch.from_numpy(t), upstream=g, reduction=red,
                                  **_torch_kw(torch, nkw))
        assert_close(F.nll_loss(lp, t, reduction=red, **nkw), want, dtype, err_msg="nll " + msg)
        assert_close(F.nll_loss_backward(lp, t, reduction=red, grad_output=g, **nkw), gwant, dtype,
                     err_msg="nll " + msg)
    # probability targets
    for weight, eps, red in itertools.product((None, w), (0.0, 0.3), REDUCTIONS):
        logits = (r.standard_normal(shape) * 3).astype(dtype)
        probs = r.dirichlet(np.ones(c), logits.size // c).astype(dtype)
        loss_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        probs = np.moveaxis(probs.reshape(loss_shape + (c,)), -1, 1 if len(shape) > 1 else 0).copy()
        kw = dict(weight=weight, label_smoothing=eps)
        g = _upstream(loss_shape, red, dtype, r)
        want, gwant = _torch_grad(torch, tf.cross_entropy, logits, to_torch(torch, probs), upstream=g, reduction=red,
                                  **_torch_kw(torch, kw))
        msg = f"probs {kw} {red} {backend}"
        assert_close(F.cross_entropy(logits, probs, red, **kw), want, dtype, err_msg=msg)
        assert_close(F.cross_entropy_backward(logits, probs, red, grad_output=g, **kw), gwant, dtype, err_msg=msg)


def test_cross_entropy_extreme_logits_match_torch(torch, backend, dtype):
    tf = torch.nn.functional
    logits = np.array([[1e4, 0.0, -1e4, 3.0], [-1e4, 1e4, 0.0, -1e4], [1e4, 1e4, -1e4, 0.0],
                       [-1e4, -1e4, -1e4, -1e4]], dtype)
    t = np.array([2, 1, -100, 0])
    probs = np.array([[0.0, 0.0, 1.0, 0.0], [0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0, 0]], dtype)
    w = np.array([1.0, 2.0, 0.5, 3.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for target, weight, eps, red in itertools.product((t, probs), (None, w), (0.0, 0.1), REDUCTIONS):
            kw = dict(weight=weight, label_smoothing=eps)
            g = _upstream((4,), red, dtype, np.random.default_rng(1))
            want, gwant = _torch_grad(torch, tf.cross_entropy, logits, to_torch(torch, target), upstream=g,
                                      reduction=red, **_torch_kw(torch, kw))
            got = F.cross_entropy(logits, target, red, **kw)
            grad = F.cross_entropy_backward(logits, target, red, grad_output=g, **kw)
            assert np.all(np.isfinite(got)) and np.all(np.isfinite(grad))
            assert_close(got, want, dtype, err_msg=f"{kw} {red}")
            assert_close(grad, gwant, dtype, err_msg=f"{kw} {red}")


def test_every_row_ignored(torch, backend):
    x = np.random.default_rng(0).standard_normal((3, 4))
    t = np.full(3, -100)
    for eps in (0.0, 0.2):
        xt = to_torch(torch, x, True)
        lt = torch.nn.functional.cross_entropy(xt, torch.from_numpy(t), label_smoothing=eps)
        lt.backward()
        assert np.isnan(F.cross_entropy(x, t, label_smoothing=eps)) and np.isnan(lt.item())
        np.testing.assert_array_equal(F.cross_entropy_backward(x, t, label_smoothing=eps), xt.grad.numpy())
    assert float(F.cross_entropy(x, t, "sum")) == 0.0
    np.testing.assert_array_equal(F.cross_entropy(x, t, "none"), np.zeros(3))


# ---------------------------------------------------------------- backends agree with the reference
@given(n=st.integers(1, 9), c=st.integers(1, 7), d=st.integers(0, 3), weighted=st.booleans(),
       eps=st.sampled_from([0.0, 0.25]), seed=st.integers(0, 2**16))
def test_class_losses_backends_match_reference(n, c, d, weighted, eps, seed):
    r = np.random.default_rng(seed)
    shape = (n, c) + ((d,) if d else ())
    for dt in (np.float32, np.float64):
        logits, t, _, loss_shape = _class_data(r, shape, dt, -100, n // 2)
        probs = np.moveaxis(r.dirichlet(np.ones(c), n * max(d, 1)).reshape((n,) + ((d,) if d else ()) + (c,)),
                            -1, 1).astype(dt)
        kw = dict(weight=r.uniform(0.5, 2, c).astype(dt) if weighted else None, label_smoothing=eps)
        for target in (t, probs):
            for red in REDUCTIONS:
                g = _upstream(loss_shape, red, dt, r)
                want = ref(F.cross_entropy, logits, target, red, **kw)
                gwant = ref(F.cross_entropy_backward, logits, target, red, grad_output=g, **kw)
                for be in fastnn.backends():
                    with fastnn.use_backend(be):
                        assert_close(F.cross_entropy(logits, target, red, **kw), want, dt, err_msg=be)
                        assert_close(F.cross_entropy_backward(logits, target, red, grad_output=g, **kw), gwant, dt,
                                     err_msg=be)
        lp = ref(F.log_softmax, logits, axis=1)
        want, gwant = ref(F.nll_loss, lp, t, kw["weight"]), ref(F.nll_loss_backward, lp, t, kw["weight"])
        for be in fastnn.backends():
            with fastnn.use_backend(be):
                assert_close(F.nll_loss(lp, t, kw["weight"]), want, dt, err_msg=be)
                assert_close(F.nll_loss_backward(lp, t, kw["weight"]), gwant, dt, err_msg=be)


@given(shape=st.tuples(st.integers(1, 7), st.integers(1, 9)), seed=st.integers(0, 2**16))
def test_pointwise_backends_match_reference(shape, seed):
    r = np.random.default_rng(seed)
    for dt in (np.float32, np.float64):
        for name, fwd, bwd, _, x, t, kw in _pointwise_cases(r, shape, dt):
            for red in REDUCTIONS:
                g = _upstream(shape, red, dt, r)
                want, gwant = ref(fwd, x, t, reduction=red, **kw), ref(bwd, x, t, reduction=red, grad_output=g, **kw)
                for be in fastnn.backends():
                    with fastnn.use_backend(be):
                        assert_close(fwd(x, t, reduction=red, **kw), want, dt, err_msg=f"{name} {red} {be}")
                        assert_close(bwd(x, t, reduction=red, grad_output=g, **kw), gwant, dt,
                                     err_msg=f"{name} {red} {be}")


def test_large_inputs_take_the_parallel_paths(fast_backend, dtype, rng):
    n, c = 300, 257
    logits = (rng.standard_normal((n, c)) * 3).astype(dtype)
    t = rng.integers(0, c, n)
    t[::7] = -100
    w = rng.uniform(0.5, 2, c).astype(dtype)
    kw = dict(weight=w, label_smoothing=0.1)
    assert_close(F.cross_entropy(logits, t, **kw), ref(F.cross_entropy, logits, t, **kw), dtype)
    assert_close(F.cross_entropy_backward(logits, t, **kw), ref(F.cross_entropy_backward, logits, t, **kw), dtype)
    probs = rng.dirichlet(np.ones(c), n).astype(dtype)
    assert_close(F.cross_entropy(logits, probs, **kw), ref(F.cross_entropy, logits, probs, **kw), dtype)
    assert_close(F.cross_entropy_backward(logits, probs, **kw), ref(F.cross_entropy_backward, logits, probs, **kw),
                 dtype)
    x, y = logits.reshape(-1), rng.standard_normal(n * c).astype(dtype)
    for fwd, bwd in ((F.huber_loss, F.huber_loss_backward), (F.binary_cross_entropy_with_logits,
                                                           F.binary_cross_entropy_with_logits_backward)):
        assert_close(fwd(x, y), ref(fwd, x, y), dtype)
        assert_close(bwd(x, y), ref(bwd, x, y), dtype)


# ---------------------------------------------------------------- finite differences (float64)
def test_gradients_match_central_differences(rng):
    shape = (3, 4)
    with fastnn.use_backend("reference"):
        for name, fwd, bwd, _, x, t, kw in _pointwise_cases(rng, shape, np.float64):
            if name.startswith("bce"):  # away from the clamped ends and the +-1e4 logits
                x = np.clip(x, 0.05, 0.95) if "logits" not in name else np.clip(x, -5, 5)
            if name.startswith(("l1", "smooth_l1 beta=0")):
                t = t + 0.1 * (t == x)  # away from the kink
            for red in REDUCTIONS:
                g = _upstream(shape, red, np.float64, rng)
                want = central_diff(lambda a: np.sum(fwd(a, t, reduction=red, **kw) * g), x)
                assert_close(bwd(x, t, reduction=red, grad_output=g, **kw), want, scale=1e4, err_msg=f"{name} {red}")
        logits, tt, c, loss_shape = _class_data(rng, (4, 3, 2), np.float64, 1, 2)
        probs = np.moveaxis(rng.dirichlet(np.ones(3), 8).reshape(4, 2, 3), -1, 1).copy()
        for target, red in itertools.product((tt, probs), REDUCTIONS):
            kw = dict(weight=np.array([0.5, 1.0, 2.0]), label_smoothing=0.2,
                      ignore_index=1 if target is tt else -100)
            g = _upstream(loss_shape, red, np.float64, rng)
            want = central_diff(lambda a: np.sum(F.cross_entropy(a, target, red, **kw) * g), logits)
            assert_close(F.cross_entropy_backward(logits, target, red, grad_output=g, **kw), want, scale=1e4)


# ---------------------------------------------------------------- layouts, special sizes
def test_noncontiguous_and_readonly_inputs(backend, dtype, rng):
    logits = rng.standard_normal((4, 5, 3)).astype(dtype)
    t = rng.integers(0, 5, (4, 3))
    y = rng.standard_normal((4, 5, 3)).astype(dtype)
    w = rng.uniform(0.5, 2, 5).astype(dtype)
    kw = dict(weight=w, label_smoothing=0.1)
    want = (F.cross_entropy(logits, t, **kw), F.cross_entropy_backward(logits, t, **kw),
            F.huber_loss(logits, y), F.huber_loss_backward(logits, y))
    for make in (noncontiguous, readonly, np.asfortranarray):
        ls, ts, ys = make(logits), make(t), make(y)
        before = ls.copy()
        got = (F.cross_entropy(ls, ts, weight=make(w), label_smoothing=0.1),
               F.cross_entropy_backward(ls, ts, weight=make(w), label_smoothing=0.1),
               F.huber_loss(ls, ys), F.huber_loss_backward(ls, ys))
        np.testing.assert_array_equal(ls, before)
        for a, b in zip(got, want):
            assert_close(a, b, dtype)


def test_empty_inputs(backend, dtype):
    z = np.zeros((0, 4), dtype)
    t = np.zeros(0, int)
    assert np.isnan(F.cross_entropy(z, t, weight=np.ones(4, dtype), label_smoothing=0.1))
    assert F.cross_entropy(z, t, "none", label_smoothing=0.1).shape == (0,)
    assert F.cross_entropy_backward(z, t, label_smoothing=0.1).shape == (0, 4)
    assert np.isnan(F.nll_loss(z, t)) and float(F.nll_loss(z, t, reduction="sum")) == 0
    assert np.isnan(F.l1_loss(z, z)) and float(F.binary_cross_entropy(z, z, reduction="sum")) == 0
    assert F.huber_loss_backward(z, z).shape == (0, 4)
    assert F.mse_loss(z, z, "none").shape == (0, 4) and np.isnan(F.mse_loss(z, z))


# ---------------------------------------------------------------- modules
MODULES = [
    (nn.MSELoss, "MSELoss", {}, "reg"),
    (nn.L1Loss, "L1Loss", {}, "reg"),
    (nn.SmoothL1Loss, "SmoothL1Loss", dict(beta=0.7), "reg"),
    (nn.HuberLoss, "HuberLoss", dict(delta=0.6), "reg"),
    (nn.BCELoss, "BCELoss", dict(weight="w"), "prob"),
    (nn.BCEWithLogitsLoss, "BCEWithLogitsLoss", dict(weight="w", pos_weight="w2"), "logit"),
    (nn.KLDivLoss, "KLDivLoss", dict(log_target=True), "kl"),
    (nn.NLLLoss, "NLLLoss", dict(weight="w", ignore_index=0), "class"),
    (nn.CrossEntropyLoss, "CrossEntropyLoss", dict(weight="w", ignore_index=2, label_smoothing=0.2), "class"),
]


@pytest.mark.parametrize("cls,tname,kw,kind", MODULES, ids=[m[1] for m in MODULES])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_loss_modules_match_torch(torch, cls, tname, kw, kind, reduction, dtype, rng):
    n, c = 6, 4
    arrays = dict(w=rng.uniform(0.5, 2, c), w2=rng.uniform(0.5, 3, c))
    kw = {k: (arrays[v] if isinstance(v, str) else v) for k, v in kw.items()}
    x = rng.standard_normal((n, c)).astype(dtype)
    if kind == "prob":
        x = rng.uniform(0.05, 0.95, (n, c)).astype(dtype)
    t = {"reg": rng.standard_normal((n, c)), "prob": rng.uniform(0, 1, (n, c)), "logit": rng.uniform(0, 1, (n, c)),
         "kl": np.log(rng.uniform(0.1, 1, (n, c))), "class": rng.integers(0, c, n)}[kind]
    m = cls(reduction=reduction, **kw)
    tm = getattr(torch.nn, tname)(reduction=reduction, **{k: (torch.from_numpy(v.astype(dtype))
                                                           if isinstance(v, np.ndarray) else v)
                                                        for k, v in kw.items()})
    assert list(m.state_dict()) == list(tm.state_dict())
    # used twice before its backwards (a stack of caches); backward in reverse order
    x2 = rng.standard_normal(x.shape).astype(dtype) if kind != "prob" else rng.uniform(0.05, 0.95, x.shape).astype(dtype)
    losses = [m(x, t), m(x2, t)]
    loss_shape = (n,) if kind == "class" else (n, c)
    ups = [_upstream(loss_shape, reduction, dtype, rng) for _ in range(2)]
    grads = [m.backward(ups[1]), m.backward(ups[0])][::-1]
    for xi, li, gi, ui in zip((x, x2), losses, grads, ups):
        xt = to_torch(torch, xi, True)
        tt = torch.from_numpy(t if kind == "class" else t.astype(dtype))
        lt = tm(xt, tt)
        lt.backward(torch.as_tensor(ui, dtype=lt.dtype))
        assert li.dtype == dtype and gi.dtype == dtype
        assert_close(li, lt.detach().numpy(), dtype)
        assert_close(gi, xt.grad.numpy(), dtype)
    if reduction != "none":
        m(x, t)
        xt = to_torch(torch, x, True)
        tm(xt, torch.from_numpy(t if kind == "class" else t.astype(dtype))).backward()
        assert_close(m.backward(), xt.grad.numpy(), dtype)  # default upstream: 1
    with pytest.raises(ValueError, match="no forward call is waiting"):
        m.backward()


def test_loss_module_state_dict_and_casts(torch):
    m = nn.CrossEntropyLoss(weight=np.array([1.0, 2.0, 3.0]))
    tm = torch.nn.CrossEntropyLoss(weight=torch.tensor([3.0, 2.0, 1.0]))
    m.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    np.testing.assert_array_equal(m.weight, [3.0, 2.0, 1.0])
    x = np.ones((2, 3), np.float32)
    assert m(x, [0, 1]).dtype == np.float32  # the float64 weight follows the input's dtype
    assert m.backward().dtype == np.float32
    with pytest.raises(KeyError, match="missing"):
        m.load_state_dict({})
    h = nn.HuberLoss()
    assert h(x, np.zeros((2, 3))).dtype == np.float32  # float64 target cast to the input's dtype
    assert list(h.state_dict()) == list(torch.nn.HuberLoss().state_dict()) == []


# ---------------------------------------------------------------- refused inputs
def test_bad_inputs_name_the_argument():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"target: expected shape \(2,\)"):
        F.cross_entropy(x, [0, 1, 2])
    with pytest.raises(TypeError, match="target: expected an integer array of class indices"):
        F.cross_entropy(x, [0.0, 1.0])
    with pytest.raises(IndexError, match=r"target: expected values in \[0, 3\) or ignore_index -100, got 3"):
        F.cross_entropy(x, [0, 3])
    with pytest.raises(IndexError, match="got -1"):
        F.nll_loss(x, [-1, 0])
    with pytest.raises(ValueError, match=r"weight: expected shape \(3,\)"):
        F.cross_entropy(x, [0, 1], weight=np.ones(2))
    with pytest.raises(TypeError, match="weight: expected dtype float64"):
        F.cross_entropy(x, [0, 1], weight=np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"label_smoothing: expected a number in \[0.0, 1.0\]"):
        F.cross_entropy(x, [0, 1], label_smoothing=1.5)
    with pytest.raises(TypeError, match="ignore_index: expected an int"):
        F.cross_entropy(x, [0, 1], ignore_index=1.0)
    with pytest.raises(ValueError, match="ignore_index: not supported with probability targets"):
        F.cross_entropy(x, np.ones((2, 3)) / 3, ignore_index=0)
    with pytest.raises(ValueError, match="logits: expected an array of shape"):
        F.cross_entropy(np.float64(1.0), 0)
    with pytest.raises(ValueError, match="reduction: expected one of"):
        F.nll_loss(x, [0, 1], reduction="batchmean")
    with pytest.raises(TypeError, match="target: expected an integer array of class indices"):
        F.nll_loss(x, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"input: expected probabilities in \[0, 1\]"):
        F.binary_cross_entropy(np.array([0.5, 1.5]), np.ones(2))
    with pytest.raises(ValueError, match=r"input: expected probabilities"):
        F.binary_cross_entropy(np.array([0.5, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="pos_weight: expected a shape that broadcasts"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(2))
    with pytest.raises(ValueError, match=r"target: expected the shape of input"):
        F.l1_loss(x, np.zeros(3))
    with pytest.raises(TypeError, match="target: expected dtype float64"):
        F.huber_loss(x, x.astype(np.float32))
    with pytest.raises(ValueError, match=r"delta: expected a number in \(0.0, inf\)"):
        F.huber_loss(x, x, delta=0)
    with pytest.raises(ValueError, match=r"beta: expected a number in \[0.0, inf\)"):
        F.smooth_l1_loss(x, x, beta=-1)
    with pytest.raises(ValueError, match="reduction: expected one of"):
        F.kl_div(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(2,\)"):
        F.cross_entropy_backward(x, [0, 1], "none", grad_output=np.ones(3))
    with pytest.raises(ValueError, match="grad_output: expected a real number"):
        F.mse_loss_backward(x, x, grad_output=np.ones(2))
    with pytest.raises(TypeError, match="grad_output: expected dtype float64"):
        F.l1_loss_backward(x, x, "none", grad_output=x.astype(np.float32))
    with pytest.raises(ValueError, match="reduction: expected one of"):
        nn.CrossEntropyLoss(reduction="avg")
