"""Benchmark workloads: a registry of ready-to-call closures, one per (workload, implementation).

A workload module (``fastnn/benchmarks/<op>.py``, found automatically) registers factories::

    @workload("mlp_step", op="mlp", shape="batch 64, 784-256-256-10", dtype="float32",
              flops=..., impls=FASTNN_IMPLS + ("torch",))
    def mlp_step(impl):
        ...set up arrays (not timed)...
        return step            # a closure with no arguments: the timed call

``impl`` is a fastnn backend (``reference``, ``numpy``, ``numba``, ``cython``, ``auto``), the
seed's own code (``seed``, where a workload has it) or a peer (``torch``).

How peers are kept honest
-------------------------
Every implementation runs in a worker process of its own (``_worker.py``, started as a script,
all with the same thread count and the environment the user gave ``fastnn bench``). A peer's
worker never imports fastnn: it loads this folder as a package of another name, and a
workload module imports nothing from fastnn at its top, only inside its fastnn branch
(``import fastnn`` / ``from fastnn import ...``). So torch meets neither fastnn's OpenMP runtime
(one per process, whichever library loads it first) nor anything fastnn might set;
``tests/test_bench_report.py`` checks a peer worker's ``sys.modules`` and environment.

:func:`measure` interleaves the implementations of a workload (A B C A B C ...) in short
bursts, so that drift on a shared machine hits all of them alike, and reports min, median and
max over every timed call.
"""
import importlib
import json
import os
import pkgutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

FASTNN_IMPLS = ("reference", "numpy", "numba", "cython", "auto")
PEERS = ("torch",)
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")


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
    hidden: bool = False  # only run as another workload's ``small`` shape
    extra: dict = field(default_factory=dict)

    @property
    def group(self):
        return f"{self.op}|{self.shape}|{self.dtype}"


WORKLOADS = {}
#: Set by the worker before a factory runs: ``quick`` (time fewer steps where a workload says
#: so) and ``data`` (a ``.npz`` with MNIST's arrays, for the end-to-end workloads).
CONTEXT = {"quick": False, "data": None}


def workload(name, op, shape, flops, dtype="float32", impls=FASTNN_IMPLS + ("torch",), note="", small="",
             slow_impls=("reference",), hidden=False, **extra):
    """Decorator: register ``make(impl) -> closure`` as workload ``name``.

    ``small`` names another (usually ``hidden``) workload of the same op that the
    ``slow_impls`` (the seed's loops) run instead; ``fastnn bench`` scales their time by the
    FLOP ratio and marks it.
    """

    def deco(make):
        WORKLOADS[name] = Workload(name, op, shape, dtype, float(flops), make, tuple(impls), note, small,
                                   tuple(slow_impls), hidden, extra)
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
    from fastnn import optim, train

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
    elif impl != "seed":
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


def blas_info():
    """The BLAS libraries loaded in this process, with the kernel (architecture) they chose."""
    from threadpoolctl import threadpool_info

    return [{"internal_api": str(lib.get("internal_api")), "version": str(lib.get("version")),
             "architecture": str(lib.get("architecture")), "num_threads": int(lib.get("num_threads", 0))}
            for lib in threadpool_info() if lib.get("user_api") == "blas"]


def cpu_info():
    """``{"cpu": model name, "isa": "AVX-512" | "AVX2" | "SSE", "cores": usable cores}``."""
    name, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == "unknown":
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:  # pragma: no cover - not Linux
        import platform

        name = platform.processor() or name
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE" if flags else "unknown"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover
        cores = os.cpu_count() or 1
    return {"cpu": name, "isa": isa, "cores": cores}


# -- worker processes and the interleaved measurement ------------------------------------------------
class WorkerError(RuntimeError):
    pass


