"""kernels/pool.py and the BatchNorm2d kernels of kernels/batchnorm.py against tests/naive.py."""

import numba
import numpy as np
import pytest

import naive
from fastnn.kernels import batchnorm as bn
from fastnn.kernels import pool
from fastnn.kernels.activations import CODES

# (H, W, kernel, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    (6, 7, (2, 2), (2, 2), (0, 0), (1, 1), False),
    (7, 7, (3, 3), (2, 2), (1, 1), (1, 1), True),
    (9, 8, (3, 2), (2, 1), (1, 0), (2, 1), False),
    (5, 6, (2, 3), (3, 2), (1, 1), (1, 1), True),
    (5, 7, (2, 2), (2, 2), (0, 0), (1, 1), True),  # 2x2 with a partial last window: general
]


def _max(x, k, s, p, dil, ceil):
    n, c, h, w = x.shape
    oh = pool.pool_output_size(h, k[0], s[0], p[0], dil[0], ceil)
    ow = pool.pool_output_size(w, k[1], s[1], p[1], dil[1], ceil)
    y = np.empty((n * c, oh, ow), x.dtype)
    arg = np.empty((n * c, oh, ow), np.int64)
    pool.max_pool2d_forward(y.size)(x.reshape(n * c, h, w), *k, *s, *p, *dil, y, arg)
    return y.reshape(n, c, oh, ow), arg


@pytest.mark.parametrize("case", MAX_CASES)
def test_max_pool(case, dtype, tol):
    h, w, k, s, p, dil, ceil = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, h, w)).astype(dtype)
    x[0, 0, :2, :2] = 1.5  # ties: the first in scan order wins
    y, arg = _max(x, k, s, p, dil, ceil)
    y_ref, back = naive.max_pool2d(x, k, s, p, dil, ceil)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = np.empty_like(x)
    pool.max_pool2d_backward(dx.size)(dy.reshape(6, *y.shape[2:]), arg,
                                      dx.reshape(6, h, w))
    np.testing.assert_allclose(dx, back(dy), **tol)


def test_max_pool_2x2_fast_path_ties_and_nans_in_every_position(dtype):
    # the unrolled 2x2 stride-2 loop: ties (the first in scan order wins) and a NaN in each
    # of the four window positions, against the naive twin's general scan
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, (2, 4, 8, 10)).astype(dtype)  # many equal values
    for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        x[0, k, 2 + i, 4 + j] = np.nan
    y, arg = _max(x, (2, 2), (2, 2), (0, 0), (1, 1), False)
    y_ref, back = naive.max_pool2d(x, (2, 2), (2, 2), (0, 0), (1, 1), False)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = np.empty_like(x)
    pool.max_pool2d_backward(dx.size)(dy.reshape(8, 4, 5), arg, dx.reshape(8, 8, 10))
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(back(dy)))
    np.testing.assert_allclose(dx, back(dy), equal_nan=True)


def test_max_pool_2x2_without_arg_recomputes_the_winners(dtype):
    # the forward keeping no argmax, the backward finding the winners again from x: the
    # same y and the same dx (bits) as with the argmax kept; ties and NaNs included
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, (2, 3, 9, 8)).astype(dtype)  # odd H: the last row is dropped
    x[0, 0, 2, 3] = x[1, 2, 5, 0] = np.nan
    assert pool.is_2x2((2, 2), (2, 2), (0, 0), (1, 1), False, (9, 8))
    assert not pool.is_2x2((2, 2), (2, 2), (0, 0), (1, 1), True, (9, 8))
    y, arg = _max(x, (2, 2), (2, 2), (0, 0), (1, 1), False)
    X = x.reshape(6, 9, 8)
    y2 = np.empty((6, 4, 4), dtype)
    pool.max_pool2d_forward(y2.size)(X, 2, 2, 2, 2, 0, 0, 1, 1, y2, np.empty((0, 4, 4),
                                                                              np.int64))
    np.testing.assert_array_equal(y2, y.reshape(6, 4, 4))
    dy = rng.standard_normal((6, 4, 4)).astype(dtype)
    dx_kept, dx = np.empty_like(X), np.full_like(X, np.nan)
    pool.max_pool2d_backward(dx.size)(dy, arg, dx_kept)
    pool.max_pool2d_2x2_backward(dx.size)(dy, X, dx)
    np.testing.assert_array_equal(dx, dx_kept)


