"""Column roles, missing values, vocabularies and date parts: a raw table becomes the
numeric matrix a :class:`fastnn.nn.TabularMLP` reads, the same way at training and at
prediction time.

A :class:`TableEncoder` is fitted on a training table (a ``pyarrow.Table``, see
:func:`fastnn.datasets.read_table`) and turns any table with the same columns into one
float64 matrix (N, D)::

    [ numeric columns | missing indicators | date parts | category codes ]
      <------------- n_continuous (standardized later) --> <- one per categorical ->

Roles (decided from the training table; ``categorical=``, ``numeric=``, ``drop=`` override):

=============  ===========================================================================
numeric        real numbers; whole numbers with more than 20 distinct values
categorical    text; booleans; whole numbers with at most 20 distinct values (the rule of
               :data:`fastnn.tasks.AUTO_MAX_SMALL_CLASSES`, fastai's ``max_card`` too),
               whose value is also kept as a continuous feature (measured on plotnine's
               mpg table: a count such as miles per gallon as a category alone lost
               the order, and unseen values in a test file became "unknown")
date           dates and timestamps: year, month, day, weekday (Monday 0), day of year and
               the elapsed days since 1970-01-01
dropped        with a reason: empty (every cell blank); constant; an identifier (text that
               differs in every row; whole numbers lo..lo+N-1, one per row; or a different
               whole number in every row, all within 0..2N: the row numbers of a table that
               was split, like the ``Id`` of the Ames houses' training part); free text (nearly
               one value per row: at least 90 % distinct)
=============  ===========================================================================

Numbers outside the training range are clipped to it (the smallest and largest value of
the fitted rows, per numeric column and per whole-number categorical's value; not dates): an
MLP extrapolates linearly, so one test house of 5,642 square feet (Ames; the largest in
training had 4,676) was priced at 660,000 instead of 160,000, and that one row took the
test R² from 0.86 to 0.74 (gradient boosting, which cannot extrapolate, is not hurt). Clipped
values are counted (``"clipped"``) like blanks.

Missing and unseen values never raise: a numeric (or date) blank becomes the training
median, and a 0/1 indicator column is added for each column that had blanks in training;
a categorical blank is code 0 (its own category) when training had blanks, else it counts as
unknown; a category never seen in training is code 1, "unknown", whose embedding row is held
at zero (``padding_idx``); the training vocabulary starts at code 2. :meth:`TableEncoder.transform`
counts every fill and every unknown, per column.

The state is plain JSON plus string arrays (no pickle): :meth:`TableEncoder.state` and
:meth:`TableEncoder.from_state`, so a checkpoint carries it and an ONNX graph can be built
from it (a LabelEncoder per categorical column from its vocabulary, Where/IsNaN with the
medians for blanks).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from ._arrow import from_numpy, null_scalar, string_array, to_numpy
from .data import DataError
from .kernels import rows as K_rows
from .nn.tabular import embedding_size
from .tasks import AUTO_MAX_SMALL_CLASSES

#: Codes every categorical column reserves before its vocabulary.
BLANK_CODE, UNKNOWN_CODE, FIRST_CODE = 0, 1, 2
#: Text with at least this share of distinct values among its non-blank cells is free text.
FREE_TEXT_SHARE = 0.9
#: A column of real numbers (not all whole) with more than DISTINCT_SHOWN distinct values
#: among its first DISTINCT_HEAD_ROWS cells shows its distinct count as ">1000" (in the role
#: table, ``columns.json`` and the checkpoint: :attr:`ColumnRole.many_distinct`) instead of
#: counting every cell: the count decides nothing for such a column (only whole numbers and
#: text have rules on it), and an exact count hashes every cell (about 30 ms a column of a
#: million rows: 0.6 s of CPU for 20 such columns, a sixth of reading and encoding the
#: table of ``fastnn bench --tables``).
DISTINCT_SHOWN = 1000
DISTINCT_HEAD_ROWS = 8192
#: The identifier and free-text rules need at least this many rows (a tiny table says little).
MIN_ROWS_FOR_ID = 20
#: Date parts, in the order of their columns.
DATE_PARTS = ("year", "month", "day", "weekday", "dayofyear", "elapsed_days")
ROLES = ("numeric", "categorical", "date", "dropped")


def _pa():
    import pyarrow as pa
    import pyarrow.compute as pc

    return pa, pc


def _kind(typ) -> str:
    """The kind of an Arrow type: integer, float, bool, text, date, null or other."""
    pa, _ = _pa()
    t = pa.types
    if t.is_integer(typ):
        return "integer"
    if t.is_floating(typ) or t.is_decimal(typ):
        return "float"
    if t.is_boolean(typ):
        return "bool"
    if t.is_string(typ) or t.is_large_string(typ):
        return "text"
    if t.is_dictionary(typ):
        return _kind(typ.value_type)
    if t.is_date(typ) or t.is_timestamp(typ):
        return "date"
    if t.is_null(typ):
        return "null"
    return "other"


def _plain(col):
    """A column without dictionary encoding, NaN as blank (Parquet from pandas holds NaN)."""
    pa, pc = _pa()
    if isinstance(col, pa.ChunkedArray) and pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if _kind(col.type) == "float":
        col = col.cast(pa.float64())
        col = pc.if_else(pc.is_nan(col), null_scalar(pa.float64()), col)
    return col


def _undict(col):
    """A column without dictionary encoding."""
    pa, _ = _pa()
    if isinstance(col, pa.ChunkedArray) and pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col


def _float_values(col) -> np.ndarray:
    """An integer or real column (not dictionary-encoded) as float64 (N,), NaN for blanks
    (nulls and NaN alike): one conversion, shared by the column's facts and its fit.
    Possibly read-only (Arrow's own buffer)."""
    pa, _ = _pa()
    if col.type != pa.float64():
        # unsafe: whole numbers beyond 2**53 round to the nearest float64 (an identifier of
        # such numbers is counted on its own values, and dropped, before this matters)
        col = col.cast(pa.float64(), safe=False)
    return np.asarray(to_numpy(col), np.float64)


def _dictionary(col):
    """A text column (string, or dictionary-encoded text) as a ChunkedArray of dictionary
    type whose chunks share one dictionary: a column read dictionary-encoded (as
    :func:`fastnn.datasets.read_table` reads text) has its chunks' dictionaries unified,
    which hashes the dictionaries, not the rows; other text is hashed once."""
    pa, pc = _pa()
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    if pa.types.is_dictionary(col.type) and (
            any(c.dictionary.null_count for c in col.chunks)  # Arrow cannot unify those
            or sum(len(c.dictionary) for c in col.chunks) > len(col)):  # a slice of a table
        col = col.cast(col.type.value_type)
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col.cast(pa.string()))
    return col.unify_dictionaries() if col.num_chunks > 1 else col


