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
    small: str = ""  # a smaller workload that slow rungs run instead (time scaled by FLOPs)
    slow_impls: tuple = ("reference",)
    extra: dict = field(default_factory=dict)

    @property
    def group(self):
        return f"{self.op}|{self.shape}|{self.dtype}"


WORKLOADS = {}


def workload(name, op, shape, flops, dtype="float32", impls=FASTNN_IMPLS + ("torch",), note="", small="",
             slow_impls=("reference",), **extra):
    """Decorator: register ``make(impl) -> closure`` as workload ``name``.

    ``small`` names another workload of the same op that the ``slow_impls`` (the seed's loops)
    run instead; ``fastnn bench`` scales their time by the FLOP ratio and marks it.
    """

    def deco(make):
        WORKLOADS[name] = Workload(name, op, shape, dtype, float(flops), make, tuple(impls), note, small,
                                   tuple(slow_impls), extra)
        return make

    return deco


def train_step(impl, model, x, y, lr=1e-3):
    """A closure for one Adam training step (forward, cross-entropy, backward, update) of
    ``model``: a torch module when ``impl == "torch"``, else a fastnn module."""
    if impl == "torch":
        import torch

        opt = torch.optim.Adam(model.parameters(), lr=lr)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def step():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt), yt).backward()
            opt.step()

        return step
    from .. import optim, train

    opt = optim.Adam(model.parameters(), lr=lr)
    return lambda: train.train_step(model, opt, x, y)


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
    if cold < min_time:
        fn()  # second warm-up: caches, BLAS buffers (skipped for calls slower than the budget)
    times = []
    start = time.perf_counter()
    while len(times) < min_rounds or (time.perf_counter() - start < min_time and len(times) < max_rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"cold_s": cold, "median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "rounds": len(times)}


def peak_memory(fn):
    """Peak extra memory of one call of ``fn`` in bytes, and how it was measured.

    The larger of ``tracemalloc``'s peak (exact for NumPy allocations) and the peak of the
    process's resident set sampled every 0.5 ms by a thread (catches allocations NumPy does
    not trace: Numba's runtime, C ``malloc`` scratch in kernels, torch).
    """
    import threading
    import tracemalloc

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    try:
        base = rss()
    except OSError:  # pragma: no cover - no /proc
        base = None
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss() - base)
            done.wait(0.0005)

    sampler = threading.Thread(target=sample, daemon=True) if base is not None else None
    tracemalloc.start()
    if sampler:
        sampler.start()
    try:
        fn()
    finally:
        done.set()
        if sampler:
            sampler.join()
        _, traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return max(traced, peak[0]), "max(tracemalloc, sampled RSS)" if sampler else "tracemalloc"


def run_in_process(name, impl, threads=None, min_time=0.5, max_rounds=200, memory=True):
    """Time workload ``name`` with ``impl`` in this process (see :func:`run_isolated`)."""
    fn = prepare(name, impl, threads)
    res = time_closure(fn, min_time=min_time, max_rounds=max_rounds)
    if memory:
        res["peak_mem_bytes"], res["mem_method"] = peak_memory(fn)
    return res


def run_isolated(names, impl, threads=None, min_time=0.5, max_rounds=200, timeout=1800, on_result=None):
    """Time each workload of ``names`` with ``impl`` in one fresh Python process.

    One process per implementation keeps torch's and fastnn's thread pools apart (and saves
    start-up time). Returns ``{name: timing dict or {"error": ...}}``; ``on_result(name, res)``
    is called as each arrives (for progress bars).
    """
    cmd = [sys.executable, "-m", "fastnn.benchmarks", impl, str(threads or 0), str(min_time), str(max_rounds), *names]
    out = {}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    t0 = time.perf_counter()
    for line in proc.stdout:
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            break
        if line.startswith("{"):
            rec = json.loads(line)
            out[rec.pop("workload")] = rec
            if on_result:
                on_result(list(out)[-1], out[list(out)[-1]])
    err = proc.stderr.read()
    proc.wait()
    for n in names:
        if n not in out:
            msg = (err.strip().splitlines() or ["process failed"])[-1]
            out[n] = {"error": msg}
            if on_result:
                on_result(n, out[n])
    return out


def blas_info():
    """The BLAS libraries loaded in this process, with the kernel (architecture) they chose."""
    from threadpoolctl import threadpool_info

    return [{"internal_api": str(lib.get("internal_api")), "version": str(lib.get("version")),
             "architecture": str(lib.get("architecture")), "num_threads": int(lib.get("num_threads", 0))}
            for lib in threadpool_info() if lib.get("user_api") == "blas"]


def _worker(argv):
    impl, threads, min_time, max_rounds, *names = argv
    for name in names:
        try:
            res = run_in_process(name, impl, int(threads) or None, float(min_time), int(max_rounds))
        except Exception as e:  # report and go on with the next workload
            res = {"error": f"{type(e).__name__}: {e}"}
        res["workload"] = name
        res["blas"] = blas_info()
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    _worker(sys.argv[1:])
