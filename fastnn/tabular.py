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

from dataclasses import dataclass, field

import numpy as np

from .data import DataError
from .nn.tabular import embedding_size
from .tasks import AUTO_MAX_SMALL_CLASSES

#: Codes every categorical column reserves before its vocabulary.
BLANK_CODE, UNKNOWN_CODE, FIRST_CODE = 0, 1, 2
#: Text with at least this share of distinct values among its non-blank cells is free text.
FREE_TEXT_SHARE = 0.9
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
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, pa.float64()), col)
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
    return np.asarray(col.to_numpy(zero_copy_only=False), np.float64)


def _text_codes(col) -> tuple[np.ndarray, object]:
    """A text column (not dictionary-encoded) as (index (N,) int32 into its distinct
    values, -1 for a blank; the distinct values as an Arrow string array, in order of first
    appearance): one hashing pass gives the distinct count, the vocabulary of any rows and
    the blanks."""
    pa, pc = _pa()
    encoded = pc.dictionary_encode(col.cast(pa.string())).combine_chunks()
    index = encoded.indices
    if index.null_count:
        index = pc.fill_null(index, -1)
    return np.asarray(index.to_numpy(zero_copy_only=False)), encoded.dictionary


class _Interleave:
    """Writes whole columns into a C-ordered (N, D) matrix through a (G, N) buffer, G columns
    at a time: one strided pass over the matrix per G columns instead of per column (a
    column written straight into ``out[:, j]`` touches a cache line per row: measured 45
    such writes into a (1,000,000, 45) matrix cost more than all the encoding), while the
    buffer stays G columns (4: 32 MB at a million rows; 8 measured 0.1x the encoded
    arrays more peak memory) however wide the table is."""

    BLOCK_ROWS = 8192

    def __init__(self, out: np.ndarray, group: int = 4):
        self.out, self.j, self.k = out, 0, 0
        self.buf = np.empty((max(1, min(group, out.shape[1])), out.shape[0]), out.dtype)

    def slot(self) -> np.ndarray:
        """The (N,) buffer row of the next column (fill it, then :meth:`commit`)."""
        return self.buf[self.k]

    def commit(self) -> None:
        self.k += 1
        if self.k == len(self.buf):
            self.flush()

    def map(self, fill, columns: list) -> list:
        """``fill(column, dst)`` for each column in order, ``dst`` its buffer row, a group
        of columns at a time on fastnn's threads (see :func:`_map_columns`); the results."""
        results = []
        self.flush()
        for start in range(0, len(columns), len(self.buf)):
            group = columns[start:start + len(self.buf)]
            rows = list(zip(group, self.buf, strict=False))
            results += _map_columns(lambda job: fill(*job), rows, len(self.out))
            self.k = len(group)
            self.flush()
        return results

    def put(self, values: np.ndarray) -> None:
        self.slot()[...] = values
        self.commit()

    def flush(self) -> None:
        if self.k:
            # In blocks of rows that stay in cache: NumPy copies a transposed array in the
            # source's order, striding through the whole matrix per column (measured 30x
            # slower than these blocks at a million rows). Ranges of blocks go to fastnn's
            # threads: the first write of a fresh matrix is mostly page faults, which the
            # threads take in parallel.
            cols, step, n = slice(self.j, self.j + self.k), self.BLOCK_ROWS, len(self.out)
            buf, out = self.buf[:self.k], self.out
            span = -(-n // (8 * step)) * step  # 8 ranges of whole blocks

            def copy(lo):
                for r in range(lo, min(n, lo + span), step):
                    out[r:r + step, cols] = buf[:, r:r + step].T

            _map_columns(copy, list(range(0, n, span)) if n else [], n * self.k // 8)
            self.j, self.k = self.j + self.k, 0

    def skip(self, width: int) -> int:
        """Columns written directly into ``out`` (date parts): their first index."""
        self.flush()
        self.j += width
        return self.j - width


_WHOLE_NOTE = ", also as a number"


def _as_float(col, name: str, date: bool = False, lenient: bool = False) -> np.ndarray:
    """A numeric, boolean or date column as float64 (N,), NaN for blanks; ``date``: the
    column is a date column (seconds since 1970; text is parsed as ISO 8601 dates);
    ``lenient``: text that is not a number is a blank (a category's value)."""
    pa, pc = _pa()
    kind = _kind(col.type)
    if lenient and kind == "text":
        try:
            return np.array(col.cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # some text that is not a number: cell by cell
        cells = col.to_numpy(zero_copy_only=False)
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
    return np.array(col.cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)


def _as_text(col, source_kind: str):
    """A categorical column as an Arrow string column, the same text for the same value
    however the file typed it: whole numbers without ".0", booleans as true/false."""
    pa, pc = _pa()
    kind = _kind(col.type)
    if kind == "float":
        values = col.to_numpy(zero_copy_only=False)
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
        fit_index = None if rows is None else np.sort(np.asarray(rows))
        fit_rows = None if rows is None else pa.array(fit_index)
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
        out = np.empty((n, self.n_features), np.float64)
        counts = counts if counts is not None else {}
        write = _Interleave(out)
        numeric, dates = self.valued(), self.of_role("date")

        def numeric_column(c, dst):
            """Fill ``dst`` with column ``c``'s values; (blanks (N,) bool, values clipped)."""
            raw = _undict(table.column(c.name))
            if not c.also_numeric and _kind(raw.type) in ("integer", "float"):
                dst[...] = _float_values(raw)
            else:
                dst[...] = _as_float(_plain(raw), c.name, lenient=c.also_numeric)
            blank = np.isnan(dst)
            dst[blank] = c.median
            outside = 0
            if c.low is not None:
                outside = int(np.count_nonzero(dst < c.low)) + \
                    int(np.count_nonzero(dst > c.high))
                if outside:
                    np.clip(dst, c.low, c.high, out=dst)
            return blank, outside

        pa, pc = _pa()

        def code_column(c, dst):
            """Fill ``dst`` with categorical column ``c``'s codes; (blanks, unknowns)."""
            text = _as_text(_plain(table.column(c.name)), c.source)
            idx = pc.index_in(text, value_set=pa.array(c.vocabulary, pa.string()))
            n_blank, n_unmatched = text.null_count, idx.null_count
            # a code past the reserved ones for a known value, UNKNOWN_CODE for the rest
            dst[...] = np.asarray(pc.fill_null(idx, UNKNOWN_CODE - FIRST_CODE).to_numpy(
                zero_copy_only=False))
            dst += FIRST_CODE
            if n_blank and c.blank_seen:
                dst[np.asarray(text.is_null().to_numpy(zero_copy_only=False), bool)] = \
                    BLANK_CODE
            return n_blank, n_unmatched - n_blank

        blanks = {}
        for c, (blank, outside) in zip(numeric, write.map(numeric_column, numeric),
                                       strict=True):
            if outside:
                counts.setdefault(c.name, {})["clipped"] = outside
            blanks[c.name] = blank
        date_values = {}
        for c in dates:
            values = _as_float(_plain(table.column(c.name)), c.name, date=True)
            blank = np.isnan(values)
            values[blank] = c.median
            date_values[c.name] = values
            blanks[c.name] = blank
        for c in self.columns:
            if c.indicator:
                write.put(blanks[c.name])
        for c in dates:
            j = write.skip(len(DATE_PARTS))
            out[:, j:j + len(DATE_PARTS)] = _date_parts(date_values[c.name])
        by_name = {c.name: c for c in self.columns}
        for name, blank in blanks.items():
            k = int(np.count_nonzero(blank))
            if k and not by_name[name].also_numeric:
                counts.setdefault(name, {})["blank"] = k
                if not by_name[name].indicator:
                    counts[name]["filled_unseen_blank"] = k
        categorical = self.of_role("categorical")
        for c, (n_blank, n_unknown) in zip(categorical, write.map(code_column, categorical),
                                           strict=True):
            if n_blank:
                counts.setdefault(c.name, {})["blank"] = n_blank
                if not c.blank_seen:
                    counts[c.name]["filled_unseen_blank"] = n_blank
            if n_unknown:
                counts.setdefault(c.name, {})["unknown"] = n_unknown
        write.flush()
        pa.default_memory_pool().release_unused()  # (see fastnn.datasets.read_table)
        return out

    # ------------------------------------------------------------------- reports
    def role_rows(self) -> list[dict]:
        """One record per column: name, role, distinct, missing share, why (and for a
        categorical column its embedding rows)."""
        return [{"name": c.name, "role": c.role, "distinct": c.distinct,
                 "missing": round(c.missing, 4), "why": c.why} for c in self.columns]

    def role_table(self, embedding_dims: list[int] | None = None) -> str:
        """The role table as aligned text (what ``fastnn train`` prints)."""
        dims = dict(zip(self.categorical_names, embedding_dims or [], strict=False))
        rows = [("column", "role", "distinct", "missing", "why")]
        for c in self.columns:
            why = c.why + (f"; embedding {c.n_codes}x{dims[c.name]}" if c.name in dims else "")
            rows.append((c.name, c.role, str(c.distinct), f"{100 * c.missing:.1f}%", why))
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
                           "low": c.low, "high": c.high})
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
                    None if r.get("high") is None else float(r["high"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"a damaged table encoding ({exc})") from None
        return enc


def _fit_column(column, name: str, fit_index, fit_rows, categorical, numeric,
                drop) -> ColumnRole:
    """One column's role (from all of ``column``) and fitted statistics (from its rows
    ``fit_index``, sorted, also as an Arrow array ``fit_rows``; None: all)."""
    pa, _ = _pa()
    raw = _undict(column)
    kind = _kind(raw.type)
    # integers, reals and text have a vectorized path (one conversion to NumPy, or
    # one hashing pass for text); other kinds take the general one
    values = _float_values(raw) if kind in ("integer", "float") else None
    codes = _text_codes(raw) if kind == "text" else None
    col = raw if values is not None or codes is not None else _plain(raw)
    info = _facts(col, values, codes)
    role, why = _decide(col, name, categorical, numeric, drop, info)
    cr = ColumnRole(name, role, why, info["distinct"], info["missing"], info["kind"])
    if role == "numeric" and values is not None:
        part = values if fit_index is None else values[fit_index]
        filled = part[~np.isnan(part)]
        cr.indicator = len(filled) < len(part)
        cr.median = float(np.median(filled, overwrite_input=True)) if len(filled) \
            else 0.0
        cr.low, cr.high = _range(filled, cr.median)
        return cr
    if role == "categorical" and codes is not None and cr.source == "text":
        index, distinct = codes
        part = index if fit_index is None else index[fit_index]
        present = np.zeros(len(distinct) + 1, bool)
        present[part] = True  # index -1 (a blank) marks the last slot
        cr.blank_seen = bool(present[-1])
        vocab = distinct.filter(pa.array(present[:-1])) if not present[:-1].all() \
            else distinct
        cr.vocabulary = np.sort(np.asarray(vocab.to_numpy(zero_copy_only=False),
                                           dtype=str))
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
        vocab = _pa()[1].unique(text.drop_null()).to_numpy(zero_copy_only=False)
        cr.vocabulary = np.sort(np.asarray(vocab, dtype=str))
    return cr


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
            distinct = len(pc.unique(pa.array(values))) - (blank > 0) if n else 0
    elif codes is not None:
        blank = int(np.count_nonzero(codes[0] < 0))
        distinct = len(codes[1])
    else:
        blank = col.null_count
        # a null-typed column (a DataFrame's column of None only) has no values to count
        distinct = int(pc.count_distinct(col).as_py()) if n and blank < n else 0
    out.update(missing=blank / n if n else 0.0, distinct=distinct, blank=blank)
    return out


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
        v = f["values"] if f.get("values") is not None else col.to_numpy(zero_copy_only=False)
        # the first rows first: a column of real numbers rarely gets past them
        whole = all(np.array_equal(part, np.round(part), equal_nan=True)
                    for part in (v[:1024], v[1024:]))
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
