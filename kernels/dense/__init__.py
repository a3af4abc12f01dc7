"""Dense layer kernels: linear, activations, softmax, losses.

Shared signature of every backend (all arrays C-contiguous, one float dtype, outputs
allocated by the caller; elementwise kernels see 1-D views, row kernels 2-D ``(rows, C)``)::

    linear_forward(x, weight, bias, out)                  x (N, IN), weight (OUT, IN), bias (OUT,) | None
    linear_backward(grad_out, x, weight, grad_x, grad_weight, grad_bias)   grad_x/grad_bias may be None
    relu_forward(x, out)            relu_backward(grad_out, y, out)
    sigmoid_forward(x, out)         sigmoid_backward(grad_out, y, out)     y = sigmoid(x)
    tanh_forward(x, out)            tanh_backward(grad_out, y, out)        y = tanh(x)
    softmax_forward(x, out)         softmax_backward(grad_out, y, out)     y = softmax(x)
    log_softmax_forward(x, out)     log_softmax_backward(grad_out, y, out) y = log_softmax(x)
    cross_entropy_forward(logits, target, losses)         per-row loss, target int64 (N,)
    cross_entropy_backward(logits, target, scale, out)    out = (softmax(logits) - onehot) * scale
    mse_forward(y, t) -> float (sum of squares)           mse_backward(y, t, scale, out): out = scale*(y-t)
"""
