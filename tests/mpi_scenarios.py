"""Programs that tests/test_distributed.py runs under ``mpiexec -n N`` (one per scenario).

``python mpi_scenarios.py SCENARIO OUTDIR [ARGS...]``: every rank writes what it saw to
``OUTDIR/rank<r>.pkl``; the test compares those files with what one process computes. The
model and data builders are shared with the test so both sides train the same thing.
"""
import os
import pickle
import sys

import numpy as np

import fastnn
from fastnn import functional as F
from fastnn import nn, optim

IN, HID, OUT = 7, 13, 5
BATCH = 4  # per rank
STEPS = 20


def make_model(dtype=np.float64, seed=100, hidden=HID, extra=False):
    r = np.random.default_rng(seed)
    layers = [nn.Linear(IN, hidden, dtype=dtype, rng=r), nn.Tanh(), nn.Linear(hidden, OUT, dtype=dtype, rng=r)]
    if extra:
        layers += [nn.Tanh(), nn.Linear(OUT, OUT, dtype=dtype, rng=r)]
    return nn.Sequential(*layers)


def make_data(n, dtype=np.float64, seed=7):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, IN)).astype(dtype), r.integers(0, OUT, n)


def make_opt(kind, params):
    return optim.SGD(params, lr=0.1, momentum=0.9) if kind == "sgd" else optim.Adam(params, lr=1e-2)


def backward(model, x, y, scale=1.0):
    """Mean cross-entropy on (x, y): forward, backward (accumulating p.grad), loss."""
    logits = model(x)
    model.backward(F.cross_entropy_backward(logits, y) * scale)
    return F.cross_entropy(logits, y)


def flat(model):
    return np.concatenate([p.data.ravel() for p in model.parameters()])


def grads(model):
    return {n: None if p.grad is None else p.grad.copy() for n, p in model.named_parameters()}


def errors(cases):
    """Run each ``name: callable`` and keep ``(exception class names (MRO), message)``, or None."""
    out = {}
    for name, fn in cases.items():
        try:
            fn()
            out[name] = None
        except Exception as e:  # noqa: BLE001 - recorded for the test to judge
            out[name] = ([c.__name__ for c in type(e).__mro__], str(e))
    return out


# -- scenarios -----------------------------------------------------------------------------

def collectives(dist, comm):
    rank, world = comm.Get_rank(), comm.Get_size()
    res = {"rank": rank, "world": world, "local": dist.get_local_world_size()}
    dist.barrier()
    for dt in (np.float32, np.float64, np.int32, np.int64):
        a = (np.arange(12).reshape(3, 4) * (rank + 1)).astype(dt)
        res[f"sum_{np.dtype(dt).name}"] = dist.all_reduce(a)
    ro = (np.arange(12.0).reshape(3, 4) * (rank + 1))
    ro.setflags(write=False)
    res["mean_readonly"] = dist.all_reduce(ro, op="mean")
    nc = np.arange(24.0).reshape(3, 8) * (rank + 1)
    before = nc.copy()
    res["sum_noncontig"] = dist.all_reduce(nc[:, ::2])
    res["input_unchanged"] = bool(np.array_equal(nc, before))
    res["sum_scalar"] = dist.all_reduce(np.float64(rank + 0.5))
    res["sum_empty"] = dist.all_reduce(np.zeros((0, 3), np.float32))
    res["bcast0"] = dist.broadcast(np.full(5, rank, np.float32), root=0)
    res["bcast_last"] = dist.broadcast(np.full((2, 2), rank, np.int64), root=world - 1)
    # every rank must get the same error (nobody is left waiting in a collective)
    res["errors"] = errors({
        "op": lambda: dist.all_reduce(np.ones(3), op="max"),
        "mean_int": lambda: dist.all_reduce(np.ones(3, np.int64), op="mean"),
        "bool": lambda: dist.all_reduce(np.ones(3, bool)),
        "none": lambda: dist.all_reduce(None),
        "shape": lambda: dist.all_reduce(np.ones(3 + (rank == 1))),
        "dtype": lambda: dist.all_reduce(np.ones(3, np.float32 if rank == 1 else np.float64)),
        "bcast_shape": lambda: dist.broadcast(np.ones((2, 1 + (rank == world - 1)))),
        "root_range": lambda: dist.broadcast(np.ones(3), root=world),
        "root_type": lambda: dist.broadcast(np.ones(3), root="0"),
        "ddp_module": lambda: dist.DistributedDataParallel(lambda x: x),
        "ddp_noparams": lambda: dist.DistributedDataParallel(nn.Tanh()),
        "ddp_bucket0": lambda: dist.DistributedDataParallel(make_model(), bucket_mb=0),
        "ddp_bucketnan": lambda: dist.DistributedDataParallel(make_model(), bucket_mb=float("nan")),
        "ddp_bucketbool": lambda: dist.DistributedDataParallel(make_model(), bucket_mb=True),
    })
    res["still_in_step"] = dist.all_reduce(np.array([1], np.int64))  # the group still works
    x, y = make_data(101, seed=11)
    res["accuracy"] = dist.evaluate(make_model(seed=5), x, y, batch_size=7)
    return res


