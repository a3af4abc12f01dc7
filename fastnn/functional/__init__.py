"""fastnn.functional: the stateless public API (validation + dispatch), names as in torch."""
from .dense import (
    dropout,
    dropout_backward,
    dropout2d,
    dropout2d_backward,
    linear,
    linear_backward,
    log_softmax,
    log_softmax_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_backward,
    tanh,
    tanh_backward,
)

from .loss import (
    binary_cross_entropy,
    binary_cross_entropy_backward,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    cross_entropy,
    cross_entropy_backward,
    huber_loss,
    huber_loss_backward,
    kl_div,
    kl_div_backward,
    l1_loss,
    l1_loss_backward,
    mse_loss,
    mse_loss_backward,
    nll_loss,
    nll_loss_backward,
    smooth_l1_loss,
    smooth_l1_loss_backward,
)

from .recurrent import embedding, embedding_backward, gru, gru_backward, lstm, lstm_backward

from .attention import (
    attention_weights,
    scaled_dot_product_attention,
    scaled_dot_product_attention_backward,
)

from .conv import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    avg_pool1d,
    avg_pool1d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    conv1d,
    conv1d_backward,
    conv2d,
    conv2d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
    max_pool1d,
    max_pool1d_backward,
    max_pool2d,
    max_pool2d_backward,
)

from .activation import (
    elu,
    elu_backward,
    gelu,
    gelu_backward,
    hardswish,
    hardswish_backward,
    leaky_relu,
    leaky_relu_backward,
    prelu,
    prelu_backward,
    silu,
    silu_backward,
    softplus,
    softplus_backward,
)

from .upsample import interpolate, interpolate_backward

from .norm import (
    batch_norm,
    batch_norm_backward,
    group_norm,
    group_norm_backward,
    layer_norm,
    layer_norm_backward,
)

import types as _types

__all__ = [n for n, v in list(globals().items()) if not n.startswith("_") and not isinstance(v, _types.ModuleType)]
