"""kernels/sparse.py: rows of a CSR matrix densified into a batch buffer, against
tests/naive.py and SciPy's toarray."""

import numba
import numpy as np
import pytest

import naive
from fastnn.kernels import sparse

scipy_sparse = pytest.importorskip("scipy.sparse")


def _random_csr(n, d, density, dtype, index_dtype, seed):
    X = scipy_sparse.random(n, d, density=density, format="csr", dtype=np.float64,
                            random_state=seed)
    X.data = (X.data * 100 - 50).astype(dtype)
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    return X


# Each (data, out, index) dtype combination compiles the kernel twice (serial and parallel):
# the combinations scikit-learn's validation and fastnn.sklearn hand it, not their product.
@pytest.mark.parametrize("src, dtype, index_dtype", [
    (np.float32, np.float32, np.int32),  # a float32 fit
    (np.float64, np.float64, np.int32),  # a float64 fit
    (np.float64, np.float64, np.int64),  # more than 2**31 stored values
    (np.int64, np.float32, np.int32),  # a cast inside the kernel
])
@pytest.mark.parametrize("gather", [True, False])
def test_csr_rows_to_dense_matches_naive_and_scipy(src, dtype, index_dtype, gather):
    X = _random_csr(120, 37, 0.1, src, index_dtype, seed=0)
    rng = np.random.default_rng(1)
    rows = rng.permutation(120)[:50] if gather else np.arange(30, 80)
    out = np.full((50, 37), np.nan, dtype)  # every element must be written
    idx = rows.astype(np.int64) if gather else np.empty(0, np.int64)
    for variant in (sparse.csr_rows_to_dense.serial, sparse.csr_rows_to_dense.parallel):
        out[...] = np.nan
        variant(X.data, X.indices, X.indptr, idx, 0 if gather else 30, out)
        np.testing.assert_array_equal(
            out, naive.csr_rows_to_dense(X.data, X.indices, X.indptr, rows, X.shape, dtype))
        np.testing.assert_array_equal(out, X[rows].toarray().astype(dtype))


def test_empty_rows_and_unsorted_columns():
    # Rows without stored values come out as zeros; the column order within a row (SciPy
    # leaves it unsorted after some operations) does not matter.
    data = np.array([1.5, -2.0, 3.0])
    indices = np.array([4, 0, 2], np.int32)  # row 1: columns 4, 0 (unsorted)
    indptr = np.array([0, 0, 2, 2, 3], np.int32)  # rows 0 and 2 empty
    out = np.full((4, 5), np.nan)
    sparse.csr_rows_to_dense.serial(data, indices, indptr, np.empty(0, np.int64), 0, out)
    want = np.zeros((4, 5))
    want[1, 4], want[1, 0], want[3, 2] = 1.5, -2.0, 3.0
    np.testing.assert_array_equal(out, want)


def test_serial_and_parallel_give_the_same_bits():
    X = _random_csr(3000, 64, 0.05, np.float64, np.int32, seed=2)
    idx = np.random.default_rng(3).permutation(3000)[:2000].astype(np.int64)
    X.data = X.data.astype(np.float32)
    a, b = np.empty((2000, 64), np.float32), np.empty((2000, 64), np.float32)
    sparse.csr_rows_to_dense.serial(X.data, X.indices, X.indptr, idx, 0, a)
    numba.set_num_threads(1)
    try:
        sparse.csr_rows_to_dense.parallel(X.data, X.indices, X.indptr, idx, 0, b)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(a, b)
