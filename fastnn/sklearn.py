"""scikit-learn estimators on fastnn: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``
(scikit-learn 1.9's constructor, defaults, fitted attributes and formulas; the installed
scikit-learn's utilities validate the input), built from fastnn's layers (``Linear``,
``BatchNorm1d``, ``Dropout``, the activations), losses and optimizers and trained by
fastnn's one training loop, :func:`fastnn.train.fit`:

- the per-batch formulas of scikit-learn live in :class:`_MLPStep` (a
  :class:`fastnn.train.LocalStep`): the L2 term 0.5 * alpha * ||W||^2 / batch on the
  weights only (its gradient through the optimizer's per-group ``weight_decay``, set to
  alpha / batch before each step), scikit-learn's Adam (its epsilon placement, by setting
  the group's ``eps`` to epsilon / sqrt(1 - beta_2^t) before step t) and SGD (momentum
  buffers rescaled when the learning rate changes, so that torch's SGD formula gives
  scikit-learn's velocities);
- the per-epoch bookkeeping (``loss_curve_``, ``tol`` / ``n_iter_no_change``, early
  stopping with the best weights restored, the ``invscaling`` and ``adaptive`` learning
  rates, ``ConvergenceWarning``) lives in :class:`_EpochBookkeeping` (a
  :class:`fastnn.train.Callback`);
- ``solver='lbfgs'`` is ``scipy.optimize.minimize(method="L-BFGS-B")`` over one float64
  vector laid out as scikit-learn packs it (all weights, then all biases), the loss and
  gradient of the whole data set from one fastnn forward and backward pass.

With the same ``random_state`` the initial weights are scikit-learn's (its Glorot-uniform
draw, in its order), the batches are scikit-learn's (its shuffles), and in float64 the loss
curves, weights and predictions agree with scikit-learn's to rounding (see
``tests/test_sklearn.py``). Beyond scikit-learn (off by default): ``batchnorm``, ``dropout``,
``class_weight`` (classifier), ``dtype``, the solvers ``rmsprop``, ``adagrad`` and
``adamw`` (torch.optim's formulas, as fastnn.optim has them), every fastnn activation and
``validation_loss_curve_``.

Sparse X (SciPy CSR or CSC, ``csr_matrix`` or ``csr_array``; other formats are converted to
CSR by scikit-learn's validation) is never densified whole: CSC is converted to CSR once
(batches are rows), and each batch's rows are densified into the batch buffer by
``fastnn.kernels.sparse.csr_rows_to_dense``; prediction and lbfgs go block by block. With
the same ``random_state`` the fit and its predictions are bit for bit those of
``X.toarray()``.

Needs scikit-learn >= 1.6 (``pip install 'fastnn[sklearn]'``).
"""

from __future__ import annotations

import inspect
import math
import warnings
from itertools import pairwise
from numbers import Integral, Real

import numpy as np

try:
    import scipy.optimize
    import scipy.sparse
    from scipy.special import xlogy
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d, gen_batches, shuffle
    from sklearn.utils._param_validation import (
        Interval,
        InvalidParameterError,
        Options,
        StrOptions,
        validate_parameter_constraints,
    )
    from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (
        _check_partial_fit_first_call,
        type_of_target,
        unique_labels,
    )
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "fastnn.sklearn needs scikit-learn >= 1.6: pip install 'fastnn[sklearn]' "
        f"({exc})"
    ) from exc

from . import losses, nn, optim
from .data import ArrayDataset, DataError, row_taker
from .graph import Tensor, exp, no_grad, sigmoid, softmax
from .kernels.sparse import csr_rows_to_dense
from .optim.optimizers import sum_of_squares, sum_of_squares_chunks
from .train import Callback, LocalStep, NonFiniteLoss, TrainingDiverged, graph_step
from .train import fit as train_fit
from .train import predict as model_outputs

__all__ = ["MLPClassifier", "MLPRegressor"]

#: scikit-learn's hidden activations, then fastnn's further names ("logistic" is Sigmoid).
_ACTIVATIONS = {
    "identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
    "linear": "identity", "sigmoid": "sigmoid", "leaky_relu": "leaky_relu", "elu": "elu",
    "gelu": "gelu", "gelu_tanh": "gelu_tanh", "silu": "silu", "swish": "silu",
    "prelu": "prelu",
}
#: Newer scikit-learn counts the classes of "balanced" by sample weight (older: by rows).
_BALANCED_BY_WEIGHT = "sample_weight" in inspect.signature(compute_class_weight).parameters
#: Solvers that train on mini-batches through fastnn.train.fit (partial_fit works for them).
_STOCHASTIC_SOLVERS = ("sgd", "adam", "rmsprop", "adagrad", "adamw")
_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


# ------------------------------------------------------------------------------ losses
class _OutputLoss:
    """scikit-learn's loss for an output activation, from fastnn's losses.

    ``loss(outputs, targets, sample_weight=None) -> (graph, value)``: ``graph`` is the
    Tensor to backpropagate, whose gradient with respect to the outputs z (N, K) is
    scikit-learn's ``deltas[last] / sw_sum`` = (act(z) - y) * w / sum(w); ``value`` is
    scikit-learn's loss value (without the L2 term):

    - ``softmax`` (multiclass): cross-entropy, mean over the batch (``targets``: class
      indices (N,));
    - ``logistic`` (binary, multilabel): binary cross-entropy on the logits summed over the
      K labels, mean over the batch (``targets``: (N, K) of 0/1);
    - ``identity`` (squared error): value 0.5 * mean over the N*K elements of (z - y)^2, as
      scikit-learn reports it; its gradient is scikit-learn's, that of
      0.5 * sum((z - y)^2) / N (K times the value's, for K outputs);
    - ``exp`` (poisson, log link): sum over the K outputs of the mean half Poisson deviance
      exp(z) - y z + xlogy(y, y) - y.

    scikit-learn clips probabilities at float64's eps in its log loss; fastnn's losses on
    logits need no clipping, so the values differ (by up to 2.2e-16 per sample) only where a
    probability is within eps of 0 or 1.
    """

    def __init__(self, activation: str, n_outputs: int):
        self.activation, self.n_outputs = activation, int(n_outputs)

    def __call__(self, z: Tensor, y: np.ndarray, sample_weight=None) -> tuple[Tensor, float]:
        graph = self.graph(z, y, sample_weight)
        return graph, self.value(graph.item(), y, sample_weight)

    def graph(self, z: Tensor, y: np.ndarray, sample_weight=None) -> Tensor:
        """The scalar Tensor to backpropagate (see the class docstring)."""
        k = self.n_outputs
        if sample_weight is None:
            if self.activation == "softmax":
                return losses.cross_entropy(z, y)
            if self.activation == "logistic":
                graph = losses.binary_cross_entropy_with_logits(z, y)
                return graph if k == 1 else graph * float(k)
            if self.activation == "identity":
                return losses.mse_loss(z, y) * (0.5 * k)
            return (exp(z) - z * Tensor(y)).sum() * (1.0 / len(y))
        scale = self._scale(sample_weight, z.dtype)
        if self.activation == "softmax":
            per_sample = losses.cross_entropy(z, y, reduction="none")
            return (per_sample * Tensor(scale)).sum()
        if self.activation == "logistic":
            return losses.binary_cross_entropy_with_logits(z, y, weight=scale[:, None],
                                                           reduction="sum")
        if self.activation == "identity":
            return (losses.mse_loss(z, y, reduction="none") * Tensor(scale[:, None])).sum() * 0.5
        return ((exp(z) - z * Tensor(y)) * Tensor(scale[:, None])).sum()

    def value(self, graph_value: float, y: np.ndarray, sample_weight=None, dtype=None) -> float:
        """scikit-learn's loss value from the value of :meth:`graph`."""
        if self.activation == "identity":
            return graph_value / self.n_outputs
        if self.activation == "exp":
            if sample_weight is None:
                return graph_value + float((xlogy(y, y) - y).sum()) / len(y)
            scale = self._scale(sample_weight, dtype)
            return graph_value + float(((xlogy(y, y) - y) * scale[:, None]).sum())
        return graph_value

    @staticmethod
    def _scale(sample_weight, dtype) -> np.ndarray:
        w = np.asarray(sample_weight, dtype=dtype)
        return w / w.sum()  # each sample's share of the weighted mean

    def for_batches(self, sample_weight) -> object:
        """The loss as ``loss(z, y) -> Tensor`` for the batches of one fit (a stable object,
        so that the compiled step is made once): ``fastnn.losses.cross_entropy`` itself for
        unweighted softmax outputs (the compiled step's fused kernel), else a
        :class:`_BatchGraph` whose ``sample_weight`` the step sets per batch."""
        if sample_weight is None and self.activation == "softmax":
            return losses.cross_entropy
        bound = self.__dict__.get("_bound")
        if bound is None:
            bound = self._bound = _BatchGraph(self)
        return bound


