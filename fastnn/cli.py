"""The ``fastnn`` command: ``info``, ``train <model>``, ``bench``, ``inspect FILE``."""
import argparse
import os
import sys

MODELS = ("mlp", "seq2seq", "gru-seq2seq", "cnn", "resnet")


def _info(args):
    import numba
    import numpy as np
    from threadpoolctl import threadpool_info

    import fastnn

    print(f"fastnn {fastnn.__version__}")
    print(f"backends: {', '.join(fastnn.backends())} (default: {fastnn.get_backend()})")
    from . import _config
    from .kernels.dense import numba_impl  # run one parallel kernel so Numba picks its threading layer

    _config.sync_numba_threads()
    numba_impl.relu_forward(np.ones(4), np.empty(4))
    print(f"threads: {fastnn.get_num_threads()} (numba: {numba.get_num_threads()}, "
          f"threading layer {numba.threading_layer()})")
    print(f"numpy {np.__version__}, numba {numba.__version__}")
    for lib in threadpool_info():
        print(
            f"{lib['user_api']}: {lib['internal_api']} {lib.get('version') or ''} "
            f"{lib.get('architecture') or ''} threads={lib['num_threads']} ({lib['prefix']})"
        )
    return 0


def _train(args):
    import fastnn
    from fastnn import train

    if args.distributed:
        return _train_distributed(args)
    if args.threads:
        fastnn.set_num_threads(args.threads)
    runner = {"mlp": train.train_mlp, "seq2seq": train.train_seq2seq, "gru-seq2seq": train.train_gru_seq2seq,
              "cnn": train.train_cnn, "resnet": train.train_resnet}[args.model]
    kwargs = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, limit=args.limit,
                  progress=not args.no_progress)
    if args.lr is not None:
        kwargs["lr"] = args.lr
    seq = args.model.endswith("seq2seq")
    for opt in ("clip", "scheduler"):
        value = getattr(args, opt)
        if value is not None:
            if not seq:
                raise ValueError(f"--{opt}: only the seq2seq models take it, not {args.model}")
            kwargs[opt] = value
    with fastnn.use_backend(args.backend):
        acc = runner(**kwargs)
    print(f"test accuracy: {acc * 100:.2f}%")
    return 0


