"""Measurements behind docs/distributed.md: allreduce time against bytes, compute per step,
and the step-time model that combines them.

    mpiexec -n N python -m fastnn.distributed.bench allreduce --out ar-N.json   # N ranks, this machine
    python -m fastnn.distributed.bench compute --threads 1 --out compute-1.json  # one process
    python -m fastnn.distributed.bench model ar-2.json compute-2.json            # the tables

The allreduce is timed as DDP runs it (float32, in place, ``Iallreduce`` + ``Wait``); each
repetition starts after a barrier and counts the slowest rank; the median is reported.
"""
import argparse
import json
import math
import statistics
import time

import numpy as np

SIZES = [4 << (2 * k) for k in range(13)]  # 4 B .. 64 MiB, x4


def _grad_bytes(model):
    return sum(p.data.nbytes for p in model.parameters())


def allreduce(args):
    from mpi4py import MPI

    from . import comm as C

    comm = C.init()
    rank, world = comm.Get_rank(), comm.Get_size()
    rows = []
    for size in [s for s in SIZES if s <= args.max_bytes]:
        buf = np.ones(max(size // 4, 1), np.float32)
        times, t_end = [], time.perf_counter() + args.seconds
        while comm.bcast(len(times) < 5 or (len(times) < 1000 and time.perf_counter() < t_end)):
            comm.Barrier()  # (rank 0 decides whether to go on: every rank stops together)
            t0 = time.perf_counter()
            comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM).Wait()
            times.append(time.perf_counter() - t0)
        slowest = np.max(comm.allgather(np.array(times)), axis=0)
        rows.append({"bytes": buf.nbytes, "median_s": float(np.median(slowest)), "min_s": float(slowest.min()),
                     "reps": len(times)})
    if rank == 0:
        out = {"world": world, "mpi": MPI.Get_library_version().splitlines()[0], "rows": rows}
        _write(out, args.out)
        print(f"allreduce on {world} ranks ({out['mpi']}), float32 in place, median of the slowest rank")
        print("| bytes | median (us) | min (us) | GB/s at the min |\n|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['bytes']:,} | {r['median_s'] * 1e6:,.1f} | {r['min_s'] * 1e6:,.1f} | "
                  f"{r['bytes'] / r['min_s'] / 1e9:.3f} |")


def compute(args):
    import fastnn
    from fastnn import train

    fastnn.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    out = {"threads": args.threads, "models": {}}
    for name in ("mlp", "cnn"):
        model = getattr(train, name)(rng=np.random.default_rng(0))
        opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
        shape = (784,) if name == "mlp" else (1, 28, 28)
        res = {"grad_bytes": _grad_bytes(model), "batches": {}}
        for b in args.batches:
            x = rng.random((b, *shape), dtype=np.float32)
            y = rng.integers(0, 10, b)
            train.train_step(model, opt, x, y)  # warm-up (JIT)
            times, t_end = [], time.perf_counter() + args.seconds
            while len(times) < 3 or time.perf_counter() < t_end:
                t0 = time.perf_counter()
                train.train_step(model, opt, x, y)
                times.append(time.perf_counter() - t0)
            res["batches"][str(b)] = {"median_s": statistics.median(times), "min_s": min(times)}
        out["models"][name] = res
    _write(out, args.out)
    print(f"train step (forward, backward, Adam), {args.threads} thread(s): median / min")
    print("| model | gradient bytes | " + " | ".join(f"b={b}" for b in args.batches) + " |")
    print("|---|---:|" + "---:|" * len(args.batches))
    for name, res in out["models"].items():
        print(f"| {name} | {res['grad_bytes']:,} | " + " | ".join(f"{t['median_s'] * 1e3:.1f} / {t['min_s'] * 1e3:.1f} ms" for t in res["batches"].values()) + " |")


def fit_allreduce(rows, lo=64 << 10, hi=4 << 20):
    """``(latency_s, bytes_per_s)`` from the fastest repetitions (the cost when the cores are
    free): the smallest message's time, and the least-squares slope of time against bytes over
    messages of ``lo`` to ``hi`` bytes (the range of the MLP's and the CNN's gradients)."""
    lat = rows[0]["min_s"]
    sel = [r for r in rows if lo <= r["bytes"] <= hi]
    slope = np.polyfit([r["bytes"] for r in sel], [r["min_s"] for r in sel], 1)[0]
    return lat, 1 / slope


def allreduce_time(nbytes, n, alpha, beta):
    """An allreduce of ``nbytes`` over ``n`` ranks as MPICH does a large one (reduce-scatter,
    then allgather): ``2 ceil(log2 n)`` latencies and ``2 (n-1)/n`` of the bytes each way."""
    return 0.0 if n == 1 else 2 * math.ceil(math.log2(n)) * alpha + 2 * (n - 1) / n * nbytes / beta


def fit_compute(batches):
    """``(fixed_s, per_sample_s)``: ``t(b) = fixed + per_sample * b`` fitted to the fastest step
    times (least squares on the relative error)."""
    b = np.array([int(k) for k in batches], float)
    t = np.array([v["min_s"] for v in batches.values()])
    per_sample, fixed = np.polyfit(b, t, 1, w=1 / t)
    return max(fixed, 0.0), per_sample


def model(args):
    """Step time of a batch of G samples split over n ranks:

        T(n) = t0 + c G / n + 2 ceil(log2 n) alpha + 2 (n-1)/n S / beta

    (compute fitted as fixed + per-sample, allreduce as above). Adding ranks pays while the
    compute they remove, c G (1/n - 1/2n), beats what they add to the allreduce."""
    with open(args.allreduce) as f:
        ar = json.load(f)
    with open(args.compute) as f:
        cp = json.load(f)
    lat, bw = fit_allreduce(ar["rows"])
    nets = [(f"shared memory (fitted here: {lat * 1e6:.0f} us, {bw / 1e9:.1f} GB/s)", lat, bw),
            ("10 GbE (assumed: 30 us, 1.1 GB/s)", 30e-6, 1.1e9),
            ("InfiniBand HDR (assumed: 2 us, 20 GB/s)", 2e-6, 20e9)]
    print(f"allreduce fit ({args.allreduce}, {ar['world']} ranks): latency {lat * 1e6:.1f} us, {bw / 1e9:.2f} GB/s; "
          f"compute fit ({args.compute}, {cp['threads']} thread(s) per rank)")
    for name, res in cp["models"].items():
        t0, c = fit_compute(res["batches"])
        S = res["grad_bytes"]
        print(f"\n### {name}: S = {S / 1e6:.2f} MB of gradients; compute t0 = {t0 * 1e3:.2f} ms + "
              f"c = {c * 1e6:.1f} us/sample")
        for G in args.global_batch:
            ns = [n for n in (2 ** k for k in range(12)) if n <= G]
            print(f"\nbatch {G} split over n ranks: step time in ms (speed-up over one rank)\n")
            print("| network | " + " | ".join(f"n={n}" for n in ns) + " | fastest n | last n at >= 50% efficiency |")
            print("|---|" + "---:|" * (len(ns) + 2))
            for net, a, b_ in nets:
                ts = {n: t0 + c * G / n + allreduce_time(S, n, a, b_) for n in ns}
                best = min(ts, key=ts.get)
                eff = max(n for n in ns if ts[1] / ts[n] >= n / 2)
                print(f"| {net} | " + " | ".join(f"{ts[n] * 1e3:.2f} ({ts[1] / ts[n]:.1f}x)" for n in ns)
                      + f" | {best} | {eff} |")
        b = args.per_rank
        ns = [2 ** k for k in range(1, 10)]
        print(f"\n{b} samples per rank (batch {b}n): allreduce share of the step\n")
        print("| network | " + " | ".join(f"n={n}" for n in ns) + " |\n|---|" + "---:|" * len(ns))
        for net, a, b_ in nets:
            shares = [allreduce_time(S, n, a, b_) for n in ns]
            print(f"| {net} | " + " | ".join(f"{100 * t / (t + t0 + c * b):.0f}%" for t in shares) + " |")


def _write(obj, path):
    if path:
        with open(path, "w") as f:
            json.dump(obj, f, indent=1)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fastnn.distributed.bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("allreduce", help="under mpiexec: allreduce time against bytes")
    a.add_argument("--seconds", type=float, default=0.3, help="time per message size")
    a.add_argument("--max-bytes", type=int, default=SIZES[-1], help="largest message")
    a.add_argument("--out", default=None)
    a.set_defaults(func=allreduce)
    c = sub.add_parser("compute", help="one process: train-step time of the MLP and CNN against the batch")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    c.add_argument("--seconds", type=float, default=1.0)
    c.add_argument("--out", default=None)
    c.set_defaults(func=compute)
    m = sub.add_parser("model", help="step time on n machines from an allreduce and a compute JSON")
    m.add_argument("allreduce")
    m.add_argument("compute")
    m.add_argument("--global-batch", type=lambda s: [int(v) for v in s.split(",")], default=[64, 512])
    m.add_argument("--per-rank", type=int, default=64)
    m.set_defaults(func=model)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
