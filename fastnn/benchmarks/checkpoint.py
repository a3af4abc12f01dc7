"""Checkpoint loading (issue: torch checkpoints without torch): fastnn.load against torch.load on
one 200 MiB float32 state dict, zip and legacy format, in memory and memory-mapped.

The file is written once by a child process (``torch.save`` when torch is installed, else
``fastnn.save`` for the zip format) into the temp folder, so both implementations read the very
same bytes; torch's side runs in a process that never imports fastnn. ``torch.load`` runs with
its default ``weights_only=True`` (the safe mode, like fastnn's allowlist).

``python -m fastnn.benchmarks.checkpoint`` measures each load in fresh processes instead: the
first load of a process, the median of the next ones, and the peak resident memory the load
added (``VmHWM`` after the load minus ``VmRSS`` before it, the peak reset just before), which
the registry's in-process sampler underestimates once an allocator recycles freed memory.
"""
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

from . import workload

MIB = 200
LAYERS, WIDTH = 48, 1024  # 48 x (1024x1024 weight, bias, norm weight, norm bias) + a 2048x1024 embedding
SHAPE = f"{MIB} MiB float32 state dict, {4 * LAYERS + 1} tensors"

_WRITE = """
import sys
import numpy as np
path, fmt, layers, width = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
sd = {"embed.weight": rng.standard_normal((2 * width, width), dtype=np.float32)}
for i in range(layers):
    sd[f"layers.{i}.weight"] = rng.standard_normal((width, width), dtype=np.float32)
    for k in ("bias", "norm.weight", "norm.bias"):
        sd[f"layers.{i}.{k}"] = rng.standard_normal(width, dtype=np.float32)
try:
    import torch
except ImportError:
    if fmt != "zip":
        raise SystemExit("the legacy-format file needs torch to write it")
    import fastnn
    fastnn.save(sd, path + ".tmp")
else:
    from collections import OrderedDict
    sd = OrderedDict((k, torch.from_numpy(v)) for k, v in sd.items())
    torch.save(sd, path + ".tmp", _use_new_zipfile_serialization=fmt == "zip")
import os
os.replace(path + ".tmp", path)
"""


def state_dict_file(fmt):
    """Path of the benchmark checkpoint in format ``fmt`` ('zip' or 'legacy'), written on first use."""
    folder = os.path.join(tempfile.gettempdir(), "fastnn-bench-io")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"state_dict_{MIB}mib_{fmt}.pt")
    if not os.path.exists(path):
        subprocess.run([sys.executable, "-c", _WRITE, path, fmt, str(LAYERS), str(WIDTH)], check=True)
    return path


def _loader(impl, fmt, mmap=False):
    path = state_dict_file(fmt)
    if impl == "torch":
        import torch

        return lambda: torch.load(path, mmap=mmap)
    import fastnn

    return lambda: fastnn.load(path, mmap=mmap)


@workload("load_zip", op="io", shape=SHAPE + ", zip format", flops=0, impls=("auto", "torch"),
          note="fastnn.load vs torch.load (weights_only=True), repeated in one process (torch's freed "
               "storages get recycled by malloc, NumPy's go back to the OS); fresh processes: "
               "python -m fastnn.benchmarks.checkpoint")
def load_zip(impl):
    return _loader(impl, "zip")


@workload("load_legacy", op="io", shape=SHAPE + ", legacy format", flops=0, impls=("auto", "torch"),
          note="the pre-zip format (_use_new_zipfile_serialization=False)")
def load_legacy(impl):
    return _loader(impl, "legacy")


@workload("load_zip_mmap", op="io", shape=SHAPE + ", zip format, mmap=True", flops=0, impls=("auto", "torch"),
          note="arrays view a copy-on-write map of the file: nothing is read until used")
def load_zip_mmap(impl):
    return _loader(impl, "zip", mmap=True)


_CHILD = """
import json, sys, time
lib, path, mmap, rounds = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
load = __import__(lib).load

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident set to the current one
rss = status("VmRSS:")
t = time.perf_counter()
obj = load(path, mmap=mmap)
first = time.perf_counter() - t
peak = status("VmHWM:") - rss
del obj
times = []
for _ in range(rounds):
    t = time.perf_counter()
    load(path, mmap=mmap)
    times.append(time.perf_counter() - t)
print(json.dumps({"first_s": first, "times_s": times, "peak_extra_bytes": peak}))
"""


def _child(lib, fmt, mmap, rounds):
    out = subprocess.run([sys.executable, "-c", _CHILD, lib, state_dict_file(fmt), "1" if mmap else "0", str(rounds)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(processes=5, rounds=5):
    """Print a markdown table: each (file, library) loaded in ``processes`` fresh processes,
    interleaved (fastnn, torch, fastnn, ...) so a busy machine's noise hits both alike."""
    import platform

    libs = ["fastnn"] + (["torch"] if importlib.util.find_spec("torch") else [])
    configs = [(fmt, mmap, lib) for fmt, mmap in (("zip", False), ("legacy", False), ("zip", True)) for lib in libs]
    runs = {c: [] for c in configs}
    for _ in range(processes):
        for c in configs:
            runs[c].append(_child(c[2], c[0], c[1], rounds))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {SHAPE}; {processes} fresh "
          f"processes each, interleaved; first load of each process, then {rounds} more per process\n")
    print("| file | library | first load s, median (min) | next loads s, median | peak extra memory | × file |")
    print("|---|---|---|---|---|---|")
    for fmt, mmap, lib in configs:
        r = runs[(fmt, mmap, lib)]
        first = [x["first_s"] for x in r]
        peak = max(x["peak_extra_bytes"] for x in r)
        size = os.path.getsize(state_dict_file(fmt))
        print(f"| {fmt}{', mmap' if mmap else ''} | {lib} | {statistics.median(first):.3f} ({min(first):.3f}) | "
              f"{statistics.median(t for x in r for t in x['times_s']):.3f} | {peak / 2**20:.1f} MiB | "
              f"{peak / size:.2f} |")


if __name__ == "__main__":
    main()
