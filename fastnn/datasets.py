"""Data sets from real file formats, read without pickle, checked before anything large is
allocated; and the data specs of ``fastnn train --data``.

=========================  ==============================================================
spec                       what it loads
=========================  ==============================================================
``digits``                 scikit-learn's bundled 8x8 handwritten digits (no download)
``mnist:DIR``              MNIST IDX files in DIR (``train-images-idx3-ubyte[.gz]``, ...)
``fashion-mnist:DIR``      Fashion-MNIST, same file names and format
``cifar10:DIR``            CIFAR-10 binary version (``data_batch_1..5.bin``, ``test_batch.bin``)
``npz:FILE``               arrays ``X``, ``y`` and optionally ``X_test``, ``y_test`` (or only
                           ``X_test``, ``y_test``: a file to score)
``npy:X.npy,y.npy``        uncompressed ``.npy`` files, memory-mapped (optionally followed by
                           ``,X_test.npy,y_test.npy``)
``csv:FILE:TARGET``        a CSV with a header row; TARGET names the target column (or
                           several, comma-separated: ``csv:FILE:T1,T2``)
=========================  ==============================================================

Every loader returns a :class:`Split`: features (N, D) as stored (uint8 images stay uint8),
the targets as they are in the file (integers, names, booleans or real values: what they
mean is decided by :func:`fastnn.tasks.infer_task`), and a test part when the source has one.
"""

from __future__ import annotations

import csv
import gzip
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from .data import DataError

#: Refuse IDX files that declare more than this many bytes of data (a corrupt header).
MAX_IDX_BYTES = 4 << 30

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Split:
    """Features and targets, and the test part if the source has one.

    ``X`` may be None for a file that holds only a test part (``X_test``, ``y_test``).
    ``y_test`` may be None for features to predict (a CSV without the target column).
    """

    X: np.ndarray | None
    y: np.ndarray | None
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    name: str = ""
    #: Feature column names (CSV) and target column names (CSV), where the source has them.
    feature_names: list[str] | None = None
    target_names: list[str] | None = None


# ------------------------------------------------------------------------------- IDX
def _open(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def load_idx(path: str) -> np.ndarray:
    """Read an IDX file (MNIST's format), raw or gzipped.

    The header (magic 0x0000, a type code, the number of dimensions, the sizes) is checked
    before the data is read: a wrong magic number, an unknown type, sizes that exceed the
    file (raw files: compared with the file length; gzipped: the stream must hold exactly
    the declared bytes) or a declared size over MAX_IDX_BYTES raise DataError.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise DataError(f"{path}: not an IDX file (bad magic number {head[:4].hex()})")
            code, ndim = head[2], head[3]
            if code not in _IDX_DTYPES or not 1 <= ndim <= 4:
                raise DataError(f"{path}: unsupported IDX type 0x{code:02x} or {ndim} dims")
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            shape = tuple(int(v) for v in np.frombuffer(dims_raw, ">u4"))
            dtype = np.dtype(_IDX_DTYPES[code])
            nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if nbytes > MAX_IDX_BYTES:
                raise DataError(f"{path}: header declares {shape} ({nbytes} bytes), over the "
                                f"limit of {MAX_IDX_BYTES} bytes")
            if not path.endswith(".gz"):
                available = os.path.getsize(path) - 4 - 4 * ndim
                if available != nbytes:
                    raise DataError(f"{path}: header declares {shape} = {nbytes} bytes of data, "
                                    f"the file has {available}")
            data = _read_at_most(f, nbytes)
            if len(data) != nbytes:
                raise DataError(f"{path}: truncated: header declares {nbytes} bytes of data, "
                                f"found {len(data)}")
            if f.read(1):
                raise DataError(f"{path}: more data than the header declares {shape}")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DataError(f"{path}: cannot read ({exc})") from None
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _read_at_most(f, n: int, chunk: int = 1 << 22) -> bytes:
    """Up to ``n`` bytes, read in chunks: memory follows what the file holds, not what a
    (possibly corrupt) header declares."""
    parts, got = [], 0
    while got < n:
        block = f.read(min(chunk, n - got))
        if not block:
            break
        parts.append(block)
        got += len(block)
    return b"".join(parts)


def _find(directory: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        for cand in (name, name.replace("-idx", ".idx")):
            path = os.path.join(directory, cand)
            if os.path.isfile(path):
                return path
    raise FileNotFoundError(f"{directory}: no {stem} (or {stem}.gz)")


def load_mnist(directory: str, name: str = "mnist") -> Split:
    """MNIST or Fashion-MNIST from the four standard IDX files in ``directory``."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no such directory: {directory}")
    parts = []
    for prefix in ("train", "t10k"):
        X = load_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
        y = load_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
        if X.ndim != 3 or y.ndim != 1 or len(X) != len(y):
            raise DataError(f"{directory}: {prefix} images {X.shape} and labels {y.shape} do not "
                            "match (expected (N, rows, cols) and (N,))")
        if y.dtype.kind not in "iu" or (len(y) and y.max() > 9):
            row = int(np.argmax(y > 9)) if y.dtype.kind in "iu" else 0
            raise DataError(f"{directory}: {prefix} label {row} is {y[row].item()!r}; "
                            f"{name} has the 10 classes 0..9")
        parts += [X.reshape(len(X), -1), y.astype(np.int64)]
    return Split(*parts, name=name)


