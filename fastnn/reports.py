"""What a training run leaves behind: ``metrics.json``, ``history.csv`` and pictures
(``curves.png``; ``confusion.png`` for a classifier, ``pred_vs_true.png`` for a regressor).

Everything is written to a temporary file first and renamed, so a reader never sees half a
file. Pictures need matplotlib (``pip install 'fastnn[plot]'``); without it the run says
so instead of drawing.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .tasks import classification_metrics

NO_MATPLOTLIB = "not drawn: matplotlib is not installed (pip install 'fastnn[plot]')"


@dataclass
class RunResult:
    """What :func:`fastnn.recipes.run_training` did: the metrics and where it wrote its files.

    Defined here, where :func:`write_run` makes it, and re-exported by ``fastnn.recipes``
    (which imports this module, never the other way round)."""

    metrics: dict
    out: str
    files: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def write_json(path: str, obj) -> None:
    """``obj`` as indented JSON at ``path`` (atomically)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=True)
    os.replace(tmp, path)


def history_columns(history: list[dict]) -> list[str]:
    """The columns of ``history.csv``: the keys of the records, in a fixed order."""
    order = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_r2", "val_rmse",
             "val_mae", "lr", "seconds", "samples_per_second"]
    keys = set().union(*history) if history else set(order)
    cols = [k for k in order if k in keys]
    if all(h.get("accuracy") is None for h in history) and history:
        cols.remove("accuracy")  # regression: no accuracy column
    return cols + sorted(keys - set(order))


def write_predictions(path: str, result: np.ndarray, encoding, scores: bool = False) -> None:
    """Predictions as ``.npy`` (an array; labels keep their type, strings as a str array) or
    ``.csv`` (a header naming the targets, or ``score_<class>`` columns), atomically.
    ``encoding`` is the model's :class:`fastnn.recipes.Encoding`."""
    tmp = path + ".tmp"
    if path.endswith(".csv"):
        if scores and encoding.task == "classification":
            header = [f"score_{c}" for c in encoding.classes.labels.tolist()]
        elif encoding.task == "regression":
            header = encoding.target_names or [f"target_{j}" for j in
                                               range(encoding.n_outputs)]
        else:
            header = encoding.target_names or ["prediction"]
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(result.reshape(len(result), -1).tolist())
    else:
        with open(tmp, "wb") as f:
            np.save(f, result, allow_pickle=False)
    os.replace(tmp, path)


def write_history_csv(path: str, history: list[dict]) -> None:
    """One row per epoch (atomically)."""
    cols = history_columns(history)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for h in history:
            w.writerow(["" if h.get(k) is None else h[k] for k in cols])
    os.replace(tmp, path)


class _Figures:
    """Figures drawn straight onto matplotlib's Agg canvas, without ``matplotlib.pyplot``
    (whose import, with its backend machinery, a run does not need) and without touching
    the caller's backend or pyplot's list of open figures."""

    def __init__(self, figure_cls, canvas_cls):
        self.figure_cls, self.canvas_cls = figure_cls, canvas_cls

    def subplots(self, *args, figsize=None, **kwargs):
        fig = self.figure_cls(figsize=figsize)
        self.canvas_cls(fig)
        return fig, fig.subplots(*args, **kwargs)


def _pyplot():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return _Figures(Figure, FigureCanvasAgg)


def _save(fig, plt, path: str) -> None:
    tmp = path + ".tmp.png"
    fig.tight_layout()
    fig.savefig(tmp, dpi=100, format="png")
    os.replace(tmp, path)


