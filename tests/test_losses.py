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
        L.cross_entropy(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="does not match"):
        L.mse_loss(np.zeros((2, 3)), np.zeros((3, 2)))


def test_labels_given_as_a_fastnn_tensor_of_whole_numbers():
    z, y = rand(4, 3), np.array([0, 1, 2, 1])
    assert L.cross_entropy(z, fnn.Tensor(y)).item() == L.cross_entropy(z, y).item()
    with pytest.raises(TypeError, match="integer"):
        L.cross_entropy(z, fnn.Tensor(y + 0.5))