# ---------------------------------------------------------------------------- CIFAR-10
_CIFAR_RECORD = 1 + 3 * 32 * 32


def _load_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    size = os.path.getsize(path)
    if size == 0 or size % _CIFAR_RECORD:
        raise DataError(f"{path}: {size} bytes is not a whole number of CIFAR-10 records "
                        f"({_CIFAR_RECORD} bytes each)")
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = raw[:, 0].astype(np.int64)
    if labels.max() > 9:
        row = int(np.argmax(labels > 9))
        raise DataError(f"{path}: record {row} has label {labels[row]}, CIFAR-10 has 10 classes")
    return raw[:, 1:], labels


def load_cifar10(directory: str) -> Split:
    """CIFAR-10's binary version: ``data_batch_1..5.bin`` and ``test_batch.bin``."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no such directory: {directory}")
    train = sorted(f for f in os.listdir(directory) if f.startswith("data_batch_")
                   and f.endswith(".bin"))
    if not train:
        raise FileNotFoundError(f"{directory}: no data_batch_*.bin files (the binary version)")
    parts = [_load_cifar_batch(os.path.join(directory, f)) for f in train]
    X, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    test = os.path.join(directory, "test_batch.bin")
    X_test, y_test = _load_cifar_batch(test) if os.path.isfile(test) else (None, None)
    return Split(X, y, X_test, y_test, name="cifar10")


# --------------------------------------------------------------------------- npz, csv
def _check_part(path: str, X, y, xname: str, yname: str) -> None:
    if X.dtype.kind not in "fiu":
        raise DataError(f"{path}: {xname} must be numeric, got dtype {X.dtype}")
    if X.ndim == 0 or len(X) == 0:
        raise DataError(f"{path}: {xname} is empty (shape {X.shape})")
    if y is not None:
        if y.ndim not in (1, 2):
            raise DataError(f"{path}: {yname} must have shape (N,) or (N, K), got {y.shape}")
        if len(y) != len(X):
            raise DataError(f"{path}: {yname} has {len(y)} rows for the {len(X)} rows of "
                            f"{xname}")
        if y.dtype.kind not in "biufUS":
            raise DataError(f"{path}: {yname} must hold numbers, booleans or strings, got "
                            f"dtype {y.dtype}")


def load_npz(path: str) -> Split:
    """Arrays ``X`` and ``y`` (and optional ``X_test``, ``y_test``), read without pickle.

    A file with only ``X_test`` and ``y_test`` (or only ``X``) is a valid source for
    scoring or predicting. Targets of any kind (integers, strings, booleans, reals).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not {"X", "X_test"} & set(f.files):
                raise DataError(f"{path}: no array X or X_test (has {f.files})")
            arrays = {k: f[k] for k in ("X", "y", "X_test", "y_test") if k in f.files}
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: holds arrays of Python objects, which fastnn does not read "
                        "(save strings as a str array, e.g. y.astype(str))") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if "X_test" in arrays and "y_test" not in arrays and "X" in arrays:
        raise DataError(f"{path}: X_test needs y_test")
    for xk, yk in (("X", "y"), ("X_test", "y_test")):
        if xk in arrays:
            _check_part(path, arrays[xk], arrays.get(yk), xk, yk)
    return Split(arrays.get("X"), arrays.get("y"), arrays.get("X_test"), arrays.get("y_test"),
                 name="npz")


