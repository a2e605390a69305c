"""kernels/blas.py (GEMM on fastnn's thread pool) against tests/naive.py."""

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import naive
from fastnn.kernels import blas

# (M, N, K): rows split (M >= N), columns split with N not a multiple of 16, a single row,
# K = 1, and sizes on both sides of PARALLEL_MIN_WORK and PARALLEL_MIN_WORK_ROWS.
SHAPES = [(7, 5, 13), (1, 3, 5), (257, 33, 129), (40, 700, 30), (300, 41, 1), (64, 200, 70),
          (200, 5, 101), (200, 256, 5)]


def _numpy_blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["internal_api"] == "openblas"]


def _operands(shape, trans_a, trans_b, dtype, seed=0):
    M, N, K = shape
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
    C = rng.standard_normal((M, N)).astype(dtype)
    return A, B, C


def test_numpy_openblas_is_found_here():
    """On this project's machines NumPy ships OpenBLAS: the pool path, not the fallback, is
    what the other tests exercise."""
    if not any("numpy" in lib["filepath"] for lib in threadpool_info()
               if lib["internal_api"] == "openblas"):
        pytest.skip("NumPy is not built on OpenBLAS here")
    assert blas.AVAILABLE


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
def test_gemm_matches_naive(shape, trans_a, trans_b, beta, dtype, tol):
    A, B, C = _operands(shape, trans_a, trans_b, dtype)
    expected = naive.gemm(A, B, C, trans_a, trans_b, beta)
    if beta == 0.0:
        C[...] = np.nan  # beta = 0 must ignore C's contents, NaN included
    blas.gemm(A, B, C, trans_a=trans_a, trans_b=trans_b, beta=beta)
    np.testing.assert_allclose(C, expected, **tol)


@pytest.mark.parametrize("parts", [1, 2, 3, 5])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("shape", [(257, 33, 129), (40, 700, 30), (5, 40, 3)])
def test_block_split_matches_naive_and_runs_alike_serially(parts, trans_a, shape, dtype, tol):
    """Any number of blocks (more than rows or column blocks too) gives the product; the
    same blocks computed by one thread or by the pool give the same bits."""
    A, B, _ = _operands(shape, trans_a, False, dtype)
    pooled = np.full(shape[:2], np.nan, dtype)
    blas.gemm_blocks.parallel(A, trans_a, B, False, pooled, 0.0, parts)
    np.testing.assert_allclose(pooled, naive.gemm(A, B, None, trans_a), **tol)
    serial = np.full(shape[:2], np.nan, dtype)
    blas.gemm_blocks.serial(A, trans_a, B, False, serial, 0.0, parts)
    np.testing.assert_array_equal(pooled, serial)


def test_gemm_same_bits_on_one_and_two_threads(dtype):
    """The blocks depend on the shape and the pool's size, not on set_num_threads."""
    A, B, _ = _operands((257, 700, 129), True, False, dtype)
    A = np.ascontiguousarray(A)
    out = []
    before = numba.get_num_threads()
    try:
        for n in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(n)
            C = np.empty((257, 700), dtype)
            blas.gemm(A, B, C, trans_a=True)
            out.append(C)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(out[0], out[1])


def test_empty_dimensions():
    A, B = np.ones((3, 0), np.float32), np.ones((0, 4), np.float32)
    C = np.full((3, 4), np.nan, np.float32)
    blas.gemm(A, B, C)  # K = 0: C = 0 @ 0 = zeros
    np.testing.assert_array_equal(C, 0.0)
    C2 = np.full((3, 4), 2.0, np.float32)
    blas.gemm(A, B, C2, beta=0.5)
    np.testing.assert_array_equal(C2, 1.0)
    blas.gemm(np.ones((0, 5), np.float32), np.ones((5, 4), np.float32),
              np.empty((0, 4), np.float32))


def test_blas_thread_count_restored():
    before = _numpy_blas_threads()
    A, B, _ = _operands((300, 300, 300), False, False, np.float32)
    blas.gemm(A, B, np.empty((300, 300), np.float32))
    assert _numpy_blas_threads() == before


def test_strided_operands_fall_back_to_matmul(dtype, tol):
    A, B, C = _operands((20, 30, 40), False, False, dtype)
    A2 = np.asfortranarray(A)
    B2 = np.repeat(B, 2, axis=1)[:, ::2]  # a strided view
    blas.gemm(A2, B2, C)
    np.testing.assert_allclose(C, naive.gemm(A, B, C), **tol)


def test_bad_shapes_and_dtypes_are_refused():
    A, B = np.ones((3, 4), np.float32), np.ones((5, 6), np.float32)
    with pytest.raises(ValueError, match="do not chain"):
        blas.gemm(A, B, np.empty((3, 6), np.float32))
    with pytest.raises(ValueError, match="do not chain"):
        blas.gemm(A, np.ones((4, 6), np.float32), np.empty((3, 7), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        blas.gemm(A, np.ones((4, 6), np.float64), np.empty((3, 6), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        blas.gemm(A.astype(np.int32), np.ones((4, 6), np.int32), np.empty((3, 6), np.int32))


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("shape", [(32, 128, 784), (5, 3, 40), (7, 300, 2)])
def test_split_k_matches_naive_and_runs_alike_serially(parts, shape, dtype, tol):
    """C = A @ B from ``parts`` partial products over K (K = 2 < parts: empty blocks too),
    added in block order: the pool and one thread give the same bits."""
    M, N, K = shape
    A, B, _ = _operands(shape, False, False, dtype)
    out = []
    for variant in (blas.gemm_split_k.parallel, blas.gemm_split_k.serial):
        C = np.full((M, N), np.nan, dtype)
        partial = np.full((parts - 1, M, N), np.nan, dtype)
        variant(A, B, C, partial, parts)
        np.testing.assert_allclose(C, naive.gemm(A, B, None), **tol)
        out.append(C)
    np.testing.assert_array_equal(out[0], out[1])


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_without_numpys_openblas_products_go_to_matmul(beta, dtype, tol, monkeypatch):
    """Where NumPy's BLAS cannot be called from the pool (AVAILABLE False), gemm computes the
    same product with np.matmul, and dense layers do not split products over D."""
    from fastnn.kernels import dense

    monkeypatch.setattr(blas, "AVAILABLE", False)
    A, B, C = _operands((40, 70, 30), True, False, dtype)
    expected = naive.gemm(A, B, C, True, False, beta)
    blas.gemm(A, B, C, trans_a=True, beta=beta)
    np.testing.assert_allclose(C, expected, **tol)
    assert dense.split_k_partial_shape(32, 784, 128) is None


def test_row_blocks_go_parallel_earlier_than_column_blocks():
    if not blas.AVAILABLE:
        pytest.skip("no CBLAS from the pool here")
    rows, cols = blas.gemm_kernel(200, 5, 256), blas.gemm_kernel(200, 256, 5)  # 256,000 each
    assert rows == (blas.gemm_blocks.parallel, blas.BLOCKS)
    assert cols == (blas.gemm_blocks.serial, 1)
    assert blas.gemm_kernel(128, 10, 64)[0] is blas.gemm_blocks.serial  # 81,920: too small