def _indices(col) -> np.ndarray:
    """The dictionary indices of a :func:`_dictionary` column as one NumPy array, -1 for
    a blank row."""
    parts = [to_numpy(chunk.indices, null=-1) for chunk in col.chunks]
    if not parts:
        return np.zeros(0, np.int32)
    index = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return index.astype(np.int64) if index.dtype.kind == "u" else index


def _text_codes(col) -> tuple[np.ndarray, object]:
    """A text column (string or dictionary-encoded) as (index (N,) into its distinct values,
    -1 for a blank; the distinct values that occur, an Arrow string array): the distinct
    count, the vocabulary of any rows and the blanks from one hashing pass (of the rows, or
    for a dictionary-encoded column of its chunks' dictionaries)."""
    pa, pc = _pa()
    encoded = _dictionary(col)
    dictionary = encoded.chunk(0).dictionary.cast(pa.string()) if encoded.num_chunks \
        else pa.nulls(0, pa.string())
    if dictionary.null_count or (len(dictionary) and pc.count_distinct(dictionary).as_py()
                                 < len(dictionary)):
        # a dictionary with a blank or a value twice (legal in Arrow; no reader here makes
        # one): the decoded text, hashed
        encoded = _dictionary(encoded.cast(pa.string()))
        dictionary = encoded.chunk(0).dictionary if encoded.num_chunks else dictionary
    index = _indices(encoded)
    used = np.zeros(len(dictionary) + 1, bool)
    used[index] = True  # index -1 (a blank) marks the last slot
    if not used[:-1].all():  # values a dictionary holds but no row uses
        keep = used[:-1]
        renumber = np.append(np.cumsum(keep) - 1, -1).astype(index.dtype)
        index = renumber[index]
        dictionary = dictionary.filter(from_numpy(keep))
    return index, dictionary


#: Rows of the matrix :meth:`TableEncoder.transform` encodes at a time: the block's source
#: columns, one float64 row each ((columns, rows): 16,384 rows of 25 columns are 3.3 MB), are
#: gathered from the table and then written into the matrix by one kernel pass.
ENCODE_BLOCK_ROWS = 16384


class _Pieces:
    """The chunks of an Arrow column that cover rows [lo, hi), as (offset into the block,
    Arrow array) pairs, found from the chunks' row offsets."""

    def __init__(self, col):
        self.chunks = list(col.chunks)
        self.starts = np.cumsum([0] + [len(c) for c in self.chunks])

    def __call__(self, lo: int, hi: int):
        k = max(0, int(np.searchsorted(self.starts, lo, side="right")) - 1)
        while k < len(self.chunks) and self.starts[k] < hi:
            a, b = max(lo, int(self.starts[k])), min(hi, int(self.starts[k + 1]))
            if b > a:
                yield a - lo, self.chunks[k].slice(a - int(self.starts[k]), b - a)
            k += 1


class _Values:
    """A numeric source: an integer or real Arrow column read block by block (NaN for a
    blank), or a column already converted (``full``, float64 (N,))."""

    def __init__(self, col=None, full: np.ndarray | None = None):
        self.full = full
        self.pieces = None if col is None else _Pieces(col)

    def fill(self, lo: int, hi: int, dst: np.ndarray) -> None:
        if self.full is not None:
            dst[...] = self.full[lo:hi]
            return
        for at, piece in self.pieces(lo, hi):
            parts = _primitive_parts(piece)
            if parts is None:
                dst[at:at + len(piece)] = to_numpy(piece)
            else:
                K_rows.values_from_arrow(*parts, dst[at:at + len(piece)])


#: Arrow types whose values buffer :func:`_primitive_parts` hands to the kernels as NumPy.
_PRIMITIVE = {"double": np.float64, "float": np.float32, "int8": np.int8, "int16": np.int16,
              "int32": np.int32, "int64": np.int64, "uint8": np.uint8, "uint16": np.uint16,
              "uint32": np.uint32, "uint64": np.uint64}
_NO_BITS = np.zeros(0, np.uint8)


def _primitive_parts(arr):
    """(values (R,) NumPy view of the Arrow array's buffer, validity bitmap (uint8; (0,)
    without blanks), its first bit) of an integer or real Arrow array, what
    ``kernels.rows.values_from_arrow`` and ``codes_from_arrow`` read; None for another type
    or buffers too short for the array (then Arrow's own conversion decides)."""
    dtype = _PRIMITIVE.get(str(arr.type))
    if dtype is None:
        return None
    buffers = arr.buffers()
    n, offset = len(arr), arr.offset
    if len(buffers) != 2 or buffers[1] is None:
        return None
    itemsize = np.dtype(dtype).itemsize
    if buffers[1].size < (offset + n) * itemsize:
        return None
    data = np.frombuffer(buffers[1], dtype, count=n, offset=offset * itemsize)
    if not arr.null_count:
        return data, _NO_BITS, 0
    if buffers[0] is None or buffers[0].size * 8 < offset + n:
        return None
    return data, np.frombuffer(buffers[0], np.uint8), offset


