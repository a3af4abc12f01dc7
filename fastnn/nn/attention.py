"""Attention modules: the seed's ScaledDotProductAttention and torch's MultiheadAttention.

Both run the fused attention of :func:`fastnn.functional.scaled_dot_product_attention` (no
L x S matrix unless weights are asked for) and have explicit backward passes. A query row
with no allowed key gives 0 output and 0 gradients (torch: NaN).
"""
import math

import numpy as np

from .. import _random
from .. import functional as F
from .._validate import positive_int
from .layers import Linear
from .module import Module, Parameter


class ScaledDotProductAttention(Module):
    """The seed's attention: ``softmax(q @ k.T / sqrt(d_k), masked) @ v``, returning the weights too.

    Parameters
    ----------
    d_k : int, optional
        Key dimension for the scale ``1 / sqrt(d_k)``; default: the last dim of ``q``.

    ``forward(q, k, v, mask=None) -> (output, weights)`` with q (..., L, E), k (..., S, E),
    v (..., S, Ev), output (..., L, Ev), weights (..., L, S). ``mask`` broadcastable to
    (..., L, S) follows the seed: positions where ``mask == 0`` are masked (the seed's
    ``masked_fill(mask == 0, -1e9)``, made exact with -inf). ``backward(grad_output)`` takes
    the gradient of the output (not of the weights) and returns ``(grad_q, grad_k, grad_v)``.
    """

    def __init__(self, d_k=None):
        super().__init__()
        self.d_k = None if d_k is None else positive_int(d_k, "d_k")

    def forward(self, q, k, v, mask=None):
        q = self._input(q, "q")  # no dtype of its own: q's dtype, like torch (k and v must match it)
        k, v = self._input(k, "k", like=q), self._input(v, "v", like=q)
        allowed = None if mask is None else np.asarray(mask) != 0
        scale = None if self.d_k is None else 1.0 / math.sqrt(self.d_k)
        out, lse = F.scaled_dot_product_attention(q, k, v, allowed, scale=scale, return_lse=True)
        weights = F.attention_weights(q, k, allowed, scale=scale)
        self._save(q, k, v, allowed, scale, out, lse)
        return out, weights

    def backward(self, grad_output):
        q, k, v, allowed, scale, out, lse = self._pop()
        g = self._input(grad_output, "grad_output", like=q)
        return F.scaled_dot_product_attention_backward(g, q, k, v, allowed, scale=scale, out=out, lse=lse)

    def extra_repr(self):
        return f"d_k={self.d_k}"


