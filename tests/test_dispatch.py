"""Backend registry, the auto policy, thread-local selection, threads, environment variables."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastnn
from fastnn import _dispatch


def test_backends_listed():
    b = fastnn.backends()
    assert b[:2] == ["reference", "numpy"]
    assert set(b) <= {"reference", "numpy", "numba", "cython"}
    assert "numba" in b and "cython" in b  # both are built/installed by `make test`


def test_set_get_and_context_manager_restores():
    assert fastnn.get_backend() == "auto"
    fastnn.set_backend("numpy")
    try:
        assert fastnn.get_backend() == "numpy"
        with fastnn.use_backend("reference"):
            assert fastnn.get_backend() == "reference"
            with fastnn.use_backend("numba"):
                assert fastnn.get_backend() == "numba"
            assert fastnn.get_backend() == "reference"
        assert fastnn.get_backend() == "numpy"
    finally:
        fastnn.set_backend("auto")


def test_use_backend_is_thread_local():
    seen = {}
    with fastnn.use_backend("reference"):
        t = threading.Thread(target=lambda: seen.setdefault("other", fastnn.get_backend()))
        t.start()
        t.join()
        assert fastnn.get_backend() == "reference"
    assert seen["other"] == "auto"


def test_unknown_backend_names():
    with pytest.raises(ValueError, match=r"backend: expected one of .* got 'cuda'"):
        fastnn.set_backend("cuda")
    with pytest.raises(ValueError, match="backend"):
        with fastnn.use_backend("fast"):
            pass
    with pytest.raises(TypeError, match="backend: expected a str"):
        fastnn.set_backend(3)
    assert fastnn.get_backend() == "auto"


def test_kernel_lookup_follows_backend():
    with fastnn.use_backend("numba"):
        assert _dispatch.kernel("dense", "relu_forward").__module__.endswith("numba_impl")
    assert _dispatch.kernel("dense", "relu_forward", backend="reference").__module__.endswith("reference")
    # auto: the documented rules
    assert _dispatch.auto_backend("dense", "sigmoid_forward", 10) == "numpy"
    assert _dispatch.auto_backend("dense", "sigmoid_forward", 10**7) in ("cython", "numba")


def test_set_num_threads():
    import numba
    from threadpoolctl import threadpool_info

    old = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        assert fastnn.get_num_threads() == 1 and numba.get_num_threads() == 1
        assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")
        x = np.random.default_rng(0).standard_normal((300, 300)).astype(np.float32)
        with fastnn.use_backend("cython"):
            fastnn.functional.sigmoid(x)
    finally:
        fastnn.set_num_threads(old)
    for bad, err in ((0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(err, match="n: expected an int >= 1"):
            fastnn.set_num_threads(bad)


def _run(code, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)


def test_environment_variables():
    p = _run("import fastnn; print(fastnn.get_backend(), fastnn.get_num_threads())",
             FASTNN_BACKEND="numba", FASTNN_NUM_THREADS="1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["numba", "1"]
    p = _run("import fastnn", FASTNN_BACKEND="gpu")
    assert p.returncode != 0 and "FASTNN_BACKEND" in p.stderr


def test_torch_is_not_imported():
    p = _run("import sys, numpy as np, fastnn; from fastnn import train; "
             "fastnn.functional.relu(np.ones(3)); print('torch' in sys.modules)")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


def test_backends_in_a_bare_interpreter():
    # importlib.util is not preloaded outside an editable install: fastnn must import it itself
    p = _run("import importlib, sys; sys.modules.pop('importlib.util', None); "
             "hasattr(importlib, 'util') and delattr(importlib, 'util'); import fastnn; print(fastnn.backends())")
    assert p.returncode == 0, p.stderr
    assert "numpy" in p.stdout
