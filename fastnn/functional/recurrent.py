"""Recurrent ops: embedding lookup and the multi-layer LSTM and GRU (forward and backward).

Each function validates its arguments, makes inputs C-contiguous (inputs are never
modified), allocates outputs in the input's dtype and calls the kernel of the backend in
force (see :mod:`fastnn._dispatch`; kernels in ``kernels/embedding``, ``kernels/lstm`` and
``kernels/gru``).
"""
from collections import namedtuple

import numpy as np

from .. import _dispatch as _d
from .. import _validate as _v
from .dense import dropout, dropout_backward

# auto: measured on the 2-core machine (docs/performance.md, ## lstm); work = B*H for the LSTM
# gate pass, N*D for the embedding.
_d.register_auto({
    "embedding": [(0, "numpy"), (1 << 16, "numba")],
    "lstm": [(0, "numba")],
    "gru": [(0, "numba")],
})


def _padding_idx(padding_idx, n):
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
        raise TypeError(f"padding_idx: expected an int or None, got {type(padding_idx).__name__}")
    if not -n <= padding_idx < n:
        raise ValueError(f"padding_idx: expected an int in [{-n}, {n}) (num_embeddings={n}), got {padding_idx}")
    return int(padding_idx) % n


def _ids(ids, n):
    """Integer ids in ``[0, n)`` of any shape, as a flat int64 array plus the original shape."""
    if not isinstance(ids, np.ndarray):
        try:
            ids = np.asarray(ids)
        except (ValueError, TypeError) as e:
            raise TypeError(f"input: expected an integer array of ids, got {type(ids).__name__} ({e})") from None
    shape = ids.shape
    return _v.labels(ids.reshape(-1), "input", n), shape


def embedding(input, weight, padding_idx=None):
    """Look up rows of ``weight``: ``out[..., :] = weight[input[...]]``, like ``torch.nn.functional.embedding``.

    Parameters
    ----------
    input : int array of any shape (...), values in ``[0, num_embeddings)``
    weight : array of shape (num_embeddings, embedding_dim), float32 or float64
    padding_idx : int, optional
        Only affects the backward pass (that row gets no gradient); accepted here for torch's
        signature.

    Returns
    -------
    array of shape (..., embedding_dim), dtype of ``weight``

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> F.embedding(np.array([[0, 2]]), np.eye(3)).shape
    (1, 2, 3)
    """
    weight = _v.float_array(weight, "weight")
    _v.ndim(weight, "weight", 2, " (num_embeddings, embedding_dim)")
    _padding_idx(padding_idx, weight.shape[0])
    ids, shape = _ids(input, weight.shape[0])
    out = np.empty((ids.size, weight.shape[1]), dtype=weight.dtype)
    if out.size:
        _d.kernel("embedding", "embedding_forward", out.size)(_v.contiguous(weight), ids, out)
    return out.reshape(shape + (weight.shape[1],))


def embedding_backward(grad_out, input, num_embeddings, padding_idx=None):
    """Gradient of :func:`embedding` with respect to ``weight``: a scatter-add of ``grad_out``
    rows into the rows named by ``input`` (repeated ids accumulate; the ``padding_idx`` row
    stays 0, as in torch).

    Parameters
    ----------
    grad_out : array of shape (..., embedding_dim)
    input : int array of shape (...), the ids of the forward call
    num_embeddings : int

    Returns
    -------
    array of shape (num_embeddings, embedding_dim), dtype of ``grad_out``
    """
    n = _v.positive_int(num_embeddings, "num_embeddings", 1)
    pad = _padding_idx(padding_idx, n)
    grad_out = _v.float_array(grad_out, "grad_out")
    ids, shape = _ids(input, n)
    if grad_out.ndim != len(shape) + 1 or grad_out.shape[:-1] != shape:
        raise ValueError(f"grad_out: expected shape {shape} + (embedding_dim,), got {grad_out.shape}")
    d = grad_out.shape[-1]
    g2 = _v.contiguous(grad_out).reshape(ids.size, d)
    grad_weight = np.zeros((n, d), dtype=grad_out.dtype)
    if g2.size:
        _d.kernel("embedding", "embedding_backward", g2.size)(g2, ids, grad_weight)
    if pad is not None:
        grad_weight[pad] = 0
    return grad_weight


