"""Models with explicit backward passes on NumPy arrays: the seed's seq2seq with additive
attention (common-networks.md, 传统seq2seq的注意力: :class:`Encoder`, :class:`Decoder`,
:class:`Seq2Seq`; ``rnn_type="gru"`` builds it around :class:`~fastnn.nn.GRU`, with no cell
state: ``cell`` is None wherever the LSTM model passes one) and a small ResNet
(:class:`BasicBlock`, :class:`ResNet`).

The classes mirror the seed's (same constructor arguments, attribute names and so the same
state_dict keys as the seed's PyTorch model, ``fastnn.benchmarks._seed_seq2seq``). Slips of
the seed fixed here (and in that PyTorch copy):

* the encoder's outputs are (src_len, batch, hid); the attention and the weighted sum need
  them batch first: :class:`Seq2Seq` transposes them once;
* the context vector is concatenated per step as (batch, hid), not the seed's (batch, 1, hid);
* ``fc_out`` sees the top layer's output, not the whole ``hidden`` of every layer (the same
  values with one layer; the seed's concatenation fails with more);
* ``outputs[0]`` (the SOS position) is never predicted and stays zero, as in the seed: a loss
  must skip it (``logits[1:]`` against ``trg[1:]``), and :meth:`Seq2Seq.backward` ignores
  ``grad_logits[0]``.

Speed: the encoder half of the attention's ``attn`` layer does not change between decoder
steps, so :class:`Seq2Seq` computes it once per batch (``AdditiveAttention.project``) instead
of once per step as the seed does; the maths is the same. The decoder's per-step GEMMs are
small (batch x a few hundred x vocab) and run on one BLAS thread: on a busy 2-core machine a
BLAS team that must meet at a barrier after every one of them made steps 10x slower.
"""
import numpy as np

from . import _random
from .kernels._threads import single_thread_blas
from ._validate import float_array, labels, positive_int
from .nn import (GRU, AdaptiveAvgPool2d, AdditiveAttention, BatchNorm2d, Conv2d, Dropout, Embedding, Flatten, Linear,
                 LSTM, Module, ReLU, Sequential, no_grad)


_RNNS = {"lstm": LSTM, "gru": GRU}


def _rnn_class(rnn_type):
    if rnn_type not in _RNNS:
        raise ValueError(f"rnn_type: expected one of {sorted(_RNNS)}, got {rnn_type!r}")
    return _RNNS[rnn_type]


def _rnn_forward(rnn, x, hidden, cell):
    """One call of an LSTM or GRU with the seq2seq's (hidden, cell) convention (cell None for GRU)."""
    if isinstance(rnn, GRU):
        out, hidden = rnn(x, hidden)
        return out, hidden, None
    out, (hidden, cell) = rnn(x, None if hidden is None else (hidden, cell))
    return out, hidden, cell


def _rnn_backward(rnn, grad_out, grad_hidden, grad_cell):
    if isinstance(rnn, GRU):
        gx, gh = rnn.backward(grad_out, grad_hidden)
        return gx, gh, None
    gx, (gh, gc) = rnn.backward(grad_out, (grad_hidden, grad_cell))
    return gx, gh, gc


class Encoder(Module):
    """Embedding, dropout, LSTM (or GRU) over the source sequence (the seed's ``Encoder``).

    Parameters
    ----------
    input_dim : int, source vocabulary size
    emb_dim, hid_dim, n_layers : int
    dropout : float, on the embeddings and between recurrent layers (training only)
    dtype, rng : module dtype; generator for init and dropout (default: fastnn's global one)
    rnn_type : "lstm" (default, the seed's) or "gru"

    ``forward(src) -> (outputs, hidden, cell)``: src int (src_len, batch); outputs
    (src_len, batch, hid_dim), hidden and cell (n_layers, batch, hid_dim) (cell None for a
    GRU). ``backward(grad_outputs, grad_hidden, grad_cell)`` returns None (ids have no gradient).
    """

    def __init__(self, input_dim, emb_dim, hid_dim, n_layers, dropout, dtype=np.float32, rng=None, rnn_type="lstm"):
        super().__init__(dtype)
        self.input_dim, self.emb_dim, self.hid_dim, self.n_layers = input_dim, emb_dim, hid_dim, n_layers
        self.dropout = dropout
        self.embedding = Embedding(input_dim, emb_dim, dtype=dtype, rng=rng)
        self.emb_dropout = Dropout(dropout, rng=rng)
        self.rnn = _rnn_class(rnn_type)(emb_dim, hid_dim, n_layers, dropout=dropout, dtype=dtype, rng=rng)

    def forward(self, src):
        embedded = self.emb_dropout(self.embedding(src))
        return _rnn_forward(self.rnn, embedded, None, None)

    def backward(self, grad_output, grad_hidden=None, grad_cell=None):
        gx, _, _ = _rnn_backward(self.rnn, grad_output, grad_hidden, grad_cell)
        self.embedding.backward(self.emb_dropout.backward(gx))
        return None


