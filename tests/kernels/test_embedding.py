"""kernels/embedding.py against tests/naive.py."""

import numpy as np
import pytest

import naive
from fastnn.kernels import embedding as E


@pytest.mark.parametrize("v, n, d", [(10, 7, 3), (600, 1000, 5), (1, 4, 2)])
def test_lookup_and_scatter_match_the_naive_twin(v, n, d, dtype, tol):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((v, d)).astype(dtype)
    idx = rng.integers(0, v, n)
    idx[:3] = idx[0]  # repeated indices add up
    out = np.empty((n, d), dtype)
    assert E.embedding_forward(n * d)(weight, idx, out) == -1
    np.testing.assert_array_equal(out, naive.embedding_forward(weight, idx))
    dout = rng.standard_normal((n, d)).astype(dtype)
    for padding in (-1, int(idx[0])):
        dw = np.full((v, d), np.nan, dtype)  # overwritten, not added into
        E.embedding_backward(n * d)(idx, dout, padding, dw, False, *_scratch(v, n))
        np.testing.assert_allclose(dw, naive.embedding_backward(idx, dout, v, padding), **tol)
    # accumulate onto the last result
    E.embedding_backward(n * d)(idx, dout, -1, dw, True, *_scratch(v, n))
    expect = naive.embedding_backward(idx, dout, v, int(idx[0])) + \
        naive.embedding_backward(idx, dout, v)
    np.testing.assert_allclose(dw, expect, **tol)


def test_out_of_range_indices_are_reported_by_position():
    weight = np.zeros((5, 2))
    idx = np.zeros(600, np.int64)
    idx[400], idx[500] = 5, -1
    out = np.empty((600, 2))
    for k in (E.embedding_forward.serial, E.embedding_forward.parallel):
        assert k(weight, idx, out) == 400


def test_scatter_is_bit_identical_serial_and_parallel():
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 1000, 5000)
    dout = rng.standard_normal((5000, 8)).astype(np.float32)
    a, b = np.empty((1000, 8), np.float32), np.empty((1000, 8), np.float32)
    E.embedding_backward.serial(idx, dout, -1, a, False, *_scratch(1000, 5000))
    E.embedding_backward.parallel(idx, dout, -1, b, False, *_scratch(1000, 5000))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("v, n", [(1000, 5000), (257, 3), (10002, 512), (3, 0)])
def test_scatter_adds_each_row_in_index_order(v, n):
    """The bits of one row after another in index order (the kernel before the chunks'
    counting sort, and ``dweight[k] += dout[i]`` for i = 0, 1, ...), float32."""
    rng = np.random.default_rng(2)
    idx = rng.integers(0, v, n)
    if n:
        idx[: n // 2] = idx[0]  # a row hit many times: the order of its sum shows
    dout = (rng.standard_normal((n, 6)) * 10.0 ** rng.integers(-3, 4, (n, 1))).astype(
        np.float32)
    expect = np.zeros((v, 6), np.float32)
    for i in range(n):
        if idx[i] != 1:
            expect[idx[i]] += dout[i]
    for k in (E.embedding_backward.serial, E.embedding_backward.parallel):
        dw = np.full((v, 6), np.nan, np.float32)
        k(idx, dout, 1, dw, False, *_scratch(v, n))
        np.testing.assert_array_equal(dw, expect)


def _scratch(v, n):
    return np.empty(E.n_table_chunks(v) + 1, np.int64), np.empty(n, np.int64)
