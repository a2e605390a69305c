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
        E.embedding_backward(n * d)(idx, dout, padding, dw, False)
        np.testing.assert_allclose(dw, naive.embedding_backward(idx, dout, v, padding), **tol)
    E.embedding_backward(n * d)(idx, dout, -1, dw, True)  # accumulate onto the last result
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
    E.embedding_backward.serial(idx, dout, -1, a, False)
    E.embedding_backward.parallel(idx, dout, -1, b, False)
    np.testing.assert_array_equal(a, b)
