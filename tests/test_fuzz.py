"""Fuzzing every functional op: random shapes (size-0 and size-1 dimensions included) and options
drawn by hypothesis, forward and backward, float32 and float64, every backend, contiguous,
non-contiguous and read-only inputs, all against the reference kernel run in float64.

Each op registers a hypothesis strategy drawing one *case* and a ``run(case, dtype)`` that
calls the functional API and returns every output it checks. One example runs the reference
in float64 once and then every (backend, dtype) pair, so the number of cases per op is
``examples x backends x 2``; the session prints the counts (``fuzz cases run``).
``FASTNN_FUZZ_EXAMPLES`` (default 30) sets the examples per op.

Bounds-checked builds: ``make test-checked`` runs this file (and the rest) against Cython
compiled with bounds and wraparound checks, so an out-of-range index in a kernel raises
instead of reading beside the array.
"""
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import fastnn
from fastnn import functional as F, nn, optim

from fnn_testing import noncontiguous, readonly

EXAMPLES = int(os.environ.get("FASTNN_FUZZ_EXAMPLES", "30"))
BACKENDS = fastnn.backends()
COUNTS = Counter()  # op -> (backend, dtype) cases run; printed by conftest's summary hook
# |got - want| <= TOL * scale * (max|want| + 1), per output
TOL = {np.float32: 1e-5, np.float64: 1e-12}

OPS = {}


def op(name, strategy, scale=1.0):
    def deco(run):
        OPS[name] = (strategy, run, scale)
        return run

    return deco


dims = st.sampled_from([0, 1, 2, 3, 5, 7])
pos = st.sampled_from([1, 2, 3, 5, 7])


@st.composite
def arrays(draw, shape, lo=1.0, hi=1.0):
    """A float64 array of standard normals times a drawn magnitude in [lo, hi], maybe
    non-contiguous or read-only (as it will be passed)."""
    seed = draw(st.integers(0, 2**32 - 1))
    mag = draw(st.sampled_from(sorted({lo, 1.0, hi})))
    a = np.random.default_rng(seed).standard_normal(shape) * mag
    return a, draw(st.sampled_from(["c", "strided", "readonly"]))


_passed = []  # (array given to fastnn, its copy): checked after each call


def cast(arr, dtype):
    a, layout = arr
    a = a.astype(dtype)
    a = noncontiguous(a) if layout == "strided" else readonly(a) if layout == "readonly" else a
    _passed.append((a, a.copy()))
    return a


def _flatten(out):
    for o in out if isinstance(out, (tuple, list)) else [out]:
        if isinstance(o, (tuple, list)):
            yield from _flatten(o)
        elif o is not None:
            yield np.asarray(o)


def _fuzz(name):
    strategy, run, scale = OPS[name]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(case=strategy)
    def check(case):
        with fastnn.use_backend("reference"):
            try:
                want = list(_flatten(run(case, np.float64)))
            except ValueError:
                assume(False)  # an invalid combination (e.g. an output size < 1): refused, fine
        for dtype in (np.float32, np.float64):
            for backend in BACKENDS:
                _passed.clear()
                with fastnn.use_backend(backend):
                    got = list(_flatten(run(case, dtype)))
                assert len(got) == len(want)
                for i, (g, w) in enumerate(zip(got, want)):
                    assert g.shape == w.shape, f"{backend} {dtype.__name__} output {i}: shape {g.shape} != {w.shape}"
                    if g.dtype.kind == "f":
                        assert g.dtype == dtype, f"{backend} output {i}: dtype {g.dtype}"
                    if g.size:
                        bound = TOL[dtype] * scale * (np.max(np.abs(w), initial=0, where=np.isfinite(w)) + 1)
                        same_nonfinite = np.array_equal(np.isfinite(g), np.isfinite(w))
                        err = np.max(np.abs(np.where(np.isfinite(w), g.astype(np.float64) - w, 0)))
                        assert same_nonfinite and err <= bound, \
                            f"{backend} {dtype.__name__} output {i}: error {err:.3g} > {bound:.3g}, case {case}"
                for i, (a, copy) in enumerate(_passed):  # inputs are never modified
                    assert np.array_equal(a, copy, equal_nan=True), f"{backend}: input {i} was modified"
                COUNTS[name] += 1

    check()


