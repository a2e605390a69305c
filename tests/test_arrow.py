"""fastnn._arrow: Arrow arrays to NumPy and back without pyarrow's pandas conversion.

Every conversion is compared with pyarrow's own ``to_numpy(zero_copy_only=False)`` (and
``pa.array`` / ``pa.scalar`` for the way back), the reference whose dtypes, values and blanks
fastnn's readers relied on: the same dtype, the same values (NaN, NaT and None at the same
places), the same Python types in object arrays. Then the CSV and Parquet paths of
``fastnn train`` / ``predict`` are run in a fresh process with pandas installed, which must
not be imported.
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from fastnn._arrow import from_numpy, null_scalar, string_array, to_numpy  # noqa: E402

INTS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FLOATS = ["float16", "float32", "float64"]


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    """``got`` is what pyarrow's ``to_numpy(zero_copy_only=False)`` gave (``want``)."""
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape
    if want.dtype.kind == "O":
        assert [type(v) for v in got] == [type(v) for v in want]
        assert [repr(v) for v in got] == [repr(v) for v in want]
    elif want.dtype.kind in "Mm":
        assert np.array_equal(np.isnat(got), np.isnat(want))
        assert np.array_equal(got.view(np.int64)[~np.isnat(want)],
                              want.view(np.int64)[~np.isnat(want)])
    else:
        assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f")
        if want.dtype.kind == "f":  # -0.0 stays -0.0
            assert np.array_equal(np.signbit(got), np.signbit(want))


def check(arr) -> np.ndarray:
    """:func:`to_numpy` of ``arr`` against pyarrow's conversion; returns ours."""
    got = to_numpy(arr)
    assert_same(got, arr.to_numpy(zero_copy_only=False))
    return got


def numbers(dtype: str, n: int, rng) -> np.ndarray:
    info = np.iinfo(dtype) if dtype in INTS else None
    if info is not None:  # the whole range: the extremes are where a cast would go wrong
        values = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
        values[:2] = info.min, info.max
        return values
    values = rng.standard_normal(n).astype(dtype)
    values[:3] = -0.0, np.inf, np.nan  # NaN as a value (not a blank) stays NaN
    return values


@pytest.mark.parametrize("dtype", INTS + FLOATS)
@pytest.mark.parametrize("blanks", [False, True])
def test_numbers_with_and_without_blanks_and_slices(dtype, blanks):
    rng = np.random.default_rng(INTS.index(dtype) if dtype in INTS else 10)
    values = numbers(dtype, 61, rng)
    mask = rng.random(61) < 0.3 if blanks else None
    arr = pa.array(values, mask=mask)
    got = check(arr)
    if not blanks:  # a view of Arrow's buffer, not a copy
        assert got.ctypes.data == arr.buffers()[1].address
    for lo, length in ((3, 17), (8, 40), (13, 0), (60, 1), (0, 61)):
        part = arr.slice(lo, length)
        got = check(part)
        if not blanks and length:
            assert got.ctypes.data == part.buffers()[1].address + lo * values.itemsize


@pytest.mark.parametrize("blanks", [False, True])
def test_booleans_at_every_bit_offset(blanks):
    rng = np.random.default_rng(1)
    values = rng.random(45) < 0.5
    arr = pa.array(values, mask=(rng.random(45) < 0.3) if blanks else None)
    check(arr)
    for lo in range(0, 17):  # offsets that are not a multiple of 8 among them
        for length in (0, 1, 7, 8, 9, 45 - lo - 11):
            check(arr.slice(lo, length))


def test_blanks_of_whole_arrays_bitmaps_and_all_blank():
    arr = pa.array([1, None, 3, None, 5] * 5, pa.int32())
    for part in (arr, arr.slice(3, 11)):
        check(part.is_null())
        check(part.is_valid())
    check(pa.array([None, None, None], pa.float64()))
    check(pa.array([None, None, None], pa.int64()))
    check(pa.array([None, None], pa.bool_()))
    check(pa.array([None, None]))  # the null type: object Nones
    check(pa.nulls(0, pa.int64()))


