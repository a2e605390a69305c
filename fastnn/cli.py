"""The ``fastnn`` command line."""

from __future__ import annotations

import argparse
import os
import platform
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    import numba
    import numpy as np
    import scipy
    from threadpoolctl import threadpool_info

    import fastnn

    from .kernels import activations

    # The threading layer is chosen when the first parallel kernel runs.
    x = np.zeros(1 << 16, dtype=np.float32)
    activations.activation_forward.parallel(activations.RELU, 0.0, x, x.copy(), x.copy())
    kernel_dir = os.path.dirname(activations.__file__)
    cache = numba.config.CACHE_DIR or os.path.join(kernel_dir, "__pycache__")
    rows = [
        ("fastnn", fastnn.__version__),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        ("numba", numba.__version__),
        ("scipy", scipy.__version__),
        ("cores", str(os.cpu_count())),
        ("numba threads", str(numba.get_num_threads())),
        ("numba threading layer", numba.threading_layer()),
        ("kernel cache", cache),
        ("default dtype", str(fastnn.get_default_dtype())),
    ]
    for pool in threadpool_info():
        where = pool.get("filepath", "")
        owner = "numpy" if "numpy" in where else "scipy" if "scipy" in where else where
        rows.append(
            (
                f"{pool.get('user_api')} ({owner})",
                f"{pool.get('internal_api')} {pool.get('version')}, "
                f"{pool.get('num_threads')} threads, {pool.get('architecture', '?')}",
            )
        )
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        if var in os.environ:
            rows.append((var, os.environ[var]))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _cmd_warmup(args: argparse.Namespace) -> int:
    import fastnn

    fastnn.warmup(dtypes=args.dtypes, verbose=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from fastnn import __version__

    parser = argparse.ArgumentParser(
        prog="fastnn",
        description="Fast CPU training of neural networks (Numba kernels, PyTorch-shaped API).",
    )
    parser.add_argument("--version", action="version", version=f"fastnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="versions, threads, BLAS and the kernel cache")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("warmup", help="compile the kernels now (cached on disk for later runs)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.set_defaults(func=_cmd_warmup)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastnn`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