# ---------------------------------------------------------------------------------------- dense
@st.composite
def _linear(draw):
    lead = draw(st.lists(dims, min_size=1, max_size=2))
    i, o = draw(pos), draw(pos)
    return dict(x=draw(arrays(tuple(lead) + (i,))), w=draw(arrays((o, i))),
                b=draw(arrays((o,))) if draw(st.booleans()) else None,
                g=draw(arrays(tuple(lead) + (o,))), need=draw(st.booleans()))


@op("linear", _linear())
def _run_linear(c, dt):
    x, w = cast(c["x"], dt), cast(c["w"], dt)
    b = None if c["b"] is None else cast(c["b"], dt)
    return F.linear(x, w, b), F.linear_backward(cast(c["g"], dt), x, w, need_input_grad=c["need"])


@st.composite
def _elementwise(draw):
    shape = tuple(draw(st.lists(dims, min_size=0, max_size=3)))
    return dict(x=draw(arrays(shape, 1e-3, 50.0)), g=draw(arrays(shape)))


for _name in ("relu", "sigmoid", "tanh"):
    def _run_unary(c, dt, _f=getattr(F, _name), _b=getattr(F, _name + "_backward")):
        y = _f(cast(c["x"], dt))
        return y, _b(cast(c["g"], dt), y)

    op(_name, _elementwise())(_run_unary)


@st.composite
def _rows(draw):
    shape = tuple(draw(st.lists(dims, min_size=1, max_size=3)))
    return dict(x=draw(arrays(shape, 1e-2, 100.0)), g=draw(arrays(shape)),
                axis=draw(st.integers(-len(shape), len(shape) - 1)))


for _name in ("softmax", "log_softmax"):
    def _run_rows(c, dt, _f=getattr(F, _name), _b=getattr(F, _name + "_backward")):
        y = _f(cast(c["x"], dt), axis=c["axis"])
        return y, _b(cast(c["g"], dt), y, axis=c["axis"])

    op(_name, _rows())(_run_rows)


@st.composite
def _ce(draw):
    n, c = draw(dims), draw(pos)
    return dict(x=draw(arrays((n, c), 1e-2, 1e3)), t=np.random.default_rng(n * c).integers(0, c, n),
                red=draw(st.sampled_from(["mean", "sum", "none"])))


@op("cross_entropy", _ce())
def _run_ce(c, dt):
    x = cast(c["x"], dt)
    out = [F.cross_entropy(x, c["t"], reduction=c["red"])]
    if c["red"] != "none":
        out.append(F.cross_entropy_backward(x, c["t"], reduction=c["red"]))
    return out


@st.composite
def _mse(draw):
    shape = tuple(draw(st.lists(st.sampled_from([1, 2, 3, 5, 4099]), min_size=0, max_size=2)))
    return dict(y=draw(arrays(shape)), t=draw(arrays(shape)), red=draw(st.sampled_from(["mean", "sum", "none"])))


@op("mse_loss", _mse(), scale=10)
def _run_mse(c, dt):
    y, t = cast(c["y"], dt), cast(c["t"], dt)
    return F.mse_loss(y, t, reduction=c["red"]), F.mse_loss_backward(y, t, reduction=c["red"])


# --------------------------------------------------------------------------------- convolution
@st.composite
def _conv(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, kg = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2, 9]))
    n, h, w = draw(st.sampled_from([0, 1, 2, 3])), draw(pos), draw(pos)
    kh, kw = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2, 3]))
    stride = draw(st.sampled_from([1, 2, 3, (1, 2)]))
    padding = draw(st.sampled_from([0, 1, 2, (1, 0), (0, 1, 2, 1), "valid"] + (["same"] if stride == 1 else [])))
    dilation = draw(st.sampled_from([1, 2, (2, 1)]))
    x = draw(arrays((n, cg * groups, h, w)))
    return dict(x=x, w=draw(arrays((kg * groups, cg, kh, kw))), b=draw(arrays((kg * groups,))) if draw(st.booleans()) else None,
                kw=dict(stride=stride, padding=padding, dilation=dilation, groups=groups), seed=draw(st.integers(0, 99)))


@op("conv2d", _conv(), scale=10)
def _run_conv(c, dt):
    x, w = cast(c["x"], dt), cast(c["w"], dt)
    y = F.conv2d(x, w, None if c["b"] is None else cast(c["b"], dt), **c["kw"])
    g = np.random.default_rng(c["seed"]).standard_normal(y.shape).astype(dt)
    return y, F.conv2d_backward(g, x, w, **c["kw"])


