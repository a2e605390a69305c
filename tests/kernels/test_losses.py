"""kernels/losses.py against tests/naive.py."""

import numpy as np
import pytest

import naive
from fastnn.kernels import losses as L


@pytest.mark.parametrize("shape", [(7, 13), (1, 5), (257, 129)])
def test_softmax_cross_entropy(shape, dtype, tol):
    rng = np.random.default_rng(0)
    z = (rng.standard_normal(shape) * 4).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    grad, partial = np.empty_like(z), np.empty(L.n_chunks(shape[0]))
    bad, total = L.softmax_cross_entropy(z.size)(z, y, grad, partial)
    assert bad == -1 and total == pytest.approx(partial.sum(), rel=1e-12)
    loss_ref, grad_ref = naive.softmax_cross_entropy(z, y)
    assert total / shape[0] == pytest.approx(loss_ref, rel=tol["rtol"])
    np.testing.assert_allclose(grad, grad_ref, **tol)


def test_cross_entropy_extreme_logits_are_finite():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], np.float32)
    y = np.array([1, 2])
    grad, partial = np.empty_like(z), np.empty(1)
    L.softmax_cross_entropy.serial(z, y, grad, partial)
    assert np.isfinite(partial).all() and np.isfinite(grad).all()
    assert partial.sum() / 2 == pytest.approx(1e4, rel=1e-6)  # 2e4 for row 0, 0 for row 1


def test_bad_labels_are_reported_by_index():
    z = np.zeros((200, 3))
    grad, partial = np.empty_like(z), np.empty(L.n_chunks(200))
    y = np.zeros(200, np.int64)
    y[150], y[170] = 3, -1
    for k in (L.softmax_cross_entropy, L.multiclass_hinge):
        args = (z, y, 1.0) if k is L.multiclass_hinge else (z, y)
        assert k.serial(*args, grad, partial)[0] == 150
        assert k.parallel(*args, grad, partial)[0] == 150


@pytest.mark.parametrize("shape", [(7, 13), (1, 5), (257, 10)])
@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_multiclass_hinge(shape, margin, dtype, tol):
    rng = np.random.default_rng(1)
    s = rng.standard_normal(shape).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    grad, partial = np.empty_like(s), np.empty(L.n_chunks(shape[0]))
    bad, total = L.multiclass_hinge(s.size)(s, y, margin, grad, partial)
    assert bad == -1
    loss_ref, grad_ref = naive.multiclass_hinge(s, y, margin)
    assert total / shape[0] == pytest.approx(loss_ref, rel=tol["rtol"])
    np.testing.assert_allclose(grad, grad_ref, **tol)


@pytest.mark.parametrize("n", [1, 91, 5000])
def test_mse_and_bce(n, dtype, tol):
    rng = np.random.default_rng(2)
    p, t = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    grad, partial = np.empty_like(p), np.empty(L.n_chunks(n))
    total = L.mse(n)(p, t, grad, partial)
    loss_ref, grad_ref = naive.mse(p, t)
    assert total / n == pytest.approx(loss_ref, rel=tol["rtol"])
    np.testing.assert_allclose(grad, grad_ref, **tol)

    z = (rng.standard_normal(n) * 5).astype(dtype)
    t = rng.uniform(0, 1, n).astype(dtype)
    total = L.bce_with_logits(n)(z, t, grad, partial)
    loss_ref, grad_ref = naive.bce_with_logits(z, t)
    assert total / n == pytest.approx(loss_ref, rel=tol["rtol"])
    np.testing.assert_allclose(grad, grad_ref, **tol)


def test_bce_extreme_logits_are_finite():
    z = np.array([-1e4, 1e4, -50.0, 50.0])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    grad, partial = np.empty_like(z), np.empty(1)
    L.bce_with_logits.serial(z, t, grad, partial)
    assert partial.sum() / 4 == pytest.approx(5e3, rel=1e-9)
    np.testing.assert_allclose(grad, [-0.25, 0.25, 0.0, 0.0], atol=1e-20)
