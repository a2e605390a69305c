"""fastnn/datasets.py: every file format, written here, and broken files refused."""

import gzip
import os

import numpy as np
import pytest
from conftest import blobs, write_idx

from fastnn import datasets
from fastnn.data import DataError


def test_idx_raw_and_gz_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (False, True):
        p = write_idx(tmp_path / f"a{int(gz)}.idx{'.gz' if gz else ''}", arr, gz=gz)
        np.testing.assert_array_equal(datasets.load_idx(str(p)), arr)


def test_idx_header_checked_before_allocation(tmp_path):
    p = write_idx(tmp_path / "x.idx", np.zeros((2, 2), np.uint8))
    raw = bytearray(p.read_bytes())
    raw[0] = 1
    bad = tmp_path / "magic.idx"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="magic"):
        datasets.load_idx(str(bad))
    # A header declaring 2**31 x 2**31 bytes: refused from the header alone.
    huge = tmp_path / "huge.idx"
    huge.write_bytes(bytes([0, 0, 8, 2]) + (2**31).to_bytes(4, "big") * 2 + b"\0" * 4)
    with pytest.raises(DataError, match="limit"):
        datasets.load_idx(str(huge))
    # Declares more than the raw file holds.
    short = tmp_path / "short.idx"
    short.write_bytes(bytes([0, 0, 8, 1]) + (1000).to_bytes(4, "big") + b"\0" * 10)
    with pytest.raises(DataError, match="1000 bytes of data, the file has 10"):
        datasets.load_idx(str(short))
    # Gzipped and truncated.
    gz = tmp_path / "short.idx.gz"
    with gzip.open(gz, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (10**8).to_bytes(4, "big") + b"\0" * 10)
    with pytest.raises(DataError, match="truncated"):
        datasets.load_idx(str(gz))
    with pytest.raises(FileNotFoundError):
        datasets.load_idx(str(tmp_path / "missing.idx"))


def test_mnist_directory(mnist_dir):
    s = datasets.load_mnist(str(mnist_dir))
    assert s.X.shape == (120, 16) and s.X_test.shape == (40, 16)
    assert set(s.y) | set(s.y_test) == {0, 1, 2}
    assert s.X.dtype == np.uint8 and s.y.dtype == np.int64
    os.remove(mnist_dir / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match="t10k-labels"):
        datasets.load_mnist(str(mnist_dir))


