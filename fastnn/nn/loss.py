"""Loss modules, like ``torch.nn``'s: ``loss = m(input, target)``; ``grad = m.backward()``.

``forward(input, target)`` returns the loss (one functional call from
:mod:`fastnn.functional.loss`) and keeps ``input`` and ``target``; ``backward(grad_output=None)``
returns the gradient with respect to ``input``, scaled by the upstream gradient (a number for a
reduced loss, an array of the loss's shape for ``reduction="none"``; default 1). As every
module, a loss used k times is backpropagated k times, in reverse order.

Loss modules have no parameters and no dtype (like torch): the loss and the gradient have
the input's dtype; a float target, ``weight`` or ``pos_weight`` of the other float dtype is
cast to it. ``weight``/``pos_weight`` are buffers, in ``state_dict()`` under torch's keys.
"""

import numpy as np

from .. import _validate as _v
from .. import functional as F
from ..functional.loss import _KL_REDUCTIONS, _REDUCTIONS, _reduction
from .module import Module


class _Loss(Module):
    _fn = _grad = None
    _reductions = _REDUCTIONS

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = _reduction(reduction, self._reductions)

    def _target(self, target, x):
        t = target if isinstance(target, np.ndarray) else np.asarray(target)
        return t.astype(x.dtype) if t.dtype.kind == "f" and t.dtype != x.dtype else t

    def _options(self, x):
        return {}

    def forward(self, input, target):
        x = self._input(input)
        t = self._target(target, x)
        loss = type(self)._fn(x, t, **self._options(x))
        self._save(x, t)
        return loss

    def backward(self, grad_output=None, need_input_grad=True):
        x, t = self._pop()
        if grad_output is not None and self.reduction == "none":
            grad_output = self._input(grad_output, "grad_output", like=x)
        return type(self)._grad(x, t, grad_output=grad_output, **self._options(x))

    def _buffer(self, name, x):
        b = getattr(self, name)
        return None if b is None else b.astype(x.dtype, copy=False)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


def _opt_array(a, name):
    return None if a is None else np.array(_v.float_array(a, name), copy=True)


class MSELoss(_Loss):
    """Mean squared error, like ``torch.nn.MSELoss(reduction="mean")``; see :func:`fastnn.functional.mse_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> m = nn.MSELoss()
    >>> float(m(np.array([1.0, 3.0]), np.array([1.0, 1.0])))
    2.0
    >>> m.backward()
    array([0., 2.])
    """

    _fn, _grad = F.mse_loss, F.mse_loss_backward

    def _options(self, x):
        return dict(reduction=self.reduction)


class L1Loss(MSELoss):
    """Mean absolute error, like ``torch.nn.L1Loss``; see :func:`fastnn.functional.l1_loss`."""

    _fn, _grad = F.l1_loss, F.l1_loss_backward


class SmoothL1Loss(_Loss):
    """Smooth L1 loss, like ``torch.nn.SmoothL1Loss(reduction="mean", beta=1.0)``; see
    :func:`fastnn.functional.smooth_l1_loss`."""

    _fn, _grad = F.smooth_l1_loss, F.smooth_l1_loss_backward

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = F.loss._beta(beta, "beta")

    def _options(self, x):
        return dict(reduction=self.reduction, beta=self.beta)

    def extra_repr(self):
        return f"reduction={self.reduction!r}, beta={self.beta}"


class HuberLoss(_Loss):
    """Huber loss, like ``torch.nn.HuberLoss(reduction="mean", delta=1.0)``; see
    :func:`fastnn.functional.huber_loss`."""

    _fn, _grad = F.huber_loss, F.huber_loss_backward

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = F.loss._number(delta, "delta", lo=0.0, lo_open=True)

    def _options(self, x):
        return dict(reduction=self.reduction, delta=self.delta)

    def extra_repr(self):
        return f"reduction={self.reduction!r}, delta={self.delta}"


class KLDivLoss(_Loss):
    """KL divergence, like ``torch.nn.KLDivLoss(reduction="mean", log_target=False)``; ``input``
    holds log-probabilities. See :func:`fastnn.functional.kl_div`."""

    _fn, _grad = F.kl_div, F.kl_div_backward
    _reductions = _KL_REDUCTIONS

    def __init__(self, reduction="mean", log_target=False):
        super().__init__(reduction)
        self.log_target = bool(log_target)

    def _options(self, x):
        return dict(reduction=self.reduction, log_target=self.log_target)


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities, like ``torch.nn.BCELoss(weight=None, reduction="mean")``;
    see :func:`fastnn.functional.binary_cross_entropy`."""

    _fn, _grad = F.binary_cross_entropy, F.binary_cross_entropy_backward

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.register_buffer("weight", _opt_array(weight, "weight"))

    def _options(self, x):
        return dict(weight=self._buffer("weight", x), reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy, stable for large logits, like
    ``torch.nn.BCEWithLogitsLoss(weight=None, reduction="mean", pos_weight=None)``; see
    :func:`fastnn.functional.binary_cross_entropy_with_logits`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> m = nn.BCEWithLogitsLoss(pos_weight=np.array([2.0, 1.0]))
    >>> round(float(m(np.zeros((1, 2)), np.ones((1, 2)))), 4)
    1.0397
    >>> m.backward()
    array([[-0.5 , -0.25]])
    """

    _fn, _grad = F.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits_backward

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.register_buffer("weight", _opt_array(weight, "weight"))
        self.register_buffer("pos_weight", _opt_array(pos_weight, "pos_weight"))

    def _options(self, x):
        return dict(weight=self._buffer("weight", x), reduction=self.reduction,
                    pos_weight=self._buffer("pos_weight", x))


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities, like
    ``torch.nn.NLLLoss(weight=None, ignore_index=-100, reduction="mean")``; see
    :func:`fastnn.functional.nll_loss`."""

    _fn, _grad = F.nll_loss, F.nll_loss_backward

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.register_buffer("weight", _opt_array(weight, "weight"))
        self.ignore_index = ignore_index

    def _target(self, target, x):
        return target

    def _options(self, x):
        return dict(weight=self._buffer("weight", x), ignore_index=self.ignore_index, reduction=self.reduction)

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy, like ``torch.nn.CrossEntropyLoss(weight=None, ignore_index=-100,
    reduction="mean", label_smoothing=0.0)``: class-index or probability targets, inputs
    (N, C), (N, C, d1, ...) or (C,); see :func:`fastnn.functional.cross_entropy`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> m = nn.CrossEntropyLoss(label_smoothing=0.1)
    >>> logits = np.array([[2.0, 0.0, -1.0]])
    >>> loss = m(logits, np.array([0]))
    >>> m.backward().shape
    (1, 3)
    """

    _fn, _grad = F.cross_entropy, F.cross_entropy_backward

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.register_buffer("weight", _opt_array(weight, "weight"))
        self.ignore_index = ignore_index
        self.label_smoothing = F.loss._number(label_smoothing, "label_smoothing", lo=0.0, hi=1.0)

    def _options(self, x):
        return dict(weight=self._buffer("weight", x), ignore_index=self.ignore_index, reduction=self.reduction,
                    label_smoothing=self.label_smoothing)

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"
