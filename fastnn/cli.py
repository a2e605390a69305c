"""The ``fastnn`` command line: train, evaluate, predict, export, gradcheck, info, warmup.

A thin shell: argparse and printing over :mod:`fastnn.recipes`. Bad input (a missing file,
an unknown data spec, labels that are not classes, a checkpoint that does not fit: fastnn's
own error types) ends with exit code 2 and one line on stderr; anything else is a bug and
keeps its traceback.
A diverging run ends with exit code 1, naming the epoch and step; its last good
checkpoint stays on disk.
"""

from __future__ import annotations

import argparse
import sys

from .recipes import ACTIVATIONS, DEFAULT_LR, DEFAULTS, LOSSES, SCHEDULES, ConfigError


# ---------------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> int:
    from . import _threads
    from .recipes import run_training
    from .train import TrainingDiverged

    if args.sync_batchnorm and not args.distributed:
        raise ConfigError("--sync-batchnorm needs --distributed (it syncs BatchNorm over ranks)")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {args.threads}")
    comm = None
    if args.distributed:
        from . import distributed

        comm = distributed.init(threads=args.threads)
        args.quiet = args.quiet or comm.rank != 0
    elif args.threads is not None:
        _threads.set_num_threads(args.threads)
    given = {key: getattr(args, key) for key in DEFAULTS}
    try:
        result = run_training(given, out=args.out, resume=args.resume, comm=comm,
                              quiet=args.quiet, sync_batchnorm=args.sync_batchnorm,
                              threads=_threads.get_num_threads())
    except TrainingDiverged as exc:
        print(f"fastnn train: stopped: {exc}", file=sys.stderr)
        return 1
    if not result.files:  # not rank 0
        return 0
    m = result.metrics
    if "test_accuracy" in m:
        rows = [("test accuracy", m["test_accuracy"]), ("test loss", m["test_loss"]),
                ("val accuracy", m.get("val_accuracy")), ("train loss", m["train_loss"])]
    else:
        rows = [("test R²", m["test_r2"]), ("test RMSE", m["test_rmse"]),
                ("test MAE", m["test_mae"]), ("test loss", m["test_loss"]),
                ("val R²", m.get("val_r2")), ("train loss", m["train_loss"])]
    rows = [(k, f"{v:.4f}") for k, v in rows if v is not None]
    rows += [("epochs", str(m["epochs"])), ("seconds", f"{m['seconds']:.1f}"),
             ("samples/s", f"{m['samples_per_second']:,.0f}")]
    rows += [(k, result.notes.get(k, path)) for k, path in result.files.items()]
    _print_rows(rows)
    return 0


def _print_rows(rows) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


# ------------------------------------------------------------------ evaluate, predict
def _cmd_evaluate(args) -> int:
    from .recipes import load_trained, prepare_data

    trained = load_trained(args.checkpoint)
    recorded = trained.config.get("data", {})
    spec = args.data or recorded["spec"]
    counts: dict = {}
    test = None if args.data else trained.config.get("run", {}).get("test")
    data = prepare_data(spec, seed=recorded.get("seed", 0),
                        val_fraction=recorded.get("val_fraction", 0.0),
                        encoding=trained.encoding, whole=args.all, test=test, counts=counts)
    metrics = trained.evaluate(data.test)
    part = "all rows" if args.all else "test file" if test else "test part"
    rows = [("data", f"{spec} ({part}, {len(data.test)} samples)")]
    if counts and (args.all or test):  # counted over what was scored
        from .recipes import describe_counts

        rows.append(("filled", describe_counts(counts)))
    rows += [("note", note) for note in data.notes]
    rows += [(k.replace("r2", "R²"), f"{v:.4f}") for k, v in metrics.items()]
    _print_rows(rows)
    return 0


def _cmd_predict(args) -> int:
    from .recipes import describe_counts, load_features, load_trained
    from .reports import write_predictions

    trained = load_trained(args.checkpoint)
    counts: dict = {}
    X = load_features(args.input, trained.encoding, counts)
    result = trained.scores(X) if args.scores else trained.predict(X)
    write_predictions(args.out, result, trained.encoding, scores=args.scores)
    what = "scores" if args.scores and trained.task == "classification" else \
        "predicted classes" if trained.task == "classification" else "predicted values"
    print(f"wrote {what} of {len(X)} samples to {args.out}")
    if counts:
        print(f"filled: {describe_counts(counts)}")
    return 0


