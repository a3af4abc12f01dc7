"""``fastnn bench``: run the ladder of every op against torch and write a readable report.

Outputs (in ``--out``, default ``bench-results/``):

* ``results.json`` — one record per measurement; schema below, checked by :func:`validate`;
* ``report.md`` — a table per op and the header (CPU and its vector ISA, threads, BLAS and its
  kernel, how peers were run), with ``chart.png`` (log-scale bars of the ladder per op, torch
  as a reference line; needs matplotlib).

``results.json`` schema (``"schema": "fastnn-bench/2"``)::

    {"schema": str, "created": str (ISO time), "quick": bool, "threads": int, "under_load": int,
     "machine": {"cpu": str, "isa": str, "cores": int, "python": str, "numpy": str, "fastnn": str},
     "blas": [{"internal_api": str, "version": str, "architecture": str, "num_threads": int}],
     "torch": str ("not installed" when absent), "torch_blas": [same as blas],
     "peer_check": {"fastnn_imported": bool, "env_as_given": bool} | null,
     "sgemm_gflops": float | null,
     "records": [{"workload": str, "op": str, "shape": str, "dtype": str, "impl": str,
                  "median_ms": float|null, "min_ms": float|null, "max_ms": float|null,
                  "rounds": int, "cold_s": float|null, "gflops": float|null,
                  "pct_sgemm_peak": float|null, "speedup_vs_first": float|null,
                  "first_rung": str|null, "ratio_to_torch": float|null, "peak_mem_mib": float|null,
                  "loaded_median_ms": float|null, "load_factor": float|null,
                  "scaled_from": str|null, "error": str|null}]}

A rung too slow for a shape (the seed's loops) runs the workload's documented ``small``
shape; its time is scaled by the FLOP ratio and ``scaled_from`` names the shape measured.
``speedup_vs_first`` compares with the first rung of the workload's ladder (``first_rung``:
the seed's code where the workload has it, else the reference kernel). With
``--under-load N``, every burst also runs with N busy-looping processes on the cores;
``load_factor`` is the loaded median over the idle one.
"""
import datetime
import importlib.util
import json
import os
import platform
import re
import tempfile

from . import FASTNN_IMPLS, PEERS, WORKLOADS, Load, Worker, WorkerError, _load_all, cpu_info, measure

SCHEMA = "fastnn-bench/2"
ALL_IMPLS = ("seed",) + FASTNN_IMPLS + PEERS
_OPT_F = (float, type(None))
_RECORD_FIELDS = {
    "workload": str, "op": str, "shape": str, "dtype": str, "impl": str, "median_ms": _OPT_F,
    "min_ms": _OPT_F, "max_ms": _OPT_F, "rounds": int, "cold_s": _OPT_F, "gflops": _OPT_F, "pct_sgemm_peak": _OPT_F,
    "speedup_vs_first": _OPT_F, "first_rung": (str, type(None)), "ratio_to_torch": _OPT_F,
    "peak_mem_mib": _OPT_F, "loaded_median_ms": _OPT_F, "load_factor": _OPT_F,
    "scaled_from": (str, type(None)), "error": (str, type(None)),
}
_TOP_FIELDS = {"schema": str, "created": str, "quick": bool, "threads": int, "under_load": int, "machine": dict,
               "blas": list, "torch": str, "torch_blas": list, "peer_check": (dict, type(None)),
               "sgemm_gflops": _OPT_F, "records": list}
# Names users may give to --ops besides the workloads' ``op`` fields and workload names
OP_ALIASES = {"dense": ("mlp",), "pooling": ("pool2d",), "recurrent": ("lstm", "gru", "seq2seq"), "optim": ("adamw",)}
TORCH_HINT = ("torch is not installed, so there is no torch row. To compare: "
              "pip install 'fastnn[bench]' --extra-index-url https://download.pytorch.org/whl/cpu "
              "(the CPU-only wheels, as pytorch.org documents; the default index on Linux brings CUDA's)")


