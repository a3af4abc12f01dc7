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


def count_correct(model, x, y, batch_size=1000):
    """Number of samples of ``(x, y)`` that ``model`` classifies right (eval mode, no caches kept)."""
    model.eval()
    correct = 0
    with nn.no_grad():
        for i in range(0, len(x), batch_size):
            correct += int((model(x[i : i + batch_size]).argmax(axis=1) == y[i : i + batch_size]).sum())
    model.train()
    return correct


def evaluate(model, x, y, batch_size=1000):
    """Classification accuracy of ``model`` on ``(x, y)`` (eval mode, no caches kept)."""
    return count_correct(model, x, y, batch_size) / max(len(x), 1)


def fit(model, opt, train, test, epochs, batch_size, seed=0, progress=True, log=print, lr_gamma=1.0):
    """Mini-batch training with a tqdm progress bar (loss, samples/s); returns the test accuracy.

    ``lr_gamma`` multiplies the learning rate after each epoch (an ``ExponentialLR``).
    """
    from tqdm import tqdm

    x_train, y_train = train
    sched = optim.lr_scheduler.ExponentialLR(opt, lr_gamma)
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
        sched.step()
    return acc


MNIST_LR = {"mlp": 6e-3, "cnn": 1e-3, "resnet": 2e-3}  # Adam's learning rate of each ``fastnn train`` model
MNIST_LR_GAMMA = {"mlp": 0.4, "cnn": 1.0, "resnet": 0.5}  # and its decay per epoch