def _train_distributed(args):
    """``mpiexec -n N fastnn train mlp|cnn --distributed``: every rank runs this; rank 0 prints."""
    import fastnn
    from ._config import _cpu_count

    if args.model not in ("mlp", "cnn"):
        raise ValueError(f"--distributed: expected the model mlp or cnn, got {args.model}")
    from . import distributed as dist  # only here: `import fastnn` never imports mpi4py

    try:
        comm = dist.init()  # an uncaught exception on any rank now aborts the whole job
    except ImportError as e:
        print(f"fastnn: error: {e}", file=sys.stderr)
        return 2
    with dist.abort_on_error(comm):  # one rank's error (even a ValueError) ends every rank
        if args.threads:
            fastnn.set_num_threads(args.threads)
        elif not os.environ.get("FASTNN_NUM_THREADS"):  # the ranks on one machine share its cores
            fastnn.set_num_threads(max(1, _cpu_count() // dist.get_local_world_size(comm)))
        lead = comm.Get_rank() == 0
        with fastnn.use_backend(args.backend):
            acc = dist.training.train_mnist(
                args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                limit=args.limit, progress=lead and not args.no_progress, log=print if lead else (lambda *a: None),
                comm=comm)
        if lead:
            print(f"test accuracy: {acc * 100:.2f}% ({comm.Get_size()} ranks, {fastnn.get_num_threads()} threads each)")
    return 0


def _bench(args):
    import json
    import os

    from .benchmarks import _report

    if args.from_json:
        with open(args.from_json) as f:
            results = _report.validate(json.load(f))
    else:
        env = dict(os.environ)  # as the user gave it: every worker, fastnn's and torch's, gets this
        if args.native_blas:  # the worker processes only (both sides); tests and CI keep the env
            for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
                env.pop(var, None)
        ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
        impls = [i.strip() for i in args.impls.split(",")] if args.impls else None
        results = _report.run(ops, quick=args.quick, threads=args.threads, progress=not args.no_progress,
                              impls=impls, under_load=args.under_load, env=env)
        _report.write(results, args.out)
    print(_report.header(results))
    for op in _report.ops_in(results):
        print(f"\n## {op}\n")
        print(_report.op_table(results, op))
    if results["torch"] == "not installed":
        print(f"\n{_report.TORCH_HINT}")
    if not args.from_json:
        print(f"\nwrote {os.path.join(args.out, 'results.json')}, report.md and chart.png (if matplotlib) in {args.out}")
    if args.update_doc:
        ops = _report.update_doc(results, args.update_doc)
        print(f"updated {args.update_doc}: {', '.join(ops) or 'no bench blocks matched'}")
    return 0


def _inspect(args):
    import numpy as np

    from . import serialization

    # upcast only when NumPy cannot hold a dtype; the table shows the dtype the file has
    obj, fmt, origin = serialization._load(args.file, mmap=True, upcast=serialization._ml_dtypes() is None)
    rows, others = [], 0

    def walk(o, name):
        nonlocal others
        if isinstance(o, np.ndarray):
            rows.append((name or "(root)", origin.get(id(o), o.dtype.name), str(o.shape), o.size, o))
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(v, f"{name}.{i}" if name else str(i))
        else:
            others += 1

    walk(obj, "")
    head = ("name", "dtype", "shape", "size")
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(head)]
    print(f"{args.file}: {fmt}")
    for r in [head] + rows:
        print("  ".join(str(v).ljust(w) if i < 3 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip())
    n = sum(r[3] for r in rows)
    nbytes = sum(r[3] * serialization.ITEMSIZE.get(r[1], r[4].itemsize) for r in rows)
    size = next((f"{nbytes / 2**e:.1f} {u}" for e, u in ((30, "GiB"), (20, "MiB"), (10, "KiB")) if nbytes >= 2**e),
                f"{nbytes} bytes")
    print(f"total: {len(rows)} tensor{'s' * (len(rows) != 1)}, {n:,} parameters, {size}"
          + (f"; {others} other values (numbers, strings, None)" if others else ""))
    return 0


def _at_least(minimum):
    def parse(v):
        try:
            n = int(v)
        except ValueError:
            n = None
        if n is None or n < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {v!r}")
        return n

    return parse


_positive = _at_least(1)


def build_parser():
    p = argparse.ArgumentParser(prog="fastnn", description="fastnn: fast neural-network layers on NumPy arrays")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, backends, threads, BLAS in use").set_defaults(func=_info)
    t = sub.add_parser("train", help="train one of the seed's models and print its test accuracy")
    t.add_argument("model", choices=MODELS)
    t.add_argument("--epochs", type=_positive, default=3)
    t.add_argument("--batch-size", type=_positive, default=64)
    t.add_argument("--backend", default="auto", choices=("auto", "reference", "numpy", "numba", "cython"))
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the model's)")
    t.add_argument("--threads", type=_positive, default=None)
    t.add_argument("--limit", type=_positive, default=None, help="use only the first N training samples")
    t.add_argument("--clip", type=float, default=None,
                   help="seq2seq: clip the gradients' global L2 norm to this (default 1.0; 0: no clipping)")
    t.add_argument("--scheduler", default=None, choices=("none", "step", "exponential", "cosine", "onecycle", "plateau"),
                   help="seq2seq: learning-rate schedule (default none; see fastnn.train.make_scheduler)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of an MPI job (mlp, cnn): mpiexec -n N fastnn train cnn "
                        "--distributed; each rank takes its share of every --batch-size batch; needs mpi4py "
                        "(pip install 'fastnn[distributed]')")
    t.set_defaults(func=_train)
    b = sub.add_parser("bench", help="the optimisation ladder of each op against torch, as a report")
    b.add_argument("--ops", default=None, help="comma-separated ops (default: all), e.g. dense,conv2d,attention")
    b.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run: < 3 minutes)")
    b.add_argument("--threads", type=_positive, default=None, help="threads for fastnn and torch alike")
    b.add_argument("--out", default="bench-results", help="folder for results.json, report.md, chart.png")
    b.add_argument("--impls", default=None, help="comma-separated subset of seed,reference,numpy,numba,cython,auto,torch")
    b.add_argument("--native-blas", action="store_true",
                   help="unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for the benchmark processes (header shows the kernel)")
    b.add_argument("--under-load", type=_at_least(0), default=0, metavar="N",
                   help="also time every burst with N busy-looping processes on the cores (load factors)")
    b.add_argument("--from-json", default=None, help="render an existing results.json instead of measuring")
    b.add_argument("--update-doc", default=None, help="rewrite the <!-- bench:OP --> tables of this markdown file")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_bench)
    i = sub.add_parser("inspect", help="the tensors of a torch checkpoint, safetensors or .npz file")
    i.add_argument("file")
    i.set_defaults(func=_inspect)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError) as e:
        print(f"fastnn: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
