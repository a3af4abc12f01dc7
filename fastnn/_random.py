"""The global random generator used for parameter init and dropout when no ``rng`` is given."""
import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed):
    """Seed fastnn's global generator (parameter init, dropout), like ``torch.manual_seed``."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def get_rng(rng=None):
    """``rng`` if given (a ``numpy.random.Generator``), else the global generator."""
    if rng is None:
        return _rng
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator or None, got {type(rng).__name__}")
    return rng