def test_cifar10_binary(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1.bin", 5), ("data_batch_2.bin", 3), ("test_batch.bin", 4)):
        rec = np.zeros((n, 3073), np.uint8)
        rec[:, 0] = rng.integers(0, 10, n)
        rec[:, 1:] = rng.integers(0, 256, (n, 3072))
        rec.tofile(tmp_path / name)
    s = datasets.load_cifar10(str(tmp_path))
    assert s.X.shape == (8, 3072) and s.X_test.shape == (4, 3072)
    with open(tmp_path / "data_batch_2.bin", "ab") as f:
        f.write(b"\0" * 7)
    with pytest.raises(DataError, match="whole number of CIFAR-10 records"):
        datasets.load_cifar10(str(tmp_path))


def test_npz(tmp_path):
    X, y = blobs(20, 3, 2)
    np.savez(tmp_path / "d.npz", X=X, y=y, X_test=X[:5], y_test=y[:5])
    s = datasets.load_npz(str(tmp_path / "d.npz"))
    assert s.X.shape == (20, 3) and s.X_test.shape == (5, 3)
    np.savez(tmp_path / "obj.npz", X=np.array([object()] * 3), y=np.arange(3))
    with pytest.raises(DataError, match="Python objects") as err:
        datasets.load_npz(str(tmp_path / "obj.npz"))
    assert "allow_pickle" not in str(err.value)  # never suggest the unsafe way
    np.savez(tmp_path / "noy.npz", X=X)  # features only: fine for predict
    assert datasets.load_npz(str(tmp_path / "noy.npz")).y is None
    np.savez(tmp_path / "nox.npz", y=y)
    with pytest.raises(DataError, match="no array X or X_test"):
        datasets.load_npz(str(tmp_path / "nox.npz"))
    np.savez(tmp_path / "short.npz", X=X, y=y[:-1])
    with pytest.raises(DataError, match="y has 19 rows for the 20 rows of X"):
        datasets.load_npz(str(tmp_path / "short.npz"))
    np.savez(tmp_path / "testonly.npz", X_test=X, y_test=y)
    s = datasets.load_npz(str(tmp_path / "testonly.npz"))
    assert s.X is None and s.X_test.shape == (20, 3)
    # Targets come as they are in the file: fractional values, names.
    np.savez(tmp_path / "floaty.npz", X=X, y=y + 0.5)
    np.testing.assert_array_equal(datasets.load_npz(str(tmp_path / "floaty.npz")).y, y + 0.5)
    names = np.array(["cat", "dog"])[y]
    np.savez(tmp_path / "names.npz", X=X, y=names)
    np.testing.assert_array_equal(datasets.load_npz(str(tmp_path / "names.npz")).y, names)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable"):
        datasets.load_npz(str(tmp_path / "junk.npz"))


def test_csv_numeric_and_named_labels_and_errors(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,species\n1,2,setosa\n3,4,virginica\n5,6,setosa\n")
    s = datasets.load_csv(str(p), "species")
    np.testing.assert_array_equal(s.y, ["setosa", "virginica", "setosa"])
    assert s.feature_names == ["a", "b"] and s.table.shape == (3, 2) and s.X is None
    p.write_text("label,x\n1,0.5\n0,1.5\n")
    y = datasets.load_csv(str(p), "label").y
    np.testing.assert_array_equal(y, [1, 0])
    assert y.dtype == np.int64
    p.write_text("label,x\n-1,0.5\n+1,1.5\n")  # signed integers are numbers, not names
    np.testing.assert_array_equal(datasets.load_csv(str(p), "label").y, [-1, 1])
    p.write_text("t,x\n1.5,0.5\n2,1.5\n")
    assert datasets.load_csv(str(p), "t").y.dtype == np.float64
    p.write_text("a,x,b\n1.5,0.5,3\n2,1.5,4\n")  # two targets: (N, 2)
    s = datasets.load_csv(str(p), "a,b")
    np.testing.assert_array_equal(s.y, [[1.5, 3], [2, 4]])
    assert s.target_names == ["a", "b"] and s.table.column_names == ["x"]
    p.write_text("label,x\n1,0.5\n,1.5\n")
    with pytest.raises(DataError, match=r"line 3, column 'label': the target is empty"):
        datasets.load_csv(str(p), "label")
    p.write_text("x,label,z\n1,a,2\n3,b,4\n")  # a trained model's columns, by name
    s = datasets.load_csv(str(p), None, features=["z", "x"])
    assert s.table.column_names == ["z", "x"] and s.table.column("z").to_pylist() == [2, 4]
    assert s.y is None
    with pytest.raises(DataError, match="no column 'w', which the model takes"):
        datasets.load_csv(str(p), None, features=["w"])
    # text and blank cells are read (the table encoder gives them roles), NaN is a blank
    p.write_text("label,x,c\n1,nan,a\n0,,\n")
    t = datasets.load_csv(str(p), "label").table
    assert t.column("x").null_count == 2 and t.column("c").null_count == 1
    with pytest.raises(DataError, match="no column 'y'"):
        datasets.load_csv(str(p), "y")
    p.write_text("a,b\n1,2\n3,4,5\n")  # pyarrow's own words, with the file's name
    with pytest.raises(DataError, match=r"d\.csv: cannot read it as CSV .*Expected 2 columns"):
        datasets.load_csv(str(p), "a")
    p.write_text("")
    with pytest.raises(DataError, match="empty file"):
        datasets.load_csv(str(p), "a")
    p.write_text("a,b\n")
    with pytest.raises(DataError, match="no data rows"):
        datasets.load_csv(str(p), "a")


def test_specs():
    assert datasets.load_spec("digits").X.shape == (1797, 64)
    for bad in ("digits:x", "mnist", "csv:file.csv", "parquet:x"):
        with pytest.raises(DataError):
            datasets.load_spec(bad)


def test_mnist_labels_out_of_range_refused(mnist_dir):
    labels = datasets.load_idx(str(mnist_dir / "t10k-labels-idx1-ubyte")).copy()
    labels[7] = 12
    write_idx(mnist_dir / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match="t10k label 7 is 12; mnist has the 10 classes 0..9"):
        datasets.load_mnist(str(mnist_dir))


def test_npy_spec_is_memory_mapped(tmp_path):
    X, y = blobs(30, 4, 3)
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    s = datasets.load_spec(f"npy:{tmp_path / 'X.npy'},{tmp_path / 'y.npy'}")
    assert isinstance(s.X, np.memmap) and s.X.shape == (30, 4)
    np.testing.assert_array_equal(s.y, y)
    np.save(tmp_path / "obj.npy", np.array([object()] * 3))
    with pytest.raises(DataError, match="without pickle"):
        datasets.load_spec(f"npy:{tmp_path / 'obj.npy'},{tmp_path / 'y.npy'}")
    with pytest.raises(DataError, match="y has 30 rows for the 20 rows of X"):
        np.save(tmp_path / "X20.npy", X[:20])
        datasets.load_spec(f"npy:{tmp_path / 'X20.npy'},{tmp_path / 'y.npy'}")


# ------------------------------------------------- issue 28: hostile files (regressions)
def _npy_claiming(shape, dtype="<f8", payload=b"\0" * 16) -> bytes:
    """A .npy blob whose header claims ``shape`` while holding ``payload``."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def test_npz_claiming_a_huge_shape_is_refused_before_allocating(tmp_path, capsys):
    """The issue's first traceback: X.npy claims (99999999, 99999) and holds 16 bytes
    (np.load tried to allocate 72.8 TiB); a claim that would fit in memory (1.6 GB) is
    refused just the same, allocating nothing large."""
    import tracemalloc
    import zipfile

    from fastnn.cli import main
    from fastnn.safeload import FileFormatError

    for shape in [(99999999, 99999), (20000, 10000)]:
        path = tmp_path / f"hostile{shape[1]}.npz"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("X.npy", _npy_claiming(shape))
            z.writestr("y.npy", _npy_claiming((2,), "<i8"))
        tracemalloc.start()
        with pytest.raises(FileFormatError, match=r"member 'X.npy': truncated") as info:
            datasets.load_spec(f"npz:{path}")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 1 << 20, peak
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)
    assert main(["train", "--data", f"npz:{path}", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.splitlines()[0]  # (a byte-compiling notice may follow)
    assert err.startswith("fastnn train: error:") and "truncated" in err


def test_npy_and_npz_members_checked_against_the_bytes_held(tmp_path):
    from fastnn.safeload import FileFormatError, read_npy, read_npz

    bad = tmp_path / "bad.npy"
    bad.write_bytes(_npy_claiming((99999999, 99999)))
    for mmap in (False, True):
        with pytest.raises(FileFormatError, match="truncated"):
            read_npy(bad, mmap=mmap)
    good = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "good.npy", good)
    junk = tmp_path / "junk.npy"
    junk.write_bytes((tmp_path / "good.npy").read_bytes() + b"junk")
    with pytest.raises(FileFormatError, match="4 trailing bytes"):
        read_npy(junk)
    np.testing.assert_array_equal(read_npy(tmp_path / "good.npy"), good)
    np.savez_compressed(tmp_path / "c.npz", a=good, f=np.asfortranarray(good), s=np.array("x"))
    arrays = read_npz(tmp_path / "c.npz")
    np.testing.assert_array_equal(arrays["f"], good)
    assert arrays["s"] == "x" and arrays["a"].flags.writeable
    huge_header = tmp_path / "header.npy"
    huge_header.write_bytes(b"\x93NUMPY\x02\x00" + (10**12 % 2**32).to_bytes(4, "little"))
    with pytest.raises(FileFormatError, match="over the limit"):
        read_npy(huge_header)


def test_missing_files_are_called_missing(tmp_path, capsys):
    """Issue 29: `fastnn predict MODEL new.npz` answered "unknown data spec 'new.npz'"."""
    from fastnn.cli import main
    from fastnn.recipes import load_features

    missing = str(tmp_path / "new.npz")
    for call in (lambda: load_features(missing), lambda: datasets.load_spec(missing),
                 lambda: datasets.load_spec(f"npz:{missing}"),
                 lambda: datasets.load_spec(f"csv:{missing}:y"),
                 lambda: datasets.load_spec(f"npy:{missing}")):
        with pytest.raises(FileNotFoundError, match="no such file"):
            call()
    assert main(["train", "--data", missing]) == 2
    assert "no such file" in capsys.readouterr().err


def test_csv_bytes_that_are_not_utf8_are_named_by_line_and_byte(tmp_path):
    """The issue's UnicodeDecodeError traceback; a byte-order mark is fine."""
    from fastnn.safeload import FileFormatError

    path = tmp_path / "latin1.csv"
    path.write_bytes(b"a,b,target\n1,2,x\n3,4,caf\xe9\n")
    with pytest.raises(FileFormatError, match=r"line 3, byte offset 24: b'\\xe9' is not UTF-8"):
        datasets.load_spec(f"csv:{path}:target")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfa,target\n1,x\n2,y\n")
    s = datasets.load_spec(f"csv:{bom}:target")
    assert s.feature_names == ["a"] and list(s.y) == ["x", "y"]
    # A character cut by a chunk boundary is not an error; a bad byte after it is found.
    text = ("é" * 5 + "\n").encode() * 3 + b"\xff"
    (tmp_path / "t.csv").write_bytes(text)
    assert datasets.first_bad_utf8(str(tmp_path / "t.csv"), chunk=7) == (4, len(text) - 1,
                                                                         b"\xff")


def test_csv_field_of_50_mb(tmp_path):
    """The issue's `field larger than field limit (131072)` traceback: a field may be as long
    as the file (pyarrow's blocks grow to the longest row); a column with a huge text cell is
    a text column like any other."""
    big = tmp_path / "big.csv"
    with open(big, "w") as f:
        f.write("a,b,target\n1,2,x\n3," + "z" * 50_000_000 + ",y\n")
    s = datasets.load_spec(f"csv:{big}:target")
    assert s.table.num_rows == 2 and list(s.y) == ["x", "y"]
    assert len(s.table.column("b")[1].as_py()) == 50_000_000
    long_number = tmp_path / "long.csv"
    long_number.write_text("a,target\n0." + "0" * 200_000 + "1,x\n2,y\n")
    s = datasets.load_spec(f"csv:{long_number}:target")
    assert s.table.num_rows == 2 and s.table.column("a")[1].as_py() == 2.0


def test_csv_types_from_a_sample_give_the_inferred_table(tmp_path, monkeypatch):
    """A large CSV is read with the types of its first rows; the table is the one pyarrow's
    own inference gives, also where a later row needs a wider type (then the file is read
    again with inference)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv as pcsv

    monkeypatch.setattr(datasets, "CSV_SAMPLE_BYTES", 200)
    used = []
    sample_types = datasets._sample_types
    monkeypatch.setattr(datasets, "_sample_types",
                        lambda *a: used.append(sample_types(*a)) or used[-1])
    head = "n,real,later_blank,word,day\n"
    rows = [f"{i},{i / 4},,w{i % 7},2020-01-{1 + i % 28:02d}" for i in range(200)]
    cases = {
        "same": rows,
        "int then real": rows[:150] + ["1.5,0.5,,w,2020-02-01"] + rows[150:],
        "int then text": rows + ["x,0.5,,w,2020-02-01"],
        "blank then numbers": rows[:100] + [r[:-len(",w0,2020-01-01")] + "7,w,2020-01-01"
                                            for r in rows[100:]],
        "date then timestamp": rows + ["1,0.5,,w,2020-02-01 10:00:00"],
    }
    for name, body in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.csv"
        path.write_text(head + "\n".join(body) + "\n")
        got = datasets.read_table(str(path))
        want = pcsv.read_csv(str(path), convert_options=pcsv.ConvertOptions(
            strings_can_be_null=True))
        # the sample-typed read takes text dictionary-encoded: the same text, decoded
        got = pa.table({c: got.column(c).cast(got.column(c).type.value_type)
                        if pa.types.is_dictionary(got.column(c).type) else got.column(c)
                        for c in got.column_names})
        assert got.schema == want.schema, name
        assert got.equals(want), name
    assert len(used) == len(cases) and all(used), used
    assert used[0]["n"] == pa.int64() and "later_blank" not in used[0]


def test_csv_dates_with_slashes_and_blank_targets(tmp_path):
    pa = pytest.importorskip("pyarrow")
    p = tmp_path / "w.csv"
    p.write_text("day,when,x,y\n2012/01/31,2012/01/31 13:05,1.5,a\n2012/02/29,,2.5,\n"
                 "2013/12/01,2013/12/01 00:00,,b\n")
    s = datasets.load_table(str(p), "y", blank_target="drop")
    assert s.table.schema.field("day").type == pa.timestamp("s")
    assert s.table.schema.field("when").type == pa.timestamp("s")
    assert [d.isoformat() for d in s.table.column("day").to_pylist()] == [
        "2012-01-31T00:00:00", "2013-12-01T00:00:00"]
    assert s.table.column("when").to_pylist()[0].isoformat() == "2012-01-31T13:05:00"
    assert s.y.tolist() == ["a", "b"] and (s.left_out, s.first_left_out) == (1, "line 3")
    with pytest.raises(DataError, match=r"line 3, column 'y': the target is empty"):
        datasets.load_table(str(p), "y")  # the default: an error naming the line
    with pytest.raises(ValueError, match="blank_target must be"):
        datasets.load_table(str(p), "y", blank_target="skip")
    # day-first or month-first dates stay text (which one is meant cannot be told)
    p.write_text("d,y\n01/02/2012,1\n03/04/2012,2\n")
    assert datasets.load_table(str(p), "y").table.schema.field("d").type == pa.string()
