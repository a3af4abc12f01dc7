"""Threads under load: every threaded driver, repeated while another Python thread runs BLAS,
at 1, 2 and 3 threads, must give the same bits on every repetition and stay close to the
float64 reference kernels. Two user threads running different models with different backends
at once must each get their solo answer.

The drivers and what they split (see their docstrings for who writes what):

* LSTM (``kernels/lstm/numpy_impl.py``): the caller runs the time loop, one helper thread the
  input projection (forward) and the weight/input gradients (backward); the GRU
  (``kernels/gru/numpy_impl.py``) the same way;
* im2col convolution (``kernels/conv2d/_gemm.py``): batch chunks taken dynamically by threads,
  ``grad_w``/``grad_b`` partials per chunk added in chunk order;
* tiled attention (``kernels/attention/_tiled.py``): batch parts, or query-row parts whose
  ``grad_k``/``grad_v`` partials are added in part order;
* the compiled ``prange`` loops: embedding backward (column blocks), optimiser steps
  (elementwise), the MSE sum (fixed blocks).

``FASTNN_STRESS_REPS`` (default 10) sets the repetitions; ``make test-stress`` runs more.
"""
import os
import threading

import numpy as np
import pytest

import fastnn
from fastnn import _config
from fastnn import functional as F, nn, optim

REPS = int(os.environ.get("FASTNN_STRESS_REPS", "10"))
THREADS = (1, 2, 3)
COMPILED = [b for b in ("numba", "cython") if b in fastnn.backends()]


@pytest.fixture(autouse=True)
def blas_noise():
    """Another Python thread multiplying matrices with BLAS for the whole test: it takes cores
    and the GIL at odd moments, so the drivers' threads finish in a different order each run."""
    stop = threading.Event()

    def run():
        a = np.random.default_rng(0).standard_normal((200, 200)) / 15
        while not stop.is_set():
            a = np.tanh(a @ a)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield
    stop.set()
    t.join()


@pytest.fixture(params=THREADS, ids=[f"{n}thr" for n in THREADS])
def nthreads(request):
    old = _config._num_threads
    fastnn.set_num_threads(request.param)
    yield request.param
    fastnn.set_num_threads(old if old is not None else _config._cpu_count())
    _config._num_threads = old


def _assert_repeatable(run, reference, rtol, reps=REPS):
    """``run()`` gives the same bits ``reps`` times, and is within ``rtol`` (relative to each
    array's largest magnitude) of ``reference``."""
    first = run()
    for r in range(1, reps):
        again = run()
        for i, (a, b) in enumerate(zip(first, again)):
            assert np.array_equal(a, b), f"repetition {r}, result {i}: not the same bits as the first run " \
                                         f"(max diff {np.max(np.abs(a - b))})"
    for i, (a, w) in enumerate(zip(first, reference)):
        err = np.max(np.abs(a - w)) / max(np.max(np.abs(w)), 1e-30)
        assert err <= rtol, f"result {i}: relative error {err:.2e} against the float64 reference"


_refs = {}


def _reference(key, run64):
    """The float64 result of the reference kernels, computed once per workload."""
    if key not in _refs:
        with fastnn.use_backend("reference"):
            _refs[key] = run64()
    return _refs[key]


# -- LSTM: 2 layers, T large enough that the helper thread overlaps the time loop -----------------
def _lstm_run(dtype):
    rng = np.random.default_rng(5)
    m = nn.LSTM(16, 96, 2, dtype=dtype, rng=rng)
    x = rng.standard_normal((24, 4, 16))
    g = rng.standard_normal((24, 4, 96))

    def run():
        m.zero_grad()
        out, _ = m(x)
        gx, _ = m.backward(g.astype(dtype))
        return [out, gx] + [p.grad for p in m.parameters()]

    return run


@pytest.mark.parametrize("backend", ["numpy"] + COMPILED)
def test_lstm_forward_backward(backend, nthreads):
    ref = _reference("lstm", _lstm_run(np.float64))
    with fastnn.use_backend(backend):
        _assert_repeatable(_lstm_run(np.float32), ref, rtol=2e-4)


# -- GRU: the LSTM driver's design (kernels/gru/numpy_impl.py), 3 layers ---------------------------
def _gru_run(dtype):
    rng = np.random.default_rng(11)
    m = nn.GRU(16, 96, 3, dtype=dtype, rng=rng)
    x = rng.standard_normal((24, 4, 16))
    g = rng.standard_normal((24, 4, 96))

    def run():
        m.zero_grad()
        out, _ = m(x)
        gx, _ = m.backward(g.astype(dtype))
        return [out, gx] + [p.grad for p in m.parameters()]

    return run


@pytest.mark.parametrize("backend", ["numpy"] + COMPILED)
def test_gru_forward_backward(backend, nthreads):
    ref = _reference("gru", _gru_run(np.float64))
    with fastnn.use_backend(backend):
        _assert_repeatable(_gru_run(np.float32), ref, rtol=2e-4)


