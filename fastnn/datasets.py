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
                           several, comma-separated: ``csv:FILE:T1,T2``); mixed columns
                           (numbers, text, booleans, dates, blank cells), read by pyarrow
``parquet:FILE:TARGET``    a Parquet file, the same way
=========================  ==============================================================

Every loader returns a :class:`Split`: features (N, D) as stored (CSV and Parquet: the raw
columns as a ``pyarrow.Table``, encoded by :mod:`fastnn.tabular`) (uint8 images stay uint8),
the targets as they are in the file (integers, names, booleans or real values: what they
mean is decided by :func:`fastnn.tasks.infer_task`), and a test part when the source has one.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass

import numpy as np

from ._arrow import from_numpy, null_scalar, to_numpy
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
    #: CSV and Parquet: the raw feature columns (a ``pyarrow.Table``; ``X`` is None), which
    #: :class:`fastnn.tabular.TableEncoder` turns into numbers.
    table: object = None
    #: Tables read with ``blank_target="drop"``: how many rows were left out because their
    #: target is blank, and the first one's place ("line 12" of a CSV, else "row 10").
    left_out: int = 0
    first_left_out: str = ""


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


def read_table(path: str, column_types: dict | None = None):
    """A CSV (header row) or Parquet file as a ``pyarrow.Table`` (``.parquet``/``.pq``:
    Parquet, anything else: CSV).

    CSV is read by pyarrow: typed (integers, reals, booleans, dates and timestamps, text),
    multi-threaded, blank cells and ``NA``/``NaN``/``null`` as blanks (text columns too).
    ``column_types`` (column -> Arrow type) types those columns as given (a trained model's
    way). Text columns of a Parquet file, and of a CSV larger than 4 MiB, are read
    dictionary-encoded (``dictionary<int32, string>``; see :func:`_text_as_dictionary`).
    Any read error becomes DataError naming the file and what pyarrow says (for a CSV the
    offending row's text, or the column and value).
    """
    import pyarrow as pa

    if isinstance(path, pa.Table):
        return path
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        if str(path).lower().endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            # pre_buffer=False: a local file is read as its columns are decoded (the whole
            # file read first raised the peak memory by a tenth, and was no faster); text
            # dictionary-encoded (see _text_as_dictionary). ParquetFile, not pq.read_table:
            # read_table goes through pyarrow.dataset, whose import imports pandas where it
            # is installed (1.1 s of a first read of the bench's table of a million rows)
            schema = pq.read_schema(path)
            with pq.ParquetFile(path, pre_buffer=False, read_dictionary=[
                    f.name for f in schema if pa.types.is_string(f.type)
                    or pa.types.is_large_string(f.type)]) as parquet:
                table = parquet.read()
        else:
            import pyarrow.csv as pcsv

            table = _read_csv(pcsv, path, column_types)
            table.column_names  # noqa: B018  (names with bytes that are not UTF-8 raise here)
            # pyarrow reads a column with bytes that are not UTF-8 as binary: name them
            if any(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)
                   for f in table.schema):
                raise pa.ArrowInvalid("CSV: invalid UTF8 data")
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        what = str(exc).strip().replace("\n", " ")
        if "utf8" in what.lower() or "utf-8" in what.lower():
            line, offset, bad = first_bad_utf8(path)
            if offset >= 0:
                raise FileFormatError(f"{path}: line {line}, byte offset {offset}: {bad!r} is "
                                      "not UTF-8 (save the file as UTF-8)") from None
        if len(what) > 300:
            what = what[:300] + "..."
        if "Empty CSV file" in what:
            what = "empty file (a header row is needed)"
        raise DataError(f"{path}: cannot read it as {_format(path)} ({what})") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no data rows")
    # the reader's scratch memory back to the system (what pyarrow's allocator can give
    # back): the encoded matrix that follows comes on top of what is kept
    pa.default_memory_pool().release_unused()
    return table


#: The bytes of a CSV whose types are inferred first (see :func:`_read_csv`).
CSV_SAMPLE_BYTES = 1 << 20


def _read_csv(pcsv, path: str, column_types: dict | None):
    """pyarrow's CSV reader with blocks large enough for the longest row: a row may be as
    long as the file (memory stays bounded by the file's size), never cut by a block.

    A large file's column types are first inferred from its first :data:`CSV_SAMPLE_BYTES`
    (whole rows) and the whole file is read with them, which skips the inference (measured:
    a third of the reader's CPU time on a million rows of 20 real and 5 text columns). The
    result is the same table: pyarrow infers a column's type as the first of its list
    (null, integer, boolean, date, time, timestamp, real, text) into which every value
    converts; a type that converts the whole file converted the sample, and every earlier
    one failed on the sample, so on the file too. If the typed read fails (a later row
    needs a wider type), the file is read again with inference."""
    size = os.path.getsize(path)
    if size > 4 * CSV_SAMPLE_BYTES:
        types = _sample_types(pcsv, path)
        if types:
            try:
                return _read_csv_blocks(pcsv, path, _text_as_dictionary(
                    {**types, **(column_types or {})}), size)
            except Exception:  # noqa: BLE001  (any failure: the inferring read decides)
                pass
    return _read_csv_blocks(pcsv, path, column_types, size)