def test_chunked_arrays_several_chunks_one_and_none():
    ints = pa.chunked_array([pa.array([1, 2], pa.int16()), pa.array([None, 4], pa.int16()),
                             pa.array([5], pa.int16())])
    check(ints)  # one chunk with blanks: the whole column is float64 with NaN
    check(pa.chunked_array([pa.array([1, 2]), pa.array([3]), pa.array([], pa.int64())]))
    check(pa.chunked_array([pa.array([1.5, None]), pa.array([2.5])]))
    check(pa.chunked_array([pa.array([True, False]), pa.array([None], pa.bool_())]))
    check(pa.chunked_array([pa.array([True, False] * 9).slice(3), pa.array([False])]))
    check(pa.chunked_array([pa.array(["a", None]), pa.array(["b", "a"])]))
    stamps = pa.array([0, None, 86400 * 365, -5], pa.timestamp("s"))
    check(pa.chunked_array([stamps, stamps.slice(1, 2), pa.array([7], pa.timestamp("s"))]))
    days = pa.array([0, None, 18000], pa.date32())
    check(pa.chunked_array([days.slice(1), days]))
    floats = pa.array(np.arange(40.0), mask=np.arange(40) % 7 == 3)
    check(pa.chunked_array([floats.slice(3, 20), floats.slice(11), floats.slice(0, 0)]))
    check(pa.chunked_array([pa.array(np.arange(9, dtype=np.uint64)).slice(2),
                            pa.array([None, 1], pa.uint64())]))
    one = pa.chunked_array([pa.array(np.arange(10.0))])
    assert check(one).ctypes.data == one.chunk(0).buffers()[1].address  # not copied
    for t in (pa.int64(), pa.uint8(), pa.float32(), pa.bool_(), pa.string(),
              pa.timestamp("s"), pa.date32(), pa.dictionary(pa.int32(), pa.string())):
        check(pa.chunked_array([], t))
        check(pa.chunked_array([pa.array([], t)], t))


def test_text_with_blanks_slices_and_large_strings():
    words = ["alpha", None, "beta", "", "alpha", "gamma", None, "é≠😀", "beta"] * 4
    for t in (pa.string(), pa.large_string()):
        arr = pa.array(words, t)
        check(arr)
        check(arr.slice(5, 20))
        check(arr.slice(36, 0))
    check(pa.array([None, None], pa.string()))
    check(pa.array([b"x", None, b"\xff"]))  # binary: bytes


def test_dictionary_arrays():
    arr = pa.array(["b", "a", None, "b", "c"]).dictionary_encode()
    check(arr)
    check(arr.slice(1, 3))
    check(pa.DictionaryArray.from_arrays(pa.array([0, 1, 0, None], pa.int8()),
                                         pa.array(["x", None])))  # a blank in the dictionary
    check(pa.DictionaryArray.from_arrays(pa.array([2, 0, None], pa.uint8()),
                                         pa.array([10, 20, 30], pa.int64())))
    check(pa.DictionaryArray.from_arrays(pa.array([2, 0, 1], pa.int32()),
                                         pa.array([10, 20, 30], pa.int64())))
    # pyarrow's ChunkedArray.to_numpy of dictionaries puts a neighbour's value at a blank
    # (pyarrow 26: ['a', 'b', 'c', 'c', 'a'] here; ARROW-9594 fixed Array.to_numpy only):
    # the reference is the decoded column's conversion, None at the blank
    words = pa.chunked_array([pa.array(["a", "b"]).dictionary_encode(),
                              pa.array(["c", None, "a"]).dictionary_encode()])
    assert_same(to_numpy(words), words.cast(pa.string()).to_numpy(zero_copy_only=False))
    assert to_numpy(words).tolist() == ["a", "b", "c", None, "a"]
    numbers = pa.chunked_array([pa.array([1, 2]).dictionary_encode(),
                                pa.array([None, 2], pa.int64()).dictionary_encode()])
    assert_same(to_numpy(numbers), numbers.cast(pa.int64()).to_numpy(zero_copy_only=False))


def test_the_indices_with_a_value_for_blanks():
    idx = pa.array([3, None, 0, None], pa.int32())
    got = to_numpy(idx, null=-1)
    assert got.dtype == np.int32 and got.tolist() == [3, -1, 0, -1]
    got = to_numpy(pa.array([200, None], pa.uint8()), null=-1)  # widened to hold -1
    assert got.dtype.kind == "i" and got.tolist() == [200, -1]
    assert to_numpy(pa.array([1, 2], pa.uint8()), null=-1).tolist() == [1, 2]
    got = to_numpy(pa.chunked_array([pa.array([1]), pa.array([None], pa.int64())]), null=7)
    assert got.dtype == np.int64 and got.tolist() == [1, 7]
    got = to_numpy(pa.chunked_array([pa.array([250, None], pa.uint8()),
                                     pa.array([3], pa.uint8())]), null=-1)
    assert got.dtype.kind == "i" and got.tolist() == [250, -1, 3]