class Decoder(Module):
    """One decoder step (the seed's ``Decoder``): embed the previous token, attend, LSTM, predict.

    Parameters
    ----------
    output_dim : int, target vocabulary size
    emb_dim, hid_dim, n_layers : int
    dropout : float
    attention : :class:`~fastnn.nn.AdditiveAttention` (hid_dim, hid_dim)
    dtype, rng, rnn_type : as :class:`Encoder`

    Submodules ``embedding``, ``rnn = LSTM(emb_dim + hid_dim, hid_dim, n_layers)`` (or GRU),
    ``fc_out = Linear(emb_dim + 2 * hid_dim, output_dim)`` over ``[embedded; output; weighted]``.

    ``forward(input, hidden, cell, encoder_outputs, mask=None, keys=None) -> (prediction,
    hidden, cell)``: input int (batch,), hidden/cell (n_layers, batch, hid_dim),
    encoder_outputs (batch, src_len, hid_dim), mask (batch, src_len) bool (True = real token),
    keys = ``attention.project(encoder_outputs)`` if the caller computed it once for all steps.
    prediction (batch, output_dim) are logits.

    ``backward(grad_prediction, grad_hidden=None, grad_cell=None) -> (grad_hidden_in,
    grad_cell_in, grad_encoder_outputs, grad_keys)``; ``grad_keys`` is None when ``keys`` was
    not given (its gradient is then inside ``grad_encoder_outputs``); the caller passes the
    summed ``grad_keys`` of all steps to ``attention.project_backward``.
    """

    def __init__(self, output_dim, emb_dim, hid_dim, n_layers, dropout, attention, dtype=np.float32, rng=None,
                 rnn_type="lstm"):
        super().__init__(dtype)
        if not isinstance(attention, AdditiveAttention):
            raise TypeError(f"attention: expected a fastnn.nn.AdditiveAttention, got {type(attention).__name__}")
        self.output_dim, self.emb_dim, self.hid_dim, self.n_layers = output_dim, emb_dim, hid_dim, n_layers
        self.dropout = dropout
        self.attention = attention
        self.embedding = Embedding(output_dim, emb_dim, dtype=dtype, rng=rng)
        self.emb_dropout = Dropout(dropout, rng=rng)
        self.rnn = _rnn_class(rnn_type)(emb_dim + hid_dim, hid_dim, n_layers, dropout=dropout, dtype=dtype, rng=rng)
        self.fc_out = Linear(emb_dim + hid_dim * 2, output_dim, dtype=dtype, rng=rng)

    def forward(self, input, hidden, cell, encoder_outputs, mask=None, keys=None):
        ids = np.asarray(input)
        if ids.ndim != 1:
            raise ValueError(f"input: expected a 1-D array of token ids (batch,), got shape {ids.shape}")
        enc = self._input(encoder_outputs, "encoder_outputs")
        embedded = self.emb_dropout(self.embedding(ids))                          # (B, E)
        if keys is None:
            a = self.attention(hidden[-1], enc, mask)                              # (B, S)
        else:
            a = self.attention.attend(hidden[-1], keys, mask)
        weighted = np.matmul(a[:, None, :], enc)[:, 0]                             # (B, H)
        rnn_input = np.concatenate([embedded, weighted], axis=1)[None]
        output, hidden, cell = _rnn_forward(self.rnn, rnn_input, hidden, cell)
        prediction = self.fc_out(np.concatenate([embedded, output[0], weighted], axis=1))
        self._save(a, enc, keys is None)
        return prediction, hidden, cell

    def backward(self, grad_output, grad_hidden=None, grad_cell=None):
        a, enc, full = self._pop()
        E, H = self.emb_dim, self.hid_dim
        g = self.fc_out.backward(grad_output)
        g_emb, g_out, g_w = g[:, :E], g[:, E:E + H], g[:, E + H:]
        gx, gh, gc = _rnn_backward(self.rnn, g_out[None], grad_hidden, grad_cell)
        g_emb = g_emb + gx[0, :, :E]
        g_w = g_w + gx[0, :, E:]
        g_a = np.matmul(enc, g_w[:, :, None])[:, :, 0]                             # (B, S)
        g_enc = a[:, :, None] * g_w[:, None, :]                                    # (B, S, H)
        if full:
            g_top, g_enc2 = self.attention.backward(g_a)
            g_enc += g_enc2
            g_keys = None
        else:
            g_top, g_keys = self.attention.attend_backward(g_a)
        gh[-1] += g_top
        self.embedding.backward(self.emb_dropout.backward(g_emb))
        return gh, gc, g_enc, g_keys


