"""The ``fastnn`` command: ``info``, ``train <model>``, ``bench``."""
import argparse
import sys

MODELS = ("mlp", "seq2seq", "cnn", "resnet")


def _info(args):
    import numba
    import numpy as np
    from threadpoolctl import threadpool_info

    import fastnn

    print(f"fastnn {fastnn.__version__}")
    print(f"backends: {', '.join(fastnn.backends())} (default: {fastnn.get_backend()})")
    from .kernels.dense import numba_impl  # run one parallel kernel so Numba picks its threading layer

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

    if args.threads:
        fastnn.set_num_threads(args.threads)
    runner = {"mlp": train.train_mlp, "seq2seq": train.train_seq2seq, "cnn": train.train_cnn,
              "resnet": train.train_resnet}[args.model]
    kwargs = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, limit=args.limit,
                  progress=not args.no_progress)
    if args.lr is not None:
        kwargs["lr"] = args.lr
    with fastnn.use_backend(args.backend):
        acc = runner(**kwargs)
    print(f"test accuracy: {acc * 100:.2f}%")
    return 0


def _bench(args):
    import json
    import os

    from .benchmarks import _report

    if args.from_json:
        with open(args.from_json) as f:
            results = _report.validate(json.load(f))
    else:
        if args.native_blas:  # this command's worker processes only; tests and CI keep the env
            for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
                os.environ.pop(var, None)
        ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
        impls = [i.strip() for i in args.impls.split(",")] if args.impls else None
        results = _report.run(ops, quick=args.quick, threads=args.threads, progress=not args.no_progress,
                              impls=impls)
        _report.write(results, args.out)
    print(_report.header(results))
    for op in _report.ops_in(results):
        print(f"\n## {op}\n")
        print(_report.op_table(results, op))
    if not args.from_json:
        print(f"\nwrote {os.path.join(args.out, 'results.json')}, report.md and chart.png (if matplotlib) in {args.out}")
    if args.update_doc:
        ops = _report.update_doc(results, args.update_doc)
        print(f"updated {args.update_doc}: {', '.join(ops) or 'no bench blocks matched'}")
    return 0


def _positive(v):
    n = int(v)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {v}")
    return n


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
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)
    b = sub.add_parser("bench", help="the optimisation ladder of each op against torch, as a report")
    b.add_argument("--ops", default=None, help="comma-separated ops (default: all), e.g. dense,conv2d,attention")
    b.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run: < 3 minutes)")
    b.add_argument("--threads", type=_positive, default=None, help="threads for fastnn and torch alike")
    b.add_argument("--out", default="bench-results", help="folder for results.json, report.md, chart.png")
    b.add_argument("--impls", default=None, help="comma-separated subset of reference,numpy,numba,cython,auto,torch")
    b.add_argument("--native-blas", action="store_true",
                   help="unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for the benchmark processes (header shows the kernel)")
    b.add_argument("--from-json", default=None, help="render an existing results.json instead of measuring")
    b.add_argument("--update-doc", default=None, help="rewrite the <!-- bench:OP --> tables of this markdown file")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_bench)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"fastnn: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
