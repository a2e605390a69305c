"""Arrow arrays to NumPy and back without pyarrow's pandas machinery.

pyarrow's ``Array.to_numpy`` / ``ChunkedArray.to_numpy`` / ``np.asarray(array)`` convert
through its C++ ``ConvertArrayToPandas``, and ``pa.array`` / ``pa.scalar`` ask whether
their argument is a pandas object: either imports pandas on its first use when pandas is
installed (pyarrow 26): 0.25 to 0.37 s that ``fastnn train --data csv:FILE:TARGET``
spent on a library it never uses (and ``pq.read_table`` goes through ``pyarrow.dataset``,
whose import imports it too: :func:`fastnn.datasets.read_table` reads Parquet with
``ParquetFile``). The functions here read and build Arrow buffers directly:

- :func:`to_numpy` is ``to_numpy(zero_copy_only=False)`` (the same dtypes, values and
  blanks) for the types fastnn converts, most without a copy;
- :func:`from_numpy`, :func:`string_array` and :func:`null_scalar` stand for
  ``pa.array(ndarray)``, ``pa.array(strings, pa.string())`` and ``pa.scalar(None, type)``.

pyarrow is imported inside the functions, as everywhere in fastnn.
"""

from __future__ import annotations

import numpy as np

from .kernels import rows as K_rows

#: Arrow's fixed-width numbers (``str(type)``) and the NumPy dtype of their values buffer.
NUMBERS = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
           "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
           "halffloat": np.float16, "float": np.float32, "double": np.float64}
#: NaT's bit pattern in a datetime64 / timedelta64 (the smallest int64).
_NAT = np.iinfo(np.int64).min
_NO_BITS = np.zeros(0, np.uint8)


def to_numpy(arr, null=None) -> np.ndarray:
    """An Arrow Array or ChunkedArray as a NumPy array (N,), as pyarrow's
    ``to_numpy(zero_copy_only=False)`` gives it, without importing pandas.

    =====================  ====================================================================
    Arrow type             NumPy result
    =====================  ====================================================================
    integers, reals        a read-only view of the values buffer when there are no blanks;
                           with blanks: reals with NaN there, integers as float64 with NaN
    boolean                bool; with blanks: object (True, False, None)
    date32/64, timestamp,  datetime64 / timedelta64 of the type's unit (a timestamp's stored
    duration               UTC values), NaT at blanks
    string, dictionary     the decoded values (object for text: str, None at blanks), from
                           one hashing pass and each distinct value converted once
    anything else          object, the values of ``to_pylist()`` (nested values are Python
                           lists where pyarrow gives arrays)
    =====================  ====================================================================

    A ChunkedArray gives its chunks' values concatenated (one chunk: that chunk's array,
    not copied; no chunks: an empty array of the type's dtype). A ChunkedArray of
    dictionaries has None at its blanks, as an Array has (pyarrow 26's own
    ``ChunkedArray.to_numpy`` puts another row's value there).

    ``null``: for integers (and a dictionary's indices), the value at blanks instead of
    NaN; the result keeps an integer dtype (the array's, widened to hold ``null``).
    """
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        blanks = arr.null_count > 0
        chunks = arr.chunks
        if not chunks:
            return _convert(pa.nulls(0, arr.type), False, null)
        plan = _fixed(arr.type, blanks, null)
        if plan is None or len(chunks) == 1:
            parts = [_convert(c, blanks, null) for c in chunks]
            return parts[0] if len(parts) == 1 else np.concatenate(parts)
        # numbers and times: each chunk written into the column's array (a CSV read in
        # blocks has dozens of chunks), not converted to an array of its own first
        out = _empty(len(arr), plan[1])
        at = 0
        for chunk in chunks:
            n = len(chunk)
            if not _fill(chunk, out[at:at + n], plan):
                out[at:at + n] = _convert(chunk, blanks, null)  # a damaged chunk
            at += n
        return out
    if not isinstance(arr, pa.Array):
        raise TypeError(f"to_numpy: arr must be a pyarrow Array or ChunkedArray, got "
                        f"{type(arr).__name__}")
    return _convert(arr, arr.null_count > 0, null)


