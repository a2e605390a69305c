"""The training loop: ``fit``, ``evaluate``, ``predict``, callbacks, and the MLP builder."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from . import nn
from ._graph_step import NonFiniteLoss, count_correct, graph_step  # noqa: F401  (train's names)
from .data import ArrayDataset, DataLoader
from .graph import no_grad


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the message names the epoch, the step and the lr."""

    @classmethod
    def at(cls, loss: float, epoch: int, step: int, optimizer) -> TrainingDiverged:
        lr = optimizer.param_groups[0]["lr"]
        return cls(f"the loss became {loss} at epoch {epoch}, step {step}: training diverged; "
                   f"the learning rate ({lr:g}) is probably too high")


# ------------------------------------------------------------------------- the model
def build_mlp(input_dim: int, hidden: Sequence[int], n_classes: int, activation: str = "relu",
              batchnorm: bool = True, dropout: float = 0.0, dtype="float32") -> nn.Sequential:
    """Linear -> [BatchNorm1d] -> activation -> [Dropout] per hidden layer, then Linear.

    ``activation`` is a name (``relu``, ``leaky_relu``, ``elu``, ``gelu``, ``tanh``,
    ``sigmoid``, ``silu``) or ``prelu`` (one learned slope per unit).
    """
    layers: list[nn.Module] = []
    width = input_dim
    for h in hidden:
        layers.append(nn.Linear(width, h, dtype=dtype))
        if batchnorm:
            layers.append(nn.BatchNorm1d(h, dtype=dtype))
        layers.append(nn.PReLU(h, dtype=dtype) if activation == "prelu"
                      else nn.make_activation(activation))
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, n_classes, dtype=dtype))
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------- callbacks
class Callback:
    """Called by :func:`fit` after every epoch; return True to stop training."""

    def on_epoch_end(self, epoch: int, logs: dict) -> bool | None:
        return None


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs: at
    the (``patience`` + 1)-th epoch in a row without an improvement (PyTorch's
    ``ReduceLROnPlateau`` counts bad epochs so; Keras and Lightning stop one epoch sooner).

    Parameters
    ----------
    mode : "min" (losses) or "max" (accuracies).
    min_delta : how much an epoch must improve on the best value so far to count as an
        improvement: by more than ``min_delta`` (``min_delta_mode="abs"``, Keras' and
        Lightning's ``min_delta``) or by more than ``min_delta * |best|`` (``"rel"``: below
        ``best * (1 - min_delta)`` for a positive loss, as ``ReduceLROnPlateau``'s
        ``threshold_mode="rel"``).
    restore_best : when training stops, copy back the weights of the epoch that counted as
        the last improvement (True or ``"improvement"``: Keras' ``restore_best_weights``),
        or of the epoch with the best monitored value (``"value"``: Lightning's
        ``ModelCheckpoint(monitor=...)`` beside its ``EarlyStopping``), which can be a later
        one that improved by ``min_delta`` or less. The same epoch when ``min_delta`` is 0.

    ``best`` and ``best_epoch`` are the last improvement's; ``kept`` and ``kept_epoch`` those
    of the epoch whose weights ``restore_best`` keeps.
    """

    def __init__(self, model=None, monitor: str = "val_loss", patience: int = 5,
                 mode: str = "min", min_delta: float = 0.0, restore_best: bool | str = False,
                 min_delta_mode: str = "abs"):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if min_delta_mode not in ("abs", "rel"):
            raise ValueError(f"min_delta_mode must be 'abs' or 'rel', got {min_delta_mode!r}")
        if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        if restore_best not in (False, True, "improvement", "value"):
            raise ValueError(f"restore_best must be False, True, 'improvement' or 'value', "
                             f"got {restore_best!r}")
        self.model, self.monitor, self.patience = model, monitor, int(patience)
        self.mode, self.min_delta, self.restore_best = mode, float(min_delta), restore_best
        self.min_delta_mode = min_delta_mode
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch, self.wait, self._best_state = -1, 0, None
        self.kept, self.kept_epoch = self.best, -1

    def _beats(self, value: float, reference: float, delta: float) -> bool:
        sign = 1.0 if self.mode == "min" else -1.0
        if self.min_delta_mode == "rel" and math.isfinite(reference):
            return sign * value < sign * reference - delta * abs(reference)
        return sign * value < sign * reference - delta

    def on_epoch_end(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            raise KeyError(f"EarlyStopping: no {self.monitor!r} in the epoch's logs "
                           f"({sorted(logs)}); pass val data or monitor another key")
        improved = self._beats(value, self.best, self.min_delta)
        keep = improved if self.restore_best in (False, True, "improvement") else \
            self._beats(value, self.kept, 0.0)
        if keep:
            self.kept, self.kept_epoch = value, epoch
            if self.restore_best and self.model is not None:
                self._best_state = self.model.state_dict()
        if improved:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return False
        self.wait += 1
        if self.wait > self.patience:
            if self._best_state is not None:
                self.model.load_state_dict(self._best_state)
            return True
        return False


class ModelCheckpoint(Callback):
    """Call ``save(epoch, logs)`` after every epoch (or only when ``monitor`` improves).

    ``min_seconds`` > 0 (without ``monitor``): after an epoch that ends at least that long
    after the last save (or after this callback was made), as Lightning's
    ``ModelCheckpoint(train_time_interval=...)``; an epoch skipped so is saved by
    :meth:`flush`, which the caller calls when training ends. A run stopped in between
    (killed, diverged) keeps the state of at most ``min_seconds`` of training ago.
    """

    def __init__(self, save: Callable[[int, dict], object], monitor: str | None = None,
                 mode: str = "min", min_seconds: float = 0.0):
        if min_seconds and monitor is not None:
            # the skipped best epoch's weights would be gone by the time flush saves
            raise ValueError("ModelCheckpoint: min_seconds saves the latest epoch; it "
                             f"cannot be combined with monitor={monitor!r}")
        if not min_seconds >= 0:
            raise ValueError(f"ModelCheckpoint: min_seconds must be >= 0, got {min_seconds!r}")
        self.save, self.monitor, self.mode = save, monitor, mode
        self.best = math.inf if mode == "min" else -math.inf
        self.min_seconds = float(min_seconds)
        self._last = time.perf_counter()
        #: (epoch, logs) of the last epoch not saved yet (``min_seconds``), else None
        self.pending: tuple[int, dict] | None = None

    def on_epoch_end(self, epoch, logs):
        if self.monitor is not None:
            value = logs[self.monitor]
            if not (value < self.best if self.mode == "min" else value > self.best):
                return False
            self.best = value
        if self.min_seconds and time.perf_counter() - self._last < self.min_seconds:
            self.pending = (epoch, logs)
            return False
        self._save(epoch, logs)
        return False

    def _save(self, epoch: int, logs: dict) -> None:
        self.save(epoch, logs)
        self._last, self.pending = time.perf_counter(), None

    def flush(self) -> bool:
        """Save the last epoch if ``min_seconds`` skipped it (call it before the model
        changes again); True when it saved."""
        if self.pending is None:
            return False
        self._save(*self.pending)
        return True


# -------------------------------------------------------------------------- the loop
def _loader(data, batch_size, shuffle, seed, dtype) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    return DataLoader(data if isinstance(data, ArrayDataset) else ArrayDataset(*data),
                      batch_size=batch_size, shuffle=shuffle, seed=seed, dtype=dtype)


def _model_dtype(model) -> np.dtype:
    for p in model.parameters():
        return p.dtype
    return np.dtype(np.float32)


#: Rows per evaluation batch at most for a model with image layers: a row's activations are
#: its image times the channels (4,096 MNIST-sized rows through a 32-channel convolution
#: hold 411 MB per activation; an MNIST-shaped run peaked at 7.8 GB evaluating in batches of
#: 4,096; 256 keeps a layer's under 26 MB). Still needed now that the layers' buffer pools
#: keep only a few batch sizes each (``_buffers.MAX_SHAPES_PER_ROLE``, which was not so when
#: the cap came in): the pools' bound stops other batch sizes' buffers from piling up, but
#: the peak is one batch's own activations, and only this cap bounds that.
IMAGE_EVAL_ROWS = 256


def _has_image_layers(model) -> bool:
    """Whether the model has convolutions, pooling or BatchNorm2d."""
    from .nn import conv

    image_layers = (conv._ConvNd, conv.MaxPool2d, conv.AvgPool2d, conv.AdaptiveAvgPool2d,
                    conv.BatchNorm2d)
    return any(isinstance(m, image_layers) for m in model.modules())


def eval_batch_size(model, batch_size: int) -> int:
    """Rows per evaluation batch: ``batch_size``, at most :data:`IMAGE_EVAL_ROWS` when the
    model has convolutions, pooling or BatchNorm2d."""
    if batch_size > IMAGE_EVAL_ROWS and _has_image_layers(model):
        return IMAGE_EVAL_ROWS
    return batch_size


def evaluate_metrics(model, loss_fn, data, batch_size: int = 1024,
                     target_scaler=None, keep: list | None = None) -> dict[str, float]:
    """The mean loss of ``model`` on ``data`` ((X, y), a dataset or a loader) and its metrics,
    in evaluation mode and without recording a graph; the model's mode is restored. Batches
    of ``batch_size`` rows (of at most :data:`IMAGE_EVAL_ROWS` for a CNN, see
    :func:`eval_batch_size`; a loader keeps its own).

    Class labels give ``{"loss", "accuracy"}``; real targets give ``{"loss", "r2", "rmse",
    "mae"}`` (see :func:`fastnn.tasks.regression_metrics`), in the original units when
    ``target_scaler`` (a :class:`fastnn.tasks.TargetScaler`) says how the targets were
    standardized (R² does not depend on it). ``keep``: a list that receives the
    outputs (N, C) and the targets, as a pair of arrays, for reports.
    """
    from .tasks import regression_metrics

    loader = _loader(data, eval_batch_size(model, batch_size), False, 0, _model_dtype(model))
    classification = loader.dataset.is_classification
    was_training = model.training
    model.eval()
    total, correct, n = 0.0, 0, 0
    outs, targets = [], []
    try:
        with no_grad():
            for xb, yb in loader:
                out = model(xb)
                total += loss_fn(out, yb).item() * len(yb)
                if classification:
                    correct += count_correct(out, yb)
                if keep is not None or not classification:
                    outs.append(np.array(out.data).reshape(len(yb), -1))
                    targets.append(np.array(yb).reshape((len(yb),) if classification
                                                        else (len(yb), -1)))
                n += len(yb)
    finally:
        model.train(was_training)
    if keep is not None:
        keep.extend([np.concatenate(outs), np.concatenate(targets)])
    if classification:
        return {"loss": total / n, "accuracy": correct / n}
    pred, y = np.concatenate(outs).astype(np.float64), np.concatenate(targets)
    if target_scaler is not None:
        pred, y = target_scaler.decode(pred), target_scaler.decode(y)
    return {"loss": total / n, **regression_metrics(pred, y)}


def evaluate(model, loss_fn, data, batch_size: int = 1024) -> tuple[float, float | None]:
    """Mean loss and accuracy of ``model`` on ``data`` ((X, y), a dataset or a loader),
    in evaluation mode and without recording a graph; the model's mode is restored.
    The accuracy is None for regression targets (:func:`evaluate_metrics` gives R²)."""
    m = evaluate_metrics(model, loss_fn, data, batch_size)
    return m["loss"], m.get("accuracy")


def predict(model, X, batch_size: int = 1024) -> np.ndarray:
    """The model's outputs (N, C) for features X (N, D) (images are flattened into rows, as
    fastnn's loaders hand them out), in evaluation mode, in batches of ``batch_size`` rows
    (at most :data:`IMAGE_EVAL_ROWS` for a CNN)."""
    batch_size = eval_batch_size(model, batch_size)
    X = np.asarray(X)
    if X.ndim > 2:
        X = X.reshape(len(X), -1)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            outs = [np.array(model(X[i:i + batch_size]).data)
                    for i in range(0, len(X), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.empty((0, 0))


def _end_epoch(epoch, epochs, total, correct, seen, seconds, optimizer, schedule, history,
              validate=None, log=None, suffix: str = "") -> dict:
    """The end of an epoch of :func:`fit`:
    the record (losses as means over ``seen`` samples; ``correct`` is None for regression),
    validation (``validate()`` returns a dict of metrics, see :func:`evaluate_metrics`, each
    recorded as ``val_<name>``), the schedule's step (ReduceLROnPlateau gets the validation
    loss, else the training loss), the history and the epoch's line on ``log`` (None:
    quiet)."""
    from .optim.lr_scheduler import ReduceLROnPlateau

    record = {"epoch": epoch, "loss": total / seen,
              "accuracy": None if correct is None else correct / seen,
              "val_loss": None, "lr": optimizer.param_groups[0]["lr"],
              "seconds": seconds, "samples_per_second": seen / seconds}
    if correct is not None:
        record["val_accuracy"] = None
    if validate is not None:
        record.update({f"val_{k}": v for k, v in validate().items()})
    if schedule is not None:
        if isinstance(schedule, ReduceLROnPlateau):
            schedule.step(record["val_loss"] if validate is not None else record["loss"])
        else:
            schedule.step()
    history.append(record)
    if log is not None:
        parts = [f"epoch {epoch:3d}/{epochs}", f"loss {record['loss']:.4f}"]
        if correct is not None:
            parts.append(f"acc {record['accuracy']:.4f}")
        for key, short in (("val_loss", "val_loss"), ("val_accuracy", "val_acc"),
                           ("val_r2", "val_r2"), ("val_rmse", "val_rmse")):
            if record.get(key) is not None:
                parts.append(f"{short} {record[key]:.4f}")
        parts.append(f"{record['samples_per_second']:,.0f} samples/s{suffix}")
        print("  ".join(parts), file=log, flush=True)
    return record


class LocalStep:
    """One training step in this process, the default step of :func:`fit`.

    ``step(x, y, n, loss_fn)`` runs the forward pass and the loss, checks the loss *before*
    anything is updated (a NaN or Inf raises :class:`NonFiniteLoss`, which :func:`fit` turns
    into :class:`TrainingDiverged`, with the model and the optimizer state as they were),
    then the backward pass and the optimizer step.
    Returns the batch's mean loss and, for class labels, the number of correct predictions
    (None for regression targets). Data-parallel training plugs in
    :class:`fastnn.distributed.DistributedDataParallel`, which has the same interface.
    """

    #: This process prints progress and runs the callbacks.
    is_main = True
    #: Appended to each epoch's line.
    suffix = ""

    def __init__(self, model, optimizer, adaptive_threads: bool = True, compiled: bool = True):
        from . import _threads
        from .kernels import blas

        self.model, self.optimizer = model, optimizer
        #: Run the step as a compiled plan (``fastnn.compiled``) where the model, loss and
        #: optimizer have one; ``compiled_step`` is that plan, or None with the reason in
        #: ``not_compiled_because``.
        self.compiled = compiled
        self.compiled_step, self.not_compiled_because = None, None
        self._compiled_loss = None
        # Where products run on the pool, time the steps and fall back to one thread while
        # other processes starve it (see ThreadGovernor); the numbers do not change.
        self.governor = _threads.ThreadGovernor() if adaptive_threads and blas.AVAILABLE \
            else None

    def __call__(self, x, y, n: int, loss_fn) -> tuple[float, int | None]:
        if self.governor is None:
            return self.train_step(x, y, n, loss_fn)
        t0 = time.perf_counter()
        result = self.train_step(x, y, n, loss_fn)
        self.governor.record(time.perf_counter() - t0)
        return result

    def train_step(self, x, y, n: int, loss_fn) -> tuple[float, int | None]:
        """The step itself (what a subclass overrides): forward, loss, the check, backward,
        update; returns (mean loss, correct or None). The compiled plan where there is one
        and it takes the batch, else the graph (the same bits either way)."""
        compiled = self._compiled_for(loss_fn) if self.compiled else None
        if compiled is not None and compiled.accepts(x, y):
            return compiled.train_step(x, y, n, loss_fn)
        return graph_step(self.model, loss_fn, self.optimizer, x, y)

    def prepare(self, loss_fn) -> str | None:
        """Compile the step for ``loss_fn`` now (else at the first batch); returns None when
        it compiled, else why the graph path will train (:class:`fastnn.NotCompilable`'s
        message, or "compilation turned off")."""
        if not self.compiled:
            return "compilation turned off"
        self._compiled_for(loss_fn)
        return self.not_compiled_because

    def _compiled_for(self, loss_fn):
        if self._compiled_loss is not loss_fn:
            from .compiled import NotCompilable, compile_step

            self._compiled_loss = loss_fn
            try:
                # This step times itself (``__call__``): the plan runs without a governor.
                self.compiled_step = compile_step(self.model, loss_fn, self.optimizer,
                                                  adaptive_threads=False)
                self.not_compiled_because = None
            except NotCompilable as exc:
                self.compiled_step, self.not_compiled_because = None, str(exc)
        return self.compiled_step

    def close(self) -> None:
        """The loop is over: give the thread budget back."""
        if self.governor is not None:
            self.governor.restore()

    def validate(self, model, loss_fn, val, target_scaler=None) -> dict[str, float]:
        """The validation metrics (see :func:`evaluate_metrics`)."""
        return evaluate_metrics(model, loss_fn, val, target_scaler=target_scaler)

    def agree(self, stop: bool) -> bool:
        """Whether to stop (in a data-parallel job: the main process's decision)."""
        return stop


def fit(model, loss_fn, optimizer, train, val=None, epochs: int = 10, batch_size: int = 64,
        schedule=None, callbacks: Sequence[Callback] = (), seed: int = 0, quiet: bool = False,
        start_epoch: int = 0, history: list | None = None, log=None,
        target_scaler=None, step=None, compiled: bool = True) -> list[dict]:
    """Train ``model`` and return the history: one dict per epoch. The one training loop
    of fastnn: the command line, data-parallel training and Python users all run it.

    Parameters
    ----------
    model, loss_fn, optimizer : the network, ``loss_fn(outputs, targets) -> Tensor`` and a
        fastnn optimizer over the model's parameters.
    train, val : (X, y), an ArrayDataset or a DataLoader (built with ``batch_size``,
        shuffled from ``seed``, in the model's dtype); ``train`` may also be a
        :class:`fastnn.distributed.DistributedSampler` (batches ``(x, y, n_global)``).
        ``y`` holds class indices (int) or regression targets (float).
    epochs : train until this epoch number (counting ``start_epoch`` epochs already done).
    schedule : an lr scheduler stepped after every epoch (ReduceLROnPlateau gets the
        validation loss, or the training loss without validation data).
    target_scaler : for regression, how the targets were standardized
        (:class:`fastnn.tasks.TargetScaler`), so that validation metrics are reported in
        the original units.
    callbacks : :class:`Callback` objects; any returning True stops training.
    quiet : no progress bar and no per-epoch lines.
    history : a list holding the earlier epochs' records (when resuming); the new records
        are appended to it in place, so callbacks can save the whole history.
    log : where per-epoch lines go (default: stderr).
    step : how one batch trains: ``step(x, y, n, loss_fn) -> (mean loss, correct or None)``
        (default :class:`LocalStep`; :class:`fastnn.distributed.DistributedDataParallel`
        for data-parallel training).
    compiled : let the default step run as a compiled plan of kernel calls where the model,
        loss and optimizer have one (:func:`fastnn.compile_step`; the same bits as the graph,
        faster); False: always the graph.

    Each record has ``epoch``, ``loss``, ``accuracy`` (None for regression), ``val_loss``
    (None without val) and the validation metrics (``val_accuracy``; for regression
    ``val_r2``, ``val_rmse``, ``val_mae``), ``lr``, ``seconds`` and ``samples_per_second``.

    Raises
    ------
    TrainingDiverged : the loss became NaN or Inf (with the epoch, the step and the lr);
        the step that saw it updated nothing.
    """
    dtype = _model_dtype(model)
    # Anything that yields batches and names its data set (a DataLoader, a DistributedSampler,
    # fastnn.sklearn's batches) is used as it is; (X, y) and an ArrayDataset get a loader.
    loader = train if hasattr(train, "dataset") else \
        _loader(train, batch_size, True, seed, dtype)
    step = step if step is not None else LocalStep(model, optimizer, compiled=compiled)
    val_data = None if val is None else (val if isinstance(val, (DataLoader, ArrayDataset))
                                         else ArrayDataset(*val))
    classification = loader.dataset.is_classification
    history = history if history is not None else []  # appended to in place
    log = log or sys.stderr
    quiet = quiet or not step.is_main
    show_bar = not quiet and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    if show_bar:  # (only then: tqdm.auto imports asyncio, 80 ms of a run's start)
        try:
            from tqdm.auto import tqdm
        except ImportError:  # progress bars are optional
            show_bar = False
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            model.train()
            t0 = time.perf_counter()
            total, correct, seen = 0.0, 0 if classification else None, 0
            bar = tqdm(total=len(loader), desc=f"epoch {epoch}/{epochs}", leave=False,
                       disable=not show_bar, unit="batch") if show_bar else None
            try:
                for n_step, batch in enumerate(loader, start=1):
                    xb, yb = batch[0], batch[1]
                    n = batch[2] if len(batch) > 2 else len(yb)
                    try:
                        value, right = step(xb, yb, n, loss_fn)
                    except NonFiniteLoss as exc:
                        raise TrainingDiverged.at(exc.value, epoch, n_step, optimizer) from None
                    total += value * n
                    if classification:
                        correct += right
                    seen += n
                    if bar is not None:
                        bar.update(1)
                        if n_step % 10 == 0 or n_step == len(loader):
                            bar.set_postfix(loss=f"{total / seen:.4f}",
                                            samples_s=f"{seen / (time.perf_counter() - t0):,.0f}")
            finally:
                if bar is not None:
                    bar.close()
            validate = None if val_data is None else \
                (lambda: step.validate(model, loss_fn, val_data, target_scaler))
            record = _end_epoch(epoch, epochs, total, correct, seen, time.perf_counter() - t0,
                               optimizer, schedule, history, validate,
                               None if quiet else log, suffix=step.suffix)
            stop = False
            if step.is_main:
                for cb in callbacks:
                    stop = bool(cb.on_epoch_end(epoch, record)) or stop
            if step.agree(stop):
                break
    finally:
        if hasattr(step, "close"):
            step.close()
    return history


