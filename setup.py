"""Build script: compiles every ``kernels/<op>/cython_impl.pyx`` into ``fastnn.kernels.<op>.cython_impl``.

All compiler and Cython settings live here, in one place.

Environment variables read at build time
----------------------------------------
FASTNN_CYTHON_CHECKS=1   compile with boundscheck, wraparound and initializedcheck on (a checked
                         build for the tests); the release default turns them off.
FASTNN_PORTABLE=1        do not pass ``-march=native`` (for wheels that run on other CPUs).
"""
import glob
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

CHECKED = os.environ.get("FASTNN_CYTHON_CHECKS", "0") == "1"
PORTABLE = os.environ.get("FASTNN_PORTABLE", "0") == "1"

if sys.platform == "darwin":  # Apple clang needs libomp; keep the flags in this one place
    OMP_COMPILE, OMP_LINK = ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
elif sys.platform == "win32":
    OMP_COMPILE, OMP_LINK = ["/openmp"], []
else:
    OMP_COMPILE, OMP_LINK = ["-fopenmp"], ["-fopenmp"]

# -fno-math-errno lets sqrt/exp loops vectorise (we never read errno); NaN/inf semantics stay
# exact: no -ffast-math / -ffinite-math-only (masks rely on -inf).
COMPILE_ARGS = OMP_COMPILE + ([] if sys.platform == "win32" else ["-O3", "-fno-math-errno", "-fno-trapping-math"])
if not PORTABLE and sys.platform != "win32":
    COMPILE_ARGS.append("-march=native")

# libm explicitly: on glibc it also brings libmvec, the SIMD variants of exp/erf/tanh... that
# vectorised loops call (see kernels/activation/cython_impl.pyx)
LIBM = [] if sys.platform == "win32" else ["m"]

DIRECTIVES = {
    "language_level": "3",
    "boundscheck": CHECKED,
    "wraparound": CHECKED,
    "initializedcheck": CHECKED,
    "cdivision": True,
    "nonecheck": False,
}

extensions = []
for pyx in sorted(glob.glob(os.path.join("kernels", "*", "cython_impl.pyx"))):
    op = os.path.basename(os.path.dirname(pyx))
    extensions.append(
        Extension(
            f"fastnn.kernels.{op}.cython_impl",
            [pyx],
            include_dirs=[np.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=COMPILE_ARGS,
            extra_link_args=OMP_LINK,
            libraries=LIBM,
        )
    )

# Generated C goes under build/, one folder per mode; switching mode regenerates it (and so
# relinks every extension), so a checked build never silently reuses release C or vice versa.
MODE = "checked" if CHECKED else "release"
_mode_file = os.path.join("build", "cython-mode")
_previous = open(_mode_file).read().strip() if os.path.exists(_mode_file) else None
os.makedirs("build", exist_ok=True)
with open(_mode_file, "w") as f:
    f.write(MODE)

setup(
    packages=["fastnn", "fastnn.functional", "fastnn.nn", "fastnn.optim", "fastnn.benchmarks", "fastnn.distributed",
              "fastnn.kernels"]
    + [f"fastnn.kernels.{os.path.basename(os.path.dirname(init))}" for init in sorted(glob.glob("kernels/*/__init__.py"))],
    package_dir={"fastnn": "fastnn", "fastnn.kernels": "kernels"},
    ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES, quiet=True, include_path=["kernels"],
                          build_dir=os.path.join("build", f"cython-{MODE}"), force=_previous != MODE),
    zip_safe=False,
)