class _Codes:
    """A categorical source: the column dictionary-encoded (:func:`_dictionary`), each
    dictionary entry's code looked up once (its vocabulary position + FIRST_CODE, or
    UNKNOWN_CODE; a blank: BLANK_CODE when training had blanks, else UNKNOWN_CODE), then
    block by block the rows' codes and their blanks and unknowns counted."""

    def __init__(self, c: ColumnRole, col):
        pa, pc = _pa()
        dcol = _dictionary(col if _kind(col.type) == "text" and c.source != "bool"
                           else _as_text(_plain(col), c.source))
        dictionary = dcol.chunk(0).dictionary if dcol.num_chunks else pa.nulls(0, pa.string())
        idx = pc.index_in(dictionary.cast(pa.string()), value_set=c.arrow_vocabulary())
        known = to_numpy(idx, null=UNKNOWN_CODE - FIRST_CODE).astype(np.float64) + FIRST_CODE
        # entry -1 (the last): a blank row (a dictionary has no blank entry: _dictionary)
        self.code = np.append(known, BLANK_CODE if c.blank_seen else UNKNOWN_CODE)
        self.blank = np.zeros(len(self.code), bool)
        self.blank[-1] = True
        self.unknown = self.code == UNKNOWN_CODE
        self.unknown[-1] = False
        self.pieces = _Pieces(dcol)

    def fill(self, lo: int, hi: int, dst: np.ndarray) -> tuple[int, int]:
        """Codes of rows [lo, hi) into ``dst``; (blanks, unknowns) among them."""
        blanks = unknowns = 0
        for at, piece in self.pieces(lo, hi):
            index = piece.indices
            parts = _primitive_parts(index)
            if parts is not None:
                got = K_rows.codes_from_arrow(*parts, self.code, self.unknown,
                                              dst[at:at + len(index)])
                if got[0] < 0:
                    raise DataError(f"a damaged dictionary-encoded column: row {lo + at + got[1]}"
                                    f" has the index {index[got[1]].as_py()} into a dictionary "
                                    f"of {len(self.code) - 1} values")
                blanks += got[0]
                unknowns += got[1]
                continue
            index = to_numpy(index, null=-1)
            if index.dtype.kind == "u":
                index = index.astype(np.int64)
            np.take(self.code, index, out=dst[at:at + len(index)])
            blanks += int(np.count_nonzero(self.blank[index]))
            unknowns += int(np.count_nonzero(self.unknown[index]))
        return blanks, unknowns


_WHOLE_NOTE = ", also as a number"