def _convert(arr, blanks: bool, null, encode: bool = True) -> np.ndarray:
    """One Array as :func:`to_numpy` gives it; ``blanks``: the whole (chunked) column has
    blanks, which decides the dtype of every chunk (an integer chunk without blanks in a
    column with some is float64 too); ``encode``: text is dictionary-encoded first (not for
    a dictionary's own values)."""
    import pyarrow as pa

    t, n = arr.type, len(arr)
    types = pa.types
    blanks = blanks or arr.null_count > 0
    plan = _fixed(t, blanks, null)
    if plan is not None:
        raw_dtype, dtype, _, time = plan
        data = _values(arr, raw_dtype)
        if data is None:
            return arr.to_numpy(zero_copy_only=False)  # a damaged array: Arrow's own answer
        if not arr.null_count and (dtype == raw_dtype or time and raw_dtype.itemsize == 8):
            return data.view(dtype)  # Arrow's buffer, not copied
        out = _empty(n, dtype)
        return out if _fill(arr, out, plan) else arr.to_numpy(zero_copy_only=False)
    if types.is_boolean(t):
        buffers = arr.buffers()
        if n and (buffers[1] is None or buffers[1].size * 8 < arr.offset + n):
            return arr.to_numpy(zero_copy_only=False)
        bits = _bits(buffers[1], arr.offset, n)
        if not blanks:
            return bits
        out = bits.astype(object)
        valid = _valid(arr)
        if valid is not None:
            out[~valid] = None
        return out
    if types.is_dictionary(t):
        return _decode(arr.indices, arr.dictionary, blanks)
    if encode and (types.is_string(t) or types.is_large_string(t)) and n:
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(arr)
        return _decode(encoded.indices, encoded.dictionary, blanks)
    return np.fromiter(arr.to_pylist(), object, count=n)


def _fixed(t, blanks: bool, null):
    """How a column of numbers or times converts: (dtype of its values buffer, dtype of the
    answer, the answer's value at a blank, whether the answer is a datetime64/timedelta64
    written as int64); None for another type. ``blanks``: the column has some."""
    name = str(t)
    if name in NUMBERS:
        raw = np.dtype(NUMBERS[name])
        if raw.kind == "f":
            return raw, raw, np.nan if null is None else null, False
        if not blanks:
            return raw, raw, None, False
        if null is None:
            return raw, np.dtype(np.float64), np.nan, False
        return raw, np.promote_types(raw, np.min_scalar_type(null)), null, False
    temporal = _temporal(t)
    return None if temporal is None else (np.dtype(temporal[0]), temporal[1], _NAT, True)


