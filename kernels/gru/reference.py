"""Reference GRU layer: the straightforward per-step NumPy code (torch's ``nn.GRU`` written
out), the readable truth the other backends are tested against.

Each step computes its own input and hidden projections, the reset and update gates, the
candidate ``n`` (with ``b_hn`` inside the reset product, as torch) and the new state;
backward walks the steps in reverse and accumulates every gradient step by step
(backpropagation through time). It allocates freely.
"""
import numpy as np

from ..lstm.reference import _sigmoid


def gru_layer_forward(x, w_ih, w_hh, b_ih, b_hh, h0, hs, acts):
    H = h0.shape[1]
    h = h0
    for t in range(x.shape[0]):
        gi = x[t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        r = _sigmoid(gi[:, :H] + gh[:, :H])
        z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        hn = gh[:, 2 * H:]
        n = np.tanh(gi[:, 2 * H:] + r * hn)
        h = (h - n) * z + n
        hs[t] = h
        acts[t] = np.concatenate([r, z, n, hn], axis=1)


def gru_layer_backward(grad_hs, grad_hn, x, w_ih, w_hh, h0, hs, acts,
                       grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_h0):
    H = h0.shape[1]
    gw_ih, gw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    gb_ih, gb_hh = np.zeros(3 * H, dtype=w_ih.dtype), np.zeros(3 * H, dtype=w_ih.dtype)
    dh_next = grad_hn
    for t in range(x.shape[0] - 1, -1, -1):
        r, z, n, hn = (acts[t][:, k * H:(k + 1) * H] for k in range(4))
        h_prev = hs[t - 1] if t > 0 else h0
        dh = grad_hs[t] + dh_next
        dn = dh * (1 - z) * (1 - n * n)                 # through n = tanh(.)
        dz = dh * (h_prev - n) * z * (1 - z)            # through z = sigmoid(.)
        dr = dn * hn * r * (1 - r)                      # through r, inside the reset product
        d_in = np.concatenate([dr, dz, dn], axis=1)     # gradient of x W_ih^T + b_ih
        d_hid = np.concatenate([dr, dz, dn * r], axis=1)  # gradient of h W_hh^T + b_hh
        gw_ih += d_in.T @ x[t]
        gw_hh += d_hid.T @ h_prev
        gb_ih += d_in.sum(axis=0)
        gb_hh += d_hid.sum(axis=0)
        if grad_x is not None:
            grad_x[t] = d_in @ w_ih
        dh_next = d_hid @ w_hh + dh * z
    grad_w_ih[...] = gw_ih
    grad_w_hh[...] = gw_hh
    grad_b_ih[...] = gb_ih
    grad_b_hh[...] = gb_hh
    grad_h0[...] = dh_next
