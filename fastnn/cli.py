"""The ``fastnn`` command line: train, evaluate, predict, gradcheck, info, warmup.

Bad input (a missing file, an unknown data spec, labels that are not classes, a checkpoint
that does not fit) ends with exit code 2 and one line on stderr, never a traceback.
A diverging run ends with exit code 1, naming the epoch and step; its last good
checkpoint stays on disk.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time

DEFAULTS = {
    "data": "digits", "hidden": "256,256", "activation": "relu", "batchnorm": True,
    "dropout": 0.2, "loss": "cross_entropy", "optimizer": "adam", "lr": None,
    "weight_decay": 1e-4, "schedule": "cosine", "epochs": 30, "batch_size": 64, "seed": 0,
    "val_fraction": 0.1, "dtype": "float32",
}
ARCHITECTURE = ("hidden", "activation", "batchnorm", "dropout", "dtype")
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05,
              "rmsprop": 1e-3, "adam": 2e-3, "adamw": 2e-3}
TEST_FRACTION = 0.2  # held out for testing when a data source has no test part


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


# ----------------------------------------------------------------------------- data
def prepare_data(spec: str, seed: int, val_fraction: float, standardizer=None):
    """Load ``spec`` and make the train/val/test parts (deterministic from ``seed``).

    Returns (X_train, y_train, X_val, y_val, X_test, y_test, standardizer, n_classes); the
    standardizer is fitted on the training part unless one is given (a checkpoint's).
    """
    from .data import Standardizer, check_finite, train_val_split
    from .datasets import load_spec

    split = load_spec(spec)
    X, y = split.X, split.y
    if split.X_test is None:
        X, y, X_test, y_test = train_val_split(X, y, TEST_FRACTION, seed=seed + 1)
    else:
        X_test, y_test = split.X_test, split.y_test
    if val_fraction > 0:
        X, y, X_val, y_val = train_val_split(X, y, val_fraction, seed=seed)
    else:
        X_val = y_val = None
    for name, arr in (("training data", X), ("test data", X_test)):
        check_finite(arr.reshape(len(arr), -1) if arr.ndim > 2 else arr, name=f"{spec} {name}")
    if standardizer is None:
        standardizer = Standardizer().fit(X.reshape(len(X), -1))
    parts = [standardizer.transform(a) if a is not None else None for a in (X, X_val, X_test)]
    n_classes = split.n_classes
    return (parts[0], y, parts[1], y_val, parts[2], y_test, standardizer, n_classes)


def _parse_hidden(text) -> list[int]:
    if isinstance(text, list):
        return text
    try:
        sizes = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--hidden takes comma-separated layer sizes like 256,256, "
                         f"got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise UsageError(f"--hidden sizes must be positive, got {text!r}")
    return sizes


def _make_optimizer(name, params, lr, weight_decay):
    from . import optim

    if name == "sgd":
        return optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "nesterov":
        return optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "adagrad":
        return optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise UsageError(f"unknown optimizer {name!r}")


def _make_schedule(name, optimizer, epochs):
    from .optim import lr_scheduler as S

    if name == "none":
        return None
    if name == "step":
        return S.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    if name == "cosine":
        return S.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    raise UsageError(f"unknown schedule {name!r}")


def _loss_fn(name):
    from . import losses

    if name == "cross_entropy":
        return losses.cross_entropy
    if name == "hinge":
        return losses.multiclass_hinge
    raise UsageError(f"unknown loss {name!r}")


def _model_from_config(cfg):
    from .train import build_mlp

    a = cfg["architecture"]
    return build_mlp(a["input_dim"], a["hidden"], a["n_classes"], a["activation"],
                     a["batchnorm"], a["dropout"], a["dtype"])


# ---------------------------------------------------------------------------- train
def _resolve_config(args, ckpt):
    """Flags, else the checkpoint's recorded configuration, else the defaults."""
    cfg = {}
    recorded = ckpt.meta["config"] if ckpt is not None else {}
    for key, default in DEFAULTS.items():
        given = getattr(args, key)
        before = recorded.get("run", {}).get(key) if key not in ARCHITECTURE else \
            recorded.get("architecture", {}).get(key)
        if key == "hidden" and given is not None:
            given = _parse_hidden(given)
        # A resumed run continues the recorded one: only --epochs may change.
        if ckpt is not None and key != "epochs" and given is not None \
                and before is not None and given != before:
            raise UsageError(f"--{key.replace('_', '-')} {given} does not fit the checkpoint, "
                             f"which was trained with {before} (a resumed run keeps its "
                             "settings; start a new run to change them)")
        cfg[key] = given if given is not None else (before if before is not None else default)
    cfg["hidden"] = _parse_hidden(cfg["hidden"])
    if cfg["lr"] is None:
        cfg["lr"] = DEFAULT_LR[cfg["optimizer"]]
    if not 0 <= cfg["dropout"] < 1:
        raise UsageError(f"--dropout must be in [0, 1), got {cfg['dropout']}")
    return cfg


def _cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from . import _threads
    from .checkpoint import load_checkpoint, restore, save_checkpoint
    from .data import ArrayDataset, DataLoader
    from .random import manual_seed
    from .train import ModelCheckpoint, TrainingDiverged, evaluate, fit

    comm = None
    if args.distributed:
        from . import distributed

        comm = distributed.init(threads=args.threads)
        args.quiet = args.quiet or comm.rank != 0
    elif args.threads is not None:
        _threads.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.resume) if args.resume else None
    c = _resolve_config(args, ckpt)
    standardizer = None
    if ckpt is not None:
        from .data import Standardizer

        standardizer = Standardizer(ckpt.arrays.get("data/mean"), ckpt.arrays.get("data/std"))
        if standardizer.mean is None:
            raise UsageError(f"{args.resume}: records no standardization of the inputs")
    Xtr, ytr, Xva, yva, Xte, yte, std, n_classes = prepare_data(
        c["data"], c["seed"], c["val_fraction"], standardizer)
    config = {
        "architecture": {"input_dim": int(Xtr.shape[1]), "hidden": c["hidden"],
                         "n_classes": n_classes, "activation": c["activation"],
                         "batchnorm": c["batchnorm"], "dropout": c["dropout"],
                         "dtype": c["dtype"]},
        "data": {"spec": c["data"], "seed": c["seed"], "val_fraction": c["val_fraction"]},
        "run": {k: c[k] for k in DEFAULTS if k not in ARCHITECTURE},
    }
    if ckpt is not None and ckpt.meta["config"]["architecture"] != config["architecture"]:
        raise UsageError(f"the data {c['data']!r} gives a model of "
                         f"{config['architecture']}, which does not fit the checkpoint's "
                         f"{ckpt.meta['config']['architecture']}")
    manual_seed(c["seed"])
    model = _model_from_config(config)
    try:
        optimizer = _make_optimizer(c["optimizer"], model.parameters(), c["lr"],
                                    c["weight_decay"])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    schedule = _make_schedule(c["schedule"], optimizer, c["epochs"])
    loss_fn = _loss_fn(c["loss"])
    loader = DataLoader(ArrayDataset(Xtr, ytr), batch_size=c["batch_size"], shuffle=True,
                        seed=c["seed"], dtype=c["dtype"])
    start_epoch, history = 0, []
    if ckpt is not None:
        restore(ckpt, model=model, optimizer=optimizer, scheduler=schedule, loader=loader)
        start_epoch, history = int(ckpt.meta["epoch"]), list(ckpt.meta.get("history", []))
        if start_epoch >= c["epochs"]:
            raise UsageError(f"the checkpoint has {start_epoch} epochs already; ask for more "
                             f"with --epochs N > {start_epoch}")

    out = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    if comm is not None:  # one output directory for the job: rank 0's
        out = comm.comm.bcast(out, root=0)
    rank0 = comm is None or comm.rank == 0
    if rank0:
        os.makedirs(out, exist_ok=True)
    ckpt_path = os.path.join(out, "model.npz")

    def save(epoch, logs):  # after every epoch: the last good state stays on disk
        save_checkpoint(ckpt_path, model=model, optimizer=optimizer, scheduler=schedule,
                        loader=loader, epoch=epoch, config=config, history=history,
                        standardizer=std)

    if not args.quiet:
        print(f"fastnn train: {c['data']} ({len(Xtr)} train, "
              f"{0 if Xva is None else len(Xva)} val, {len(Xte)} test, {Xtr.shape[1]} features, "
              f"{n_classes} classes), MLP {Xtr.shape[1]}-{'-'.join(map(str, c['hidden']))}-"
              f"{n_classes} {c['activation']}{' +BN' if c['batchnorm'] else ''}, "
              f"{c['optimizer']} lr={c['lr']:g}, {c['epochs']} epochs", file=sys.stderr)
    if rank0:
        from ._warmup import announce_compilation

        announce_compilation()
    t0 = time.perf_counter()
    try:
        # A diverging run overflows before its loss turns NaN; fit reports that once.
        with np.errstate(over="ignore", invalid="ignore"):
            if comm is None:
                fit(model, loss_fn, optimizer, loader, val=None if Xva is None else (Xva, yva),
                    epochs=c["epochs"], schedule=schedule, quiet=args.quiet,
                    start_epoch=start_epoch, history=history,
                    callbacks=[ModelCheckpoint(save)])
            else:
                from .distributed import (
                    DistributedDataParallel,
                    DistributedSampler,
                    fit_distributed,
                )

                ddp = DistributedDataParallel(model, optimizer, comm,
                                              sync_batchnorm=args.sync_batchnorm)
                sampler = DistributedSampler(loader, comm)
                fit_distributed(ddp, loss_fn, sampler, None if Xva is None else (Xva, yva),
                                epochs=c["epochs"], schedule=schedule,
                                callbacks=[ModelCheckpoint(save)], start_epoch=start_epoch,
                                history=history, quiet=args.quiet)
    except TrainingDiverged as exc:
        kept = f"; the last good checkpoint is {ckpt_path}" if os.path.isfile(ckpt_path) else ""
        print(f"fastnn train: stopped: {exc}{kept}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t0
    test_loss, test_acc = evaluate(model, loss_fn, (Xte, yte))
    if not rank0:
        return 0
    last = history[-1]
    new_epochs = history[start_epoch:]
    samples = sum(h["samples_per_second"] * h["seconds"] for h in new_epochs)
    metrics = {
        "test_accuracy": test_acc, "test_loss": test_loss,
        "val_accuracy": last["val_accuracy"], "val_loss": last["val_loss"],
        "train_loss": last["loss"], "train_accuracy": last["accuracy"],
        "epochs": last["epoch"], "seconds": seconds,
        "samples_per_second": samples / max(sum(h["seconds"] for h in new_epochs), 1e-12),
        "history": history, "config": config,
    }
    _write_json(os.path.join(out, "metrics.json"), metrics)
    _write_history_csv(os.path.join(out, "history.csv"), history)
    plot_note = _plot_curves(os.path.join(out, "curves.png"), history)
    rows = [("test accuracy", f"{test_acc:.4f}"), ("test loss", f"{test_loss:.4f}")]
    if last["val_accuracy"] is not None:
        rows.append(("val accuracy", f"{last['val_accuracy']:.4f}"))
    rows += [("train loss", f"{last['loss']:.4f}"), ("epochs", str(last["epoch"])),
             ("seconds", f"{seconds:.1f}"),
             ("samples/s", f"{metrics['samples_per_second']:,.0f}"),
             ("checkpoint", ckpt_path), ("metrics", os.path.join(out, "metrics.json")),
             ("history", os.path.join(out, "history.csv")),
             ("curves", plot_note or os.path.join(out, "curves.png"))]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=True)
    os.replace(tmp, path)