class Seq2Seq(Module):
    """Encoder-decoder with additive attention and teacher forcing (the seed's ``Seq2Seq``).

    Parameters
    ----------
    encoder : :class:`Encoder`
    decoder : :class:`Decoder` (same ``hid_dim`` and ``n_layers`` as the encoder)
    src_pad_idx : int, optional
        Source padding id: padded positions get no attention (the seed had no mask).

    ``forward(src, trg, teacher_forcing_ratio=0.5, rng=None) -> logits`` of shape
    (trg_len, batch, output_dim): src int (src_len, batch), trg int (trg_len, batch) with
    trg_len >= 2 and ``trg[0]`` the start tokens. At each step t >= 1 the next input is
    ``trg[t]`` with probability ``teacher_forcing_ratio`` (one draw per step for the whole
    batch, as the seed) else the argmax prediction. ``rng`` (a numpy Generator; default
    fastnn's global one, see :func:`fastnn.manual_seed`) makes the draws reproducible.
    ``logits[0]`` is zero (nothing is predicted at the SOS position): skip it in the loss.

    ``backward(grad_logits)`` backpropagates through the unrolled decoder, the attention and
    the encoder (``grad_logits[0]`` is ignored) and accumulates every parameter gradient.

    :meth:`generate` decodes greedily.
    """

    def __init__(self, encoder, decoder, src_pad_idx=None):
        if not isinstance(encoder, Encoder) or not isinstance(decoder, Decoder):
            raise TypeError("encoder, decoder: expected fastnn.models.Encoder and fastnn.models.Decoder")
        if encoder.hid_dim != decoder.hid_dim or encoder.n_layers != decoder.n_layers:
            raise ValueError(f"decoder: expected hid_dim {encoder.hid_dim} and n_layers {encoder.n_layers} "
                             f"(the encoder's), got {decoder.hid_dim} and {decoder.n_layers}")
        if type(encoder.rnn) is not type(decoder.rnn):
            raise ValueError(f"decoder: expected a {type(encoder.rnn).__name__} like the encoder's, "
                             f"got {type(decoder.rnn).__name__}")
        super().__init__(encoder.dtype)
        self.encoder = encoder
        self.decoder = decoder
        self.src_pad_idx = src_pad_idx

    def _encode(self, src):
        src = np.asarray(src)
        if src.ndim != 2 or src.shape[0] < 1:
            raise ValueError(f"src: expected an int array (src_len >= 1, batch), got shape {src.shape}")
        enc_out, hidden, cell = self.encoder(src)
        enc = np.ascontiguousarray(enc_out.transpose(1, 0, 2))                     # (B, S, H)
        mask = None if self.src_pad_idx is None else np.ascontiguousarray((src != self.src_pad_idx).T)
        return enc, hidden, cell, mask

    def forward(self, src, trg, teacher_forcing_ratio=0.5, rng=None):
        trg = np.asarray(trg)
        src_shape = np.shape(src)
        if trg.ndim != 2 or trg.shape[0] < 2:
            raise ValueError(f"trg: expected an int array (trg_len >= 2, batch), got shape {trg.shape}")
        if len(src_shape) != 2 or src_shape[1] != trg.shape[1]:
            raise ValueError(f"src: expected shape (src_len, {trg.shape[1]}) (the batch of trg), got {src_shape}")
        trg = labels(trg.reshape(-1), "trg", self.decoder.output_dim).reshape(trg.shape)
        if isinstance(teacher_forcing_ratio, bool) or not 0 <= teacher_forcing_ratio <= 1:
            raise ValueError(f"teacher_forcing_ratio: expected a number in [0, 1], got {teacher_forcing_ratio!r}")
        rng = _random.get_rng(rng)
        enc, hidden, cell, mask = self._encode(src)
        keys = self.decoder.attention.project(enc)
        T, B = trg.shape
        outputs = np.zeros((T, B, self.decoder.output_dim), dtype=self.dtype)
        inp = trg[0]
        with single_thread_blas():  # see the module docstring (Speed)
            for t in range(1, T):
                out, hidden, cell = self.decoder(inp, hidden, cell, enc, mask, keys)
                outputs[t] = out
                teacher_force = rng.random() < teacher_forcing_ratio
                inp = trg[t] if teacher_force else out.argmax(axis=1)
        self._save(T)
        return outputs

    def backward(self, grad_output, need_input_grad=True):
        (T,) = self._pop()
        g = float_array(grad_output, "grad_output")
        want = (T, g.shape[1] if g.ndim == 3 else -1, self.decoder.output_dim)
        if g.ndim != 3 or g.shape[0] != T or g.shape[2] != self.decoder.output_dim:
            raise ValueError(f"grad_output: expected shape {want} (the logits' shape), got {g.shape}")
        g = g.astype(self.dtype, copy=False)
        gh = gc = None
        g_enc = g_keys = 0
        with single_thread_blas():
            for t in range(T - 1, 0, -1):
                gh, gc, ge, gk = self.decoder.backward(g[t], gh, gc)
                g_enc = g_enc + ge
                g_keys = g_keys + gk
        g_enc = g_enc + self.decoder.attention.project_backward(g_keys)
        self.encoder.backward(g_enc.transpose(1, 0, 2), gh, gc)
        return None

    def generate(self, src, max_len, sos_id, eos_id):
        """Greedy decoding: feed back the argmax token until every sequence has emitted ``eos_id``
        or ``max_len`` tokens were produced. Runs in eval mode (no dropout), keeps no caches.

        Parameters
        ----------
        src : int array (src_len, batch)
        max_len : int, most tokens to produce
        sos_id, eos_id : int, start and end tokens of the target vocabulary

        Returns
        -------
        int64 array of shape (n, batch), n <= max_len: the produced tokens (SOS not included);
        after a sequence's EOS its later positions hold ``eos_id``.
        """
        max_len = positive_int(max_len, "max_len", 1)
        V = self.decoder.output_dim
        for name, v in (("sos_id", sos_id), ("eos_id", eos_id)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < V:
                raise ValueError(f"{name}: expected an int in [0, {V}), got {v!r}")
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                enc, hidden, cell, mask = self._encode(src)
                keys = self.decoder.attention.project(enc)
                B = enc.shape[0]
                inp = np.full(B, sos_id, dtype=np.int64)
                done = np.zeros(B, dtype=bool)
                tokens = []
                for _ in range(max_len):
                    out, hidden, cell = self.decoder(inp, hidden, cell, enc, mask, keys)
                    inp = np.where(done, eos_id, out.argmax(axis=1))
                    tokens.append(inp)
                    done |= inp == eos_id
                    if done.all():
                        break
        finally:
            self.train(was_training)
        return np.stack(tokens)


class BasicBlock(Module):
    """torchvision's ResNet ``BasicBlock``: two 3x3 convolutions with batch norm, and a
    residual add (through a 1x1 convolution + batch norm, ``downsample``, when the stride or
    the width changes), then ReLU.

    Parameters
    ----------
    inplanes, planes : int
        Input and output channels.
    stride : int, default 1 (of the first convolution and of ``downsample``)
    dtype, rng : module dtype; generator for the initialisation

    Submodules ``conv1``, ``bn1``, ``relu``, ``conv2``, ``bn2``, ``downsample`` (a
    :class:`~fastnn.nn.Sequential` of ``Conv2d`` and ``BatchNorm2d``, or None): torchvision's
    names, so the ``state_dict`` keys are torchvision's.

    ``backward(grad_output)`` runs the forward in reverse: the gradient of the final ReLU goes
    down both paths of the residual add, and the two input gradients are added.
    """

    def __init__(self, inplanes, planes, stride=1, dtype=np.float32, rng=None):
        super().__init__(dtype)
        self.conv1 = Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(planes, dtype=dtype)
        self.relu = ReLU()
        self.conv2 = Conv2d(planes, planes, 3, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn2 = BatchNorm2d(planes, dtype=dtype)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = Sequential(Conv2d(inplanes, planes, 1, stride=stride, bias=False, dtype=dtype, rng=rng),
                                         BatchNorm2d(planes, dtype=dtype))

    def forward(self, x):
        x = self._input(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)

    def backward(self, grad_output, need_input_grad=True):
        g = self.relu.backward(self._input(grad_output, "grad_output"))  # the second ReLU (its caches stack)
        g_skip = g if self.downsample is None else self.downsample.backward(g)
        g = self.conv2.backward(self.bn2.backward(g))
        g = self.conv1.backward(self.bn1.backward(self.relu.backward(g)))
        return g + g_skip


class ResNet(Module):
    """A small ResNet for small images (MNIST): a 3x3 stem convolution, stages of
    :class:`BasicBlock` (each stage halves the resolution in its first block), a global
    average pool and a linear classifier. Submodule names follow torchvision (``conv1``,
    ``bn1``, ``layer1``..., ``fc``).

    Parameters
    ----------
    layers : tuple of int, default (1, 1)
        Blocks per stage.
    widths : tuple of int, default (32, 64)
        Channels of each stage.
    in_channels : int, default 1
    stem_width : int, default 16
    num_classes : int, default 10
    dtype, rng : module dtype; generator for the initialisation

    Input (N, in_channels, H, W); output logits (N, num_classes). The default on 28x28:
    16 channels at 28x28, 32 at 14x14, 64 at 7x7 (about 5.7 M multiply-adds per image).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.models import ResNet
    >>> ResNet()(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 10)
    """

    def __init__(self, layers=(1, 1), widths=(32, 64), in_channels=1, stem_width=16, num_classes=10,
                 dtype=np.float32, rng=None):
        super().__init__(dtype)
        if len(layers) != len(widths) or not layers:
            raise ValueError(f"layers, widths: expected two non-empty sequences of one length, got {layers!r}, {widths!r}")
        self.conv1 = Conv2d(in_channels, stem_width, 3, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(stem_width, dtype=dtype)
        self.relu = ReLU()
        planes = stem_width
        self._stages = []
        for i, (n, width) in enumerate(zip(layers, widths)):
            blocks = [BasicBlock(planes if j == 0 else width, width, 2 if j == 0 else 1, dtype=dtype, rng=rng)
                      for j in range(positive_int(n, "layers"))]
            setattr(self, f"layer{i + 1}", Sequential(*blocks))
            self._stages.append(getattr(self, f"layer{i + 1}"))
            planes = width
        self.avgpool = AdaptiveAvgPool2d(1)
        self.flatten = Flatten()
        self.fc = Linear(planes, num_classes, dtype=dtype, rng=rng)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(self._input(x))))
        for stage in self._stages:
            x = stage(x)
        return self.fc(self.flatten(self.avgpool(x)))

    def backward(self, grad_output, need_input_grad=True):
        g = self.avgpool.backward(self.flatten.backward(self.fc.backward(self._input(grad_output, "grad_output"))))
        for stage in reversed(self._stages):
            g = stage.backward(g)
        return self.conv1.backward(self.bn1.backward(self.relu.backward(g)), need_input_grad=need_input_grad)
