"""Reference LSTM layer: the straightforward per-step NumPy code (the seed's torch ``nn.LSTM``
written out), the readable truth the other backends are tested against.

Each step computes its own input projection, splits the gates, applies the activations and
updates the cell; backward walks the steps in reverse and accumulates every gradient step
by step (backpropagation through time). It allocates freely.
"""
import numpy as np


def _sigmoid(z):
    e = np.exp(-np.abs(z))  # never overflows
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def lstm_layer_forward(x, w_ih, w_hh, bias, h0, c0, hs, cs, acts):
    H = h0.shape[1]
    h, c = h0, c0
    for t in range(x.shape[0]):
        z = x[t] @ w_ih.T + h @ w_hh.T
        if bias is not None:
            z = z + bias
        i = _sigmoid(z[:, :H])
        f = _sigmoid(z[:, H:2 * H])
        g = np.tanh(z[:, 2 * H:3 * H])
        o = _sigmoid(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs[t], cs[t] = h, c
        acts[t] = np.concatenate([i, f, g, o], axis=1)


def lstm_layer_backward(grad_hs, grad_hn, grad_cn, x, w_ih, w_hh, h0, c0, hs, cs, acts,
                        grad_x, grad_w_ih, grad_w_hh, grad_b, grad_h0, grad_c0):
    H = h0.shape[1]
    gw_ih = np.zeros_like(w_ih)
    gw_hh = np.zeros_like(w_hh)
    gb = np.zeros(4 * H, dtype=w_ih.dtype)
    dh_next, dc_next = grad_hn, grad_cn
    for t in range(x.shape[0] - 1, -1, -1):
        i, f, g, o = (acts[t][:, k * H:(k + 1) * H] for k in range(4))
        c_prev = cs[t - 1] if t > 0 else c0
        h_prev = hs[t - 1] if t > 0 else h0
        dh = grad_hs[t] + dh_next
        tc = np.tanh(cs[t])
        dc = dc_next + dh * o * (1 - tc * tc)
        dz = np.concatenate([
            dc * g * i * (1 - i),          # input gate
            dc * c_prev * f * (1 - f),     # forget gate
            dc * i * (1 - g * g),          # cell candidate
            dh * tc * o * (1 - o),         # output gate
        ], axis=1)
        gw_ih += dz.T @ x[t]
        gw_hh += dz.T @ h_prev
        gb += dz.sum(axis=0)
        if grad_x is not None:
            grad_x[t] = dz @ w_ih
        dh_next = dz @ w_hh
        dc_next = dc * f
    grad_w_ih[...] = gw_ih
    grad_w_hh[...] = gw_hh
    grad_b[...] = gb
    grad_h0[...] = dh_next
    grad_c0[...] = dc_next
