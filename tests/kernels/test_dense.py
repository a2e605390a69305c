"""kernels/dense.py against tests/naive.py."""

import numpy as np
import pytest

import naive
from fastnn.kernels import dense
from fastnn.kernels.activations import CODES

SHAPES = [(7, 13, 5), (1, 5, 3), (257, 129, 33)]
ACTS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "elu", "silu"]


def _case(shape, dtype, seed=0):
    n, d, m = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    W = (rng.standard_normal((d, m)) / np.sqrt(d)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    dy = rng.standard_normal((n, m)).astype(dtype)
    return x, W, b, dy


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", ACTS)
def test_forward_backward_match_naive(shape, act, dtype, tol):
    x, W, b, dy = _case(shape, dtype)
    n, _, m = shape
    alpha = 0.2 if act in ("leaky_relu", "elu") else 0.0
    y, d = np.empty((n, m), dtype), np.empty((n, m), dtype)
    dense.dense_forward(x, W, b, CODES[act], alpha, y, d)
    y_ref, d_ref = naive.dense_forward(x, W, b, act, alpha)
    np.testing.assert_allclose(y, y_ref, **tol)
    if act == "identity":
        d = d[:0]  # the identity has no local gradient to store: dz = dy
    else:
        np.testing.assert_allclose(d, d_ref, **tol)

    dz, dx, dW, db = (np.empty_like(a) for a in (dy, x, W, b))
    partial = np.empty((dense.n_chunks(n), m), np.float64)
    dense.dense_backward(dy, d, x, W, dz, partial, dx, dW, db)
    dx_ref, dW_ref, db_ref = naive.dense_backward(dy, x, W, b, act, alpha)
    for got, ref in ((dx, dx_ref), (dW, dW_ref), (db, db_ref)):
        np.testing.assert_allclose(got, ref, rtol=tol["rtol"], atol=tol["atol"] * np.sqrt(n))


def test_no_bias_identity_skips_dx_and_accumulates(dtype, tol):
    x, W, _, dy = _case((9, 4, 3), dtype)
    empty_b = np.empty(0, dtype)
    y = np.empty((9, 3), dtype)
    dense.dense_forward(x, W, empty_b, CODES["identity"], 0.0, y, y[:0])
    np.testing.assert_allclose(y, x.astype(np.float64) @ W, **tol)
    dz, dW = np.empty_like(dy), np.empty_like(W)
    prior = np.ones_like(W)
    partial = np.empty((dense.n_chunks(9), 3), np.float64)
    dense.dense_backward(dy, dy[:0], x, W, dz, partial, None, dW, None, accumulate_dW=prior)
    np.testing.assert_allclose(prior, 1.0 + x.T.astype(np.float64) @ dy, **tol)


def test_bias_gradient_is_bit_identical_serial_and_parallel():
    x, W, b, dy = _case((1000, 8, 70), np.float32)
    d = np.ones_like(dy)
    outs = []
    for variant in ("serial", "parallel"):
        dz = np.empty_like(dy)
        partial = np.empty((dense.n_chunks(1000), 70), np.float64)
        getattr(dense.dz_and_bias_grad, variant)(dy, d, dz, partial)
        outs.append(partial.sum(axis=0))
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("act", ["identity", "relu", "gelu"])
def test_forward_split_over_the_inner_dimension_matches_naive(act, dtype, tol):
    """The S model's first layer (batch 32, 784 -> 128) is split over its 784 inputs."""
    x, W, b, _ = _case((32, 784, 128), dtype)
    shape = dense.split_k_partial_shape(32, 784, 128)
    if shape is None:
        pytest.skip("one core, or NumPy's BLAS is not callable from the pool here")
    y, d = np.empty((32, 128), dtype), np.empty((32, 128), dtype)
    dense.dense_forward(x, W, b, CODES[act], 0.0, y, d, np.empty(shape, dtype))
    y_ref, d_ref = naive.dense_forward(x, W, b, act, 0.0)
    np.testing.assert_allclose(y, y_ref, **tol)
    if act != "identity":
        np.testing.assert_allclose(d, d_ref, **tol)


def test_split_k_only_for_mid_sized_products_with_a_small_batch():
    if not dense.blas.AVAILABLE or dense.blas.BLOCKS < 2:
        pytest.skip("one core, or NumPy's BLAS is not callable from the pool here")
    assert dense.split_k_partial_shape(4, 8, 8) is None  # too small to split at all
    assert dense.split_k_partial_shape(512, 2048, 2048) is None  # compute-bound: columns
    assert dense.split_k_partial_shape(1024, 784, 512) is None  # batch above D
    assert dense.split_k_partial_shape(128, 784, 512) == (dense.blas.BLOCKS - 1, 128, 512)
