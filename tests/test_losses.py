"""fastnn/losses.py: values against float64 references, gradients, stability, errors."""

import numpy as np
import pytest

import fastnn as fnn
import naive
from fastnn import losses as L


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_cross_entropy_value_gradient_and_gradcheck():
    z, y = rand(7, 5) * 3, np.array([0, 4, 2, 2, 1, 3, 0])
    t = fnn.Tensor(z, requires_grad=True)
    loss = L.cross_entropy(t, y)
    ref, grad = naive.softmax_cross_entropy(z, y)
    assert loss.shape == () and loss.item() == pytest.approx(ref, rel=1e-12)
    (loss * 3.0).backward()
    np.testing.assert_allclose(t.grad, 3.0 * grad, rtol=1e-12)
    fnn.gradcheck(lambda z: L.cross_entropy(z, y), [z])


def test_other_losses_gradcheck():
    s, y = rand(6, 4, seed=1), np.array([0, 3, 1, 1, 2, 0])
    fnn.gradcheck(lambda s: L.multiclass_hinge(s, y), [s])
    fnn.gradcheck(lambda s: L.multiclass_hinge(s, y, margin=0.3), [s])
    p, t = rand(5, 3, seed=2), rand(5, 3, seed=3)
    fnn.gradcheck(lambda p: L.mse_loss(p, t), [p])
    fnn.gradcheck(lambda p: L.binary_cross_entropy_with_logits(p, (t > 0) * 1.0), [p])
    assert L.mse_loss(p, t).item() == pytest.approx(((p - t) ** 2).mean())


def test_loss_classes():
    z, y = rand(4, 3), np.array([0, 1, 2, 1])
    assert fnn.CrossEntropyLoss()(z, y).item() == L.cross_entropy(z, y).item()
    assert fnn.MultiClassHingeLoss(0.5)(z, y).item() == L.multiclass_hinge(z, y, 0.5).item()
    assert fnn.MSELoss()(z, z).item() == 0.0
    assert np.isfinite(fnn.BCEWithLogitsLoss()(z, np.ones_like(z)).item())


def test_seed_svm_example():
    # cs231n's multiclass SVM example: scores of three images over (cat, car, frog).
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    labels = np.array([0, 1, 2])
    assert L.multiclass_hinge(scores, labels).item() == pytest.approx((2.9 + 0 + 12.9) / 3)


def test_extreme_logits_finite():
    z = fnn.Tensor(np.array([[1e4, -1e4], [-1e4, 1e4]], np.float32), requires_grad=True)
    loss = L.cross_entropy(z, np.array([1, 1]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(z.grad).all()
    assert loss.item() == pytest.approx(1e4)
    b = L.binary_cross_entropy_with_logits(np.array([1e4, -1e4]), np.array([0.0, 1.0]))
    assert b.item() == pytest.approx(1e4)


@pytest.mark.parametrize(
    "labels,err,match",
    [(np.array([0, 1, 2.0]), TypeError, "integer"),
     (np.array([0, 1, 3]), ValueError, r"labels\[2\] = 3 .*\[0, 3\)"),
     (np.array([0, -1, 2]), ValueError, r"labels\[1\] = -1"),
     (np.array([0, 1]), ValueError, r"shape \(3,\)"),
     (np.array([True, False, True]), TypeError, "integer")],
)
def test_bad_labels(labels, err, match):
    for fn in (L.cross_entropy, L.multiclass_hinge):
        with pytest.raises(err, match=match):
            fn(np.zeros((3, 3)), labels)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        L.cross_entropy(np.zeros(()), np.array(0))
    with pytest.raises(TypeError, match="probabilities"):
        L.cross_entropy(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="does not match"):
        L.mse_loss(np.zeros((2, 3)), np.zeros((3, 2)))


def test_labels_given_as_a_fastnn_tensor_of_whole_numbers():
    z, y = rand(4, 3), np.array([0, 1, 2, 1])
    assert L.cross_entropy(z, fnn.Tensor(y)).item() == L.cross_entropy(z, y).item()
    with pytest.raises(TypeError, match="integer"):
        L.cross_entropy(z, fnn.Tensor(y + 0.5))


# ------------------------------------------------------- PyTorch's options and losses
REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(6,), (6, 3)])
def test_regression_losses_values_gradients_and_targets_of_both_shapes(reduction, shape):
    p, t = rand(*shape, seed=4) * 2, rand(*shape, seed=5)
    p[0] = t[0]  # r = 0 somewhere
    cases = [(L.l1_loss, {}, naive.l1(p, t)),
             (L.huber_loss, {"delta": 0.7}, naive.huber(p, t, 0.7)),
             (L.smooth_l1_loss, {"beta": 0.5}, naive.smooth_l1(p, t, 0.5)),
             (L.smooth_l1_loss, {"beta": 0.0}, naive.l1(p, t))]
    for fn, opts, (losses, local) in cases:
        out = fn(fnn.Tensor(p), t, reduction=reduction, **opts)
        expect = {"mean": losses.mean(), "sum": losses.sum(), "none": losses}[reduction]
        np.testing.assert_allclose(out.data, expect, rtol=1e-12, atol=1e-15)
        x = fnn.Tensor(p, requires_grad=True)
        g = rand(*shape, seed=6) if reduction == "none" else 1.7
        fn(x, t, reduction=reduction, **opts).backward(g if reduction == "none" else None)
        scale = {"mean": 1 / p.size, "sum": 1.0, "none": g}[reduction]
        np.testing.assert_allclose(x.grad, local * scale, rtol=1e-12, atol=1e-15)
        q = p + 0.05 * (p == t)  # centred differences need a margin from the kink at r = 0
        fnn.gradcheck(lambda x, fn=fn, opts=opts: fn(x, t, reduction=reduction, **opts), [q])
    fnn.gradcheck(lambda x: L.mse_loss(x, t, reduction=reduction), [p])


