"""kernels/batchnorm.py against tests/naive.py."""

import numpy as np
import pytest

import naive
from fastnn.kernels import batchnorm as bn
from fastnn.kernels.activations import CODES


def _buffers(n, c, dtype):
    return dict(
        y=np.empty((n, c), dtype), xhat=np.empty((n, c), dtype), d=np.empty((n, c), dtype),
        mean=np.empty(c, dtype), inv_std=np.empty(c, dtype),
        partial=np.empty((bn.n_chunks(n), 2, c), np.float64),
    )


@pytest.mark.parametrize("shape", [(7, 13), (2, 5), (257, 129)])
@pytest.mark.parametrize("act", ["identity", "relu", "tanh", "gelu"])
def test_train_forward_and_backward(shape, act, dtype, tol):
    n, c = shape
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3 + 50).astype(dtype)  # |mean| >> std: shifted sums
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    buf = _buffers(n, c, dtype)
    bn.batchnorm_forward_train(x, gamma, beta, 1e-5, 0.1, rm, rv, CODES[act], 0.0, **buf)
    y_ref, d_ref, rm_ref, rv_ref = naive.batchnorm_forward_train(
        x, gamma, beta, 1e-5, 0.1, rm0, rv0, act)
    np.testing.assert_allclose(buf["y"], y_ref, **tol)
    np.testing.assert_allclose(buf["d"], d_ref, **tol)
    np.testing.assert_allclose(rm, rm_ref, **tol)
    np.testing.assert_allclose(rv, rv_ref, **tol)

    dy = rng.standard_normal(shape).astype(dtype)
    dx, dgamma, dbeta = np.empty_like(x), np.empty_like(gamma), np.empty_like(beta)
    bn.batchnorm_backward(dy, buf["d"], buf["xhat"], gamma, buf["inv_std"], dx, dgamma, dbeta,
                          buf["partial"])
    dx_ref, dg_ref, db_ref = naive.batchnorm_backward(dy, x, gamma, 1e-5, act, beta=beta)
    scale = np.sqrt(n)
    np.testing.assert_allclose(dgamma, dg_ref, rtol=tol["rtol"], atol=tol["atol"] * scale)
    np.testing.assert_allclose(dbeta, db_ref, rtol=tol["rtol"], atol=tol["atol"] * scale)
    np.testing.assert_allclose(dx, dx_ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)


def test_eval_forward(dtype, tol):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 4)).astype(dtype)
    gamma, beta = rng.uniform(0.5, 1.5, 4).astype(dtype), rng.standard_normal(4).astype(dtype)
    rm, rv = rng.standard_normal(4).astype(dtype), rng.uniform(0.5, 2, 4).astype(dtype)
    y, d = np.empty_like(x), np.empty_like(x)
    bn.batchnorm_forward_eval(x, gamma, beta, 1e-5, rm, rv, CODES["relu"], 0.0, y, d)
    y_ref, d_ref = naive.batchnorm_forward_eval(x, gamma, beta, 1e-5, rm, rv, "relu")
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(d, d_ref, **tol)


def test_backward_without_dx_still_gives_parameter_grads():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3))
    g, b = np.ones(3), np.zeros(3)
    buf = _buffers(5, 3, np.float64)
    empty = np.empty(0)
    bn.batchnorm_forward_train(x, g, b, 1e-5, 0.1, empty, empty, 0, 0.0, **buf)
    dy = rng.standard_normal((5, 3))
    dg, db = np.empty(3), np.empty(3)
    bn.batchnorm_backward(dy, buf["d"][:0], buf["xhat"], g, buf["inv_std"], None, dg, db,
                          buf["partial"])
    _, dg_ref, db_ref = naive.batchnorm_backward(dy, x, g, 1e-5)
    np.testing.assert_allclose(dg, dg_ref, rtol=1e-10)
    np.testing.assert_allclose(db, db_ref, rtol=1e-10)