def _as_float(col, name: str, date: bool = False, lenient: bool = False) -> np.ndarray:
    """A numeric, boolean or date column as float64 (N,), NaN for blanks; ``date``: the
    column is a date column (seconds since 1970; text is parsed as ISO 8601 dates);
    ``lenient``: text that is not a number is a blank (a category's value)."""
    pa, pc = _pa()
    kind = _kind(col.type)
    if lenient and kind == "text":
        try:
            return np.array(to_numpy(col.cast(pa.float64())), np.float64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # some text that is not a number: cell by cell
        cells = to_numpy(col)
        out = np.full(len(cells), np.nan)
        for i, v in enumerate(cells):
            try:
                out[i] = float(v) if v is not None else np.nan
            except ValueError:
                pass
        return out
    if date and kind == "text":
        try:
            col = col.cast(pa.timestamp("s"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"column {name!r} holds dates for the model, but text that is "
                            f"not a date ({exc})") from None
        kind = "date"
    if kind == "date":
        col = col.cast(pa.timestamp("s")).cast(pa.int64())
    elif kind == "text":
        try:
            col = col.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"column {name!r} is numeric for the model, but holds text "
                            f"({exc})") from None
    elif kind == "null":
        return np.full(len(col), np.nan)
    # a copy: Arrow's buffers are read-only, and blanks are filled in place
    return np.array(to_numpy(col.cast(pa.float64())), np.float64)


def _as_text(col, source_kind: str):
    """A categorical column as an Arrow string column, the same text for the same value
    however the file typed it: whole numbers without ".0", booleans as true/false."""
    pa, pc = _pa()
    kind = _kind(col.type)
    if kind == "float":
        values = to_numpy(col)
        whole = np.isnan(values) | (values == np.round(values))
        if whole.all() and (np.abs(values[~np.isnan(values)]) < 2**53).all():
            col = col.cast(pa.int64(), safe=False)
    if kind == "null":
        return pa.chunked_array([pa.nulls(len(col), pa.string())])
    col = col.cast(pa.string())
    if source_kind == "bool" and kind != "bool":  # a file read as text: True, 1, TRUE ...
        col = pc.utf8_lower(col)
        col = pc.replace_substring_regex(col, "^1$", "true")
        col = pc.replace_substring_regex(col, "^0$", "false")
    return col


@dataclass
class ColumnRole:
    """One feature column: its role, why, and what was fitted for it."""

    name: str
    role: str
    why: str
    distinct: int
    missing: float  # share of blank cells in the training table
    source: str  # the Arrow kind it was read as (integer, float, bool, text, date)
    median: float | None = None  # numeric: the training median (date: seconds)
    indicator: bool = False  # numeric/date: a 0/1 "was blank" column follows
    blank_seen: bool = False  # categorical: training had blanks (code 0 is learned)
    vocabulary: np.ndarray | None = None  # categorical: str (V,), code i + FIRST_CODE
    #: categorical whole numbers: the value is also a continuous feature (median-filled)
    also_numeric: bool = False
    #: numeric (and whole-number categorical) values: the training range, values beyond it
    #: are clipped to it
    low: float | None = None
    high: float | None = None
    #: real numbers: more than DISTINCT_SHOWN distinct values (``distinct`` is then
    #: DISTINCT_SHOWN + 1, a lower bound; shown as ">1000")
    many_distinct: bool = False
    #: (vocabulary, the same as an Arrow array): made once for every transform
    _arrow: tuple | None = field(default=None, compare=False, repr=False)

    def arrow_vocabulary(self):
        """:attr:`vocabulary` as an Arrow string array (made once)."""
        if self._arrow is None or self._arrow[0] is not self.vocabulary:
            self._arrow = (self.vocabulary, string_array(self.vocabulary))
        return self._arrow[1]

    @property
    def shown_distinct(self) -> int | str:
        """The distinct count as the role table and ``columns.json`` show it."""
        return f">{DISTINCT_SHOWN}" if self.many_distinct else self.distinct

    @property
    def n_codes(self) -> int:
        return 0 if self.vocabulary is None else len(self.vocabulary) + FIRST_CODE


@dataclass
class TableEncoder:
    """The roles and fitted statistics of a table's columns (see the module docstring)."""

    columns: list[ColumnRole] = field(default_factory=list)

    # --------------------------------------------------------------------- fitting
    @classmethod
    def fit(cls, table, rows=None, categorical=(), numeric=(), drop=()) -> TableEncoder:
        """Decide the roles from ``table`` (a ``pyarrow.Table`` of the feature columns) and
        fit medians and vocabularies on its ``rows`` (default: all)."""
        names = list(table.column_names)
        for option, given in (("--categorical", categorical), ("--numeric", numeric),
                              ("--drop", drop)):
            unknown = [c for c in given if c not in names]
            if unknown:
                raise DataError(f"{option}: no column {unknown[0]!r}; the feature columns "
                                f"are {names}")
        both = set(categorical) & set(numeric) | set(drop) & (set(categorical) | set(numeric))
        if both:
            raise DataError(f"column {sorted(both)[0]!r} is given two roles (--categorical, "
                            "--numeric, --drop)")
        pa, _ = _pa()
        fit_index = None if rows is None else _sorted_rows(np.asarray(rows), table.num_rows)
        if fit_index is not None:
            if fit_index.ndim != 1 or (len(fit_index) and fit_index.dtype.kind not in "iu"):
                raise ValueError(f"TableEncoder.fit: rows must be a 1-D array of row "
                                 f"indices, got {fit_index.dtype} of shape {fit_index.shape}")
            if len(fit_index) and not 0 <= fit_index[0] <= fit_index[-1] < table.num_rows:
                raise ValueError(f"TableEncoder.fit: rows must lie in 0..{table.num_rows - 1}"
                                 f", got {int(fit_index[0])}..{int(fit_index[-1])}")
            fit_index = fit_index.astype(np.int64, copy=False)
        fit_rows = None if rows is None else from_numpy(fit_index)
        enc = cls()

        def fit_column(name):
            return _fit_column(table.column(name), name, fit_index, fit_rows,
                               categorical, numeric, drop)

        enc.columns = _map_columns(fit_column, names, table.num_rows)
        pa.default_memory_pool().release_unused()  # (see fastnn.datasets.read_table)
        if not any(c.role != "dropped" for c in enc.columns):
            raise DataError("every feature column was dropped (" + "; ".join(
                f"{c.name}: {c.why}" for c in enc.columns) + "); say which to keep with "
                "--numeric or --categorical")
        return enc

    # ------------------------------------------------------------------- the layout
    def of_role(self, role: str) -> list[ColumnRole]:
        return [c for c in self.columns if c.role == role]

    def valued(self) -> list[ColumnRole]:
        """The columns whose value is a continuous feature: the numeric ones, and the
        categorical whole-number ones (which also get an embedding)."""
        return [c for c in self.columns if c.role == "numeric" or c.also_numeric]

    @property
    def continuous_names(self) -> list[str]:
        """Names of the continuous features, in the matrix's order."""
        out = [c.name for c in self.valued()]
        out += [f"{c.name}_na" for c in self.columns if c.indicator]
        for c in self.of_role("date"):
            out += [f"{c.name}_{p}" for p in DATE_PARTS]
        return out

    @property
    def n_continuous(self) -> int:
        return len(self.continuous_names)

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column (blank and unknown included)."""
        return [c.n_codes for c in self.of_role("categorical")]

    @property
    def categorical_names(self) -> list[str]:
        return [c.name for c in self.of_role("categorical")]

    @property
    def feature_columns(self) -> list[str]:
        """The columns a table must have to be encoded (the ones not dropped)."""
        return [c.name for c in self.columns if c.role != "dropped"]

    @property
    def n_features(self) -> int:
        return self.n_continuous + len(self.cardinalities)

    def column_indices(self) -> dict[str, list[int]]:
        """Each used column's positions in the matrix (its value, indicator, date parts
        and code): what permutation importance shuffles together."""
        where: dict[str, list[int]] = {c: [] for c in self.feature_columns}
        names = self.continuous_names
        for c in self.valued():
            where[c.name].append(names.index(c.name))
        for c in self.columns:
            if c.indicator:
                where[c.name].append(names.index(f"{c.name}_na"))
        for c in self.of_role("date"):
            where[c.name] += [names.index(f"{c.name}_{p}") for p in DATE_PARTS]
        for k, c in enumerate(self.of_role("categorical")):
            where[c.name].append(self.n_continuous + k)
        return where

    def column_types(self) -> dict:
        """Arrow types to read a CSV's used columns with, so a later file is typed as the
        training file was (a categorical column of numbers stays text: "3" is "3")."""
        pa, _ = _pa()
        types = {}
        for c in self.columns:
            if c.role == "numeric":
                types[c.name] = pa.float64()
            elif c.role == "categorical":
                types[c.name] = pa.string()
            elif c.role == "date":
                types[c.name] = pa.timestamp("s")
        return types

    # ---------------------------------------------------------------- transforming
    def transform(self, table, counts: dict | None = None) -> np.ndarray:
        """The matrix (N, :attr:`n_features`) float64 of ``table``; ``counts`` (a dict)
        receives per column ``{"blank": k, "filled_unseen_blank": k, "unknown": k}`` where
        any are nonzero. Missing columns raise DataError naming them."""
        missing = [c for c in self.feature_columns if c not in table.column_names]
        if missing:
            raise DataError(f"no column {missing[0]!r}, which the model takes as a feature; "
                            f"the columns are {list(table.column_names)}")
        n = table.num_rows
        out = _fresh_matrix(n, self.n_features)
        counts = counts if counts is not None else {}
        pa, _ = _pa()
        valued, dates, categorical = self.valued(), self.of_role("date"), \
            self.of_role("categorical")
        names = self.continuous_names
        where = {name: j for j, name in enumerate(names)}
        inf = float("inf")

        # The sources of the kernel's columns (kernels.rows.encode_block), in this order:
        # the continuous values, the dates' values (only their blank indicators and
        # counts: their parts are written after), the category codes.
        sources, dest, fill, low, high, mark = [], [], [], [], [], []

        def source(src, j, f=0.0, a=-inf, b=inf, indicator=None):
            sources.append(src)
            dest.append(j)
            fill.append(f)
            low.append(a)
            high.append(b)
            mark.append(where.get(f"{indicator}_na", -1) if indicator else -1)

        for c in valued:
            raw = _undict(table.column(c.name))
            if not c.also_numeric and (pa.types.is_integer(raw.type)
                                       or pa.types.is_floating(raw.type)):
                src = _Values(raw)  # converted block by block
            elif not c.also_numeric and _kind(raw.type) == "float":  # decimals
                src = _Values(full=_float_values(raw))
            else:
                src = _Values(full=_as_float(_plain(raw), c.name, lenient=c.also_numeric))
            source(src, where[c.name], c.median,
                   *((c.low, c.high) if c.low is not None else (-inf, inf)),
                   indicator=c.name if c.indicator else None)
        date_values = {}
        for c in dates:
            values = _as_float(_plain(table.column(c.name)), c.name, date=True)
            date_values[c.name] = values
            source(_Values(full=values), -1, c.median,
                   indicator=c.name if c.indicator else None)
        for k, c in enumerate(categorical):
            source(_Codes(c, table.column(c.name)), self.n_continuous + k)
        plan = (np.array(dest, np.int64), np.array(fill, np.float64),
                np.array(low, np.float64), np.array(high, np.float64),
                np.array(mark, np.int64))
        codes_at = len(valued) + len(dates)
        totals, code_totals = _encode_blocks(sources, codes_at, plan, out)
        for c in dates:  # the parts of the median-filled dates
            values = date_values[c.name]
            values[np.isnan(values)] = c.median
            j = where[f"{c.name}_{DATE_PARTS[0]}"]
            out[:, j:j + len(DATE_PARTS)] = _date_parts(values)

        for c, (_, outside) in zip(valued, totals, strict=False):
            if outside:
                counts.setdefault(c.name, {})["clipped"] = int(outside)
        for c, (blank, _) in zip(valued + dates, totals, strict=False):
            if blank and not c.also_numeric:
                counts.setdefault(c.name, {})["blank"] = int(blank)
                if not c.indicator:
                    counts[c.name]["filled_unseen_blank"] = int(blank)
        for c, (n_blank, n_unknown) in zip(categorical, code_totals, strict=True):
            if n_blank:
                counts.setdefault(c.name, {})["blank"] = n_blank
                if not c.blank_seen:
                    counts[c.name]["filled_unseen_blank"] = n_blank
            if n_unknown:
                counts.setdefault(c.name, {})["unknown"] = n_unknown
        pa.default_memory_pool().release_unused()  # (see fastnn.datasets.read_table)
        return out

    # ------------------------------------------------------------------- reports
    def role_rows(self) -> list[dict]:
        """One record per column: name, role, distinct (the text ">1000" for a column of
        real numbers with many: :data:`DISTINCT_SHOWN`), missing share, why."""
        return [{"name": c.name, "role": c.role, "distinct": c.shown_distinct,
                 "missing": round(c.missing, 4), "why": c.why} for c in self.columns]

    def role_table(self, embedding_dims: list[int] | None = None) -> str:
        """The role table as aligned text (what ``fastnn train`` prints)."""
        dims = dict(zip(self.categorical_names, embedding_dims or [], strict=False))
        rows = [("column", "role", "distinct", "missing", "why")]
        for c in self.columns:
            why = c.why + (f"; embedding {c.n_codes}x{dims[c.name]}" if c.name in dims else "")
            rows.append((c.name, c.role, str(c.shown_distinct), f"{100 * c.missing:.1f}%",
                         why))
        widths = [max(len(r[k]) for r in rows) for k in range(4)]
        return "\n".join("  ".join(r[k].ljust(widths[k]) for k in range(4)) + "  " + r[4]
                         for r in rows)

    # ---------------------------------------------------------------------- state
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON record, arrays): the vocabularies are str arrays named ``vocab/<i>`` (i the
        column's position), everything else is in the record."""
        record, arrays = [], {}
        for i, c in enumerate(self.columns):
            record.append({"name": c.name, "role": c.role, "why": c.why,
                           "distinct": c.distinct, "missing": c.missing, "source": c.source,
                           "median": c.median, "indicator": c.indicator,
                           "blank_seen": c.blank_seen, "also_numeric": c.also_numeric,
                           "low": c.low, "high": c.high,
                           **({"many_distinct": True} if c.many_distinct else {})})
            if c.vocabulary is not None:
                arrays[f"vocab/{i}"] = np.asarray(c.vocabulary, dtype=str)
        return {"columns": record, "codes": {"blank": BLANK_CODE, "unknown": UNKNOWN_CODE,
                                             "first": FIRST_CODE},
                "date_parts": list(DATE_PARTS)}, arrays

    @classmethod
    def from_state(cls, record: dict, arrays: dict[str, np.ndarray]) -> TableEncoder:
        """The inverse of :meth:`state`."""
        enc = cls()
        try:
            for i, r in enumerate(record["columns"]):
                if r["role"] not in ROLES:
                    raise ValueError(f"unknown role {r['role']!r}")
                vocab = arrays.get(f"vocab/{i}")
                if r["role"] == "categorical" and vocab is None:
                    raise ValueError(f"no vocabulary for column {r['name']!r}")
                enc.columns.append(ColumnRole(
                    str(r["name"]), r["role"], str(r["why"]), int(r["distinct"]),
                    float(r["missing"]), str(r["source"]),
                    None if r["median"] is None else float(r["median"]), bool(r["indicator"]),
                    bool(r["blank_seen"]), None if vocab is None else vocab.astype(str),
                    bool(r.get("also_numeric", False)),
                    None if r.get("low") is None else float(r["low"]),
                    None if r.get("high") is None else float(r["high"]),
                    bool(r.get("many_distinct", False))))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"a damaged table encoding ({exc})") from None
        return enc


