"""Backend registry and the ``auto`` policy.

Every op family lives in ``fastnn.kernels.<family>`` with one module per backend::

    reference.py     the seed's naive code, made correct: the readable truth
    numpy_impl.py    vectorised NumPy
    numba_impl.py    @njit(parallel=True, cache=True) kernels
    cython_impl.pyx  typed memoryviews, nogil, OpenMP prange

All backends of a family export the same kernel functions with the same signature. The
functional layer validates arguments, allocates outputs and asks :func:`kernel` for the
function of the backend in force.

The ``auto`` policy
-------------------
``auto`` (the default) picks a backend per kernel from the amount of work (``work``: the
number of elements or multiply-adds the functional layer passes). The rules are in
:data:`AUTO_RULES`: for each ``"family.kernel"`` a list of ``(min_work, backend)`` pairs, the
last pair whose ``min_work`` is ``<= work`` wins. They were chosen from ``fastnn bench``
measurements on a 2-core machine (see ``docs/performance.md``). A backend that is not
available (Cython extension not built, Numba missing) falls back to ``numpy``.
"""
import importlib
import importlib.util
import os
import threading
from contextlib import contextmanager

from . import _config

BACKENDS = ("reference", "numpy", "numba", "cython")
_CHOICES = BACKENDS + ("auto",)
_MODULE = {"reference": "reference", "numpy": "numpy_impl", "numba": "numba_impl", "cython": "cython_impl"}

# "family.kernel" (or "family" for all its kernels) -> [(min_work, backend), ...]
AUTO_RULES = {
    # BLAS does the work; NumPy's in-place bias add and column sum cost less than waking a team
    "dense.linear_forward": [(0, "numpy")],
    "dense.linear_backward": [(0, "numpy")],
    # elementwise: NumPy's SIMD loops until a second thread pays off
    "dense.sigmoid_forward": [(0, "numpy"), (1 << 15, "numba")],
    "dense.sigmoid_backward": [(0, "numpy"), (1 << 16, "numba")],
    "dense.tanh_forward": [(0, "numpy"), (1 << 15, "numba")],
    "dense.tanh_backward": [(0, "numpy"), (1 << 16, "numba")],
    "dense.relu_forward": [(0, "numpy"), (1 << 17, "numba")],
    "dense.relu_backward": [(0, "numpy"), (1 << 17, "numba")],
    # row kernels: one fused pass per row beats NumPy's 4-6 passes at every size
    "dense.softmax_forward": [(0, "cython")],
    "dense.softmax_backward": [(0, "cython")],
    "dense.log_softmax_forward": [(0, "cython")],
    "dense.log_softmax_backward": [(0, "cython")],
    "dense.cross_entropy_forward": [(0, "cython")],
    "dense.cross_entropy_backward": [(0, "cython")],
    "dense": [(0, "numpy")],
}



def register_auto(rules):
    """Add or replace ``auto`` rules (``{"family.kernel": [(min_work, backend), ...]}``).

    Each functional module registers the rules of its own op family next to its code.
    """
    for key, value in rules.items():
        AUTO_RULES[key] = sorted(value)


_state = threading.local()
_modules = {}
_kernels = {}
_available = {}


def _check_name(name, allow_auto=True):
    choices = _CHOICES if allow_auto else BACKENDS
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a str, one of {choices}, got {type(name).__name__}")
    if name not in choices:
        raise ValueError(f"backend: expected one of {choices}, got {name!r}")
    if name != "auto" and not is_available(name):
        raise ValueError(f"backend: {name!r} is not available here; available: {backends()}")
    return name


def _module(family, backend):
    key = (family, backend)
    mod = _modules.get(key)
    if mod is None:
        mod = importlib.import_module(f"fastnn.kernels.{family}.{_MODULE[backend]}")
        _modules[key] = mod
    return mod


def is_available(backend):
    """True when ``backend``'s kernels can be imported (Cython built, Numba installed)."""
    ok = _available.get(backend)
    if ok is None:
        if backend in ("reference", "numpy"):
            ok = True
        elif backend == "numba":
            ok = importlib.util.find_spec("numba") is not None
        elif backend == "cython":
            try:
                _module("dense", "cython")
                ok = True
            except ImportError:
                ok = False
        else:
            ok = False
        _available[backend] = ok
    return ok


def backends():
    """The backends usable on this installation, e.g. ``['reference', 'numpy', 'numba', 'cython']``."""
    return [b for b in BACKENDS if is_available(b)]


_default = "auto"


def set_backend(name):
    """Set the process-wide default backend (``"auto"`` picks per op and shape).

    A :func:`use_backend` block in the current thread takes precedence.
    """
    global _default
    _default = _check_name(name)


def get_backend():
    """The backend in force in this thread: the innermost :func:`use_backend`, else the default."""
    stack = getattr(_state, "stack", None)
    return stack[-1] if stack else _default


@contextmanager
def use_backend(name):
    """Context manager: use backend ``name`` in this thread inside the block, then restore.

    Examples
    --------
    >>> import fastnn
    >>> with fastnn.use_backend("numpy"):
    ...     fastnn.get_backend()
    'numpy'
    """
    _check_name(name)
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(name)
    try:
        yield name
    finally:
        stack.pop()


def auto_backend(family, name, work):
    """The backend ``auto`` picks for ``family.name`` at this amount of work."""
    rules = AUTO_RULES.get(f"{family}.{name}") or AUTO_RULES.get(family) or [(0, "numpy")]
    choice = "numpy"
    for min_work, backend in rules:
        if work >= min_work:
            choice = backend
    return choice if is_available(choice) else "numpy"


def kernel(family, name, work=0, backend=None):
    """The kernel function ``name`` of op family ``family`` for the backend in force.

    Parameters
    ----------
    family : str
        Folder under ``kernels/`` (``"dense"``, ``"conv2d"`` ...).
    name : str
        Kernel function name, the same in every backend.
    work : int
        Size hint for the ``auto`` policy.
    backend : str, optional
        Force a backend; default: :func:`get_backend`.
    """
    b = backend or get_backend()
    if b == "auto":
        b = auto_backend(family, name, work)
    if b == "numba":
        _config.sync_numba_threads()
    key = (family, b, name)
    fn = _kernels.get(key)
    if fn is None:
        fn = _kernels[key] = getattr(_module(family, b), name)
    return fn


def _init_from_env():
    value = os.environ.get("FASTNN_BACKEND")
    if value:
        try:
            set_backend(value)
        except ValueError as e:
            raise ValueError(f"FASTNN_BACKEND: {e}") from None


_init_from_env()
