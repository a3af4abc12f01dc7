"""Optimisers with torch's update rules: :class:`SGD` (momentum, dampening, Nesterov, weight
decay) and :class:`Adam` (with optional AMSGrad; ``weight_decay`` is L2 added to the gradient,
as ``torch.optim.Adam``)."""
import math
import numbers

import numpy as np

from . import _dispatch as _d
from .nn.module import Parameter

_d.register_auto({
    "optim.sgd_step": [(0, "numpy"), (1 << 14, "numba")],
    "optim.adam_step": [(0, "numpy"), (1 << 12, "numba")],
})


def _params(params):
    params = list(params)
    if not params:
        raise ValueError("params: expected a non-empty iterable of Parameters, got an empty one")
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"params[{i}]: expected a fastnn.nn.Parameter, got {type(p).__name__}")
    return params


def _nonneg(v, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
    return float(v)


class Optimizer:
    """Base class: ``params``, ``zero_grad()``, ``step()``."""

    def __init__(self, params):
        self.params = _params(params)

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def step(self):
        """Update every parameter that has a gradient (one fused kernel call per parameter)."""
        for i, p in enumerate(self.params):
            if p.grad is not None:
                if p.grad.shape != p.data.shape or p.grad.dtype != p.data.dtype:
                    raise ValueError(
                        f"params[{i}].grad: expected shape {p.data.shape} and dtype {p.data.dtype}, "
                        f"got {p.grad.shape} and {p.grad.dtype}"
                    )
                if not (p.data.flags.c_contiguous and p.data.flags.writeable):
                    p.data = np.array(p.data, order="C")
                self._update(i, p.data.reshape(-1), np.ascontiguousarray(p.grad).reshape(-1))

    def _update(self, i, p, g):  # pragma: no cover - abstract
        """Update the flat parameter ``p`` in place from its flat gradient ``g``."""
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent as ``torch.optim.SGD``::

        g = grad + weight_decay * p
        b = g (first step) or momentum * b + (1 - dampening) * g
        g = g + momentum * b if nesterov else b
        p -= lr * g
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params)
        self.lr = _nonneg(lr, "lr")
        self.momentum = _nonneg(momentum, "momentum")
        self.dampening = _nonneg(dampening, "dampening")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov: requires momentum > 0 and dampening == 0")
        self.nesterov = bool(nesterov)
        self._buf = [None] * len(self.params)

    def _update(self, i, p, g):
        first = self._buf[i] is None
        if self.momentum and first:
            self._buf[i] = np.empty_like(p)
        _d.kernel("optim", "sgd_step", p.size)(
            p, g, self._buf[i], self.lr, self.momentum, self.dampening, self.weight_decay, self.nesterov, first
        )


class Adam(Optimizer):
    """Adam as ``torch.optim.Adam`` (``amsgrad`` supported)::

        g = grad + weight_decay * p
        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params)
        self.lr = _nonneg(lr, "lr")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(
            isinstance(b, numbers.Real) and 0 <= b < 1 for b in betas
        ):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _nonneg(eps, "eps")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")
        self.amsgrad = bool(amsgrad)
        n = len(self.params)
        self._m, self._v, self._vmax, self._t = [None] * n, [None] * n, [None] * n, [0] * n

    def _update(self, i, p, g):
        b1, b2 = self.betas
        if self._m[i] is None:
            self._m[i], self._v[i] = np.zeros_like(p), np.zeros_like(p)
            if self.amsgrad:
                self._vmax[i] = np.zeros_like(p)
        self._t[i] += 1
        t = self._t[i]
        _d.kernel("optim", "adam_step", p.size)(
            p, g, self._m[i], self._v[i], self._vmax[i], self.lr, b1, b2, self.eps, self.weight_decay,
            1 - b1**t, 1 - b2**t
        )
