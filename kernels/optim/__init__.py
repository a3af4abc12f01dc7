"""Optimiser update kernels: one fused pass over each parameter instead of a dozen NumPy passes.

Shared signature (all arrays 1-D, C-contiguous, one dtype; updated in place)::

    sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first)
        buf is None when momentum == 0; ``first``: buf is initialised with g (torch's rule)
    adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2)
        vmax is None unless AMSGrad
"""
