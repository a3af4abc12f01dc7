"""Every workload × implementation as a pytest-benchmark case, grouped ``op|shape|dtype``.

Set-up is outside the timed call (closures from the registry); the first call (JIT compile,
cache load, first touch) is timed apart and stored as ``extra_info["cold_start_s"]``. Slow
rungs (the seed's loops) run the workload's smaller shape when it declares one
(``extra_info["scaled_from"]``).
"""
import time

import pytest

from conftest import TORCH_RUN, registry

bench = registry()
bench._load_all()
WORKLOADS = bench.WORKLOADS
CASES = [(n, i) for n, w in WORKLOADS.items() if w.op != "peak" and not w.hidden and not w.extra.get("needs_data")
         for i in w.impls if (i == "torch") == TORCH_RUN and (i in bench.FASTNN_IMPLS or i == "torch")]


@pytest.mark.parametrize("name,impl", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_workload(benchmark, bench_threads, name, impl):
    if impl == "torch":
        pytest.importorskip("torch")
    w = WORKLOADS[name]
    run_name = w.small if (impl in w.slow_impls and w.small) else name
    fn = bench.prepare(run_name, impl, bench_threads)
    t0 = time.perf_counter()
    fn()
    cold = time.perf_counter() - t0
    benchmark.group = w.group
    benchmark.extra_info.update(cold_start_s=cold, impl=impl, flops=WORKLOADS[run_name].flops,
                                scaled_from=WORKLOADS[run_name].shape if run_name != name else None)
    rounds = 3 if cold > 1.0 else 20
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
