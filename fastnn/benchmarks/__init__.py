"""Benchmark workloads: a registry of ready-to-call closures, one per (workload, implementation).

A workload module (``fastnn/benchmarks/<op>.py``, found automatically) registers factories::

    @workload("mlp_step", op="dense", shape="batch 64, 784-256-256-10", dtype="float32",
              flops=..., impls=FASTNN_IMPLS + ("torch",))
    def mlp_step(impl):
        ...set up arrays (not timed)...
        return step            # a closure with no arguments: the timed call

``impl`` is a fastnn backend (``reference``, ``numpy``, ``numba``, ``cython``, ``auto``) or
``torch``; torch is imported only inside a ``torch`` factory, so fastnn and torch timings run
in separate processes (:func:`run_isolated`), each with the same thread count.
"""
import importlib
import json
import os
import pkgutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

FASTNN_IMPLS = ("reference", "numpy", "numba", "cython", "auto")


@dataclass
class Workload:
    name: str
    op: str
    shape: str
    dtype: str
    flops: float
    make: object
    impls: tuple = FASTNN_IMPLS + ("torch",)
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def group(self):
        return f"{self.op}|{self.shape}|{self.dtype}"


WORKLOADS = {}


def workload(name, op, shape, flops, dtype="float32", impls=FASTNN_IMPLS + ("torch",), note="", **extra):
    """Decorator: register ``make(impl) -> closure`` as workload ``name``."""

    def deco(make):
        WORKLOADS[name] = Workload(name, op, shape, dtype, float(flops), make, tuple(impls), note, extra)
        return make

    return deco


def _load_all():
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def prepare(name, impl, threads=None):
    """Set threads and backend for ``impl`` in this process and return the workload's closure."""
    _load_all()
    w = WORKLOADS[name]
    if impl not in w.impls:
        raise ValueError(f"impl: expected one of {w.impls} for {name}, got {impl!r}")
    if impl == "torch":
        import torch

        if threads:
            torch.set_num_threads(threads)
    else:
        import fastnn

        if threads:
            fastnn.set_num_threads(threads)
        fastnn.set_backend(impl)
    return w.make(impl)


def time_closure(fn, min_time=0.5, max_rounds=200, min_rounds=5):
    """Call ``fn`` once (cold start: JIT, first-touch), then time rounds; seconds per call."""
    t0 = time.perf_counter()
    fn()
    cold = time.perf_counter() - t0
    fn()  # second warm-up: caches, BLAS buffers
    times = []
    start = time.perf_counter()
    while len(times) < min_rounds or (time.perf_counter() - start < min_time and len(times) < max_rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"cold_s": cold, "median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "rounds": len(times)}


def run_in_process(name, impl, threads=None, min_time=0.5, max_rounds=200):
    fn = prepare(name, impl, threads)
    return time_closure(fn, min_time=min_time, max_rounds=max_rounds)


def run_isolated(name, impl, threads=None, min_time=0.5, max_rounds=200, timeout=900):
    """Time ``name`` × ``impl`` in a fresh Python process; returns the timing dict (or ``error``)."""
    cmd = [sys.executable, "-m", "fastnn.benchmarks", name, impl, str(threads or 0), str(min_time), str(max_rounds)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _worker(argv):
    name, impl, threads, min_time, max_rounds = argv
    res = run_in_process(name, impl, int(threads) or None, float(min_time), int(max_rounds))
    print(json.dumps(res))


if __name__ == "__main__":
    _worker(sys.argv[1:])