def test_dates_times_and_other_types():
    days = [dt.date(2020, 1, 1), None, dt.date(1969, 12, 31), dt.date(2024, 2, 29)]
    check(pa.array(days, pa.date32()))
    check(pa.array(days, pa.date64()).slice(1))
    stamps = [dt.datetime(2020, 1, 1, 12, 30), None, dt.datetime(1900, 5, 6, 7, 8, 9)]
    for unit in ("s", "ms", "us", "ns"):
        check(pa.array(stamps, pa.timestamp(unit)))
        check(pa.array(stamps, pa.timestamp(unit, tz="Europe/Paris")).slice(1))
        check(pa.array([dt.timedelta(days=1), None], pa.duration(unit)))
    check(pa.array([dt.time(1, 2), None]))  # times: datetime.time objects
    check(pa.array([decimal.Decimal("1.25"), None], pa.decimal128(5, 2)))
    nested = to_numpy(pa.array([[1, 2], None, []]))  # nested: Python lists (pyarrow: arrays)
    assert nested.dtype == object and nested.tolist() == [[1, 2], None, []]


def test_not_an_arrow_array_is_refused():
    with pytest.raises(TypeError, match="arr must be a pyarrow Array"):
        to_numpy(np.arange(3))


@pytest.mark.parametrize("values", [
    np.array([True, False, True] * 7 + [True]), np.zeros(0, bool), np.arange(-5, 5, dtype=np.int8),
    np.arange(10, dtype=np.uint32), np.array([1.5, np.nan, -0.0, np.inf]),
    np.arange(12, dtype=np.float32)[::3], np.arange(5, dtype=np.int64),
    np.arange(4, dtype=">i4")])  # big-endian: pa.array refuses it, from_numpy swaps it
def test_from_numpy_is_pa_array(values):
    got = from_numpy(values)
    want = pa.array(values.astype(values.dtype.newbyteorder("=")))  # (pyarrow: native only)
    assert got.type == want.type and got.null_count == 0
    assert got.to_pylist() == pytest.approx(want.to_pylist(), nan_ok=True) \
        if values.dtype.kind == "f" else got.to_pylist() == want.to_pylist()
    got.validate(full=True)


def test_from_numpy_refuses_what_it_does_not_build():
    with pytest.raises(ValueError, match="must be 1-D"):
        from_numpy(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="numbers or booleans"):
        from_numpy(np.array(["a"]))


def test_string_array_and_null_scalar():
    for words in (["b", "", "a", "é≠😀"], np.array(["x", "yy"]), []):
        got = string_array(words)
        got.validate(full=True)
        assert got.equals(pa.array(list(words), pa.string()))
    with pytest.raises(TypeError, match="must be str"):
        string_array(["a", None])
    for t in (pa.float64(), pa.int32(), pa.string()):
        assert null_scalar(t).equals(pa.scalar(None, t))


CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from fastnn.datasets import load_table
    from fastnn.tabular import TableEncoder

    train, test, parquet, shown = sys.argv[1:]
    out = {}
    for target in ("price", "kind"):
        split = load_table(train, target, blank_target="drop")
        enc = TableEncoder.fit(split.table, rows=np.arange(0, split.table.num_rows, 2))
        X = enc.transform(split.table)
        counts = {}
        held = load_table(test, target, features=enc.feature_columns,
                          column_types=enc.column_types(), blank_target="drop")
        X_test = enc.transform(held.table, counts)
        out[target] = {"y": np.asarray(split.y).tolist(), "X": X.tolist(),
                       "X_test": X_test.tolist(), "counts": counts,
                       "roles": enc.role_rows(), "y_test": np.asarray(held.y).tolist()}
    pq = load_table(parquet, "kind", blank_target="drop")
    out["parquet"] = TableEncoder.fit(pq.table).transform(pq.table).tolist()
    out["parquet_y"] = pq.y.tolist()
    out["pandas"] = [m for m in ("pandas",) if m in sys.modules]
    with open(shown, "w") as f:
        json.dump(out, f)
