"""LSTM kernels: one layer of a unidirectional LSTM over all time steps, forward and backward.

Gate order is torch's ``(i, f, g, o)``: ``gates = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh``
split in four blocks of ``H``; ``i, f, o = sigmoid(.)``, ``g = tanh(.)``,
``c_t = f * c_{t-1} + i * g``, ``h_t = o * tanh(c_t)``.

Shared signature of every backend (all arrays C-contiguous, one float dtype; ``T`` time steps,
``B`` batch, ``I`` input features, ``H`` hidden size; outputs allocated by the caller)::

    lstm_layer_forward(x, w_ih, w_hh, bias, h0, c0, hs, cs, acts)
        x (T, B, I), w_ih (4H, I), w_hh (4H, H), bias (4H,) = b_ih + b_hh or None,
        h0, c0 (B, H).
        Writes hs (T, B, H) hidden states, cs (T, B, H) cell states and acts (T, B, 4H)
        the activated gates (i, f, g, o), which the backward pass reuses.

    lstm_layer_backward(grad_hs, grad_hn, grad_cn, x, w_ih, w_hh, h0, c0, hs, cs, acts,
                        grad_x, grad_w_ih, grad_w_hh, grad_b, grad_h0, grad_c0)
        grad_hs (T, B, H) gradient into every output h_t, grad_hn / grad_cn (B, H) gradient
        into the final states. Writes (overwrites, does not accumulate) grad_x (T, B, I) or
        None (not computed), grad_w_ih (4H, I), grad_w_hh (4H, H), grad_b (4H,) (the
        gradient of b_ih and of b_hh alike), grad_h0 and grad_c0 (B, H).

The fast backends share one driver (:func:`numpy_impl.layer_functions`): one GEMM for the input
projection of all time steps, then per step one recurrent GEMM and one gate pass; backward
runs one GEMM per step and three big GEMMs for the weight and input gradients at the end.
They differ in the gate pass, which the compiled backends fuse into one kernel::

    lstm_gates_forward(xg, hg, c_prev, h, c, act)       xg, hg, act (B, 4H); c_prev, h, c (B, H)
        pre-activations xg + hg -> act = (i, f, g, o), c = f c_prev + i g, h = o tanh(c)
    lstm_gates_backward(grad_h, grad_h_rec, grad_c, act, c_prev, c, grad_gates, grad_c_prev)
        grad_h + grad_h_rec is the gradient into h_t, grad_c into c_t; writes grad_gates (B, 4H)
        (gradient of the pre-activations) and grad_c_prev (B, H) (may be the grad_c array).
"""
