"""A benchmark worker: ``python _worker.py IMPL THREADS``, one process per implementation.

Started as a script (not ``-m fastnn.benchmarks``, which would import fastnn first). For a peer
(torch) this folder is loaded as a package of another name and fastnn is never imported; for a
fastnn implementation it is ``fastnn.benchmarks`` itself. Commands arrive as JSON lines on
stdin, each answered by one JSON line on stdout (``{"error": ...}`` when it failed)::

    {"cmd": "info"}                           -> fastnn_imported, env, blas, threads
    {"cmd": "prepare", "workload", "quick", "data"} -> builds the closure, times its first call: cold_s
    {"cmd": "time", "calls": n}               -> times: seconds of each of n calls
    {"cmd": "memory"}                         -> peak_mem_bytes of one call
    {"cmd": "release"}                        -> drops the closure
    {"cmd": "quit"}
"""
import importlib.util
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == HERE:
    sys.path.pop(0)  # the script's folder holds the workload modules; they are not top-level modules


def _registry(impl):
    if impl == "torch":
        spec = importlib.util.spec_from_file_location("_fastnn_bench_peer", os.path.join(HERE, "__init__.py"),
                                                      submodule_search_locations=[HERE])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return mod
    import fastnn.benchmarks as mod

    return mod


def main(impl, threads):
    bench = _registry(impl)
    fn = None
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        try:
            if cmd == "quit":
                break
            if cmd == "info":
                reply = {"fastnn_imported": any(m == "fastnn" or m.startswith("fastnn.") for m in sys.modules),
                         "env": dict(os.environ), "blas": bench.blas_info(), "impl": impl}
                if impl == "torch" and importlib.util.find_spec("torch"):
                    import re

                    import torch

                    blas = re.findall(r"BLAS_INFO=(\w+)", torch.__config__.show()) or ["unknown"]
                    reply["blas"] = [{"internal_api": f"torch {torch.__version__}: {blas[0]}", "version": "",
                                      "architecture": torch.backends.cpu.get_cpu_capability(),
                                      "num_threads": torch.get_num_threads()}]
            elif cmd == "prepare":
                bench.CONTEXT.update(quick=bool(msg.get("quick")), data=msg.get("data"))
                fn = bench.prepare(msg["workload"], impl, threads or None)
                t0 = time.perf_counter()
                fn()
                reply = {"cold_s": time.perf_counter() - t0}
            elif cmd == "time":
                times = []
                for _ in range(int(msg["calls"])):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                reply = {"times": times}
            elif cmd == "memory":
                reply = {"peak_mem_bytes": bench.peak_memory(fn)[0]}
            elif cmd == "release":
                fn = None
                reply = {}
            else:
                reply = {"error": f"unknown command {cmd!r}"}
        except Exception as e:  # report it and wait for the next command
            traceback.print_exc(file=sys.stderr)
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
