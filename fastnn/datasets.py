"""Data sets from real file formats, read without pickle, checked before anything large is
allocated; and the data specs of ``fastnn train --data``.

=========================  ==============================================================
spec                       what it loads
=========================  ==============================================================
``digits``                 scikit-learn's bundled 8x8 handwritten digits (no download)
``mnist:DIR``              MNIST IDX files in DIR (``train-images-idx3-ubyte[.gz]``, ...)
``fashion-mnist:DIR``      Fashion-MNIST, same file names and format
``cifar10:DIR``            CIFAR-10 binary version (``data_batch_1..5.bin``, ``test_batch.bin``)
``npz:FILE``               arrays ``X``, ``y`` and optionally ``X_test``, ``y_test``
``csv:FILE:TARGET``        a CSV with a header row; TARGET names the label column
=========================  ==============================================================

Every loader returns a :class:`Split`: float or uint8 features (N, D), int64 labels, and a
test part when the source has one.
"""

from __future__ import annotations

import csv
import gzip
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from .data import DataError, as_labels, check_finite

#: Refuse IDX files that declare more than this many bytes of data (a corrupt header).
MAX_IDX_BYTES = 4 << 30

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Split:
    """Training features and labels, and the test part if the source has one."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    name: str = ""
    class_names: list[str] | None = None

    @property
    def n_classes(self) -> int:
        ys = [self.y] + ([self.y_test] if self.y_test is not None else [])
        return int(max(int(v.max()) for v in ys if len(v)) + 1)


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
        parts += [X.reshape(len(X), -1), as_labels(y, name=f"{prefix} labels")]
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
def load_npz(path: str) -> Split:
    """Arrays ``X`` and ``y`` (and optional ``X_test``, ``y_test``), read without pickle."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = {"X", "y"} - set(f.files)
            if missing:
                raise DataError(f"{path}: missing arrays {sorted(missing)} (has {f.files})")
            arrays = {k: f[k] for k in ("X", "y", "X_test", "y_test") if k in f.files}
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read without pickle ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: X_test and y_test must come together")
    out = Split(arrays["X"], as_labels(arrays["y"], len(arrays["X"]), name="y"), name="npz")
    if "X_test" in arrays:
        out.X_test = arrays["X_test"]
        out.y_test = as_labels(arrays["y_test"], len(out.X_test), name="y_test")
    for name, X in (("X", out.X), ("X_test", out.X_test)):
        if X is not None and X.dtype.kind not in "fiu":
            raise DataError(f"{path}: {name} must be numeric, got dtype {X.dtype}")
    return out


def load_csv(path: str, target: str) -> Split:
    """A CSV with a header row; ``target`` names the label column, all others are features.

    Labels may be integers or names (names become classes 0..K-1 in sorted order). Empty
    cells and text in feature columns raise DataError naming the row and the column.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty file (a header row is needed)")
        header = [h.strip() for h in header]
        if target not in header:
            raise DataError(f"{path}: no column {target!r}; the columns are {header}")
        t = header.index(target)
        feats, labels = [], []
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: line {line} has {len(row)} fields, the header has "
                                f"{len(header)}")
            values = []
            for j, cell in enumerate(row):
                if j == t:
                    continue
                cell = cell.strip()
                try:
                    values.append(float(cell))
                except ValueError:
                    what = "an empty cell" if not cell else f"{cell!r}"
                    raise DataError(f"{path}: line {line}, column {header[j]!r}: {what} is not "
                                    "a number") from None
            feats.append(values)
            labels.append(row[t].strip())
    if not feats:
        raise DataError(f"{path}: no data rows")
    X = np.array(feats, dtype=np.float64)
    try:
        as_float = np.array([float(v) for v in labels])
        y = as_labels(as_float, name=f"column {target!r}")
        class_names = None
    except (ValueError, DataError):
        class_names = sorted(set(labels))
        index = {c: i for i, c in enumerate(class_names)}
        y = np.array([index[v] for v in labels], dtype=np.int64)
    check_finite(X, name=path)
    return Split(X, y, name="csv", class_names=class_names)


def load_digits() -> Split:
    """scikit-learn's bundled handwritten digits: 1797 images of 8x8 pixels, 10 classes."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise DataError(
            "the bundled digits data come with scikit-learn, which is not installed: "
            "pip install 'fastnn[data]' (or: pip install scikit-learn)"
        ) from None
    d = sk_digits()
    return Split(d.data.astype(np.float64), d.target.astype(np.int64), name="digits")


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
    if kind == "csv" and rest:
        path, sep, target = rest.rpartition(":")
        if not sep or not path or not target:
            raise DataError(f"csv spec needs a target column: csv:FILE:TARGET, got {spec!r}")
        return load_csv(path, target)
    raise DataError(
        f"unknown data spec {spec!r}: use digits, mnist:DIR, fashion-mnist:DIR, cifar10:DIR, "
        "npz:FILE or csv:FILE:TARGET"
    )
