"""Reading and encoding fast (fastnn.datasets.read_table, fastnn.tabular): text read
dictionary-encoded encodes as plain text does, a table in many blocks and chunks as in one,
and real columns with many distinct values show them as ">1000"."""

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from fastnn import datasets, tabular  # noqa: E402
from fastnn.tabular import DISTINCT_SHOWN, TableEncoder  # noqa: E402


def _mixed(n: int, seed: int = 0):
    """Every kind of column, blanks in most, in chunks of 37 rows (as a CSV is read)."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=n) * 10
    real[::7] = np.nan
    words = np.array([f"w{k}" for k in range(30)], dtype=object)
    word = words[rng.integers(0, 30, n)]
    word[rng.random(n) < 0.1] = None
    t = pa.table({
        "real": pa.array(real, mask=np.arange(n) % 11 == 0),
        "count": pa.array(rng.integers(0, 500, n), mask=rng.random(n) < 0.05),
        "few": pa.array(rng.integers(0, 4, n)),
        "halves": pa.array(rng.integers(0, 40, n) / 2.0),  # reals with 40 distinct values
        "single": pa.array(rng.normal(size=n).astype(np.float32)),
        "flag": pa.array(rng.random(n) < 0.3, mask=rng.random(n) < 0.05),
        "day": pa.array(rng.integers(0, 3000, n).astype("datetime64[D]"),
                        mask=rng.random(n) < 0.05),
        "word": pa.array(word, pa.string()),
        "city": pa.array(np.array(["a", "b", "c", "d"], dtype=object)[rng.integers(0, 4, n)],
                         pa.large_string()),
    })
    return pa.Table.from_batches(t.to_batches(max_chunksize=37))


def _as_dictionary(col, unused: bool = False, null_entry: bool = False, twice: bool = False):
    """``col`` (text) dictionary-encoded chunk by chunk, each chunk with its own dictionary,
    optionally with a value no row uses, a blank entry, or a value twice."""
    chunks = []
    for k, chunk in enumerate(col.chunks):
        values = chunk.to_pylist()
        dictionary = sorted({v for v in values if v is not None}, reverse=k % 2 == 1)
        if unused:
            dictionary = dictionary + ["never used"]
        if twice and dictionary:
            dictionary = dictionary + [dictionary[0]]
        if null_entry:
            dictionary = dictionary + [None]
        where = {v: i for i, v in enumerate(dictionary) if v is not None}
        # a blank row: a null index, or (null_entry) an index of the blank entry
        index = [where[v] if v is not None else (len(dictionary) - 1 if null_entry and i % 2
                                                 else None) for i, v in enumerate(values)]
        if twice and dictionary[:-1]:  # some rows use the second copy of the first value
            index = [len(dictionary) - 1 - null_entry if j == 0 and i % 3 == 0 else j
                     for i, j in enumerate(index)]
        chunks.append(pa.DictionaryArray.from_arrays(
            pa.array(index, pa.int32()), pa.array(dictionary, col.type)))
    return pa.chunked_array(chunks)


def _with(table, **cols):
    for name, col in cols.items():
        table = table.set_column(table.column_names.index(name), name, col)
    return table


def _encode(enc, table):
    counts: dict = {}
    return enc.transform(table, counts), counts


@pytest.mark.parametrize("variant", ["plain", "unused", "null_entry", "twice"])
def test_dictionary_encoded_text_encodes_as_plain_text(variant, monkeypatch):
    """The same text read dictionary-encoded (per-chunk dictionaries, in other orders, with
    unused values, a blank entry or a value twice, as Arrow allows): the same roles,
    vocabularies, matrix and counts as plain text, fitted and transformed, also a test
    table with unseen values and blanks; in blocks of rows that cut across chunks."""
    monkeypatch.setattr(tabular, "ENCODE_BLOCK_ROWS", 50)
    monkeypatch.setattr(tabular, "PARALLEL_CELLS", 0)  # threads too
    t = _mixed(400)
    rows = np.random.default_rng(1).permutation(400)[:300]
    plain = TableEncoder.fit(t, rows=rows)
    X, counts = _encode(plain, t)
    opts = {} if variant == "plain" else {variant: True}
    dt = _with(t, word=_as_dictionary(t.column("word"), **opts),
               city=_as_dictionary(t.column("city"), **opts))
    enc = TableEncoder.fit(dt, rows=rows)
    assert enc.state()[0] == plain.state()[0]
    for k, v in plain.state()[1].items():
        np.testing.assert_array_equal(enc.state()[1][k], v)
    X2, counts2 = _encode(enc, dt)
    np.testing.assert_array_equal(X2, X)
    assert counts2 == counts
    # a later table: values never seen, and blanks in a column that had none
    rng = np.random.default_rng(2)
    later = t.slice(0, 120)
    later = _with(later, word=pa.chunked_array([pa.array(
        [f"w{k}" if k < 35 else None for k in rng.integers(0, 40, 120)], pa.string())]),
        city=pa.chunked_array([pa.array(["a", None, "zz"] * 40, pa.large_string())]))
    want = _encode(plain, later)
    dlater = _with(later, word=_as_dictionary(later.column("word"), **opts),
                   city=_as_dictionary(later.column("city"), **opts))
    got = _encode(plain, dlater)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1] and want[1]["word"]["unknown"] and want[1]["city"]["unknown"]


def test_blocks_groups_and_threads_give_the_matrix_of_one_block(monkeypatch):
    t = _mixed(1000)
    rows = np.arange(0, 1000, 3)
    enc = TableEncoder.fit(t, rows=rows)
    one = _encode(enc, t.combine_chunks())
    monkeypatch.setattr(tabular, "ENCODE_BLOCK_ROWS", 64)
    monkeypatch.setattr(tabular, "PARALLEL_CELLS", 0)
    many = _encode(enc, t)
    np.testing.assert_array_equal(many[0], one[0])
    assert many[1] == one[1] and many[0].flags.c_contiguous
    monkeypatch.setattr(tabular, "ENCODE_GROUP", 3)  # a wide table: passes of 3 sources
    narrow = _encode(enc, t)
    np.testing.assert_array_equal(narrow[0], one[0])
    assert narrow[1] == one[1]


def test_a_large_matrix_is_mapped_with_small_pages(monkeypatch):
    monkeypatch.setattr(tabular, "SMALL_PAGES_BYTES", 1000)
    t = _mixed(200)
    enc = TableEncoder.fit(t)
    X = enc.transform(t)
    assert X.base is not None and X.flags.writeable and X.flags.c_contiguous
    monkeypatch.setattr(tabular, "SMALL_PAGES_BYTES", 1 << 40)
    np.testing.assert_array_equal(enc.transform(t), X)


def test_real_columns_with_many_distinct_values_show_more_than_1000():
    rng = np.random.default_rng(0)
    n = 10_000
    t = pa.table({"real": rng.normal(size=n),
                  "halves": rng.integers(0, 1500, n) / 2.0,  # 1,500 values, all in the head
                  "late": np.concatenate([np.zeros(9000), rng.normal(size=1000)]),
                  "whole": rng.integers(0, 5000, n).astype(float)})
    enc = TableEncoder.fit(t)
    c = {c.name: c for c in enc.columns}
    assert c["real"].many_distinct and c["real"].shown_distinct == f">{DISTINCT_SHOWN}"
    assert c["real"].distinct == DISTINCT_SHOWN + 1 and c["real"].role == "numeric"
    assert c["halves"].many_distinct
    # few distinct values in the first rows: counted exactly, however many there are later
    assert not c["late"].many_distinct and c["late"].distinct == 1001
    # whole numbers are always counted (their count decides their role)
    assert not c["whole"].many_distinct and c["whole"].distinct == len(np.unique(t["whole"]))
    assert f">{DISTINCT_SHOWN}" in enc.role_table().splitlines()[1]
    assert enc.role_rows()[0]["distinct"] == f">{DISTINCT_SHOWN}"
    record, arrays = enc.state()
    again = TableEncoder.from_state(record, arrays)
    assert again.columns == enc.columns
    # a checkpoint written before the mark: no key, an exact count
    for r in record["columns"]:
        r.pop("many_distinct", None)
    assert not any(c.many_distinct for c in TableEncoder.from_state(record, arrays).columns)
    assert "many_distinct" not in TableEncoder.fit(t.select(["late"])).state()[0]["columns"][0]


def test_a_large_csv_and_parquet_file_read_text_dictionary_encoded(tmp_path, monkeypatch):
    """Text of a CSV read with sampled types, and of a Parquet file, comes dictionary-
    encoded; the encoder gives the matrix of the plain table."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    monkeypatch.setattr(datasets, "CSV_SAMPLE_BYTES", 2000)
    t = _mixed(3000).drop(["day"])
    csv, parquet = str(tmp_path / "t.csv"), str(tmp_path / "t.parquet")
    pcsv.write_csv(t, csv)
    pq.write_table(t, parquet)
    plains = {csv: pcsv.read_csv(csv, convert_options=pcsv.ConvertOptions(
        strings_can_be_null=True)), parquet: pq.read_table(parquet)}
    for path, plain in plains.items():
        assert pa.types.is_string(plain.schema.field("word").type)
        enc = TableEncoder.fit(plain)
        want = _encode(enc, plain)
        got = datasets.read_table(path)
        assert pa.types.is_dictionary(got.schema.field("word").type), path
        assert TableEncoder.fit(got).state()[0] == enc.state()[0]
        X, counts = _encode(enc, got)
        np.testing.assert_array_equal(X, want[0])
        assert counts == want[1]
