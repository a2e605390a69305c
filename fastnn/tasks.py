"""What a target column means: classes (encoded 0..C-1) or quantities (regression).

``infer_task`` decides from the data when the user did not say, and says why; ``Classes``
maps original labels of any kind (integers, names, booleans) to class indices and back;
``TargetScaler`` standardizes regression targets with training statistics and maps
predictions back to the original units. Both are stored in checkpoints as plain arrays
(no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import DataError, block_rows, check_finite

TASKS = ("auto", "classification", "regression")

#: Whole-number targets with at most this many distinct values are classes in any case...
AUTO_MAX_SMALL_CLASSES = 20
#: ...and beyond that, while every class has on average at least this many samples.
AUTO_MIN_SAMPLES_PER_CLASS = 10
#: Whole-number targets with more distinct values than this fraction of the rows are
#: quantities (regression); between the two rules ``auto`` refuses to guess.
AUTO_MIN_DISTINCT_FRACTION = 0.25
#: More distinct whole-number values than this are a quantity, not classes, whatever the
#: rows (a classifier auto-detected over thousands of sparse classes helps nobody).
AUTO_MAX_CLASSES = 1000
#: More than AUTO_MAX_SMALL_CLASSES distinct whole numbers that fill less than this fraction
#: of the integers between their smallest and largest are a quantity (counts, prices), not
#: classes: class labels are numbered without gaps (0..C-1, 1..C), counts leave them (a
#: bike-share table's hourly riders: 570 values over 1..977 in 6,916 rows).
AUTO_MIN_RANGE_FILL = 0.9


class TaskError(DataError):
    """The task cannot be decided from the data (or does not fit it): name ``--task``."""


def _as_label_array(y: np.ndarray, name: str) -> np.ndarray:
    """Labels as an array NumPy can sort: numbers, booleans or str (object arrays of str)."""
    if y.dtype.kind == "O":
        if not all(isinstance(v, str) for v in y.ravel()):
            raise DataError(f"{name} holds Python objects that are not all strings")
        y = y.astype(str)
    if y.dtype.kind == "S":
        y = y.astype(str)
    if y.dtype.kind == "U":
        empty = np.char.str_len(np.char.strip(y)) == 0
        if empty.any():
            raise DataError(f"{name}[{int(np.argmax(empty))}] is an empty label")
    elif y.dtype.kind not in "biuf":
        raise DataError(f"{name} must hold class labels or real targets, got dtype {y.dtype}")
    return y


def _is_whole(y: np.ndarray) -> bool:
    return y.dtype.kind in "biu" or bool(np.all(y == np.round(y)))


def infer_task(y, task: str = "auto", name: str = "y") -> tuple[str, str]:
    """Decide between classification and regression for targets ``y``; returns (task, why).

    Rules of ``auto``: booleans and strings are classes; floats with fractional values,
    and several target columns, are regression; whole numbers are classes when they take
    at most 20 distinct values or at least 10 samples per value on average, regression
    when they take more distinct values than a quarter of the rows or more than 1,000
    (prices in whole units: diamonds' 11,602 in 53,940 rows) or more than 20 that leave
    gaps in their range (fewer than 90 % of the integers from the smallest to the largest:
    counts), and otherwise :class:`TaskError` asks for ``--task`` (also when a quarter of
    more than 20 values occur under 5 times each: a count's long tail, not taken for
    classes). An explicit ``task`` is checked against the
    data (strings cannot be regressed; fractional values are not classes).
    """
    if task not in TASKS:
        raise TaskError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2) or len(y) == 0:
        raise DataError(f"{name} must have shape (N,) or (N, K) with N > 0, got {y.shape}")
    y = _as_label_array(y, name)
    numeric = y.dtype.kind in "iuf"
    if y.dtype.kind == "f":
        check_finite(y, name=name)
    if task == "regression":
        if not numeric:
            raise TaskError(f"--task regression needs numeric targets; {name} holds "
                            f"{'booleans' if y.dtype.kind == 'b' else 'names'}")
        return "regression", "asked for with --task"
    if y.ndim == 2:
        if task == "classification":
            raise TaskError(f"--task classification needs one label per sample; {name} has "
                            f"{y.shape[1]} columns")
        return "regression", f"{y.shape[1]} target columns"
    whole = not numeric or _is_whole(y)
    if task == "classification":
        if not whole:
            raise TaskError(f"--task classification needs class labels; {name} has "
                            "fractional values (use --task regression)")
        return "classification", "asked for with --task"
    if not numeric:
        what = "booleans" if y.dtype.kind == "b" else "names"
        return "classification", f"labels are {what}"
    if not whole:
        return "regression", "the target has fractional values"
    values, per_value = np.unique(y, return_counts=True)
    n, k = len(y), len(values)
    span = float(values[-1]) - float(values[0]) + 1.0
    gaps = k > AUTO_MAX_SMALL_CLASSES and k < AUTO_MIN_RANGE_FILL * span
    # many values seen only a few times each: the long tail of a count, rarely classes (on
    # average 10 rows a value, but a quarter of them under 5: not classes, ask)
    tail = k > AUTO_MAX_SMALL_CLASSES and \
        np.percentile(per_value, 25) < AUTO_MIN_SAMPLES_PER_CLASS / 2
    if k <= AUTO_MAX_SMALL_CLASSES or n >= AUTO_MIN_SAMPLES_PER_CLASS * k and not gaps \
            and not tail:
        return "classification", f"{k} distinct whole-number labels in {n} rows"
    if k > AUTO_MIN_DISTINCT_FRACTION * n or k > AUTO_MAX_CLASSES:
        return "regression", (f"{k} distinct whole-number values in {n} rows: too many to be "
                              "classes (--task classification to override)")
    if gaps:
        return "regression", (f"{k} distinct whole-number values over {values[0]}..{values[-1]}"
                              " with gaps, as counts have (class labels are numbered without):"
                              " a quantity (--task classification to override)")
    raise TaskError(f"{name} has {k} distinct whole-number values in {n} rows: classes or a "
                    "quantity? Say which with --task classification or --task regression")


@dataclass
class Classes:
    """The sorted distinct labels of a classification target; class i is ``labels[i]``.

    Integers sort as numbers, strings as text, booleans False < True; floats that are whole
    numbers become int64. ``encode`` maps labels to indices 0..C-1 (raising DataError on a
    label it does not know), ``decode`` maps indices back.
    """

    labels: np.ndarray

    @classmethod
    def fit(cls, *ys, name: str = "y") -> Classes:
        """The classes of one or several label arrays (e.g. the training and test parts)."""
        parts = [_normalize_labels(np.asarray(y), name) for y in ys if y is not None]
        kinds = {p.dtype.kind for p in parts}
        if len(kinds) > 1:
            raise DataError(f"{name}: the parts hold labels of different kinds "
                            f"({', '.join(str(p.dtype) for p in parts)})")
        return cls(np.unique(np.concatenate(parts)))

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, y, name: str = "y") -> np.ndarray:
        """Class indices (N,) int64 of labels ``y`` (N,)."""
        y = _normalize_labels(np.asarray(y), name)
        if y.dtype.kind != self.labels.dtype.kind and not (
                y.dtype.kind in "iu" and self.labels.dtype.kind in "iu"):
            raise DataError(f"{name} holds {y.dtype} labels; the model's classes are "
                            f"{self.labels.dtype} ({_show(self.labels)})")
        idx = np.searchsorted(self.labels, y)
        idx[idx >= len(self.labels)] = 0
        unknown = self.labels[idx] != y
        if unknown.any():
            row = int(np.argmax(unknown))
            raise DataError(f"{name}[{row}] = {y[row].item()!r} is not one of the model's classes "
                            f"({_show(self.labels)})")
        return idx.astype(np.int64)

    def decode(self, indices) -> np.ndarray:
        """Labels of class indices."""
        return self.labels[np.asarray(indices)]


def _normalize_labels(y: np.ndarray, name: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{name} must be one label per sample, shape (N,), got {y.shape}")
    y = _as_label_array(y, name)
    if y.dtype.kind == "f":
        check_finite(y, name=name)
        if not _is_whole(y):
            raise DataError(f"{name} has fractional values, which are not class labels "
                            "(a regression target? --task regression)")
        y = y.astype(np.int64)
    elif y.dtype.kind in "iu":
        y = y.astype(np.int64, copy=False)
    return y


def _show(labels: np.ndarray, limit: int = 8) -> str:
    items = [repr(v.item() if hasattr(v, "item") else v) for v in labels[:limit]]
    return ", ".join(items) + (f", ... ({len(labels)} in all)" if len(labels) > limit else "")


#: ``--target-transform`` choices: ``log`` trains on log(1 + y) (skewed positive targets
#: such as prices), predictions come back through exp(.) - 1.
TARGET_TRANSFORMS = ("none", "log")


def check_target_transform(name: str, y=None) -> str:
    """Check a ``--target-transform`` name (and that ``log`` fits targets ``y``: all > -1)."""
    if name not in TARGET_TRANSFORMS:
        raise DataError(f"--target-transform must be one of {', '.join(TARGET_TRANSFORMS)}, "
                        f"got {name!r}")
    if name == "log" and y is not None:
        y = np.asarray(y, dtype=np.float64)
        bad = ~(y > -1)
        if bad.any():
            raise DataError(f"--target-transform log needs targets above -1 (it trains on "
                            f"log(1 + y)); the targets hold {y[bad].ravel()[0]!r}")
    return name


@dataclass
class TargetScaler:
    """Regression targets y -> (t(y) - mean) / std per column, with training statistics.

    ``t`` is ``transform``: ``none`` (the identity) or ``log`` (log(1 + y); decoding applies
    exp(.) - 1, so predictions and metrics are in the original units). ``mean`` and ``std``
    have shape (K,) (statistics of t(y)); a constant column gets std 1. ``ndim`` remembers
    whether the original targets were (N,) or (N, K), so predictions come back the same way.
    """

    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    ndim: int = 1
    transform: str = "none"

    def _forward(self, y: np.ndarray) -> np.ndarray:
        return np.log1p(y.astype(np.float64)) if self.transform == "log" else y

    def fit(self, y, rows=None) -> TargetScaler:
        y = np.asarray(y)
        self.ndim = y.ndim
        y2 = y.reshape(len(y), -1)
        if rows is not None:
            y2 = y2[rows]
        check_target_transform(self.transform, y2)
        y2 = self._forward(y2.astype(np.float64))
        self.mean = y2.mean(axis=0)
        std = y2.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    @property
    def n_targets(self) -> int:
        return len(self.mean)

    def encode(self, y, dtype=np.float64) -> np.ndarray:
        """Standardized targets (N, K) in ``dtype``, computed block by block."""
        y = np.asarray(y).reshape(len(y), -1)
        if y.shape[1] != self.n_targets:
            raise DataError(f"expected {self.n_targets} target columns, got {y.shape[1]}")
        check_target_transform(self.transform, y)
        out = np.empty(y.shape, dtype=dtype)
        step = block_rows(y)
        for lo in range(0, len(y), step):
            out[lo:lo + step] = (self._forward(y[lo:lo + step]) - self.mean) / self.std
        return out

    def decode(self, outputs) -> np.ndarray:
        """Model outputs (N, K) back in the original units, float64, (N,) when y was 1-D."""
        out = np.asarray(outputs, dtype=np.float64) * self.std + self.mean
        if self.transform == "log":
            out = np.expm1(out)
        return out[:, 0] if self.ndim == 1 else out


def regression_metrics(pred, y) -> dict[str, float]:
    """R², RMSE and MAE of predictions against targets (same shape, original units).

    R² is scikit-learn's ``r2_score`` with ``multioutput='uniform_average'``: the mean over
    target columns of 1 - SS_res / SS_tot (a constant column counts as 1 when predicted
    exactly, else 0). RMSE and MAE are over all elements.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    err = pred - y
    ss_res = (err**2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    return {"r2": float(r2.mean()), "rmse": float(np.sqrt((err**2).mean())),
            "mae": float(np.abs(err).mean())}


def classification_metrics(pred, y, n_classes: int) -> dict:
    """Accuracy, the confusion matrix (rows: true class, columns: predicted) and per-class
    precision, recall and support, for class indices ``pred`` and ``y`` (N,)."""
    pred = np.asarray(pred, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    cm = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes)
    cm = cm.reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cm.sum(axis=0) > 0, tp / cm.sum(axis=0), 0.0)
        recall = np.where(cm.sum(axis=1) > 0, tp / cm.sum(axis=1), 0.0)
    return {"accuracy": float(tp.sum() / max(1, len(y))), "confusion": cm,
            "precision": precision, "recall": recall, "support": cm.sum(axis=1)}
