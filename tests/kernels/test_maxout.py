"""kernels/maxout.py against tests/naive.py."""

import numpy as np
import pytest

import naive
from fastnn.kernels import dense, maxout


@pytest.mark.parametrize("shape", [(7, 13, 5), (1, 5, 3), (129, 33, 17)])
@pytest.mark.parametrize("pieces", [2, 3])
def test_forward_backward(shape, pieces, dtype, tol):
    n, d, m = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(dtype)
    W = rng.standard_normal((d, m * pieces)).astype(dtype)
    b = rng.standard_normal(m * pieces).astype(dtype)
    z, y = np.empty((n, m * pieces), dtype), np.empty((n, m), dtype)
    arg = np.empty((n, m), np.int32)
    maxout.maxout_forward(x, W, b, pieces, z, y, arg)
    y_ref, arg_ref = naive.maxout_forward(x, W, b, pieces)
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = rng.standard_normal((n, m)).astype(dtype)
    dx, dW, db = np.empty_like(x), np.empty_like(W), np.empty_like(b)
    partial = np.empty((dense.n_chunks(n), m * pieces), np.float64)
    maxout.maxout_backward(dy, arg, pieces, x, W, z, partial, dx, dW, db)
    for got, ref in zip((dx, dW, db), naive.maxout_backward(dy, x, W, b, pieces), strict=True):
        np.testing.assert_allclose(got, ref, rtol=tol["rtol"], atol=tol["atol"] * 10)


def test_tie_goes_to_the_first_piece():
    z_in = np.array([[1.0, 0.0]])
    W = np.array([[2.0, 2.0]])  # both pieces equal for any x
    z, y, arg = np.empty((1, 2)), np.empty((1, 1)), np.empty((1, 1), np.int32)
    maxout.maxout_forward(z_in[:, :1], W, np.zeros(2), 2, z, y, arg)
    assert arg[0, 0] == 0 and y[0, 0] == 2.0