@st.composite
def _pool(draw):
    k = draw(st.sampled_from([1, 2, 3, (2, 3)]))
    kmin = min(k) if isinstance(k, tuple) else k
    return dict(x=draw(arrays((draw(st.sampled_from([0, 1, 2])), draw(pos), draw(pos), draw(pos)))),
                kw=dict(kernel_size=k, stride=draw(st.sampled_from([None, 1, 2, 3])),
                        padding=draw(st.integers(0, kmin // 2)), ceil_mode=draw(st.booleans())),
                cip=draw(st.booleans()), seed=draw(st.integers(0, 99)))


@op("max_pool2d", _pool())
def _run_maxpool(c, dt):
    x = cast(c["x"], dt)
    y = F.max_pool2d(x, **c["kw"])
    g = np.random.default_rng(c["seed"]).standard_normal(y.shape).astype(dt)
    return y, F.max_pool2d_backward(g, x, **c["kw"])


@op("avg_pool2d", _pool())
def _run_avgpool(c, dt):
    x = cast(c["x"], dt)
    kw = dict(c["kw"], count_include_pad=c["cip"])
    y = F.avg_pool2d(x, **kw)
    g = np.random.default_rng(c["seed"]).standard_normal(y.shape).astype(dt)
    return y, F.avg_pool2d_backward(g, x, **kw)


# ----------------------------------------------------------------------------------- attention
@st.composite
def _sdpa(draw):
    batch = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3]), min_size=0, max_size=2)))
    L, S = draw(st.sampled_from([1, 2, 5, 17])), draw(st.sampled_from([1, 2, 5, 17, 70]))
    E, Ev = draw(st.sampled_from([1, 3, 8])), draw(st.sampled_from([1, 4]))
    kind = draw(st.sampled_from(["none", "bool", "float", "causal"]))
    rng = np.random.default_rng(draw(st.integers(0, 999)))
    mshape = draw(st.sampled_from([batch + (L, S), (L, S), (1,) * len(batch) + (1, S)]))
    mask = None
    if kind == "bool":
        mask = rng.random(mshape) < 0.7
    elif kind == "float":
        mask = np.where(rng.random(mshape) < 0.7, rng.standard_normal(mshape), -np.inf)
    return dict(q=draw(arrays(batch + (L, E), 0.1, 10.0)), k=draw(arrays(batch + (S, E))), v=draw(arrays(batch + (S, Ev))),
                g=draw(arrays(batch + (L, Ev))), mask=mask, causal=kind == "causal",
                scale=draw(st.sampled_from([None, 0.3])))


@op("scaled_dot_product_attention", _sdpa(), scale=10)
def _run_sdpa(c, dt):
    q, k, v = cast(c["q"], dt), cast(c["k"], dt), cast(c["v"], dt)
    m = c["mask"] if c["mask"] is None or c["mask"].dtype == bool else c["mask"].astype(dt)
    kw = dict(attn_mask=m, is_causal=c["causal"], scale=c["scale"])
    out = F.scaled_dot_product_attention(q, k, v, **kw)
    return (out, F.scaled_dot_product_attention_backward(cast(c["g"], dt), q, k, v, **kw),
            F.attention_weights(q, k, **kw))


# ----------------------------------------------------------------------------------- recurrent
@st.composite
def _embedding(draw):
    n, d = draw(pos), draw(st.sampled_from([1, 3, 17, 40]))
    shape = tuple(draw(st.lists(dims, min_size=1, max_size=2)))
    ids = np.random.default_rng(draw(st.integers(0, 99))).integers(0, n, shape)
    return dict(w=draw(arrays((n, d))), ids=ids, g=draw(arrays(shape + (d,))),
                pad=draw(st.sampled_from([None, 0, n - 1])))


@op("embedding", _embedding())
def _run_embedding(c, dt):
    w = cast(c["w"], dt)
    return (F.embedding(c["ids"], w, padding_idx=c["pad"]),
            F.embedding_backward(cast(c["g"], dt), c["ids"], w.shape[0], padding_idx=c["pad"]))


