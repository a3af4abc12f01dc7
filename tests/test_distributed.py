"""fastnn.distributed on a real MPI: scenarios of tests/mpi_scenarios.py run under
``mpiexec -n 2`` (or 3: uneven shares), their results compared with one process.

Oracles: one process training on the concatenated batches (what data parallelism must equal,
to the dtype's rounding), torch's DistributedSampler (index sharding), and exact integer
arithmetic for the collectives. Bitwise equality across ranks is checked on the bytes.
The MPI tests skip without mpi4py or mpiexec (``make test`` installs both: mpi4py and the
mpich wheel are in the test extra).
"""
import json
import math
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnn
import mpi_scenarios as S
from fastnn import distributed as dist
from fastnn import train as fnn_train
from fnn_testing import assert_close

HERE = os.path.dirname(os.path.abspath(__file__))
# the mpiexec beside this interpreter (the mpich wheel's, matching the venv's mpi4py) first
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(not (dist.is_available() and MPIEXEC),
                               reason="needs mpi4py and mpiexec (pip install mpi4py mpich)")


def mpirun(n, argv, timeout=60, env=None):
    """``mpiexec -n n`` on ``argv`` (after the interpreter); a hang fails the test at ``timeout``."""
    full_env = dict(os.environ, FASTNN_NUM_THREADS="1", **(env or {}))
    try:
        return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *argv], capture_output=True, text=True,
                              timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpiexec -n {n} {argv} did not finish in {timeout} s (hang); output:\n{e.stdout}\n{e.stderr}")


def scenario(n, name, tmp_path, *args):
    """Run one scenario on n ranks; the list of what each rank returned."""
    p = mpirun(n, [os.path.join(HERE, "mpi_scenarios.py"), name, str(tmp_path), *map(str, args)])
    assert p.returncode == 0, f"rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    out = []
    for r in range(n):
        with open(tmp_path / f"rank{r}.pkl", "rb") as f:
            out.append(pickle.load(f))
    return out


# -- one-process reference -----------------------------------------------------------------

def reference_train(world, dtype, kind, n):
    """One process, one replica, each step on the union of the ranks' batches: the sampler's
    documented order (seed 3, epoch 0: default_rng(3).permutation(n), padded by repeating)
    cut into steps of world * BATCH consecutive positions."""
    model = S.make_model(dtype, seed=100)
    opt = S.make_opt(kind, model.parameters())
    x, y = S.make_data(n, dtype)
    share = math.ceil(n / world)
    order = np.resize(np.random.default_rng(3).permutation(n), share * world)
    history = [S.flat(model)]
    for k in range(0, share, S.BATCH):
        rows = order[k * world : min(k + S.BATCH, share) * world]
        opt.zero_grad()
        S.backward(model, x[rows], y[rows])
        opt.step()
        history.append(S.flat(model))
    return np.stack(history)


def local_grads(model, x, y, scale=1.0):
    model.zero_grad()
    S.backward(model, x, y, scale)
    return {n: p.grad.copy() for n, p in model.named_parameters()}


def assert_bitwise_equal_across_ranks(values, what):
    for r, v in enumerate(values[1:], 1):
        assert v.dtype == values[0].dtype and v.shape == values[0].shape, what
        assert v.tobytes() == values[0].tobytes(), f"{what}: rank {r} differs from rank 0"


# -- training equals one process, bit for bit across ranks ------------------------------------