# -- im2col convolution: several batch chunks per thread ---------------------------------------------
def _conv_run(dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((12, 5, 11, 11)).astype(dtype)
    w = rng.standard_normal((16, 5, 3, 3)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype)
    g = rng.standard_normal((12, 16, 11, 11)).astype(dtype)

    def run():
        out = F.conv2d(x, w, b, padding=1)
        return [out, *F.conv2d_backward(g, x, w, padding=1)]

    return run


@pytest.mark.parametrize("backend", COMPILED)
def test_conv2d_im2col(backend, nthreads):
    ref = _reference("conv", _conv_run(np.float64))
    with fastnn.use_backend(backend):
        _assert_repeatable(_conv_run(np.float32), ref, rtol=1e-5)


# -- tiled attention: batch parts (causal) and query-row parts (one long sequence) -------------------
def _attention_run(dtype, rows):
    rng = np.random.default_rng(7)
    shape_q, shape_k = ((1, 200, 16), (1, 150, 16)) if rows else ((4, 2, 40, 16), (4, 2, 40, 16))
    q, k, v = (rng.standard_normal(s).astype(dtype) for s in (shape_q, shape_k, shape_k))
    causal = not rows
    g = rng.standard_normal(q.shape).astype(dtype)

    def run():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return [out, *F.scaled_dot_product_attention_backward(g, q, k, v, is_causal=causal)]

    return run


@pytest.mark.parametrize("rows", [False, True], ids=["batch-parts", "row-parts"])
@pytest.mark.parametrize("backend", COMPILED)
def test_attention_tiled(backend, rows, nthreads):
    ref = _reference(("attention", rows), _attention_run(np.float64, rows))
    with fastnn.use_backend(backend):
        _assert_repeatable(_attention_run(np.float32, rows), ref, rtol=1e-5)


# -- compiled prange loops: embedding scatter-add, optimiser steps, MSE sum ------------------------
def _prange_run(dtype):
    rng = np.random.default_rng(8)
    ids = rng.integers(0, 50, (25, 20))  # many repeated ids
    ge = rng.standard_normal((25, 20, 40)).astype(dtype)
    p0 = rng.standard_normal(50_000).astype(dtype)
    grads = [rng.standard_normal(50_000).astype(dtype) for _ in range(4)]
    y, t = (rng.standard_normal(100_003).astype(dtype) for _ in range(2))

    def run():
        out = [F.embedding_backward(ge, ids, 50), np.float64(F.mse_loss(y, t))]
        for make in (lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=0.1),
                     lambda ps: optim.SGD(ps, lr=1e-2, momentum=0.9, nesterov=True)):
            p = nn.Parameter(p0.copy())
            opt = make([p])
            for gr in grads:
                p.grad = gr.copy()
                opt.step()
            out.append(p.data)
        return out

    return run


@pytest.mark.parametrize("backend", COMPILED)
def test_compiled_prange_loops(backend, nthreads):
    ref = _reference("prange", _prange_run(np.float64))
    with fastnn.use_backend(backend):
        _assert_repeatable(_prange_run(np.float32), ref, rtol=1e-5)


# -- two user threads, two models, two backends at once ----------------------------------------------
def _mlp_steps(backend):
    rng = np.random.default_rng(9)
    m = nn.Sequential(nn.Linear(64, 96, rng=rng), nn.Sigmoid(), nn.Linear(96, 10, rng=rng))
    opt = optim.Adam(m.parameters(), lr=1e-2)
    x, t = rng.standard_normal((32, 64)).astype(np.float32), rng.integers(0, 10, 32)
    with fastnn.use_backend(backend):
        for _ in range(5):
            logits = m(x)
            m.backward(F.cross_entropy_backward(logits, t))
            opt.step()
            opt.zero_grad()
    return [p.data for p in m.parameters()]


def _cnn_steps(backend):
    rng = np.random.default_rng(10)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(16 * 6 * 6, 10, rng=rng))
    opt = optim.SGD(m.parameters(), lr=1e-2, momentum=0.9)
    x, t = rng.standard_normal((16, 3, 12, 12)).astype(np.float32), rng.integers(0, 10, 16)
    with fastnn.use_backend(backend):
        for _ in range(5):
            logits = m(x)
            m.backward(F.cross_entropy_backward(logits, t))
            opt.step()
            opt.zero_grad()
    return [p.data for p in m.parameters()]


@pytest.mark.parametrize("pair", [("numba", "cython"), ("cython", "auto"), ("auto", "numba")], ids="-".join)
def test_two_user_threads_get_their_solo_answers(pair, nthreads):
    pair = [b if b in fastnn.backends() or b == "auto" else "numpy" for b in pair]
    solo = [_mlp_steps(pair[0]), _cnn_steps(pair[1])]
    for _ in range(max(2, REPS // 3)):
        got = [None, None]

        def work(i, fn, b):
            got[i] = fn(b)

        ts = [threading.Thread(target=work, args=(0, _mlp_steps, pair[0])),
              threading.Thread(target=work, args=(1, _cnn_steps, pair[1]))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for s, g in zip(solo, got):
            assert g is not None, "a user thread failed"
            for a, b in zip(s, g):
                assert np.array_equal(a, b), "concurrent run differs from the solo run"