def _write_history_csv(path, history):
    cols = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds",
            "samples_per_second"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for h in history:
            w.writerow(["" if h.get(k) is None else h[k] for k in cols])


def _plot_curves(path, history) -> str | None:
    """Loss and accuracy per epoch, train and validation; a note if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "not drawn: matplotlib is not installed (pip install 'fastnn[plot]')"
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((ax1, "loss", "loss"), (ax2, "accuracy", "accuracy")):
        ax.plot(epochs, [h[key] for h in history], label="train")
        if history and history[-1].get(f"val_{key}") is not None:
            ax.plot(epochs, [h[f"val_{key}"] for h in history], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


# ------------------------------------------------------------------ evaluate, predict
def _load_for_inference(path):
    from .checkpoint import CheckpointError, load_checkpoint, restore
    from .data import Standardizer

    ckpt = load_checkpoint(path)
    cfg = ckpt.meta.get("config", {})
    if "architecture" not in cfg:
        raise CheckpointError(f"{path}: records no architecture to rebuild the model from")
    model = _model_from_config(cfg)
    std = Standardizer()
    restore(ckpt, model=model, standardizer=std)
    if std.mean is None:
        raise CheckpointError(f"{path}: records no standardization of the inputs")
    return ckpt, model, std, cfg


def _cmd_evaluate(args) -> int:
    from .train import evaluate

    ckpt, model, std, cfg = _load_for_inference(args.checkpoint)
    spec = args.data or cfg["data"]["spec"]
    *_, X_test, y_test, _, _ = prepare_data(spec, cfg["data"]["seed"],
                                            cfg["data"]["val_fraction"], std)
    if X_test.shape[1] != cfg["architecture"]["input_dim"]:
        raise UsageError(f"{spec} has {X_test.shape[1]} features; the model takes "
                         f"{cfg['architecture']['input_dim']}")
    if y_test.max() >= cfg["architecture"]["n_classes"]:
        raise UsageError(f"{spec} has labels up to {y_test.max()}; the model knows "
                         f"{cfg['architecture']['n_classes']} classes")
    loss, acc = evaluate(model, _loss_fn(cfg["run"]["loss"]), (X_test, y_test))
    print(f"data      {spec} (test part, {len(y_test)} samples)")
    print(f"loss      {loss:.4f}")
    print(f"accuracy  {acc:.4f}")
    return 0


def _cmd_predict(args) -> int:
    import numpy as np

    from .data import DataError, check_finite
    from .train import predict

    _, model, std, cfg = _load_for_inference(args.checkpoint)
    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"no such file: {args.input}")
    try:
        with np.load(args.input, allow_pickle=False) as f:
            key = "X" if "X" in f.files else (f.files[0] if len(f.files) == 1 else None)
            if key is None:
                raise DataError(f"{args.input}: no array named X (has {f.files})")
            X = f[key]
    except (ValueError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{args.input}: not a readable .npz without pickle ({exc})") from None
    if X.dtype.kind not in "fiu":
        raise DataError(f"{args.input}: X must be numeric, got dtype {X.dtype}")
    X = X.reshape(len(X), -1) if X.ndim > 1 else X.reshape(1, -1)
    check_finite(X, name=args.input)
    outputs = predict(model, std.transform(X, dtype=cfg["architecture"]["dtype"]))
    result = outputs if args.scores else outputs.argmax(axis=1).astype(np.int64)
    tmp = args.out + ".tmp.npy"
    np.save(tmp, result)
    os.replace(tmp, args.out)
    print(f"wrote {'scores' if args.scores else 'predicted classes'} of {len(X)} samples "
          f"to {args.out}")
    return 0


# ------------------------------------------------------------------------ gradcheck
def _cmd_gradcheck(args) -> int:
    import numpy as np

    import fastnn as fnn
    from fastnn import losses

    rng = np.random.default_rng(0)
    f64 = np.float64
    x = rng.standard_normal((6, 5))
    labels = np.array([0, 1, 2, 0, 1, 2])
    layers = [
        ("Linear", fnn.Linear(5, 3, dtype=f64)),
        *[(f"Linear+{a}", fnn.Linear(5, 3, activation=a, dtype=f64))
          for a in ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "gelu_tanh",
                    "silu")],
        ("BatchNorm1d (train)", fnn.BatchNorm1d(5, dtype=f64)),
        ("BatchNorm1d+ReLU", fnn.Sequential(fnn.BatchNorm1d(5, dtype=f64), fnn.ReLU())),
        ("BatchNorm1d (eval)", fnn.BatchNorm1d(5, dtype=f64).eval()),
        ("PReLU", fnn.PReLU(5, dtype=f64)),
        ("Maxout", fnn.Maxout(5, 3, pieces=3, dtype=f64)),
        ("Dropout (p=0)", fnn.Dropout(0.0)),
    ]
    rows, ok = [], True
    for name, module in layers:
        params = list(module.parameters())
        rep = fnn.gradcheck(lambda x, *ps, m=module: m(x), [x, *params],
                            raise_exception=False)
        rows.append((name, max(rep.max_rel_error), rep.ok))
    for name, fn in (("cross_entropy", lambda z: losses.cross_entropy(z, labels)),
                     ("multiclass_hinge", lambda z: losses.multiclass_hinge(z, labels)),
                     ("mse_loss", lambda z: losses.mse_loss(z, np.zeros((6, 3)))),
                     ("bce_with_logits", lambda z: losses.binary_cross_entropy_with_logits(
                         z, np.ones((6, 3)) * 0.3))):
        rep = fnn.gradcheck(fn, [rng.standard_normal((6, 3))], raise_exception=False)
        rows.append((name, max(rep.max_rel_error), rep.ok))
    width = max(len(r[0]) for r in rows)
    print(f"{'layer / loss':<{width}}  max relative error  result")
    for name, err, good in rows:
        ok &= good
        print(f"{name:<{width}}  {err:18.2e}  {'ok' if good else 'FAILED'}")
    return 0 if ok else 1


# ----------------------------------------------------------------------- info, warmup
def _cmd_info(args: argparse.Namespace) -> int:
    import numba
    import numpy as np
    import scipy
    from threadpoolctl import threadpool_info

    import fastnn

    from .kernels import activations, blas

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
        ("matrix products", f"{blas.BLOCKS} blocks on Numba's pool, NumPy's OpenBLAS per block"
         if blas.AVAILABLE else "np.matmul on BLAS's own threads (NumPy's BLAS is not "
         "OpenBLAS with 64-bit CBLAS symbols)"),
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


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from fastnn import __version__

    parser = argparse.ArgumentParser(
        prog="fastnn",
        description="Fast CPU training of neural networks (Numba kernels, PyTorch-shaped API).",
    )
    parser.add_argument("--version", action="version", version=f"fastnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train an MLP classifier (default: the bundled digits)",
                       description="Train an MLP classifier and write a checkpoint, metrics, "
                       "the history and a plot of the curves into --out.")
    p.add_argument("--data", help="digits | mnist:DIR | fashion-mnist:DIR | cifar10:DIR | "
                   "npz:FILE | csv:FILE:TARGET (default: digits)")
    p.add_argument("--hidden", help="hidden layer sizes, comma-separated (default: 256,256)")
    p.add_argument("--activation", choices=["relu", "leaky_relu", "elu", "gelu", "tanh",
                                            "sigmoid", "silu", "prelu"],
                   help="(default: relu)")
    p.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
                   help="BatchNorm1d after each hidden Linear (default: on)")
    p.add_argument("--dropout", type=float, help="dropout probability (default: 0.2)")
    p.add_argument("--loss", choices=["cross_entropy", "hinge"], help="(default: cross_entropy)")
    p.add_argument("--optimizer", choices=list(DEFAULT_LR), help="(default: adam)")
    p.add_argument("--lr", type=float, help="learning rate (default: per optimizer, adam 2e-3)")
    p.add_argument("--weight-decay", type=float, dest="weight_decay", help="(default: 1e-4)")
    p.add_argument("--schedule", choices=["none", "step", "cosine"], help="(default: cosine)")
    p.add_argument("--epochs", type=int, help="(default: 30)")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="(default: 64)")
    p.add_argument("--seed", type=int, help="(default: 0)")
    p.add_argument("--threads", type=int, help="thread budget (default: all cores)")
    p.add_argument("--val-fraction", type=float, dest="val_fraction", help="(default: 0.1)")
    p.add_argument("--dtype", choices=["float32", "float64"], help="(default: float32)")
    p.add_argument("--out", help="output directory (default: runs/<timestamp>)")
    p.add_argument("--resume", metavar="CKPT", help="continue the run saved in CKPT")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: mpiexec -n N fastnn train --distributed ...")
    p.add_argument("--sync-batchnorm", action="store_true", dest="sync_batchnorm",
                   help="with --distributed: batch statistics over all ranks")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="loss and accuracy of a checkpoint on test data")
    p.add_argument("checkpoint")
    p.add_argument("--data", help="data spec (default: the one recorded in the checkpoint)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="predict classes for the samples in an .npz file")
    p.add_argument("checkpoint")
    p.add_argument("input", help=".npz file with an array X (N, features)")
    p.add_argument("--out", required=True, help="where to write the predictions (.npy)")
    p.add_argument("--scores", action="store_true", help="write the raw class scores instead")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("gradcheck", help="check every layer's and loss's gradients (float64)")
    p.set_defaults(func=_cmd_gradcheck)

    sub.add_parser("bench", help="time a training step: fastnn against the GEMM floor, NumPy, "
                   "PyTorch and JAX (see fastnn bench --help)", add_help=False)

    p = sub.add_parser("info", help="versions, threads, BLAS and the kernel cache")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("warmup", help="compile the kernels now (cached on disk for later runs)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.set_defaults(func=_cmd_warmup)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastnn`` console script; returns the exit code."""
    from .checkpoint import CheckpointError
    from .data import DataError

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
    except (UsageError, DataError, CheckpointError, OSError, ValueError, TypeError,
            ImportError) as exc:
        print(f"fastnn {args.command}: error: {exc}", file=sys.stderr)
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
            from .distributed import _abort

            rank = MPI.COMM_WORLD.Get_rank()
            print(f"fastnn: rank {rank} failed; ending the whole job", file=sys.stderr)
            _abort(MPI.COMM_WORLD, code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
