"""Numerical gradient checking: centred differences in float64 against backpropagation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .graph import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when an analytic gradient disagrees with the numeric one."""

    def __init__(self, report: GradcheckReport):
        self.report = report
        super().__init__(str(report))


@dataclass
class GradcheckReport:
    """The outcome of :func:`gradcheck`.

    Attributes
    ----------
    ok : bool
        True when every element satisfied ``|analytic - numeric| <= atol + rtol * |numeric|``.
    max_rel_error : list of float
        Per input, the largest ``|a - n| / max(|a|, |n|, 1e-12)`` over its elements.
    failures : list of str
        One line per input that failed: the input, the worst element, both values.
    projected : bool
        True when the function's output was not a scalar and the check used the random
        projection ``sum(output * r)`` (a vector-Jacobian product) instead.
    """

    ok: bool
    max_rel_error: list[float]
    failures: list[str] = field(default_factory=list)
    projected: bool = False

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        errs = ", ".join(f"input {i}: {e:.3g}" for i, e in enumerate(self.max_rel_error))
        head = "gradcheck passed" if self.ok else "gradcheck FAILED"
        lines = [f"{head} (max relative error per input: {errs})"]
        lines += ["  " + f for f in self.failures]
        return "\n".join(lines)


def _scalar_of(fn, inputs, projection):
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a fastnn Tensor, got {type(out).__name__}")
    if projection is None:
        return out
    return (out * projection).sum()


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence,
    eps: float = 1e-6,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    raise_exception: bool = True,
    seed: int = 0,
) -> GradcheckReport:
    """Compare ``fn``'s backpropagated gradients with centred differences, in float64.

    Each input is copied to float64 and, element by element, nudged by ``±eps``:
    ``numeric = (f(x + eps) - f(x - eps)) / (2 eps)`` with ``f = fn(*inputs)`` reduced to a
    scalar (if ``fn`` returns a non-scalar ``y``, ``f = sum(y * r)`` for a fixed random ``r``,
    which checks the vector-Jacobian product that backward computes).

    Parameters
    ----------
    fn : callable taking ``len(inputs)`` Tensors and returning a Tensor.
    inputs : sequence of Tensor or array_like
        The points at which to check; every input is differentiated. float64 Tensors that
        require grad (such as the Parameters of a float64 model) are nudged in place and
        restored, with their ``.grad`` put back afterwards; arrays and Tensors that do not
        require grad are copied to float64 and never modified. A float32 Tensor that
        requires grad raises TypeError: its float64 copy would not be what ``fn`` reads.
    eps : step of the centred difference.
    rtol, atol : an element passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    raise_exception : raise :class:`GradcheckError` on failure (default), else return a
        report that is falsy.
    seed : seed of the projection ``r`` for non-scalar outputs.

    Returns
    -------
    GradcheckReport
        ``ok``, the largest relative error per input, and the failures.
    """
    if len(inputs) == 0:
        raise ValueError("gradcheck: inputs is empty; pass the tensors to differentiate")
    for k, t in enumerate(inputs):
        # Such a tensor would be checked through a float64 copy, which a function that
        # reads the original (a float32 model's own Parameter) never sees: analytic and
        # numeric gradients would both be 0 and the check would pass without checking.
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {k} is a {t.dtype} Tensor that requires grad "
                            "(a parameter of a float32 model?); gradcheck perturbs inputs in "
                            "float64: convert the model with .double() (or pass float64 "
                            "tensors)")
    # float64 Tensors are used as they are (a model's Parameters must be perturbed in place
    # for the model to see it); anything else is copied to a new float64 Tensor.
    xs = [
        t if isinstance(t, Tensor) and t.dtype == np.float64 and t.requires_grad
        else Tensor(np.array(t.data if isinstance(t, Tensor) else t, dtype=np.float64), True)
        for t in inputs
    ]
    saved_grads = [x.grad for x in xs]
    try:
        return _check(fn, xs, eps, rtol, atol, raise_exception, seed)
    finally:
        for x, g in zip(xs, saved_grads, strict=True):
            x.grad = g