def _xavier(rng, shape, dtype):
    bound = math.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class MultiheadAttention(Module):
    """Multi-head attention, like ``torch.nn.MultiheadAttention`` (same parameters and state_dict).

    Parameters
    ----------
    embed_dim : int
        E, the query (and output) feature size; a multiple of ``num_heads``.
    num_heads : int
        H; each head has ``E // H`` features.
    dropout : float in [0, 1)
        Dropout on the attention weights in training mode, as torch. With ``dropout > 0`` a
        training step takes the unfused path (weights (N, H, L, S) built, dropped, multiplied
        by the values; :func:`fastnn.functional.dropout`'s generator, see ``rng``); ``eval()``
        and ``dropout=0`` use the fused kernels.
    bias : bool
        ``in_proj_bias`` (3E,) and ``out_proj.bias`` (E,).
    batch_first : bool
        Inputs and output (N, L, E) instead of (L, N, E).
    kdim, vdim : int, optional
        Key and value feature sizes (default E). When both equal E the projections are packed
        in ``in_proj_weight`` (3E, E), as torch; otherwise ``q_proj_weight`` (E, E),
        ``k_proj_weight`` (E, kdim) and ``v_proj_weight`` (E, vdim).
    rng : numpy.random.Generator, optional
        For the initialisation and the attention dropout (default: fastnn's global generator).

    Parameters are initialised as torch: Xavier-uniform projections, zero biases,
    ``out_proj.weight`` as a Linear. A torch state_dict (``.numpy()``-converted) loads as is.

    Shapes (batch_first=False; swap L/S and N when True; unbatched inputs drop N):
    query (L, N, E), key (S, N, kdim), value (S, N, vdim) -> output (L, N, E) and weights
    (N, L, S) averaged over heads, or (N, H, L, S) with ``average_attn_weights=False``.

    Masks follow torch's MultiheadAttention (the opposite of SDPA for bools):
    ``key_padding_mask`` (N, S): bool True = ignore that key, float = added;
    ``attn_mask`` (L, S) or (N*H, L, S): bool True = not allowed, float = added.
    ``is_causal`` is torch's hint: it needs ``attn_mask`` (assumed causal); without a key
    padding mask and with ``need_weights=False`` the causal kernel runs instead of the mask.

    ``backward(grad_output) -> (grad_query, grad_key, grad_value)`` accumulates the parameter
    gradients. In self-attention (``query``, ``key`` and ``value`` the same array) the three
    gradients are still returned separately, one per role, as torch computes them before its
    autograd sums them into ``x.grad``: the gradient of the shared input is their sum.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False, kdim=None, vdim=None,
                 dtype=np.float32, rng=None):
        super().__init__(dtype)
        E = self.embed_dim = positive_int(embed_dim, "embed_dim")
        H = self.num_heads = positive_int(num_heads, "num_heads")
        if E % H:
            raise ValueError(f"embed_dim: expected a multiple of num_heads={H}, got {E}")
        self.head_dim = E // H
        self.kdim = E if kdim is None else positive_int(kdim, "kdim")
        self.vdim = E if vdim is None else positive_int(vdim, "vdim")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        self._qkv_same_embed_dim = self.kdim == E and self.vdim == E
        self.rng = rng
        rng = _random.get_rng(rng)
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(_xavier(rng, (3 * E, E), self.dtype))
        else:
            self.register_parameter("in_proj_weight", None)
            self.q_proj_weight = Parameter(_xavier(rng, (E, E), self.dtype))
            self.k_proj_weight = Parameter(_xavier(rng, (E, self.kdim), self.dtype))
            self.v_proj_weight = Parameter(_xavier(rng, (E, self.vdim), self.dtype))
        self.register_parameter("in_proj_bias", Parameter(np.zeros(3 * E, self.dtype)) if bias else None)
        self.out_proj = Linear(E, E, bias=bias, dtype=self.dtype, rng=rng)
        if bias:
            self.out_proj.bias.data[...] = 0

    # -- helpers ---------------------------------------------------------------------------
    def _weights(self):
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight.data
            ws = (w[:E], w[E:2 * E], w[2 * E:])
        else:
            ws = (self.q_proj_weight.data, self.k_proj_weight.data, self.v_proj_weight.data)
        b = self.in_proj_bias
        bs = (None,) * 3 if b is None else (b.data[:E], b.data[E:2 * E], b.data[2 * E:])
        return ws, bs

    # The projections run in the inputs' own layout, (L, N, feat) or (N, L, feat) (unbatched
    # (L, feat) as (L, 1, feat)): a Linear does not care about the order of the leading dims,
    # so only the head split and merge move data.
    def _native(self, x, name, feat, batched):
        """``x`` as a 3-D array in the module's layout, checked; (N, n) its batch and length."""
        x = self._input(x, name)
        lay = ("(N, L, " if self.batch_first else "(L, N, ") if batched else "(L, "
        if x.ndim != (3 if batched else 2) or x.shape[-1] != feat:
            raise ValueError(f"{name}: expected shape {lay}{feat}), got {x.shape}")
        if not batched:
            return x[:, None], 1, x.shape[0]
        return (x, x.shape[0], x.shape[1]) if self.batch_first else (x, x.shape[1], x.shape[0])

    def _split(self, y, N, n, batched, parts=1):
        """(..., parts*E) projection in the module's layout -> C-contiguous heads
        (parts, N, H, n, head_dim), in one copy (``parts=3``: the packed q, k, v of self-attention)."""
        bf = self.batch_first and batched
        t = y.reshape(((N, n) if bf else (n, N)) + (parts, self.num_heads, self.head_dim))
        return np.ascontiguousarray(t.transpose((2, 0, 3, 1, 4) if bf else (2, 1, 3, 0, 4)))

    def _merge(self, heads, batched):
        """Head arrays (N, H, n, head_dim) -> one C-contiguous (n, N, k*E) or (N, n, k*E) array
        (the module's layout), the k arrays side by side along the features."""
        N, H, n, hd = heads[0].shape
        bf = self.batch_first and batched
        out = np.empty(((N, n) if bf else (n, N)) + (len(heads), H, hd), heads[0].dtype)
        for i, t in enumerate(heads):
            out[:, :, i] = t.transpose((0, 2, 1, 3) if bf else (2, 0, 1, 3))
        return out.reshape(out.shape[:2] + (len(heads) * H * hd,))

    def _mask(self, m, name, shapes):
        """``m`` (bool True = masked, or float) as an additive mask in the module dtype."""
        m = np.asarray(m)
        if m.dtype != np.bool_ and m.dtype.kind != "f":
            raise TypeError(f"{name}: expected a bool or float array, got dtype {m.dtype}")
        if m.shape not in shapes:
            raise ValueError(f"{name}: expected shape {' or '.join(map(str, shapes))}, got {m.shape}")
        if m.dtype == np.bool_:
            return np.where(m, -np.inf, 0).astype(self.dtype)
        return m.astype(self.dtype, copy=False)

    # -- forward / backward ----------------------------------------------------------------
    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        self_attn = query is key and key is value and self._qkv_same_embed_dim
        qa = np.asarray(query)
        if qa.ndim not in (2, 3):
            raise ValueError(f"query: expected a 3-D (batched) or 2-D (unbatched) array, got shape {qa.shape}")
        batched = qa.ndim == 3
        E, H, hd = self.embed_dim, self.num_heads, self.head_dim
        x_q, N, L = self._native(query, "query", E, batched)
        x_k, Nk, S = (x_q, N, L) if self_attn else self._native(key, "key", self.kdim, batched)
        x_v, Nv, Sv = (x_q, N, L) if self_attn else self._native(value, "value", self.vdim, batched)
        if Nk != N or Nv != N:
            raise ValueError(f"key, value: expected batch size N={N} (that of query), got key {np.shape(key)}, "
                             f"value {np.shape(value)}")
        if Sv != S:
            raise ValueError(f"value: expected S={S} entries (those of key), got shape {np.shape(value)}")
        if not isinstance(is_causal, (bool, np.bool_)):
            raise TypeError(f"is_causal: expected a bool, got {type(is_causal).__name__}")
        if is_causal and attn_mask is None:
            raise ValueError("is_causal: needs attn_mask (torch's hint that attn_mask is causal), got attn_mask=None")

        mask = None
        if attn_mask is not None:
            shapes = ((L, S), (N * H, L, S)) if batched else ((L, S), (H, L, S))
            am = self._mask(attn_mask, "attn_mask", shapes)
            mask = am if am.ndim == 2 else am.reshape(N, H, L, S)
        if key_padding_mask is not None:
            kpm = self._mask(key_padding_mask, "key_padding_mask", ((N, S),) if batched else ((S,),))
            kpm = kpm.reshape(N, 1, 1, S)
            mask = kpm if mask is None else mask + kpm
        causal = False
        if is_causal and key_padding_mask is None and not need_weights:
            causal, mask = True, None

        if self_attn:  # one GEMM with the packed weight, one copy into heads
            b = None if self.in_proj_bias is None else self.in_proj_bias.data
            q4, k4, v4 = self._split(F.linear(x_q, self.in_proj_weight.data, b), N, L, batched, parts=3)
        else:
            (wq, wk, wv), (bq, bk, bv) = self._weights()
            q4, k4, v4 = (self._split(F.linear(x, w, b), N, n, batched)[0]
                          for x, w, b, n in ((x_q, wq, bq, L), (x_k, wk, bk, S), (x_v, wv, bv, S)))
        w = drop = wd = None
        if self.training and self.dropout > 0:  # unfused: dropout acts on the weights themselves
            w = F.attention_weights(q4, k4, mask, causal)
            wd, drop = F.dropout(w, self.dropout, True, _random.get_rng(self.rng), return_mask=True)
            o4, lse = np.matmul(wd, v4), None
        else:
            o4, lse = F.scaled_dot_product_attention(q4, k4, v4, mask, causal, return_lse=True)
        y = self.out_proj(self._merge((o4,), batched))
        weights = None
        if need_weights:  # after dropout, as torch returns them
            weights = wd if wd is not None else F.attention_weights(q4, k4, mask, causal)
            if average_attn_weights:
                weights = weights.mean(axis=1)
            if not batched:
                weights = weights[0]
        self._save(x_q, x_k, x_v, q4, k4, v4, mask, causal, o4, lse, w, drop, batched)
        return (y if batched else y[:, 0]), weights

    def backward(self, grad_output):
        x_q, x_k, x_v, q4, k4, v4, mask, causal, o4, lse, w, drop, batched = self._pop()
        N, H, L, hd = q4.shape
        E = self.embed_dim
        g = self._input(grad_output, "grad_output")
        want = ((N, L, E) if self.batch_first else (L, N, E)) if batched else (L, E)
        if g.shape != want:
            raise ValueError(f"grad_output: expected shape {want}, got {g.shape}")
        g4 = self._split(self.out_proj.backward(g if batched else g[:, None]), N, L, batched)[0]
        if drop is None:
            gq4, gk4, gv4 = F.scaled_dot_product_attention_backward(g4, q4, k4, v4, mask, causal, out=o4, lse=lse)
        else:  # o = (w * drop) @ v, w = softmax(q @ k.T / sqrt(d) + mask)
            gv4 = np.matmul((w * drop).transpose(0, 1, 3, 2), g4)
            gw = F.dropout_backward(np.matmul(g4, v4.transpose(0, 1, 3, 2)), drop)
            gs = F.softmax_backward(gw, w) * self.dtype.type(1 / math.sqrt(hd))
            gq4, gk4 = np.matmul(gs, k4), np.matmul(gs.transpose(0, 1, 3, 2), q4)
        # drop the saved heads before the input projections: the allocator reuses their pages
        # for what follows instead of growing the heap (mha benchmark: 5.9k -> 2.3-2.8k page
        # faults per step)
        del q4, k4, v4, o4, lse, w, drop, g4
        ws, _ = self._weights()
        if self._qkv_same_embed_dim and x_q is x_k and x_k is x_v:
            # self-attention: the packed gradient (n, N, 3E) gives the packed weight's gradient
            # in one GEMM; each role's input gradient is its column block times its weight
            # block (a strided view: BLAS takes it without a copy)
            gp = self._merge((gq4, gk4, gv4), batched)
            del gq4, gk4, gv4
            _, gw, gb = F.linear_backward(gp, x_q, self.in_proj_weight.data, need_input_grad=False)
            gp2 = gp.reshape(-1, 3 * E)
            grads = [np.matmul(gp2[:, i * E:(i + 1) * E], w).reshape(x_q.shape) for i, w in enumerate(ws)]
            gws = [gw]
        else:
            grads, gws, gbs = zip(*(F.linear_backward(self._merge((g_h,), batched), x, w)
                                    for g_h, x, w in zip((gq4, gk4, gv4), (x_q, x_k, x_v), ws)))
            gb = np.concatenate(gbs)
        if self._qkv_same_embed_dim:
            self.in_proj_weight.accumulate(gws[0] if len(gws) == 1 else np.concatenate(gws))
        else:
            for p, gw in zip((self.q_proj_weight, self.k_proj_weight, self.v_proj_weight), gws):
                p.accumulate(gw)
        if self.in_proj_bias is not None:
            self.in_proj_bias.accumulate(gb)
        return tuple(gx if batched else gx[:, 0] for gx in grads)

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}, vdim={self.vdim}, "
                f"batch_first={self.batch_first}")
