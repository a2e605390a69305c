"""One small valid file of each format fastnn reads: what the mutations start from."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np


def _idx(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return (struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            + arr.tobytes())


def parquet_supported() -> str | None:
    """None when ``load_spec("parquet:FILE:TARGET")`` exists, else why not."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return "pyarrow is not installed"
    from fastnn.data import DataError
    from fastnn.datasets import load_spec

    try:
        load_spec("parquet:/nonexistent/fastnn-fuzz.parquet:target")
    except FileNotFoundError:
        return None
    except DataError as exc:
        if "unknown data spec" in str(exc):
            return "this fastnn has no parquet: data spec yet"
        return None
    return None


def write_seeds(directory: str) -> dict[str, list[str]]:
    """Write the seed files into ``directory``; returns reader name -> seed paths."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    join = lambda name: os.path.join(directory, name)  # noqa: E731
    seeds: dict[str, list[str]] = {}

    X = rng.standard_normal((24, 5)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    np.savez(join("data.npz"), X=X, y=y, X_test=X[:6], y_test=y[:6])
    np.savez_compressed(join("strings.npz"), X=X.astype(np.float64),
                        y=np.array(["a", "bb", "c"])[y])
    seeds["npz"] = [join("data.npz"), join("strings.npz")]

    np.save(join("X.npy"), rng.standard_normal((12, 3)))
    np.save(join("Xf.npy"), np.asfortranarray(rng.integers(0, 255, (8, 4), dtype=np.uint8)))
    seeds["npy"] = [join("X.npy"), join("Xf.npy")]

    rows = ["a,b,c,target"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{'cat' if t else 'dog'}"
                                for r, t in zip(rng.standard_normal((20, 3)), y[:20] % 2,
                                                strict=True)]
    with open(join("table.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    with open(join("numbers.csv"), "w") as f:
        f.write("x1,target\n" + "".join(f"{i * 0.5},{i % 3}\n" for i in range(15)))
    seeds["csv"] = [join("table.csv"), join("numbers.csv")]

    if parquet_supported() is None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"a": rng.standard_normal(20), "b": rng.integers(0, 9, 20),
                          "target": np.array(["cat", "dog"])[y[:20] % 2]})
        pq.write_table(table, join("table.parquet"))
        seeds["parquet"] = [join("table.parquet")]

    with open(join("images-idx3-ubyte"), "wb") as f:
        f.write(_idx(rng.integers(0, 255, (10, 4, 4))))
    with gzip.open(join("labels-idx1-ubyte.gz"), "wb") as f:
        f.write(_idx(rng.integers(0, 10, 10)))
    seeds["idx"] = [join("images-idx3-ubyte"), join("labels-idx1-ubyte.gz")]

    records = np.concatenate([rng.integers(0, 10, (4, 1)), rng.integers(0, 255, (4, 3072))], 1)
    records.astype(np.uint8).tofile(join("cifar.bin"))
    seeds["cifar"] = [join("cifar.bin")]

    seeds["checkpoint"], seeds["safetensors"] = _trained(directory, X, y, rng)
    seeds["sklearn"] = _estimators(directory, X, y)
    return seeds


def _estimators(directory: str, X, y) -> list[str]:
    """Pickled fitted estimators: a multiclass classifier with BatchNorm, dropout, PReLU and
    Adam's state; a binary classifier with string labels and SGD's momentum; a two-output
    regressor fitted by L-BFGS in float32."""
    import pickle
    import warnings

    from fastnn.sklearn import MLPClassifier, MLPRegressor

    fits = (
        (MLPClassifier(hidden_layer_sizes=(4,), batchnorm=True, dropout=0.2,
                       activation="prelu", max_iter=2, random_state=0), X, y),
        (MLPClassifier(hidden_layer_sizes=(3, 2), solver="sgd", max_iter=2, random_state=0),
         X[:, :3], np.array(["cat", "dog"])[y % 2]),
        (MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=3, dtype="float32",
                      random_state=0), X[:, :2], X[:, 2:4].astype(np.float64)),
    )
    paths = []
    for i, (est, X_fit, y_fit) in enumerate(fits):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X_fit, y_fit)
        paths.append(os.path.join(directory, f"estimator{i}.pkl"))
        with open(paths[-1], "wb") as f:
            pickle.dump(est, f)
    return paths


def _trained(directory: str, X, y, rng) -> tuple[list[str], list[str]]:
    """Checkpoints of two real (one-epoch) runs, a classifier and a regressor, and their
    safetensors exports."""
    from fastnn.recipes import export_run, run_training

    np.savez(os.path.join(directory, "reg.npz"), X=X[:, :3],
             y=rng.standard_normal((len(X), 2)))
    ckpts, tensors = [], []
    for name, data, extra in (("clf", "data.npz", {"dropout": 0.2}),
                              ("reg", "reg.npz", {"batchnorm": False, "dropout": 0.0})):
        out = os.path.join(directory, f"run-{name}")
        given = {"data": f"npz:{os.path.join(directory, data)}", "hidden": "4", "epochs": 1,
                 "batch_size": 8, "val_fraction": 0.0, "schedule": "none", **extra}
        result = run_training(given, out=out, quiet=True)
        ckpt = result.files["checkpoint"]
        ckpts.append(ckpt)
        st = os.path.join(directory, f"{name}.safetensors")
        export_run(ckpt, safetensors=st)
        tensors.append(st)
    return ckpts, tensors


#: Files of others by extension -> the readers to try on them.
FOREIGN_READERS = {".npz": ("npz", "checkpoint"), ".zip": ("npz", "checkpoint"),
                   ".npy": ("npy",), ".csv": ("csv-last",), ".gz": ("idx",),
                   ".bin": ("cifar", "idx")}


def foreign_files(max_bytes: int = 2 << 20) -> list[str]:
    """Files nobody on fastnn's team made: the test data that NumPy, SciPy, scikit-learn and
    CPython ship (object arrays pickled by Python 2, old zip layouts, gzipped tables, CSVs),
    wherever those are installed; each at most ``max_bytes``."""
    import importlib

    roots = [os.path.join(os.path.dirname(os.__file__), "test")]
    for name in ("numpy", "scipy", "sklearn"):
        try:
            roots.append(os.path.dirname(importlib.import_module(name).__file__))
        except ImportError:
            pass
    found = []
    for root in roots:
        for directory, _, names in os.walk(root):
            for name in sorted(names):
                path = os.path.join(directory, name)
                if (os.path.splitext(name)[1] in FOREIGN_READERS and os.path.isfile(path)
                        and os.path.getsize(path) <= max_bytes):
                    found.append(path)
    return sorted(found)
