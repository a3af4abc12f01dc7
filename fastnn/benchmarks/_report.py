"""``fastnn bench``: run the ladder of every op against torch and write a readable report.

Outputs (in ``--out``, default ``bench-results/``):

* ``results.json`` — one record per measurement; schema below, checked by :func:`validate`;
* ``report.md`` — a table per op and the header (machine, threads, BLAS), with ``chart.png``
  (log-scale bars of the ladder per op, torch as a reference line; needs matplotlib).

``results.json`` schema (``"schema": "fastnn-bench/1"``)::

    {"schema": str, "created": str (ISO time), "quick": bool, "threads": int,
     "machine": {"cpu": str, "cores": int, "python": str, "numpy": str, "fastnn": str},
     "blas": [{"internal_api": str, "version": str, "architecture": str, "num_threads": int}],
     "torch": str ("not installed" when absent),
     "sgemm_gflops": float | null,
     "records": [{"workload": str, "op": str, "shape": str, "dtype": str, "impl": str,
                  "median_ms": float|null, "min_ms": float|null, "max_ms": float|null,
                  "rounds": int, "cold_s": float|null, "gflops": float|null,
                  "pct_sgemm_peak": float|null, "speedup_vs_reference": float|null,
                  "ratio_to_torch": float|null, "peak_mem_mib": float|null,
                  "scaled_from": str|null, "error": str|null}]}

A rung too slow for a shape (the seed's loops) runs the workload's documented ``small``
shape; its time is scaled by the FLOP ratio and ``scaled_from`` names the shape measured.
"""
import datetime
import importlib.util
import json
import os
import platform
import re

from . import FASTNN_IMPLS, WORKLOADS, _load_all, run_isolated

SCHEMA = "fastnn-bench/1"
_RECORD_FIELDS = {
    "workload": str, "op": str, "shape": str, "dtype": str, "impl": str, "median_ms": (float, type(None)),
    "min_ms": (float, type(None)), "max_ms": (float, type(None)), "rounds": int, "cold_s": (float, type(None)),
    "gflops": (float, type(None)), "pct_sgemm_peak": (float, type(None)),
    "speedup_vs_reference": (float, type(None)), "ratio_to_torch": (float, type(None)),
    "peak_mem_mib": (float, type(None)), "scaled_from": (str, type(None)), "error": (str, type(None)),
}
_TOP_FIELDS = {"schema": str, "created": str, "quick": bool, "threads": int, "machine": dict, "blas": list,
               "torch": str, "sgemm_gflops": (float, type(None)), "records": list}
# Names users may give to --ops besides the workloads' ``op`` fields and workload names
OP_ALIASES = {"dense": ("mlp",), "pooling": ("pool2d",), "recurrent": ("lstm", "seq2seq")}


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
    names = [n for n, w in WORKLOADS.items() if w.op != "peak"]
    if not ops:
        return names
    known = sorted(set(OP_ALIASES) | {WORKLOADS[n].op for n in names} | set(names))
    wanted = set()
    for op in ops:
        if op not in known:
            raise ValueError(f"ops: expected names from {known}, got {op!r}")
        wanted.update(OP_ALIASES.get(op, (op,)))
    return [n for n in names if WORKLOADS[n].op in wanted or n in wanted]


