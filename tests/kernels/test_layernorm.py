"""kernels/layernorm.py against tests/naive.py."""

import numpy as np
import pytest

import naive
from fastnn.kernels import activations as A
from fastnn.kernels import layernorm as LN


def _run(x, gamma, beta, eps, name, alpha=0.0, store_xhat=True):
    n, m = x.shape
    y, d = np.empty_like(x), np.empty_like(x)
    xhat = np.empty_like(x) if store_xhat else np.empty((0, m), x.dtype)
    inv_std = np.empty(n, x.dtype)
    LN.layernorm_forward(x, gamma, beta, eps, A.CODES[name], alpha, y, xhat, d, inv_std)
    return y, d, xhat, inv_std


@pytest.mark.parametrize("shape", [(5, 7), (1, 3), (300, 33)])
@pytest.mark.parametrize("name, alpha", [("identity", 0.0), ("relu", 0.0), ("gelu", 0.0),
                                         ("leaky_relu", 0.1)])
def test_forward_and_backward_match_the_naive_twin(shape, name, alpha, dtype, tol):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)  # |mean| > std: needs care
    gamma = rng.standard_normal(shape[1]).astype(dtype)
    beta = rng.standard_normal(shape[1]).astype(dtype)
    y, d, xhat, inv_std = _run(x, gamma, beta, 1e-5, name, alpha)
    y_ref, d_ref = naive.layernorm_forward(x, gamma, beta, 1e-5, name, alpha)
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(d, d_ref, **tol)

    dy = rng.standard_normal(shape).astype(dtype)
    dx, dgamma, dbeta = np.empty_like(x), np.empty_like(gamma), np.empty_like(beta)
    partial = np.empty((LN.n_chunks(shape[0]), 2, shape[1]))
    d_used = d if name != "identity" else np.empty((0, shape[1]), dtype)
    LN.layernorm_backward(dy, d_used, xhat, gamma, inv_std, dx, dgamma, dbeta, partial)
    dx_ref, dgamma_ref, dbeta_ref = naive.layernorm_backward(dy, x, gamma, beta, 1e-5, name,
                                                             alpha)
    scale = dict(rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    np.testing.assert_allclose(dx, dx_ref, **scale)
    np.testing.assert_allclose(dgamma, dgamma_ref, **scale)
    np.testing.assert_allclose(dbeta, dbeta_ref, **scale)


def test_input_gradient_can_be_skipped_and_xhat_need_not_be_stored():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((70, 4))
    gamma, beta = np.ones(4), np.zeros(4)
    y, _, _, _ = _run(x, gamma, beta, 1e-5, "identity", store_xhat=False)
    y2, _, xhat, inv_std = _run(x, gamma, beta, 1e-5, "identity")
    np.testing.assert_array_equal(y, y2)
    dgamma, dbeta = np.empty(4), np.empty(4)
    LN.layernorm_backward(np.ones_like(x), np.empty((0, 4)), xhat, gamma, inv_std,
                          np.empty((0, 4)), dgamma, dbeta, np.empty((LN.n_chunks(70), 2, 4)))
    np.testing.assert_allclose(dbeta, 70.0)


def test_serial_and_parallel_give_the_same_bits():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 9))
    dy = rng.standard_normal((200, 9))
    gamma, beta = rng.standard_normal(9), rng.standard_normal(9)
    y, d = np.empty_like(x), np.empty_like(x)
    outs = []
    for variant in ("serial", "parallel"):
        xhat, inv_std = np.empty_like(x), np.empty(200)
        getattr(LN._normalize_rows, variant)(x, gamma, beta, 1e-5, A.RELU, 0.0, y, xhat, d,
                                             inv_std)
        dx, partial = np.empty_like(x), np.empty((LN.n_chunks(200), 2, 9))
        getattr(LN._backward_rows, variant)(dy, d, xhat, gamma, inv_std, dx, partial)
        outs.append((y.copy(), dx, partial))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)
