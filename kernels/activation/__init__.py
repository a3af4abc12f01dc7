"""Activation kernels beyond relu/sigmoid/tanh (those live in ``kernels/dense``): GELU (exact
and tanh), SiLU, LeakyReLU, ELU, Softplus, Hardswish, PReLU; forward and backward.

Shared signature of every backend (arrays C-contiguous, one float dtype, outputs allocated by
the caller and overwritten; elementwise kernels see flat 1-D views; the backward kernels take
the forward's *input* ``x``; scalar options are Python floats)::

    gelu_forward(x, out, tanh)                     gelu_backward(grad_out, x, out, tanh)
        tanh False: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2));
        tanh True: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
    silu_forward(x, out)                           silu_backward(grad_out, x, out)
    leaky_relu_forward(x, out, negative_slope)     leaky_relu_backward(grad_out, x, out, negative_slope)
    elu_forward(x, out, alpha)                     elu_backward(grad_out, x, out, alpha)
    softplus_forward(x, out, beta, threshold)      softplus_backward(grad_out, x, out, beta, threshold)
    hardswish_forward(x, out)                      hardswish_backward(grad_out, x, out)
    prelu_forward(x, weight, out)
        x, out (N, C, M), weight (C,): out = x if x > 0 else weight[c] * x
    prelu_backward(grad_out, x, weight, grad_x, grad_weight)
        grad_weight (C,) float64: the sum of x * grad_out over (n, m) where x <= 0

Gradients at the kinks and NaN follow torch (``x > 0`` picks the positive branch; a NaN input
gives a NaN output).
"""