def train(dist, comm, dtype, kind, bucket_mb, n):
    """STEPS steps of data-parallel training on shares of a DistributedSampler; replicas start
    from different parameters (rank-seeded) that the DDP broadcast must make equal."""
    rank, world = comm.Get_rank(), comm.Get_size()
    dtype = np.dtype(dtype)
    model = dist.DistributedDataParallel(make_model(dtype, seed=100 + rank), bucket_mb=float(bucket_mb))
    opt = make_opt(kind, model.parameters())
    x, y = make_data(int(n), dtype)
    sampler = dist.DistributedSampler(len(x), shuffle=True, seed=3)
    sampler.set_epoch(0)
    idx = sampler.indices()
    history = [flat(model)]
    for k in range(0, len(idx), BATCH):
        opt.zero_grad()
        backward(model, x[idx[k : k + BATCH]], y[idx[k : k + BATCH]])
        opt.step()
        history.append(flat(model))
    return {"history": np.stack(history), "buckets": model.bucket_sizes, "state": model.state_dict(),
            "sync_calls": model.sync_calls}


def no_sync(dist, comm, micro):
    """``micro`` micro-batches per rank, all but the last under no_sync, then one SGD step."""
    rank, world = comm.Get_rank(), comm.Get_size()
    micro = int(micro)
    model = dist.DistributedDataParallel(make_model())
    opt = optim.SGD(model.parameters(), lr=0.5)
    x, y = make_data(world * micro * BATCH, seed=9)
    local = []
    for m in range(micro):
        rows = slice((m * world + rank) * BATCH, (m * world + rank + 1) * BATCH)
        if m < micro - 1:
            with model.no_sync():
                backward(model, x[rows], y[rows], 1 / micro)
            local.append(grads(model))  # nothing exchanged yet: this rank's sum so far
        else:
            backward(model, x[rows], y[rows], 1 / micro)
    synced = grads(model)
    opt.step()
    return {"local": local, "synced": synced, "state": model.state_dict(), "sync_calls": model.sync_calls}


def ddp_misc(dist, comm):
    """Mixed dtypes (one bucket each), one bucket per parameter, gradients missing on some ranks."""
    rank = comm.Get_rank()
    r = np.random.default_rng(100)
    mixed = nn.Sequential(nn.Linear(IN, HID, dtype=np.float64, rng=r), nn.Tanh(),
                          nn.Linear(HID, OUT, dtype=np.float32, rng=r))
    ddp = dist.DistributedDataParallel(mixed, bucket_mb=25)
    x, y = make_data(2 * BATCH, seed=13)
    backward(ddp, x[rank * BATCH : (rank + 1) * BATCH], y[rank * BATCH : (rank + 1) * BATCH])
    res = {"mixed_buckets": ddp.bucket_sizes, "mixed_grads": grads(ddp)}
    tiny = dist.DistributedDataParallel(make_model(), bucket_mb=1e-9)
    res["tiny_buckets"] = tiny.bucket_sizes
    logits = tiny.module(x[rank * BATCH : (rank + 1) * BATCH])
    tiny.module.backward(F.cross_entropy_backward(logits, y[rank * BATCH : (rank + 1) * BATCH]))
    params = dict(tiny.named_parameters())
    params["module.2.weight"].grad = None  # on every rank: stays None
    if rank == 1:
        params["module.2.bias"].grad = None  # on rank 1 only: counts as zero there
    res["local_missing"] = grads(tiny)
    tiny.sync_gradients()
    res["synced_missing"] = grads(tiny)
    return res


def mismatch(dist, comm):
    rank = comm.Get_rank()
    odd = rank == comm.Get_size() - 1
    return {"errors": errors({
        "shape": lambda: dist.DistributedDataParallel(make_model(hidden=HID - 1 if odd else HID)),
        "count": lambda: dist.DistributedDataParallel(make_model(extra=odd)),
        "dtype": lambda: dist.DistributedDataParallel(make_model(np.float32 if odd else np.float64)),
        "fewer": lambda: dist.DistributedDataParallel(make_model(extra=not odd)),
    })}


def fail(dist, comm, how):
    """Rank 1 raises at step 5 of a training loop; the others go on to their next allreduce."""
    rank = comm.Get_rank()
    model = dist.DistributedDataParallel(make_model())
    opt = make_opt("sgd", model.parameters())
    x, y = make_data(64)

    def loop():
        for step in range(1000):
            if rank == 1 and step == 5:
                raise RuntimeError(f"boom from rank {rank} at step {step}")
            opt.zero_grad()
            backward(model, x[:BATCH], y[:BATCH])
            opt.step()

    if how == "context":
        with dist.abort_on_error():
            loop()
    else:
        loop()  # uncaught: the excepthook that init() installed aborts the job
    return {}


def main():
    scenario, outdir, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    fastnn.set_num_threads(1)
    fastnn.set_backend("numpy")  # short-lived ranks: no JIT compilation
    from fastnn import distributed as dist

    comm = dist.init()
    res = globals()[scenario](dist, comm, *args)
    with open(os.path.join(outdir, f"rank{comm.Get_rank()}.pkl"), "wb") as f:
        pickle.dump(res, f)


if __name__ == "__main__":
    main()