def test_max_pool_propagates_nan():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    y, _ = _max(x, (2, 2), (2, 2), (0, 0), (1, 1), False)
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 1, 1] == 0


@pytest.mark.parametrize("case", [
    (6, 7, (2, 2), (2, 2), (0, 0), False, True, None),
    (7, 7, (3, 3), (2, 2), (1, 1), True, True, None),
    (7, 6, (3, 2), (2, 1), (1, 1), True, False, None),
    (5, 5, (3, 3), (2, 2), (1, 0), False, False, 2),
])
def test_avg_pool(case, dtype, tol):
    h, w, k, s, p, ceil, include, override = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, h, w)).astype(dtype)
    oh = pool.pool_output_size(h, k[0], s[0], p[0], 1, ceil)
    ow = pool.pool_output_size(w, k[1], s[1], p[1], 1, ceil)
    y = np.empty((4, oh, ow), dtype)
    pool.avg_pool2d_forward(y.size)(x.reshape(4, h, w), *k, *s, *p, include, override or 0, y)
    y_ref, back = naive.avg_pool2d(x, k, s, p, ceil, include, override)
    np.testing.assert_allclose(y.reshape(y_ref.shape), y_ref, **tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = np.empty((4, h, w), dtype)
    pool.avg_pool2d_backward(dx.size)(dy, *k, *s, *p, include, override or 0, dx)
    np.testing.assert_allclose(dx.reshape(x.shape), back(dy.reshape(y_ref.shape)), **tol)


@pytest.mark.parametrize("size,out", [((7, 5), (3, 2)), ((4, 4), (1, 1)), ((5, 9), (5, 4))])
def test_adaptive_avg_pool(size, out, dtype, tol):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, *size)).astype(dtype)
    y = np.empty((6, *out), dtype)
    pool.adaptive_avg_pool2d_forward(y.size)(x.reshape(6, *size), y)
    y_ref, back = naive.adaptive_avg_pool2d(x, out)
    np.testing.assert_allclose(y.reshape(y_ref.shape), y_ref, **tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = np.empty((6, *size), dtype)
    pool.adaptive_avg_pool2d_backward(dx.size)(dy, dx)
    np.testing.assert_allclose(dx.reshape(x.shape), back(dy.reshape(y_ref.shape)), **tol)


def _bn2d(x, gamma, beta, rm, rv, act):
    n, c, h, w = x.shape
    X = x.reshape(n, c, h * w)
    y, xhat, d = np.empty_like(X), np.empty_like(X), np.empty_like(X)
    mean, inv = np.empty(c, x.dtype), np.empty(c, x.dtype)
    bn.batchnorm2d_forward_train(X, gamma, beta, 1e-5, 0.1, rm, rv, CODES[act], 0.0, y, xhat,
                                 d, mean, inv, np.empty((n, 2, c)), np.empty((3, c)))
    return y, xhat, d, inv


@pytest.mark.parametrize("act", ["identity", "relu"])
def test_batchnorm2d_train_forward_and_backward(act, dtype, tol):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 4, 5, 6)) * 2 + 10).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, 4).astype(dtype)
    beta = rng.standard_normal(4).astype(dtype)
    rm, rv = np.zeros(4, dtype), np.ones(4, dtype)
    y, xhat, d, inv = _bn2d(x, gamma, beta, rm, rv, act)
    y_ref, d_ref, rm_ref, rv_ref = naive.batchnorm2d_forward_train(
        x, gamma, beta, 1e-5, 0.1, np.zeros(4), np.ones(4), act)
    np.testing.assert_allclose(y.reshape(x.shape), y_ref, **tol)
    np.testing.assert_allclose(rm, rm_ref, **tol)
    np.testing.assert_allclose(rv, rv_ref, **tol)
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx, dg, db = np.empty_like(y), np.empty_like(gamma), np.empty_like(beta)
    bn.batchnorm2d_backward(dy.reshape(y.shape), d if act != "identity" else d[:0], xhat, gamma,
                            inv, dx, dg, db, np.empty((3, 2, 4)), np.empty((2, 4)))
    dx_ref, dg_ref, db_ref = naive.batchnorm2d_backward(dy, x, gamma, 1e-5, act, beta=beta)
    np.testing.assert_allclose(dg, dg_ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 30)
    np.testing.assert_allclose(db, db_ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 30)
    np.testing.assert_allclose(dx.reshape(x.shape), dx_ref, rtol=tol["rtol"] * 10,
                               atol=tol["atol"] * 30)


