"""The fit's fast paths give NumPy's numbers to the bit: the bracketed median
(``fastnn.tabular._median``), the one-pass gather of a numeric column's fitted values
(``kernels.rows.filled_values``), the bracket pass (``kernels.rows.values_between``) and the
sorted training rows; and a fitted encoder equals one fitted the plain NumPy way."""

import numpy as np
import pyarrow as pa
import pytest

import naive
from fastnn import tabular
from fastnn.kernels import rows as K_rows


def _columns(m: int):
    rng = np.random.default_rng(m)
    yield "normal", rng.standard_normal(m)
    yield "sorted", np.sort(rng.standard_normal(m))
    yield "reversed", np.sort(rng.standard_normal(m))[::-1].copy()
    yield "few values", rng.integers(0, 3, m).astype(np.float64)
    yield "constant", np.full(m, 2.5)
    yield "signed zeros", np.where(rng.random(m) < 0.5, -0.0, 0.0) + np.where(
        rng.random(m) < 0.1, rng.standard_normal(m), 0.0)
    yield "zero in the middle", np.concatenate([-np.ones(m // 2), np.zeros(m - m // 2)])
    yield "infinities", np.where(rng.random(m) < 0.5, np.inf, -np.inf)
    yield "skewed", np.exp(3 * rng.standard_normal(m))
    # ordered against the sample's stride: every stride-th value is the largest
    stride = max(1, m // tabular.MEDIAN_SAMPLE)
    periodic = rng.standard_normal(m)
    periodic[::stride] = 1e9
    yield "periodic", periodic
    yield "huge", np.full(m, 1.5e308) * np.where(rng.random(m) < 0.5, 1, 1.0000001)


@pytest.mark.parametrize("m", [1, 2, 5, tabular.MEDIAN_BRACKET_FROM,
                               tabular.MEDIAN_BRACKET_FROM + 1, 50_001, 120_000])
def test_median_is_numpys_to_the_bit(m):
    for what, values in _columns(m):
        before = values.copy()
        with np.errstate(over="ignore", invalid="ignore"):  # inf - inf, 1.5e308 + 1.5e308
            got, want = tabular._median(values), float(np.median(values))
        assert np.array_equal(np.float64(got), np.float64(want), equal_nan=True), what
        assert np.signbit(got) == np.signbit(want), what
        np.testing.assert_array_equal(values, before)  # not changed


@pytest.mark.parametrize("every", [True, False])
def test_filled_values_matches_numpy(every):
    rng = np.random.default_rng(2)
    values = rng.standard_normal(1000)
    values[rng.random(1000) < 0.2] = np.nan
    rows = np.zeros(0, np.int64) if every else rng.permutation(1000)[:333].astype(np.int64)
    out = np.full(1000 if every else 333, -7.0)
    m, lo, hi = K_rows.filled_values(values, rows, every, out)
    want, want_lo, want_hi = naive.filled_values(values, rows, every)
    assert m == len(want)
    np.testing.assert_array_equal(out[:m], want)
    assert (lo, hi) == (want_lo, want_hi)
    m, lo, hi = K_rows.filled_values(np.full(5, np.nan), np.zeros(0, np.int64), True,
                                     np.empty(5))
    assert (m, lo, hi) == (0, np.inf, -np.inf)


def test_values_between_matches_numpy():
    rng = np.random.default_rng(3)
    values = rng.standard_normal(999)
    out = np.empty(999)
    below, k = K_rows.values_between(values, -0.1, 0.3, out)
    want_below, want = naive.values_between(values, -0.1, 0.3)
    assert below == want_below
    np.testing.assert_array_equal(out[:k], want)


def test_sorted_rows_is_np_sort():
    rng = np.random.default_rng(4)
    rows = rng.permutation(500)[:300]
    np.testing.assert_array_equal(tabular._sorted_rows(rows, 500), np.sort(rows))
    twice = np.concatenate([rows, rows[:10]])  # a row twice: counted twice
    np.testing.assert_array_equal(tabular._sorted_rows(twice, 500), np.sort(twice))
    np.testing.assert_array_equal(tabular._sorted_rows(rows.astype(np.int32), 500),
                                  np.sort(rows))


def test_fit_refuses_rows_outside_the_table():
    t = pa.table({"x": pa.array(np.arange(30.0) / 7)})
    for bad in ([0, 30], [-1, 3]):
        with pytest.raises(ValueError, match="rows must lie in 0..29"):
            tabular.TableEncoder.fit(t, rows=np.array(bad))
    with pytest.raises(ValueError, match="rows must be a 1-D array of row indices"):
        tabular.TableEncoder.fit(t, rows=np.array([0.5, 2.0]))


def test_fitted_numbers_are_numpys(monkeypatch):
    """Median, range and indicator of long numeric columns (with blanks, signed zeros at the
    edges and the median, a skewed one), fitted on some rows and on all, equal the NumPy
    formulas."""
    rng = np.random.default_rng(5)
    n = 3 * tabular.MEDIAN_BRACKET_FROM
    zeros = np.where(rng.random(n) < 0.5, -0.0, 0.0)
    t = pa.table({
        "a": pa.array(rng.standard_normal(n), mask=rng.random(n) < 0.05),
        "b": pa.array(np.abs(rng.standard_normal(n)) * np.where(rng.random(n) < 0.5, 0, 1)
                      + zeros),
        "c": pa.array(np.exp(rng.standard_normal(n))),
        "d": pa.array(np.where(rng.random(n) < 0.5, -1.0, 1.0) * np.abs(zeros)),
    })
    t = t.append_column("e", pa.array(rng.standard_normal(n) * 100))
    for fit_rows in (None, rng.permutation(n)[: n // 2]):
        enc = tabular.TableEncoder.fit(t, rows=fit_rows)
        for c in enc.columns:
            if c.role != "numeric":
                continue
            v = t.column(c.name).to_numpy(zero_copy_only=False).astype(np.float64)
            part = v if fit_rows is None else v[np.sort(fit_rows)]
            filled = part[~np.isnan(part)]
            want = (float(np.median(filled)), float(filled.min()), float(filled.max()))
            got = (c.median, c.low, c.high)
            assert np.array_equal(got, want) and np.array_equal(np.signbit(got),
                                                                 np.signbit(want)), c.name
            assert c.indicator == (len(filled) < len(part))


@pytest.mark.parametrize("typ", [pa.float64(), pa.float32(), pa.int64(), pa.int32(),
                                 pa.uint8(), pa.int16()])
@pytest.mark.parametrize("blanks", [True, False])
def test_values_from_arrow_equals_arrows_conversion(typ, blanks):
    """Slices at offsets that are not whole bytes of the bitmap, with and without blanks."""
    from fastnn.tabular import _primitive_parts

    rng = np.random.default_rng(6)
    v = rng.integers(0, 100, 300).tolist()  # pyarrow converts to typ (no pandas needed)
    arr = pa.array(v, typ, mask=(rng.random(300) < 0.3) if blanks else None)
    for lo, hi in ((0, 300), (3, 250), (13, 14), (7, 7)):
        piece = arr.slice(lo, hi - lo)
        parts = _primitive_parts(piece)
        assert parts is not None
        out = np.full(hi - lo, -1.0)
        K_rows.values_from_arrow(*parts, out)
        want = np.asarray(piece.to_numpy(zero_copy_only=False), np.float64)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(out, naive.values_from_arrow(*parts, hi - lo))
    assert _primitive_parts(pa.array([1.5], pa.float16())) is None


def test_codes_from_arrow_counts_and_refuses_a_bad_index():
    from fastnn.tabular import _primitive_parts

    code = np.array([2.0, 1.0, 3.0, 0.0])  # three entries, then a blank's code
    unknown = code == 1.0
    index = pa.array([0, 1, None, 2, 1, None, 0], pa.int32())
    for lo in (0, 1, 5):
        piece = index.slice(lo)
        out = np.full(len(piece), -1.0)
        blanks, unknowns = K_rows.codes_from_arrow(*_primitive_parts(piece), code, unknown,
                                                   out)
        filled = np.asarray(pc_fill(piece), np.int64)
        np.testing.assert_array_equal(out, code[filled])
        assert blanks == piece.null_count
        assert unknowns == int(np.count_nonzero(filled == 1))
        assert (blanks, unknowns) == naive.codes_from_arrow(*_primitive_parts(piece), code,
                                                            unknown)[1:]
    out = np.empty(3)
    got = K_rows.codes_from_arrow(*_primitive_parts(pa.array([0, 3, 1], pa.int32())), code,
                                  unknown, out)
    assert got == (-1, 1)
    assert naive.codes_from_arrow(*_primitive_parts(pa.array([0, 3, 1], pa.int32())), code,
                                  unknown) is None


def pc_fill(piece):
    import pyarrow.compute as pc

    return pc.fill_null(piece, -1).to_numpy(zero_copy_only=False)


def test_a_dictionary_index_outside_its_dictionary_is_a_data_error():
    """A damaged dictionary-encoded column (an index past its dictionary, as a hostile file
    may hold) is refused by name, never read out of bounds."""
    from fastnn.data import DataError

    good = pa.table({"c": pa.array(["a", "b", "c"] * 10), "x": pa.array(np.arange(30.0) % 7)})
    enc = tabular.TableEncoder.fit(good)
    damaged = pa.DictionaryArray.from_arrays(pa.array([0, 5, 1] * 10, pa.int32()),
                                             pa.array(["a", "b", "c", "d"]), safe=False)
    with pytest.raises(DataError, match="row 1 has the index 5 into a dictionary of 4"):
        enc.transform(pa.table({"c": damaged, "x": pa.array(np.arange(30.0))}))
