"""The ``fastnn`` command: ``info``, ``train mlp``."""
import argparse
import sys

MODELS = ("mlp",)


def _info(args):
    import numba
    import numpy as np
    from threadpoolctl import threadpool_info

    import fastnn

    print(f"fastnn {fastnn.__version__}")
    print(f"backends: {', '.join(fastnn.backends())} (default: {fastnn.get_backend()})")
    print(f"threads: {fastnn.get_num_threads()} (numba: {numba.get_num_threads()}, layer {numba.config.THREADING_LAYER})")
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
    runner = {"mlp": train.train_mlp}[args.model]
    kwargs = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, limit=args.limit,
                  progress=not args.no_progress)
    if args.lr is not None:
        kwargs["lr"] = args.lr
    with fastnn.use_backend(args.backend):
        acc = runner(**kwargs)
    print(f"test accuracy: {acc * 100:.2f}%")
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