@needs_mpi
@pytest.mark.parametrize("world, dtype, kind, bucket_mb, n", [
    (2, np.float64, "sgd", 25, 2 * S.BATCH * S.STEPS),          # one bucket
    (2, np.float32, "adam", 1e-4, 2 * S.BATCH * S.STEPS),       # a bucket per parameter
    (3, np.float64, "adam", 5e-4, 3 * S.BATCH * S.STEPS - 5),   # uneven: padded shares, short last batch
], ids=["2ranks-f64-sgd", "2ranks-f32-adam-buckets", "3ranks-uneven-f64-adam"])
def test_training_matches_one_process(tmp_path, world, dtype, kind, bucket_mb, n):
    ranks = scenario(world, "train", tmp_path, np.dtype(dtype).name, kind, bucket_mb, n)
    hist = [r["history"] for r in ranks]
    assert hist[0].shape[0] == S.STEPS + 1 and all(r["sync_calls"] == S.STEPS for r in ranks)
    for step in range(S.STEPS + 1):  # replicas identical after the broadcast and after every step
        assert_bitwise_equal_across_ranks([h[step] for h in hist], f"parameters after step {step}")
    ref = reference_train(world, dtype, kind, n)
    assert hist[0][0].tobytes() == ref[0].tobytes()  # rank 0's initial parameters, broadcast
    assert_close(hist[0], ref, dtype, scale=10 if dtype == np.float32 else 1)
    if bucket_mb < 25:
        assert len(ranks[0]["buckets"]) > 1
    else:
        assert ranks[0]["buckets"] == [4]
    assert list(ranks[0]["state"]) == ["module.0.weight", "module.0.bias", "module.2.weight", "module.2.bias"]


@needs_mpi
def test_no_sync_accumulation_equals_one_big_step(tmp_path):
    world, micro = 2, 3
    ranks = scenario(world, "no_sync", tmp_path, micro)
    x, y = S.make_data(world * micro * S.BATCH, seed=9)
    model = S.make_model()
    for r, res in enumerate(ranks):  # under no_sync: this rank's own accumulated gradients only
        assert res["sync_calls"] == 1
        acc = None
        for m, got in enumerate(res["local"]):
            rows = slice((m * world + r) * S.BATCH, (m * world + r + 1) * S.BATCH)
            g = local_grads(model, x[rows], y[rows], 1 / micro)
            acc = g if acc is None else {k: acc[k] + g[k] for k in g}
            for k in acc:
                assert_close(got["module." + k], acc[k], np.float64)
    for k in ranks[0]["synced"]:
        assert_bitwise_equal_across_ranks([res["synced"][k] for res in ranks], k)
    big = local_grads(model, x, y)  # one process, the mean over all micro-batches of all ranks
    for k in big:
        assert_close(ranks[0]["synced"]["module." + k], big[k], np.float64)
    opt = S.optim.SGD(model.parameters(), lr=0.5)
    opt.step()
    for k, v in model.state_dict().items():
        assert_bitwise_equal_across_ranks([res["state"]["module." + k] for res in ranks], k)
        assert_close(ranks[0]["state"]["module." + k], v, np.float64)


@needs_mpi
def test_mixed_dtypes_single_parameter_buckets_and_missing_gradients(tmp_path):
    ranks = scenario(2, "ddp_misc", tmp_path)
    x, y = S.make_data(2 * S.BATCH, seed=13)
    r = np.random.default_rng(100)
    mixed = S.nn.Sequential(S.nn.Linear(S.IN, S.HID, dtype=np.float64, rng=r), S.nn.Tanh(),
                            S.nn.Linear(S.HID, S.OUT, dtype=np.float32, rng=r))
    per_rank = [local_grads(mixed, x[k * S.BATCH : (k + 1) * S.BATCH], y[k * S.BATCH : (k + 1) * S.BATCH])
                for k in range(2)]
    assert ranks[0]["mixed_buckets"] == [2, 2]  # the float32 layer, then the float64 one
    for k in per_rank[0]:
        got = [res["mixed_grads"]["module." + k] for res in ranks]
        assert_bitwise_equal_across_ranks(got, k)
        assert got[0].dtype == per_rank[0][k].dtype
        assert_close(got[0], (per_rank[0][k] + per_rank[1][k]) / 2, np.float32)  # float32 layer on top

    assert ranks[0]["tiny_buckets"] == [1, 1, 1, 1]
    loc = [res["local_missing"] for res in ranks]
    syn = [res["synced_missing"] for res in ranks]
    for res in syn:
        assert res["module.2.weight"] is None  # no rank had it: stays None
    for k in ("module.0.weight", "module.0.bias"):
        assert_bitwise_equal_across_ranks([s[k] for s in syn], k)
        assert_close(syn[0][k], (loc[0][k] + loc[1][k]) / 2)
    assert loc[1]["module.2.bias"] is None  # rank 1 had none: counted as zero
    assert_bitwise_equal_across_ranks([s["module.2.bias"] for s in syn], "2.bias")
    assert_close(syn[0]["module.2.bias"], loc[0]["module.2.bias"] / 2)


