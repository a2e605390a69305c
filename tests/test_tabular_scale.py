"""A large mixed table: the peak memory of reading and encoding it (fastnn.bench's tables
worker, in a fresh process so that the high-water mark is its own), and the generated
table itself."""

import json
import subprocess
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from fastnn import bench  # noqa: E402

#: Peak memory allowed: this many times the encoded arrays plus the model (issue 25).
BOUND = 2.5


def test_the_generated_table_has_its_columns_categories_and_blanks():
    t = bench.make_mixed_table(20_000, seed=1)
    assert t.num_rows == 20_000 and t.num_columns == bench.TABLE_NUMERIC + 5 + 1
    for j, k in enumerate(bench.TABLE_CATEGORIES[:3]):  # the larger ones need more rows
        col = t.column(f"cat{j}")
        assert len(pa.compute.unique(col.drop_null())) == k
    blanks = [t.column(c).null_count / t.num_rows for c in t.column_names if c != "target"]
    assert min(blanks) > 0.04 and max(blanks) < 0.06
    assert set(np.unique(t.column("target").to_numpy())) == {0, 1}


def test_peak_memory_of_reading_and_encoding_a_large_mixed_csv(tmp_path):
    """300,000 rows of 20 real and 5 text columns (10 to 10,000 categories, 5% blanks), read
    from CSV and encoded as ``fastnn train`` does, in a fresh process: its peak RSS grows by
    at most 2.5x the encoded arrays (X float64 and y) plus the model's parameters (measured
    2.2x here; Parquet 2.4x, whose reader keeps more of its scratch memory at this size:
    ``fastnn bench --tables`` reports both at a million rows). About 5 s on a busy 2-core
    machine, most of it writing the files."""
    path = bench.mixed_table_files(str(tmp_path), 300_000)[0]
    proc = subprocess.run([sys.executable, "-m", "fastnn.bench", "--tables-worker", "memory",
                           json.dumps([path])], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mem = json.loads(proc.stdout.strip().splitlines()[-1])
    assert mem["shape"] == [300_000, 45]  # 20 values, 20 blank indicators, 5 codes
    budget = BOUND * (mem["encoded_bytes"] + mem["model_bytes"])
    assert mem["peak_bytes"] <= budget, (
        f"peak {mem['peak_bytes'] / 2**20:.0f} MiB over {BOUND}x (encoded "
        f"{mem['encoded_bytes'] / 2**20:.0f} MiB + model {mem['model_bytes'] / 2**20:.1f} MiB)")


def test_the_tables_report_gives_medians_ratios_and_the_memory_bound():
    results = {
        "files": {"csv": "t.csv", "parquet": "t.parquet", "csv_bytes": 2**20,
                  "parquet_bytes": 2**19},
        "timing": {"pandas read_csv": [2.0, 4.0, 3.0], "fastnn csv": [3.0, 3.3, 9.0],
                   "fastnn csv read": [1.0, 1.0, 1.0],
                   "cpu": {"pandas read_csv": [1.0, 1.0, 1.0], "fastnn csv": [1.5, 1.7, 1.6]}},
        "memory csv": {"peak_bytes": 900 * 2**20, "encoded_bytes": 350 * 2**20,
                       "model_bytes": 10 * 2**20, "shape": [1000, 45]},
        "epochs": {"TabularMLP": [2.0, 2.2, 9.0], "MLP": [2.0, 2.0, 2.0],
                   "steps": {"TabularMLP": "graph (why)", "MLP": "compiled"},
                   "rows": 1000, "batch": 32, "width": 217},
    }
    text = bench.format_tables_report(results)
    assert "fastnn csv" in text and "1.10x" in text  # median 3.3 against pandas' 3.0
    row = next(line for line in text.splitlines() if line.startswith("fastnn csv "))
    assert row.split()[-2:] == ["1.60", "1.60x"]  # CPU: 1.6 s against pandas' 1.0
    assert next(line for line in text.splitlines() if "csv read" in line).split()[-1] == "-"
    assert "2.50x the encoded arrays" in text  # 900 / (350 + 10)
    assert "TabularMLP 2.20 s" in text and "1.10x" in text.splitlines()[-1]


def test_the_threaded_chunked_path_encodes_as_the_plain_one(monkeypatch):
    """The same table in one chunk, sequentially, and in many chunks on threads (as a large
    CSV is read): the same roles, statistics, matrix and counts; whole numbers beyond 2**53
    (an identifier) are counted exactly; NaN and nulls are both blanks."""
    from fastnn import tabular

    rng = np.random.default_rng(0)
    n = 300
    real = rng.normal(size=n)
    real[::7] = np.nan
    t = pa.table({
        "real": pa.array(real, mask=np.arange(n) % 11 == 0),
        "zeros": pa.array(np.where(np.arange(n) % 2, 0.0, -0.0) + rng.integers(0, 2, n)),
        "count": pa.array(rng.integers(0, 500, n)),
        "few": pa.array(rng.integers(0, 4, n)),
        "word": pa.array([f"w{k}" for k in rng.integers(0, 30, n)], pa.string(),
                         mask=rng.random(n) < 0.1),
        "big_id": pa.array([2**60 + i for i in range(n)]),
    })
    rows = rng.permutation(n)[:200]
    enc = tabular.TableEncoder.fit(t, rows=rows)
    counts: dict = {}
    X = enc.transform(t, counts)
    roles = {c.name: (c.role, c.distinct) for c in enc.columns}
    assert roles["big_id"][0] == "dropped" and roles["big_id"][1] == n
    assert next(c for c in enc.columns if c.name == "real").missing == pytest.approx(
        np.mean(np.isnan(real) | (np.arange(n) % 11 == 0)))

    monkeypatch.setattr(tabular, "PARALLEL_CELLS", 0)
    chunked = pa.Table.from_batches(t.to_batches(max_chunksize=37))
    enc2 = tabular.TableEncoder.fit(chunked, rows=rows)
    counts2: dict = {}
    X2 = enc2.transform(chunked, counts2)
    assert enc2.state()[0] == enc.state()[0]
    np.testing.assert_array_equal(X2, X)
    assert counts2 == counts and X2.flags.c_contiguous
