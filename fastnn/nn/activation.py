"""Activation modules: GELU, SiLU, LeakyReLU, ELU, Softplus, Hardswish, PReLU, LogSoftmax,
Identity (torch's names, arguments and ``state_dict`` keys). Each ``forward`` is one
functional call.

All but :class:`PReLU` have no parameters and no dtype: output and input gradient have the
input's dtype, as in torch. :class:`PReLU` owns its ``weight`` and takes ``dtype``.
``inplace`` is accepted for torch's signatures and ignored: fastnn never modifies an input.
"""
import numpy as np

from .. import functional as F
from .._validate import FLOAT_DTYPES, positive_int
from ..functional.activation import _scalar
from .module import Module, Parameter


class _Elementwise(Module):
    """Saves the input; backward is ``_grad(grad_output, x, **options)``."""

    _fn = _grad = None

    def __init__(self, **options):
        super().__init__()
        self._options = options
        type(self)._fn(np.zeros(1), **options)  # validate the options now

    def forward(self, input):
        x = self._input(input)
        self._save(x)
        return type(self)._fn(x, **self._options)

    def backward(self, grad_output, need_input_grad=True):
        (x,) = self._pop()
        return type(self)._grad(self._input(grad_output, "grad_output", like=x), x, **self._options)

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self._options.items())


class GELU(_Elementwise):
    """Gaussian error linear unit, like ``torch.nn.GELU(approximate="none")``.

    ``approximate="tanh"`` uses the tanh formula (see :func:`fastnn.functional.gelu`).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.GELU()(np.array([1.0])).round(4)
    array([0.8413])
    """

    _fn, _grad = F.gelu, F.gelu_backward

    def __init__(self, approximate="none"):
        super().__init__(approximate=approximate)


class SiLU(_Elementwise):
    """``x * sigmoid(x)``, like ``torch.nn.SiLU``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.SiLU()(np.zeros((2, 3), np.float32)).dtype
    dtype('float32')
    """

    _fn, _grad = F.silu, F.silu_backward

    def __init__(self, inplace=False):
        super().__init__()


class LeakyReLU(_Elementwise):
    """``x`` for ``x > 0``, else ``negative_slope * x``, like ``torch.nn.LeakyReLU(negative_slope=0.01)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.LeakyReLU(0.2)(np.array([-1.0, 1.0]))
    array([-0.2,  1. ])
    """

    _fn, _grad = F.leaky_relu, F.leaky_relu_backward

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__(negative_slope=negative_slope)


class ELU(_Elementwise):
    """``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``, like ``torch.nn.ELU(alpha=1.0)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.ELU()(np.array([-1.0, 1.0])).round(4)
    array([-0.6321,  1.    ])
    """

    _fn, _grad = F.elu, F.elu_backward

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__(alpha=alpha)


class Softplus(_Elementwise):
    """``log(1 + exp(beta x)) / beta`` (``x`` where ``beta x > threshold``), like
    ``torch.nn.Softplus(beta=1.0, threshold=20.0)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.Softplus(beta=2.0)(np.array([0.0])).round(4)
    array([0.3466])
    """

    _fn, _grad = F.softplus, F.softplus_backward

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__(beta=beta, threshold=threshold)


class Hardswish(_Elementwise):
    """``x * clip(x + 3, 0, 6) / 6``, like ``torch.nn.Hardswish``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.Hardswish()(np.array([1.0])).round(4)
    array([0.6667])
    """

    _fn, _grad = F.hardswish, F.hardswish_backward

    def __init__(self, inplace=False):
        super().__init__()


class PReLU(Module):
    """Parametric ReLU, like ``torch.nn.PReLU(num_parameters=1, init=0.25)``.

    Parameters
    ----------
    num_parameters : int, default 1
        1 (one slope shared by all channels) or the number of channels C (dim 1 of the input).
    init : float, default 0.25
        Initial slope.
    dtype : np.float32 (default) or np.float64 (a float input of the other dtype is cast)

    Parameter ``weight`` of shape (num_parameters,). Input (N, C, *) (or fewer than 2 dims
    with ``num_parameters=1``); output of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.PReLU(3)(-np.ones((2, 3, 4, 4), np.float32))[0, :, 0, 0]
    array([-0.25, -0.25, -0.25], dtype=float32)
    """

    def __init__(self, num_parameters=1, init=0.25, dtype=np.float32):
        super().__init__(dtype)
        self.num_parameters = positive_int(num_parameters, "num_parameters")
        self.init = _scalar(init, "init")
        self.weight = Parameter(np.full(self.num_parameters, self.init, self.dtype))

    def forward(self, input):
        x = self._input(input)
        self._save(x)
        return F.prelu(x, self.weight.data)

    def backward(self, grad_output, need_input_grad=True):
        (x,) = self._pop()
        gx, gw = F.prelu_backward(self._input(grad_output, "grad_output"), x, self.weight.data)
        self.weight.accumulate(gw)
        return gx

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class LogSoftmax(Module):
    """Log-softmax along ``dim`` (default -1), like ``torch.nn.LogSoftmax(dim)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> np.exp(nn.LogSoftmax(dim=1)(np.zeros((1, 4)))).round(2)
    array([[0.25, 0.25, 0.25, 0.25]])
    """

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        y = F.log_softmax(self._input(input), axis=self.dim)
        self._save(y)
        return y

    def backward(self, grad_output, need_input_grad=True):
        (y,) = self._pop()
        return F.log_softmax_backward(self._input(grad_output, "grad_output", like=y), y, axis=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Identity(Module):
    """Returns its input (any arguments are accepted and ignored, like ``torch.nn.Identity``).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> x = np.ones(3)
    >>> nn.Identity(54, unused="x")(x) is x
    True
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        dt = getattr(input, "dtype", None)
        self._save(dt if dt in FLOAT_DTYPES else None)
        return input

    def backward(self, grad_output, need_input_grad=True):
        (dt,) = self._pop()
        return grad_output if dt is None else self._input(grad_output, "grad_output", like=dt)