#: Date formats a CSV column is read as dates in, besides ISO 8601 (2012-01-31, with a time
#: or not): year first with slashes, as spreadsheets and many exports write them (Seattle's
#: weather in vega_datasets: 2012/01/31). Day-first and month-first dates (01/02/2012) are
#: left as text: which one a file means cannot be told from a column that fits both.
DATE_FORMATS = ("%Y/%m/%d", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M")


def _timestamp_parsers(pcsv) -> list:
    return [pcsv.ISO8601, *DATE_FORMATS]


def _text_as_dictionary(types: dict) -> dict:
    """Column types with text read dictionary-encoded (each block of rows gets its values'
    dictionary and an int32 index per row): the codes, the distinct count and the
    vocabulary of :mod:`fastnn.tabular` then hash each block's dictionary (a few thousand
    values) instead of every row's text, and the table is smaller. The values are the same
    text (``table.column(name).cast(pa.string())`` is the plain column)."""
    import pyarrow as pa

    return {name: pa.dictionary(pa.int32(), pa.string()) if pa.types.is_string(t) else t
            for name, t in types.items()}


def _sample_types(pcsv, path: str) -> dict:
    """The column types pyarrow infers from the first rows of ``path`` (its first
    :data:`CSV_SAMPLE_BYTES`, cut after the last whole line), columns all blank there left
    out; {} if that part cannot be read."""
    import pyarrow as pa

    with open(path, "rb") as f:
        head = f.read(CSV_SAMPLE_BYTES)
    cut = head.rfind(b"\n")
    if cut <= 0 or head.count(b"\n", 0, cut) < 2:
        return {}
    try:
        sample = pcsv.read_csv(pa.py_buffer(head[:cut + 1]), convert_options=pcsv.ConvertOptions(
            strings_can_be_null=True, timestamp_parsers=_timestamp_parsers(pcsv)))
    except Exception:  # noqa: BLE001  (the whole read reports it)
        return {}
    return {f.name: f.type for f in sample.schema if not pa.types.is_null(f.type)}


def _read_csv_blocks(pcsv, path: str, column_types: dict | None, size: int):
    convert = pcsv.ConvertOptions(strings_can_be_null=True, column_types=column_types or {},
                                  timestamp_parsers=_timestamp_parsers(pcsv))
    block = 1 << 22
    while True:
        try:
            return pcsv.read_csv(path, read_options=pcsv.ReadOptions(block_size=block),
                                 convert_options=convert)
        except Exception as exc:  # noqa: BLE001  (pyarrow's ArrowInvalid; re-raised below)
            if "straddling" not in str(exc) or block > size:
                raise
            block = min(4 * block, size + 1)


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


def _format(path) -> str:
    return "Parquet" if str(path).lower().endswith((".parquet", ".pq")) else "CSV"


def as_table(data):
    """A pandas DataFrame or a pyarrow Table as a ``pyarrow.Table`` (anything else: None)."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if type(data).__name__ == "DataFrame" and hasattr(data, "columns"):
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise DataError(f"the DataFrame cannot be read as a table ({exc})") from None
    return None


def target_values(col, name: str, where: str, csv_lines: bool = True) -> np.ndarray:
    """A target column as NumPy: int64 when every value is a whole number, float64 for
    other numbers, bool, or str. A blank raises DataError naming the row (for a CSV, its
    line: the header is line 1)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = _target_column(col)
    if col.null_count:
        row = int(np.argmax(to_numpy(col.is_null())))
        at = f"line {row + 2}" if csv_lines else f"row {row}"
        raise DataError(f"{where}: {at}, column {name!r}: the target is empty")
    t = col.type
    if pa.types.is_integer(t):
        return np.asarray(to_numpy(col), np.int64)
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        v = np.asarray(to_numpy(col.cast(pa.float64())), np.float64)
        if np.isfinite(v).all() and (v == np.round(v)).all() and (np.abs(v) < 2**53).all():
            return v.astype(np.int64)
        return v
    if pa.types.is_boolean(t):
        return np.asarray(to_numpy(col), bool)
    try:
        names = col.cast(pa.string())
    except pa.ArrowException as exc:  # bytes that are not UTF-8, nested values
        raise DataError(f"{where}: column {name!r} ({t}) cannot be read as target names: "
                        f"{exc}") from None
    lengths = to_numpy(pc.utf8_length(names))
    longest = int(np.argmax(lengths)) if len(lengths) else 0
    # a fixed-width array of names takes (rows x longest name) characters: refused when one
    # huge name among many short ones would make that far more than the text itself
    need = 4 * len(lengths) * (int(lengths[longest]) if len(lengths) else 0)
    if need > max(64 << 20, 16 * int(lengths.sum())):
        at = f"line {longest + 2}" if csv_lines else f"row {longest}"
        raise DataError(f"{where}: {at}, column {name!r}: the name is {int(lengths[longest])} "
                        f"characters; as one array of names the column would take {need} bytes")
    return np.asarray(to_numpy(names), dtype=str)


def load_table(path, target: str | None, features: list[str] | None = None,
               column_types: dict | None = None, blank_target: str = "error") -> Split:
    """A CSV or Parquet file (or a pandas DataFrame / pyarrow Table) as a Split whose
    ``table`` holds the feature columns (raw, typed; see :mod:`fastnn.tabular`) and ``y``
    the target.

    ``target`` names the target column (or several, comma-separated: all numeric); None
    reads features only. The features are every other column, or the columns named in
    ``features`` (a trained model's; a target column in the file is then ignored).

    ``blank_target``: a row whose target is blank raises DataError naming its line
    (``"error"``), or is left out (``"drop"``: what a training or test file's rows without a
    label are good for), counted in the Split's ``left_out`` and ``first_left_out``; a file
    whose every target is blank raises either way.
    """
    if blank_target not in ("error", "drop"):
        raise ValueError(f"load_table: blank_target must be 'error' or 'drop', got "
                         f"{blank_target!r}")
    table = as_table(path)
    where = "the table" if table is not None else str(path)
    if table is None:
        table = read_table(path, column_types)
    header = list(table.column_names)
    seen: set[str] = set()
    twice = next((c for c in header if c in seen or seen.add(c)), None)
    if twice is not None:
        raise DataError(f"{where}: the column name {twice!r} appears {header.count(twice)} "
                        f"times in the header; names must be unique")
    targets: list[str] = []
    if target is not None:
        targets = [target] if target in header else [t.strip() for t in target.split(",")]
        missing = [t for t in targets if t not in header]
        if missing:
            raise DataError(f"{where}: no column {missing[0]!r}; the columns are {header}")
    if features is not None:
        missing = [c for c in features if c not in header]
        if missing:
            raise DataError(f"{where}: no column {missing[0]!r}, which the model takes as "
                            f"a feature; the columns are {header}")
        names = list(features)
    else:
        names = [c for c in header if c not in targets]
    if not names:
        raise DataError(f"{where}: no feature columns besides the target {targets}")
    csv_lines = where != "the table" and _format(path) == "CSV"
    y = None
    left_out, first_left_out = 0, ""
    if targets and blank_target == "drop":
        table, left_out, first_left_out = _drop_blank_targets(table, targets, where, csv_lines)
    if targets:
        cols = [target_values(table.column(t), t, where, csv_lines) for t in targets]
        if len(cols) == 1:
            y = cols[0]
        else:
            bad = [t for t, c in zip(targets, cols, strict=True) if c.dtype.kind not in "iuf"]
            if bad:
                raise DataError(f"{where}: several target columns must all be numeric; "
                                f"{bad[0]!r} holds text")
            y = np.stack([c.astype(np.float64) for c in cols], axis=1)
    return Split(None, y, name="parquet" if _format(path) == "Parquet" else "csv",
                 feature_names=names, target_names=targets or None,
                 table=table.select(names), left_out=left_out, first_left_out=first_left_out)


def _target_column(col):
    """A target column plain (not dictionary-encoded) with NaN as blank: what
    :func:`target_values` reads and what a blank target is."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_floating(col.type):
        col = pc.if_else(pc.is_nan(col), null_scalar(col.type), col)
    return col


def _drop_blank_targets(table, targets: list[str], where: str, csv_lines: bool):
    """(``table`` without the rows whose target (any of ``targets``) is blank or NaN, how
    many, where the first was)."""
    import pyarrow.compute as pc

    keep = None
    for t in targets:
        ok = pc.is_valid(_target_column(table.column(t)))
        keep = ok if keep is None else pc.and_(keep, ok)
    keep = np.asarray(to_numpy(keep), bool)
    if keep.all():
        return table, 0, ""
    if not keep.any():
        raise DataError(f"{where}: every row's target ({', '.join(map(repr, targets))}) is "
                        "blank; nothing to train or score on")
    row = int(np.argmin(keep))
    at = f"line {row + 2}" if csv_lines else f"row {row}"
    return table.filter(from_numpy(keep)), int((~keep).sum()), at


def load_csv(path: str, target: str | None, features: list[str] | None = None) -> Split:
    """A CSV with a header row: see :func:`load_table` (the same for Parquet)."""
    return load_table(path, target, features)


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
    if kind in ("csv", "parquet") and rest:
        path, target = split_csv_spec(rest)
        if target is None:
            raise DataError(f"{kind} spec needs a target column: {kind}:FILE:TARGET, got "
                            f"{spec!r}")
        return load_table(path, target)
    kinds = ("use digits, mnist:DIR, fashion-mnist:DIR, cifar10:DIR, npz:FILE, "
             "npy:X.npy,y.npy, csv:FILE:TARGET or parquet:FILE:TARGET")
    if os.path.exists(spec):
        raise DataError(f"{spec} is a file; a data spec names its kind: {kinds}")
    if ":" not in spec and (os.sep in spec or "." in spec):  # a path, not a spec
        raise FileNotFoundError(f"no such file: {spec} (a data spec names its kind: {kinds})")
    raise DataError(f"unknown data spec {spec!r}: {kinds}")
