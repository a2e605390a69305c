"""kernels/activations.py against the float64 twins in tests/naive.py."""

import numpy as np
import pytest

import naive
from fastnn.kernels import activations as A
from fastnn.kernels import dense

SIZES = [1, 7, 13 * 7, 257 * 129]
ALPHA = {"leaky_relu": 0.01, "elu": 1.3}
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def _inputs(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * 3
    x[: min(n, 3)] = [0.0, 25.0, -25.0][: min(n, 3)]  # the kink and saturated tails
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(A.CODES))
def test_forward_writes_value_and_local_gradient(name, dtype):
    for n in SIZES:
        x = _inputs(n, dtype)
        y, d = np.empty_like(x), np.empty_like(x)
        A.activation_forward(n)(A.CODES[name], ALPHA.get(name, 0.0), x, y, d)
        y_ref, d_ref = naive.activation(name, x, ALPHA.get(name, 0.0))
        assert y.dtype == dtype and d.dtype == dtype
        np.testing.assert_allclose(y, y_ref, **TOL[dtype])
        np.testing.assert_allclose(d, d_ref, **TOL[dtype])


@pytest.mark.parametrize("variant", ["serial", "parallel"])
def test_both_variants_agree(variant):
    x = _inputs(5000, np.float64)
    y = np.empty_like(x)
    getattr(A.activation_forward, variant)(A.SIGMOID, 0.0, x, y, np.empty_like(x))
    np.testing.assert_allclose(y, naive.activation("sigmoid", x)[0], rtol=1e-12)
    dy = _inputs(5000, np.float64, seed=1)
    dx = np.empty_like(x)
    getattr(A.activation_backward, variant)(dy, x, dx)
    np.testing.assert_array_equal(dx, dy * x)


def test_extreme_inputs_stay_finite():
    x = np.array([-1e4, -100.0, 100.0, 1e4], dtype=np.float32)
    for name, code in A.CODES.items():
        y, d = np.empty_like(x), np.empty_like(x)
        A.activation_forward.serial(code, 1.0, x, y, d)
        assert np.isfinite(y).all() and np.isfinite(d).all(), name


def test_nan_propagates():
    # FASTMATH keeps NaN semantics: a NaN in gives a NaN out, as in PyTorch (a diverging run
    # is caught by the loss's check; ReLU once turned NaN into 0, so a network with
    # BatchNorm, whose NaN statistics make every row NaN, trained on in silence).
    x = np.array([np.nan, 1.0, -1.0])
    for name, code in A.CODES.items():
        y, d = np.empty_like(x), np.empty_like(x)
        A.activation_forward.serial(code, ALPHA.get(name, 0.1), x, y, d)
        assert np.isnan(y[0]), name
        np.testing.assert_allclose(y[1:], naive.activation(name, x[1:], ALPHA.get(name, 0.1))[0],
                                   rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 5), (7, 13), (257, 129)])
@pytest.mark.parametrize("channels", ["shared", "per_channel"])
def test_prelu_forward_backward(shape, dtype, channels):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(0.05, 0.5, 1 if channels == "shared" else shape[1]).astype(dtype)
    y = np.empty_like(x)
    A.prelu_forward(x.size)(x, w, y)
    np.testing.assert_allclose(y, naive.prelu_forward(x, w), **TOL[dtype])
    dx = np.empty_like(x)
    partial = np.empty((dense.n_chunks(shape[0]), shape[1]), dtype=np.float64)
    A.prelu_backward(x.size)(dy, x, w, dx, partial)
    dw = partial.sum(axis=0)
    if channels == "shared":
        dw = np.array([dw.sum()])
    dx_ref, dw_ref = naive.prelu_backward(dy, x, w)
    np.testing.assert_allclose(dx, dx_ref, **TOL[dtype])
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-4 if dtype == np.float32 else 1e-11)
