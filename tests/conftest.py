"""Shared fixtures: the backend matrix, dtypes, the torch oracle (skipped when absent)."""
import numpy as np
import pytest
from hypothesis import settings

import fastnn

settings.register_profile("fastnn", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("fastnn")

BACKENDS = fastnn.backends()
DTYPES = (np.float32, np.float64)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test under each available backend (``use_backend`` block)."""
    with fastnn.use_backend(request.param):
        yield request.param


@pytest.fixture(params=[b for b in BACKENDS if b != "reference"])
def fast_backend(request):
    """Each non-reference backend, for comparisons against the reference kernel."""
    with fastnn.use_backend(request.param):
        yield request.param


@pytest.fixture(params=DTYPES, ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture(scope="session")
def torch():
    """The PyTorch oracle (CPU, torch==2.13.0); tests using it skip cleanly without it."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)  # one OpenMP runtime busy at a time in this process
    return torch


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_terminal_summary(terminalreporter):
    """How many (op, backend, dtype) fuzz cases ran (tests/test_fuzz.py)."""
    import sys

    fuzz = sys.modules.get("test_fuzz")
    if fuzz is not None and fuzz.COUNTS:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(fuzz.COUNTS.items()))
        terminalreporter.write_line(f"fuzz cases run (examples x backends x dtypes): {counts}")
