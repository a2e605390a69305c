"""The readers as the fuzzing worker calls them: each through its public entry point, and
through to a use of what it read (a model that predicts), so that a file that loads but
breaks the next step counts too."""

from __future__ import annotations

import os

import numpy as np

#: reader name -> what it runs (documented in docs/files.md)
ENTRY_POINTS = {
    "npz": 'fastnn.datasets.load_spec("npz:FILE")',
    "npy": 'fastnn.datasets.load_spec("npy:FILE,FILE") (memory-mapped X, read y)',
    "csv": 'fastnn.datasets.load_spec("csv:FILE:target")',
    "parquet": 'fastnn.datasets.load_spec("parquet:FILE:target")',
    "idx": "fastnn.datasets.load_idx(FILE) (raw and gzipped)",
    "cifar": 'fastnn.datasets.load_spec("cifar10:DIR") (FILE as data_batch_1.bin)',
    "checkpoint": "fastnn.recipes.load_trained(FILE), then predict and scores on 3 rows",
    "safetensors": "fastnn.recipes.load_trained(FILE) and fastnn.load_safetensors(FILE, "
                   "model), then predict",
    "sklearn": "pickle.load(FILE) of a fastnn.sklearn estimator whose state was changed, "
               "then predict (and predict_proba) on 3 rows",
}


#: The architectures of the seed runs (tests/fuzzkit/seeds.py): the classifier, the regressor.
SEED_ARCHITECTURES = (
    {"input_dim": 5, "hidden": [4], "n_outputs": 3, "activation": "relu", "batchnorm": True,
     "dropout": 0.2, "dtype": "float32"},
    {"input_dim": 3, "hidden": [4], "n_outputs": 2, "activation": "relu", "batchnorm": False,
     "dropout": 0.0, "dtype": "float32"},
)


def warm_up() -> None:
    """Import the readers and compile what a seed's prediction uses, before the limit."""
    import fastnn  # noqa: F401
    from fastnn import datasets, recipes, sklearn  # noqa: F401
    from fastnn.nn import Linear

    Linear(3, 2)(np.zeros((2, 3), np.float32))


def names_file(message: str, path: str) -> bool:
    return path in message or os.path.basename(path) in message


def is_clear_refusal(target: str, exc: BaseException, path: str) -> bool:
    """fastnn's own error: for a file, a DataError naming the file; for an estimator's
    unpickled state (no file of fastnn's), an EstimatorStateError (naming the field)."""
    from fastnn.data import DataError

    if target == "sklearn":
        from fastnn.sklearn import EstimatorStateError

        return isinstance(exc, EstimatorStateError)
    return isinstance(exc, DataError) and names_file(str(exc), path)


def _touch(a) -> str:
    """Use every element of a result (a memory-mapped array is read from disk)."""
    if a is None:
        return "-"
    a = np.asarray(a)
    if a.dtype.kind in "biuf":
        with np.errstate(all="ignore"):
            float(np.sum(a, dtype=np.float64))
    else:
        len(a.tobytes())
    return f"{a.dtype}{a.shape}"


def _split(s) -> str:
    return " ".join(_touch(a) for a in (s.X, s.y, s.X_test, s.y_test))


def _predict(trained) -> str:
    n = int(trained.config["architecture"]["input_dim"])
    X = np.linspace(-1, 1, 3 * n).reshape(3, n)
    with np.errstate(all="ignore"):
        out = trained.predict(X)
        trained.scores(X)
    return f"{trained.task} {_touch(out)}"


def _last_column(path: str) -> str:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f))[-1].strip() or "target"
    except (UnicodeDecodeError, csv.Error, StopIteration, IndexError):
        return "target"


def run(target: str, path: str) -> str:
    """Run reader ``target`` on ``path``; a short summary of the result."""
    from fastnn import datasets, recipes

    if target == "npz":
        return _split(datasets.load_spec(f"npz:{path}"))
    if target == "npy":
        return _split(datasets.load_spec(f"npy:{path},{path}"))
    if target == "csv":
        return _split(datasets.load_spec(f"csv:{path}:target"))
    if target == "csv-last":  # a CSV of someone else's: its last column is the target
        return _split(datasets.load_spec(f"csv:{path}:{_last_column(path)}"))
    if target == "parquet":
        return _split(datasets.load_spec(f"parquet:{path}:target"))
    if target == "idx":
        return _touch(datasets.load_idx(path))
    if target == "cifar":
        directory = path + ".d"
        os.makedirs(directory, exist_ok=True)
        link = os.path.join(directory, "data_batch_1.bin")
        if not os.path.lexists(link):
            os.symlink(path, link)
        return _split(datasets.load_spec(f"cifar10:{directory}"))
    if target == "checkpoint":
        return _predict(recipes.load_trained(path))
    if target == "safetensors":
        from fastnn.data import DataError
        from fastnn.interop import load_safetensors

        for arch in SEED_ARCHITECTURES:  # into a given model: it fits one of them, or not
            try:
                load_safetensors(path, model=recipes.build_model(arch))
            except DataError as exc:
                if not names_file(str(exc), path):
                    raise
        return _predict(recipes.load_trained(path))
    if target == "sklearn":
        import pickle

        with open(path, "rb") as f:
            est = pickle.load(f)  # the harness's own pickle: a state it changed
        n = int(getattr(est, "n_features_in_", 3))
        X = np.linspace(-1, 1, 3 * n).reshape(3, n)
        with np.errstate(all="ignore"):
            out = _touch(est.predict(X))
            if hasattr(est, "predict_proba"):
                out += " " + _touch(est.predict_proba(X))
        return out
    raise ValueError(f"no fuzz target {target!r}")