# -- collectives and bad input -------------------------------------------------------------

@needs_mpi
@pytest.mark.parametrize("world", [2, 3])
def test_collectives(tmp_path, world):
    ranks = scenario(world, "collectives", tmp_path)
    total = sum(range(1, world + 1))
    base = np.arange(12).reshape(3, 4)
    x, y = S.make_data(101, seed=11)
    with fastnn.use_backend("numpy"):
        expected_acc = fnn_train.evaluate(S.make_model(seed=5), x, y)
    for r, res in enumerate(ranks):
        assert (res["rank"], res["world"], res["local"]) == (r, world, world)
        for dt in (np.float32, np.float64, np.int32, np.int64):
            got = res[f"sum_{np.dtype(dt).name}"]
            assert got.dtype == dt and np.array_equal(got, base * total)
        np.testing.assert_array_equal(res["mean_readonly"], base * total / world)
        np.testing.assert_array_equal(res["sum_noncontig"], np.arange(24.0).reshape(3, 8)[:, ::2] * total)
        assert res["input_unchanged"]
        assert res["sum_scalar"].shape == () and res["sum_scalar"] == world * (world - 1) / 2 + world / 2
        assert res["sum_empty"].shape == (0, 3) and res["sum_empty"].dtype == np.float32
        assert res["bcast0"].dtype == np.float32 and np.array_equal(res["bcast0"], np.zeros(5))
        assert np.array_equal(res["bcast_last"], np.full((2, 2), world - 1))
        assert res["still_in_step"].tolist() == [world]
        assert res["accuracy"] == expected_acc
        err = res["errors"]
        expect = {"op": ("ValueError", "op"), "mean_int": ("TypeError", "mean"), "bool": ("TypeError", "bool"),
                  "none": ("TypeError", "NoneType"), "shape": ("ValueError", "same shape"),
                  "dtype": ("ValueError", "same shape and dtype"), "bcast_shape": ("ValueError", "same shape"),
                  "root_range": ("IndexError", f"[0, {world})"), "root_type": ("TypeError", "root"),
                  "ddp_module": ("TypeError", "module"), "ddp_noparams": ("ValueError", "none"),
                  "ddp_bucket0": ("ValueError", "bucket_mb"), "ddp_bucketnan": ("ValueError", "bucket_mb"),
                  "ddp_bucketbool": ("ValueError", "bucket_mb")}
        for case, (cls, text) in expect.items():
            assert err[case] is not None, f"{case}: no error on rank {r}"
            assert cls in err[case][0] and text in err[case][1], (case, err[case])
            assert err[case] == ranks[0]["errors"][case], f"{case}: rank {r} got another error than rank 0"


@needs_mpi
def test_mismatched_models_are_refused_on_every_rank(tmp_path):
    ranks = scenario(2, "mismatch", tmp_path)
    expect = {"shape": ["'0.weight'", "shape (12, 7)", "shape (13, 7)"],
              "count": ["'4.weight'", "rank 1 has it, rank 0 lacks it"],
              "dtype": ["'0.weight'", "float32 on rank 1", "float64 on rank 0"],
              "fewer": ["'4.weight'", "rank 1 lacks it, rank 0 has it"]}
    for case, parts in expect.items():
        for res in ranks:
            names, msg = res["errors"][case]
            assert "ValueError" in names
            for part in parts:
                assert part in msg, (case, msg)
        assert ranks[0]["errors"][case] == ranks[1]["errors"][case]


