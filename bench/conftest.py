"""pytest-benchmark suite over the workload registry (``fastnn.benchmarks``).

torch and fastnn run in separate pytest processes (two OpenMP runtimes in one process slow
each other down): ``make bench`` runs this folder twice, once with ``FASTNN_BENCH_TORCH=1``
(torch only) and once without (fastnn backends only), both with the same thread count
(``FASTNN_BENCH_THREADS``, default: all cores).
"""
import os

import pytest

TORCH_RUN = os.environ.get("FASTNN_BENCH_TORCH") == "1"
THREADS = int(os.environ.get("FASTNN_BENCH_THREADS", "0")) or None


@pytest.fixture(scope="session")
def bench_threads():
    return THREADS