# -- LSTM -------------------------------------------------------------------------------------

#: What :func:`lstm` keeps for :func:`lstm_backward`: per layer ``(x, hs, cs, acts, mask)``
#: (``mask``: the dropout mask applied to this layer's output, or None), the initial states
#: and the weights.
LSTMCache = namedtuple("LSTMCache", "layers h0 c0 weights")


def _rnn_weights(weights, input_size, dtype, gates):
    """Validate per-layer ``(w_ih, w_hh, b_ih, b_hh)`` of a recurrent net with ``gates`` gate
    blocks (4: LSTM, 3: GRU). Returns ``[(w_ih, w_hh, b_ih, b_hh)]`` (C-contiguous; biases
    None for a layer without) and the hidden size."""
    if not isinstance(weights, (list, tuple)) or not weights:
        raise TypeError("weights: expected a non-empty list of (w_ih, w_hh, b_ih, b_hh) tuples, one per layer")
    out = []
    hidden = None
    for k, wl in enumerate(weights):
        if not isinstance(wl, (list, tuple)) or len(wl) != 4:
            raise TypeError(f"weights[{k}]: expected a tuple (w_ih, w_hh, b_ih, b_hh) (biases may be None)")
        w_ih = _v.float_array(wl[0], f"weights[{k}][0] (w_ih)")
        w_hh = _v.float_array(wl[1], f"weights[{k}][1] (w_hh)")
        _v.ndim(w_hh, f"weights[{k}][1] (w_hh)", 2, f" ({gates}*hidden_size, hidden_size)")
        if hidden is None:
            hidden = w_hh.shape[1]
        _v.shape(w_hh, f"weights[{k}][1] (w_hh)", (gates * hidden, hidden))
        in_k = input_size if k == 0 else hidden
        _v.shape(w_ih, f"weights[{k}][0] (w_ih)", (gates * hidden, in_k))
        if (wl[2] is None) != (wl[3] is None):
            raise ValueError(f"weights[{k}]: expected both biases or neither, got one None")
        b_ih = b_hh = None
        if wl[2] is not None:
            b_ih = _v.float_array(wl[2], f"weights[{k}][2] (b_ih)")
            b_hh = _v.float_array(wl[3], f"weights[{k}][3] (b_hh)")
            _v.shape(b_ih, f"weights[{k}][2] (b_ih)", (gates * hidden,))
            _v.shape(b_hh, f"weights[{k}][3] (b_hh)", (gates * hidden,))
            _v.same_dtype("x", np.empty(0, dtype), b_ih=b_ih, b_hh=b_hh)
            b_ih, b_hh = _v.contiguous(b_ih), _v.contiguous(b_hh)
        _v.same_dtype("x", np.empty(0, dtype), w_ih=w_ih, w_hh=w_hh)
        out.append((_v.contiguous(w_ih), _v.contiguous(w_hh), b_ih, b_hh))
    return out, hidden


def _lstm_weights(weights, input_size, dtype):
    wl, hidden = _rnn_weights(weights, input_size, dtype, 4)
    return [(w_ih, w_hh, None if b_ih is None else b_ih + b_hh) for w_ih, w_hh, b_ih, b_hh in wl], hidden


def _dropout_p(dropout_p):
    p = float(dropout_p)
    if not 0 <= p <= 1:
        raise ValueError(f"dropout_p: expected a probability in [0, 1], got {dropout_p!r}")
    return p


def _sequence(x):
    x = _v.float_array(x, "x")
    _v.ndim(x, "x", 3, " (seq_len, batch, input_size)")
    if x.shape[0] < 1:
        raise ValueError(f"x: expected at least one time step, got shape {x.shape}")
    return x


def _state(s, name, shape, dtype):
    s = _v.float_array(s, name)
    _v.same_dtype("x", np.empty(0, dtype), **{name: s})
    _v.shape(s, name, shape)
    return _v.contiguous(s)