""")


def mixed_csv(path, rows: int, seed: int) -> None:
    """Text (with blanks), whole numbers, reals with blanks, booleans, dates, a free-text
    column, a numeric and a text target (some blank)."""
    rng = np.random.default_rng(seed)
    lines = ["city,rooms,area,garden,built,note,kind,price"]
    for i in range(rows):
        city = ["Oslo", "Lyon", "Graz", ""][rng.integers(4)]
        area = "" if rng.random() < 0.2 else f"{rng.normal(80, 20):.2f}"
        garden = ["true", "false", ""][rng.integers(3)]
        built = "" if rng.random() < 0.1 else \
            f"{rng.integers(1950, 2020)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
        kind = "" if i == 5 else ["flat", "house"][rng.integers(2)]
        price = "" if i == 7 else f"{rng.integers(100, 900) * 1000}"
        lines.append(f"{city},{rng.integers(1, 6)},{area},{garden},{built},note {i} {seed},"
                     f"{kind},{price}")
    path.write_text("\n".join(lines) + "\n")


def pyarrows_own(monkeypatch) -> None:
    """fastnn's readers with pyarrow's own conversions instead of fastnn._arrow's (the
    reference)."""
    import pyarrow.compute as pc

    import fastnn.datasets
    import fastnn.tabular

    def reference(arr, null=None):
        return (arr if null is None else pc.fill_null(arr, null)).to_numpy(
            zero_copy_only=False)

    for module in (fastnn.datasets, fastnn.tabular):
        for name, fn in (("to_numpy", reference), ("from_numpy", pa.array),
                         ("string_array", lambda v: pa.array(v, pa.string())),
                         ("null_scalar", lambda t: pa.scalar(None, t))):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, fn)


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None,
                    reason="pandas is not installed: nothing to keep out")
def test_reading_and_encoding_a_table_does_not_import_pandas(tmp_path, monkeypatch):
    """The CSV and Parquet paths of ``fastnn train`` (with a test file) and ``predict``:
    load_table, TableEncoder.fit and transform on text, blanks, booleans, dates, a numeric
    and a text target, in a fresh process with pandas installed: pandas is not imported,
    and the targets and matrices are those that pyarrow's own conversions give (in this
    process, where they may import pandas)."""
    import pyarrow.parquet as pq

    from fastnn.datasets import load_table, read_table
    from fastnn.tabular import TableEncoder

    train, test, parquet = tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "t.pq"
    mixed_csv(train, 60, 0)
    mixed_csv(test, 25, 1)
    with open(test, "a") as f:
        f.write("Rome,9,,maybe,2030-01-01,x,flat,1000\n")  # unseen values in a test file
    pq.write_table(read_table(str(train)), parquet)  # blanks as blanks
    shown = tmp_path / "shown.json"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(train), str(test), str(parquet),
                           str(shown)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(shown.read_text())
    assert got["pandas"] == []
    pyarrows_own(monkeypatch)
    for target in ("price", "kind"):  # the same numbers in this process
        split = load_table(str(train), target, blank_target="drop")
        enc = TableEncoder.fit(split.table, rows=np.arange(0, split.table.num_rows, 2))
        assert [r["role"] for r in got[target]["roles"]] == \
            [r["role"] for r in enc.role_rows()]
        assert {r["role"] for r in enc.role_rows()} >= {"numeric", "categorical", "date",
                                                       "dropped"}
        assert got[target]["y"] == np.asarray(split.y).tolist()
        np.testing.assert_array_equal(np.array(got[target]["X"]), enc.transform(split.table))
        counts = {}
        held = load_table(str(test), target, features=enc.feature_columns,
                          column_types=enc.column_types(), blank_target="drop")
        np.testing.assert_array_equal(np.array(got[target]["X_test"]),
                                      enc.transform(held.table, counts))
        assert got[target]["counts"] == counts and counts
    split = load_table(str(parquet), "kind", blank_target="drop")
    np.testing.assert_array_equal(np.array(got["parquet"]),
                                  TableEncoder.fit(split.table).transform(split.table))
    assert got["parquet_y"] == split.y.tolist() and len(split.y) == 59