def _fit_column(column, name: str, fit_index, fit_rows, categorical, numeric,
                drop) -> ColumnRole:
    """One column's role (from all of ``column``) and fitted statistics (from its rows
    ``fit_index``, sorted, also as an Arrow array ``fit_rows``; None: all)."""
    pa, _ = _pa()
    kind = _kind(column.type)
    # text stays dictionary-encoded if it was read so (see _text_codes)
    raw = column if kind == "text" else _undict(column)
    # integers, reals and text have a vectorized path (one conversion to NumPy, or
    # one hashing pass for text); other kinds take the general one
    values = _float_values(raw) if kind in ("integer", "float") else None
    codes = _text_codes(raw) if kind == "text" else None
    col = raw if values is not None or codes is not None else _plain(raw)
    info = _facts(col, values, codes)
    role, why = _decide(col, name, categorical, numeric, drop, info)
    cr = ColumnRole(name, role, why, info["distinct"], info["missing"], info["kind"],
                    many_distinct=info.get("many", False))
    if role == "dropped":
        return cr
    if role == "numeric" and values is not None:
        every = fit_index is None
        rows = np.zeros(0, np.int64) if every else fit_index
        n_fit = len(values) if every else len(rows)
        filled = np.empty(n_fit, np.float64)
        m, low, high = K_rows.filled_values(values, rows, every, filled)
        filled = filled[:m]
        cr.indicator = m < n_fit
        cr.median = _median(filled) if m else 0.0
        if m and (low == 0.0 or high == 0.0):  # -0.0 or 0.0: the one NumPy returns
            low, high = float(filled.min()), float(filled.max())
        cr.low, cr.high = (float(low), float(high)) if m else (cr.median, cr.median)
        return cr
    if role == "categorical" and codes is not None and cr.source == "text":
        index, distinct = codes
        part = index if fit_index is None else index[fit_index]
        present = np.zeros(len(distinct) + 1, bool)
        present[part] = True  # index -1 (a blank) marks the last slot
        cr.blank_seen = bool(present[-1])
        vocab = distinct.filter(from_numpy(present[:-1])) if not present[:-1].all() \
            else distinct
        cr.vocabulary = np.sort(np.asarray(to_numpy(vocab), dtype=str))
        return cr
    col = _plain(raw)
    part = col if fit_rows is None else col.take(fit_rows)
    if role in ("numeric", "date"):
        values = _as_float(part, name, date=role == "date")
        blank = np.isnan(values)
        cr.median = float(np.median(values[~blank])) if (~blank).any() else 0.0
        cr.indicator = bool(blank.any())
        if role == "numeric":
            cr.low, cr.high = _range(values[~blank], cr.median)
    elif role == "categorical":
        if why.endswith(_WHOLE_NOTE):  # whole numbers: the value counts too
            values = _as_float(part, name, lenient=True)
            blank = np.isnan(values)
            cr.median = float(np.median(values[~blank])) if (~blank).any() else 0.0
            cr.also_numeric = True
            cr.low, cr.high = _range(values[~blank], cr.median)
        text = _as_text(part, cr.source)
        cr.blank_seen = bool(text.null_count)
        vocab = to_numpy(_pa()[1].unique(text.drop_null()))
        cr.vocabulary = np.sort(np.asarray(vocab, dtype=str))
    return cr