@pytest.mark.parametrize("act", ["identity", "relu", "tanh"])
def test_batchnorm2d_backward_recompute_without_xhat_and_d(act, dtype, tol):
    # the training forward keeping neither xhat nor d, the backward recomputing both from x:
    # the same y as the forward that keeps them, gradients as the naive twin's
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((3, 4, 5, 6)) * 2 + 10).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, 4).astype(dtype)
    beta = rng.standard_normal(4).astype(dtype)
    y_kept = _bn2d(x, gamma, beta, np.zeros(4, dtype), np.ones(4, dtype), act)[0]
    X = x.reshape(3, 4, 30)
    y = np.empty_like(X)
    mean, inv = np.empty(4, dtype), np.empty(4, dtype)
    bn.batchnorm2d_forward_train(X, gamma, beta, 1e-5, 0.1, mean[:0], mean[:0], CODES[act],
                                 0.0, y, X[:0], X[:0], mean, inv, np.empty((3, 2, 4)),
                                 np.empty((3, 4)))
    np.testing.assert_array_equal(y, y_kept)
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx, dg, db = np.full_like(X, np.nan), np.empty_like(gamma), np.empty_like(beta)
    bn.batchnorm2d_backward_recompute(dy.reshape(X.shape), X, mean, gamma, beta, inv,
                                      CODES[act], 0.0, dx, dg, db, np.empty((3, 2, 4)),
                                      np.empty((2, 4)))
    dx_ref, dg_ref, db_ref = naive.batchnorm2d_backward(dy, x, gamma, 1e-5, act, beta=beta)
    np.testing.assert_allclose(dg, dg_ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 30)
    np.testing.assert_allclose(db, db_ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 30)
    np.testing.assert_allclose(dx.reshape(x.shape), dx_ref, rtol=tol["rtol"] * 10,
                               atol=tol["atol"] * 30)


def test_batchnorm2d_eval(dtype, tol):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4, 4)).astype(dtype)
    gamma, beta = rng.uniform(0.5, 1.5, 3).astype(dtype), rng.standard_normal(3).astype(dtype)
    rm, rv = rng.standard_normal(3).astype(dtype), rng.uniform(0.5, 2, 3).astype(dtype)
    X = x.reshape(2, 3, 16)
    y, d = np.empty_like(X), np.empty_like(X)
    bn.batchnorm2d_forward_eval(X, gamma, beta, 1e-5, rm, rv, CODES["relu"], 0.0, y, d)
    y_ref, _ = naive.batchnorm_forward_eval(naive._nchw_rows(x), gamma, beta, 1e-5, rm, rv,
                                            "relu")
    np.testing.assert_allclose(y.reshape(x.shape), naive._rows_nchw(y_ref, x.shape), **tol)


def test_same_bits_on_one_and_two_threads():
    # float32 only: the kernels split the work over images and channels whatever the dtype
    # (no block size depends on it), so float64 would check the same split again, at the
    # price of compiling four parallel BatchNorm2d kernels for this test alone (~14 s cold)
    dtype = np.float32
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 16, 12, 12)).astype(dtype)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            y, arg = _max(x, (3, 3), (2, 2), (1, 1), (1, 1), True)
            yb = _bn2d(x, np.ones(16, dtype), np.zeros(16, dtype), np.zeros(16, dtype),
                       np.ones(16, dtype), "relu")
            X = x.reshape(8, 16, 144)
            mean = X.mean(axis=(0, 2)).astype(dtype)
            dx, dg, db = np.empty_like(X), np.empty(16, dtype), np.empty(16, dtype)
            bn.batchnorm2d_backward_recompute(X[::-1].copy(), X, mean, np.ones(16, dtype),
                                              np.zeros(16, dtype), yb[3], CODES["relu"], 0.0,
                                              dx, dg, db, np.empty((8, 2, 16)),
                                              np.empty((2, 16)))
            results.append((y, arg, *yb, dx, dg, db))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(results[0], results[-1], strict=True):
        assert np.array_equal(a, b)
