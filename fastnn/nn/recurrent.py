"""Recurrent layers: :class:`Embedding`, :class:`LSTM`, :class:`GRU`, :class:`LSTMCell`,
:class:`GRUCell` and the seed's :class:`AdditiveAttention`.

All modules take ``dtype=np.float32`` (default, like torch) or ``np.float64``; a float input
of the other dtype is cast to the module's dtype. Like every module they keep a stack of
caches: called T times before their backwards, they take T backward calls in reverse order.
"""
import math

import numpy as np

from .. import _random
from .. import functional as F
from .._validate import float_array, positive_int
from .layers import Linear
from .module import Module, Parameter


class Embedding(Module):
    """A lookup table ``weight[ids]``, like ``torch.nn.Embedding``.

    Parameters
    ----------
    num_embeddings, embedding_dim : int
    padding_idx : int, optional
        That row starts at zero and never receives a gradient (as torch).
    dtype : np.float32 (default) or np.float64
    rng : numpy.random.Generator, optional (default: fastnn's global generator)

    ``weight`` (num_embeddings, embedding_dim) is initialised N(0, 1) like torch. Input: int
    array of any shape (...); output (..., embedding_dim). ``backward(grad_output)`` adds the
    scatter-add of ``grad_output`` into ``weight.grad`` (repeated ids accumulate) and returns
    None (ids have no gradient).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> nn.Embedding(10, 4)(np.array([[1, 2, 1]])).shape
    (1, 3, 4)
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.num_embeddings = positive_int(num_embeddings, "num_embeddings", 1)
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim", 0)
        self.padding_idx = F.recurrent._padding_idx(padding_idx, self.num_embeddings)
        w = _random.get_rng(rng).standard_normal((self.num_embeddings, self.embedding_dim)).astype(self.dtype)
        if self.padding_idx is not None:
            w[self.padding_idx] = 0
        self.weight = Parameter(w)

    def forward(self, input):
        out = F.embedding(input, self.weight.data, self.padding_idx)
        self._save(np.array(input, copy=True))
        return out

    def backward(self, grad_output, need_input_grad=True):
        (ids,) = self._pop()
        self.weight.accumulate(F.embedding_backward(grad_output, ids, self.num_embeddings, self.padding_idx))
        return None

    def extra_repr(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class _RNNBase(Module):
    """Parameters, init and input handling shared by :class:`LSTM` and :class:`GRU`."""

    _gates = 4

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.input_size = positive_int(input_size, "input_size", 1)
        self.hidden_size = positive_int(hidden_size, "hidden_size", 1)
        self.num_layers = positive_int(num_layers, "num_layers", 1)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
        self.dropout = float(dropout)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.rng = rng
        gen = _random.get_rng(rng)
        H, G, bound = self.hidden_size, self._gates, 1 / math.sqrt(self.hidden_size)
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else H
            setattr(self, f"weight_ih_l{k}", Parameter(gen.uniform(-bound, bound, (G * H, in_k)).astype(self.dtype)))
            setattr(self, f"weight_hh_l{k}", Parameter(gen.uniform(-bound, bound, (G * H, H)).astype(self.dtype)))
            if self.bias:
                setattr(self, f"bias_ih_l{k}", Parameter(gen.uniform(-bound, bound, G * H).astype(self.dtype)))
                setattr(self, f"bias_hh_l{k}", Parameter(gen.uniform(-bound, bound, G * H).astype(self.dtype)))

    def _layer_params(self, k):
        names = [f"weight_ih_l{k}", f"weight_hh_l{k}"] + ([f"bias_ih_l{k}", f"bias_hh_l{k}"] if self.bias else [])
        ps = [getattr(self, n) for n in names]
        return ps + [None] * (4 - len(ps))

    def _weights(self):
        return [tuple(None if p is None else p.data for p in self._layer_params(k)) for k in range(self.num_layers)]

    def _sequence(self, input):
        """The input as time-major (T, B, input_size), and whether it was unbatched."""
        x = self._input(input)
        if x.ndim not in (2, 3):
            raise ValueError(f"input: expected a 3-D array (seq_len, batch, {self.input_size}) "
                             f"or 2-D (seq_len, {self.input_size}), got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input: expected last dimension {self.input_size} (input_size), got shape {x.shape}")
        if x.ndim == 2:
            return x[:, None, :], True
        return (x.transpose(1, 0, 2) if self.batch_first else x), False

    def _state_in(self, s, name, unbatched):
        s = self._input(s, name)
        if unbatched:
            want = (self.num_layers, self.hidden_size)
            if s.shape != want:
                raise ValueError(f"{name}: expected shape {want} for an unbatched input, got {s.shape}")
            return s[:, None, :]
        return s

    def _grad_output_in(self, grad_output, unbatched):
        if grad_output is None:
            return None
        g = float_array(grad_output, "grad_output")
        if unbatched and g.ndim == 2:
            return g[:, None, :]
        if self.batch_first and g.ndim == 3 and not unbatched:
            return g.transpose(1, 0, 2)
        return g

    def _accumulate(self, grads):
        for k, gl in enumerate(grads):
            for p, g in zip(self._layer_params(k), gl):
                if p is not None:
                    p.accumulate(g)

    def _grad_input_out(self, gx, unbatched):
        if gx is None:
            return None
        if unbatched:
            return gx[:, 0]
        return np.ascontiguousarray(gx.transpose(1, 0, 2)) if self.batch_first else gx

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s


class LSTM(_RNNBase):
    """Multi-layer long short-term memory network, like ``torch.nn.LSTM`` (unidirectional).

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int, default 1
    bias : bool, default True
    batch_first : bool, default False
        Input and output are (B, T, features) instead of (T, B, features); the states stay
        (num_layers, B, hidden_size), as in torch.
    dropout : float, default 0
        Dropout on the outputs of every layer but the last, in training mode only.
    dtype : np.float32 (default) or np.float64
    rng : numpy.random.Generator, optional (init and dropout; default fastnn's global one)

    Parameters per layer ``k`` (torch's names, shapes, gate order (i, f, g, o) and init
    U(-1/sqrt(H), 1/sqrt(H))): ``weight_ih_l{k}`` (4H, in_k), ``weight_hh_l{k}`` (4H, H),
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` (4H,), with in_0 = input_size and in_k = H above.

    ``forward(input, hx=None) -> (output, (h_n, c_n))``: input (T, B, input_size) (or batch
    first; or unbatched (T, input_size) with states (num_layers, H)); ``hx = (h0, c0)``, each
    (num_layers, B, H), zeros when None. output (T, B, H) holds the top layer's h_t.

    ``backward(grad_output, grad_hx=None) -> (grad_input, (grad_h0, grad_c0))``: full
    backpropagation through time through all layers; ``grad_output`` may be None (only the
    final states are used downstream) and so may ``grad_hx`` or either of its items.
    Parameter gradients accumulate into ``.grad``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> out, (h, c) = nn.LSTM(3, 5, num_layers=2)(np.zeros((7, 2, 3), np.float32))
    >>> out.shape, h.shape
    ((7, 2, 5), (2, 2, 5))
    """

    _gates = 4

    def forward(self, input, hx=None):
        x, unbatched = self._sequence(input)
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx: expected a tuple (h0, c0) or None, got {type(hx).__name__}")
            hx = tuple(self._state_in(s, n, unbatched) for s, n in zip(hx, ("h0", "c0")))
        out, (h, c), cache = F.lstm(x, hx, self._weights(), self.dropout, self.training, _random.get_rng(self.rng),
                                    return_cache=True)
        self._save(cache, unbatched)
        if unbatched:
            return out[:, 0], (h[:, 0], c[:, 0])
        return (out.transpose(1, 0, 2) if self.batch_first else out), (h, c)

    def backward(self, grad_output, grad_hx=None, need_input_grad=True):
        cache, unbatched = self._pop()
        grad_output = self._grad_output_in(grad_output, unbatched)
        if grad_hx is not None and unbatched:
            grad_hx = tuple(None if g is None else float_array(g, n)[:, None, :]
                            for g, n in zip(grad_hx, ("grad_h_n", "grad_c_n")))
        gx, (gh0, gc0), grads = F.lstm_backward(grad_output, grad_hx, cache, need_input_grad)
        self._accumulate(grads)
        if unbatched:
            return self._grad_input_out(gx, True), (gh0[:, 0], gc0[:, 0])
        return self._grad_input_out(gx, False), (gh0, gc0)


class GRU(_RNNBase):
    """Multi-layer gated recurrent unit network, like ``torch.nn.GRU`` (unidirectional).

    Per layer and step, with torch's gate order (r, z, n) and ``b_hn`` inside the reset
    product (see :func:`fastnn.functional.gru`)::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr);  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h' = (1 - z) * n + z * h

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int, default 1
    bias : bool, default True
    batch_first : bool, default False
        Input and output are (B, T, features); the state stays (num_layers, B, hidden_size).
    dropout : float, default 0
        Dropout on the outputs of every layer but the last, in training mode only.
    dtype : np.float32 (default) or np.float64 (a float input of the other dtype is cast)
    rng : numpy.random.Generator, optional (init and dropout; default fastnn's global one)

    Parameters per layer ``k`` (torch's names, shapes and init U(-1/sqrt(H), 1/sqrt(H))):
    ``weight_ih_l{k}`` (3H, in_k), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (3H,), with in_0 = input_size and in_k = H above.

    ``forward(input, hx=None) -> (output, h_n)``: input (T, B, input_size) (or batch first; or
    unbatched (T, input_size) with h (num_layers, H)); ``hx`` = h0 (num_layers, B, H), zeros
    when None; output (T, B, H) holds the top layer's h_t.

    ``backward(grad_output, grad_hn=None) -> (grad_input, grad_h0)``: full backpropagation
    through time through all layers (either gradient may be None); parameter gradients
    accumulate into ``.grad``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> m = nn.GRU(3, 5, num_layers=2, batch_first=True)
    >>> out, h = m(np.zeros((2, 7, 3), np.float32))
    >>> out.shape, h.shape
    ((2, 7, 5), (2, 2, 5))
    >>> gx, gh0 = m.backward(np.ones_like(out))
    >>> gx.shape, m.weight_hh_l1.grad.shape
    ((2, 7, 3), (15, 5))
    """

    _gates = 3

    def forward(self, input, hx=None):
        x, unbatched = self._sequence(input)
        if hx is not None:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"hx: expected the array h0 or None, got a {type(hx).__name__} (a GRU has no cell state)")
            hx = self._state_in(hx, "h0", unbatched)
        out, h, cache = F.gru(x, hx, self._weights(), self.dropout, self.training, _random.get_rng(self.rng),
                              return_cache=True)
        self._save(cache, unbatched)
        if unbatched:
            return out[:, 0], h[:, 0]
        return (out.transpose(1, 0, 2) if self.batch_first else out), h

    def backward(self, grad_output, grad_hn=None, need_input_grad=True):
        cache, unbatched = self._pop()
        grad_output = self._grad_output_in(grad_output, unbatched)
        if grad_hn is not None and unbatched:
            grad_hn = float_array(grad_hn, "grad_h_n")[:, None, :]
        gx, gh0, grads = F.gru_backward(grad_output, grad_hn, cache, need_input_grad)
        self._accumulate(grads)
        return self._grad_input_out(gx, unbatched), (gh0[:, 0] if unbatched else gh0)


class _CellBase(Module):
    """One step of a recurrent layer: parameters ``weight_ih``, ``weight_hh``, ``bias_ih``,
    ``bias_hh`` (torch's keys and init); runs the layer kernels with T = 1."""

    _gates = 4

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.input_size = positive_int(input_size, "input_size", 1)
        self.hidden_size = positive_int(hidden_size, "hidden_size", 1)
        self.bias = bool(bias)
        gen = _random.get_rng(rng)
        GH, bound = self._gates * self.hidden_size, 1 / math.sqrt(self.hidden_size)
        self.weight_ih = Parameter(gen.uniform(-bound, bound, (GH, self.input_size)).astype(self.dtype))
        self.weight_hh = Parameter(gen.uniform(-bound, bound, (GH, self.hidden_size)).astype(self.dtype))
        self.register_parameter("bias_ih", Parameter(gen.uniform(-bound, bound, GH).astype(self.dtype)) if bias else None)
        self.register_parameter("bias_hh", Parameter(gen.uniform(-bound, bound, GH).astype(self.dtype)) if bias else None)

    def _params(self):
        return (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def _weights(self):
        return [tuple(None if p is None else p.data for p in self._params())]

    def _step_input(self, input):
        """The input as (1, B, input_size), and whether it was unbatched (input_size,)."""
        x = self._input(input)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"input: expected shape (batch, {self.input_size}) or ({self.input_size},), got {x.shape}")
        return (x[None, None, :], True) if x.ndim == 1 else (x[None], False)

    def _state_in(self, s, name, B, unbatched):
        s = self._input(s, name)
        want = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        if s.shape != want:
            raise ValueError(f"{name}: expected shape {want}, got {s.shape}")
        return s.reshape(1, B, self.hidden_size)

    def _grad_in(self, g, name, like, unbatched):
        """A gradient of a state, (B, H) or (H,) unbatched, as (1, B, H) of ``like``'s dtype."""
        if g is None:
            return None
        g = self._input(g, name, like=like)
        B = like.shape[1]
        want = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        if g.shape != want:
            raise ValueError(f"{name}: expected shape {want} (the state's), got {g.shape}")
        return g.reshape(1, B, self.hidden_size)

    def _accumulate(self, grads):
        for p, g in zip(self._params(), grads[0]):
            if p is not None:
                p.accumulate(g)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class LSTMCell(_CellBase):
    """One LSTM step, like ``torch.nn.LSTMCell``: ``(h_1, c_1) = cell(input, (h_0, c_0))``.

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool, default True
    dtype : np.float32 (default) or np.float64 (a float input of the other dtype is cast)
    rng : numpy.random.Generator, optional

    Parameters (torch's keys, gate order (i, f, g, o), init U(-1/sqrt(H), 1/sqrt(H))):
    ``weight_ih`` (4H, input_size), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H,).

    ``forward(input, hx=None) -> (h_1, c_1)``: input (B, input_size) or unbatched
    (input_size,); hx = (h_0, c_0), each (B, H) (or (H,)), zeros when None.
    ``backward(grad_h, grad_c=None) -> (grad_input, (grad_h0, grad_c0))``, either gradient
    may be None. A cell used T times per step (a decoder) keeps T caches; call backward T
    times in reverse order, passing each step's (grad_h0, grad_c0) on to the step before.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> cell = nn.LSTMCell(3, 4)
    >>> h, c = cell(np.zeros((2, 3), np.float32))
    >>> gx, (gh, gc) = cell.backward(np.ones_like(h))
    >>> gx.shape, gh.shape
    ((2, 3), (2, 4))
    """

    _gates = 4

    def forward(self, input, hx=None):
        x, unbatched = self._step_input(input)
        B = x.shape[1]
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx: expected a tuple (h_0, c_0) or None, got {type(hx).__name__}")
            hx = (self._state_in(hx[0], "h_0", B, unbatched), self._state_in(hx[1], "c_0", B, unbatched))
        _, (h, c), cache = F.lstm(x, hx, self._weights(), return_cache=True)
        self._save(cache, unbatched)
        shape = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        return h.reshape(shape), c.reshape(shape)

    def backward(self, grad_h, grad_c=None, need_input_grad=True):
        cache, unbatched = self._pop()
        like = cache.h0
        gx, (gh0, gc0), grads = F.lstm_backward(
            None, (self._grad_in(grad_h, "grad_h", like, unbatched), self._grad_in(grad_c, "grad_c", like, unbatched)),
            cache, need_input_grad)
        self._accumulate(grads)
        shape = (self.hidden_size,) if unbatched else gh0.shape[1:]
        gx = None if gx is None else gx.reshape((self.input_size,) if unbatched else gx.shape[1:])
        return gx, (gh0.reshape(shape), gc0.reshape(shape))


class GRUCell(_CellBase):
    """One GRU step, like ``torch.nn.GRUCell``: ``h_1 = cell(input, h_0)`` (gate order (r, z, n),
    ``b_hn`` inside the reset product).

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool, default True
    dtype : np.float32 (default) or np.float64 (a float input of the other dtype is cast)
    rng : numpy.random.Generator, optional

    Parameters (torch's keys and init): ``weight_ih`` (3H, input_size), ``weight_hh`` (3H, H),
    ``bias_ih``, ``bias_hh`` (3H,).

    ``forward(input, hx=None) -> h_1``: input (B, input_size) or (input_size,); hx (B, H) or
    (H,), zeros when None. ``backward(grad_h) -> (grad_input, grad_h0)``; used T times, call
    backward T times in reverse order.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> cell = nn.GRUCell(3, 4)
    >>> h = cell(np.zeros(3, np.float32))
    >>> gx, gh = cell.backward(np.ones(4, np.float32))
    >>> gx.shape, gh.shape
    ((3,), (4,))
    """

    _gates = 3

    def forward(self, input, hx=None):
        x, unbatched = self._step_input(input)
        B = x.shape[1]
        h0 = None if hx is None else self._state_in(hx, "h_0", B, unbatched)
        _, h, cache = F.gru(x, h0, self._weights(), return_cache=True)
        self._save(cache, unbatched)
        return h.reshape((self.hidden_size,) if unbatched else (B, self.hidden_size))

    def backward(self, grad_h, need_input_grad=True):
        cache, unbatched = self._pop()
        gx, gh0, grads = F.gru_backward(None, self._grad_in(grad_h, "grad_h", cache.h0, unbatched), cache,
                                         need_input_grad)
        self._accumulate(grads)
        if unbatched:
            return (None if gx is None else gx.reshape(self.input_size)), gh0.reshape(self.hidden_size)
        return (None if gx is None else gx[0]), gh0[0]


def _accumulate_cols(p, cols, g):
    """Add ``g`` into the columns ``cols`` of ``p.grad`` (allocating zeros on first use)."""
    if p.grad is None:
        p.grad = np.zeros_like(p.data)
    p.grad[:, cols] += g


class AdditiveAttention(Module):
    """Additive (Bahdanau) attention weights, the seed's ``Attention`` class::

        energy = tanh(attn([hidden repeated over S; encoder_outputs]))     (B, S, dec)
        weights = softmax(v(energy).squeeze(2), over S)                     (B, S)

    Parameters
    ----------
    enc_hid_dim, dec_hid_dim : int
    dtype, rng : as for :class:`~fastnn.nn.Linear`

    Submodules ``attn = Linear(enc_hid_dim + dec_hid_dim, dec_hid_dim)`` (its weight's first
    ``dec_hid_dim`` columns act on the hidden state, the rest on the encoder outputs, the
    seed's concatenation order) and ``v = Linear(dec_hid_dim, 1, bias=False)``: the same
    state_dict keys as the seed.

    ``forward(hidden, encoder_outputs, mask=None) -> weights``: hidden (B, dec_hid_dim),
    encoder_outputs (B, S, enc_hid_dim) (batch first, as the seed's attention indexes them),
    mask (B, S) bool, True where a source position may be attended (padding is False); a row
    with no True gets all-zero weights (never NaN). ``backward(grad_weights) ->
    (grad_hidden, grad_encoder_outputs)``.

    The split API serves a decoder that attends to the same encoder outputs at every step:
    the encoder part of ``attn`` does not depend on the step, so ``keys =
    project(encoder_outputs)`` computes it once, ``attend(hidden, keys, mask)`` each step,
    and backward goes ``attend_backward(g) -> (grad_hidden, grad_keys)`` per step, then
    ``project_backward(sum of grad_keys) -> grad_encoder_outputs`` once. ``forward`` is
    ``attend(hidden, project(encoder_outputs), mask)``; the maths is the seed's.
    """

    def __init__(self, enc_hid_dim, dec_hid_dim, dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.enc_hid_dim = positive_int(enc_hid_dim, "enc_hid_dim", 1)
        self.dec_hid_dim = positive_int(dec_hid_dim, "dec_hid_dim", 1)
        rng = _random.get_rng(rng)
        self.attn = Linear(self.enc_hid_dim + self.dec_hid_dim, self.dec_hid_dim, dtype=dtype, rng=rng)
        self.v = Linear(self.dec_hid_dim, 1, bias=False, dtype=dtype, rng=rng)

    # -- encoder side: once per source sequence ---------------------------------------------
    def project(self, encoder_outputs):
        """``encoder_outputs @ W_enc^T + b``: the step-independent part of ``attn``, (B, S, dec_hid_dim)."""
        e = self._input(encoder_outputs, "encoder_outputs")
        if e.ndim != 3 or e.shape[2] != self.enc_hid_dim:
            raise ValueError(f"encoder_outputs: expected shape (batch, src_len, {self.enc_hid_dim}), got {e.shape}")
        if e.shape[1] < 1:
            raise ValueError(f"encoder_outputs: expected src_len >= 1, got shape {e.shape}")
        d = self.dec_hid_dim
        self._save("project", e)
        return F.linear(e, self.attn.weight.data[:, d:], self.attn.bias.data)

    def project_backward(self, grad_keys):
        """Backward of :meth:`project`: accumulates ``attn`` gradients, returns grad_encoder_outputs."""
        kind, e = self._pop()
        if kind != "project":
            raise ValueError("AdditiveAttention.project_backward: the latest forward call was attend(), not project()")
        d = self.dec_hid_dim
        ge, gw, gb = F.linear_backward(grad_keys, e, self.attn.weight.data[:, d:])
        _accumulate_cols(self.attn.weight, slice(d, None), gw)
        self.attn.bias.accumulate(gb)
        return ge

    # -- decoder side: once per step -------------------------------------------------------
    def attend(self, hidden, keys, mask=None):
        """Attention weights (B, S) from the decoder state ``hidden`` (B, dec) and ``keys = project(...)``."""
        h = self._input(hidden, "hidden")
        k = self._input(keys, "keys")
        d = self.dec_hid_dim
        if k.ndim != 3 or k.shape[2] != d:
            raise ValueError(f"keys: expected shape (batch, src_len, {d}) from project(), got {k.shape}")
        B, S = k.shape[:2]
        if h.shape != (B, d):
            raise ValueError(f"hidden: expected shape ({B}, {d}) (batch, dec_hid_dim), got {h.shape}")
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_:
                raise TypeError(f"mask: expected a bool array (True = may attend), got dtype {mask.dtype}")
            if mask.shape != (B, S):
                raise ValueError(f"mask: expected shape ({B}, {S}) (batch, src_len), got {mask.shape}")
        q = F.linear(h, self.attn.weight.data[:, :d])                       # (B, dec)
        energy = k + q[:, None, :]                                           # (B, S, dec)
        # NumPy directly: its float32 tanh is SIMD and needs no thread team (the dense kernels'
        # tanh is scalar libm on an OpenMP team, 5-10x slower here on a busy 2-core machine)
        np.tanh(energy, out=energy)
        scores = F.linear(energy, self.v.weight.data)[..., 0]                # (B, S)
        empty = None
        if mask is not None:
            empty = ~mask.any(axis=1)
            scores = np.where(mask | empty[:, None], scores, -np.inf)
        a = F.softmax(scores, axis=1)
        if empty is not None and empty.any():
            a[empty] = 0  # nothing to attend: zero weights (and zero gradients), not NaN
        self._save("attend", h, energy, a)
        return a

    def attend_backward(self, grad_weights):
        """Backward of :meth:`attend`: accumulates ``attn``/``v`` gradients, returns (grad_hidden, grad_keys)."""
        kind, *cache = self._pop()
        if kind != "attend":
            raise ValueError("AdditiveAttention.attend_backward: the latest forward call was project(), not attend()")
        h, energy, a = cache
        d = self.dec_hid_dim
        g = float_array(grad_weights, "grad_weights")
        if g.shape != a.shape:
            raise ValueError(f"grad_weights: expected shape {a.shape}, got {g.shape}")
        g_scores = F.softmax_backward(g.astype(a.dtype, copy=False), a, axis=1)   # masked: a = 0 -> 0
        g_energy, gv, _ = F.linear_backward(g_scores[..., None], energy, self.v.weight.data)
        self.v.weight.accumulate(gv)
        grad_keys = 1 - energy * energy                                      # (B, S, dec), tanh'
        grad_keys *= g_energy
        gh, gw, _ = F.linear_backward(grad_keys.sum(axis=1), h, self.attn.weight.data[:, :d])
        _accumulate_cols(self.attn.weight, slice(0, d), gw)
        return gh, grad_keys

    def forward(self, hidden, encoder_outputs, mask=None):
        return self.attend(hidden, self.project(encoder_outputs), mask)

    def backward(self, grad_output, need_input_grad=True):
        gh, gk = self.attend_backward(grad_output)
        return gh, self.project_backward(gk)

    def extra_repr(self):
        return f"enc_hid_dim={self.enc_hid_dim}, dec_hid_dim={self.dec_hid_dim}"
