"""Training loops behind ``fastnn train``: the seed's models on their data sets."""
import time

import numpy as np

from . import _random
from . import functional as F
from . import nn, optim


def mlp(dtype=np.float32, rng=None):
    """The seed's fully-connected network: 784-256-256-10, sigmoid hidden layers (logits out;
    the softmax lives in the cross-entropy loss)."""
    return nn.Sequential(
        nn.Linear(784, 256, dtype=dtype, rng=rng),
        nn.Sigmoid(),
        nn.Linear(256, 256, dtype=dtype, rng=rng),
        nn.Sigmoid(),
        nn.Linear(256, 10, dtype=dtype, rng=rng),
    )


def train_step(model, opt, x, y):
    """One step: forward, softmax cross-entropy, backward, optimiser update. Returns the loss."""
    opt.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    model.backward(F.cross_entropy_backward(logits, y), need_input_grad=False)
    opt.step()
    return float(loss)


def evaluate(model, x, y, batch_size=1000):
    """Classification accuracy of ``model`` on ``(x, y)`` (eval mode, no caches kept)."""
    model.eval()
    correct = 0
    with nn.no_grad():
        for i in range(0, len(x), batch_size):
            correct += int((model(x[i : i + batch_size]).argmax(axis=1) == y[i : i + batch_size]).sum())
    model.train()
    return correct / max(len(x), 1)


def fit(model, opt, train, test, epochs, batch_size, seed=0, progress=True, log=print, lr_gamma=1.0):
    """Mini-batch training with a tqdm progress bar (loss, samples/s); returns the test accuracy.

    ``lr_gamma`` multiplies ``opt.lr`` after each epoch (torch's ``ExponentialLR``).
    """
    from tqdm import tqdm

    x_train, y_train = train
    rng = np.random.default_rng(seed)
    n = len(x_train)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        t0 = time.perf_counter()
        steps = range(0, n, batch_size)
        bar = tqdm(steps, desc=f"epoch {epoch}/{epochs}", unit="batch", disable=not progress, leave=True)
        running = None
        for k, i in enumerate(bar):
            idx = order[i : i + batch_size]
            loss = train_step(model, opt, x_train[idx], y_train[idx])
            running = loss if running is None else 0.95 * running + 0.05 * loss
            if k % 20 == 0:
                elapsed = time.perf_counter() - t0
                bar.set_postfix(loss=f"{running:.4f}", samples_s=f"{(i + len(idx)) / max(elapsed, 1e-9):,.0f}", refresh=False)
        dt = time.perf_counter() - t0
        acc = evaluate(model, *test)
        log(f"epoch {epoch}: loss {running:.4f}, {dt:.1f} s ({n / dt:,.0f} samples/s), test accuracy {acc * 100:.2f}%")
        opt.lr *= lr_gamma
    return acc