def test_regression_loss_gradient_reaches_a_target_that_requires_grad():
    p, t = rand(4, 2, seed=7), rand(4, 2, seed=8)
    for fn in (L.mse_loss, L.l1_loss, L.huber_loss, L.smooth_l1_loss):
        fnn.gradcheck(lambda a, b, fn=fn: fn(a, b), [p, t])
        fnn.gradcheck(lambda a, b, fn=fn: fn(a, b, reduction="none"), [p, t])
    with pytest.raises(NotImplementedError, match="target"):
        L.binary_cross_entropy_with_logits(p, fnn.Tensor(np.abs(t) / 3, requires_grad=True))


def test_loss_classes_with_options():
    p, t = rand(5, 2, seed=9), rand(5, 2, seed=10)
    assert fnn.L1Loss()(p, t).item() == L.l1_loss(p, t).item()
    assert fnn.HuberLoss(delta=0.5)(p, t).item() == L.huber_loss(p, t, delta=0.5).item()
    assert fnn.SmoothL1Loss(beta=2.0)(p, t).item() == L.smooth_l1_loss(p, t, beta=2.0).item()
    np.testing.assert_array_equal(fnn.MSELoss(reduction="none")(p, t).data,
                                  L.mse_loss(p, t, reduction="none").data)
    assert repr(fnn.HuberLoss(delta=0.5)) == "HuberLoss(delta=0.5)"
    z, y = rand(5, 3), np.array([0, 2, 1, -100, 2])
    w = np.array([1.0, 2.0, 0.5])
    assert fnn.CrossEntropyLoss(weight=w, label_smoothing=0.1)(z, y).item() == \
        L.cross_entropy(z, y, weight=w, label_smoothing=0.1).item()
    assert fnn.NLLLoss(reduction="sum")(z, y).item() == L.nll_loss(z, y, reduction="sum").item()
    pr = np.abs(np.tanh(z))
    tb = (pr > 0.5) * 1.0
    assert fnn.BCELoss()(pr, tb).item() == L.binary_cross_entropy(pr, tb).item()
    with pytest.raises(ValueError, match="reduction"):
        fnn.L1Loss(reduction="avg")