class _BatchGraph:
    """``_OutputLoss.graph`` with the batch's sample weights bound (see ``for_batches``)."""

    def __init__(self, loss: _OutputLoss):
        self.loss, self.sample_weight = loss, None

    def __call__(self, z: Tensor, y: np.ndarray) -> Tensor:
        return self.loss.graph(z, y, self.sample_weight)


# ------------------------------------------------------------------------ sparse X
#: Rows per block of predict's forward passes: fastnn.train.predict's batch size, so that a
#: sparse X goes through the model in the same blocks as its dense twin (the same bits).
_PREDICT_ROWS = 1024
#: Elements (rows x features) of a densified block of sparse X in lbfgs' whole-data loss.
#: A sparse X up to this size is densified once (then lbfgs is bit for bit dense lbfgs);
#: larger, its loss and gradient are summed over blocks of rows (32 MB in float64).
_LBFGS_BLOCK_ELEMENTS = 1 << 22


def _canonical_csr(X):
    """A sparse X as CSR in canonical format (no column twice in a row), as
    :func:`fastnn.kernels.sparse.csr_rows_to_dense` needs it. CSC is converted once (a copy
    of its stored values, never a dense array); a CSR with duplicate entries is copied
    before they are summed, so the caller's matrix is never changed."""
    X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def _n_rows(X) -> int:
    return X.shape[0]  # len() is ambiguous for scipy's sparse matrices and arrays


def _densify_rows(X, rows, out: np.ndarray) -> np.ndarray:
    """``out[:] = X[rows].toarray()`` for a canonical CSR X: ``rows`` an int64 index array,
    or a slice of consecutive rows; returns ``out``."""
    b, d = out.shape
    if isinstance(rows, slice):
        idx, start = np.empty(0, np.int64), rows.start
    else:
        idx, start = rows, 0
    csr_rows_to_dense(b * d)(X.data, X.indices, X.indptr, idx, start, out)
    return out


def _sparse_outputs(model, X, dtype) -> np.ndarray:
    """``fastnn.train.predict(model, X.toarray())`` for a canonical CSR X, densifying one
    block of :data:`_PREDICT_ROWS` rows at a time into one reused buffer."""
    n, d = X.shape
    buf = np.empty((min(n, _PREDICT_ROWS), d), dtype)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            outs = []
            for lo in range(0, n, _PREDICT_ROWS):
                hi = min(n, lo + _PREDICT_ROWS)
                outs.append(np.array(model(_densify_rows(X, slice(lo, hi), buf[:hi - lo])).data))
    finally:
        model.train(was_training)
    return np.concatenate(outs)


def _outputs(model, X, dtype) -> np.ndarray:
    """The model's outputs (N, K) for a dense X (cast to ``dtype``) or a canonical CSR X."""
    if scipy.sparse.issparse(X):
        return _sparse_outputs(model, X, dtype)
    return model_outputs(model, np.asarray(X, dtype=dtype))


# ----------------------------------------------------------------------------- network
def _build_model(layer_units: list[int], activation: str, batchnorm: bool,
                 dropout: list[float], dtype: np.dtype, dropout_seeds) -> nn.Sequential:
    """Linear -> [BatchNorm1d] -> activation -> [Dropout] per hidden layer, then Linear
    (the output's activation belongs to the loss)."""
    layers: list[nn.Module] = []
    last = len(layer_units) - 2
    for i, (d_in, d_out) in enumerate(pairwise(layer_units)):
        layers.append(nn.Linear(d_in, d_out, dtype=dtype))
        if i == last:
            break
        if batchnorm:
            layers.append(nn.BatchNorm1d(d_out, dtype=dtype))
        name = _ACTIVATIONS[activation]
        layers.append(nn.PReLU(d_out, dtype=dtype) if name == "prelu"
                      else nn.make_activation(name))
        if dropout[i] > 0:
            layers.append(nn.Dropout(dropout[i], seed=int(dropout_seeds[i]), dtype=dtype))
    return nn.Sequential(*layers)


def _linears(model: nn.Sequential) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)]


def _make_optimizer(est, model: nn.Sequential, solver: str) -> optim.Optimizer:
    """The fastnn optimizer of ``solver`` (``est``'s hyperparameters) over two groups: the
    Linear weights (group 0, where the L2 term goes as weight decay) and every other
    parameter (group 1)."""
    weights = [lin.weight for lin in _linears(model)]
    wid = {id(w) for w in weights}
    rest = [p for p in model.parameters() if id(p) not in wid]
    groups = [{"params": weights}] + ([{"params": rest}] if rest else [])
    lr = float(est.learning_rate_init)
    if solver == "sgd":
        momentum = float(est.momentum)
        return optim.SGD(groups, lr=lr, momentum=momentum,
                         nesterov=bool(est.nesterovs_momentum) and momentum > 0)
    betas = (float(est.beta_1), float(est.beta_2))
    if solver == "adam":
        return optim.Adam(groups, lr=lr, betas=betas, eps=float(est.epsilon))
    if solver == "adamw":
        opt = optim.AdamW(groups, lr=lr, betas=betas, eps=float(est.epsilon), weight_decay=0.0)
        opt.param_groups[0]["weight_decay"] = float(est.alpha)  # decoupled, weights only
        return opt
    if solver == "rmsprop":
        return optim.RMSprop(groups, lr=lr, eps=float(est.epsilon))
    return optim.Adagrad(groups, lr=lr, eps=float(est.epsilon))


class _Network:
    """The fastnn side of an estimator: the model and, for a stochastic solver, the
    optimizer that keeps training it (``partial_fit``) and Adam's step count. Not pickled:
    :meth:`snapshot` gives plain arrays and numbers, :meth:`restore` rebuilds from them."""

    def __init__(self, model: nn.Sequential, arch: dict):
        self.model, self.arch = model, arch
        self.linears = _linears(model)
        self.optimizer: optim.Optimizer | None = None
        self.solver: str | None = None
        self.adam_steps = 0

    def extra_state(self) -> dict[str, np.ndarray]:
        """The model's state apart from the Linear layers (BatchNorm, PReLU)."""
        own = {f"{i}.{k}" for i, m in enumerate(self.model) if isinstance(m, nn.Linear)
               for k in ("weight", "bias")}
        return {k: v for k, v in self.model.state_dict().items() if k not in own}

    def snapshot(self) -> dict:
        return {
            "arch": self.arch,
            "extra": self.extra_state(),
            "dropout": [m.generator.bit_generator.state for m in self.model
                        if isinstance(m, nn.Dropout)],
            "solver": self.solver,
            "optimizer": None if self.optimizer is None else self.optimizer.flat_state_dict(),
            "adam_steps": self.adam_steps,
        }

    @classmethod
    def restore(cls, snap: dict, coefs, intercepts, est) -> _Network:
        arch = snap["arch"]
        units = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        model = _build_model(units, arch["activation"], arch["batchnorm"], arch["dropout"],
                             coefs[0].dtype, [0] * len(arch["dropout"]))
        net = cls(model, arch)
        net.load_linear(coefs, intercepts)
        if snap["extra"]:
            model.load_state_dict(snap["extra"], strict=False)
        for m, state in zip((m for m in model if isinstance(m, nn.Dropout)), snap["dropout"],
                            strict=True):
            m.generator.bit_generator.state = state
        if snap["optimizer"] is not None and snap["solver"] in _STOCHASTIC_SOLVERS:
            net.optimizer = _make_optimizer(est, model, snap["solver"])
            net.optimizer.load_state_dict(snap["optimizer"])
            net.solver, net.adam_steps = snap["solver"], snap["adam_steps"]
        return net

    def load_linear(self, coefs, intercepts) -> None:
        """Copy ``coefs`` (in, out) and ``intercepts`` (out,) into the Linear layers."""
        if len(coefs) != len(self.linears) or len(intercepts) != len(self.linears):
            raise ValueError(f"coefs_ and intercepts_ must hold {len(self.linears)} arrays, one "
                             f"per layer, got {len(coefs)} and {len(intercepts)}")
        for i, (lin, c, b) in enumerate(zip(self.linears, coefs, intercepts, strict=True)):
            for name, param, value in (("coefs_", lin.weight, c), ("intercepts_", lin.bias, b)):
                value = np.asarray(value)
                if value is param.data:
                    continue
                if value.shape != param.data.shape:
                    raise ValueError(f"{name}[{i}] has shape {value.shape}, the network's layer "
                                     f"{i} needs {param.data.shape}")
                param.data[...] = value

    def coefs(self) -> list[np.ndarray]:
        return [lin.weight.data for lin in self.linears]

    def intercepts(self) -> list[np.ndarray]:
        return [lin.bias.data for lin in self.linears]