def lstm(x, hx, weights, dropout_p=0.0, training=False, rng=None, return_cache=False):
    """Multi-layer LSTM over a whole sequence, like ``torch.nn.LSTM`` (time-major).

    Per layer and step, with torch's gate order (i, f, g, o)::

        i, f, g, o = split(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
        h_t = sigmoid(o) * tanh(c_t)

    Parameters
    ----------
    x : array of shape (T, B, input_size), float32 or float64, T >= 1
    hx : tuple (h0, c0) of arrays of shape (num_layers, B, hidden_size), or None (zeros)
    weights : list of ``(w_ih, w_hh, b_ih, b_hh)``, one per layer: w_ih (4H, in_k) with
        in_0 = input_size and in_k = H above, w_hh (4H, H), biases (4H,) or both None
    dropout_p : float
        Dropout on the output of every layer but the last, when ``training`` (as torch).
    training : bool
    rng : numpy.random.Generator, optional (for the dropout masks)
    return_cache : bool
        Also return the :data:`LSTMCache` that :func:`lstm_backward` takes.

    Returns
    -------
    output : array of shape (T, B, H), the top layer's h_t for every t
    (h_n, c_n) : arrays of shape (num_layers, B, H), the final states of every layer
    cache : LSTMCache, only with ``return_cache``
    """
    x = _sequence(x)
    T, B, I = x.shape
    wl, H = _lstm_weights(weights, I, x.dtype)
    L = len(wl)
    if hx is None:
        h0 = np.zeros((L, B, H), dtype=x.dtype)
        c0 = np.zeros((L, B, H), dtype=x.dtype)
    else:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"hx: expected a tuple (h0, c0) or None, got {type(hx).__name__}")
        h0 = _state(hx[0], "h0", (L, B, H), x.dtype)
        c0 = _state(hx[1], "c0", (L, B, H), x.dtype)
    p = _dropout_p(dropout_p)
    fwd = _d.kernel("lstm", "lstm_layer_forward", B * H)
    inp = _v.contiguous(x)
    layers = []
    h_n = np.empty((L, B, H), dtype=x.dtype)
    c_n = np.empty((L, B, H), dtype=x.dtype)
    for k, (w_ih, w_hh, bias) in enumerate(wl):
        hs = np.empty((T, B, H), dtype=x.dtype)
        cs = np.empty((T, B, H), dtype=x.dtype)
        acts = np.empty((T, B, 4 * H), dtype=x.dtype)
        fwd(inp, w_ih, w_hh, bias, h0[k], c0[k], hs, cs, acts)
        h_n[k], c_n[k] = hs[-1], cs[-1]
        mask = None
        nxt = hs
        if k < L - 1 and training and p > 0:
            nxt, mask = dropout(hs, p, True, rng, return_mask=True)
        layers.append((inp, hs, cs, acts, mask))
        inp = nxt
    out = (layers[-1][1], (h_n, c_n))
    return out + (LSTMCache(layers, h0, c0, wl),) if return_cache else out


