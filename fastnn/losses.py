"""Losses: one kernel computes each loss and its gradient; one graph node applies it.

PyTorch's names, signatures, defaults and formulas (``fastnn.kernels.losses`` documents each
formula); ``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-element or
per-sample losses) throughout:

- ``cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
  label_smoothing=0.0)``: softmax + negative log-likelihood. ``input`` is (N, C), (C,) for
  one sample, or (N, C, d1, ...); ``target`` holds class indices (N,) / () / (N, d1, ...),
  or class probabilities of ``input``'s shape. The plain call (no options) is one fused
  kernel; the options are another.
- ``nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean")`` on
  log-probabilities (after ``log_softmax``).
- ``mse_loss``, ``l1_loss``, ``huber_loss(..., delta=1.0)``,
  ``smooth_l1_loss(..., beta=1.0)``: ``target`` has ``input``'s shape ((N,), (N, K), ...).
- ``binary_cross_entropy(input, target, weight=None)`` on probabilities,
  ``binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None)`` on logits
  (stable for any logit).
- ``multiclass_hinge(scores, labels, margin=1.0)``: the multiclass SVM loss, summed over the
  wrong classes and averaged over the batch (cs231n's form; torch's ``multi_margin_loss``
  also divides by the number of classes).

Class forms as in ``torch.nn``: ``CrossEntropyLoss``, ``NLLLoss``, ``MSELoss``, ``L1Loss``,
``HuberLoss``, ``SmoothL1Loss``, ``BCELoss``, ``BCEWithLogitsLoss``, ``MultiClassHingeLoss``.
Class-index targets may be integer arrays or Tensors, or fastnn (floating) Tensors of whole
numbers.
"""

from __future__ import annotations

import numpy as np

from ._buffers import BufferPool
from ._dtype import as_float_array, empty_marker
from .graph import Tensor, node
from .kernels import losses as K

_pool = BufferPool()
_REDUCTIONS = ("mean", "sum", "none")


def _as_tensor(x, name: str) -> Tensor:
    if isinstance(x, Tensor):
        if x.dtype.kind != "f":
            return Tensor(x.data)  # an integer Tensor as input: the default float dtype
        return x
    return Tensor(as_float_array(x, name=name))


def _check_reduction(reduction, fn: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _label_array(labels, fn: str) -> np.ndarray:
    """Class indices as an int64 array (whole-number floating Tensors count as indices)."""
    arr = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if isinstance(labels, Tensor) and arr.dtype.kind == "f" and np.isfinite(arr).all() \
            and (arr == np.round(arr)).all():
        arr = arr.astype(np.int64)  # fastnn Tensors are floating: whole numbers are classes
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{fn}: labels must be integer class indices, got dtype {arr.dtype} "
            "(convert with .astype(np.int64) if they are whole numbers)"
        )
    return arr