#: A matrix of at least this many bytes is allocated with :func:`_fresh_matrix`'s own
#: mapping of 4 KB pages.
SMALL_PAGES_BYTES = 64 << 20


def _fresh_matrix(n: int, d: int) -> np.ndarray:
    """An uninitialized (n, d) float64 C-ordered matrix. A large one is an anonymous memory
    mapping of its own (4 KB pages), not NumPy's allocation, which asks the kernel for huge
    pages (``madvise(MADV_HUGEPAGE)``): where the kernel then compacts memory to find
    them (``/sys/kernel/mm/transparent_hugepage/defrag`` = ``madvise``, this project's
    machine), the first write of a fresh 343 MiB matrix took 0.07 to 1.2 s, most often
    about 1 s, against 0.26 to 0.38 s with 4 KB pages (each in a fresh process). The memory
    goes back to the system when the array is freed, as NumPy's does."""
    nbytes = n * d * 8
    if nbytes < SMALL_PAGES_BYTES:
        return np.empty((n, d), np.float64)
    import mmap

    return np.frombuffer(mmap.mmap(-1, nbytes), np.float64).reshape(n, d)


#: Source columns encoded in one pass over the matrix (:func:`_encode_blocks`): a wider
#: table takes a pass per group of this many, which keeps each thread's buffer at
#: ENCODE_GROUP x ENCODE_BLOCK_ROWS float64 (4 MiB) however wide the table is.
ENCODE_GROUP = 32