def _empty(n: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialized array (n,) in Arrow's memory pool, as pyarrow's own conversion
    allocates: memory the pool has already mapped (a CSV reader's freed blocks, say), where a
    new NumPy array of a million float64 first takes its 2,000 page faults (measured: 20
    real columns of the ``fastnn bench --tables`` CSV converted in 31 ms into the pool, 65 ms
    into NumPy's fresh arrays)."""
    import pyarrow as pa

    if not n:
        return np.empty(0, dtype)
    return np.frombuffer(pa.allocate_buffer(n * dtype.itemsize), dtype)


def _fill(arr, dst: np.ndarray, plan) -> bool:
    """``dst[...]`` = the values of a chunk of numbers or times converted by ``plan`` (see
    :func:`_fixed`), its blank value at blanks; False, ``dst`` left unfinished, when the
    buffers are shorter than the chunk says (a damaged array)."""
    raw_dtype, _, blank, time = plan
    n, offset = len(arr), arr.offset
    if not n:
        return True
    values = _values(arr, raw_dtype)
    if values is None:
        return False
    buffers = arr.buffers()
    if arr.null_count and (buffers[0] is None or buffers[0].size * 8 < offset + n):
        return False
    if dst.dtype == np.float64 and raw_dtype == np.float64 and not time and \
            (not arr.null_count or blank is np.nan):
        # the reals fastnn reads (its readers cast numbers to float64 first): one pass
        # that reads the validity bitmap, not NumPy's copy, unpacked bits and masked write
        # (20 real columns of the bench's CSV, 44 chunks each: 31 ms against 43 ms)
        K_rows.values_from_arrow(values, np.frombuffer(buffers[0], np.uint8)
                                 if arr.null_count else _NO_BITS, offset, dst)
        return True
    target = dst.view(np.int64) if time else dst
    target[...] = values
    if arr.null_count:
        valid = _bits(buffers[0], offset, n)
        target[np.logical_not(valid, out=valid)] = blank
    return True


def _decode(indices, dictionary, blanks: bool) -> np.ndarray:
    """The values of a dictionary array: its dictionary converted once, then taken at its
    indices (-1, a blank, takes a blank appended to the dictionary's values)."""
    index = _convert(indices, False, -1)
    values = _convert(dictionary, blanks or dictionary.null_count > 0, None, encode=False)
    if indices.null_count:
        kind = values.dtype.kind
        blank = None if kind == "O" else np.nan if kind == "f" else \
            np.array(_NAT, np.int64).view(values.dtype) if kind in "Mm" else None
        values = np.append(values, np.array([blank], values.dtype))
    return values[index]


def _temporal(t):
    """(dtype of the values buffer, NumPy dtype of the values) of a date, timestamp or
    duration type; None for another type."""
    import pyarrow as pa

    types = pa.types
    if types.is_date32(t):
        return np.int32, np.dtype("datetime64[D]")
    if types.is_date64(t):
        return np.int64, np.dtype("datetime64[ms]")
    if types.is_timestamp(t):
        return np.int64, np.dtype(f"datetime64[{t.unit}]")
    if types.is_duration(t):
        return np.int64, np.dtype(f"timedelta64[{t.unit}]")
    return None


def _values(arr, dtype) -> np.ndarray | None:
    """The fixed-width values of ``arr`` (N,) as a read-only view of its buffer, its offset
    respected; None when the buffer is shorter than the array says (a damaged array)."""
    n = len(arr)
    dtype = np.dtype(dtype)
    if not n:
        return np.empty(0, dtype)
    buffers = arr.buffers()
    if len(buffers) < 2 or buffers[1] is None or \
            buffers[1].size < (arr.offset + n) * dtype.itemsize:
        return None
    return np.frombuffer(buffers[1], dtype, count=n, offset=arr.offset * dtype.itemsize)


def _valid(arr) -> np.ndarray | None:
    """Which of ``arr``'s rows are not blank, bool (N,); None when none is blank."""
    if not arr.null_count:
        return None
    bitmap = arr.buffers()[0]
    if bitmap is None or bitmap.size * 8 < arr.offset + len(arr):  # a damaged array
        return np.asarray(arr.is_valid().to_pylist(), bool)
    return _bits(bitmap, arr.offset, len(arr))


def _bits(buffer, offset: int, n: int) -> np.ndarray:
    """Bits ``offset .. offset + n - 1`` of an Arrow bitmap (least significant bit of each
    byte first) as bool (N,)."""
    if not n:
        return np.zeros(0, bool)
    start, shift = divmod(offset, 8)
    raw = np.frombuffer(buffer, np.uint8, count=(shift + n + 7) // 8, offset=start)
    return np.unpackbits(raw, count=shift + n, bitorder="little")[shift:].view(bool)


def from_numpy(values: np.ndarray):
    """A 1-D NumPy array of numbers or booleans as an Arrow array without blanks (NaN is a
    value), sharing the numbers' memory: ``pa.array(values)`` without its pandas check."""
    import pyarrow as pa

    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"from_numpy: values must be 1-D, got shape {values.shape}")
    if values.dtype == bool:
        return pa.Array.from_buffers(pa.bool_(), len(values), [
            None, pa.py_buffer(np.packbits(values, bitorder="little"))])
    if values.dtype.kind not in "iuf":
        raise TypeError(f"from_numpy: values must hold numbers or booleans, got "
                        f"{values.dtype}")
    values = np.ascontiguousarray(values, values.dtype.newbyteorder("="))
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                 [None, pa.py_buffer(values)])


def string_array(values):
    """Python or NumPy strings (a sequence of str) as an Arrow string array without blanks:
    ``pa.array(values, pa.string())`` without its pandas check (large_string past 2 GiB)."""
    import pyarrow as pa

    encoded = []
    for v in values:
        if not isinstance(v, str):
            raise TypeError(f"string_array: values must be str, got {type(v).__name__}")
        encoded.append(v.encode("utf-8"))
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, count=len(encoded)), out=offsets[1:])
    small = offsets[-1] < 2**31
    return pa.Array.from_buffers(
        pa.string() if small else pa.large_string(), len(encoded),
        [None, pa.py_buffer(offsets.astype(np.int32) if small else offsets),
         pa.py_buffer(b"".join(encoded))])


def null_scalar(type_):
    """A blank Arrow scalar of ``type_``: ``pa.scalar(None, type_)`` without its pandas
    check."""
    import pyarrow as pa

    return pa.nulls(1, type_)[0]
