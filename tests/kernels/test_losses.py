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


NONE = np.empty(0)


@pytest.mark.parametrize("n", [1, 91, 5000])
def test_mse_and_bce(n, dtype, tol):
    rng = np.random.default_rng(2)
    p, t = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    grad, partial, none = np.empty_like(p), np.empty(L.n_chunks(n)), NONE.astype(dtype)
    total = L.mse(n)(p, t, 1.0 / n, grad, none, partial)
    loss_ref, grad_ref = naive.mse(p, t)
    assert total / n == pytest.approx(loss_ref, rel=tol["rtol"])
    np.testing.assert_allclose(grad, grad_ref, **tol)

    z = (rng.standard_normal(n) * 5).astype(dtype)
    t = rng.uniform(0, 1, n).astype(dtype)
    total = L.bce_with_logits(n)(z, t, none, none, 1.0 / n, grad, none, partial)
    loss_ref, grad_ref = naive.bce_with_logits(z, t)
    assert total / n == pytest.approx(loss_ref, rel=tol["rtol"])
    np.testing.assert_allclose(grad, grad_ref, **tol)


@pytest.mark.parametrize("n", [1, 91, 5000])
def test_bce_with_logits_weights(n, dtype, tol):
    rng = np.random.default_rng(3)
    z, t = (rng.standard_normal(n) * 3).astype(dtype), rng.uniform(0, 1, n).astype(dtype)
    w, pw = rng.uniform(0.1, 2, n).astype(dtype), rng.uniform(0.1, 3, n).astype(dtype)
    grad, loss, partial = np.empty_like(z), np.empty_like(z), np.empty(L.n_chunks(n))
    total = L.bce_with_logits(n)(z, t, w, pw, 1.0, grad, loss, partial)
    loss_ref, grad_ref = naive.bce_with_logits(z, t, w, pw)
    assert total == pytest.approx(loss_ref * n, rel=tol["rtol"])
    assert loss.sum() == pytest.approx(total, rel=tol["rtol"])
    np.testing.assert_allclose(grad, grad_ref * n, **tol)


@pytest.mark.parametrize("n", [1, 91, 5000])
def test_l1_huber_smooth_l1(n, dtype, tol):
    rng = np.random.default_rng(4)
    p, t = (rng.standard_normal(n) * 2).astype(dtype), rng.standard_normal(n).astype(dtype)
    p[0] = t[0]  # r = 0: the gradient of |r| is 0 there
    grad, loss, partial = np.empty_like(p), np.empty_like(p), np.empty(L.n_chunks(n))
    cases = [(L.l1, (), naive.l1(p, t)),
             (L.huber, (1.0, 1.0), naive.huber(p, t, 1.0)),
             (L.huber, (0.3, 1.0), naive.huber(p, t, 0.3)),
             (L.huber, (0.5, 2.0), naive.smooth_l1(p, t, 0.5))]  # smooth L1, beta = 0.5
    for kernel, options, (loss_ref, grad_ref) in cases:
        total = kernel(n)(p, t, *options, 0.5, grad, loss, partial)
        assert total == pytest.approx(loss_ref.sum(), rel=tol["rtol"])
        np.testing.assert_allclose(loss, loss_ref, **tol)
        np.testing.assert_allclose(grad, 0.5 * grad_ref, **tol)
    assert grad[0] == 0.0


@pytest.mark.parametrize("n", [1, 91, 5000])
def test_bce_on_probabilities(n, dtype, tol):
    rng = np.random.default_rng(5)
    p, t = rng.uniform(0.01, 0.99, n).astype(dtype), rng.uniform(0, 1, n).astype(dtype)
    w = rng.uniform(0.1, 2, n).astype(dtype)
    grad, loss, partial = np.empty_like(p), np.empty_like(p), np.empty(L.n_chunks(n))
    bad, total = L.bce(n)(p, t, w, 1.0, grad, loss, partial)
    loss_ref, grad_ref = naive.bce(p, t, w)
    assert bad == -1 and total == pytest.approx(loss_ref.sum(), rel=tol["rtol"])
    np.testing.assert_allclose(loss, loss_ref, **tol)
    np.testing.assert_allclose(grad, grad_ref, rtol=tol["rtol"] * 10, atol=tol["atol"])


def test_bce_clamps_logs_and_reports_out_of_range():
    p, t = np.array([0.0, 1.0, 0.5]), np.array([1.0, 0.0, 0.5])
    grad, loss, partial = np.empty(3), np.empty(3), np.empty(1)
    bad, total = L.bce.serial(p, t, NONE, 1.0, grad, loss, partial)
    assert bad == -1 and loss[0] == 100.0 and loss[1] == 100.0 and np.isfinite(grad).all()
    for bad_p, bad_t in (([0.5, 1.5, 0.5], [0, 0, 0]), ([0.5, 0.5, np.nan], [0, 0, 0]),
                         ([0.5, 0.2, 0.5], [0, -0.1, 0])):
        for k in (L.bce.serial, L.bce.parallel):
            got = k(np.array(bad_p), np.array(bad_t, float), NONE, 1.0, grad, loss, partial)
            assert got[0] == (2 if np.isnan(bad_p[2]) else 1)