def _encode_blocks(sources: list, codes_at: int, plan: tuple, out: np.ndarray):
    """Fill ``out`` (N, D) block of rows by block of rows (:data:`ENCODE_BLOCK_ROWS`): each
    source's rows into a (sources, rows) buffer, then one ``kernels.rows.encode_block``
    pass writes them, filled, clipped and with their blank indicators, into the block's rows
    of ``out`` (up to :data:`ENCODE_GROUP` sources a pass). Blocks go to fastnn's threads, a
    buffer each (the Arrow and NumPy calls that gather a block release the GIL, and so does
    the kernel). Returns (per value source (blanks, clipped) (codes_at, 2) int64, per code
    source (blanks, unknowns))."""
    n = len(out)
    step = ENCODE_BLOCK_ROWS
    starts = list(range(0, n, step))
    k_rows = K_rows.ENCODE_CHUNK_ROWS
    lock = threading.Lock()
    totals = np.zeros((len(sources), 2), np.int64)
    for g0 in range(0, len(sources), ENCODE_GROUP):
        group = sources[g0:g0 + ENCODE_GROUP]
        group_plan = tuple(p[g0:g0 + ENCODE_GROUP] for p in plan)
        buffers = threading.local()

        def block(lo, group=group, group_plan=group_plan, buffers=buffers, g0=g0):
            hi = min(n, lo + step)
            buf = getattr(buffers, "buf", None)
            if buf is None:
                buf = buffers.buf = np.empty(len(group) * step, np.float64)
                buffers.counts = np.empty(((step + k_rows - 1) // k_rows, len(group), 2),
                                          np.int64)
            # C-ordered for the last, shorter block too: one compiled signature of the kernel
            src = buf[:len(group) * (hi - lo)].reshape(len(group), hi - lo)
            counts = buffers.counts[:(hi - lo + k_rows - 1) // k_rows]
            counts[...] = 0
            code_counts = [s.fill(lo, hi, src[c]) for c, s in enumerate(group)]
            K_rows.encode_block.serial(src, *group_plan, out[lo:hi], counts)
            with lock:
                totals[g0:g0 + len(group)] += counts.sum(axis=0)
                for c, got in enumerate(code_counts):
                    if g0 + c >= codes_at:  # a code source: (blanks, unknowns)
                        totals[g0 + c] += got

        _map_columns(block, starts, n * len(group))
    return totals[:codes_at], [tuple(int(v) for v in row) for row in totals[codes_at:]]


#: A table with at least this many cells is encoded a column per thread (fastnn's thread
#: budget); below it, the threads cost more than they save.
PARALLEL_CELLS = 1 << 18


def _map_columns(fn, items: list, n_rows: int) -> list:
    """``[fn(item) for item in items]``, on fastnn's thread budget when the table is large
    (Arrow's and NumPy's loops release the GIL); the first error in ``items``' order is
    raised, as the sequential loop would."""
    if n_rows * len(items) < PARALLEL_CELLS or len(items) < 2:
        return [fn(item) for item in items]
    from ._threads import get_num_threads

    threads = min(get_num_threads(), len(items))
    if threads <= 1:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))


def _facts(col, values: np.ndarray | None = None, codes=None) -> dict:
    """Kind, share missing, distinct values (blanks not counted; Arrow's notion of equal:
    0.0 and -0.0 differ), rows and blanks of a column; ``values``: the column as float64 with
    NaN for blanks (:func:`_float_values`, an integer or real column), ``codes``: its
    :func:`_text_codes` (a text column); else ``col`` is :func:`_plain`."""
    pa, pc = _pa()
    n = len(col)
    out = {"kind": _kind(col.type), "rows": n, "values": values}
    if values is not None:
        blank = int(np.count_nonzero(np.isnan(values)))
        if out["kind"] == "integer":  # exact beyond 2**53, where float64 merges values
            distinct = int(pc.count_distinct(col).as_py()) if n else 0
        else:
            # Arrow's hashing (as count_distinct's on the column): all NaN are one value,
            # which is not counted; unique is 2x faster than count_distinct here
            out["whole"] = _whole(values)
            head = values[:DISTINCT_HEAD_ROWS]
            if not out["whole"] and n > len(head) and \
                    len(pc.unique(from_numpy(head))) - bool(np.isnan(head).any()) > \
                    DISTINCT_SHOWN:
                distinct, out["many"] = DISTINCT_SHOWN + 1, True
            else:
                distinct = len(pc.unique(from_numpy(values))) - (blank > 0) if n else 0
    elif codes is not None:
        blank = int(np.count_nonzero(codes[0] < 0))
        distinct = len(codes[1])
    else:
        blank = col.null_count
        # a null-typed column (a DataFrame's column of None only) has no values to count
        distinct = int(pc.count_distinct(col).as_py()) if n and blank < n else 0
    out.update(missing=blank / n if n else 0.0, distinct=distinct, blank=blank)
    return out


def _whole(values: np.ndarray) -> bool:
    """Whether every value (float64, NaN for blanks) is a whole number."""
    # the first rows first: a column of real numbers rarely gets past them
    return all(np.array_equal(part, np.round(part), equal_nan=True)
               for part in (values[:1024], values[1024:]))