def _check_labels(labels, n: int, fn: str) -> np.ndarray:
    arr = _label_array(labels, fn)
    if arr.shape != (n,):
        raise ValueError(f"{fn}: labels must have shape ({n},) to match the batch, got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64) if arr.dtype != np.int64 else arr


def _scores_2d(x: Tensor, fn: str) -> np.ndarray:
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{fn}: expected (N, C) scores with N, C >= 1, got shape {x.shape}")
    return np.ascontiguousarray(x.data)


def _loss_node(value: float, grad: np.ndarray, x: Tensor, name: str) -> Tensor:
    """A scalar node whose backward hands ``grad`` (d loss / d x) times the incoming g to x."""
    out = node(np.asarray(value, dtype=x.dtype), (x,), name)
    if out.requires_grad:

        def backward(g):
            if g == 1 and x.grad is None and type(x) is Tensor and grad.shape == x.data.shape \
                    and grad.dtype == x.data.dtype:
                x.grad = grad  # what accumulate_grad(grad, owned=True) does, without its checks
                return
            x.accumulate_grad(grad.reshape(x.shape) if g == 1 else grad.reshape(x.shape) * g,
                              owned=True)

        out.set_backward(backward)
    return out


def _per_item_node(values: np.ndarray, grad: np.ndarray, x: Tensor, name: str) -> Tensor:
    """The ``reduction="none"`` node: ``values`` (one loss per row of ``grad``, or per element),
    ``grad`` the local gradient of each loss; backward scales each row by its incoming g."""
    out = node(values, (x,), name)
    if out.requires_grad:
        rows = values.size

        def backward(g):
            g = np.reshape(g, (rows,) + (1,) * (grad.ndim - 1))
            x.accumulate_grad((grad * g).reshape(x.shape), owned=True)

        out.set_backward(backward)
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


# ------------------------------------------------------------------- class losses
def _class_weight(weight, c: int, dtype, fn: str) -> np.ndarray:
    if weight is None:
        return empty_marker(dtype)
    w = weight.data if isinstance(weight, Tensor) else as_float_array(weight, name=f"{fn} weight")
    if w.shape != (c,):
        raise ValueError(f"{fn}: weight must have shape ({c},), one per class, got {w.shape}")
    return np.ascontiguousarray(w, dtype=dtype)


def _classes_last(x: Tensor, fn: str) -> Tensor:
    """(N, C), (C,) or (N, C, d1, ...) scores as (rows, C): one sample is one row, and the
    extra dimensions of (N, C, d1, ...) become rows (the class axis moved last)."""
    if x.ndim == 1:
        return x.reshape(1, -1)
    if x.ndim > 2:
        order = (0, *range(2, x.ndim), 1)
        return x.permute(order).reshape(-1, x.shape[1])
    return x


def _row_shape(x: Tensor) -> tuple[int, ...]:
    """The shape of the per-sample losses of scores ``x``: (N,), () or (N, d1, ...)."""
    return () if x.ndim == 1 else (x.shape[0], *x.shape[2:])


def _class_inputs(input, target, fn: str):
    """(scores as a Tensor, its (rows, C) form, whether ``target`` holds probabilities)."""
    x = _as_tensor(input, f"{fn} input")
    if x.ndim == 0 or x.shape[-1 if x.ndim == 1 else 1] == 0 or (x.ndim > 1 and x.shape[0] == 0):
        raise ValueError(f"{fn}: expected (N, C), (C,) or (N, C, d1, ...) scores with N, C >= 1, "
                         f"got shape {x.shape}")
    t = np.asarray(target.data if isinstance(target, Tensor) else target)
    probabilities = t.shape == x.shape
    if probabilities and t.dtype.kind != "f":
        raise TypeError(f"{fn}: a target of the input's shape {x.shape} holds class "
                        f"probabilities and must be floating, got dtype {t.dtype} (class "
                        f"indices have shape {_row_shape(x)})")
    return x, _classes_last(x, fn), probabilities


def _flat_labels(target, x: Tensor, fn: str) -> np.ndarray:
    y = _label_array(target, fn)
    if y.shape != _row_shape(x):
        raise ValueError(f"{fn}: labels (class indices) must have shape {_row_shape(x)} for "
                         f"input of shape {x.shape} (or the input's shape, for class "
                         f"probabilities), got {y.shape}")
    return np.ascontiguousarray(y.reshape(-1), dtype=np.int64)


def _general_class_loss(kernel, x: Tensor, rows: Tensor, y: np.ndarray, w, ignore_index: int,
                        reduction: str, name: str, *options) -> Tensor:
    """Cross-entropy or NLL with options: one kernel call writes the gradient (scaled for a
    mean), the per-row losses when asked, and the weight total of the mean."""
    z = np.ascontiguousarray(rows.data)
    n, c = z.shape
    grad = np.empty_like(z)
    loss_rows = np.empty(n, z.dtype) if reduction == "none" else empty_marker(z.dtype)
    partial = _pool.get(f"{name}/partial", (K.n_chunks(n),), np.float64)
    bad, total, w_total = kernel(z.size)(z, y, w, int(ignore_index), *options,
                                         reduction == "mean", grad, loss_rows, partial)
    if bad >= 0:
        _raise_bad_label(y, bad, c, name)
    if reduction == "none":
        return _per_item_node(loss_rows.reshape(_row_shape(x)), grad, rows, name)
    value = total / w_total if reduction == "mean" else total
    return _loss_node(value, grad, rows, name)


def cross_entropy(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy, ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : Tensor (N, C) of unnormalized scores (logits); (C,) for one sample; or
        (N, C, d1, ...) with a class axis 1.
    target : int array (N,) of class indices in [0, C) (shape () / (N, d1, ...) for the other
        inputs), or float class probabilities of ``input``'s shape.
    weight : optional (C,) class weights.
    ignore_index : rows with this label add nothing (and do not count in the mean).
    reduction : "mean" (divided by the total weight of the rows not ignored), "sum", "none".
    label_smoothing : eps in [0, 1]: the target becomes (1 - eps) one-hot + eps / C.

    Returns
    -------
    Tensor: a scalar, or the per-sample losses for ``reduction="none"``. Without options:
    (1/N) sum_i [logsumexp(z_i) - z_i,labels_i].
    """
    fn = "cross_entropy"
    if weight is None and label_smoothing == 0.0 and reduction == "mean" \
            and isinstance(input, Tensor):
        # The training loop's call: (N, C) C-ordered floating scores and (N,) int64 labels,
        # with no conversion to make; a few µs a step less than the checks below.
        z = input.data
        y = target.data if isinstance(target, Tensor) else target
        if type(y) is np.ndarray and y.dtype == np.int64 and z.ndim == 2 \
                and y.shape == z.shape[:1] and z.dtype.kind == "f" and z.size \
                and z.flags.c_contiguous and y.flags.c_contiguous:
            grad = _pool.get("cross_entropy/grad", z.shape, z.dtype)
            partial = _pool.get("cross_entropy/partial", (K.n_chunks(z.shape[0]),),
                                np.float64)
            bad, total = K.softmax_cross_entropy(z.size)(z, y, grad, partial)
            if bad < 0:
                return _loss_node(total / z.shape[0], grad, input, fn)
    if (weight is None and label_smoothing == 0.0 and reduction == "mean"
            and isinstance(input, Tensor) and input.ndim == 2 and input.dtype.kind == "f"
            and np.ndim(target.data if isinstance(target, Tensor) else target) == 1):
        # The plain call, the training hot path: the fused kernel, checked as little as it
        # needs (a label equal to ignore_index leaves it for the general path).
        z = _scores_2d(input, fn)
        y = _check_labels(target, z.shape[0], fn)
        grad = _pool.get(f"{fn}/grad", z.shape, z.dtype)
        partial = _pool.get(f"{fn}/partial", (K.n_chunks(z.shape[0]),), np.float64)
        bad, total = K.softmax_cross_entropy(z.size)(z, y, grad, partial)
        if bad < 0:
            return _loss_node(total / z.shape[0], grad, input, fn)
        if y[bad] != ignore_index:
            _raise_bad_label(y, bad, z.shape[1], fn)
    _check_reduction(reduction, fn)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    x, rows, probabilities = _class_inputs(input, target, fn)
    w = _class_weight(weight, rows.shape[1], x.dtype, fn)
    if probabilities:
        return _soft_cross_entropy(x, rows, target, w, reduction, float(label_smoothing))
    y = _flat_labels(target, x, fn)
    return _general_class_loss(K.cross_entropy_options, x, rows, y, w, ignore_index, reduction,
                               fn, float(label_smoothing))


def _soft_cross_entropy(x: Tensor, rows: Tensor, target, w, reduction: str,
                        smoothing: float) -> Tensor:
    fn = "cross_entropy"
    if isinstance(target, Tensor) and target.requires_grad:
        raise NotImplementedError(f"{fn}: no gradient with respect to probability targets")
    t = target.data if isinstance(target, Tensor) else as_float_array(target, name=f"{fn} target")
    t = _classes_last(Tensor(t.astype(x.dtype, copy=False)), fn).data
    z = np.ascontiguousarray(rows.data)
    n = z.shape[0]
    grad = np.empty_like(z)
    loss_rows = np.empty(n, z.dtype) if reduction == "none" else empty_marker(z.dtype)
    partial = _pool.get(f"{fn}/partial", (K.n_chunks(n),), np.float64)
    scale = 1.0 / n if reduction == "mean" else 1.0
    total = K.cross_entropy_probs(z.size)(z, np.ascontiguousarray(t), w, smoothing, scale, grad,
                                          loss_rows, partial)
    if reduction == "none":
        return _per_item_node(loss_rows.reshape(_row_shape(x)), grad, rows, fn)
    return _loss_node(total * scale, grad, rows, fn)


def nll_loss(input, target, weight=None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities, ``torch.nn.functional.nll_loss``.

    ``input`` (N, C) / (C,) / (N, C, d1, ...) of log-probabilities (``log_softmax``);
    ``target`` class indices; ``weight``, ``ignore_index``, ``reduction`` as
    :func:`cross_entropy`. loss_i = -weight[y_i] input[i, y_i].
    """
    fn = "nll_loss"
    _check_reduction(reduction, fn)
    x, rows, _ = _class_inputs(input, target, fn)
    w = _class_weight(weight, rows.shape[1], x.dtype, fn)
    y = _flat_labels(target, x, fn)
    return _general_class_loss(K.nll, x, rows, y, w, ignore_index, reduction, fn)


def multiclass_hinge(scores, labels, margin: float = 1.0) -> Tensor:
    """Mean multiclass SVM loss: (1/N) sum_i sum_{j != y_i} max(0, s_ij - s_i,y_i + margin).

    scores : Tensor (N, C); labels : int array (N,) in [0, C); margin : > 0 usually 1.
    """
    return _class_loss(K.multiclass_hinge, scores, labels, "multiclass_hinge", float(margin))


# -------------------------------------------------------------- elementwise losses
def _pair(pred, target, fn: str) -> tuple[Tensor, np.ndarray, np.ndarray]:
    pred = _as_tensor(pred, f"{fn} input")
    t = target.data if isinstance(target, Tensor) else as_float_array(target, name=f"{fn} target")
    if t.shape != pred.shape:
        raise ValueError(f"{fn}: target shape {t.shape} does not match input shape {pred.shape} "
                         "(fastnn does not broadcast targets: reshape one of them)")
    if pred.numel() == 0:
        raise ValueError(f"{fn}: empty input of shape {pred.shape}")
    p = np.ascontiguousarray(pred.data).reshape(-1)
    return pred, p, np.ascontiguousarray(t, dtype=p.dtype).reshape(-1)


def _elementwise_weight(w, shape, dtype, fn: str, what: str) -> np.ndarray:
    """An optional weight broadcast to the input's shape, flat; (0,) for none."""
    if w is None:
        return empty_marker(dtype)
    arr = w.data if isinstance(w, Tensor) else as_float_array(w, name=f"{fn} {what}")
    try:
        full = np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"{fn}: {what} of shape {arr.shape} does not broadcast to the input's "
                         f"shape {shape}") from None
    return np.ascontiguousarray(full, dtype=dtype).reshape(-1)


def _elementwise_loss(kernel, pred, target, name: str, reduction: str = "mean", *options,
                      weights=(), residual: bool = False) -> Tensor:
    """A loss over the elements of ``pred`` against a ``target`` of the same shape.

    ``residual``: the loss depends on pred - target only, so a target that requires grad
    gets the negated gradient (as PyTorch gives it)."""
    _check_reduction(reduction, name)
    pred, p, t = _pair(pred, target, name)
    target_grad = isinstance(target, Tensor) and target.requires_grad
    if target_grad and not residual:
        raise NotImplementedError(f"{name}: no gradient with respect to the target")
    n = p.size
    scale = 1.0 / n if reduction == "mean" else 1.0
    per_item = reduction == "none"
    grad = np.empty_like(p) if per_item or target_grad else \
        _pool.get(f"{name}/grad", p.shape, p.dtype)
    loss_out = np.empty_like(p) if per_item else empty_marker(p.dtype)
    partial = _pool.get(f"{name}/partial", (K.n_chunks(n),), np.float64)
    result = kernel(n)(p, t, *options, *weights, scale, grad, loss_out, partial)
    total = result
    if isinstance(result, tuple):  # kernels that check their input's range
        bad, total = result
        if bad >= 0:
            which = "input" if not 0 <= p[bad] <= 1 else "target"
            raise ValueError(f"{name}: every {which} element must be in [0, 1], got "
                             f"{(p if which == 'input' else t)[bad]} at flat index {bad}")
    if not target_grad:
        if per_item:
            return _per_item_node(loss_out.reshape(pred.shape), grad, pred, name)
        return _loss_node(total * scale, grad, pred, name)
    out = node(loss_out.reshape(pred.shape) if per_item else np.asarray(total * scale,
                                                                          dtype=p.dtype),
                (pred, target), name)
    if out.requires_grad:
        shape = pred.shape

        def backward(g):
            dp = grad.reshape(shape) * (np.reshape(g, shape) if per_item else g)
            if target.requires_grad:
                target.accumulate_grad(-dp, owned=True)
            if pred.requires_grad:
                pred.accumulate_grad(dp, owned=True)

        out.set_backward(backward)
    return out


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    """Squared error (input - target)^2, ``torch.nn.functional.mse_loss``; ``target`` has the
    input's shape; reduced by ``reduction``."""
    return _elementwise_loss(K.mse, input, target, "mse_loss", reduction, residual=True)


def l1_loss(input, target, reduction: str = "mean") -> Tensor:
    """Absolute error |input - target|, ``torch.nn.functional.l1_loss``; ``target`` has the
    input's shape ((N,) or (N, K), ...); reduced by ``reduction``. Gradient sign(r), 0 at 0."""
    return _elementwise_loss(K.l1, input, target, "l1_loss", reduction, residual=True)


def _check_positive(value, name: str, fn: str, allow_zero: bool = False) -> float:
    v = float(value)
    if not (v > 0 or (allow_zero and v == 0)):
        raise ValueError(f"{fn}: {name} must be {'non-negative' if allow_zero else 'positive'}, "
                         f"got {value!r}")
    return v


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """Huber loss, ``torch.nn.functional.huber_loss``: with r = input - target,
    r^2 / 2 where |r| < delta, else delta (|r| - delta / 2); ``target`` has the input's shape;
    reduced by ``reduction``."""
    d = _check_positive(delta, "delta", "huber_loss")
    return _elementwise_loss(K.huber, input, target, "huber_loss", reduction, d, 1.0,
                             residual=True)


def smooth_l1_loss(input, target, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """Smooth L1 loss, ``torch.nn.functional.smooth_l1_loss``: r^2 / (2 beta) where
    |r| < beta, else |r| - beta / 2 (huber_loss / beta); ``beta=0`` is the L1 loss."""
    b = _check_positive(beta, "beta", "smooth_l1_loss", allow_zero=True)
    if b == 0.0:
        return _elementwise_loss(K.l1, input, target, "smooth_l1_loss", reduction, residual=True)
    return _elementwise_loss(K.huber, input, target, "smooth_l1_loss", reduction, b, 1.0 / b,
                             residual=True)


def binary_cross_entropy(input, target, weight=None, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of probabilities, ``torch.nn.functional.binary_cross_entropy``:
    -w [t log p + (1 - t) log(1 - p)], each log clamped at -100 as PyTorch does. ``input`` and
    ``target`` in [0, 1] (anything else raises), same shape; ``weight`` broadcasts to it."""
    x = _as_tensor(input, "binary_cross_entropy input")
    w = _elementwise_weight(weight, x.shape, x.dtype, "binary_cross_entropy", "weight")
    return _elementwise_loss(K.bce, x, target, "binary_cross_entropy", reduction, weights=(w,))


def binary_cross_entropy_with_logits(input, target, weight=None, reduction: str = "mean",
                                     pos_weight=None) -> Tensor:
    """Binary cross-entropy on logits, ``torch.nn.functional.binary_cross_entropy_with_logits``:
    max(z, 0) - z t + log(1 + exp(-|z|)) without weights (stable for any logit); ``weight``
    broadcasts to the input, ``pos_weight`` weighs the positive term (one per class, last
    axis). Targets in [0, 1], the input's shape."""
    fn = "binary_cross_entropy_with_logits"
    x = _as_tensor(input, f"{fn} input")
    w = _elementwise_weight(weight, x.shape, x.dtype, fn, "weight")
    pw = _elementwise_weight(pos_weight, x.shape, x.dtype, fn, "pos_weight")
    return _elementwise_loss(K.bce_with_logits, x, target, fn, reduction, weights=(w, pw))


# ----------------------------------------------------------------- class forms
class _Loss:
    """A loss as a callable object, like ``torch.nn.CrossEntropyLoss()``."""

    def __init__(self, reduction: str = "mean"):
        self.reduction = _check_reduction(reduction, type(self).__name__)

    def __call__(self, input, target) -> Tensor:
        return self.forward(input, target)

    def _options(self) -> dict:
        return {"reduction": self.reduction}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._options().items()
                          if not (k == "reduction" and v == "mean"))
        return f"{type(self).__name__}({shown})"


class CrossEntropyLoss(_Loss):
    """``cross_entropy`` as an object: ``CrossEntropyLoss(weight=None, ignore_index=-100,
    reduction="mean", label_smoothing=0.0)``."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    def forward(self, input, target) -> Tensor:
        return cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                             self.label_smoothing)

    def _options(self):
        opts = {"reduction": self.reduction}
        if self.ignore_index != -100:
            opts["ignore_index"] = self.ignore_index
        if self.label_smoothing:
            opts["label_smoothing"] = self.label_smoothing
        return opts


class NLLLoss(_Loss):
    """``nll_loss`` as an object: ``NLLLoss(weight=None, ignore_index=-100, reduction="mean")``."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, int(ignore_index)

    def forward(self, input, target) -> Tensor:
        return nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class MSELoss(_Loss):
    """``mse_loss`` as an object: ``MSELoss(reduction="mean")``."""

    def forward(self, input, target) -> Tensor:
        return mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """``l1_loss`` as an object: ``L1Loss(reduction="mean")``."""

    def forward(self, input, target) -> Tensor:
        return l1_loss(input, target, self.reduction)


class HuberLoss(_Loss):
    """``huber_loss`` as an object: ``HuberLoss(reduction="mean", delta=1.0)``."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = _check_positive(delta, "delta", "HuberLoss")

    def forward(self, input, target) -> Tensor:
        return huber_loss(input, target, self.reduction, self.delta)

    def _options(self):
        return {"reduction": self.reduction, "delta": self.delta}


class SmoothL1Loss(_Loss):
    """``smooth_l1_loss`` as an object: ``SmoothL1Loss(reduction="mean", beta=1.0)``."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        self.beta = _check_positive(beta, "beta", "SmoothL1Loss", allow_zero=True)

    def forward(self, input, target) -> Tensor:
        return smooth_l1_loss(input, target, self.reduction, self.beta)

    def _options(self):
        return {"reduction": self.reduction, "beta": self.beta}


class BCELoss(_Loss):
    """``binary_cross_entropy`` as an object: ``BCELoss(weight=None, reduction="mean")``."""

    def __init__(self, weight=None, reduction: str = "mean"):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input, target) -> Tensor:
        return binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """``binary_cross_entropy_with_logits`` as an object: ``BCEWithLogitsLoss(weight=None,
    reduction="mean", pos_weight=None)``."""

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, input, target) -> Tensor:
        return binary_cross_entropy_with_logits(input, target, self.weight, self.reduction,
                                                self.pos_weight)


class MultiClassHingeLoss(_Loss):
    """``multiclass_hinge`` as an object: ``MultiClassHingeLoss(margin=1.0)``."""

    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = float(margin)

    def forward(self, input, target) -> Tensor:
        return multiclass_hinge(input, target, self.margin)

    def _options(self):
        return {"margin": self.margin}


__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "HuberLoss",
    "L1Loss",
    "MSELoss",
    "MultiClassHingeLoss",
    "NLLLoss",
    "SmoothL1Loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "huber_loss",
    "l1_loss",
    "mse_loss",
    "multiclass_hinge",
    "nll_loss",
    "smooth_l1_loss",
]