@pytest.mark.parametrize("shape", [(7, 13), (1, 5), (257, 10)])
@pytest.mark.parametrize("options", [(None, -100, 0.0), ("w", -100, 0.0), ("w", 2, 0.25),
                                     (None, 0, 0.1)])
def test_cross_entropy_options(shape, options, dtype, tol):
    weighted, ignore, eps = options
    rng = np.random.default_rng(6)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    y[1::3] = ignore if ignore >= 0 else -100
    w = rng.uniform(0.2, 2.0, shape[1]).astype(dtype) if weighted else NONE.astype(dtype)
    grad, rows = np.empty_like(z), np.empty(shape[0], dtype)
    partial = np.empty(L.n_chunks(shape[0]))
    ref_rows, ref_grad, ref_w = naive.cross_entropy_options(z, y, w if weighted else None,
                                                            ignore, eps)
    for mean in (True, False):
        bad, total, w_total = L.cross_entropy_options(z.size)(z, y, w, ignore, eps, mean, grad,
                                                              rows, partial)
        assert bad == -1 and w_total == pytest.approx(ref_w, rel=1e-6)
        assert total == pytest.approx(ref_rows.sum(), rel=tol["rtol"], abs=tol["atol"])
        np.testing.assert_allclose(rows, ref_rows, **tol)
        np.testing.assert_allclose(grad, ref_grad / (ref_w if mean else 1.0), **tol)


def test_cross_entropy_options_reports_bad_labels_but_not_ignored_ones():
    z = np.zeros((200, 3))
    y = np.zeros(200, np.int64)
    y[10], y[150] = -100, 3
    grad, rows, partial = np.empty_like(z), np.empty(0), np.empty(L.n_chunks(200))
    for k in (L.cross_entropy_options, L.nll):
        args = (z, y, NONE, -100, 0.1, True) if k is L.cross_entropy_options else \
            (z, y, NONE, -100, True)
        assert k.serial(*args, grad, rows, partial)[0] == 150
        assert k.parallel(*args, grad, rows, partial)[0] == 150


@pytest.mark.parametrize("shape", [(7, 13), (1, 5), (257, 10)])
def test_cross_entropy_probs_and_nll(shape, dtype, tol):
    rng = np.random.default_rng(7)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    t = rng.uniform(0, 1, shape)
    t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    w = rng.uniform(0.2, 2.0, shape[1]).astype(dtype)
    grad, rows = np.empty_like(z), np.empty(shape[0], dtype)
    partial = np.empty(L.n_chunks(shape[0]))
    total = L.cross_entropy_probs(z.size)(z, t, w, 0.2, 0.5, grad, rows, partial)
    ref_rows, ref_grad = naive.cross_entropy_probs(z, t, w, 0.2)
    assert total == pytest.approx(ref_rows.sum(), rel=tol["rtol"])
    np.testing.assert_allclose(rows, ref_rows, **tol)
    np.testing.assert_allclose(grad, 0.5 * ref_grad, **tol)

    y = rng.integers(0, shape[1], shape[0])
    y[1::4] = -100
    bad, total, w_total = L.nll(z.size)(z, y, w, -100, True, grad, rows, partial)
    ref_rows, ref_grad, ref_w = naive.nll(z, y, w)
    assert bad == -1 and w_total == pytest.approx(ref_w, rel=1e-6)
    assert total == pytest.approx(ref_rows.sum(), rel=tol["rtol"], abs=tol["atol"])
    np.testing.assert_allclose(rows, ref_rows, **tol)
    np.testing.assert_allclose(grad, ref_grad / ref_w, **tol)


def test_bce_extreme_logits_are_finite():
    z = np.array([-1e4, 1e4, -50.0, 50.0])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    grad, partial = np.empty_like(z), np.empty(1)
    L.bce_with_logits.serial(z, t, NONE, NONE, 0.25, grad, NONE, partial)
    assert partial.sum() / 4 == pytest.approx(5e3, rel=1e-9)
    np.testing.assert_allclose(grad, [-0.25, 0.25, 0.0, 0.0], atol=1e-20)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_count_argmax_hits_is_numpys_argmax_count_with_ties_and_nan(dtype):
    from fastnn.train import count_correct

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, (500, 4)).astype(dtype)  # many ties: the first max wins
    scores[rng.random((500, 4)) < 0.05] = np.nan  # the first NaN wins
    scores[7] = np.nan
    labels = rng.integers(0, 4, 500)
    expect = int((scores.argmax(axis=1) == labels).sum())
    assert L.count_argmax_hits(scores, labels) == expect
    assert count_correct(scores, labels.astype(np.int32)) == expect
    assert count_correct(scores[:, :1], labels) == int((labels == 0).sum())
    assert count_correct(scores[::2], labels[::2]) == int(
        (scores[::2].argmax(axis=1) == labels[::2]).sum())