def validate(obj):
    """Raise ``ValueError`` unless ``obj`` follows the ``results.json`` schema (module docstring)."""
    if not isinstance(obj, dict):
        raise ValueError(f"results: expected an object, got {type(obj).__name__}")
    for key, typ in _TOP_FIELDS.items():
        if key not in obj:
            raise ValueError(f"results: missing key {key!r}")
        if not isinstance(obj[key], typ) or (typ is int and isinstance(obj[key], bool)):
            raise ValueError(f"results[{key!r}]: expected {typ}, got {type(obj[key]).__name__}")
    if obj["schema"] != SCHEMA:
        raise ValueError(f"results['schema']: expected {SCHEMA!r}, got {obj['schema']!r}")
    for i, rec in enumerate(obj["records"]):
        if not isinstance(rec, dict):
            raise ValueError(f"records[{i}]: expected an object")
        for key, typ in _RECORD_FIELDS.items():
            if key not in rec:
                raise ValueError(f"records[{i}]: missing key {key!r}")
            if not isinstance(rec[key], typ) or (typ is int and isinstance(rec[key], bool)):
                raise ValueError(f"records[{i}][{key!r}]: expected {typ}, got {type(rec[key]).__name__}")
    return obj


def select(ops=None):
    """Workload names for ``ops`` (op names, aliases or workload names; None: all), in registry
    order; an unknown name raises ValueError."""
    _load_all()
    names = [n for n, w in WORKLOADS.items() if w.op != "peak" and not w.hidden]
    if not ops:
        return names
    known = sorted(set(OP_ALIASES) | {WORKLOADS[n].op for n in names} | set(names))
    wanted = set()
    for op in ops:
        if op not in known:
            raise ValueError(f"ops: expected names from {known}, got {op!r}")
        wanted.update(OP_ALIASES.get(op, (op,)))
    return [n for n in names if WORKLOADS[n].op in wanted or n in wanted]


def _mnist_file():
    """MNIST's arrays in a temporary .npz for the end-to-end workloads' workers, or None."""
    from fastnn.datasets import mnist

    try:
        (xtr, ytr), (xte, yte) = mnist()
    except FileNotFoundError:
        return None
    fd, path = tempfile.mkstemp(suffix=".npz", prefix="fastnn-bench-mnist-")
    with os.fdopen(fd, "wb") as f:
        import numpy as np

        np.savez(f, xtr=xtr, ytr=ytr, xte=xte, yte=yte)
    return path