@st.composite
def _lstm(draw):
    T, B, I, H = draw(st.sampled_from([1, 2, 5, 9])), draw(st.sampled_from([1, 3])), draw(pos), draw(pos)
    layers, bias = draw(st.sampled_from([1, 2])), draw(st.booleans())
    w = []
    for k in range(layers):
        i = I if k == 0 else H
        w.append(tuple(draw(arrays(s)) for s in [(4 * H, i), (4 * H, H)] + ([(4 * H,), (4 * H,)] if bias else [])))
    hx = (draw(arrays((layers, B, H))), draw(arrays((layers, B, H)))) if draw(st.booleans()) else None
    return dict(x=draw(arrays((T, B, I))), w=w, hx=hx, g=draw(arrays((T, B, H))),
                ghx=(draw(arrays((layers, B, H))), draw(arrays((layers, B, H)))) if draw(st.booleans()) else None)


@op("lstm", _lstm(), scale=30)
def _run_lstm(c, dt):
    weights = [tuple(cast(a, dt) for a in lw) + ((None, None) if len(lw) == 2 else ()) for lw in c["w"]]
    hx = None if c["hx"] is None else tuple(cast(a, dt) for a in c["hx"])
    out, (h, cn), cache = F.lstm(cast(c["x"], dt), hx, weights, return_cache=True)
    ghx = None if c["ghx"] is None else tuple(cast(a, dt) for a in c["ghx"])
    return out, h, cn, F.lstm_backward(cast(c["g"], dt), ghx, cache)


@st.composite
def _gru(draw):
    T, B, I, H = draw(st.sampled_from([1, 2, 5, 9])), draw(st.sampled_from([1, 3])), draw(pos), draw(pos)
    layers, bias = draw(st.sampled_from([1, 2, 3])), draw(st.booleans())
    w = []
    for k in range(layers):
        i = I if k == 0 else H
        w.append(tuple(draw(arrays(s)) for s in [(3 * H, i), (3 * H, H)] + ([(3 * H,), (3 * H,)] if bias else [])))
    return dict(x=draw(arrays((T, B, I))), w=w, h0=draw(arrays((layers, B, H))) if draw(st.booleans()) else None,
                g=draw(arrays((T, B, H))) if draw(st.booleans()) else None,
                ghn=draw(arrays((layers, B, H))) if draw(st.booleans()) else None)


@op("gru", _gru(), scale=30)
def _run_gru(c, dt):
    weights = [tuple(cast(a, dt) for a in lw) + ((None, None) if len(lw) == 2 else ()) for lw in c["w"]]
    h0 = None if c["h0"] is None else cast(c["h0"], dt)
    out, h, cache = F.gru(cast(c["x"], dt), h0, weights, return_cache=True)
    g = None if c["g"] is None else cast(c["g"], dt)
    ghn = None if c["ghn"] is None else cast(c["ghn"], dt)
    return out, h, F.gru_backward(g, ghn, cache)


# ----------------------------------------------------------------------------------------- losses
@st.composite
def _class_loss(draw):
    n, c = draw(dims), draw(pos)
    extra = tuple(draw(st.lists(st.sampled_from([1, 2, 3]), min_size=0, max_size=2)))
    shape = (n, c) + extra
    rng = np.random.default_rng(draw(st.integers(0, 999)))
    t = rng.integers(0, c, (n,) + extra)
    ignore = draw(st.sampled_from([-100, 0]))
    if t.size and draw(st.booleans()):
        t.reshape(-1)[:: 2] = ignore
    probs = rng.dirichlet(np.ones(c), n * int(np.prod(extra, dtype=int)))
    probs = np.moveaxis(probs.reshape((n,) + extra + (c,)), -1, 1)
    red = draw(st.sampled_from(["mean", "sum", "none"]))
    return dict(x=draw(arrays(shape, 1e-2, 1e3)), t=t, probs=probs, use_probs=draw(st.booleans()),
                w=rng.uniform(0.2, 2, c) if draw(st.booleans()) else None, ignore=ignore,
                eps=draw(st.sampled_from([0.0, 0.0, 0.3])), red=red,
                g=draw(arrays((n,) + extra)) if red == "none" else 1.5)