@needs_mpi
@pytest.mark.parametrize("how", ["excepthook", "context"])
def test_a_failing_rank_ends_the_job_with_its_error(tmp_path, how):
    p = mpirun(2, [os.path.join(HERE, "mpi_scenarios.py"), "fail", str(tmp_path), how], timeout=30)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "RuntimeError: boom from rank 1 at step 5" in out, out
    assert "rank 1 of 2 failed" in out, out
    assert not (tmp_path / "rank0.pkl").exists()  # rank 0 did not finish either


# -- the command line ----------------------------------------------------------------------

@needs_mpi
def test_cli_distributed_training(tmp_path):
    from test_datasets_cli import write_idx

    write_idx(tmp_path, n_train=640, n_test=160)
    p = mpirun(2, ["-m", "fastnn", "train", "mlp", "--distributed", "--threads", "1", "--backend", "numpy",
                   "--epochs", "2", "--no-progress"], env={"FASTNN_DATA": str(tmp_path)}, timeout=90)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    acc = [ln for ln in lines if ln.startswith("test accuracy:")]
    assert len(acc) == 1 and "(2 ranks, 1 threads each)" in acc[0], p.stdout  # rank 0 alone prints
    assert sum(ln.startswith("epoch ") for ln in lines) == 2, p.stdout
    assert "gradient allreduce" in p.stdout
    assert "2 ranks x 32 samples per step (batch 64)" in p.stdout  # the default batch, split
    assert float(acc[0].split()[2].rstrip("%")) > 50  # the fake digits are learnable: it trained


def test_cli_distributed_refuses_seq2seq(capsys):
    assert fastnn.cli.main(["train", "seq2seq", "--distributed"]) == 2
    assert "mlp or cnn" in capsys.readouterr().err


# -- without MPI ---------------------------------------------------------------------------

def test_import_fastnn_does_not_import_mpi():
    code = "import sys, fastnn, fastnn.cli; print('mpi4py' in sys.modules, 'fastnn.distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_without_mpi4py_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    assert dist.is_available() is False
    with pytest.raises(ImportError, match=r"pip install 'fastnn\[distributed\]'.*mpi4py mpich"):
        dist.init()
    assert fastnn.cli.main(["train", "mlp", "--distributed"]) == 2
    assert "pip install 'fastnn[distributed]'" in capsys.readouterr().err
    assert not dist.is_initialized()


def test_not_initialised():
    for fn in (dist.get_rank, dist.get_world_size, dist.barrier, lambda: dist.all_reduce(np.ones(2)),
               lambda: dist.DistributedDataParallel(S.make_model()), lambda: dist.DistributedSampler(10)):
        with pytest.raises(ValueError, match=r"call fastnn.distributed.init\(\) first"):
            fn()


# -- DistributedSampler: torch's semantics -------------------------------------------------

