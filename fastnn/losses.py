"""Losses: one kernel computes each loss and its gradient; one graph node applies it.

All are means over the batch (see ``fastnn.kernels.losses`` for the formulas):

- ``cross_entropy(logits, labels)``: softmax + negative log-likelihood, torch's
  ``F.cross_entropy`` for class-index labels.
- ``multiclass_hinge(scores, labels, margin=1.0)``: the multiclass SVM loss, summed over the
  wrong classes and averaged over the batch (cs231n's form; torch's ``multi_margin_loss``
  also divides by the number of classes).
- ``mse_loss(pred, target)``: torch's ``F.mse_loss`` (mean over all elements).
- ``binary_cross_entropy_with_logits(logits, target)``: torch's, stable for any logit.
"""

from __future__ import annotations

import numpy as np

from ._buffers import BufferPool
from ._dtype import as_float_array
from .graph import Tensor, _node
from .kernels import losses as K

_pool = BufferPool()


def _as_tensor(x, name: str) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(as_float_array(x, name=name))


def _check_labels(labels, n: int, fn: str) -> np.ndarray:
    arr = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if isinstance(labels, Tensor) and arr.dtype.kind == "f" and np.isfinite(arr).all() \
            and (arr == np.round(arr)).all():
        arr = arr.astype(np.int64)  # fastnn Tensors are floating: whole numbers are classes
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{fn}: labels must be integer class indices, got dtype {arr.dtype} "
            "(convert with .astype(np.int64) if they are whole numbers)"
        )
    if arr.shape != (n,):
        raise ValueError(f"{fn}: labels must have shape ({n},) to match the batch, got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64) if arr.dtype != np.int64 else arr


def _scores_2d(x: Tensor, fn: str) -> np.ndarray:
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{fn}: expected (N, C) scores with N, C >= 1, got shape {x.shape}")
    return np.ascontiguousarray(x.data)


def _loss_node(value: float, grad: np.ndarray, x: Tensor, name: str) -> Tensor:
    """A scalar node whose backward hands ``grad`` (d loss / d x) times the incoming g to x."""
    out = _node(np.asarray(value, dtype=x.dtype), (x,), name)
    if out.requires_grad:

        def backward(g):
            x._accumulate(grad.reshape(x.shape) if g == 1 else grad.reshape(x.shape) * g,
                          owned=True)

        out._backward = backward
    return out


def _raise_bad_label(labels: np.ndarray, bad: int, c: int, fn: str) -> None:
    raise ValueError(
        f"{fn}: labels[{bad}] = {labels[bad]} is not a class index in [0, {c})"
    )


def _class_loss(kernel, scores, labels, name: str, *options) -> Tensor:
    """A loss over (N, C) scores and class labels: one kernel writes the gradient, checks the
    labels and returns the total."""
    scores = _as_tensor(scores, f"{name} scores")
    z = _scores_2d(scores, name)
    n, c = z.shape
    y = _check_labels(labels, n, name)
    grad = _pool.get(f"{name}/grad", z.shape, z.dtype)
    partial = _pool.get(f"{name}/partial", (K.n_chunks(n),), np.float64)
    bad, total = kernel(z.size)(z, y, *options, grad, partial)
    if bad >= 0:
        _raise_bad_label(y, bad, c, name)
    return _loss_node(total / n, grad, scores, name)


def _elementwise_loss(kernel, pred, target, name: str) -> Tensor:
    """A mean over the elements of ``pred`` against a ``target`` of the same shape."""
    pred, p, t = _pair(pred, target, name)
    grad = _pool.get(f"{name}/grad", p.shape, p.dtype)
    partial = _pool.get(f"{name}/partial", (K.n_chunks(p.size),), np.float64)
    total = kernel(p.size)(p, t, grad, partial)
    return _loss_node(total / p.size, grad, pred, name)


def cross_entropy(logits, labels) -> Tensor:
    """Mean softmax cross-entropy.

    Parameters
    ----------
    logits : Tensor (N, C) of unnormalized scores.
    labels : int array (N,) of class indices in [0, C).

    Returns
    -------
    Tensor, scalar: (1/N) sum_i [logsumexp(z_i) - z_i,labels_i].
    """
    return _class_loss(K.softmax_cross_entropy, logits, labels, "cross_entropy")


def multiclass_hinge(scores, labels, margin: float = 1.0) -> Tensor:
    """Mean multiclass SVM loss: (1/N) sum_i sum_{j != y_i} max(0, s_ij - s_i,y_i + margin).

    scores : Tensor (N, C); labels : int array (N,) in [0, C); margin : > 0 usually 1.
    """
    return _class_loss(K.multiclass_hinge, scores, labels, "multiclass_hinge", float(margin))


def _pair(pred, target, fn: str) -> tuple[Tensor, np.ndarray, np.ndarray]:
    pred = _as_tensor(pred, f"{fn} input")
    t = target.data if isinstance(target, Tensor) else as_float_array(target, name=f"{fn} target")
    if t.shape != pred.shape:
        raise ValueError(f"{fn}: target shape {t.shape} does not match input shape {pred.shape}")
    if pred.size == 0:
        raise ValueError(f"{fn}: empty input of shape {pred.shape}")
    p = np.ascontiguousarray(pred.data).reshape(-1)
    return pred, p, np.ascontiguousarray(t, dtype=p.dtype).reshape(-1)


def mse_loss(pred, target) -> Tensor:
    """Mean squared error over all elements; ``target`` has ``pred``'s shape (no gradient)."""
    return _elementwise_loss(K.mse, pred, target, "mse_loss")


def binary_cross_entropy_with_logits(logits, target) -> Tensor:
    """Mean of max(z, 0) - z t + log(1 + exp(-|z|)) over all elements; targets in [0, 1]."""
    return _elementwise_loss(K.bce_with_logits, logits, target,
                             "binary_cross_entropy_with_logits")


class _Loss:
    """A loss as a callable object, like ``torch.nn.CrossEntropyLoss()``."""

    fn = staticmethod(cross_entropy)

    def __call__(self, input, target) -> Tensor:
        return type(self).fn(input, target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CrossEntropyLoss(_Loss):
    fn = staticmethod(cross_entropy)


class MSELoss(_Loss):
    fn = staticmethod(mse_loss)


class BCEWithLogitsLoss(_Loss):
    fn = staticmethod(binary_cross_entropy_with_logits)


class MultiClassHingeLoss(_Loss):
    def __init__(self, margin: float = 1.0):
        self.margin = float(margin)

    def __call__(self, input, target) -> Tensor:
        return multiclass_hinge(input, target, self.margin)

    def __repr__(self) -> str:
        return f"MultiClassHingeLoss(margin={self.margin})"


__all__ = [
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "MSELoss",
    "MultiClassHingeLoss",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "mse_loss",
    "multiclass_hinge",
]