def test_cross_entropy_options_against_the_definition_and_gradcheck():
    z = rand(8, 4, seed=11) * 2
    y = np.array([0, 3, 2, -100, 1, 1, 3, 0])
    w = np.array([0.5, 2.0, 1.0, 1.5])
    rows, grads, w_total = naive.cross_entropy_options(z, y, w, -100, 0.2)
    loss = L.cross_entropy(z, y, weight=w, label_smoothing=0.2)
    assert loss.item() == pytest.approx(rows.sum() / w_total, rel=1e-12)
    per_row = L.cross_entropy(z, y, weight=w, label_smoothing=0.2, reduction="none")
    np.testing.assert_allclose(per_row.data, rows, rtol=1e-12, atol=1e-15)
    for red in REDUCTIONS:
        fnn.gradcheck(lambda x, red=red: L.cross_entropy(x, y, weight=w, reduction=red,
                                                         label_smoothing=0.2), [z])
        fnn.gradcheck(lambda x, red=red: L.nll_loss(x, y, weight=w, reduction=red), [z])
    # The default ignore_index (-100) is honoured by the plain call too, as PyTorch's.
    keep = y != -100
    assert L.cross_entropy(z, y).item() == pytest.approx(
        L.cross_entropy(z[keep], y[keep]).item(), rel=1e-12)


def test_cross_entropy_probabilities_and_extra_dimensions():
    z = rand(5, 3, seed=12)
    p = np.exp(rand(5, 3, seed=13))
    p /= p.sum(axis=1, keepdims=True)
    rows, _ = naive.cross_entropy_probs(z, p)
    assert L.cross_entropy(z, p).item() == pytest.approx(rows.mean(), rel=1e-12)
    fnn.gradcheck(lambda x: L.cross_entropy(x, p, label_smoothing=0.1), [z])
    z4, y4 = rand(2, 3, 2, 2, seed=14), np.random.default_rng(0).integers(0, 3, (2, 2, 2))
    flat = np.moveaxis(z4, 1, -1).reshape(-1, 3)
    assert L.cross_entropy(z4, y4).item() == pytest.approx(
        L.cross_entropy(flat, y4.reshape(-1)).item(), rel=1e-12)
    assert L.cross_entropy(z4, y4, reduction="none").shape == (2, 2, 2)
    fnn.gradcheck(lambda x: L.cross_entropy(x, y4, reduction="none"), [z4])
    one = L.cross_entropy(z[0], np.array(2))  # one sample: (C,) scores, a () target
    assert one.item() == pytest.approx(L.cross_entropy(z[:1], np.array([2])).item(), rel=1e-12)


def test_binary_cross_entropy_losses():
    z, t = rand(6, 2, seed=15) * 2, (rand(6, 2, seed=16) > 0) * 1.0
    pw, w = np.array([2.0, 0.5]), np.abs(rand(6, 1, seed=17)) + 0.1
    ref, _ = naive.bce_with_logits(z, t, w, pw)
    assert L.binary_cross_entropy_with_logits(z, t, weight=w, pos_weight=pw).item() == \
        pytest.approx(ref, rel=1e-12)
    p = 1 / (1 + np.exp(-z))
    losses, _ = naive.bce(p, t, w)
    assert L.binary_cross_entropy(p, t, weight=w, reduction="sum").item() == \
        pytest.approx(losses.sum(), rel=1e-12)
    for red in REDUCTIONS:
        fnn.gradcheck(lambda x, red=red: L.binary_cross_entropy_with_logits(
            x, t, weight=w, pos_weight=pw, reduction=red), [z])
        fnn.gradcheck(lambda x, red=red: L.binary_cross_entropy(x, t, weight=w, reduction=red),
                      [p], eps=1e-7)
    with pytest.raises(ValueError, match=r"input element must be in \[0, 1\], got 1.5"):
        L.binary_cross_entropy(np.array([0.5, 1.5]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="target element"):
        L.binary_cross_entropy(np.array([0.5, 0.5]), np.array([0.0, 2.0]))


def test_loss_option_errors():
    z, y = np.zeros((3, 3)), np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        L.cross_entropy(z, y, weight=np.ones(2))
    with pytest.raises(ValueError, match="label_smoothing"):
        L.cross_entropy(z, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction"):
        L.nll_loss(z, y, reduction="batchmean")
    with pytest.raises(ValueError, match=r"labels\[2\] = 7"):
        L.cross_entropy(z, np.array([0, -100, 7]), label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"labels \(class indices\) must have shape \(3,\)"):
        L.cross_entropy(z, np.array([0, 1]), weight=np.ones(3))
    with pytest.raises(ValueError, match="delta must be positive"):
        L.huber_loss(z, z, delta=0.0)
    with pytest.raises(ValueError, match="does not match"):
        L.l1_loss(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(ValueError, match="pos_weight"):
        L.binary_cross_entropy_with_logits(z, z, pos_weight=np.ones(2))