def lstm_backward(grad_output, grad_hx, cache, need_input_grad=True):
    """Backpropagation through time for :func:`lstm` (all layers, all steps).

    Parameters
    ----------
    grad_output : array of shape (T, B, H) or None (zeros)
        Gradient with respect to ``output``.
    grad_hx : tuple (grad_h_n, grad_c_n) of arrays (num_layers, B, H), or None (zeros)
    cache : LSTMCache from ``lstm(..., return_cache=True)``
    need_input_grad : bool
        False skips ``grad_x`` (returned as None).

    Returns
    -------
    grad_x : array of shape (T, B, input_size) or None
    (grad_h0, grad_c0) : arrays of shape (num_layers, B, H)
    grad_weights : list of ``(grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)`` per layer (the two
        bias gradients are the same array values; None where the layer has no bias)
    """
    if not isinstance(cache, LSTMCache):
        raise TypeError(f"cache: expected the LSTMCache returned by lstm(return_cache=True), got {type(cache).__name__}")
    x0, hs_top = cache.layers[0][0], cache.layers[-1][1]
    T, B, H = hs_top.shape
    L = len(cache.layers)
    dt = x0.dtype
    if grad_output is None:
        g = np.zeros((T, B, H), dtype=dt)
    else:
        g = _state(grad_output, "grad_output", (T, B, H), dt)
    if grad_hx is None:
        ghn = np.zeros((L, B, H), dtype=dt)
        gcn = ghn
    else:
        if not isinstance(grad_hx, (tuple, list)) or len(grad_hx) != 2:
            raise TypeError(f"grad_hx: expected a tuple (grad_h_n, grad_c_n) or None, got {type(grad_hx).__name__}")
        ghn = np.zeros((L, B, H), dtype=dt) if grad_hx[0] is None else _state(grad_hx[0], "grad_h_n", (L, B, H), dt)
        gcn = np.zeros((L, B, H), dtype=dt) if grad_hx[1] is None else _state(grad_hx[1], "grad_c_n", (L, B, H), dt)
    bwd = _d.kernel("lstm", "lstm_layer_backward", B * H)
    grad_h0 = np.empty((L, B, H), dtype=dt)
    grad_c0 = np.empty((L, B, H), dtype=dt)
    grads = [None] * L
    for k in range(L - 1, -1, -1):
        inp, hs, cs, acts, mask = cache.layers[k]
        w_ih, w_hh, bias = cache.weights[k]
        if mask is not None:
            g = dropout_backward(g, mask)
        want_x = k > 0 or need_input_grad
        gx = np.empty_like(inp) if want_x else None
        gw_ih = np.empty_like(w_ih)
        gw_hh = np.empty_like(w_hh)
        gb = np.empty(w_hh.shape[0], dtype=dt)
        bwd(g, ghn[k], gcn[k], inp, w_ih, w_hh, cache.h0[k], cache.c0[k], hs, cs, acts,
            gx, gw_ih, gw_hh, gb, grad_h0[k], grad_c0[k])
        grads[k] = (gw_ih, gw_hh, gb if bias is not None else None, gb if bias is not None else None)
        g = gx
    return g, (grad_h0, grad_c0), grads


# -- GRU --------------------------------------------------------------------------------------

#: What :func:`gru` keeps for :func:`gru_backward`: per layer ``(x, hs, acts, mask)`` (``mask``:
#: the dropout mask applied to this layer's output, or None), the initial state and the weights.
GRUCache = namedtuple("GRUCache", "layers h0 weights")


def gru(x, hx, weights, dropout_p=0.0, training=False, rng=None, return_cache=False):
    """Multi-layer GRU over a whole sequence, like ``torch.nn.GRU`` (time-major).

    Per layer and step, with torch's gate order (r, z, n) and ``b_hn`` inside the reset
    product::

        r = sigmoid(x_t W_ir^T + b_ir + h_{t-1} W_hr^T + b_hr)
        z = sigmoid(x_t W_iz^T + b_iz + h_{t-1} W_hz^T + b_hz)
        n = tanh(x_t W_in^T + b_in + r * (h_{t-1} W_hn^T + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    Parameters
    ----------
    x : array of shape (T, B, input_size), float32 or float64, T >= 1
    hx : array h0 of shape (num_layers, B, hidden_size), or None (zeros)
    weights : list of ``(w_ih, w_hh, b_ih, b_hh)``, one per layer: w_ih (3H, in_k) with
        in_0 = input_size and in_k = H above, w_hh (3H, H), biases (3H,) or both None
    dropout_p : float
        Dropout on the output of every layer but the last, when ``training`` (as torch).
    training : bool
    rng : numpy.random.Generator, optional (for the dropout masks)
    return_cache : bool
        Also return the :data:`GRUCache` that :func:`gru_backward` takes.

    Returns
    -------
    output : array of shape (T, B, H), the top layer's h_t for every t
    h_n : array of shape (num_layers, B, H), the final state of every layer
    cache : GRUCache, only with ``return_cache``

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import functional as F
    >>> H = 4
    >>> w = (np.zeros((3 * H, 2)), np.zeros((3 * H, H)), None, None)
    >>> out, h_n = F.gru(np.ones((5, 1, 2)), None, [w])
    >>> out.shape, h_n.shape
    ((5, 1, 4), (1, 1, 4))
    """
    x = _sequence(x)
    T, B, I = x.shape
    wl, H = _rnn_weights(weights, I, x.dtype, 3)
    L = len(wl)
    if hx is None:
        h0 = np.zeros((L, B, H), dtype=x.dtype)
    else:
        if isinstance(hx, (tuple, list)):
            raise TypeError("hx: expected the array h0 (num_layers, batch, hidden_size) or None, got a "
                            f"{type(hx).__name__} (a GRU has no cell state)")
        h0 = _state(hx, "h0", (L, B, H), x.dtype)
    p = _dropout_p(dropout_p)
    fwd = _d.kernel("gru", "gru_layer_forward", B * H)
    zeros = np.zeros(3 * H, dtype=x.dtype)
    inp = _v.contiguous(x)
    layers = []
    h_n = np.empty((L, B, H), dtype=x.dtype)
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(wl):
        hs = np.empty((T, B, H), dtype=x.dtype)
        acts = np.empty((T, B, 4 * H), dtype=x.dtype)
        fwd(inp, w_ih, w_hh, zeros if b_ih is None else b_ih, zeros if b_hh is None else b_hh, h0[k], hs, acts)
        h_n[k] = hs[-1]
        mask = None
        nxt = hs
        if k < L - 1 and training and p > 0:
            nxt, mask = dropout(hs, p, True, rng, return_mask=True)
        layers.append((inp, hs, acts, mask))
        inp = nxt
    out = (layers[-1][1], h_n)
    return out + (GRUCache(layers, h0, wl),) if return_cache else out