class EstimatorStateError(DataError):
    """An unpickled MLPClassifier / MLPRegressor whose state is not one a fit leaves: a field
    missing, of the wrong type, shape or dtype, non-finite, or inconsistent with the others.
    The message names the field, what it holds and what it should hold."""


#: What unpickling may have to refuse while rebuilding the network from a state that passed
#: the field checks below (a dropout generator's state NumPy rejects, an optimizer state
#: of another layout): each is reported as an EstimatorStateError naming the field.
_RESTORE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError,
                   OverflowError)


_MISSING = object()


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} with shape {value.shape}"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken object (a state field of one) may not print
        text = "(unprintable)"
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def _is_model_dtype(value) -> bool:
    """The ``dtype`` hyperparameter's values that fit accepts (None, float32, float64)."""
    if value is None:
        return True
    if isinstance(value, np.ndarray):
        return False
    try:
        return np.dtype(value) in _DTYPES.values()
    except Exception:  # noqa: BLE001 - np.dtype's errors on arbitrary objects vary
        return False


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool | np.bool_)


class _StateChecker:
    """The checks of an unpickled estimator's state (``_BaseMLP.__setstate__``)."""

    def __init__(self, est, state: dict):
        self.name, self.state = type(est).__name__, state

    def fail(self, field: str, value, expected: str):
        raise EstimatorStateError(f"unpickled {self.name}: {field} is {_describe(value)}; "
                                  f"expected {expected}")

    def get(self, field: str):
        if field not in self.state:
            raise EstimatorStateError(f"unpickled {self.name}: the fitted state has no "
                                      f"{field}")
        return self.state[field]

    def int_field(self, field: str, value=_MISSING, equal=None) -> int:
        value = self.get(field) if value is _MISSING else value
        if not _is_int(value) or value < 0 or (equal is not None and value != equal):
            self.fail(field, value, "an integer >= 0" if equal is None else f"{equal}")
        return int(value)

    def arrays(self, field: str, ndim: int, dtype=None) -> list[np.ndarray]:
        values = self.get(field)
        if not isinstance(values, list) or not values:
            self.fail(field, values, f"a non-empty list of {ndim}-D float arrays")
        for i, a in enumerate(values):
            want = dtype or "float32 or float64"
            if (not isinstance(a, np.ndarray) or a.ndim != ndim or 0 in a.shape
                    or a.dtype not in (dtype and [dtype] or _DTYPES.values())):
                self.fail(f"{field}[{i}]", a, f"a non-empty {ndim}-D array of {want}")
            if not np.isfinite(a).all():
                self.fail(f"{field}[{i}]", a, "finite values")
        return values

    def network(self) -> tuple[list, list]:
        coefs = self.arrays("coefs_", 2)
        dtype = coefs[0].dtype
        intercepts = self.arrays("intercepts_", 1, dtype)
        for i, c in enumerate(coefs):
            if c.dtype != dtype:
                self.fail(f"coefs_[{i}]", c, f"{dtype}, the dtype of coefs_[0]")
            if i and c.shape[0] != coefs[i - 1].shape[1]:
                self.fail(f"coefs_[{i}]", c, f"{coefs[i - 1].shape[1]} rows, the columns of "
                                             f"coefs_[{i - 1}]")
        if len(intercepts) != len(coefs):
            self.fail("intercepts_", intercepts, f"{len(coefs)} arrays, one per layer")
        for i, (c, b) in enumerate(zip(coefs, intercepts, strict=True)):
            if b.shape != (c.shape[1],):
                self.fail(f"intercepts_[{i}]", b, f"shape {(c.shape[1],)}")
        self.int_field("n_features_in_", equal=coefs[0].shape[0])
        self.int_field("n_outputs_", equal=coefs[-1].shape[1])
        self.int_field("n_layers_", equal=len(coefs) + 1)
        names = self.state.get("feature_names_in_")
        if "feature_names_in_" in self.state and not (
                isinstance(names, np.ndarray) and names.shape == (coefs[0].shape[0],)
                and all(isinstance(n, str) for n in names.tolist())):
            self.fail("feature_names_in_", names, f"{coefs[0].shape[0]} column names")
        return coefs, intercepts

    def snapshot(self, coefs) -> dict:
        snap = self.get("_net_snapshot")
        keys = {"arch", "extra", "dropout", "solver", "optimizer", "adam_steps"}
        if not isinstance(snap, dict) or set(snap) != keys:
            self.fail("_net_snapshot", snap, f"a dict of {sorted(keys)}")
        arch = snap["arch"]
        hidden = [c.shape[1] for c in coefs[:-1]]
        if not isinstance(arch, dict) or set(arch) != {"hidden", "activation", "batchnorm",
                                                         "dropout"}:
            self.fail("_net_snapshot['arch']", arch,
                      "a dict of 'hidden', 'activation', 'batchnorm', 'dropout'")
        if arch["hidden"] != hidden or not all(_is_int(h) for h in arch["hidden"]):
            self.fail("_net_snapshot['arch']['hidden']", arch["hidden"],
                      f"{hidden}, the hidden layers of coefs_")
        if not isinstance(arch["activation"], str) or arch["activation"] not in _ACTIVATIONS:
            self.fail("_net_snapshot['arch']['activation']", arch["activation"],
                      f"one of {sorted(_ACTIVATIONS)}")
        if not isinstance(arch["batchnorm"], bool):
            self.fail("_net_snapshot['arch']['batchnorm']", arch["batchnorm"], "a bool")
        rates = arch["dropout"]
        if (not isinstance(rates, list) or len(rates) != len(hidden)
                or not all(isinstance(r, float) and 0.0 <= r < 1.0 for r in rates)):
            self.fail("_net_snapshot['arch']['dropout']", rates,
                      f"a list of {len(hidden)} rates in [0, 1)")
        if not isinstance(snap["extra"], dict):
            self.fail("_net_snapshot['extra']", snap["extra"], "a dict of arrays")
        if not isinstance(snap["dropout"], list):
            self.fail("_net_snapshot['dropout']", snap["dropout"], "a list of generator states")
        solver = snap["solver"]  # a str before `in`: an array would compare elementwise
        if solver is not None and (not isinstance(solver, str)
                                   or solver not in _STOCHASTIC_SOLVERS):
            self.fail("_net_snapshot['solver']", snap["solver"],
                      f"None or one of {list(_STOCHASTIC_SOLVERS)}")
        if snap["optimizer"] is not None and not isinstance(snap["optimizer"], dict):
            self.fail("_net_snapshot['optimizer']", snap["optimizer"], "None or a dict")
        self.int_field("_net_snapshot['adam_steps']", snap["adam_steps"])
        return snap

    def model_state(self, field: str, given, expected: dict, finite: bool = True) -> None:
        """``given`` holds exactly the arrays of ``expected`` (names, shapes, kinds)."""
        if not isinstance(given, dict) or set(given) != set(expected):
            self.fail(field, given, f"a dict of the arrays {sorted(expected)}")
        for k, want in expected.items():
            a = given[k]
            if (not isinstance(a, np.ndarray) or a.shape != want.shape
                    or a.dtype.kind != want.dtype.kind):
                self.fail(f"{field}[{k!r}]", a, f"an array of {want.dtype} with shape "
                                                f"{want.shape}")
            if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
                self.fail(f"{field}[{k!r}]", a, "finite values")

    def labels(self, n_outputs: int) -> None:
        lb = self.get("_label_binarizer")
        if not isinstance(lb, LabelBinarizer):
            self.fail("_label_binarizer", lb, "a fitted sklearn LabelBinarizer")
        d = vars(lb)
        for key in ("classes_", "y_type_", "sparse_input_", "neg_label", "pos_label",
                    "sparse_output"):
            if key not in d:
                self.fail("_label_binarizer", lb, f"a fitted LabelBinarizer (it has no {key})")
        classes = d["classes_"]
        if (not isinstance(classes, np.ndarray) or classes.ndim != 1
                or classes.dtype.kind not in "biufUO" or len(classes) == 0
                or (classes.dtype.kind == "O"
                    and not all(isinstance(c, str | Integral) for c in classes.tolist()))):
            self.fail("_label_binarizer.classes_", classes, "a 1-D array of class labels")
        y_type = d["y_type_"]
        want = {"binary": (1, (1, 2)), "multiclass": (len(classes), (len(classes),)),
                "multilabel-indicator": (len(classes), (len(classes),))}
        if not isinstance(y_type, str) or y_type not in want:
            self.fail("_label_binarizer.y_type_", y_type, f"one of {sorted(want)}")
        outputs, counts = want[y_type]
        if n_outputs != outputs or len(classes) not in counts:
            self.fail("_label_binarizer.classes_", classes,
                      f"classes fitting {n_outputs} outputs of a {y_type} target")
        if not (_is_int(d["neg_label"]) and _is_int(d["pos_label"])
                and d["neg_label"] < d["pos_label"]):
            self.fail("_label_binarizer.neg_label/pos_label", (d["neg_label"], d["pos_label"]),
                      "two integers, neg_label < pos_label")
        if d["sparse_output"] is not False or not isinstance(d["sparse_input_"], bool):
            self.fail("_label_binarizer.sparse_output/sparse_input_",
                      (d["sparse_output"], d["sparse_input_"]), "False and a bool")
        mine = self.get("classes_")
        if (not isinstance(mine, np.ndarray) or mine.shape != classes.shape
                or mine.dtype != classes.dtype or not (mine == classes).all()):
            self.fail("classes_", mine, "the classes of _label_binarizer")
        act = self.get("out_activation_")
        expected = "softmax" if y_type == "multiclass" else "logistic"
        if act != expected:
            self.fail("out_activation_", act, f"{expected!r} for a {y_type} target")