def _load_npy(path: str, mmap: bool) -> np.ndarray:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: not a .npy array fastnn can read without pickle "
                        f"({str(exc).split('.')[0]})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None


def load_npy(paths: list[str]) -> Split:
    """``X.npy,y.npy[,X_test.npy,y_test.npy]``: features memory-mapped (read from disk as
    batches need them, so a data set larger than memory trains), targets read whole."""
    if len(paths) not in (1, 2, 4):
        raise DataError(f"npy spec takes X.npy,y.npy or X.npy,y.npy,X_test.npy,y_test.npy, "
                        f"got {len(paths)} files")
    X = _load_npy(paths[0], mmap=True)
    y = _load_npy(paths[1], mmap=False) if len(paths) > 1 else None
    _check_part(paths[0], X, y, "X", "y")
    X_test = y_test = None
    if len(paths) == 4:
        X_test, y_test = _load_npy(paths[2], mmap=True), _load_npy(paths[3], mmap=False)
        _check_part(paths[2], X_test, y_test, "X_test", "y_test")
    return Split(X, y, X_test, y_test, name="npy")


def _parse_targets(cells: list[str], name: str):
    """Target cells of one column: int64 when all are integers, float64 when all are
    numbers, else the strings."""
    try:
        return np.array([int(c) for c in cells], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        return np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        return np.array(cells, dtype=str)


def load_csv(path: str, target: str | None, features: list[str] | None = None) -> Split:
    """A CSV with a header row; ``target`` names the target column (or several,
    comma-separated); all other columns are features, or the columns named in ``features``
    (in that order: a trained model's). ``target`` None reads features only.

    Target cells may be integers, numbers or names (what they mean is decided later, see
    :func:`fastnn.tasks.infer_task`). Empty cells, and text or NaN/Inf in feature columns,
    raise DataError naming the file line (1-based, the header is line 1) and the column.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty file (a header row is needed)")
        header = [h.strip() for h in header]
        targets: list[str] = []
        if target is not None:
            targets = [target] if target in header else [t.strip() for t in target.split(",")]
            missing = [t for t in targets if t not in header]
            if missing:
                raise DataError(f"{path}: no column {missing[0]!r}; the columns are {header}")
        t_cols = [header.index(t) for t in targets]
        if features is not None:
            missing = [c for c in features if c not in header]
            if missing:
                raise DataError(f"{path}: no column {missing[0]!r}, which the model takes as "
                                f"a feature; the columns are {header}")
            f_cols = [header.index(c) for c in features]
        else:
            f_cols = [j for j in range(len(header)) if j not in t_cols]
        feats, labels = [], []
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: line {line} has {len(row)} fields, the header has "
                                f"{len(header)}")
            values = []
            for j in f_cols:
                cell = row[j].strip()
                try:
                    v = float(cell)
                except ValueError:
                    what = "an empty cell" if not cell else f"{cell!r}"
                    raise DataError(f"{path}: line {line}, column {header[j]!r}: {what} is not "
                                    "a number") from None
                if not np.isfinite(v):
                    raise DataError(f"{path}: line {line}, column {header[j]!r}: {cell!r} is "
                                    "NaN or Inf")
                values.append(v)
            feats.append(values)
            cells = [row[j].strip() for j in t_cols]
            for j, c in zip(t_cols, cells, strict=True):
                if not c:
                    raise DataError(f"{path}: line {line}, column {header[j]!r}: the target "
                                    "is empty")
            labels.append(cells)
    if not feats:
        raise DataError(f"{path}: no data rows")
    X = np.array(feats, dtype=np.float64)
    y = None
    if targets:
        cols = [_parse_targets([r[k] for r in labels], targets[k]) for k in range(len(targets))]
        if len(cols) == 1:
            y = cols[0]
        else:
            if any(c.dtype.kind not in "iuf" for c in cols):
                bad = next(t for t, c in zip(targets, cols, strict=True)
                           if c.dtype.kind not in "iuf")
                raise DataError(f"{path}: several target columns must all be numeric; "
                                f"{bad!r} holds text")
            y = np.stack([c.astype(np.float64) for c in cols], axis=1)
    return Split(X, y, name="csv", feature_names=[header[j] for j in f_cols],
                 target_names=targets or None)


def load_digits() -> Split:
    """scikit-learn's bundled handwritten digits: 1797 images of 8x8 pixels, 10 classes.

    Read from scikit-learn's own file (``sklearn/datasets/data/digits.csv.gz``: 64 pixel
    columns, then the label) without importing scikit-learn, whose import (SciPy's stats
    among it) cost a first ``fastnn train`` 2.5 s of CPU time; scikit-learn's loader where
    the file is not there."""
    import importlib.util

    sklearn = importlib.util.find_spec("sklearn")  # finds the package without importing it
    path = os.path.join(os.path.dirname(sklearn.origin), "datasets", "data", "digits.csv.gz") \
        if sklearn is not None and sklearn.origin else ""
    if os.path.isfile(path):
        rows = np.loadtxt(path, delimiter=",", dtype=np.float64)
        return Split(rows[:, :-1], rows[:, -1].astype(np.int64), name="digits")
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise DataError(
            "the bundled digits data come with scikit-learn, which is not installed: "
            "pip install 'fastnn[data]' (or: pip install scikit-learn)"
        ) from None
    d = sk_digits()
    return Split(d.data.astype(np.float64), d.target.astype(np.int64), name="digits")


def split_csv_spec(rest: str) -> tuple[str, str | None]:
    """``FILE:TARGET`` (the part of a ``csv:`` spec after ``csv:``) as (FILE, TARGET), or
    (``rest``, None) when it names no target: a path may hold ':' itself, so TARGET counts
    only where what comes before the last ':' is a file."""
    path, sep, target = rest.rpartition(":")
    if sep and path and target and os.path.isfile(path):
        return path, target
    if os.path.isfile(rest) or not sep or not path or not target:
        return rest, None
    return path, target  # a missing file: load_csv names it


def load_spec(spec: str) -> Split:
    """Load the data named by a ``fastnn train --data`` spec (see the module table)."""
    kind, _, rest = spec.partition(":")
    if kind == "digits" and not rest:
        return load_digits()
    if kind in ("mnist", "fashion-mnist") and rest:
        return load_mnist(rest, name=kind)
    if kind == "cifar10" and rest:
        return load_cifar10(rest)
    if kind == "npz" and rest:
        return load_npz(rest)
    if kind == "npy" and rest:
        return load_npy([p.strip() for p in rest.split(",")])
    if kind == "csv" and rest:
        path, target = split_csv_spec(rest)
        if target is None:
            raise DataError(f"csv spec needs a target column: csv:FILE:TARGET, got {spec!r}")
        return load_csv(path, target)
    raise DataError(
        f"unknown data spec {spec!r}: use digits, mnist:DIR, fashion-mnist:DIR, cifar10:DIR, "
        "npz:FILE, npy:X.npy,y.npy or csv:FILE:TARGET"
    )