def mnist_setup(name, lr=None, seed=0, limit=None):
    """What ``fastnn train mlp|cnn`` trains: ``(model, optimiser, (x_train, y_train), (x_test,
    y_test), lr_gamma)``; ``limit`` keeps the first ``limit`` training and ``limit // 6`` test
    samples."""
    from .datasets import mnist

    (xtr, ytr), (xte, yte) = mnist(flatten=name == "mlp")
    if name != "mlp":
        xtr, xte = xtr[:, None], xte[:, None]  # (n, 1, 28, 28)
    if limit:
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[: max(limit // 6, 1)], yte[: max(limit // 6, 1)]
    model = {"mlp": mlp, "cnn": cnn, "resnet": resnet}[name](rng=_random.manual_seed(seed))
    opt = optim.Adam(model.parameters(), lr=MNIST_LR[name] if lr is None else lr)
    return model, opt, (xtr, ytr), (xte, yte), MNIST_LR_GAMMA[name]


def train_mlp(epochs=3, batch_size=64, lr=MNIST_LR["mlp"], seed=0, limit=None, progress=True, log=print):
    """Train the seed's MLP on MNIST with Adam (``lr`` times 0.4 after each epoch); returns
    the test accuracy (a fraction)."""
    model, opt, train, test, gamma = mnist_setup("mlp", lr, seed, limit)
    return fit(model, opt, train, test, epochs, batch_size, seed, progress, log, lr_gamma=gamma)


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


def seq2seq_model(vocab=SEQ_VOCAB, emb_dim=32, hid_dim=128, n_layers=1, dropout=0.1, dtype=np.float32, rng=None,
                  rnn_type="lstm"):
    """The seed's Encoder/AdditiveAttention/Decoder/Seq2Seq with source padding masked
    (``rnn_type="gru"``: GRU encoder and decoder)."""
    from . import models

    enc = models.Encoder(vocab, emb_dim, hid_dim, n_layers, dropout, dtype=dtype, rng=rng, rnn_type=rnn_type)
    att = nn.AdditiveAttention(hid_dim, hid_dim, dtype=dtype, rng=rng)
    dec = models.Decoder(vocab, emb_dim, hid_dim, n_layers, dropout, att, dtype=dtype, rng=rng, rnn_type=rnn_type)
    return models.Seq2Seq(enc, dec, src_pad_idx=PAD)


SCHEDULERS = ("none", "step", "exponential", "cosine", "onecycle", "plateau")


def make_scheduler(name, opt, epochs, steps_per_epoch):
    """A learning-rate schedule for the seq2seq training loop, by name (``--scheduler``).

    Returns ``(scheduler, per_batch)``: ``per_batch`` schedulers step after every optimiser
    step, the others once per epoch (``plateau`` with the validation accuracy).

    * ``none``: constant rate;
    * ``step``: ``StepLR(step_size=1, gamma=0.5)``, halve after every epoch;
    * ``exponential``: ``ExponentialLR(gamma=0.7)`` per epoch;
    * ``cosine``: ``CosineAnnealingLR`` to 0 over all batches;
    * ``onecycle``: ``OneCycleLR(max_lr=lr)`` over all batches (warm-up, then anneal);
    * ``plateau``: ``ReduceLROnPlateau(mode="max", factor=0.5, patience=0)`` on validation accuracy.
    """
    S = optim.lr_scheduler
    lr = opt.param_groups[0]["lr"]
    total = max(1, epochs * steps_per_epoch)
    if name == "none":
        return None, False
    if name == "step":
        return S.StepLR(opt, step_size=1, gamma=0.5), False
    if name == "exponential":
        return S.ExponentialLR(opt, gamma=0.7), False
    if name == "cosine":
        return S.CosineAnnealingLR(opt, T_max=total), True
    if name == "onecycle":
        return S.OneCycleLR(opt, max_lr=lr, total_steps=total), True
    if name == "plateau":
        return S.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=0), False
    raise ValueError(f"scheduler: expected one of {SCHEDULERS}, got {name!r}")


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
                  teacher_forcing_ratio=0.5, clip=1.0, scheduler="none", rnn_type="lstm"):
    """Train the seed's seq2seq to reverse digit strings of length 5-12 with Adam.

    ``limit`` training sequences (default 20000), 500 for validation after each epoch and a
    held-out test set of 1000 (no string of the test or validation set is in the training
    set). ``clip``: the gradients' global L2 norm is clipped to it before each step
    (``nn.utils.clip_grad_norm_``; 0 turns clipping off). ``scheduler``: a learning-rate
    schedule by name (:func:`make_scheduler`). ``rnn_type``: "lstm" (the seed's) or "gru".
    Returns the exact-sequence test accuracy of greedy decoding (a fraction).
    """
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip >= 0:
        raise ValueError(f"clip: expected a number >= 0 (0: no clipping), got {clip!r}")
    from tqdm import tqdm

    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    test = reversal_data(1000, rng)
    val = reversal_data(500, rng, exclude=test)
    train = reversal_data(limit or 20000, rng, exclude=test + val)
    model = seq2seq_model(rng=_random.manual_seed(seed), rnn_type=rnn_type)
    opt = optim.Adam(model.parameters(), lr=lr)
    tf_rng = np.random.default_rng(seed + 1)
    n = len(train)
    sched, per_batch = make_scheduler(scheduler, opt, epochs, -(-n // batch_size))
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
            if clip:
                nn.utils.clip_grad_norm_(opt.params, clip)
            opt.step()
            if per_batch:
                sched.step()
            running = loss if running is None else 0.95 * running + 0.05 * loss
            if k % 20 == 0:
                elapsed = time.perf_counter() - t0
                bar.set_postfix(loss=f"{running:.4f}", seqs_s=f"{(i + src.shape[1]) / max(elapsed, 1e-9):,.0f}", refresh=False)
        dt = time.perf_counter() - t0
        acc = sequence_accuracy(model, val)
        log(f"epoch {epoch}: loss {running:.4f}, {dt:.1f} s ({n / dt:,.0f} sequences/s), "
            f"validation exact-sequence accuracy {acc * 100:.2f}%, lr {opt.param_groups[0]['lr']:.3g}")
        if sched is not None and not per_batch:
            sched.step(acc) if scheduler == "plateau" else sched.step()
    acc = sequence_accuracy(model, test)
    log(f"trained and evaluated in {time.perf_counter() - t_start:.1f} s; "
        f"held-out exact-sequence accuracy on {len(test)} reversals")
    return acc


def train_gru_seq2seq(**kwargs):
    """:func:`train_seq2seq` with a GRU encoder and decoder (``fastnn train gru-seq2seq``)."""
    return train_seq2seq(rnn_type="gru", **kwargs)


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


def train_cnn(epochs=3, batch_size=64, lr=MNIST_LR["cnn"], seed=0, limit=None, progress=True, log=print):
    """Train :func:`cnn` on MNIST with Adam (lr 1e-3); returns the test accuracy (a fraction).

    Each epoch logs its time; the issue's target is >= 98.8 % test accuracy within 3 epochs.
    """
    model, opt, train, test, gamma = mnist_setup("cnn", lr, seed, limit)
    return fit(model, opt, train, test, epochs, batch_size, seed, progress, log, lr_gamma=gamma)


def resnet(dtype=np.float32, rng=None):
    """The small ResNet of ``fastnn train resnet`` (:class:`fastnn.models.ResNet` defaults:
    stem 16 channels at 28x28, one BasicBlock of 32 channels at 14x14, one of 64 at 7x7,
    global average pool, linear to 10)."""
    from .models import ResNet

    return ResNet(dtype=dtype, rng=rng)


def train_resnet(epochs=3, batch_size=64, lr=MNIST_LR["resnet"], seed=0, limit=None, progress=True, log=print):
    """Train :func:`resnet` on MNIST with Adam (``lr`` halved after each epoch); returns the
    test accuracy (a fraction). The issue's target is >= 99.0 % within 3 epochs."""
    model, opt, train, test, gamma = mnist_setup("resnet", lr, seed, limit)
    return fit(model, opt, train, test, epochs, batch_size, seed, progress, log, lr_gamma=gamma)
