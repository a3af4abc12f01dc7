"""Argument checking shared by the functional layer.

Every public function checks its arguments here before anything reaches a kernel. Errors
name the argument, what was expected and what came:

* ``TypeError``  wrong type or dtype (integer, complex, object, mixed float dtypes);
* ``ValueError`` wrong shape or value;
* :class:`IndexOutOfRangeError` (an ``IndexError`` *and* a ``ValueError``) for a label or
  id out of range.
"""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class IndexOutOfRangeError(IndexError, ValueError):
    """A label or id outside ``[0, n)``; catchable as ``IndexError`` (like torch) or ``ValueError``."""


def float_array(x, name):
    """``x`` as a float32/float64 ndarray (array-likes are converted); ``TypeError`` otherwise."""
    if not isinstance(x, np.ndarray):
        if x is None or isinstance(x, (str, bytes, dict, set)):
            raise TypeError(f"{name}: expected a float32 or float64 array, got {type(x).__name__}")
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise TypeError(f"{name}: expected a float32 or float64 array, got {type(x).__name__} ({e})") from None
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {x.dtype}")
    return x


def same_dtype(ref_name, ref, **others):
    """``TypeError`` when any of ``others`` (name=array, None skipped) has another dtype than ``ref``."""
    for name, a in others.items():
        if a is not None and a.dtype != ref.dtype:
            raise TypeError(
                f"{name}: expected dtype {ref.dtype} (the dtype of {ref_name}), got {a.dtype}; "
                f"cast with .astype(np.{ref.dtype})"
            )


def ndim(x, name, expected, what=""):
    """``ValueError`` unless ``x.ndim`` is ``expected`` (an int or a tuple of ints)."""
    ok = x.ndim in expected if isinstance(expected, tuple) else x.ndim == expected
    if not ok:
        want = " or ".join(map(str, expected)) if isinstance(expected, tuple) else str(expected)
        raise ValueError(f"{name}: expected a {want}-D array{what}, got shape {x.shape}")


def shape(x, name, expected):
    """``ValueError`` unless ``x.shape == expected``."""
    if x.shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)}, got {x.shape}")


def labels(t, name, n, length=None):
    """Integer class labels in ``[0, n)`` as a C-contiguous int64 array."""
    if not isinstance(t, np.ndarray):
        try:
            t = np.asarray(t)
        except (ValueError, TypeError) as e:
            raise TypeError(f"{name}: expected an integer array, got {type(t).__name__} ({e})") from None
    if t.dtype == np.bool_ or not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer array of indices, got dtype {t.dtype}")
    if length is not None and t.shape != (length,):
        raise ValueError(f"{name}: expected shape ({length},), got {t.shape}")
    if t.size:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise IndexOutOfRangeError(f"{name}: expected values in [0, {n}), got {bad}")
    return np.ascontiguousarray(t, dtype=np.int64)


def positive_int(v, name, minimum=1):
    """``v`` as an int ``>= minimum``; ``TypeError`` for non-integers (bool included)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name}: expected an int >= {minimum}, got {type(v).__name__}")
    v = int(v)
    if v < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {v}")
    return v


def axis(ax, name, nd):
    """Normalise an axis index for an ``nd``-D array (negative counts from the end)."""
    if isinstance(ax, bool) or not isinstance(ax, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(ax).__name__}")
    if not -nd <= ax < nd:
        raise ValueError(f"{name}: expected an int in [{-nd}, {nd}) for a {nd}-D array, got {ax}")
    return int(ax) % nd


def contiguous(x):
    """C-contiguous view or copy (never modifies the input)."""
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)