@op("cross_entropy_options", _class_loss(), scale=10)
def _run_ce_options(c, dt):
    x = cast(c["x"], dt)
    w = None if c["w"] is None else c["w"].astype(dt)
    g = c["g"] if c["red"] != "none" else cast(c["g"], dt)
    if c["use_probs"]:
        t, kw = c["probs"].astype(dt), dict(weight=w, label_smoothing=c["eps"])
    else:
        t, kw = c["t"], dict(weight=w, label_smoothing=c["eps"], ignore_index=c["ignore"])
    return (F.cross_entropy(x, t, c["red"], **kw), F.cross_entropy_backward(x, t, c["red"], grad_output=g, **kw),
            F.nll_loss(x, c["t"], w, ignore_index=c["ignore"], reduction=c["red"]),
            F.nll_loss_backward(x, c["t"], w, ignore_index=c["ignore"], reduction=c["red"], grad_output=g))


_POINTWISE = {
    "mse": (F.mse_loss, F.mse_loss_backward, {}), "l1": (F.l1_loss, F.l1_loss_backward, {}),
    "smooth_l1": (F.smooth_l1_loss, F.smooth_l1_loss_backward, dict(beta=0.5)),
    "huber": (F.huber_loss, F.huber_loss_backward, dict(delta=1.5)),
    "bce": (F.binary_cross_entropy, F.binary_cross_entropy_backward, {}),
    "bce_logits": (F.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits_backward, {}),
    "kl": (F.kl_div, F.kl_div_backward, {}), "kl_log": (F.kl_div, F.kl_div_backward, dict(log_target=True)),
}


@st.composite
def _pointwise(draw):
    shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3, 5, 4099]), min_size=1, max_size=2)))
    red = draw(st.sampled_from(["mean", "sum", "none"]))
    return dict(kind=draw(st.sampled_from(sorted(_POINTWISE))), x=draw(arrays(shape, 1e-2, 30.0)),
                t=draw(arrays(shape)), red=red, g=draw(arrays(shape)) if red == "none" else 0.7,
                pw=draw(arrays(shape[-1:])) if draw(st.booleans()) else None)


@op("pointwise_losses", _pointwise(), scale=10)
def _run_pointwise(c, dt):
    fwd, bwd, kw = _POINTWISE[c["kind"]]
    x, t = cast(c["x"], dt), cast(c["t"], dt)
    if c["kind"] == "bce":  # probabilities
        x, t = 1 / (1 + np.exp(-x)), 1 / (1 + np.exp(-t))
    elif c["kind"] == "bce_logits":
        t = 1 / (1 + np.exp(-t))
        if c["pw"] is not None:
            kw = dict(pos_weight=np.abs(cast(c["pw"], dt)))
    elif c["kind"] == "kl":
        t = np.abs(t)
    g = c["g"] if c["red"] != "none" else cast(c["g"], dt)
    return fwd(x, t, reduction=c["red"], **kw), bwd(x, t, reduction=c["red"], grad_output=g, **kw)


# ----------------------------------------------------------------------------------- optimisers
@st.composite
def _optim(draw):
    n = draw(st.sampled_from([1, 7, 5003, 70001]))
    kind = draw(st.sampled_from(["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]))
    if kind == "SGD":
        mom = draw(st.sampled_from([0.0, 0.9]))
        kw = dict(lr=0.1, momentum=mom, dampening=draw(st.sampled_from([0.0, 0.5])) if mom else 0.0,
                  weight_decay=draw(st.sampled_from([0.0, 0.01])))
        kw["nesterov"] = bool(mom) and kw["dampening"] == 0 and draw(st.booleans())
    elif kind in ("Adam", "AdamW"):
        kw = dict(lr=0.01, weight_decay=draw(st.sampled_from([0.0, 0.1])), amsgrad=draw(st.booleans()))
    elif kind == "RMSprop":
        kw = dict(lr=0.01, momentum=draw(st.sampled_from([0.0, 0.9])), centered=draw(st.booleans()),
                  weight_decay=draw(st.sampled_from([0.0, 0.1])))
    else:
        kw = dict(lr=0.1, lr_decay=draw(st.sampled_from([0.0, 0.1])), weight_decay=draw(st.sampled_from([0.0, 0.1])))
    return dict(p=draw(arrays((n,))), g=[draw(arrays((n,))) for _ in range(3)], kind=kind, kw=kw)


@op("optim_step", _optim(), scale=10)
def _run_optim(c, dt):
    p = nn.Parameter(cast(c["p"], dt).copy())
    opt = getattr(optim, c["kind"])([p], **c["kw"])
    for g in c["g"]:
        p.grad = cast(g, dt)
        opt.step()
    return p.data


@pytest.mark.parametrize("name", sorted(OPS))
def test_fuzz(name):
    _fuzz(name)
