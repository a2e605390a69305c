"""kernels/rows.py: gathering, casting and standardizing batches against tests/naive.py."""

import numba
import numpy as np
import pytest

import naive
from fastnn.kernels import rows


@pytest.mark.parametrize("src", [np.float32, np.float64, np.uint8, np.int64, np.bool_])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gather", [True, False])
@pytest.mark.parametrize("standardize", [True, False])
def test_gather_standardize_matches_numpy(src, dtype, gather, standardize):
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((300, 7)) * 50).astype(src)
    idx = rng.permutation(300)[:70] if gather else None
    shift = rng.standard_normal(7).astype(dtype) if standardize else None
    scale = rng.uniform(0.5, 3, 7).astype(dtype) if standardize else None
    out = np.empty((70 if gather else 300, 7), dtype)
    empty = np.empty(0, dtype)
    for variant in (rows.gather_standardize.serial, rows.gather_standardize.parallel):
        out[...] = np.nan
        variant(X, idx if gather else np.empty(0, np.int64),
                shift if standardize else empty, scale if standardize else empty, out)
        want = naive.gather_standardize(X, idx, shift, scale, dtype)
        # The division may be done as a multiplication by the reciprocal (the kernels'
        # fast-math policy allows it): at most one unit in the last place apart.
        np.testing.assert_array_max_ulp(out, want, maxulp=1)
        if not standardize:
            np.testing.assert_array_equal(out, want)


def test_serial_and_parallel_give_the_same_bits():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5000, 33))
    idx = rng.permutation(5000)[:4000]
    shift, scale = rng.standard_normal(33), rng.uniform(0.5, 2, 33)
    a, b = np.empty((4000, 33)), np.empty((4000, 33))
    rows.gather_standardize.serial(X, idx, shift, scale, a)
    numba.set_num_threads(1)
    try:
        rows.gather_standardize.parallel(X, idx, shift, scale, b)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_, np.float32,
                                   np.float64])
def test_gather_values_matches_naive(dtype):
    rng = np.random.default_rng(3)
    values = (rng.standard_normal(300) * 100).astype(dtype)
    idx = rng.permutation(300)[:77]
    out = np.zeros(77, dtype)
    rows.gather_values(values, idx, out)
    np.testing.assert_array_equal(out, naive.gather_values(values, idx))


@pytest.mark.parametrize("n_rows", [1, 255, 256, 1000])
def test_encode_block_matches_naive(n_rows):
    """Blanks filled, values clipped (inf bounds: none), indicators written, a source that
    writes only its indicator (dest -1), counts per chunk of rows; both variants."""
    rng = np.random.default_rng(4)
    n_src, width = 6, 9
    src = rng.standard_normal((n_src, n_rows)) * 3
    src[rng.random(src.shape) < 0.2] = np.nan
    src[5] = rng.integers(0, 7, n_rows)  # codes: no blanks, no bounds
    dest = np.array([0, 1, 2, -1, 3, 8], np.int64)
    mark = np.array([4, -1, 5, 6, 7, -1], np.int64)
    fill = np.array([0.5, -1.0, 2.0, 0.0, 0.25, 0.0])
    low = np.array([-2.0, -np.inf, -1.0, -np.inf, -4.0, -np.inf])
    high = np.array([2.0, np.inf, 1.5, np.inf, 0.0, np.inf])
    want, blanks, clipped = naive.encode_block(src, dest, fill, low, high, mark, width)
    chunks = -(-n_rows // rows.ENCODE_CHUNK_ROWS)
    for variant in (rows.encode_block.serial, rows.encode_block.parallel):
        out = np.full((n_rows, width), np.nan)
        counts = np.zeros((chunks, n_src, 2), np.int64)
        variant(src, dest, fill, low, high, mark, out, counts)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(counts.sum(axis=0), np.stack([blanks, clipped], 1))