@given(n=st.integers(0, 60), replicas=st.integers(1, 7), drop_last=st.booleans())
def test_sampler_matches_torch_without_shuffle(torch, n, replicas, drop_last):
    from torch.utils.data import DistributedSampler as TorchSampler

    for rank in range(replicas):
        ours = dist.DistributedSampler(n, replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = TorchSampler(list(range(n)), replicas, rank, shuffle=False, drop_last=drop_last)
        assert len(ours) == len(theirs)
        assert ours.indices().tolist() == list(theirs) == list(ours)


@given(n=st.integers(1, 60), replicas=st.integers(1, 7), drop_last=st.booleans(), seed=st.integers(0, 2**31))
def test_sampler_shuffled_shares(n, replicas, drop_last, seed):
    def shares(epoch, s=seed):
        out = []
        for r in range(replicas):
            sm = dist.DistributedSampler(list(range(n)), replicas, r, shuffle=True, seed=s, drop_last=drop_last)
            sm.set_epoch(epoch)
            out.append(sm.indices())
        return out

    a = shares(0)
    assert len({len(s) for s in a}) == 1  # equal shares
    union = np.concatenate(a)
    if drop_last:
        assert len(union) == n - n % replicas and len(np.unique(union)) == len(union)  # disjoint, none repeated
    else:
        assert len(union) == math.ceil(n / replicas) * replicas and set(union.tolist()) == set(range(n))
        assert len(union) - len(np.unique(union)) == len(union) - n  # only the padding repeats
    assert all(np.array_equal(s, t) for s, t in zip(a, shares(0)))  # same seed and epoch: same shares
    if n >= 8:  # another epoch or another seed: another order
        assert not np.array_equal(np.concatenate(shares(1)), union)
        assert not np.array_equal(np.concatenate(shares(0, seed + 1)), union)


def test_sampler_bad_input():
    D = dist.DistributedSampler
    with pytest.raises(TypeError, match="dataset"):
        D("abc", 2, 0)
    with pytest.raises(TypeError, match="dataset"):
        D(None, 2, 0)
    with pytest.raises(ValueError, match="dataset: expected a number of samples >= 0, got -1"):
        D(-1, 2, 0)
    with pytest.raises(ValueError, match="num_replicas"):
        D(10, 0, 0)
    with pytest.raises(TypeError, match="num_replicas"):
        D(10, 2.0, 0)
    with pytest.raises(IndexError, match=r"rank: expected a rank in \[0, 2\), got 2"):
        D(10, 2, 2)
    with pytest.raises(IndexError, match="rank"):
        D(10, 2, -1)
    with pytest.raises(TypeError, match="rank"):
        D(10, 2, True)
    with pytest.raises(TypeError, match="seed"):
        D(10, 2, 0, seed=1.5)
    with pytest.raises(TypeError, match="epoch"):
        D(10, 2, 0).set_epoch("1")


def test_shard_covers_every_item_once():
    for n in (0, 1, 7, 10, 101):
        for world in (1, 2, 3, 7):
            parts = [np.arange(n)[dist.shard(n, r, world)] for r in range(world)]
            assert np.array_equal(np.concatenate(parts), np.arange(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


# -- the measurements behind docs/distributed.md ---------------------------------------------

def test_bench_model_fits_and_formula(tmp_path, capsys):
    from fastnn.distributed import bench

    alpha, beta = 20e-6, 4e9  # synthetic measurements with a known latency and bandwidth
    rows = [{"bytes": b, "min_s": alpha + b / beta, "median_s": 2 * (alpha + b / beta)} for b in bench.SIZES]
    lat, bw = bench.fit_allreduce(rows)
    assert lat == pytest.approx(alpha + 4 / beta) and bw == pytest.approx(beta, rel=1e-6)
    assert bench.allreduce_time(1e6, 1, alpha, beta) == 0
    assert bench.allreduce_time(1e6, 4, alpha, beta) == pytest.approx(4 * alpha + 1.5 * 1e6 / beta)
    t0, c = 1e-3, 2e-5
    batches = {str(b): {"min_s": t0 + c * b, "median_s": 0.0} for b in (1, 2, 4, 8, 64)}
    assert bench.fit_compute(batches) == pytest.approx((t0, c))
    (tmp_path / "ar.json").write_text(json.dumps({"world": 2, "rows": rows}))
    (tmp_path / "cp.json").write_text(json.dumps(
        {"threads": 1, "models": {"m": {"grad_bytes": 10**6, "batches": batches}}}))
    bench.main(["model", str(tmp_path / "ar.json"), str(tmp_path / "cp.json"), "--global-batch", "64"])
    out = capsys.readouterr().out
    t1, t2 = t0 + c * 64, t0 + c * 32 + bench.allreduce_time(10**6, 2, lat, bw)
    assert f"| {t1 * 1e3:.2f} (1.0x) | {t2 * 1e3:.2f} ({t1 / t2:.1f}x) |" in out


@needs_mpi
def test_bench_allreduce_runs(tmp_path):
    p = mpirun(2, ["-m", "fastnn.distributed.bench", "allreduce", "--seconds", "0.01", "--max-bytes", "4096",
                   "--out", str(tmp_path / "ar.json")])
    assert p.returncode == 0, p.stdout + p.stderr
    rows = json.loads((tmp_path / "ar.json").read_text())["rows"]
    assert [r["bytes"] for r in rows] == [4, 16, 64, 256, 1024, 4096]
    assert all(0 < r["min_s"] <= r["median_s"] for r in rows)