def gru_backward(grad_output, grad_hn, cache, need_input_grad=True):
    """Backpropagation through time for :func:`gru` (all layers, all steps).

    Parameters
    ----------
    grad_output : array of shape (T, B, H) or None (zeros)
        Gradient with respect to ``output``.
    grad_hn : array of shape (num_layers, B, H) or None (zeros)
        Gradient with respect to ``h_n``.
    cache : GRUCache from ``gru(..., return_cache=True)``
    need_input_grad : bool
        False skips ``grad_x`` (returned as None).

    Returns
    -------
    grad_x : array of shape (T, B, input_size) or None
    grad_h0 : array of shape (num_layers, B, H)
    grad_weights : list of ``(grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)`` per layer (biases'
        None where the layer has none)
    """
    if not isinstance(cache, GRUCache):
        raise TypeError(f"cache: expected the GRUCache returned by gru(return_cache=True), got {type(cache).__name__}")
    x0, hs_top = cache.layers[0][0], cache.layers[-1][1]
    T, B, H = hs_top.shape
    L = len(cache.layers)
    dt = x0.dtype
    g = np.zeros((T, B, H), dtype=dt) if grad_output is None else _state(grad_output, "grad_output", (T, B, H), dt)
    ghn = np.zeros((L, B, H), dtype=dt) if grad_hn is None else _state(grad_hn, "grad_h_n", (L, B, H), dt)
    bwd = _d.kernel("gru", "gru_layer_backward", B * H)
    grad_h0 = np.empty((L, B, H), dtype=dt)
    grads = [None] * L
    for k in range(L - 1, -1, -1):
        inp, hs, acts, mask = cache.layers[k]
        w_ih, w_hh, b_ih, _ = cache.weights[k]
        if mask is not None:
            g = dropout_backward(g, mask)
        gx = np.empty_like(inp) if (k > 0 or need_input_grad) else None
        gw_ih, gw_hh = np.empty_like(w_ih), np.empty_like(w_hh)
        gb_ih, gb_hh = np.empty(w_hh.shape[0], dtype=dt), np.empty(w_hh.shape[0], dtype=dt)
        bwd(g, ghn[k], inp, w_ih, w_hh, cache.h0[k], hs, acts, gx, gw_ih, gw_hh, gb_ih, gb_hh, grad_h0[k])
        has_b = b_ih is not None
        grads[k] = (gw_ih, gw_hh, gb_ih if has_b else None, gb_hh if has_b else None)
        g = gx
    return g, grad_h0, grads
