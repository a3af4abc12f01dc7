"""Loss kernels beyond the plain softmax cross-entropy (which stays in ``kernels/dense``).

Shared signature of every backend (arrays C-contiguous, one float dtype, outputs allocated by
the caller; ``weight`` and ``pos_weight`` are empty arrays when absent)::

    pointwise_forward(kind, x, t, pos_weight, param, out)
        elementwise unreduced loss of ``kind`` (see the constants below); x, t, out 1-D (n,);
        pos_weight (n,) or (0,) (BCE_LOGITS only); param: beta (SMOOTH_L1) or delta (HUBER)
    pointwise_backward(kind, x, t, pos_weight, param, g, scale, out)
        out = scale * g * d loss / d x; g (n,) upstream gradient, or (0,) for "all ones"

    cross_entropy_forward(logits, target, weight, ignore_index, smoothing, losses, wt)
        logits (M, C), class-index target int64 (M,); losses (M,) as torch's reduction="none",
        wt (M,) the row's weight in the "mean" denominator (weight[target], 0 when ignored)
    cross_entropy_backward(logits, target, weight, ignore_index, smoothing, rowscale, out)
        out (M, C) = rowscale[i] * d losses[i] / d logits[i]
    cross_entropy_prob_forward(logits, probs, weight, smoothing, losses)
        probability targets (M, C)
    cross_entropy_prob_backward(logits, probs, weight, smoothing, rowscale, out)
    nll_forward(logp, target, weight, ignore_index, losses, wt)
    nll_backward(target, weight, ignore_index, rowscale, out)      out (M, C), written whole

With label smoothing ``e`` over ``C`` classes, torch's class-index loss of a row is
``(1 - e) * w[t] * (-logp[t]) + e / C * sum_c w[c] * (-logp[c])`` (0 for an ignored row) and
its probability-target loss ``-sum_c w[c] * q[c] * logp[c]`` with ``q = (1 - e) p + e / C``.
"""
MSE, L1, SMOOTH_L1, HUBER, BCE, BCE_LOGITS, KL, KL_LOG = range(8)

# torch clamps BCE's gradient denominator x (1 - x) at its *float* constant 1e-12, as a double
BCE_EPS = 9.999999960041972e-13