def run(ops=None, quick=False, threads=None, progress=True, impls=None, under_load=0, env=None):
    """Measure the selected workloads x implementations; returns the results object.

    ``env``: the environment the worker processes get (default: this process's). Peers and
    fastnn's rungs get the same one.
    """
    from tqdm import tqdm

    import numpy as np

    import fastnn

    names = select(ops)
    threads = threads or fastnn.get_num_threads()
    have_torch = importlib.util.find_spec("torch") is not None
    impls = [i for i in (impls or ALL_IMPLS) if i not in PEERS or have_torch]
    env = dict(os.environ if env is None else env)
    data = _mnist_file() if any(WORKLOADS[n].extra.get("needs_data") for n in names) else None
    bar = tqdm(total=len(names) + 1, desc="fastnn bench", unit="workload", disable=not progress)
    workers, measured = {}, {}
    load = Load(under_load) if under_load else None

    def worker(impl):
        if impl not in workers:
            workers[impl] = Worker(impl, threads, env)
        return workers[impl]

    try:
        peak = measure({"numpy": worker("numpy")}, {"numpy": "sgemm_peak"}, quick, memory=False)["numpy"]
        bar.update(1)
        info = worker("numpy").request(cmd="info")
        peer = worker("torch").request(cmd="info") if "torch" in impls else None
        for n in names:
            w = WORKLOADS[n]
            use = [i for i in impls if i in w.impls]
            bar.set_postfix_str(n)
            runs = {i: (w.small if (i in w.slow_impls and w.small) else n) for i in use}
            measured[n] = measure({i: worker(i) for i in use}, runs, quick, load, data)
            bar.update(1)
    finally:
        bar.close()
        for w in workers.values():
            w.close()
        if load:
            load.close()
        if data:
            os.unlink(data)
    sgemm_gflops = WORKLOADS["sgemm_peak"].flops / peak["median_s"] / 1e9 if "median_s" in peak else None

    records = []
    for n in names:
        w = WORKLOADS[n]
        ladder = [i for i in ALL_IMPLS if i in w.impls]
        first = next((i for i in ladder if i not in PEERS and i in impls), None)
        for impl in ladder:
            rec = dict.fromkeys(_RECORD_FIELDS)
            rec.update(workload=n, op=w.op, shape=w.shape, dtype=w.dtype, impl=impl, rounds=0, first_rung=first)
            if impl not in impls:
                rec["error"] = "not installed" if impl in PEERS else "not selected"
                records.append(rec)
                continue
            small = w.small if (impl in w.slow_impls and w.small) else None
            res = measured[n].get(impl, {"error": "not run"})
            if "error" in res:
                rec["error"] = res["error"]
                records.append(rec)
                continue
            flops = w.flops * (w.extra.get("quick_fraction", 1.0) if quick else 1.0)
            scale = flops / WORKLOADS[small].flops if small else 1.0
            rec.update(median_ms=res["median_s"] * 1e3 * scale, min_ms=res["min_s"] * 1e3 * scale,
                       max_ms=res["max_s"] * 1e3 * scale, rounds=int(res["rounds"]), cold_s=res["cold_s"],
                       peak_mem_mib=None if small or "peak_mem_bytes" not in res else res["peak_mem_bytes"] / 2**20,
                       scaled_from=WORKLOADS[small].shape if small else None)
            if res.get("loaded"):
                rec["loaded_median_ms"] = res["loaded"]["median_s"] * 1e3 * scale
                rec["load_factor"] = rec["loaded_median_ms"] / rec["median_ms"]
            rec["gflops"] = flops / (rec["median_ms"] / 1e3) / 1e9 if flops else None
            if rec["gflops"] is not None and sgemm_gflops:
                rec["pct_sgemm_peak"] = 100 * rec["gflops"] / sgemm_gflops
            records.append(rec)
    by = {(r["workload"], r["impl"]): r for r in records}
    for r in records:
        base, tor = by.get((r["workload"], r["first_rung"])), by.get((r["workload"], "torch"))
        if r["median_ms"] is not None:
            if base and base["median_ms"]:
                r["speedup_vs_first"] = base["median_ms"] / r["median_ms"]
            if tor and tor["median_ms"]:
                r["ratio_to_torch"] = r["median_ms"] / tor["median_ms"]
    torch_version = "not installed"
    if have_torch:
        from importlib.metadata import version

        torch_version = version("torch")
    return validate({
        "schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(quick), "threads": int(threads), "under_load": int(under_load),
        "machine": dict(cpu_info(), python=platform.python_version(), numpy=np.__version__,
                        fastnn=fastnn.__version__),
        "blas": info["blas"], "torch": torch_version, "torch_blas": peer["blas"] if peer else [],
        "peer_check": None if peer is None else {"fastnn_imported": peer["fastnn_imported"],
                                                 "env_as_given": peer["env"] == env},
        "sgemm_gflops": sgemm_gflops, "records": records,
    })


def _fmt(v, spec, suffix="", none="–"):
    return none if v is None else format(v, spec) + suffix


def op_table(results, op):
    """Markdown table of one op's records."""
    loaded = bool(results.get("under_load"))
    head = ("| workload | implementation | median ms (min–max) | vs first rung | vs torch | GFLOP/s | % sgemm peak | "
            "peak extra MiB | cold start s |" + (" loaded median ms | load factor |" if loaded else ""))
    rows = [head, "|" + "---|" * head.count(" |")]
    for r in results["records"]:
        if r["op"] != op:
            continue
        if r["error"]:
            t = "not installed" if r["error"] == "not installed" else f"error: {r['error'][:60]}"
            rows.append(f"| {r['workload']} | {r['impl']} | {t} |" + " |" * (head.count(" |") - 3))
            continue
        med = f"{r['median_ms']:.3f} ({r['min_ms']:.3f}–{r['max_ms']:.3f})"
        if r["scaled_from"]:
            med += f" *scaled from {r['scaled_from']}*"
        row = (f"| {r['workload']} | {r['impl']} | {med} | {_fmt(r['speedup_vs_first'], '.1f', '×')} | "
               f"{_fmt(r['ratio_to_torch'], '.2f', '×')} | {_fmt(r['gflops'], '.1f')} | {_fmt(r['pct_sgemm_peak'], '.1f')} | "
               f"{_fmt(r['peak_mem_mib'], '.1f')} | {_fmt(r['cold_s'], '.2f')} |")
        if loaded:
            row += f" {_fmt(r['loaded_median_ms'], '.3f')} | {_fmt(r['load_factor'], '.2f', '×')} |"
        rows.append(row)
    return "\n".join(rows)