def train_mlp(epochs=3, batch_size=64, lr=6e-3, seed=0, limit=None, progress=True, log=print):
    """Train the seed's MLP on MNIST with Adam (``lr`` times 0.4 after each epoch); returns
    the test accuracy (a fraction)."""
    from .datasets import mnist

    (xtr, ytr), (xte, yte) = mnist(flatten=True)
    if limit:
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[: max(limit // 6, 1)], yte[: max(limit // 6, 1)]
    model = mlp(rng=_random.manual_seed(seed))
    opt = optim.Adam(model.parameters(), lr=lr)
    return fit(model, opt, (xtr, ytr), (xte, yte), epochs, batch_size, seed, progress, log, lr_gamma=0.4)


# -- seq2seq: reverse a digit string (issue 5) ------------------------------------------------

PAD, SOS, EOS = 0, 1, 2
DIGITS = 10
SEQ_VOCAB = 3 + DIGITS  # PAD, SOS, EOS, digits 0-9 as ids 3..12


def reversal_data(n, rng, min_len=5, max_len=12, exclude=()):
    """``n`` distinct random digit strings (as tuples of token ids 3..12) of length
    ``min_len..max_len``, none of them in ``exclude``: the synthetic task of ``fastnn train seq2seq``
    (the target is the string reversed)."""
    seen = set(exclude)
    out = []
    while len(out) < n:
        s = tuple(rng.integers(3, 3 + DIGITS, rng.integers(min_len, max_len + 1)).tolist())
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def reversal_batch(seqs):
    """Time-major padded ids: ``src`` (max_len + 1, B) = string, EOS, PAD...; ``trg``
    (max_len + 2, B) = SOS, reversed string, EOS, PAD..."""
    L = max(len(s) for s in seqs)
    src = np.full((L + 1, len(seqs)), PAD, dtype=np.int64)
    trg = np.full((L + 2, len(seqs)), PAD, dtype=np.int64)
    for b, s in enumerate(seqs):
        src[: len(s) + 1, b] = s + (EOS,)
        trg[: len(s) + 2, b] = (SOS,) + s[::-1] + (EOS,)
    return src, trg


def seq2seq_model(vocab=SEQ_VOCAB, emb_dim=32, hid_dim=128, n_layers=1, dropout=0.1, dtype=np.float32, rng=None):
    """The seed's Encoder/AdditiveAttention/Decoder/Seq2Seq with source padding masked."""
    from . import models

    enc = models.Encoder(vocab, emb_dim, hid_dim, n_layers, dropout, dtype=dtype, rng=rng)
    att = nn.AdditiveAttention(hid_dim, hid_dim, dtype=dtype, rng=rng)
    dec = models.Decoder(vocab, emb_dim, hid_dim, n_layers, dropout, att, dtype=dtype, rng=rng)
    return models.Seq2Seq(enc, dec, src_pad_idx=PAD)


def sequence_loss(logits, trg, pad=PAD):
    """Mean cross-entropy over the non-padding target tokens, skipping position 0 (the SOS
    position, which the seed's Seq2Seq never predicts). Returns ``(loss, grad_logits)``."""
    T, B, V = logits.shape
    flat, tgt = logits[1:].reshape(-1, V), trg[1:].reshape(-1)
    keep = (tgt != pad).astype(logits.dtype)
    count = max(float(keep.sum()), 1.0)
    loss = float((F.cross_entropy(flat, tgt, reduction="none") * keep).sum() / count)
    grad = np.zeros_like(logits)
    grad[1:] = (F.cross_entropy_backward(flat, tgt, reduction="sum") * (keep / count)[:, None]).reshape(T - 1, B, V)
    return loss, grad


def clip_grad_norm(params, max_norm):
    """Scale all gradients so their global L2 norm is at most ``max_norm`` (``torch.nn.utils.clip_grad_norm_``)."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads)))
    if norm > max_norm:
        for g in grads:
            g *= max_norm / (norm + 1e-6)
    return norm


def sequence_accuracy(model, seqs, batch_size=500):
    """Exact-sequence accuracy of greedy decoding: every digit of the reversal and the EOS right."""
    correct = 0
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i : i + batch_size]
        src, trg = reversal_batch(chunk)
        out = model.generate(src, trg.shape[0] - 1, SOS, EOS)
        for b, s in enumerate(chunk):
            n = len(s) + 1
            correct += out.shape[0] >= n and np.array_equal(out[:n, b], trg[1 : n + 1, b])
    return correct / max(len(seqs), 1)


def train_seq2seq(epochs=3, batch_size=64, lr=3e-3, seed=0, limit=None, progress=True, log=print,
                  teacher_forcing_ratio=0.5):
    """Train the seed's seq2seq to reverse digit strings of length 5-12 with Adam.

    ``limit`` training sequences (default 20000), 500 for validation after each epoch and a
    held-out test set of 1000 (no string of the test or validation set is in the training
    set). Returns the exact-sequence test accuracy of greedy decoding (a fraction).
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    test = reversal_data(1000, rng)
    val = reversal_data(500, rng, exclude=test)
    train = reversal_data(limit or 20000, rng, exclude=test + val)
    model = seq2seq_model(rng=_random.manual_seed(seed))
    opt = optim.Adam(model.parameters(), lr=lr)
    tf_rng = np.random.default_rng(seed + 1)
    n = len(train)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        t0 = time.perf_counter()
        bar = tqdm(range(0, n, batch_size), desc=f"epoch {epoch}/{epochs}", unit="batch", disable=not progress, leave=True)
        running = None
        for k, i in enumerate(bar):
            src, trg = reversal_batch([train[j] for j in order[i : i + batch_size]])
            opt.zero_grad()
            logits = model(src, trg, teacher_forcing_ratio, rng=tf_rng)
            loss, grad = sequence_loss(logits, trg)
            model.backward(grad)
            clip_grad_norm(opt.params, 1.0)
            opt.step()
            running = loss if running is None else 0.95 * running + 0.05 * loss
            if k % 20 == 0:
                elapsed = time.perf_counter() - t0
                bar.set_postfix(loss=f"{running:.4f}", seqs_s=f"{(i + src.shape[1]) / max(elapsed, 1e-9):,.0f}", refresh=False)
        dt = time.perf_counter() - t0
        acc = sequence_accuracy(model, val)
        log(f"epoch {epoch}: loss {running:.4f}, {dt:.1f} s ({n / dt:,.0f} sequences/s), "
            f"validation exact-sequence accuracy {acc * 100:.2f}%")
    acc = sequence_accuracy(model, test)
    log(f"trained and evaluated in {time.perf_counter() - t_start:.1f} s; "
        f"held-out exact-sequence accuracy on {len(test)} reversals")
    return acc


def cnn(dtype=np.float32, rng=None):
    """The MNIST CNN of issue 3: conv 5x5 1->32, ReLU, max-pool 2, conv 3x3 32->64, ReLU,
    max-pool 2, linear 64*7*7 -> 10 (logits). Input (N, 1, 28, 28)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 10, dtype=dtype, rng=rng),
    )


def train_cnn(epochs=3, batch_size=64, lr=1e-3, seed=0, limit=None, progress=True, log=print):
    """Train :func:`cnn` on MNIST with Adam (lr 1e-3); returns the test accuracy (a fraction).

    Each epoch logs its time; the issue's target is >= 98.8 % test accuracy within 3 epochs.
    """
    from .datasets import mnist

    (xtr, ytr), (xte, yte) = mnist()
    xtr, xte = xtr[:, None], xte[:, None]  # (n, 1, 28, 28)
    if limit:
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[: max(limit // 6, 1)], yte[: max(limit // 6, 1)]
    model = cnn(rng=_random.manual_seed(seed))
    opt = optim.Adam(model.parameters(), lr=lr)
    return fit(model, opt, (xtr, ytr), (xte, yte), epochs, batch_size, seed, progress, log)


def resnet(dtype=np.float32, rng=None):
    """The small ResNet of ``fastnn train resnet`` (:class:`fastnn.models.ResNet` defaults:
    stem 16 channels at 28x28, one BasicBlock of 32 channels at 14x14, one of 64 at 7x7,
    global average pool, linear to 10)."""
    from .models import ResNet

    return ResNet(dtype=dtype, rng=rng)


def train_resnet(epochs=3, batch_size=64, lr=2e-3, seed=0, limit=None, progress=True, log=print):
    """Train :func:`resnet` on MNIST with Adam (``lr`` halved after each epoch); returns the
    test accuracy (a fraction). The issue's target is >= 99.0 % within 3 epochs."""
    from .datasets import mnist

    (xtr, ytr), (xte, yte) = mnist()
    xtr, xte = xtr[:, None], xte[:, None]  # (n, 1, 28, 28)
    if limit:
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[: max(limit // 6, 1)], yte[: max(limit // 6, 1)]
    model = resnet(rng=_random.manual_seed(seed))
    opt = optim.Adam(model.parameters(), lr=lr)
    return fit(model, opt, (xtr, ytr), (xte, yte), epochs, batch_size, seed, progress, log, lr_gamma=0.5)