# --------------------------------------------------------------------------- export
def _cmd_export(args) -> int:
    from .recipes import export_run

    for path in export_run(args.checkpoint, onnx=args.onnx, safetensors=args.safetensors,
                           opset=args.opset, fold_batchnorm=args.fold_batchnorm,
                           probabilities=args.probabilities):
        print(f"wrote {path}")
    return 0


# ------------------------------------------------------------------------ gradcheck
def _cmd_gradcheck(args) -> int:
    from .gradcheck import check_every_layer

    rows = check_every_layer()
    width = max(len(r[0]) for r in rows)
    print(f"{'layer / loss':<{width}}  max relative error  result")
    for name, err, good in rows:
        print(f"{name:<{width}}  {err:18.2e}  {'ok' if good else 'FAILED'}")
    return 0 if all(r[2] for r in rows) else 1


# ----------------------------------------------------------------------- info, warmup
def _cmd_info(args: argparse.Namespace) -> int:
    from .sysinfo import system_info

    _print_rows(system_info())
    return 0


def _cmd_warmup(args: argparse.Namespace) -> int:
    import fastnn

    fastnn.warmup(dtypes=args.dtypes, verbose=True, cnn=args.cnn)
    return 0


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from fastnn import __version__

    parser = argparse.ArgumentParser(
        prog="fastnn",
        description="Fast CPU training of neural networks (Numba kernels, PyTorch-shaped API).",
    )
    parser.add_argument("--version", action="version", version=f"fastnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train an MLP classifier or regressor (default: the "
                       "bundled digits)",
                       description="Train an MLP and write a checkpoint, metrics, the history "
                       "and pictures into --out. The task (classification or regression) is "
                       "inferred from the target unless --task says it; the first line says "
                       "which and why.")
    p.add_argument("--data", help="digits | mnist:DIR | fashion-mnist:DIR | cifar10:DIR | "
                   "npz:FILE | npy:X.npy,y.npy | csv:FILE:TARGET[,TARGET2...] | "
                   "parquet:FILE:TARGET (default: digits)")
    p.add_argument("--task", choices=["auto", "classification", "regression"],
                   help="(default: auto: names, booleans and a few distinct integers are "
                   "classes; fractional values and many distinct values are regression)")
    p.add_argument("--arch", choices=["mlp", "cnn"], help="mlp (default), or cnn: a small "
                   "convolutional network for image data (digits, mnist, fashion-mnist, "
                   "cifar10, an npz whose X is (N, C, H, W)), --hidden then sizes its head")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="image data: random crops (zero padding 4) and horizontal flips of "
                   "the training batches (default: off)")
    p.add_argument("--hidden", help="hidden layer sizes, comma-separated (default: "
                   "256,256; tables: 256,256, or 128,128 from 20,000 training rows)")
    p.add_argument("--activation", choices=list(ACTIVATIONS), help="(default: relu)")
    p.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
                   help="BatchNorm1d after each hidden Linear (default: on)")
    p.add_argument("--dropout", type=float, help="dropout probability (default: 0.2; tables "
                   "0.1)")
    p.add_argument("--loss", choices=[*LOSSES["classification"], *LOSSES["regression"]],
                   help="classification: cross_entropy (default) or hinge; regression: mse "
                   "(default), l1 or huber")
    p.add_argument("--optimizer", choices=list(DEFAULT_LR), help="(default: adam)")
    p.add_argument("--lr", type=float, help="learning rate (default: per optimizer, adam 2e-3)")
    p.add_argument("--weight-decay", type=float, dest="weight_decay", help="(default: "
                   "1e-4; tables: 1e-3, or 1e-4 from 20,000 training rows)")
    p.add_argument("--schedule", choices=list(SCHEDULES),
                   help="(default: cosine, defined over the run's --epochs; tables: plateau: the "
                   "lr divided by 5 after 3 epochs without a lower validation loss; cosine "
                   "below 500 training rows)")
    p.add_argument("--epochs", type=int, help="(default: 30; tables: up to 200, see --patience, or "
                   "100 below 500 training rows; "
                   "with --resume, the new total: a larger number continues on the schedule "
                   "of the longer run)")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="(default: 64; tables: "
                   "about 1/64 of the training rows, 32 to 512)")
    p.add_argument("--seed", type=int, help="(default: 0)")
    p.add_argument("--threads", type=int, help="thread budget (default: all cores)")
    p.add_argument("--val-fraction", type=float, dest="val_fraction", help="(default: 0.1; "
                   "tables below 500 training rows: 0, unless --patience is given)")
    p.add_argument("--dtype", choices=["float32", "float64"], help="(default: float32)")
    g = p.add_argument_group("tables (csv:FILE:TARGET, parquet:FILE:TARGET)")
    g.add_argument("--test", metavar="FILE", help="a held-out test file (CSV or Parquet, the "
                   "training file's columns, target included): the run's test set (default: "
                   "a seeded 20%% of the rows)")
    g.add_argument("--categorical", metavar="A,B", help="columns to treat as categories")
    g.add_argument("--numeric", metavar="C,D", help="columns to treat as numbers")
    g.add_argument("--drop", metavar="E,F", help="columns to leave out")
    g.add_argument("--embedding-dim", type=int, dest="embedding_dim", help="width of every "
                   "categorical column's embedding (default: min(50, round(1.6 n^0.56)) for n "
                   "categories)")
    g.add_argument("--numeric-encoding", choices=["ple", "none"], dest="numeric_encoding",
                   help="ple: each continuous feature enters the network as its "
                   "piecewise-linear encoding over quantile bins of the training rows "
                   "(fastnn.nn.PiecewiseLinearEncoding, Gorishniy et al. 2022); none: as it "
                   "is (default: ple)")
    g.add_argument("--numeric-bins", type=int, dest="numeric_bins", metavar="N",
                   help="--numeric-encoding ple: at most N quantile bins per continuous "
                   "feature (fewer where quantiles repeat, e.g. 1 for a 0/1 column; "
                   "default: 8, or 48 from 20,000 training rows)")
    g.add_argument("--target-transform", choices=["none", "log", "auto"],
                   dest="target_transform",
                   help="regression: train on log(1 + y), report in the original units "
                   "(default: none; tables: auto, the log for a positive target of skewness "
                   "above 1 on fewer than 20,000 training rows)")
    g.add_argument("--patience", type=int, help="stop when the validation loss has not "
                   "improved for this many epochs and keep the best epoch's weights; 0: off "
                   "(default: tables 10, or 8 from 20,000 training rows, where a loss "
                   "counts as lower only 1%% below the best, or 0 below 500; else 0). "
                   "Tables of 500 to 5,000 rows without --patience then train again on "
                   "every row for the epochs it chose")
    p.add_argument("--out", help="output directory (default: runs/<timestamp>, or the "
                   "resumed checkpoint's directory)")
    p.add_argument("--resume", metavar="CKPT", help="continue the run saved in CKPT")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: mpiexec -n N fastnn train --distributed ...")
    p.add_argument("--sync-batchnorm", action="store_true", dest="sync_batchnorm",
                   help="with --distributed: batch statistics over all ranks")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="loss and metrics of a checkpoint on test data")
    p.add_argument("checkpoint")
    p.add_argument("--data", help="data spec, as for train (default: the one recorded in the "
                   "checkpoint)")
    p.add_argument("--all", action="store_true",
                   help="score every row of the data, not only its test part (a new file)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="predict labels or values for new samples")
    p.add_argument("checkpoint", help="a fastnn train checkpoint (model.npz), or a "
                   ".safetensors file written by fastnn export")
    p.add_argument("input", help="FILE.npz (array X, or X_test), FILE.csv or FILE.parquet "
                   "(the raw columns, encoded as in training; a target column is ignored), "
                   "FILE.npy, or a data spec")
    p.add_argument("--out", required=True, help="where to write the predictions: .npy "
                   "(labels in the training data's own labels) or .csv")
    p.add_argument("--scores", action="store_true",
                   help="a classifier's raw class scores (logits) instead of labels")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "export", help="a checkpoint as ONNX (for onnxruntime) or safetensors (PyTorch's names)",
        description="Export a fastnn train checkpoint. The ONNX graph takes raw features (the "
        "run's standardization is built in) and outputs what `fastnn predict --scores` writes "
        "for the same rows (a regressor: values in the original units), so a served model "
        "needs nothing but the file; the class labels are in its metadata_props. The "
        "safetensors file holds the weights with PyTorch's names and layouts and the run's "
        "encoding in its metadata; `fastnn predict FILE.safetensors` reads it. Needs "
        "pip install 'fastnn[export]'.")
    p.add_argument("checkpoint")
    p.add_argument("--onnx", metavar="OUT.onnx", help="write an ONNX model")
    p.add_argument("--safetensors", metavar="OUT.safetensors", help="write a safetensors file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--fold-batchnorm", action="store_true", dest="fold_batchnorm",
                   help="fold each BatchNorm1d into the preceding Linear's Gemm")
    p.add_argument("--probabilities", action="store_true",
                   help="a classifier outputs softmax probabilities instead of scores")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("gradcheck", help="check every layer's and loss's gradients (float64)")
    p.set_defaults(func=_cmd_gradcheck)

    sub.add_parser("bench", help="time a training step (fastnn against the GEMM floor, NumPy, "
                   "PyTorch and JAX), with --sklearn an estimator's fit against "
                   "scikit-learn's, or with --tables reading and encoding a million-row "
                   "mixed table against pandas (see fastnn bench --help)", add_help=False)

    p = sub.add_parser("info", help="versions, threads, BLAS and the kernel cache")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("warmup", help="compile the kernels now (cached on disk for later runs)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--cnn", action="store_true",
                   help="also the kernels of convolutional networks (--arch cnn)")
    p.set_defaults(func=_cmd_warmup)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastnn`` console script; returns the exit code.

    ``argv`` None: the process's own command line (the console script, ``python -m
    fastnn.cli``), after which the process ends: its objects are then frozen out of the
    garbage collector (``gc.freeze``) before returning. Python's shutdown otherwise runs
    full collections over every object the imports made (Numba's, pyarrow's, matplotlib's:
    about 210,000 after ``fastnn train``), which nothing needs at exit: measured on the
    diamonds table, 0.45 to 0.5 s between the last line printed and the process's end,
    0.1 s with the objects frozen. A call with a list (tests, scripts) leaves the collector
    as it was.
    """
    from ._bytecode import ensure_bytecode

    try:
        return _main(argv)
    finally:
        ensure_bytecode()
        if argv is None:
            import gc

            gc.freeze()


def _main(argv: list[str] | None) -> int:
    from .checkpoint import CheckpointError
    from .data import DataError  # (a SafetensorsFileError is a DataError)
    from .nn._torch_layout import UnsupportedLayerError  # (fastnn.interop's, defined here)

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":
        from .bench import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ConfigError, DataError, CheckpointError, UnsupportedLayerError, OSError,
            ImportError, NotImplementedError) as exc:
        # fastnn's own errors (a file a reader refuses: FileFormatError, a DataError) and the
        # environment's (a missing file, a full disk): one line, whatever the message holds.
        print(f"fastnn {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        _abort_job_if_distributed(args, 2)
        return 2
    except Exception as exc:
        if getattr(args, "distributed", False):
            print(f"fastnn {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
            _abort_job_if_distributed(args, 1)
        raise
    except KeyboardInterrupt:
        print(f"fastnn {args.command}: interrupted", file=sys.stderr)
        return 130


def _abort_job_if_distributed(args, code: int) -> None:
    """In an MPI job, one rank's error must end every rank (none may wait forever)."""
    if getattr(args, "distributed", False) and "mpi4py" in sys.modules:
        from mpi4py import MPI

        if MPI.Is_initialized() and MPI.COMM_WORLD.Get_size() > 1:
            from .distributed import abort_job

            rank = MPI.COMM_WORLD.Get_rank()
            print(f"fastnn: rank {rank} failed; ending the whole job", file=sys.stderr)
            abort_job(MPI.COMM_WORLD, code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
