"""fastnn: neural-network layers on NumPy arrays, with Numba and Cython kernels.

>>> import fastnn
>>> fastnn.backends()                 # doctest: +SKIP
['reference', 'numpy', 'numba', 'cython']
>>> with fastnn.use_backend("numpy"):
...     pass
"""
import importlib.util as _util
import os as _os

if _util.find_spec("fastnn.kernels") is None:  # the kernels are mapped into fastnn.kernels by an install
    raise ImportError(
        f"fastnn was imported from {_os.path.dirname(__file__)}, a source checkout that shadows the installed "
        "package (Python looks in the current directory first), and a checkout has no fastnn.kernels: the "
        "kernels live in its top-level kernels/ folder, which only an install maps into the package; run "
        "Python from another directory, or install the checkout in editable mode (pip install -e .)."
    )

from ._config import get_num_threads, set_num_threads
from ._dispatch import backends, get_backend, set_backend, use_backend
from ._random import manual_seed
from . import functional, nn, optim  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "backends", "set_backend", "get_backend", "use_backend",
    "set_num_threads", "get_num_threads", "manual_seed",
    "functional", "nn", "optim", "__version__",
]