def plot_curves(path: str, history: list[dict]) -> str | None:
    """Loss and accuracy (or R² for regression) per epoch, training and validation.
    Returns None when drawn, else a note saying why not."""
    plt = _pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    regression = bool(history) and all(h.get("accuracy") is None for h in history)
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    panels = [(ax1, "loss", "loss", "val_loss")]
    panels.append((ax2, None if regression else "accuracy", "R²" if regression else "accuracy",
                   "val_r2" if regression else "val_accuracy"))
    for ax, key, title, val_key in panels:
        if key is not None:
            ax.plot(epochs, [h[key] for h in history], label="train")
        if history and history[-1].get(val_key) is not None:
            ax.plot(epochs, [h.get(val_key) for h in history], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    _save(fig, plt, path)
    return None


def plot_confusion(path: str, confusion: np.ndarray, labels) -> str | None:
    """The test confusion matrix: rows the true class, columns the predicted one."""
    plt = _pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    k = len(confusion)
    size = min(12.0, 3.0 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion, cmap="Blues")
    names = [str(v) for v in labels]
    ticks = np.arange(k) if k <= 40 else np.arange(0, k, max(1, k // 20))
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90 if k > 10 else 0)
    ax.set_yticks(ticks, [names[i] for i in ticks])
    if k <= 20:
        top = confusion.max() or 1
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if confusion[i, j] > top / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test confusion matrix (accuracy {np.trace(confusion) / confusion.sum():.4f})")
    _save(fig, plt, path)
    return None


def plot_pred_vs_true(path: str, pred: np.ndarray, y: np.ndarray, names=None) -> str | None:
    """Predicted against true values on the test data, one panel per target (up to 4)."""
    plt = _pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    pred, y = pred.reshape(len(pred), -1), y.reshape(len(y), -1)
    k = min(4, y.shape[1])
    fig, axes = plt.subplots(1, k, figsize=(4.5 * k, 4.5), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.scatter(y[:, j], pred[:, j], s=6, alpha=0.5)
        lo, hi = float(min(y[:, j].min(), pred[:, j].min())), \
            float(max(y[:, j].max(), pred[:, j].max()))
        ax.plot([lo, hi], [lo, hi], color="black", lw=1)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        ax.set_title(names[j] if names and j < len(names) else f"target {j}")
        ax.grid(alpha=0.3)
    _save(fig, plt, path)
    return None


class Drawing:
    """Pictures drawn in a background thread while the caller goes on (the run's
    permutation importance: its kernels release the GIL, the drawing is one core's work).

    ``jobs`` are ``(key, plot_function, args)``; each plot function returns None when it
    drew, else a note saying why not, which :meth:`wait` puts into ``notes[key]``. The
    pictures do not depend on when they are drawn; only this thread uses matplotlib until
    :meth:`wait` returns, which re-raises an error of the drawing."""

    def __init__(self, jobs: list, notes: dict[str, str], background: bool = True):
        self.jobs, self.notes = jobs, notes
        self._error: BaseException | None = None
        self._thread = None
        if background and jobs:
            import threading

            self._thread = threading.Thread(target=self._draw, name="fastnn-pictures",
                                            daemon=True)
            self._thread.start()
        else:
            self._draw()
            self._raise()

    def _draw(self) -> None:
        try:
            for key, plot, args in self.jobs:
                note = plot(*args)
                if note:
                    self.notes[key] = note
        except BaseException as exc:  # handed to the caller by wait()
            self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def wait(self, reraise: bool = True) -> None:
        """Wait until the pictures are drawn; re-raise the drawing's error (unless
        ``reraise`` is False: the caller is handling an error of its own)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if reraise:
            self._raise()


def write_run(out: str, history: list[dict], test_metrics: dict, config: dict,
              seconds: float, start_epoch: int, enc, outputs: np.ndarray,
              targets: np.ndarray, background: bool = False):
    """Write the reports of a finished run into ``out``; returns a :class:`RunResult`.

    ``enc`` is the run's :class:`fastnn.recipes.Encoding`; ``outputs`` (N, C) and the
    encoded ``targets`` are the model's on the test data. ``background``: the pictures
    are drawn in a background thread, and ``(result, drawing)`` returned; the caller must
    call ``drawing.wait()`` (a :class:`Drawing`) before reading ``result.notes`` or the
    picture files."""
    last = history[-1]
    new_epochs = history[start_epoch:]
    samples = sum(h["samples_per_second"] * h["seconds"] for h in new_epochs)
    metrics = {f"test_{k}": v for k, v in test_metrics.items()}
    metrics.update({k: v for k, v in last.items() if k.startswith("val_")})
    metrics["train_loss"] = last["loss"]
    if last.get("accuracy") is not None:
        metrics["train_accuracy"] = last["accuracy"]
    metrics.update({"epochs": last["epoch"], "seconds": seconds,
                    "samples_per_second": samples / max(sum(h["seconds"] for h in new_epochs),
                                                        1e-12)})
    files = {"checkpoint": os.path.join(out, "model.npz"),
             "metrics": os.path.join(out, "metrics.json"),
             "history": os.path.join(out, "history.csv"),
             "curves": os.path.join(out, "curves.png")}
    notes: dict[str, str] = {}
    if enc.task == "classification":
        cm = classification_metrics(outputs.argmax(axis=1), targets, len(enc.classes))
        labels = enc.classes.labels.tolist()
        metrics["classes"] = labels
        metrics["per_class"] = {
            str(lab): {"precision": float(cm["precision"][i]), "recall": float(cm["recall"][i]),
                       "support": int(cm["support"][i])} for i, lab in enumerate(labels)}
        metrics["confusion_matrix"] = cm["confusion"].tolist()
        files["confusion"] = os.path.join(out, "confusion.png")
        jobs = [("confusion", plot_confusion, (files["confusion"], cm["confusion"], labels))]
    else:
        files["pred_vs_true"] = os.path.join(out, "pred_vs_true.png")
        jobs = [("pred_vs_true", plot_pred_vs_true,
                 (files["pred_vs_true"], enc.target_scaler.decode(outputs),
                  enc.target_scaler.decode(targets), enc.target_names))]
    jobs.append(("curves", plot_curves, (files["curves"], history)))
    metrics["history"], metrics["config"] = history, config
    write_json(files["metrics"], metrics)
    write_history_csv(files["history"], history)
    result = RunResult(metrics, out, files, notes)
    drawing = Drawing(jobs, notes, background=background)
    return (result, drawing) if background else result


def plot_importance(path: str, importance: dict[str, float], metric: str) -> str | None:
    """Permutation importance per column (the drop of ``metric`` when the column is
    shuffled), largest first. Returns None when drawn, else a note saying why not."""
    plt = _pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    items = sorted(importance.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_xlabel(f"drop of test {metric} when the column is shuffled")
    ax.grid(alpha=0.3, axis="x")
    _save(fig, plt, path)
    return None
