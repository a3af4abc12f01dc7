"""``import fastnn`` leaves the process as it found it for other libraries: no environment
variable, no OpenMP or BLAS setting changed, also after every backend has run a kernel. Checked
in fresh interpreters, since this test process has long since imported fastnn."""
import json
import subprocess
import sys

SNAPSHOT = r"""
import ctypes, json, os, sys
from threadpoolctl import threadpool_info
gomp = ctypes.CDLL("libgomp.so.1")  # the OpenMP runtime, loaded first (as when torch is imported first)
def state():
    return {"env": dict(os.environ), "pools": sorted((p["user_api"], p["internal_api"], p["num_threads"])
                                                     for p in threadpool_info()),
            "openmp": [gomp.omp_get_max_active_levels(), gomp.omp_get_dynamic(), gomp.omp_get_max_threads()]}
import numpy as np
before = state()
import fastnn
after_import = state()
from fastnn import functional as F
x = np.random.default_rng(0).standard_normal((64, 300)).astype(np.float32)
for b in fastnn.backends():                 # load and run every backend's kernels (Numba, OpenMP)
    with fastnn.use_backend(b):
        F.softmax(F.linear(x, x[:40]), axis=1)
        F.conv2d(x.reshape(4, 4, 40, 30), x[:8, :36].reshape(8, 4, 3, 3))
after_run = state()
print(json.dumps([before, after_import, after_run]))
"""


def _run(code, env=None):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_and_use_change_no_environment_variable_or_thread_setting():
    before, after_import, after_run = _run(SNAPSHOT)
    assert after_import["env"] == before["env"]
    assert after_run["env"] == before["env"], {k: v for k, v in after_run["env"].items() if before["env"].get(k) != v}
    # the OpenMP runtime's process-wide settings: Numba's OpenMP layer allows 255 nested levels
    # when it starts, which made torch (sharing the runtime) 6x slower; fastnn puts it back
    assert after_run["openmp"] == before["openmp"]
    # thread pools loaded before fastnn (NumPy's BLAS) keep their thread counts
    for pool in before["pools"]:
        assert pool in after_run["pools"], (pool, after_run["pools"])
