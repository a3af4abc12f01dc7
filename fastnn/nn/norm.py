"""Normalisation modules: BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm (torch's arguments,
parameters, buffers and ``state_dict`` keys). Each ``forward`` is one functional call.

They take ``dtype=np.float32`` (default, like torch) or ``np.float64`` for their parameters
and float buffers, and cast a float input of the other dtype to it.
"""
import numbers

import numpy as np

from .. import functional as F
from .._validate import positive_int
from .module import Module, Parameter


def _flag(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    return bool(v)


def _eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise ValueError(f"eps: expected a float >= 0, got {eps!r}")
    return float(eps)


class _BatchNorm(Module):
    _dims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__(dtype)
        self.num_features = positive_int(num_features, "num_features")
        self.eps = _eps(eps)
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)):
            raise TypeError(f"momentum: expected a float or None (cumulative average), got {type(momentum).__name__}")
        self.momentum = None if momentum is None else float(momentum)
        self.affine = _flag(affine, "affine")
        self.track_running_stats = _flag(track_running_stats, "track_running_stats")
        C = self.num_features
        if self.affine:
            self.weight = Parameter(np.ones(C, self.dtype))
            self.bias = Parameter(np.zeros(C, self.dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        track = self.track_running_stats
        self.register_buffer("running_mean", np.zeros(C, self.dtype) if track else None)
        self.register_buffer("running_var", np.ones(C, self.dtype) if track else None)
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64) if track else None)

    def reset_running_stats(self):
        """Running mean 0, running variance 1, ``num_batches_tracked`` 0 (as torch)."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def forward(self, input):
        x = self._input(input)
        if x.ndim not in self._dims:
            want = " or ".join(f"{d}-D" for d in self._dims)
            raise ValueError(f"input: expected a {want} array for {type(self).__name__}, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"input: expected {self.num_features} channels (dim 1, num_features), got shape {x.shape}")
        update = self.training and self.track_running_stats
        factor = 0.0 if self.momentum is None else self.momentum
        if update and self.momentum is None:  # cumulative moving average
            factor = 1.0 / float(self.num_batches_tracked + 1)
        bn_training = self.training or self.running_mean is None
        use_running = not self.training or self.track_running_stats
        out, mean, rstd = F.batch_norm(
            x, self.running_mean if use_running else None, self.running_var if use_running else None,
            None if self.weight is None else self.weight.data, None if self.bias is None else self.bias.data,
            bn_training, factor, self.eps, return_stats=True)
        if update:
            self.num_batches_tracked += 1
        self._save(x, mean, rstd, bn_training)
        return out

    def backward(self, grad_output, need_input_grad=True):
        x, mean, rstd, bn_training = self._pop()
        g = self._input(grad_output, "grad_output")
        gx, gw, gb = F.batch_norm_backward(g, x, mean, rstd, None if self.weight is None else self.weight.data,
                                           training=bn_training)
        if self.affine:
            self.weight.accumulate(gw)
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L) inputs, like ``torch.nn.BatchNorm1d``.

    Parameters
    ----------
    num_features : int
        C, the number of channels (dim 1).
    eps : float, default 1e-5
    momentum : float or None, default 0.1
        Weight of the batch statistics in the running-statistics update; None: a cumulative
        average (``1 / num_batches_tracked``).
    affine : bool, default True
        Learnable ``weight`` (ones) and ``bias`` (zeros) of shape (C,).
    track_running_stats : bool, default True
        Keep the buffers ``running_mean`` (zeros), ``running_var`` (ones) and
        ``num_batches_tracked`` (int64); without them the batch statistics are used in
        ``eval()`` mode too.
    dtype : np.float32 (default) or np.float64
        Of the parameters and float buffers; a float input of the other dtype is cast.

    In ``train()`` mode the input is normalised with the batch's mean and biased variance
    (per channel, over every dim but 1) and the running statistics are updated with the
    batch's mean and *unbiased* variance; in ``eval()`` mode the running statistics are used.
    ``state_dict`` keys: ``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked``, as torch.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> bn = nn.BatchNorm1d(3)
    >>> bn(np.random.default_rng(0).standard_normal((8, 3))).shape
    (8, 3)
    >>> int(bn.num_batches_tracked)
    1
    """

    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) inputs, like ``torch.nn.BatchNorm2d``.

    Parameters, buffers, modes and ``state_dict`` keys as :class:`BatchNorm1d`; the
    statistics of channel ``c`` are taken over ``(N, H, W)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.BatchNorm2d(4)(np.ones((2, 4, 5, 5), np.float32)).shape
    (2, 4, 5, 5)
    """

    _dims = (4,)


class LayerNorm(Module):
    """Layer normalisation over the last dims, like ``torch.nn.LayerNorm``.

    Parameters
    ----------
    normalized_shape : int or tuple of ints
        The trailing shape normalised over (each sample's mean and biased variance).
    eps : float, default 1e-5
    elementwise_affine : bool, default True
        Learnable ``weight`` (ones) of shape ``normalized_shape``, and ``bias`` (zeros)...
    bias : bool, default True
        ...when this is True too.
    dtype : np.float32 (default) or np.float64 (a float input of the other dtype is cast)

    Input (*, *normalized_shape); output of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.LayerNorm(8)(np.ones((2, 5, 8), np.float32)).shape
    (2, 5, 8)
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=np.float32):
        super().__init__(dtype)
        if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
            normalized_shape = (normalized_shape,)
        if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
            raise TypeError(f"normalized_shape: expected an int or a non-empty tuple of ints, got {normalized_shape!r}")
        self.normalized_shape = tuple(positive_int(s, "normalized_shape") for s in normalized_shape)
        self.eps = _eps(eps)
        self.elementwise_affine = _flag(elementwise_affine, "elementwise_affine")
        _flag(bias, "bias")
        shape = self.normalized_shape
        self.register_parameter("weight", Parameter(np.ones(shape, self.dtype)) if self.elementwise_affine else None)
        self.register_parameter("bias", Parameter(np.zeros(shape, self.dtype)) if self.elementwise_affine and bias
                                else None)

    def forward(self, input):
        x = self._input(input)
        out, mean, rstd = F.layer_norm(x, self.normalized_shape, None if self.weight is None else self.weight.data,
                                       None if self.bias is None else self.bias.data, self.eps, return_stats=True)
        self._save(x, mean, rstd)
        return out

    def backward(self, grad_output, need_input_grad=True):
        x, mean, rstd = self._pop()
        gx, gw, gb = F.layer_norm_backward(self._input(grad_output, "grad_output"), x, self.normalized_shape, mean,
                                           rstd, None if self.weight is None else self.weight.data)
        if self.weight is not None:
            self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """Group normalisation, like ``torch.nn.GroupNorm``.

    Parameters
    ----------
    num_groups : int, divides ``num_channels``
    num_channels : int
    eps : float, default 1e-5
    affine : bool, default True
        Learnable per-channel ``weight`` (ones) and ``bias`` (zeros) of shape (C,).
    dtype : np.float32 (default) or np.float64 (a float input of the other dtype is cast)

    Input (N, C, *); each sample's group of ``C // num_groups`` channels is normalised by its
    own mean and biased variance. Output of the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.GroupNorm(2, 6)(np.ones((3, 6, 4, 4), np.float32)).shape
    (3, 6, 4, 4)
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=np.float32):
        super().__init__(dtype)
        self.num_groups = positive_int(num_groups, "num_groups")
        self.num_channels = positive_int(num_channels, "num_channels")
        if self.num_channels % self.num_groups:
            raise ValueError(f"num_groups: expected a divisor of num_channels={num_channels}, got {num_groups}")
        self.eps = _eps(eps)
        self.affine = _flag(affine, "affine")
        C = self.num_channels
        self.register_parameter("weight", Parameter(np.ones(C, self.dtype)) if self.affine else None)
        self.register_parameter("bias", Parameter(np.zeros(C, self.dtype)) if self.affine else None)

    def forward(self, input):
        x = self._input(input)
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"input: expected shape (N, {self.num_channels}, *) (num_channels), got {x.shape}")
        out, mean, rstd = F.group_norm(x, self.num_groups, None if self.weight is None else self.weight.data,
                                       None if self.bias is None else self.bias.data, self.eps, return_stats=True)
        self._save(x, mean, rstd)
        return out

    def backward(self, grad_output, need_input_grad=True):
        x, mean, rstd = self._pop()
        gx, gw, gb = F.group_norm_backward(self._input(grad_output, "grad_output"), x, self.num_groups, mean, rstd,
                                           None if self.weight is None else self.weight.data)
        if self.affine:
            self.weight.accumulate(gw)
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