class Worker:
    """One implementation's process (``_worker.py``), driven by JSON lines on stdin/stdout.

    Between requests the process is stopped (SIGSTOP): the threads an implementation leaves
    spinning after its last call (OpenMP teams, OpenBLAS's workers) would otherwise take the
    cores from the next implementation's burst. Each burst runs as its implementation runs
    for a user, on a machine it has to itself.
    """

    def __init__(self, impl, threads, env):
        self.impl = impl
        self._err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, WORKER, impl, str(threads or 0)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True, env=env)

    def _signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def request(self, **msg):
        """Send one command, return the reply; a reply with ``"error"`` raises :class:`WorkerError`."""
        self._signal(signal.SIGCONT)
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            for line in self.proc.stdout:
                if line.startswith("{"):
                    reply = json.loads(line)
                    if "error" in reply:
                        raise WorkerError(reply["error"])
                    return reply
        except (BrokenPipeError, OSError):
            pass
        finally:
            self._signal(signal.SIGSTOP)
        self._err.seek(0)
        tail = (self._err.read().strip().splitlines() or ["process ended"])[-1]
        raise WorkerError(f"{self.impl} worker died: {tail}")

    def close(self):
        self._signal(signal.SIGCONT)
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._err.close()


class Load:
    """``n`` busy-looping processes, paused (SIGSTOP) until :meth:`on`: the contention of
    ``fastnn bench --under-load N``, switched on and off between bursts."""

    def __init__(self, n):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
        self.off()

    def _signal(self, sig):
        for p in self.procs:
            p.send_signal(sig)

    def on(self):
        self._signal(signal.SIGCONT)
        time.sleep(0.05)  # let the scheduler put them on the cores

    def off(self):
        self._signal(signal.SIGSTOP)

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()


def _summary(times):
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "rounds": len(times)}


def measure(workers, names, quick=False, load=None, data=None, memory=True):
    """Time one workload on every worker, interleaved.

    ``workers`` maps impl -> :class:`Worker`, ``names`` impl -> the workload that impl runs (a
    slow rung runs a smaller one). Every implementation is prepared and warmed up first (the
    first call is the cold start), then bursts of calls go round the implementations, in a
    rotating order, until each has its time budget and minimum count; with ``load`` each round
    is run twice, idle and with the load on. Returns ``{impl: {"cold_s", "median_s", "min_s",
    "max_s", "rounds", "peak_mem_bytes", "loaded": {...} | None} or {"error": str}}``.
    """
    budget, min_calls, max_calls, burst_s = (0.15, 3, 15, 0.02) if quick else (1.5, 7, 200, 0.05)
    out, burst, samples = {}, {}, {}
    for impl, w in workers.items():
        try:
            r = w.request(cmd="prepare", workload=names[impl], quick=quick, data=data)
            warm = w.request(cmd="time", calls=1)["times"][0]
        except WorkerError as e:
            out[impl] = {"error": str(e)}
            continue
        out[impl] = {"cold_s": r["cold_s"]}
        burst[impl] = max(1, min(max_calls, int(burst_s / max(warm, 1e-9))))
        samples[impl] = {"idle": [], "loaded": []}
    phases = ("idle", "loaded") if load else ("idle",)
    spent = {impl: 0.0 for impl in samples}
    order = list(samples)
    k = 0
    while True:
        todo = [i for i in order if len(samples[i]["idle"]) < min_calls
                or (spent[i] < budget and len(samples[i]["idle"]) < max_calls)]
        if not todo:
            break
        rot = todo[k % len(todo):] + todo[:k % len(todo)]
        k += 1
        for phase in phases:
            if phase == "loaded":
                load.on()
            try:
                for impl in [i for i in rot if i in samples]:
                    try:
                        ts = workers[impl].request(cmd="time", calls=burst[impl])["times"]
                    except WorkerError as e:
                        out[impl] = {"error": str(e)}
                        order.remove(impl)
                        samples.pop(impl)
                        continue
                    samples[impl][phase] += ts
                    if phase == "idle":
                        spent[impl] += sum(ts)
            finally:
                if phase == "loaded":
                    load.off()
    for impl, s in samples.items():
        out[impl].update(_summary(s["idle"]), loaded=_summary(s["loaded"]) if s["loaded"] else None)
        try:
            if memory:
                out[impl]["peak_mem_bytes"] = workers[impl].request(cmd="memory")["peak_mem_bytes"]
            workers[impl].request(cmd="release")
        except WorkerError as e:
            out[impl] = {"error": str(e)}
    return out