# ------------------------------------------------------------------------- the step
def _contiguous_stretch(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """``arrays`` as one flat array when they are C-contiguous views lying one right after
    another in one 1-D buffer (as the weights in an optimizer's flat buffer), else each
    flattened."""
    flat = [a.reshape(-1) for a in arrays]
    base = arrays[0].base if arrays else None
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return flat
    address = lambda a: a.__array_interface__["data"][0]  # noqa: E731
    at = address(arrays[0])
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous or address(a) != at:
            return flat
        at += a.nbytes
    start = (address(arrays[0]) - address(base)) // base.itemsize
    return [base[start:start + sum(a.size for a in arrays)]]


class _MLPStep(LocalStep):
    """One scikit-learn mini-batch step on fastnn: forward, scikit-learn's loss, backward,
    then the optimizer with scikit-learn's per-batch hyperparameters.

    Before each step: the weights' group gets ``weight_decay = alpha / sum(w)`` (the
    gradient of scikit-learn's 0.5 * alpha * ||W||^2 / sum(w); AdamW keeps its decoupled
    ``alpha``); Adam's groups get ``eps = epsilon / sqrt(1 - beta_2^t)``, which turns
    torch's update lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) into
    scikit-learn's lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon).
    The batch's targets arrive as ``(y, sample_weight or None)``.
    """

    def __init__(self, net: _Network, alpha: float, solver: str, beta_2: float, epsilon: float,
                 validator=None):
        super().__init__(net.model, net.optimizer)
        self.net, self.alpha, self.solver = net, float(alpha), solver
        self.beta_2, self.epsilon = float(beta_2), float(epsilon)
        self.l2 = self.alpha > 0 and solver != "adamw"
        self.weights = [lin.weight for lin in net.linears]
        self.validator = validator
        # The weights are group 0 of the optimizer, laid out first and contiguously in its
        # flat buffer: their squares are one kernel call over that stretch.
        self.weight_arrays = _contiguous_stretch([w.data for w in self.weights])
        self.square_scratch = [np.empty(sum_of_squares_chunks(w.size))
                               for w in self.weight_arrays]
        # After a step, the update has already added up the squares it wrote (SGD and Adam
        # can: +2.3 µs in Adam against 8-11 µs for summing the weights again, a (256, 256)
        # network): the next step's L2 term takes
        # them. The first step of each fit sums the weights itself, whatever happened to them
        # since the last fit (warm start, a restored best state).
        self.squares_from_update = self.l2 and self.optimizer.track_squares()
        self.updated = False

    def train_step(self, x, y, n: int, loss_fn) -> tuple[float, None]:
        targets, sample_weight = y
        sw_sum = float(n) if sample_weight is None else float(sample_weight.sum())
        groups = self.optimizer.param_groups
        if self.solver != "adamw":
            groups[0]["weight_decay"] = self.alpha / sw_sum
        if self.solver == "adam":
            t = self.net.adam_steps + 1
            eps = self.epsilon / math.sqrt(1.0 - self.beta_2 ** t)
            for g in groups:
                g["eps"] = eps
        squares = 0.0
        if self.l2:  # the weights before this step's update, as scikit-learn adds them
            if self.updated:
                squares = self.optimizer.updated_squares(0)  # group 0: the weights
            else:
                for w, s in zip(self.weight_arrays, self.square_scratch, strict=True):
                    squares += sum_of_squares(w, s)
        batch_loss = loss_fn.for_batches(sample_weight)
        if isinstance(batch_loss, _BatchGraph):
            batch_loss.sample_weight = sample_weight
        # The compiled plan where it takes the batch, else the graph: the same bits.
        compiled = self._compiled_for(batch_loss) if self.compiled else None
        if compiled is not None and compiled.accepts(x, targets):
            graph_value = compiled.run(x, targets)[0]
        else:
            graph_value = graph_step(self.model, batch_loss, self.optimizer, x, targets)[0]
        value = loss_fn.value(graph_value, targets, sample_weight, x.dtype)
        if not math.isfinite(value):
            raise NonFiniteLoss(value)
        value += (0.5 * self.alpha) * squares / sw_sum
        if self.solver == "adam":
            self.net.adam_steps += 1
        self.updated = self.squares_from_update
        return value, None

    def set_lr(self, lr: float) -> None:
        """Change the learning rate as scikit-learn's SGD does: its velocity is
        -lr * (torch's momentum buffer), so the buffer is rescaled by lr_old / lr_new."""
        groups = self.optimizer.param_groups
        old = groups[0]["lr"]
        if self.solver == "sgd" and lr != old:
            for buf in self.optimizer.state.get("momentum_buffer", ()):
                buf *= old / lr
        for g in groups:
            g["lr"] = float(lr)

    def validate(self, model, loss_fn, val, target_scaler=None) -> dict[str, float]:
        """The validation set's loss (without the L2 term) and scikit-learn's score."""
        return self.validator(model, loss_fn, val)


class _Batches:
    """scikit-learn's mini-batches: every epoch ``sample_idx = shuffle(sample_idx,
    random_state)`` (when shuffling), then ``gen_batches(n, batch_size)``; a batch is
    ``(x, (targets, sample_weight or None), n)``. ``rows`` selects the training rows (early
    stopping). ``merge_single``: a last batch of one sample joins the one before (BatchNorm
    needs two samples)."""

    class _Rows:
        #: fastnn.train.fit counts correct predictions only for class-index targets; the
        #: step reports none (scikit-learn records no training accuracy).
        is_classification = False

    def __init__(self, X, T, sample_weight, rows, batch_size: int, shuffle: bool,
                 random_state, merge_single: bool):
        self.X, self.T, self.sw, self.rows = X, T, sample_weight, rows
        self.sparse = scipy.sparse.issparse(X)
        self.n = _n_rows(X) if rows is None else len(rows)
        self.shuffle, self.random_state = shuffle, random_state
        self.sample_idx = np.arange(self.n, dtype=int)
        slices = list(gen_batches(self.n, batch_size))
        if merge_single and len(slices) > 1 and slices[-1].stop - slices[-1].start == 1:
            slices[-2:] = [slice(slices[-2].start, slices[-1].stop)]
        self.slices = slices
        self.dataset = self._Rows()

    def __len__(self) -> int:
        return len(self.slices)

    def __iter__(self):
        if self.shuffle:
            self.sample_idx = shuffle(self.sample_idx, random_state=self.random_state)
        buffers: dict = {}
        for sl in self.slices:
            idx = self.sample_idx[sl] if self.shuffle else sl
            if self.rows is not None:
                idx = self.rows[idx]
            if self.sparse:  # the batch's rows densified into a buffer reused per batch size
                n = sl.stop - sl.start
                x = buffers.get(n)
                if x is None:
                    x = buffers[n] = np.empty((n, self.X.shape[1]), self.X.dtype)
                _densify_rows(self.X, idx, x)
                t = self.T[idx]
            elif isinstance(idx, slice):
                x, t = self.X[idx], self.T[idx]
            else:  # gathered into arrays reused from batch to batch (the step is done with
                # the last batch when it asks for the next): no allocation per step
                n = len(idx)
                takers = buffers.get(n)
                if takers is None:
                    x = np.empty((n, *self.X.shape[1:]), self.X.dtype)
                    t = np.empty((n, *self.T.shape[1:]), self.T.dtype)
                    takers = buffers[n] = (row_taker(self.X, x), row_taker(self.T, t))
                x, t = takers[0](idx), takers[1](idx)
            sw = None if self.sw is None else self.sw[idx]
            yield x, (t, sw), sl.stop - sl.start


# --------------------------------------------------------------------- the epoch end
class _EpochBookkeeping(Callback):
    """scikit-learn's end of an epoch (``_fit_stochastic`` after its batches): n_iter_, t_,
    loss_curve_, the no-improvement count on the training loss or the validation score,
    the best weights, ``invscaling`` and ``adaptive`` learning rates, stopping, and the
    ConvergenceWarning at max_iter. Returns True to stop."""

    def __init__(self, est, step: _MLPStep, n_train: int, incremental: bool,
                 early_stopping: bool):
        self.est, self.step, self.n_train = est, step, n_train
        self.incremental, self.early_stopping = incremental, early_stopping

    def on_epoch_end(self, epoch: int, logs: dict) -> bool:
        est = self.est
        est.n_iter_ += 1
        est.loss_ = logs["loss"]
        est.t_ += self.n_train
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_:d}, loss = {est.loss_:.8f}")
        if self.early_stopping:
            score = logs["val_score"]
            est.validation_scores_.append(score)
            est.validation_loss_curve_.append(logs["val_loss"])
            if est.verbose:
                print(f"Validation score: {score:f}")
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_state = self.step.model.state_dict()
        else:
            if est.loss_curve_[-1] > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if est.loss_curve_[-1] < est.best_loss_:
                est.best_loss_ = est.loss_curve_[-1]
        sgd = est.solver == "sgd"
        if sgd and est.learning_rate == "invscaling":
            self.step.set_lr(float(est.learning_rate_init) / (est.t_ + 1) ** est.power_t)
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol={est.tol:f} for "
                   f"{est.n_iter_no_change:d} consecutive epochs.")
            if not (sgd and est.learning_rate == "adaptive"):
                if est.verbose:
                    print(msg + " Stopping.")
                return True
            lr = self.step.optimizer.param_groups[0]["lr"]
            if lr <= 1e-6:
                if est.verbose:
                    print(msg + " Learning rate too small. Stopping.")
                return True
            self.step.set_lr(lr / 5.0)
            if est.verbose:
                print(msg + f" Setting learning rate to {lr / 5.0:f}")
            est._no_improvement_count = 0
        if self.incremental:
            return True
        if est.n_iter_ == est.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({est.max_iter:d}) reached and the "
                "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=1)
        return False


