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
import zlib
from dataclasses import dataclass

import numpy as np

from .data import DataError
from .safeload import (
    MAX_EXPANSION,
    FileFormatError,
    check_file,
    npz_member_names,
    read_npy,
    read_npz,
)

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
    the declared bytes, and declare at most MAX_EXPANSION times their compressed size) or a
    declared size over MAX_IDX_BYTES raise FileFormatError (a DataError).
    """
    check_file(path)
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise FileFormatError(f"{path}: not an IDX file (bad magic number "
                                      f"{head[:4].hex()})")
            code, ndim = head[2], head[3]
            if code not in _IDX_DTYPES or not 1 <= ndim <= 4:
                raise FileFormatError(f"{path}: unsupported IDX type 0x{code:02x} or {ndim} dims")
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise FileFormatError(f"{path}: truncated IDX header")
            shape = tuple(int(v) for v in np.frombuffer(dims_raw, ">u4"))
            dtype = np.dtype(_IDX_DTYPES[code])
            nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if nbytes > MAX_IDX_BYTES:
                raise FileFormatError(f"{path}: header declares {shape} ({nbytes} bytes), over "
                                      f"the limit of {MAX_IDX_BYTES} bytes")
            if path.endswith(".gz") and nbytes > os.path.getsize(path) * MAX_EXPANSION:
                raise FileFormatError(f"{path}: truncated: header declares {shape} = {nbytes} "
                                      f"bytes, more than {os.path.getsize(path)} gzipped bytes "
                                      "can hold "
                                      f"(deflate expands at most {MAX_EXPANSION}:1)")
            if not path.endswith(".gz"):
                available = os.path.getsize(path) - 4 - 4 * ndim
                if available != nbytes:
                    raise FileFormatError(f"{path}: header declares {shape} = {nbytes} bytes of "
                                          f"data, the file has {available}")
            data = _read_at_most(f, nbytes)
            if len(data) != nbytes:
                raise FileFormatError(f"{path}: truncated: header declares {nbytes} bytes of "
                                      f"data, found {len(data)}")
            if f.read(1):
                raise FileFormatError(f"{path}: more data than the header declares {shape}")
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise FileFormatError(f"{path}: cannot read ({exc})") from None
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
    size = os.path.getsize(check_file(path))
    if size == 0 or size % _CIFAR_RECORD:
        raise FileFormatError(f"{path}: {size} bytes is not a whole number of CIFAR-10 records "
                        f"({_CIFAR_RECORD} bytes each)")
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = raw[:, 0].astype(np.int64)
    if labels.max() > 9:
        row = int(np.argmax(labels > 9))
        raise FileFormatError(f"{path}: record {row} has label {labels[row]}, CIFAR-10 has "
                              "10 classes")
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
        raise FileFormatError(f"{path}: {xname} must be numeric, got dtype {X.dtype}")
    if X.ndim == 0 or len(X) == 0:
        raise FileFormatError(f"{path}: {xname} is empty (shape {X.shape})")
    if y is not None:
        if y.ndim not in (1, 2):
            raise FileFormatError(f"{path}: {yname} must have shape (N,) or (N, K), got "
                                  f"{y.shape}")
        if len(y) != len(X):
            raise FileFormatError(f"{path}: {yname} has {len(y)} rows for the {len(X)} rows "
                                  f"of {xname}")
        if y.dtype.kind not in "biufUS":
            raise FileFormatError(f"{path}: {yname} must hold numbers, booleans or strings, "
                                  f"got dtype {y.dtype}")


def load_npz(path: str) -> Split:
    """Arrays ``X`` and ``y`` (and optional ``X_test``, ``y_test``), read without pickle.

    A file with only ``X_test`` and ``y_test`` (or only ``X``) is a valid source for
    scoring or predicting. Targets of any kind (integers, strings, booleans, reals).
    """
    names = npz_member_names(path)
    if not {"X", "X_test"} & set(names):
        raise FileFormatError(f"{path}: no array X or X_test (has {names[:20]})")
    arrays = read_npz(path, ("X", "y", "X_test", "y_test"))
    if "X_test" in arrays and "y_test" not in arrays and "X" in arrays:
        raise FileFormatError(f"{path}: X_test needs y_test")
    for xk, yk in (("X", "y"), ("X_test", "y_test")):
        if xk in arrays:
            _check_part(path, arrays[xk], arrays.get(yk), xk, yk)
    return Split(arrays.get("X"), arrays.get("y"), arrays.get("X_test"), arrays.get("y_test"),
                 name="npz")


def _load_npy(path: str, mmap: bool) -> np.ndarray:
    return read_npy(path, mmap=mmap)


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


def _shown(cell: str, width: int = 40) -> str:
    """A cell for a message: its repr, cut to ``width`` characters (a field may be huge)."""
    return repr(cell) if len(cell) <= width else f"{cell[:width]!r}... ({len(cell)} characters)"


def _parse_targets(cells: list[str], name: str):
    """Target cells of one column: int64 when all are integers, float64 when all are
    numbers, else the strings (refused when the fixed-width string array would take far
    more memory than the text: one huge name among many short ones)."""
    try:
        return np.array([int(c) for c in cells], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        return np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        pass
    longest = max(range(len(cells)), key=lambda i: len(cells[i]))
    need = 4 * len(cells) * len(cells[longest])
    if need > max(64 << 20, 16 * sum(len(c) for c in cells)):
        raise DataError(f"{name}: the name in data row {longest + 1} is "
                        f"{len(cells[longest])} characters; as one array of names the column "
                        f"would take {need} bytes")
    return np.array(cells, dtype=str)


def load_csv(path: str, target: str | None, features: list[str] | None = None) -> Split:
    """A CSV with a header row; ``target`` names the target column (or several,
    comma-separated); all other columns are features, or the columns named in ``features``
    (in that order: a trained model's). ``target`` None reads features only.

    Target cells may be integers, numbers or names (what they mean is decided later, see
    :func:`fastnn.tasks.infer_task`). Empty cells, and text or NaN/Inf in feature columns,
    raise DataError naming the file line (1-based, the header is line 1) and the column.
    The text is UTF-8 (a byte-order mark is skipped); bytes that are not UTF-8 raise
    FileFormatError naming the line and the byte offset. A field may be as long as the file.
    """
    check_file(path)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, os.path.getsize(path) + 1))  # no limit but the file's size
    try:
        return _load_csv(path, target, features)
    except UnicodeDecodeError:
        line, offset, bad = first_bad_utf8(path)
        raise FileFormatError(f"{path}: line {line}, byte offset {offset}: {bad!r} is not "
                              "UTF-8 (save the file as UTF-8)") from None
    except csv.Error as exc:
        raise FileFormatError(f"{path}: not a readable CSV ({exc})") from None
    finally:
        csv.field_size_limit(limit)


def first_bad_utf8(path: str, chunk: int = 1 << 20) -> tuple[int, int, bytes]:
    """(line, byte offset, bytes) of the first bytes of ``path`` that are not UTF-8, read in
    chunks (memory stays ``chunk``); (0, -1, b"") when all are."""
    line, offset, pending = 1, 0, b""
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            data = pending + block
            try:
                data.decode("utf-8")
                ok = len(data)
            except UnicodeDecodeError as exc:
                if block and exc.end == len(data) and exc.start >= len(data) - 3:
                    ok = exc.start  # a character cut by the chunk's end: finish it next time
                else:
                    return line + data[:exc.start].count(b"\n"), offset + exc.start, \
                        data[exc.start:exc.end]
            line += data[:ok].count(b"\n")
            offset += ok
            pending = data[ok:]
            if not block:
                return 0, -1, b""


def _load_csv(path: str, target: str | None, features: list[str] | None) -> Split:
    with open(path, newline="", encoding="utf-8-sig") as f:
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
                    what = "an empty cell" if not cell else _shown(cell)
                    raise DataError(f"{path}: line {line}, column {header[j]!r}: {what} is not "
                                    "a number") from None
                if not np.isfinite(v):
                    raise DataError(f"{path}: line {line}, column {header[j]!r}: {_shown(cell)} "
                                    "is NaN or Inf")
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
        cols = [_parse_targets([r[k] for r in labels], f"{path}, target column {targets[k]!r}")
                for k in range(len(targets))]
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
    kinds = ("use digits, mnist:DIR, fashion-mnist:DIR, cifar10:DIR, npz:FILE, "
             "npy:X.npy,y.npy or csv:FILE:TARGET")
    if os.path.exists(spec):
        raise DataError(f"{spec} is a file; a data spec names its kind: {kinds}")
    if ":" not in spec and (os.sep in spec or "." in spec):  # a path, not a spec
        raise FileNotFoundError(f"no such file: {spec} (a data spec names its kind: {kinds})")
    raise DataError(f"unknown data spec {spec!r}: {kinds}")