def _decide(col, name: str, categorical, numeric, drop, f: dict) -> tuple[str, str]:
    """(role, why) of one column (whose :func:`_facts` are ``f``) by the rules of the
    module docstring."""
    pa, pc = _pa()
    kind, n, distinct, filled = f["kind"], f["rows"], f["distinct"], f["rows"] - f["blank"]
    if name in drop:
        return "dropped", "asked for with --drop"
    if name in categorical:
        if kind == "date":
            raise DataError(f"--categorical {name}: the column holds dates")
        return "categorical", "asked for with --categorical"
    if name in numeric:
        if kind not in ("integer", "float", "bool", "null"):
            raise DataError(f"--numeric {name}: the column holds {kind}, not numbers")
        return "numeric", "asked for with --numeric"
    if filled == 0:
        return "dropped", "empty: every cell is blank"
    if distinct <= 1 and f["blank"] == 0:
        return "dropped", "constant: one value in every row"
    if kind == "date":
        return "date", "dates: " + ", ".join(DATE_PARTS)
    if kind == "bool":
        return "categorical", "booleans"
    if kind in ("text", "other"):
        if n >= MIN_ROWS_FOR_ID and distinct == n:
            return "dropped", "identifier: a different text in every row"
        if n >= MIN_ROWS_FOR_ID and distinct >= FREE_TEXT_SHARE * filled:
            return "dropped", (f"free text: {distinct} distinct values in {filled} cells "
                               "(--categorical to keep it)")
        return "categorical", "text"
    whole = kind == "integer"
    if kind == "float":
        whole = f["whole"] if "whole" in f else _whole(to_numpy(col))
    if whole:
        if n >= MIN_ROWS_FOR_ID and distinct == n and kind == "integer":
            lo, hi = pc.min_max(col).values()
            if hi.as_py() - lo.as_py() + 1 == n:
                return "dropped", "identifier: the whole numbers of a row count, one per row"
            if lo.as_py() >= 0 and hi.as_py() <= 2 * n:
                return "dropped", ("identifier: a different whole number in every row, all "
                                   "within 0..2N (row numbers of a larger table, split)")
        if distinct <= AUTO_MAX_SMALL_CLASSES:
            return "categorical", (f"{distinct} distinct whole numbers (at most "
                                   f"{AUTO_MAX_SMALL_CLASSES}){_WHOLE_NOTE}")
        return "numeric", f"{distinct} distinct whole numbers"
    return "numeric", "real numbers"


def _sorted_rows(rows: np.ndarray, n: int) -> np.ndarray:
    """``np.sort(rows)``; rows of a table of ``n`` rows each at most once (a split's) in
    one pass over a mask of the table's rows instead of a sort (a tenth of the time)."""
    if rows.ndim == 1 and rows.dtype.kind in "iu" and len(rows) and \
            0 <= rows.min() and rows.max() < n:
        mask = np.zeros(n, bool)
        mask[rows] = True
        if np.count_nonzero(mask) == len(rows):
            return np.flatnonzero(mask)
    return np.sort(rows)


#: A column of fewer non-blank values than this takes NumPy's median directly
#: (:func:`_median`).
MEDIAN_BRACKET_FROM = 1 << 14
#: Values of the column's sample (one every len // MEDIAN_SAMPLE) that bracket its median.
MEDIAN_SAMPLE = 4096


def _median(values: np.ndarray) -> float:
    """``np.median(values)`` of float64 values without NaN, to the bit, in a fraction of
    its time on a long column: a sample (every k-th value, sorted) brackets the middle
    ranks between two of its values lo <= hi (four standard deviations of a sample
    quantile on each side), one pass (``kernels.rows.values_between``) counts the values
    below lo and keeps those within [lo, hi] (about 6 % of them), and NumPy's partition
    finds the middle ranks among those. The middle values are order statistics, the same
    whichever way they are found (NumPy's median is their mean, (a + b) / 2 of the two
    middle ones for an even count, the middle one for an odd); only the sign of a zero can
    depend on the way (-0.0 == 0.0), so a zero median is NumPy's own. A bracket that
    misses the middle (a column ordered against the sample's stride) also falls back to
    NumPy. ``values`` is not changed.

    Measured on the table of ``fastnn bench --tables`` (720,000 training rows): NumPy's
    median took about 15 ms a column, 0.30 s of the fit's 0.94 s (one thread, profiled);
    with the rest of the numeric fit in one kernel pass, the fit took 0.34 s."""
    m = len(values)
    if m >= MEDIAN_BRACKET_FROM:
        sample = np.sort(values[::m // MEDIAN_SAMPLE])
        s = len(sample)
        k_lo, k_hi = (m - 1) // 2, m // 2  # the middle ranks (equal for an odd count)
        at = k_lo * s // m
        margin = int(2 * np.sqrt(s)) + 2  # a sample quantile's rank: sd sqrt(s) / 2
        lo, hi = sample[max(at - margin, 0)], sample[min(at + margin, s - 1)]
        inside = np.empty(m, np.float64)
        below, k = K_rows.values_between(values, lo, hi, inside)
        inside = inside[:k]
        if below <= k_lo and k_hi < below + k:
            part = np.partition(inside, [k_lo - below, k_hi - below])
            a, b = part[k_lo - below], part[k_hi - below]
            if a != 0.0 and b != 0.0:
                return float(a) if k_lo == k_hi else float((a + b) / 2)
    return float(np.median(values))


def _range(values: np.ndarray, median: float) -> tuple[float, float]:
    """(smallest, largest) of a column's non-blank training ``values`` (the median twice
    when there are none): the range :meth:`TableEncoder.transform` clips to."""
    if not len(values):
        return median, median
    return float(values.min()), float(values.max())


def _date_parts(seconds: np.ndarray) -> np.ndarray:
    """(N, 6) year, month, day, weekday (Monday 0), day of year, elapsed days of times
    given as seconds since 1970-01-01 (float64, no blanks)."""
    s = np.floor(seconds).astype(np.int64).astype("datetime64[s]")
    days = s.astype("datetime64[D]")
    months = s.astype("datetime64[M]")
    years = s.astype("datetime64[Y]")
    out = np.empty((len(seconds), len(DATE_PARTS)), np.float64)
    out[:, 0] = years.astype(np.int64) + 1970
    out[:, 1] = (months - years.astype("datetime64[M]")).astype(np.int64) + 1
    out[:, 2] = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    out[:, 3] = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    out[:, 4] = (days - years.astype("datetime64[D]")).astype(np.int64) + 1
    out[:, 5] = seconds / 86400.0
    return out


__all__ = ["TableEncoder", "ColumnRole", "embedding_size", "DATE_PARTS"]
