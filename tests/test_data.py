"""fastnn/data.py: datasets, batching into reused buffers, splits, standardization."""

import numpy as np
import pytest

from fastnn.data import ArrayDataset, DataError, DataLoader, Standardizer, train_val_split


def test_dataset_checks_once():
    X = np.ones((5, 3))
    X[3, 1] = np.nan
    with pytest.raises(DataError, match="row 3"):
        ArrayDataset(X, np.zeros(5, int))
    with pytest.raises(DataError, match="4 labels for 5 samples"):
        ArrayDataset(np.ones((5, 3)), np.zeros(4, int))
    with pytest.raises(DataError, match="negative"):
        ArrayDataset(np.ones((2, 3)), np.array([0, -1]))
    with pytest.raises(DataError, match="numeric"):
        ArrayDataset(np.array([["a"]]), np.array([0]))
    assert ArrayDataset(np.ones((2, 2, 2), np.uint8), [0, 1]).X.shape == (2, 4)


def test_loader_batches_cover_the_data_shuffled_from_a_seed():
    X = np.arange(50, dtype=np.float64).reshape(25, 2)
    y = np.arange(25)
    loader = DataLoader((X, y), batch_size=8, shuffle=True, seed=3, dtype=np.float32)
    assert len(loader) == 4
    seen = []
    for xb, yb in loader:
        assert xb.dtype == np.float32 and xb.flags.c_contiguous
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)
        seen += list(yb)
    assert sorted(seen) == list(range(25)) and seen != list(range(25))
    again = [list(yb) for _, yb in DataLoader((X, y), batch_size=8, shuffle=True, seed=3)]
    assert sum(again, []) == seen
    assert len(DataLoader((X, y), batch_size=8, drop_last=True)) == 3
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader((X, y), batch_size=0)


def test_loader_reuses_buffers_but_never_overwrites_a_kept_batch():
    X = np.random.default_rng(0).standard_normal((64, 3))
    loader = DataLoader((X, np.zeros(64, int)), batch_size=16, shuffle=True, seed=0)
    ids = set()
    for xb, _ in loader:
        ids.add(id(xb))
    assert len(ids) <= 3  # reused, not one per batch
    kept = [xb for xb, _ in loader]  # keeping every batch: each must survive
    assert len({id(k) for k in kept}) == 4
    np.testing.assert_allclose(np.sort(np.concatenate(kept)[:, 0]), np.sort(X[:, 0]))


def test_loader_state_resumes_the_shuffle():
    X, y = np.zeros((10, 1)), np.arange(10)
    a = DataLoader((X, y), batch_size=10, shuffle=True, seed=1)
    next(iter(a))
    state = a.state_dict()
    expected = next(iter(a))[1].copy()
    b = DataLoader((X, y), batch_size=10, shuffle=True, seed=99)
    b.load_state_dict(state)
    np.testing.assert_array_equal(next(iter(b))[1], expected)


def test_split_and_standardizer_fitted_on_train_only():
    X = np.random.default_rng(0).standard_normal((100, 3)) * [1, 5, 0] + [0, 10, 7]
    y = np.arange(100)
    Xtr, ytr, Xva, yva = train_val_split(X, y, 0.2, seed=0)
    assert len(Xva) == 20 and len(set(ytr) | set(yva)) == 100
    s = Standardizer().fit(Xtr)
    Z = s.transform(Xtr)
    np.testing.assert_allclose(Z[:, :2].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(Z[:, :2].std(0), 1, rtol=1e-5)
    assert np.isfinite(s.transform(Xva)).all()  # the constant column does not blow up
    with pytest.raises(DataError, match="3 features"):
        s.transform(np.ones((2, 4)))
    with pytest.raises(ValueError):
        train_val_split(X, y, 1.0)


def test_standardizer_statistics_of_rows_match_float64_formulas():
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((5000, 4)) * [1, 1e-3, 50, 2] + [1e4, -3, 0, 7]).astype(np.float32)
    rows = rng.permutation(5000)[:3000]
    s = Standardizer(min_scale=0).fit(X, rows=rows)
    ref = X[rows].astype(np.float64)
    # float32 data: the mean to float32 precision of the values (relative to |mean| + std)
    scale = np.abs(ref.mean(axis=0)) + ref.std(axis=0)
    assert (np.abs(s.mean - ref.mean(axis=0)) <= 1e-7 * scale).all()
    np.testing.assert_allclose(s.std, ref.std(axis=0), rtol=1e-5)
    # Blocks: the same statistics when a pass takes many blocks.
    from fastnn import data

    old = data.BLOCK_BYTES
    data.BLOCK_BYTES = 64
    try:
        s2 = Standardizer(min_scale=0).fit(X, rows=rows)
    finally:
        data.BLOCK_BYTES = old
    assert (np.abs(s2.mean - ref.mean(axis=0)) <= 1e-7 * scale).all()
    np.testing.assert_allclose(s2.std, ref.std(axis=0), rtol=1e-5)
    # uint8 images: no float copy of the data, same numbers
    U = rng.integers(0, 256, (300, 5)).astype(np.uint8)
    np.testing.assert_allclose(Standardizer(min_scale=0).fit(U).std, U.std(axis=0), rtol=1e-12)


@pytest.mark.parametrize("src", ["float32", "float64", "int64", "strided", "float16"])
@pytest.mark.parametrize("dst", ["float32", "float64"])
def test_take_rows_is_numpy_take_cast(src, dst):
    from fastnn._buffers import BufferPool
    from fastnn.data import row_taker, take_rows

    rng = np.random.default_rng(0)
    base = rng.standard_normal((400, 200)) * 10
    X = {"float32": base.astype(np.float32), "float64": base, "int64": base.astype(np.int64),
         "strided": base[:, ::2], "float16": base.astype(np.float16)}[src]
    for n in (1, 7, 200):  # serial and parallel kernel variants (200 x 100: 20K elements)
        idx = rng.permutation(400)[:n]
        out = np.empty((n, X.shape[1]), dst)
        assert take_rows(X, idx, out) is out
        np.testing.assert_array_equal(out, X[idx].astype(dst))
        again = np.empty_like(out)
        take_rows(X, idx, again, BufferPool())  # the NumPy cast through a pooled scratch
        np.testing.assert_array_equal(again, out)
        take = row_taker(X, np.empty_like(out))  # the choice made once, then batch after
        for idx_kind in (np.int64, np.int32):  # batch (another index dtype: take_rows)
            for _ in range(2):
                idx = rng.permutation(400)[:n].astype(idx_kind)
                np.testing.assert_array_equal(take(idx), X[idx].astype(dst))


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool", "float32", "float64",
                                   "float16", ">i8"])
def test_take_rows_of_labels_is_numpy_take(dtype):
    """1-D labels and targets: the kernel loop where Numba reads the dtype, np.take else."""
    from fastnn.data import row_taker, take_rows

    rng = np.random.default_rng(1)
    y = (rng.standard_normal(500) * 40).astype(dtype)
    for n in (1, 13, 200):
        idx = rng.permutation(500)[:n]
        out = np.full(n, 7, dtype=y.dtype)
        assert take_rows(y, idx, out) is out
        np.testing.assert_array_equal(out, np.take(y, idx))
        assert out.dtype == y.dtype
        take = row_taker(y, np.empty(n, y.dtype))
        for _ in range(2):
            idx = rng.permutation(500)[:n]
            np.testing.assert_array_equal(take(idx), np.take(y, idx))