def run(ops=None, quick=False, threads=None, progress=True, impls=None):
    """Measure the selected workloads × implementations; returns the results object."""
    from tqdm import tqdm

    import numpy as np

    import fastnn

    names = select(ops)
    threads = threads or fastnn.get_num_threads()
    have_torch = importlib.util.find_spec("torch") is not None
    impls = [i for i in (impls or FASTNN_IMPLS + ("torch",)) if i != "torch" or have_torch]
    min_time, max_rounds = (0.1, 10) if quick else (2.0, 200)
    # which workload each impl runs (slow rungs run the small shape)
    plan = {i: [] for i in impls}
    for n in names:
        w = WORKLOADS[n]
        for i in impls:
            if i in w.impls:
                plan[i].append(w.small if (i in w.slow_impls and w.small) else n)
    total = sum(len(v) for v in plan.values()) + 1
    bar = tqdm(total=total, desc="fastnn bench", unit="run", disable=not progress)
    measured = {}

    def done(impl):
        def cb(name, res):
            bar.set_postfix_str(f"{impl}:{name}")
            bar.update(1)
        return cb

    peak = run_isolated(["sgemm_peak"], "numpy", threads, min_time, max_rounds, on_result=done("numpy"))
    sgemm = peak["sgemm_peak"]
    sgemm_gflops = WORKLOADS["sgemm_peak"].flops / sgemm["median_s"] / 1e9 if "median_s" in sgemm else None
    for impl, todo in plan.items():
        if todo:
            measured[impl] = run_isolated(list(dict.fromkeys(todo)), impl, threads, min_time, max_rounds,
                                          on_result=done(impl))
    bar.close()

    records = []
    for n in names:
        w = WORKLOADS[n]
        for impl in FASTNN_IMPLS + ("torch",):
            if impl not in w.impls:
                continue
            rec = {"workload": n, "op": w.op, "shape": w.shape, "dtype": w.dtype, "impl": impl, "median_ms": None,
                   "min_ms": None, "max_ms": None, "rounds": 0, "cold_s": None, "gflops": None,
                   "pct_sgemm_peak": None, "speedup_vs_reference": None, "ratio_to_torch": None,
                   "peak_mem_mib": None, "scaled_from": None, "error": None}
            if impl not in impls:
                rec["error"] = "not installed" if impl == "torch" else "not selected"
                records.append(rec)
                continue
            small = w.small if (impl in w.slow_impls and w.small) else None
            res = measured[impl].get(small or n, {"error": "not run"})
            if "error" in res:
                rec["error"] = res["error"]
            else:
                scale = w.flops / WORKLOADS[small].flops if small else 1.0
                rec.update(median_ms=res["median_s"] * 1e3 * scale, min_ms=res["min_s"] * 1e3 * scale,
                           max_ms=res["max_s"] * 1e3 * scale, rounds=int(res["rounds"]), cold_s=res["cold_s"],
                           peak_mem_mib=None if small else res.get("peak_mem_bytes", 0) / 2**20,
                           scaled_from=WORKLOADS[small].shape if small else None)
                rec["gflops"] = w.flops / (rec["median_ms"] / 1e3) / 1e9 if w.flops else None
                if rec["gflops"] is not None and sgemm_gflops:
                    rec["pct_sgemm_peak"] = 100 * rec["gflops"] / sgemm_gflops
            records.append(rec)
    by = {(r["workload"], r["impl"]): r for r in records}
    for r in records:
        ref, tor = by.get((r["workload"], "reference")), by.get((r["workload"], "torch"))
        if r["median_ms"] is not None:
            if ref and ref["median_ms"]:
                r["speedup_vs_reference"] = ref["median_ms"] / r["median_ms"]
            if tor and tor["median_ms"]:
                r["ratio_to_torch"] = r["median_ms"] / tor["median_ms"]
    torch_version = "not installed"
    if have_torch:
        from importlib.metadata import version

        torch_version = version("torch")
    return validate({
        "schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(quick), "threads": int(threads),
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count() or 1, "python": platform.python_version(),
                    "numpy": np.__version__, "fastnn": fastnn.__version__},
        "blas": sgemm.get("blas", []), "torch": torch_version, "sgemm_gflops": sgemm_gflops, "records": records,
    })


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt(v, spec, suffix="", none="–"):
    return none if v is None else format(v, spec) + suffix


def op_table(results, op):
    """Markdown table of one op's records."""
    rows = ["| workload | implementation | median ms (min–max) | vs seed loop | vs torch | GFLOP/s | % sgemm peak | "
            "peak extra MiB | cold start s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results["records"]:
        if r["op"] != op:
            continue
        if r["error"]:
            t = "not installed" if r["error"] == "not installed" else f"error: {r['error'][:60]}"
            rows.append(f"| {r['workload']} | {r['impl']} | {t} | | | | | | |")
            continue
        med = f"{r['median_ms']:.3f} ({r['min_ms']:.3f}–{r['max_ms']:.3f})"
        if r["scaled_from"]:
            med += f" *scaled from {r['scaled_from']}*"
        rows.append(
            f"| {r['workload']} | {r['impl']} | {med} | {_fmt(r['speedup_vs_reference'], '.1f', '×')} | "
            f"{_fmt(r['ratio_to_torch'], '.2f', '×')} | {_fmt(r['gflops'], '.1f')} | {_fmt(r['pct_sgemm_peak'], '.1f')} | "
            f"{_fmt(r['peak_mem_mib'], '.1f')} | {_fmt(r['cold_s'], '.2f')} |")
    return "\n".join(rows)


def header(results):
    blas = "; ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} threads)"
                     for b in results["blas"]) or "unknown"
    m = results["machine"]
    sg = _fmt(results["sgemm_gflops"], ".1f")
    return (f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, NumPy {m['numpy']}, fastnn {m['fastnn']}, "
            f"torch {results['torch']}.  \nThreads: {results['threads']} (fastnn and torch alike, separate processes). "
            f"BLAS: {blas}. sgemm peak in this run: {sg} GFLOP/s.  \n"
            f"Run: {results['created']}{' (--quick)' if results['quick'] else ''}. Ratios < 1 mean faster than torch.")


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
    impls = [i for i in FASTNN_IMPLS]
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