# ----------------------------------------------------------------------- estimators
class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: validation, initialization, the solvers,
    the forward pass, pickling."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "solver": [StrOptions({"lbfgs", *_STOCHASTIC_SOLVERS})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "batchnorm": ["boolean"],
        "dropout": [Interval(Real, 0, 1, closed="left"), "array-like"],
        "dtype": "no_validation",  # checked in fit (_model_dtype): a name or a NumPy dtype
    }

    # ------------------------------------------------------------------ fit
    def _fit(self, X, y, sample_weight=None, incremental: bool = False, classes=None):
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        dropout = self._dropout_rates(len(hidden))
        if self.solver == "lbfgs" and any(dropout):
            raise ValueError(f"dropout={self.dropout!r} needs a stochastic solver "
                             f"({', '.join(_STOCHASTIC_SOLVERS)}); lbfgs minimizes one fixed "
                             "objective, which dropout would make random")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, T, y_checked, class_indices = self._validate_input(X, y, incremental,
                                                               reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        sample_weight = self._with_class_weight(sample_weight, y_checked, incremental)
        self.n_outputs_ = T.shape[1]
        layer_units = [X.shape[1]] + hidden + [self.n_outputs_]
        arch = {"hidden": hidden, "activation": self.activation,
                "batchnorm": bool(self.batchnorm), "dropout": dropout}
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            dtype = self._model_dtype(X.dtype)
            self._initialize(T, layer_units, dtype, arch)
        else:
            net = self._network()
            dtype = net.linears[0].weight.dtype
            self._check_same_network(net, arch, layer_units)
            if self.dtype is not None and self._model_dtype(X.dtype) != dtype:
                raise ValueError(f"dtype={self.dtype!r}: this estimator was fitted in {dtype}; "
                                 "warm_start and partial_fit keep the fitted network's dtype")
        X = X.astype(dtype, copy=False)
        if self.batchnorm and _n_rows(X) < 2:
            raise ValueError(f"batchnorm=True needs at least 2 samples to train, got "
                             f"n_samples = {_n_rows(X)} (1 sample)")
        if self.out_activation_ != "softmax":
            targets = T.astype(dtype)
        else:
            targets = class_indices if class_indices is not None \
                else T.astype(np.int64).argmax(axis=1)
        loss_fn = _OutputLoss(self.out_activation_, self.n_outputs_)
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(X, T, targets, y_checked, sample_weight, loss_fn, incremental)
        else:
            self._fit_lbfgs(X, targets, sample_weight, loss_fn)
        net = self._net
        self.coefs_, self.intercepts_ = net.coefs(), net.intercepts()
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _dropout_rates(self, n_hidden: int) -> list[float]:
        rates = self.dropout
        if np.ndim(rates) == 0:
            return [float(rates)] * n_hidden
        rates = [float(r) for r in np.asarray(rates, dtype=float).ravel()]
        if len(rates) != n_hidden or not all(0.0 <= r < 1.0 for r in rates):
            raise ValueError(f"dropout must be one rate in [0, 1) or one per hidden layer "
                             f"({n_hidden}), got {self.dropout!r}")
        return rates

    def _model_dtype(self, x_dtype) -> np.dtype:
        if self.dtype is None:
            return np.dtype(x_dtype)
        try:
            dt = np.dtype(self.dtype)
        except TypeError:
            dt = None
        if dt not in _DTYPES.values():
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {self.dtype!r}")
        return dt

    def _with_class_weight(self, sample_weight, y, incremental):
        return sample_weight

    def _check_same_network(self, net: _Network, arch: dict, layer_units: list[int]) -> None:
        units = [net.linears[0].in_features] + [lin.out_features for lin in net.linears]
        if units != layer_units:
            raise ValueError(f"warm_start / partial_fit: the data and hidden_layer_sizes give "
                             f"layers {layer_units}, the fitted network has {units}")
        for key in ("activation", "batchnorm", "dropout"):
            if arch[key] != net.arch[key]:
                raise ValueError(f"warm_start / partial_fit continue the fitted network: "
                                 f"{key} was {net.arch[key]!r}, now {arch[key]!r}; fit anew "
                                 f"(warm_start=False) to change it")

    def _initialize(self, T, layer_units, dtype, arch) -> None:
        """scikit-learn's ``_initialize``: counters, the output activation, the
        Glorot-uniform weights drawn from ``self._random_state`` in its order, and the
        stochastic solvers' bookkeeping. Then the fastnn network holding those weights."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = T.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation()
        factor = 2.0 if _ACTIVATIONS[self.activation] == "sigmoid" else 6.0
        coefs, intercepts = [], []
        for fan_in, fan_out in pairwise(layer_units):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)))
            intercepts.append(self._random_state.uniform(-bound, bound, fan_out))
        seeds = [0] * len(arch["dropout"])
        if any(arch["dropout"]):  # only then: without dropout, scikit-learn's draws exactly
            seeds = self._random_state.randint(0, 2**31 - 1, size=len(arch["dropout"]))
        model = _build_model(layer_units, arch["activation"], arch["batchnorm"], arch["dropout"],
                             dtype, seeds)
        net = _Network(model, arch)
        net.load_linear(coefs, intercepts)
        self._net = net
        self.coefs_, self.intercepts_ = net.coefs(), net.intercepts()
        self._best_state = model.state_dict()
        if self.solver in _STOCHASTIC_SOLVERS:
            self._reset_bookkeeping()

    def _reset_bookkeeping(self) -> None:
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.validation_loss_curve_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.validation_loss_curve_ = None
            self.best_validation_score_ = None

    def _network(self) -> _Network:
        """The fastnn network, rebuilt after unpickling and holding ``coefs_`` and
        ``intercepts_`` (which a user may have replaced)."""
        net = self.__dict__.get("_net")
        if net is None:
            net = _Network.restore(self._net_snapshot, self.coefs_, self.intercepts_, self)
            self._net = net
            del self._net_snapshot
        else:
            net.load_linear(self.coefs_, self.intercepts_)
        self.coefs_, self.intercepts_ = net.coefs(), net.intercepts()
        return net

    def _fit_stochastic(self, X, T, targets, y_checked, sample_weight, loss_fn,
                        incremental: bool) -> None:
        net = self._net
        if not incremental or net.optimizer is None or net.solver != self.solver:
            net.optimizer = _make_optimizer(self, net.model, self.solver)
            net.solver, net.adam_steps = self.solver, 0
        if not hasattr(self, "loss_curve_"):  # warm start from an lbfgs fit
            self._reset_bookkeeping()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        rows, val = None, None
        if early_stopping:
            if self.validation_scores_ is None:  # warm start after a fit without it
                self._reset_bookkeeping()
            stratify = T if self._is_classifier() and self.n_outputs_ == 1 else None
            rows, val_rows = train_test_split(np.arange(_n_rows(X)),
                                              random_state=self._random_state,
                                              test_size=self.validation_fraction,
                                              stratify=stratify)
            if len(val_rows) < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            val = self._validation(X[val_rows], targets[val_rows], T[val_rows],
                                   y_checked[val_rows],
                                   None if sample_weight is None else sample_weight[val_rows])
        n_train = _n_rows(X) if rows is None else len(rows)
        if self.batch_size == "auto":
            batch_size = min(200, n_train)
        else:
            if self.batch_size > n_train:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped", stacklevel=3)
            batch_size = int(np.clip(self.batch_size, 1, n_train))
        if self.batchnorm and n_train < 2:
            raise ValueError(f"batchnorm=True needs at least 2 training samples, got "
                             f"n_samples = {n_train} (1 sample)")
        loader = _Batches(X, targets, sample_weight, rows, batch_size, self.shuffle,
                          self._random_state, merge_single=bool(self.batchnorm))
        step = _MLPStep(net, self.alpha, self.solver, self.beta_2, self.epsilon,
                        validator=None if val is None else val[1])
        bookkeeping = _EpochBookkeeping(self, step, n_train, incremental, early_stopping)
        self.n_iter_ = 0
        try:
            train_fit(net.model, loss_fn, net.optimizer, loader,
                      val=None if val is None else val[0],
                      epochs=1 if incremental else int(self.max_iter), quiet=True,
                      callbacks=[bookkeeping], step=step)
        except TrainingDiverged as exc:
            raise ValueError(f"Solver produced a non-finite loss: {exc}. The input data may "
                             "contain large values and need to be preprocessed.") from None
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        finally:
            net.model.train(False)
        if early_stopping:
            net.model.load_state_dict(self._best_state)

    def _validation(self, X_val, targets_val, T_val, y_val, sw_val):
        """The validation data for fastnn.train.fit and the step's validator.

        fastnn.train.fit only hands its validation data set to the step's ``validate``, and
        the validator reads ``X_val`` itself: for a sparse X (which an ArrayDataset cannot
        hold) fit gets a data set of the validation targets with zero feature columns, and
        the validator densifies ``X_val`` block by block."""
        if scipy.sparse.issparse(X_val):
            dataset = ArrayDataset(np.empty((_n_rows(X_val), 0), X_val.dtype), targets_val,
                                   check=False)
        else:
            dataset = ArrayDataset(X_val, targets_val, check=False)
        y_true = self._score_targets(T_val, y_val)
        score_fn = self._score_function()

        def validator(model, loss_fn, val):
            out = _outputs(model, X_val, X_val.dtype)
            with no_grad():
                _, loss = loss_fn(Tensor(out), targets_val, sw_val)
            pred = self._decode(self._activate(out))
            if np.issubdtype(np.asarray(pred).dtype, np.floating) and \
                    not np.isfinite(pred).all():
                score = np.nan
            else:
                score = score_fn(y_true, pred, sample_weight=sw_val)
            return {"loss": loss, "score": float(score)}

        return dataset, validator

    def _fit_lbfgs(self, X, targets, sample_weight, loss_fn) -> None:
        net = self._net
        model = net.model
        weights = [lin.weight for lin in net.linears]
        order = weights + [lin.bias for lin in net.linears]
        seen = {id(p) for p in order}
        order += [p for p in model.parameters() if id(p) not in seen]  # BatchNorm, PReLU
        bounds = np.cumsum([0] + [p.data.size for p in order])
        n_weights = int(bounds[len(weights)])
        n = _n_rows(X)
        sw_sum = float(n) if sample_weight is None else float(sample_weight.sum())
        alpha = float(self.alpha)
        blocks = None  # a sparse X too large to densify at once: (rows, share of the loss)
        if scipy.sparse.issparse(X):
            block_rows = max(1, _LBFGS_BLOCK_ELEMENTS // max(1, X.shape[1]))
            if n <= block_rows:
                X = _densify_rows(X, slice(0, n), np.empty(X.shape, X.dtype))
            elif any(isinstance(m, nn.BatchNorm1d) for m in model):
                raise NotImplementedError(
                    f"batchnorm=True with solver='lbfgs' needs the whole data set in one "
                    f"forward pass (its batch statistics), and this sparse X ({n} x "
                    f"{X.shape[1]}) is larger than the {_LBFGS_BLOCK_ELEMENTS} elements "
                    "fastnn densifies at once: use a stochastic solver, or batchnorm=False")
            else:
                blocks, buf = [], np.empty((block_rows, X.shape[1]), X.dtype)
                for lo in range(0, n, block_rows):
                    rows = slice(lo, min(n, lo + block_rows))
                    share = ((rows.stop - rows.start) if sample_weight is None
                             else float(sample_weight[rows].sum())) / sw_sum
                    if share != 0.0:  # a block whose samples all weigh 0 adds nothing
                        blocks.append((rows, share))

        def unpack(x):
            for p, lo, hi in zip(order, bounds[:-1], bounds[1:], strict=True):
                p.data[...] = x[lo:hi].reshape(p.data.shape)

        def block_loss(rows, share) -> float:
            """The block's share of the loss (its weighted mean times the block's share of
            the weights), its gradient accumulated into the parameters' ``grad``."""
            xb = _densify_rows(X, rows, buf[:rows.stop - rows.start])
            sw = None if sample_weight is None else sample_weight[rows]
            graph, value = loss_fn(model(xb), targets[rows], sw)
            (graph * share).backward()
            return value * share

        def loss_grad(x):
            unpack(x)
            model.zero_grad()
            if blocks is None:
                graph, value = loss_fn(model(X), targets, sample_weight)
                graph.backward()
            else:
                value = sum(block_loss(rows, share) for rows, share in blocks)
            grad = np.empty_like(x)
            for p, lo, hi in zip(order, bounds[:-1], bounds[1:], strict=True):
                grad[lo:hi] = 0.0 if p.grad is None else p.grad.ravel()
            if alpha:
                w = x[:n_weights]
                value += (0.5 * alpha) * sum_of_squares(w) / sw_sum
                grad[:n_weights] += (alpha / sw_sum) * w
            return value, grad

        x0 = np.concatenate([p.data.ravel() for p in order]).astype(np.float64)
        model.train()
        try:
            res = scipy.optimize.minimize(
                loss_grad, x0, method="L-BFGS-B", jac=True,
                options={"maxfun": int(self.max_fun), "maxiter": int(self.max_iter),
                         "gtol": float(self.tol)})
            unpack(res.x)
            bns = [m for m in model if isinstance(m, nn.BatchNorm1d)]
            if bns:  # running statistics: the whole data set's, at the solution
                kept = [m.momentum for m in bns]
                for m in bns:
                    m.momentum = 1.0
                with no_grad():
                    model(X)
                for m, mom in zip(bns, kept, strict=True):
                    m.momentum = mom
        finally:
            model.train(False)
        self.n_iter_ = min(int(res.nit), int(self.max_iter))
        if res.status != 0:
            msg = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                   f"(status={res.status}):\n{res.message}\n")
            if self.n_iter_ == self.max_iter:
                msg += ("\nIncrease the number of iterations to improve the convergence "
                        f"(max_iter={self.max_iter}).")
            warnings.warn(msg, ConvergenceWarning, stacklevel=3)
        self.loss_ = float(res.fun)
        if self.verbose:
            print(f"lbfgs: {self.n_iter_} iterations, {res.nfev} function evaluations, "
                  f"loss = {self.loss_:.8f}")

    # -------------------------------------------------------------- predict
    def _forward(self, X, check_input: bool = True) -> np.ndarray:
        """The output layer's activations (probabilities, values) for X (N, D)."""
        if check_input:
            X = validate_data(self, X, accept_sparse=("csr", "csc"),
                              dtype=(np.float64, np.float32), reset=False)
        net = self._network()
        dtype = net.linears[0].weight.dtype
        if scipy.sparse.issparse(X):
            X = _canonical_csr(X).astype(dtype, copy=False)
        else:
            X = np.asarray(X, dtype=dtype)
        if _n_rows(X) == 0:
            return np.empty((0, self.n_outputs_), dtype)
        return self._activate(_outputs(net.model, X, dtype))

    def _activate(self, out: np.ndarray) -> np.ndarray:
        act = self.out_activation_
        if act == "identity":
            return out
        with no_grad():
            t = Tensor(out)
            if act == "softmax":
                return softmax(t, dim=1).data
            return (sigmoid(t) if act == "logistic" else exp(t)).data

    # -------------------------------------------------------------- pickling
    def __setstate__(self, state):
        """Check an unpickled state and rebuild the fastnn network from it; anything a fit
        could not have left raises :class:`EstimatorStateError` naming the field."""
        if not isinstance(state, dict):
            raise EstimatorStateError(f"unpickled {type(self).__name__}: the state is "
                                      f"{_describe(state)}; expected a dict")
        check = _StateChecker(self, state)
        params = {}
        for p in self._get_param_names():
            if p not in state:
                raise EstimatorStateError(f"unpickled {type(self).__name__}: the state has "
                                          f"no hyperparameter {p}")
            params[p] = state[p]
        fitted = [k for k in state if k.endswith("_") and not k.startswith("__")]
        if fitted:
            try:
                validate_parameter_constraints(self._parameter_constraints, params,
                                               caller_name=type(self).__name__)
            except InvalidParameterError as exc:
                raise EstimatorStateError(f"unpickled {type(self).__name__}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - a value sklearn's check itself chokes on
                raise EstimatorStateError(f"unpickled {type(self).__name__}: a hyperparameter "
                                          f"cannot be checked ({type(exc).__name__}: {exc})"
                                          ) from None
            if not _is_model_dtype(params["dtype"]):
                check.fail("dtype", params["dtype"], "None, 'float32' or 'float64'")
            coefs, _ = check.network()
            snap = check.snapshot(coefs)
            for field in ("n_iter_", "t_"):
                if field in state:
                    check.int_field(field)
            if self._is_classifier():
                check.labels(coefs[-1].shape[1])
            else:
                act = check.get("out_activation_")
                want = "exp" if params.get("loss") == "poisson" else "identity"
                if act != want:
                    check.fail("out_activation_", act, f"{want!r} for loss={params['loss']!r}")
            if "_net" in state:
                check.fail("_net", state["_net"], "no network object (a snapshot of arrays)")
        super().__setstate__(state)
        if fitted:
            self._restore_network(check, snap)

    def _restore_network(self, check: _StateChecker, snap: dict) -> None:
        arch, coefs = snap["arch"], self.coefs_  # a bare network: the names and shapes
        units = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        net = _Network(_build_model(units, arch["activation"], arch["batchnorm"],
                                    arch["dropout"], coefs[0].dtype, [0] * len(units)), arch)
        check.model_state("_net_snapshot['extra']", snap["extra"], net.extra_state())
        if "_best_state" in self.__dict__:
            check.model_state("_best_state", self._best_state, net.model.state_dict(),
                              finite=False)
        n_dropout = sum(isinstance(m, nn.Dropout) for m in net.model)
        if len(snap["dropout"]) != n_dropout:
            check.fail("_net_snapshot['dropout']", snap["dropout"],
                       f"{n_dropout} generator states, one per Dropout layer")
        try:
            self._net = _Network.restore(snap, self.coefs_, self.intercepts_, self)
        except _RESTORE_ERRORS as exc:
            raise EstimatorStateError(f"unpickled {type(self).__name__}: _net_snapshot does "
                                      f"not rebuild the network: {type(exc).__name__}: "
                                      f"{exc}") from None
        del self._net_snapshot
        self.coefs_, self.intercepts_ = self._net.coefs(), self._net.intercepts()

    def __getstate__(self):
        state = dict(super().__getstate__())
        net = state.pop("_net", None)
        if net is not None:
            state["coefs_"] = [np.array(c) for c in net.coefs()]
            state["intercepts_"] = [np.array(b) for b in net.intercepts()]
            state["_net_snapshot"] = net.snapshot()
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # densified batch by batch (_densify_rows)
        return tags

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def _is_classifier(self) -> bool:
        return False


_COMMON_DOC = """    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        Units of each hidden layer.
    activation : str, default='relu'
        Hidden activation: scikit-learn's 'identity', 'logistic', 'tanh', 'relu', or
        fastnn's 'sigmoid' (= 'logistic'), 'leaky_relu', 'elu', 'gelu', 'gelu_tanh',
        'silu' (= 'swish'), 'prelu' (one learned slope per unit), 'linear' (= 'identity').
    solver : {'adam', 'sgd', 'lbfgs', 'rmsprop', 'adagrad', 'adamw'}, default='adam'
        scikit-learn's three, plus torch.optim's RMSprop, Adagrad and AdamW (fastnn.optim):
        they use ``learning_rate_init`` and ``epsilon``; AdamW also ``beta_1``, ``beta_2``
        and takes ``alpha`` as its decoupled weight decay (on the weights) instead of an L2
        term in the loss.
    alpha : float, default=1e-4
        L2 strength: 0.5 * alpha * ||W||^2 / (batch size, or its sum of sample weights) is
        added to each batch's loss (weights only, not biases), as in scikit-learn.
    batch_size : int or 'auto', default='auto'
        Mini-batch size; 'auto' is min(200, n_samples).
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule of solver='sgd' (as scikit-learn's).
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs (stochastic solvers) or iterations (lbfgs).
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
        Initial weights, the early-stopping split, the batches' order and (when used) the
        dropout masks' seeds. The same int gives bit-identical fits.
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1, beta_2 : float, default=0.9, 0.999
    epsilon : float, default=1e-8
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        scikit-learn's meanings for all of the above.
    batchnorm : bool, default=False
        BatchNorm1d after every hidden Linear (before its activation). Its running
        statistics are used for prediction; with lbfgs they are the whole training set's at
        the solution. A last mini-batch of one sample joins the one before it.
    dropout : float or sequence of float, default=0.0
        Dropout rate after every hidden activation, or one per hidden layer
        (stochastic solvers only).
    dtype : {None, 'float32', 'float64'}, default=None
        The network's dtype. None: float32 input trains in float32, anything else in
        float64, as scikit-learn does; 'float32' for speed.
"""

_ATTRIBUTES_DOC = """
    Attributes
    ----------
    coefs_, intercepts_ : lists of ndarray
        Weights (in, out) and biases of each Linear layer (views of the fastnn network's
        parameters: changing them in place changes the model).
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, n_iter_,
    t_, n_layers_, n_outputs_, out_activation_, n_features_in_, feature_names_in_ :
        As scikit-learn's (loss_curve_ and the early-stopping attributes for the stochastic
        solvers only, as there).
    validation_loss_curve_ : list of float or None
        With early_stopping: the loss (without the L2 term) on the validation set after
        every epoch.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = ("""Multi-layer perceptron classifier on fastnn: scikit-learn's
    ``sklearn.neural_network.MLPClassifier`` (the constructor of scikit-learn 1.9, which is
    the version this was written against), trained by fastnn.

    Softmax and cross-entropy for multiclass targets; one logistic output per label for
    binary and multilabel targets. Labels of any kind (strings, numbers) are encoded by
    scikit-learn's LabelBinarizer.

    Parameters
    ----------
""" + _COMMON_DOC + """    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, multiplied into ``sample_weight``: a dict {label: weight}
        (others 1), or 'balanced', n_samples / (n_classes * count of the class), counted by
        sample weight (scikit-learn's ``compute_class_weight``; for multilabel targets the
        product over the labels, ``compute_sample_weight``). 'balanced' is not available in
        partial_fit.
""" + _ATTRIBUTES_DOC + """    classes_ : ndarray
        The class labels.
""")

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 batchnorm=False, dropout=0.0, class_weight=None, dtype=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.batchnorm = batchnorm
        self.dropout = dropout
        self.class_weight = class_weight
        self.dtype = dtype

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the network to X (n_samples, n_features) and labels y (n_samples,) or a
        label-indicator matrix (n_samples, n_labels); ``sample_weight`` (n_samples,)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y). ``classes`` (all labels) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             accept_sparse=("csr", "csc"), reset=reset)
        if scipy.sparse.issparse(X):
            X = _canonical_csr(X)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        lb = self._label_binarizer
        if lb.y_type_ == "multiclass" and y.ndim == 1:
            # One class index per sample: LabelBinarizer.transform's one-hot rows without its
            # sparse detour (6 of the 30 ms before the first step of a 80,000-sample fit).
            # Every label is one of classes_ (sorted): checked above, or classes_ came from y.
            indices = np.searchsorted(lb.classes_, y)
            T = indices[:, None] == np.arange(len(lb.classes_))
            return X, T, y, indices
        return X, lb.transform(y).astype(bool), y, None

    def _with_class_weight(self, sample_weight, y, incremental):
        if self.class_weight is None:
            return sample_weight
        if incremental and isinstance(self.class_weight, str):
            raise ValueError("class_weight='balanced' is not supported for partial_fit (the "
                             "class frequencies of one batch are not those of the data): pass "
                             "compute_class_weight('balanced', classes=classes, y=y) of the "
                             "whole training set, as a dict, as class_weight")
        if np.ndim(y) == 1:  # 'balanced' counts the classes by their sample weights
            by_weight = {"sample_weight": sample_weight} if _BALANCED_BY_WEIGHT else {}
            with np.errstate(divide="ignore"):
                weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y,
                                               **by_weight)
            # a class whose samples all weigh 0 gets an infinite 'balanced' weight: 0 instead
            weights = np.where(np.isfinite(weights), weights, 0.0)
            cw = weights[np.searchsorted(self.classes_, y)]
        else:  # multilabel: the product over the labels, as compute_sample_weight makes it
            cw = compute_sample_weight(self.class_weight, y)
        return cw if sample_weight is None else sample_weight * cw

    def _output_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _is_classifier(self) -> bool:
        return True

    def _score_targets(self, T_val, y_val):
        return self._label_binarizer.inverse_transform(T_val)

    def _score_function(self):
        return accuracy_score

    def _decode(self, proba: np.ndarray) -> np.ndarray:
        if self.n_outputs_ == 1:
            proba = proba.ravel()
        return self._label_binarizer.inverse_transform(proba)

    def predict(self, X):
        """Predicted labels (n_samples,), or (n_samples, n_labels) for multilabel targets."""
        check_is_fitted(self)
        return self._decode(self._forward(X))

    def predict_proba(self, X):
        """Probabilities (n_samples, n_classes) in the order of ``classes_``."""
        check_is_fitted(self)
        proba = self._forward(X)
        if self.n_outputs_ == 1:
            p = proba.ravel()
            return np.vstack([1 - p, p]).T
        return proba

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = ("""Multi-layer perceptron regressor on fastnn: scikit-learn's
    ``sklearn.neural_network.MLPRegressor`` (the constructor of scikit-learn 1.9, which is
    the version this was written against), trained by fastnn.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        Half squared error with an identity output, or half Poisson deviance with an exp
        output (y >= 0), as scikit-learn's.
""" + _COMMON_DOC + _ATTRIBUTES_DOC)

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 batchnorm=False, dropout=0.0, dtype=None):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.batchnorm = batchnorm
        self.dropout = dropout
        self.dtype = dtype

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the network to X (n_samples, n_features) and y (n_samples,) or
        (n_samples, n_outputs); ``sample_weight`` (n_samples,)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), accept_sparse=("csr", "csc"),
                             reset=reset)
        if scipy.sparse.issparse(X):
            X = _canonical_csr(X)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(f"loss='poisson' needs y >= 0, got a minimum of {np.min(y)}")
        T = y.reshape(-1, 1) if y.ndim == 1 else y
        return X, T, y, None

    def _output_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _score_targets(self, T_val, y_val):
        return y_val

    def _score_function(self):
        return r2_score

    def _decode(self, out: np.ndarray) -> np.ndarray:
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags

    def predict(self, X):
        """Predicted values (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._decode(self._forward(X))