def _check(fn, xs, eps, rtol, atol, raise_exception, seed) -> GradcheckReport:
    with no_grad():
        probe = fn(*xs)
    projection = None
    if isinstance(probe, Tensor) and probe.numel() != 1:
        projection = Tensor(np.random.default_rng(seed).standard_normal(probe.shape))

    for x in xs:
        x.grad = None
    _scalar_of(fn, xs, projection).backward()
    analytic = [np.zeros_like(x.data) if x.grad is None else x.grad.copy() for x in xs]

    max_rel, failures = [], []
    with no_grad():
        for k, x in enumerate(xs):
            flat = x.data.reshape(-1)  # a view: nudging it nudges the input
            numeric = np.empty(flat.size)
            for i in range(flat.size):
                orig = flat[i]
                flat[i] = orig + eps
                f_plus = _scalar_of(fn, xs, projection).item()
                flat[i] = orig - eps
                f_minus = _scalar_of(fn, xs, projection).item()
                flat[i] = orig
                numeric[i] = (f_plus - f_minus) / (2 * eps)
            a = analytic[k].reshape(-1)
            diff = np.abs(a - numeric)
            rel = diff / np.maximum(np.maximum(np.abs(a), np.abs(numeric)), 1e-12)
            max_rel.append(float(rel.max()) if rel.size else 0.0)
            bad = diff > atol + rtol * np.abs(numeric)
            if bad.any():
                j = int(np.argmax(np.where(bad, diff, -1.0)))
                idx = np.unravel_index(j, x.shape) if x.ndim else ()
                failures.append(
                    f"input {k} (shape {x.shape}): {int(bad.sum())} of {flat.size} elements "
                    f"differ; worst at index {tuple(int(v) for v in idx)}: analytic {a[j]:.10g} "
                    f"vs numeric {numeric[j]:.10g}"
                )
    report = GradcheckReport(not failures, max_rel, failures, projection is not None)
    if failures and raise_exception:
        raise GradcheckError(report)
    return report


def check_every_layer(seed: int = 0) -> list[tuple[str, float, bool]]:
    """:func:`gradcheck` of every layer (with its parameters) and every loss, in float64,
    on small random inputs: ``(name, largest relative error, passed)`` per row (the table
    of ``fastnn gradcheck``)."""
    from . import losses
    from .graph import sigmoid as losses_sigmoid
    from .nn import layers as L
    from .nn.module import Sequential

    rng = np.random.default_rng(seed)
    f64 = np.float64
    x = rng.standard_normal((6, 5))
    labels = np.array([0, 1, 2, 0, 1, 2])
    modules = [
        ("Linear", L.Linear(5, 3, dtype=f64)),
        *[(f"Linear+{a}", L.Linear(5, 3, activation=a, dtype=f64))
          for a in ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "gelu_tanh",
                    "silu")],
        ("BatchNorm1d (train)", L.BatchNorm1d(5, dtype=f64)),
        ("BatchNorm1d+ReLU", Sequential(L.BatchNorm1d(5, dtype=f64), L.ReLU())),
        ("BatchNorm1d (eval)", L.BatchNorm1d(5, dtype=f64).eval()),
        ("PReLU", L.PReLU(5, dtype=f64)),
        ("Maxout", L.Maxout(5, 3, pieces=3, dtype=f64)),
        ("Dropout (p=0)", L.Dropout(0.0)),
        ("LayerNorm", L.LayerNorm(5, dtype=f64)),
        ("LayerNorm+GELU", Sequential(L.LayerNorm(5, dtype=f64), L.GELU())),
    ]
    rows = []
    for name, module in modules:
        params = list(module.parameters())
        rep = gradcheck(lambda x, *ps, m=module: m(x), [x, *params], raise_exception=False)
        rows.append((name, max(rep.max_rel_error), rep.ok))
    emb = L.Embedding(7, 4, dtype=f64)  # (padding_idx: no gradient by design, as PyTorch)
    idx = np.array([[1, 0, 6], [3, 3, 2]])  # a repeated index: its gradients add up
    rep = gradcheck(lambda w: emb(idx), [emb.weight], raise_exception=False)
    rows.append(("Embedding", max(rep.max_rel_error), rep.ok))
    target = rng.standard_normal((6, 3))
    probs = 1 / (1 + np.exp(-rng.standard_normal((6, 3))))
    for name, fn in (("cross_entropy", lambda z: losses.cross_entropy(z, labels)),
                     ("cross_entropy (weight, smoothing)", lambda z: losses.cross_entropy(
                         z, labels, weight=np.array([1.0, 2.0, 0.5]), label_smoothing=0.1)),
                     ("nll_loss", lambda z: losses.nll_loss(z, labels)),
                     ("multiclass_hinge", lambda z: losses.multiclass_hinge(z, labels)),
                     ("mse_loss", lambda z: losses.mse_loss(z, target)),
                     ("l1_loss", lambda z: losses.l1_loss(z, target)),
                     ("huber_loss", lambda z: losses.huber_loss(z, target, delta=0.5)),
                     ("smooth_l1_loss", lambda z: losses.smooth_l1_loss(z, target, beta=0.5)),
                     ("binary_cross_entropy", lambda z: losses.binary_cross_entropy(
                         losses_sigmoid(z), probs)),
                     ("bce_with_logits", lambda z: losses.binary_cross_entropy_with_logits(
                         z, np.ones((6, 3)) * 0.3))):
        rep = gradcheck(fn, [rng.standard_normal((6, 3))], raise_exception=False)
        rows.append((name, max(rep.max_rel_error), rep.ok))
    return rows
