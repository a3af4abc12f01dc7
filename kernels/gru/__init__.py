"""GRU kernels: one layer of a unidirectional GRU over all time steps, forward and backward.

Gate order is torch's ``(r, z, n)`` with ``b_hn`` inside the reset product::

    r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
    z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
    h' = (h - n) * z + n                       (= (1 - z) n + z h, torch's operation order)

Shared signature of every backend (all arrays C-contiguous, one float dtype; ``T`` time steps,
``B`` batch, ``I`` input features, ``H`` hidden size; outputs allocated by the caller)::

    gru_layer_forward(x, w_ih, w_hh, b_ih, b_hh, h0, hs, acts)
        x (T, B, I), w_ih (3H, I), w_hh (3H, H), b_ih, b_hh (3H,) (zeros for a layer without
        bias), h0 (B, H). Writes hs (T, B, H) and acts (T, B, 4H) = (r, z, n, hn) with
        hn = h_{t-1} W_hn^T + b_hn, which the backward pass reuses.

    gru_layer_backward(grad_hs, grad_hn, x, w_ih, w_hh, h0, hs, acts,
                       grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_h0)
        grad_hs (T, B, H) gradient into every output h_t, grad_hn (B, H) into the final state.
        Writes (overwrites) grad_x (T, B, I) or None (not computed), grad_w_ih (3H, I),
        grad_w_hh (3H, H), grad_b_ih, grad_b_hh (3H,), grad_h0 (B, H).

The fast backends share one driver (:func:`numpy_impl.layer_functions`, the LSTM driver's
design): one GEMM for the input projection of all steps, per step one recurrent GEMM and one
fused gate pass on single-threaded BLAS, the weight and input gradients as big GEMMs over
chunks of steps on the helper thread. The gate kernels::

    gru_gates_forward(xg, hg, b_hh, h_prev, h, act)
        xg (B, 3H) = x_t W_ih^T + b_ih, hg (B, 3H) = h_prev W_hh^T (no bias), b_hh (3H,);
        writes h (B, H) and act (B, 4H) = (r, z, n, hn)
    gru_gates_backward(grad_h, grad_h_rec, act, h_prev, grad_xg, grad_hg, grad_h_direct)
        grad_h + grad_h_rec is the gradient into h_t. Writes grad_xg (B, 3H) (gradient of the
        input pre-activations = of b_ih), grad_hg (B, 3H) (of h_prev W_hh^T + b_hh) and
        grad_h_direct (B, H) = dh * z, the part of grad_h_prev that bypasses W_hh.
"""
