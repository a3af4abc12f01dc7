"""pytest-benchmark suite over the workload registry (``fastnn.benchmarks``).

torch and fastnn run in separate pytest processes (two OpenMP runtimes in one process slow
each other down): ``make bench`` runs this folder twice, once with ``FASTNN_BENCH_TORCH=1``
(torch only) and once without (fastnn backends only), both with the same thread count
(``FASTNN_BENCH_THREADS``, default: all cores). The torch run never imports fastnn: it loads
the workload registry the way ``fastnn bench``'s peer workers do (``_worker.py``).
"""
import importlib.util
import os

import pytest

TORCH_RUN = os.environ.get("FASTNN_BENCH_TORCH") == "1"
THREADS = int(os.environ.get("FASTNN_BENCH_THREADS", "0")) or None


def registry():
    """``fastnn.benchmarks``, or for the torch run the same folder under another name."""
    if not TORCH_RUN:
        import fastnn.benchmarks as bench

        return bench
    where = importlib.util.find_spec("fastnn").submodule_search_locations[0]  # finds, does not import
    spec = importlib.util.spec_from_file_location("_bench_worker", os.path.join(where, "benchmarks", "_worker.py"))
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    return worker._registry("torch")


@pytest.fixture(scope="session")
def bench_threads():
    return THREADS
