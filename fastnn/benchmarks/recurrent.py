"""Recurrent workloads (issues 5, 13): an LSTM and a GRU layer forward + backward, and one
training step of the seed's seq2seq with additive attention (fastnn vs the seed's own PyTorch
code)."""
import numpy as np

from . import workload

T, B, I, H = 50, 32, 128, 256
S2S = dict(vocab=1000, emb=64, hid=128, src_len=20, trg_len=20, batch=32)


def _lstm_flops(T=T, B=B, I=I, H=H):
    # forward: input and recurrent GEMMs; backward: weight gradients and input/state gradients
    return 3 * 2 * T * B * (I + H) * 4 * H


@workload("lstm", op="lstm", shape=f"LSTM({I}, {H}), T={T}, batch {B}", flops=_lstm_flops(),
          note="forward + backward (input, state and parameter gradients)")
def lstm(impl):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    g = rng.standard_normal((T, B, H), dtype=np.float32)
    if impl == "torch":
        import torch

        m = torch.nn.LSTM(I, H)
        xt = torch.from_numpy(x).requires_grad_(True)
        gt = torch.from_numpy(g)

        def step():
            m.zero_grad()
            xt.grad = None
            out, _ = m(xt)
            out.backward(gt)

        return step
    from fastnn import nn

    m = nn.LSTM(I, H, rng=rng)

    def step():
        m.zero_grad()
        m(x)
        m.backward(g)

    return step


def _gru_flops(T=T, B=B, I=I, H=H):
    return 3 * 2 * T * B * (I + H) * 3 * H


@workload("gru", op="gru", shape=f"GRU({I}, {H}), T={T}, batch {B}", flops=_gru_flops(),
          note="forward + backward (input, state and parameter gradients)")
def gru(impl):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    g = rng.standard_normal((T, B, H), dtype=np.float32)
    if impl == "torch":
        import torch

        m = torch.nn.GRU(I, H)
        xt = torch.from_numpy(x).requires_grad_(True)
        gt = torch.from_numpy(g)

        def step():
            m.zero_grad()
            xt.grad = None
            out, _ = m(xt)
            out.backward(gt)

        return step
    from fastnn import nn

    m = nn.GRU(I, H, rng=rng)

    def step():
        m.zero_grad()
        m(x)
        m.backward(g)

    return step


def _s2s_flops(vocab=1000, emb=64, hid=128, src_len=20, trg_len=20, batch=32):
    steps = trg_len - 1
    enc = 2 * src_len * batch * (emb + hid) * 4 * hid
    dec = 2 * steps * batch * ((emb + 2 * hid) * 4 * hid + (emb + 2 * hid) * vocab)
    att = 2 * steps * batch * src_len * (2 * hid) * hid  # the seed's attn layer, every step
    return 3 * (enc + dec + att)


@workload("seq2seq_step", op="seq2seq",
          shape="vocab 1000, emb 64, hid 128, src/trg len 20, batch 32, teacher forcing 1.0",
          flops=_s2s_flops(), note="Adam step: forward, cross-entropy over logits[1:], backward, update")
def seq2seq_step(impl):
    c = S2S
    rng = np.random.default_rng(0)
    src = rng.integers(3, c["vocab"], (c["src_len"], c["batch"]))
    trg = rng.integers(3, c["vocab"], (c["trg_len"], c["batch"]))
    if impl == "torch":
        import torch

        from . import _seed_seq2seq as seed

        enc = seed.Encoder(c["vocab"], c["emb"], c["hid"], 1, 0.0)
        dec = seed.Decoder(c["vocab"], c["emb"], c["hid"], 1, 0.0, seed.Attention(c["hid"], c["hid"]))
        m = seed.Seq2Seq(enc, dec, "cpu")
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        st, tt = torch.from_numpy(src), torch.from_numpy(trg)

        def step():
            opt.zero_grad()
            out = m(st, tt, teacher_forcing_ratio=1.0)
            loss = torch.nn.functional.cross_entropy(out[1:].reshape(-1, c["vocab"]), tt[1:].reshape(-1))
            loss.backward()
            opt.step()

        return step
    from fastnn import optim, train

    m = train.seq2seq_model(c["vocab"], c["emb"], c["hid"], 1, 0.0, rng=rng)
    m.src_pad_idx = None  # the seed has no padding mask
    opt = optim.Adam(m.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        out = m(src, trg, teacher_forcing_ratio=1.0)
        _, grad = train.sequence_loss(out, trg, pad=-1)
        m.backward(grad)
        opt.step()

    return step
