"""Optimiser update kernels: one fused pass over each parameter instead of a dozen NumPy passes.

Shared signature (all arrays 1-D, C-contiguous, one dtype; updated in place; the gradient
``g`` is read only). The formulas and their operation order are torch's (single-tensor
path), including ``lerp`` for running averages (``a + w (b - a)``, or ``b - (b - a)(1 - w)``
when ``w >= 0.5``)::

    sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first)
        buf is None when momentum == 0; ``first``: buf is initialised with g (torch's rule)
    adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, decoupled,
              bias_correction1, bias_correction2)
        vmax is None unless AMSGrad; ``decoupled``: AdamW's p *= 1 - lr * weight_decay
        instead of adding weight_decay * p to the gradient
    rmsprop_step(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum)
        grad_avg is None unless centered; buf is None unless momentum > 0
    adagrad_step(p, g, state_sum, clr, eps, weight_decay)
        clr = lr / (1 + (step - 1) * lr_decay)
"""