def _blas(libs):
    return "; ".join(f"{b['internal_api']} {b['version']} ({b['architecture']} kernel, {b['num_threads']} threads)"
                     for b in libs) or "unknown"


def header(results):
    m = results["machine"]
    sg = _fmt(results["sgemm_gflops"], ".1f")
    pc = results["peer_check"]
    load = f", under load: {results['under_load']} busy processes" if results["under_load"] else ""
    peers = ("torch ran in worker processes that never imported fastnn" +
             ("" if pc is None or (not pc["fastnn_imported"] and pc["env_as_given"])
              else " — CHECK FAILED: " + str(pc)) if pc is not None else "no peer (torch not installed)")
    lines = [
        f"Machine: {m['cpu']} ({m['isa']}), {m['cores']} cores; Python {m['python']}, NumPy {m['numpy']}, "
        f"fastnn {m['fastnn']}, torch {results['torch']}.",
        f"Threads: {results['threads']} for every implementation, each in its own process, interleaved in short "
        f"bursts (A B C A B C ...); {peers}, with the environment the user gave.",
        f"BLAS (fastnn): {_blas(results['blas'])}. BLAS (torch): {_blas(results['torch_blas'])}. "
        f"sgemm peak in this run: {sg} GFLOP/s.",
        f"Run: {results['created']}{' (--quick)' if results['quick'] else ''}{load}. "
        "Ratios < 1 mean faster than torch; 'vs first rung' is the speed-up over the first rung of the "
        "ladder (the seed's own loops where timed: one small shape, scaled by multiply-adds; else the reference).",
    ]
    return "  \n".join(lines)


def ops_in(results):
    return list(dict.fromkeys(r["op"] for r in results["records"]))


def markdown(results, chart=None):
    parts = ["# fastnn bench report", "", header(results), ""]
    if chart:
        parts += [f"![ladder per op]({chart})", ""]
    for op in ops_in(results):
        parts += [f"## {op}", "", op_table(results, op), ""]
    return "\n".join(parts)


def chart(results, path):
    """Log-scale bar chart of the ladder per workload with torch as a reference line (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    workloads = list(dict.fromkeys(r["workload"] for r in results["records"]))
    impls = [i for i in ALL_IMPLS if i not in PEERS]
    fig, axes = plt.subplots(len(workloads), 1, figsize=(7, 1.9 * len(workloads) + 0.5), squeeze=False)
    for ax, wname in zip(axes[:, 0], workloads):
        recs = {r["impl"]: r for r in results["records"] if r["workload"] == wname}
        vals = [recs[i]["median_ms"] if i in recs and recs[i]["median_ms"] else 0 for i in impls]
        ax.barh(impls, [v if v else float("nan") for v in vals], color="#4878a8")
        t = recs.get("torch")
        if t and t["median_ms"]:
            ax.axvline(t["median_ms"], color="#c44e52", linestyle="--", label=f"torch {t['median_ms']:.2f} ms")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_xscale("log")
        ax.set_title(wname, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("median ms per call (log scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write(results, out_dir):
    """Write results.json, chart.png (if matplotlib) and report.md into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    png = chart(results, os.path.join(out_dir, "chart.png"))
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(markdown(results, "chart.png" if png else None))
    return out_dir


def update_doc(results, doc_path):
    """Replace each ``<!-- bench:OP -->`` … ``<!-- /bench:OP -->`` block of ``doc_path`` with the
    op's table from ``results`` (and ``<!-- bench:header -->`` with the header). Returns the ops updated."""
    with open(doc_path) as f:
        text = f.read()
    updated = []

    def repl(m):
        op = m.group(1)
        if op == "header":
            body = header(results)
        elif op in ops_in(results):
            body = op_table(results, op)
        else:
            return m.group(0)
        updated.append(op)
        return f"<!-- bench:{op} -->\n{body}\n<!-- /bench:{op} -->"

    text = re.sub(r"<!-- bench:([\w-]+) -->.*?<!-- /bench:\1 -->", repl, text, flags=re.S)
    with open(doc_path, "w") as f:
        f.write(text)
    return updated
