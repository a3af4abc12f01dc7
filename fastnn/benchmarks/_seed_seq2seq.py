"""The seed's PyTorch seq2seq (common-networks.md, 传统seq2seq的注意力), the oracle for the
tests and the peer for the ``seq2seq_step`` benchmark. Imported only where torch is wanted.

Kept as the seed wrote it, except for the slips that stop it from running (with batch > 1 or
more than one layer) or from being compared, fixed the same way in :mod:`fastnn.models` (each
marked ``# fix:``):

1. the encoder's outputs are (src_len, batch, hid) but the attention and ``bmm`` index them
   (batch, src_len, hid): ``Seq2Seq`` permutes them once;
2. ``bmm`` gives the context (batch, 1, hid), concatenated with the (1, batch, emb)
   embedding: it is permuted to (1, batch, hid);
3. ``fc_out`` concatenated the full ``hidden`` (n_layers, batch, hid), which only works for one
   layer: it takes the top layer's output (the same values when n_layers == 1);
4. ``outputs`` is allocated in the model's dtype (the seed's float32 zeros truncated a float64
   model's logits);
5. ``outputs[0]`` stays zero (no prediction is made for the SOS position): a loss must skip it.

``teacher_forcing_ratio`` draws with ``torch.rand`` as the seed does.
"""
import torch
import torch.nn as nn


class Encoder(nn.Module):
    def __init__(self, input_dim, emb_dim, hid_dim, n_layers, dropout):
        super(Encoder, self).__init__()
        self.input_dim = input_dim
        self.emb_dim = emb_dim
        self.hid_dim = hid_dim
        self.n_layers = n_layers
        self.dropout = dropout
        self.embedding = nn.Embedding(input_dim, emb_dim)
        self.rnn = nn.LSTM(emb_dim, hid_dim, n_layers, dropout=dropout)

    def forward(self, src):
        embedded = self.embedding(src)
        embedded = nn.functional.dropout(embedded, p=self.dropout, training=self.training)
        output, (hidden, cell) = self.rnn(embedded)
        return output, hidden, cell


class Attention(nn.Module):
    def __init__(self, enc_hid_dim, dec_hid_dim):
        super(Attention, self).__init__()
        self.enc_hid_dim = enc_hid_dim
        self.dec_hid_dim = dec_hid_dim
        self.attn = nn.Linear(enc_hid_dim + dec_hid_dim, dec_hid_dim)
        self.v = nn.Linear(dec_hid_dim, 1, bias=False)

    def forward(self, hidden, encoder_outputs):
        batch_size = encoder_outputs.shape[0]
        src_len = encoder_outputs.shape[1]
        repeated_hidden = hidden.unsqueeze(1).repeat(1, src_len, 1)
        energy = torch.tanh(self.attn(torch.cat((repeated_hidden, encoder_outputs), dim=2)))
        attention = self.v(energy).squeeze(2)
        return nn.functional.softmax(attention, dim=1)


class Decoder(nn.Module):
    def __init__(self, output_dim, emb_dim, hid_dim, n_layers, dropout, attention):
        super(Decoder, self).__init__()
        self.output_dim = output_dim
        self.emb_dim = emb_dim
        self.hid_dim = hid_dim
        self.n_layers = n_layers
        self.dropout = dropout
        self.attention = attention
        self.embedding = nn.Embedding(output_dim, emb_dim)
        self.rnn = nn.LSTM(emb_dim + hid_dim, hid_dim, n_layers, dropout=dropout)
        self.fc_out = nn.Linear(emb_dim + hid_dim * 2, output_dim)

    def forward(self, input, hidden, cell, encoder_outputs):
        input = input.unsqueeze(0)
        embedded = self.embedding(input)
        embedded = nn.functional.dropout(embedded, p=self.dropout, training=self.training)
        attn_weights = self.attention(hidden[-1], encoder_outputs)
        attn_weights = attn_weights.unsqueeze(1)
        weighted = torch.bmm(attn_weights, encoder_outputs)
        weighted = weighted.permute(1, 0, 2)  # fix: (batch, 1, hid) -> (1, batch, hid) for the cat with embedded
        rnn_input = torch.cat((embedded, weighted), dim=2)
        output, (hidden, cell) = self.rnn(rnn_input, (hidden, cell))
        output = torch.cat((embedded, output, weighted), dim=2)  # fix: top layer's output, not all of hidden
        prediction = self.fc_out(output.squeeze(0))
        return prediction, hidden, cell


class Seq2Seq(nn.Module):
    def __init__(self, encoder, decoder, device):
        super(Seq2Seq, self).__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.device = device

    def forward(self, src, trg, teacher_forcing_ratio=0.5):
        batch_size = src.shape[1]
        trg_len = trg.shape[0]
        trg_vocab_size = self.decoder.output_dim
        outputs = torch.zeros(trg_len, batch_size, trg_vocab_size,
                              dtype=self.decoder.fc_out.weight.dtype).to(self.device)  # fix: model dtype
        encoder_outputs, hidden, cell = self.encoder(src)
        encoder_outputs = encoder_outputs.permute(1, 0, 2)  # fix: (src_len, batch, hid) -> (batch, src_len, hid)
        input = trg[0, :]
        for t in range(1, trg_len):
            output, hidden, cell = self.decoder(input, hidden, cell, encoder_outputs)
            outputs[t] = output
            teacher_force = torch.rand(1).item() < teacher_forcing_ratio
            top1 = output.argmax(1)
            input = trg[t] if teacher_force else top1
        return outputs  # outputs[0] stays zero: skip it in the loss
