"""The main job as library calls: a configuration becomes data, a model, an optimizer, a
schedule and a loss; a training run writes its checkpoint and reports; a checkpoint becomes
a model that reads raw data and answers in the original labels or units.

``fastnn train``, ``evaluate`` and ``predict`` are thin shells over :func:`run_training`,
:func:`load_trained` and :class:`TrainedModel`; Python users can call them the same way.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .data import ArrayDataset, DataError, DataLoader, Standardizer, check_finite, split_rows
from .reports import RunResult  # noqa: F401  (reports writes it; recipes returns it)
from .tabular import TableEncoder
from .tasks import TARGET_TRANSFORMS, Classes, TargetScaler, check_target_transform, infer_task

DEFAULTS = {
    "data": "digits", "task": "auto", "hidden": "256,256", "activation": "relu",
    "batchnorm": True, "dropout": 0.2, "loss": None, "optimizer": "adam", "lr": None,
    "weight_decay": 1e-4, "schedule": "cosine", "epochs": 30, "batch_size": 64, "seed": 0,
    "val_fraction": 0.1, "dtype": "float32", "arch": "mlp", "augment": False,
    # tables (csv:/parquet: data): a held-out test file, role overrides, embeddings, the
    # target transform, early stopping on the validation loss (0: off)
    "test": None, "categorical": None, "numeric": None, "drop": None, "embedding_dim": None,
    "target_transform": "none", "patience": 0, "numeric_encoding": "none", "numeric_bins": 48,
}
#: What a table (csv:/parquet: data) gets where the user did not say: chosen by
#: measurement on real tables (docs/tabular.md, asv_bench/real_tables.py). The settings
#: that are None here depend on the number of training rows: :func:`tabular_recipe`.
TABULAR_DEFAULTS = {"hidden": None, "dropout": 0.1, "weight_decay": None, "epochs": None,
                    "patience": None, "batch_size": None, "schedule": None,
                    "val_fraction": None,
                    "target_transform": "auto", "numeric_encoding": "ple", "numeric_bins": None}
#: A table with at least this many training rows gets the large-table settings of
#: :func:`tabular_recipe`.
LARGE_TABLE_ROWS = 20_000
#: A table with fewer training rows than this (counted with :data:`TABLE_VAL_FRACTION` held
#: out) trains on every row for a fixed number of epochs: its validation split would be
#: too small to choose an epoch (:func:`tabular_recipe`).
SMALL_TABLE_ROWS = 500
#: A table of SMALL_TABLE_ROWS up to this many training rows is trained again on every row
#: after early stopping has chosen the epoch count (``refit``); from here on its validation
#: split (500 rows and more) is left out of training as before (:func:`tabular_recipe`).
REFIT_TABLE_ROWS = 5_000
#: The validation share of a table that is not small (the early stopping and the plateau
#: schedule follow its loss).
TABLE_VAL_FRACTION = 0.1
#: The fixed number of epochs (cosine schedule) of a small table.
SMALL_TABLE_EPOCHS = 100
#: Early stopping of a table of :data:`LARGE_TABLE_ROWS` and more: a validation loss counts
#: as lower only when it is below ``best * (1 - LARGE_TABLE_MIN_DELTA)`` (relative
#: ``min_delta`` of :class:`fastnn.train.EarlyStopping`), and the weights kept are those of
#: the epoch with the lowest loss all the same (:func:`tabular_recipe`).
LARGE_TABLE_MIN_DELTA = 0.01
#: Settings that define the model (a checkpoint rebuilds it from them).
ARCHITECTURE = ("hidden", "activation", "batchnorm", "dropout", "dtype", "arch",
                "embedding_dim", "numeric_encoding", "numeric_bins")
#: ``--numeric-encoding``: how a table's continuous features enter its TabularMLP.
NUMERIC_ENCODINGS = ("ple", "none")
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05,
              "rmsprop": 1e-3, "adam": 2e-3, "adamw": 2e-3}
SCHEDULES = ("none", "step", "cosine", "plateau")
#: ``plateau``: the learning rate is multiplied by this after ``PLATEAU_PATIENCE`` epochs
#: without a lower validation loss.
PLATEAU_FACTOR, PLATEAU_PATIENCE = 0.2, 3
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "silu", "prelu")
#: The losses of each task; the first is the default.
LOSSES = {"classification": ("cross_entropy", "hinge"), "regression": ("mse", "l1", "huber")}
TEST_FRACTION = 0.2  # held out for testing when a data source has no test part


class ConfigError(ValueError):
    """A setting that cannot be used (the message names the option)."""


# ------------------------------------------------------------------------ factories
def parse_hidden(text) -> list[int]:
    """Hidden layer sizes from ``"256,256"`` (or a list)."""
    if isinstance(text, (list, tuple)):
        sizes = list(text)
    else:
        try:
            sizes = [int(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--hidden takes comma-separated layer sizes like 256,256, "
                              f"got {text!r}") from None
    if any(not isinstance(s, int) or s <= 0 for s in sizes):
        raise ConfigError(f"--hidden sizes must be positive integers, got {text!r}")
    return sizes


def make_optimizer(name: str, params, lr: float, weight_decay: float):
    """An optimizer by its command-line name (``momentum`` and ``nesterov`` are SGD with
    momentum 0.9)."""
    from . import optim

    makers = {
        "sgd": lambda: optim.SGD(params, lr=lr, weight_decay=weight_decay),
        "momentum": lambda: optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay),
        "nesterov": lambda: optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                                      weight_decay=weight_decay),
        "adagrad": lambda: optim.Adagrad(params, lr=lr, weight_decay=weight_decay),
        "rmsprop": lambda: optim.RMSprop(params, lr=lr, weight_decay=weight_decay),
        "adam": lambda: optim.Adam(params, lr=lr, weight_decay=weight_decay),
        "adamw": lambda: optim.AdamW(params, lr=lr, weight_decay=weight_decay),
    }
    if name not in makers:
        raise ConfigError(f"--optimizer must be one of {', '.join(makers)}, got {name!r}")
    try:
        return makers[name]()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def make_schedule(name: str, optimizer, epochs: int):
    """``none``, ``step`` (x0.1 every third of the run), ``cosine`` (to 0 at ``epochs``) or
    ``plateau`` (x :data:`PLATEAU_FACTOR` after :data:`PLATEAU_PATIENCE` epochs without a
    lower validation loss: PyTorch's ``ReduceLROnPlateau``, stepped with the validation loss,
    or the training loss without a validation split).

    The schedule is defined by the run's total number of epochs: a resumed run that asks
    for more epochs continues on the curve of the longer run from where it stands."""
    from .optim import lr_scheduler as S

    if name == "none":
        return None
    if name == "step":
        return S.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    if name == "cosine":
        return S.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if name == "plateau":
        return S.ReduceLROnPlateau(optimizer, factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE)
    raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")


def make_loss(name: str | None, task: str):
    """The loss function of a task by its command-line name (None: the task's default)."""
    from . import losses

    names = LOSSES[task]
    name = name or names[0]
    if name not in names:
        other = "regression" if task == "classification" else "classification"
        hint = f" (a {other} loss)" if name in LOSSES[other] else ""
        raise ConfigError(f"--loss {name}{hint} does not fit a {task} task; use one of "
                          f"{', '.join(names)}")
    fn = {"cross_entropy": "cross_entropy", "hinge": "multiclass_hinge", "mse": "mse_loss",
          "l1": "l1_loss", "huber": "huber_loss"}[name]
    if not hasattr(losses, fn):
        raise NotImplementedError(f"--loss {name}: fastnn.losses.{fn} is not built yet")
    return getattr(losses, fn)


def build_model(arch: dict):
    """The MLP of an ``architecture`` record (see :func:`fastnn.train.build_mlp`), the CNN
    of one with ``"arch": "cnn"`` (:func:`build_cnn`), or a :class:`fastnn.nn.TabularMLP`
    when the record has categorical ``cardinalities``."""
    from .train import build_mlp

    n_out = arch.get("n_outputs", arch.get("n_classes"))
    if arch.get("arch", "mlp") == "cnn":
        return build_cnn(arch["image_shape"], arch["hidden"], n_out, arch["activation"],
                         arch["batchnorm"], arch["dropout"], arch["dtype"])
    if arch.get("cardinalities") or arch.get("numeric_bin_counts"):
        from .nn import TabularMLP

        # numeric_bin_counts: placeholder edges of these shapes, filled by the state dict
        return TabularMLP(arch["n_continuous"], arch["cardinalities"], arch["embedding_dims"],
                          arch["hidden"], n_out, arch["activation"], arch["batchnorm"],
                          arch["dropout"], dtype=arch["dtype"],
                          numeric_bins=arch.get("numeric_bin_counts"))
    return build_mlp(arch["input_dim"], arch["hidden"], n_out, arch["activation"],
                     arch["batchnorm"], arch["dropout"], arch["dtype"])


# ------------------------------------------------------------------------ --arch cnn
#: (C, H, W) of the images of the named data sets (their rows hold the pixels in this order).
IMAGE_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28),
                "cifar10": (3, 32, 32)}


def image_shape(spec: str, n_features: int) -> tuple[int, int, int]:
    """The (C, H, W) of the images of data ``spec`` whose rows hold ``n_features`` pixels:
    the named image sets', an npz file's X (N, C, H, W) or (N, H, W), else a square
    single-channel image. Raises ConfigError when none fits."""
    kind, _, rest = spec.partition(":")
    shape = IMAGE_SHAPES.get(kind)
    if shape is None and kind == "npz" and rest:
        with np.load(rest, allow_pickle=False) as f:
            dims = f["X"].shape if "X" in f.files else ()
        shape = tuple(dims[1:]) if len(dims) == 4 else (1, *dims[1:]) if len(dims) == 3 \
            else None
    if shape is None:
        side = int(round(n_features ** 0.5))
        shape = (1, side, side) if side * side == n_features else None
    if shape is None or int(np.prod(shape)) != n_features:
        raise ConfigError(f"--arch cnn needs images: {spec!r} has {n_features} features per "
                          f"sample, which are not the pixels of a known image shape (give an "
                          f"npz whose X is (N, C, H, W))")
    return tuple(int(v) for v in shape)


def _cnn_stages(h: int, w: int) -> list[int]:
    """The channels of :func:`build_cnn`'s stages for (h, w) images: 32, 64, 128 while the
    smaller side, halved after each stage, is at least 8."""
    widths = []
    for width in (32, 64, 128):
        if min(h, w) < 8:
            break
        widths.append(width)
        h, w = h // 2, w // 2
    return widths


def build_cnn(image_shape, hidden, n_outputs: int, activation: str = "relu",
              batchnorm: bool = True, dropout: float = 0.0, dtype="float32"):
    """A small CNN for images (C, H, W) given as rows of pixels:

    Unflatten to (C, H, W), then per stage two [Conv2d 3x3 "same" -> [BatchNorm2d] ->
    activation] and MaxPool2d(2), with 32, 64, 128 channels, as many stages as halve the
    smaller side while it is at least 8 (digits 8x8: one stage, MNIST 28x28: two, CIFAR 32x32:
    three); then Flatten and the MLP head of :func:`fastnn.train.build_mlp` (``hidden``,
    BatchNorm1d, ``dropout``)."""
    from . import nn
    from .train import build_mlp

    c, h, w = (int(v) for v in image_shape)
    layers = [nn.Unflatten(1, (c, h, w))]
    for width in _cnn_stages(h, w):
        for _ in range(2):
            layers.append(nn.Conv2d(c, width, 3, padding=1, bias=not batchnorm, dtype=dtype))
            if batchnorm:
                layers.append(nn.BatchNorm2d(width, dtype=dtype))
            layers.append(nn.PReLU(dtype=dtype) if activation == "prelu"
                          else nn.make_activation(activation))
            c = width
        layers.append(nn.MaxPool2d(2))
        h, w = h // 2, w // 2
    layers.append(nn.Flatten())
    head = build_mlp(c * h * w, hidden, n_outputs, activation, batchnorm, dropout, dtype)
    return nn.Sequential(*layers, *head)


def standardize_per_channel(standardizer, X: np.ndarray, rows, image_shape) -> None:
    """Refit ``standardizer`` (a fitted :class:`fastnn.data.Standardizer` of rows of pixels)
    to one mean and one standard deviation per image channel, over all pixels of the training
    images ``X[rows]`` (X (N, C*H*W) in (C, H, W) order), each repeated over its channel's
    pixels: the statistics a CNN's inputs get in ``fastnn train --arch cnn``.

    Per pixel (the MLP's standardization), a border pixel that is nearly always 0 is scaled
    by its own tiny deviation, so the few images that touch it show there a value far larger
    than anywhere else, and a convolution, which slides the same weights over every pixel,
    sees the border differently from the middle. One scale per channel keeps the image's
    contrast: measured on the bundled digits (docs/cnn.md, "Digits"), seeds 0-4 gave test
    accuracy 0.9889-0.9972 (mean 0.9939) against 0.9833-0.9944 (mean 0.9911) per pixel.
    The fitted arrays keep their (C*H*W,) shape, so checkpoints and predictions read them as
    before. Statistics in float64, block by block (no copy of X)."""
    from .data import block_rows

    c = int(image_shape[0])
    planes = X.reshape(len(X), c, -1)
    rows = np.arange(len(X)) if rows is None else np.sort(np.asarray(rows))
    step = block_rows(X)
    shift, s1, s2, count = None, 0.0, 0.0, 0
    for lo in range(0, len(rows), step):
        block = planes[rows[lo:lo + step]].astype(np.float64)
        if shift is None:  # shifted sums: the variance does not cancel catastrophically
            shift = block.mean(axis=(0, 2))
        centred = block - shift[:, None]
        s1 = s1 + centred.sum(axis=(0, 2))
        s2 = s2 + np.square(centred).sum(axis=(0, 2))
        count += block.shape[0] * block.shape[2]
    mean = shift + s1 / count
    std = np.sqrt(np.maximum(s2 / count - (s1 / count) ** 2, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel is left unscaled
    pixels = planes.shape[2]
    standardizer.mean, standardizer.std = np.repeat(mean, pixels), np.repeat(std, pixels)


def _model_summary(cfg: dict, n_in: int, n_out: int, spec: str, mlp: str = "MLP") -> str:
    """"MLP 64-256-256-10", or for --arch cnn "CNN 1x8x8 conv 32-32 pool, head 256-256-10"."""
    head = f"{'-'.join(map(str, cfg['hidden']))}-{n_out}"
    if cfg.get("arch", "mlp") != "cnn":
        return f"{mlp} {n_in}-{head}"
    shape = image_shape(spec, n_in)
    convs = "-pool-".join(f"{w}-{w}" for w in _cnn_stages(*shape[1:]))
    return f"CNN {'x'.join(map(str, shape))} conv {convs}-pool, head {head}"


def _cnn_architecture(cfg: dict, data) -> dict:
    """The entries an ``--arch cnn`` run adds to its architecture record (none for mlp)."""
    if cfg["arch"] == "mlp":
        return {}
    if cfg["arch"] != "cnn":
        raise ConfigError(f"--arch must be mlp or cnn, got {cfg['arch']!r}")
    return {"arch": "cnn", "image_shape": list(image_shape(cfg["data"], int(data.n_features)))}


#: Zero padding of ``--augment``'s random crops (torchvision's CIFAR recipe).
AUGMENT_PADDING = 4


class AugmentedBatches:
    """The batches of a :class:`~fastnn.data.DataLoader` of images (rows of (C, H, W)
    pixels), each randomly cropped with zero padding ``pad`` and flipped horizontally, in
    place in the loader's batch buffer (``kernels.augment.flip_crop``): ``fastnn train
    --augment``.

    The crop corners and flips are drawn from the loader's own generator, whose state is in
    the checkpoint: a seed gives the same run on any number of threads or ranks (every rank
    draws the whole global batch's numbers), and a resumed run continues the same stream.
    """

    def __init__(self, loader, image_shape, pad: int = AUGMENT_PADDING):
        from ._buffers import BufferPool

        self.loader, self.image_shape, self.pad = loader, tuple(image_shape), int(pad)
        self._pool = BufferPool()

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        from .kernels import augment as K_augment

        C, H, W = self.image_shape
        generator = self.loader.generator
        for xb, yb in self.loader:
            n = len(xb)
            offsets = generator.integers(0, 2 * self.pad + 1, size=(n, 2))
            flips = (generator.random(n) < 0.5).astype(np.uint8)
            scratch = self._pool.get("pixels", xb.shape, xb.dtype)
            K_augment.flip_crop(xb.size)(xb, C, H, W, self.pad, offsets, flips, scratch)
            yield xb, yb

    @property
    def dataset(self):
        return self.loader.dataset

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)


# --------------------------------------------------------------------- the encoding
@dataclass
class Encoding:
    """How a trained model reads raw data and answers: the input standardization, and the
    classes (classification) or the target standardization (regression)."""

    task: str
    standardizer: Standardizer
    classes: Classes | None = None
    target_scaler: TargetScaler | None = None
    feature_names: list[str] | None = None
    target_names: list[str] | None = None
    #: A table's column roles, medians and vocabularies (:mod:`fastnn.tabular`), or None.
    table: TableEncoder | None = None

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else \
            self.target_scaler.n_targets

    def encode_targets(self, y, name: str = "y", dtype=np.float64) -> np.ndarray:
        """Class indices (N,) int64, or standardized targets (N, K)."""
        if self.task == "classification":
            return self.classes.encode(y, name=name)
        y = np.asarray(y)
        if y.dtype.kind not in "iuf":
            raise DataError(f"{name} must be numeric targets for this regression model, got "
                            f"dtype {y.dtype}")
        check_finite(y, name=name)
        return self.target_scaler.encode(y, dtype=dtype)

    def decode_outputs(self, outputs) -> np.ndarray:
        """Predicted labels (N,), or predicted values in the original units."""
        outputs = np.asarray(outputs)
        if self.task == "classification":
            return self.classes.decode(outputs.argmax(axis=1))
        return self.target_scaler.decode(outputs)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays a checkpoint keeps (``data/...``)."""
        out = {"data/mean": self.standardizer.mean, "data/std": self.standardizer.std}
        if self.task == "classification":
            out["data/classes"] = self.classes.labels
        else:
            out["data/target_mean"] = self.target_scaler.mean
            out["data/target_std"] = self.target_scaler.std
        if self.table is not None:
            out.update({f"data/table/{k}": v for k, v in self.table.state()[1].items()})
        return out

    def record(self, why: str = "") -> dict:
        """The JSON part (for the checkpoint's configuration)."""
        rec = {"kind": self.task, "why": why,
               "target_ndim": None if self.target_scaler is None else self.target_scaler.ndim,
               "feature_names": self.feature_names, "target_names": self.target_names}
        if self.target_scaler is not None:
            rec["target_transform"] = self.target_scaler.transform
        if self.table is not None:
            rec["table"] = self.table.state()[0]
        return rec

    def metadata(self) -> dict[str, str]:
        """The encoding as ``str -> str`` entries (``run.*``) for a safetensors file."""
        import json

        meta = {"run.task": self.task,
                "run.input_mean": json.dumps(self.standardizer.mean.tolist()),
                "run.input_std": json.dumps(self.standardizer.std.tolist()),
                "run.names": json.dumps({"features": self.feature_names,
                                         "targets": self.target_names})}
        if self.task == "classification":
            meta["run.classes"] = json.dumps(self.classes.labels.tolist())
        else:
            meta["run.target_mean"] = json.dumps(self.target_scaler.mean.tolist())
            meta["run.target_std"] = json.dumps(self.target_scaler.std.tolist())
            meta["run.target_ndim"] = str(self.target_scaler.ndim)
            meta["run.target_transform"] = self.target_scaler.transform
        if self.table is not None:
            record, arrays = self.table.state()
            meta["run.table"] = json.dumps(record)
            meta["run.table_vocabularies"] = json.dumps({k: v.tolist()
                                                         for k, v in arrays.items()})
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str], where: str = "") -> Encoding:
        """The inverse of :meth:`metadata`."""
        import json

        if "run.task" not in meta:
            raise DataError(f"{where}: holds a model but not a training run's encoding (the "
                            "input standardization and the classes); write it with "
                            "`fastnn export CKPT --safetensors FILE`, or load it in Python "
                            "with fnn.load_safetensors")
        try:
            std = Standardizer(np.array(json.loads(meta["run.input_mean"]), dtype=np.float64),
                               np.array(json.loads(meta["run.input_std"]), dtype=np.float64))
            names = json.loads(meta.get("run.names", "{}"))
            kw = {"feature_names": names.get("features"), "target_names": names.get("targets")}
            if "run.table" in meta:
                vocab = json.loads(meta.get("run.table_vocabularies", "{}"))
                kw["table"] = TableEncoder.from_state(
                    json.loads(meta["run.table"]),
                    {k: np.array(v, dtype=str) for k, v in vocab.items()})
            if meta["run.task"] == "classification":
                return cls("classification", std,
                           classes=Classes(np.array(json.loads(meta["run.classes"]))), **kw)
            scaler = TargetScaler(np.array(json.loads(meta["run.target_mean"]), np.float64),
                                  np.array(json.loads(meta["run.target_std"]), np.float64),
                                  int(meta.get("run.target_ndim", "1")),
                                  meta.get("run.target_transform", "none"))
            return cls("regression", std, target_scaler=scaler, **kw)
        except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            raise DataError(f"{where}: a damaged run encoding in its metadata "
                            f"({str(exc)[:160]})") from None

    @classmethod
    def from_checkpoint(cls, ckpt) -> Encoding:
        from .checkpoint import CheckpointError

        a, cfg = ckpt.arrays, ckpt.meta.get("config", {})
        if "data/mean" not in a or "data/std" not in a:
            raise CheckpointError(f"{ckpt.path}: records no standardization of the inputs")
        std = Standardizer(a["data/mean"], a["data/std"])
        rec = cfg.get("task") or {"kind": "classification"}  # version-1 runs: classifiers
        table = None
        if rec.get("table") is not None:
            try:
                table = TableEncoder.from_state(rec["table"], ckpt.section("data/table"))
            except DataError as exc:
                raise CheckpointError(f"{ckpt.path}: {exc}") from None
        if rec["kind"] == "classification":
            n = cfg.get("architecture", {})
            n = n.get("n_outputs", n.get("n_classes"))
            labels = a.get("data/classes")
            if labels is None:
                if n is None:
                    raise CheckpointError(f"{ckpt.path}: records no classes")
                labels = np.arange(n)
            return cls("classification", std, classes=Classes(labels),
                       feature_names=rec.get("feature_names"),
                       target_names=rec.get("target_names"), table=table)
        if "data/target_mean" not in a:
            raise CheckpointError(f"{ckpt.path}: a regression run without its target scaling")
        scaler = TargetScaler(a["data/target_mean"], a["data/target_std"],
                              int(rec.get("target_ndim") or 1),
                              rec.get("target_transform") or "none")
        return cls("regression", std, target_scaler=scaler,
                   feature_names=rec.get("feature_names"), target_names=rec.get("target_names"),
                   table=table)


# ---------------------------------------------------------------------------- data
@dataclass
class PreparedData:
    """The parts of a data spec, encoded and ready to train on (no copy of the features:
    the parts are index arrays into them, standardized batch by batch)."""

    spec: str
    train: ArrayDataset | None
    val: ArrayDataset | None
    test: ArrayDataset | None
    encoding: Encoding
    why: str = ""
    #: What was left out of the files, said before training or scoring (rows whose target
    #: is blank).
    notes: list[str] = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return (self.train or self.test).n_features


def _features(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), -1) if X.ndim != 2 else X


def _is_table_spec(spec) -> bool:
    """Whether ``spec`` is a table: ``csv:``/``parquet:`` or a DataFrame/pyarrow Table."""
    return not isinstance(spec, str) or spec.startswith(("csv:", "parquet:"))


def _spec_name(spec) -> str:
    return spec if isinstance(spec, str) else f"a {type(spec).__name__}"


def _load(spec, target: str | None, encoding: Encoding | None):
    """The Split of ``spec`` (a data spec, or a DataFrame/pyarrow Table with ``target``)."""
    from .datasets import load_spec, load_table, split_csv_spec

    if not isinstance(spec, str):
        if target is None and encoding is not None and encoding.target_names:
            target = ",".join(encoding.target_names)
        if target is None:
            raise ConfigError("a table needs target= (the name of its target column)")
        return load_table(spec, target, features=_model_columns(encoding),
                          blank_target="drop")
    if _is_table_spec(spec):
        path, target = split_csv_spec(spec.partition(":")[2])
        if encoding is not None:  # the model's columns, by name; typed as in training
            target = target or ",".join(encoding.target_names or []) or None
            types = encoding.table.column_types() if encoding.table is not None else None
            return load_table(path, target, features=_model_columns(encoding),
                              column_types=types, blank_target="drop")
        if target is None:
            raise DataError(f"{spec.partition(':')[0]} spec needs a target column: "
                            f"{spec.partition(':')[0]}:FILE:TARGET, got {spec!r}")
        return load_table(path, target, blank_target="drop")
    return load_spec(spec)


def _model_columns(encoding: Encoding | None) -> list[str] | None:
    if encoding is None:
        return None
    if encoding.table is not None:
        return encoding.table.feature_columns
    return encoding.feature_names


def _numeric_features(split, encoding: Encoding | None, counts: dict | None) -> np.ndarray:
    """A table's encoded matrix by a trained model's table encoding; a table read for a
    model without one (trained before tables had roles) must be all numbers."""
    if encoding is not None and encoding.table is not None:
        return encoding.table.transform(split.table, counts)
    import pyarrow as pa

    from ._arrow import to_numpy

    cols = []
    for name in split.table.column_names:
        col = split.table.column(name)
        try:
            values = np.asarray(to_numpy(col.cast(pa.float64())))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataError(f"column {name!r} holds text; this model takes numbers") from None
        if np.isnan(values).any():
            raise DataError(f"column {name!r}, row {int(np.argmax(np.isnan(values)))}: an "
                            "empty cell; this model was trained without blanks")
        cols.append(values)
    return np.stack(cols, axis=1)


def _table_standardizer(X: np.ndarray, rows, table: TableEncoder) -> Standardizer:
    """The standardization of an encoded table: the continuous features by their training
    statistics, the category codes left as they are (mean 0, scale 1)."""
    std = Standardizer().fit(X[:, :table.n_continuous], rows=rows) \
        if table.n_continuous else None
    k = len(table.cardinalities)
    mean = np.concatenate([std.mean if std else np.zeros(0), np.zeros(k)])
    scale = np.concatenate([std.std if std else np.zeros(0), np.ones(k)])
    return Standardizer(mean, scale)


def prepare_data(spec, task: str = "auto", seed: int = 0, val_fraction: float = 0.1,
                 encoding: Encoding | None = None, whole: bool = False, test=None,
                 target: str | None = None, roles: dict | None = None,
                 target_transform: str = "none", counts: dict | None = None) -> PreparedData:
    """Load ``spec`` and make its train/validation/test parts (deterministic from ``seed``).

    Without a test part in the source (or a ``test`` file), 20% of the rows are held out for
    testing (seeded with ``seed + 1``), then ``val_fraction`` of the rest for validation. The
    task is ``task`` or inferred (:func:`fastnn.tasks.infer_task`); the classes come from
    all of the source's labels, the standardization of inputs and targets from the training
    part only. With ``encoding`` (a trained model's), nothing is fitted: the data is read
    the model's way. ``whole``: every row of the source is test data (scoring a new file).

    Tables (``csv:FILE:TARGET``, ``parquet:FILE:TARGET``, or ``spec`` a pandas DataFrame or
    pyarrow Table with ``target`` naming its target column): the columns get roles
    (:class:`fastnn.tabular.TableEncoder`; ``roles`` = ``{"categorical": [...],
    "numeric": [...], "drop": [...]}`` overrides), medians and vocabularies are fitted on
    the training rows. ``test``: a file (or table) with the same columns, target included,
    that is the test part. ``target_transform``: ``none``, ``log`` (regression) or ``auto``
    (:func:`auto_target_transform` of the training targets; ``none`` for classes).
    ``counts`` (a dict) receives the blanks filled and unknown categories met, per column,
    outside the training rows.
    """
    split = _load(spec, target, encoding)
    name = _spec_name(spec)
    table_split = split.table is not None
    test_split = None
    if test is not None:
        if not table_split:
            raise ConfigError("--test takes a CSV or Parquet file with the training file's "
                              "columns; the training data must be csv:FILE:TARGET or "
                              "parquet:FILE:TARGET too")
        from .datasets import load_table

        names = split.target_names
        types = encoding.table.column_types() if encoding is not None and \
            encoding.table is not None else None
        test_split = load_table(test, ",".join(names), features=split.feature_names,
                                column_types=types, blank_target="drop")
    y, y_test = split.y, split.y_test
    if table_split:
        n = split.table.num_rows
        X = None
    else:
        X = None if split.X is None else _features(split.X)
        n = None if X is None else len(X)
    X_test = None if split.X_test is None else _features(split.X_test)
    if test_split is not None:
        y_test = test_split.y
    if (X is not None or table_split) and y is None:
        raise DataError(f"{name}: no targets to train or score on")
    for part, arr in (("X", X), ("X_test", X_test)):
        if arr is not None:
            check_finite(arr, name=f"{name} {part}")

    table = encoding.table if encoding is not None else None
    if table_split and (encoding is not None or whole):
        counts = counts if counts is not None else {}
        X = _numeric_features(split, encoding, counts)
        if test_split is not None:
            X_test = _numeric_features(test_split, encoding, counts)

    if whole:  # every row is test data
        if X is not None and X_test is not None:
            X = np.concatenate([X, X_test])
            y = np.concatenate([y, y_test])
        elif X is None:
            X, y = X_test, y_test
        X_test = y_test = None
        n = len(X)
    if X is None and not table_split:  # only a test part: a file to score
        if encoding is None:
            raise DataError(f"{name}: holds only X_test/y_test, nothing to train on")
        X, y = X_test, y_test
        X_test = y_test = None
        whole = True
        n = len(X)

    has_test = X_test is not None or test_split is not None
    if whole:
        train_rows = val_rows = None
        test_rows = np.arange(n)
    elif not has_test:
        train_rows, test_rows = split_rows(n, TEST_FRACTION, seed=seed + 1,
                                           name="test fraction")
    else:
        train_rows, test_rows = np.arange(n), None
    if not whole and val_fraction > 0:
        train_rows, val_rows = split_rows(n, val_fraction, seed=seed, rows=train_rows,
                                          name="--val-fraction")
    elif not whole:
        val_rows = None

    if X is None:  # a table to fit: roles from the whole file, statistics from train rows
        roles = roles or {}
        table = TableEncoder.fit(split.table, rows=train_rows,
                                 categorical=roles.get("categorical") or (),
                                 numeric=roles.get("numeric") or (),
                                 drop=roles.get("drop") or ())
        X = table.transform(split.table)
        if test_split is not None:
            counts = counts if counts is not None else {}
            X_test = table.transform(test_split.table, counts)

    why = ""
    if encoding is None:
        kind, why = infer_task(np.concatenate([y, y_test]) if y_test is not None
                               and y.ndim == y_test.ndim else y, task)
        standardizer = _table_standardizer(X, train_rows, table) if table is not None else \
            Standardizer().fit(X, rows=train_rows)
        names = {"feature_names": split.feature_names, "target_names": split.target_names,
                 "table": table}
        if kind == "classification":
            if target_transform not in ("none", "auto"):
                raise ConfigError(f"--target-transform {target_transform} is for regression; "
                                  f"this is a classification task ({why})")
            # A test file's labels must be the training file's (an unseen one is an error
            # naming it, when the test part is encoded); a split's come from one source.
            classes = Classes.fit(y) if test_split is not None else Classes.fit(y, y_test)
            encoding = Encoding(kind, standardizer, classes=classes, **names)
        else:
            if target_transform == "auto":
                target_transform = auto_target_transform(y if train_rows is None else y[train_rows])
            check_target_transform(target_transform)
            scaler = TargetScaler(transform=target_transform).fit(y, rows=train_rows)
            encoding = Encoding(kind, standardizer, target_scaler=scaler, **names)
    elif task not in ("auto", encoding.task):
        raise ConfigError(f"--task {task} does not fit the model, a {encoding.task} model")

    y_enc = encoding.encode_targets(y, name="y")
    parts = []
    for rows in (train_rows, val_rows):
        parts.append(None if rows is None else
                     ArrayDataset(X, y_enc, rows=rows, transform=encoding.standardizer,
                                  check=False))
    if X_test is not None:
        where = "the test file" if test_split is not None else "y_test"
        test_part = ArrayDataset(X_test, encoding.encode_targets(y_test, name=where),
                                 transform=encoding.standardizer, check=False)
    else:
        test_part = ArrayDataset(X, y_enc, rows=test_rows, transform=encoding.standardizer,
                                 check=False)
    notes = [f"left out {s.left_out} row{'s' * (s.left_out > 1)} of {what} whose target "
             f"({', '.join(s.target_names or [])}) is blank (the first: {s.first_left_out})"
             for what, s in (("the data", split), ("the test file", test_split))
             if s is not None and s.left_out]
    return PreparedData(name, parts[0], parts[1], test_part, encoding, why, notes)


#: ``--target-transform auto`` takes the log of a target whose training values are all
#: positive and whose skewness is above this (on fewer than LARGE_TABLE_ROWS rows).
AUTO_LOG_SKEW = 1.0


def auto_target_transform(y) -> str:
    """What ``--target-transform auto`` (the tables' default) chooses from the training
    rows' targets ``y`` (N,) or (N, T): ``log`` for a positive, right-skewed target (every
    value > 0, sample skewness above :data:`AUTO_LOG_SKEW` in every column) on fewer than
    :data:`LARGE_TABLE_ROWS` rows, else ``none``.

    Measured (docs/tabular.md): the log raised the Ames house prices' test R² from 0.811 to
    0.830 (1,051 training rows, skewness 1.75) and lowered ISLP's wages from 0.311 to 0.298
    (2,160 rows, 1.66; both far above the issue's bar) and diamonds' from 0.979 to 0.977
    (38,837 rows, 1.62), hence the size limit."""
    y = np.asarray(y, dtype=np.float64)
    y = y.reshape(len(y), -1)
    if not 3 <= len(y) < LARGE_TABLE_ROWS or not np.all(y > 0):
        return "none"
    centred = y - y.mean(axis=0)
    sd = np.sqrt((centred ** 2).mean(axis=0))
    if np.any(sd == 0):
        return "none"
    skew = (centred ** 3).mean(axis=0) / sd ** 3
    return "log" if np.all(skew > AUTO_LOG_SKEW) else "none"


def load_features(source, encoding: Encoding | None = None,
                  counts: dict | None = None) -> np.ndarray:
    """The features of every row of ``source`` (N, D), for prediction.

    ``source`` is a file (``.npz``: array ``X``, or ``X_test``; ``.csv`` or ``.parquet``:
    the model's feature columns by name, so a target column in the file is ignored, encoded
    by the model's table encoding; ``.npy``: memory-mapped), a pandas DataFrame or pyarrow
    Table, or a data spec as for ``fastnn train`` (all of its rows, training and test
    part). ``counts`` (a dict) receives the blanks filled and unknown categories, per column.
    """
    from .datasets import as_table, load_npy, load_npz, load_spec, load_table, split_csv_spec

    if as_table(source) is not None:
        split = load_table(source, None, features=_model_columns(encoding))
        return _numeric_features(split, encoding, counts)
    kind, sep, rest = source.partition(":")
    if not sep or os.path.exists(source):  # a plain path
        kind, rest = os.path.splitext(source)[1].lstrip(".").lower(), source
        if not os.path.exists(source) and (kind or os.sep in source):
            raise FileNotFoundError(f"no such file: {source}")
        kind = "parquet" if kind == "pq" else kind
        if kind not in ("npz", "csv", "npy", "parquet"):
            raise DataError(f"{source}: give a .npz, .csv, .parquet or .npy file, or a data "
                            "spec such as npz:FILE or csv:FILE")
    if kind in ("csv", "parquet"):
        path, target = split_csv_spec(rest)
        names = _model_columns(encoding)
        types = encoding.table.column_types() if encoding is not None and \
            encoding.table is not None else None
        split = load_table(path, None if names else target, features=names,
                           column_types=types)
        if split.table is not None:
            return _numeric_features(split, encoding, counts)
    elif kind == "npz" and os.path.isfile(rest):
        split = load_npz(rest)
    elif kind == "npy" and "," not in rest:
        split = load_npy([rest])
    else:
        split = load_spec(source)
    parts = [p for p in (split.X, split.X_test) if p is not None]
    X = parts[0] if len(parts) == 1 else np.concatenate([_features(p) for p in parts])
    return _features(X)


# -------------------------------------------------------------------- configuration
def resolve_config(given: dict, recorded: dict | None = None,
                   tabular: bool | None = None) -> dict:
    """The run's settings: ``given`` (None = not given), else the recorded ones of a resumed
    run, else :data:`DEFAULTS` (for a table, ``tabular`` (default: whether the data is
    ``csv:``/``parquet:`` or a DataFrame), :data:`TABULAR_DEFAULTS` over them). A resumed
    run keeps its settings; only ``epochs`` may change.
    """
    cfg = {}
    recorded = recorded or {}
    if tabular is None:
        data = given.get("data")
        if data is None:
            data = recorded.get("data", {}).get("spec", DEFAULTS["data"])
        tabular = _is_table_spec(data)
    defaults = {**DEFAULTS, **TABULAR_DEFAULTS} if tabular else DEFAULTS
    for key, default in defaults.items():
        value = given.get(key)
        if key in ARCHITECTURE:
            before = recorded.get("architecture", {}).get(key)
            if key == "numeric_encoding" and before is None and recorded:
                before = "none"  # a checkpoint from before the encoding existed
        elif key == "task":
            before = recorded.get("task", {}).get("kind")
        else:
            before = recorded.get("run", {}).get(key)
        if key == "hidden" and value is not None:
            value = parse_hidden(value)
        if key in ("categorical", "numeric", "drop") and isinstance(value, str):
            value = [c.strip() for c in value.split(",") if c.strip()]
        if key == "task" and value == "auto":
            value = None
        if recorded and key != "epochs" and value is not None and before is not None \
                and value != before:
            raise ConfigError(f"--{key.replace('_', '-')} {value} does not fit the checkpoint, "
                              f"which was trained with {before} (a resumed run keeps its "
                              "settings; start a new run to change them)")
        cfg[key] = value if value is not None else (before if before is not None else default)
    if cfg["hidden"] is not None or not tabular:  # a table's default: by its size
        cfg["hidden"] = parse_hidden(cfg["hidden"])
    by_size = [k for k, v in TABULAR_DEFAULTS.items() if v is None] if tabular else []
    if cfg["optimizer"] not in DEFAULT_LR:
        raise ConfigError(f"--optimizer must be one of {', '.join(DEFAULT_LR)}, got "
                          f"{cfg['optimizer']!r}")
    if cfg["lr"] is None:
        cfg["lr"] = DEFAULT_LR[cfg["optimizer"]]
    checks = [
        ("epochs", isinstance(cfg["epochs"], int) and cfg["epochs"] >= 1, "a positive integer"),
        ("batch_size", isinstance(cfg["batch_size"], int) and cfg["batch_size"] >= 1,
         "a positive integer"),
        ("patience", isinstance(cfg["patience"], int) and cfg["patience"] >= 0,
         "zero (no early stopping) or a positive integer"),
        ("embedding_dim", cfg["embedding_dim"] is None or isinstance(cfg["embedding_dim"], int)
         and cfg["embedding_dim"] >= 1, "a positive integer"),
        ("numeric_encoding", cfg["numeric_encoding"] in NUMERIC_ENCODINGS,
         f"one of {', '.join(NUMERIC_ENCODINGS)}"),
        ("numeric_bins", isinstance(cfg["numeric_bins"], int)
         and not isinstance(cfg["numeric_bins"], bool) and cfg["numeric_bins"] >= 1,
         "a positive integer"),
        ("target_transform", cfg["target_transform"] in (*TARGET_TRANSFORMS, "auto"),
         f"one of {', '.join(TARGET_TRANSFORMS)}, auto"),
        ("dropout", 0 <= cfg["dropout"] < 1, "in [0, 1)"),
        ("val_fraction", cfg["val_fraction"] is not None and 0 <= cfg["val_fraction"] < 1,
         "in [0, 1)"),
        ("lr", cfg["lr"] > 0, "positive"),
        ("weight_decay", cfg["weight_decay"] is not None and cfg["weight_decay"] >= 0,
         "zero or positive"),
        ("activation", cfg["activation"] in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}"),
        ("schedule", cfg["schedule"] in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
        ("dtype", cfg["dtype"] in ("float32", "float64"), "float32 or float64"),
    ]
    for key, ok, what in checks:
        if not ok and not (key in by_size and cfg[key] is None):
            raise ConfigError(f"--{key.replace('_', '-')} must be {what}, got {cfg[key]!r}")
    if not tabular:
        given_table = [k for k in ("test", "categorical", "numeric", "drop", "embedding_dim")
                       if cfg[k]]
        given_table += [k for k in ("numeric_encoding", "numeric_bins")
                        if given.get(k) is not None]
        if given_table:
            raise ConfigError(f"--{given_table[0].replace('_', '-')} is for tables: give "
                              "--data csv:FILE:TARGET or parquet:FILE:TARGET")
    return cfg


def tabular_recipe(n_train: int) -> dict:
    """The size-dependent part of the tabular default for a table with ``n_train`` training
    rows (counted with :data:`TABLE_VAL_FRACTION` of them held out for validation), as
    measured on real tables (docs/tabular.md):

    - fewer than :data:`SMALL_TABLE_ROWS` (500): no validation split: every training row
      trains, for a fixed :data:`SMALL_TABLE_EPOCHS` (100) epochs on a cosine schedule, no
      early stopping (``--patience N`` brings back the 10 % split and early stopping). A
      validation split of under about 50 rows cannot choose an epoch: one row moves its
      accuracy by 2 to 3 points and its loss is carried by the few rows the model gets
      wrong, which grows as the model grows confident. On vega_datasets' cars table
      (``Origin``, 324 training rows of which 32 for validation, 82 test rows, seeds 1-5)
      the lowest validation loss came at epoch 1 to 6 (the plateau schedule, on the same
      loss, cut the learning rate 3 epochs later), while 100 epochs score higher on the
      test rows: test accuracy 0.744 early-stopped (more patience: the same epochs chosen,
      the same 0.744; a 20 % split: 0.754), 0.807 with 100 cosine epochs on every row, against
      scikit-learn's MLP pipeline 0.790 and HistGradientBoosting 0.834. The same rule on
      the other tables under 500 rows, seeds 1-5: penguins 0.9797 -> 0.9855, scikit-learn's
      breast cancer (a fixed 398/171 split) 0.9684 -> 0.9848 (MLP 0.9743), wine (124/54)
      0.9926 -> 0.9852 (MLP 1.0: one test row per seed). Above 500 the same rule was
      mixed: ISLP's orange-juice table (770 training rows, noisy labels) fell from 0.830
      to 0.799 (30 fixed epochs: 0.810), below the MLP's 0.820, where early stopping on
      its 86 validation rows held 0.830; vega's Seattle weather (1,168) fell from 0.780 to
      0.759; titanic (942) rose from 0.834 to 0.850 and Ames house prices (1,051) from R²
      0.853 to 0.894. The threshold lies between the
      largest table where the fixed epochs won (breast cancer, 358) and the smallest where
      early stopping did (OJ); the run costs 1.3x to 3x the early-stopped one as a whole
      (wine, breast cancer; seconds either way);
    - from :data:`SMALL_TABLE_ROWS` to :data:`LARGE_TABLE_ROWS`: a 10 % validation split,
      early stopping after 10 epochs without a lower validation loss, up to 200 epochs, the
      ``plateau`` schedule; then, below :data:`REFIT_TABLE_ROWS` (5,000), (``refit``) the
      run trains again, from scratch, on every
      training row (validation rows included, statistics refitted on them) for the epoch
      count early stopping chose, on a cosine schedule over those epochs, with the first
      run's size-dependent settings. Only when the split, the patience, the epochs and the
      schedule are all the recipe's (``--patience N`` keeps the early-stopped weights, as
      before). Measured, seeds 1-5, early-stopped -> refitted: OJ 0.8299 -> 0.8336,
      Seattle weather 0.7795 -> 0.7788 (a fifth of a test row), titanic 0.8344 -> 0.8351
      (every seed now above its bar, 0.8206), Ames house prices R² 0.8533 -> 0.8624,
      ISLP wage R² 0.3023 -> 0.3151. The same epochs at a constant learning rate instead
      of the cosine were worse (house prices 0.8011, titanic 0.8229). The early-stopped
      epochs were 2 to 10 on these (house prices 5 to 39), so the second run is short.
      Larger tables keep the early-stopped run: on ISLP's bike-share riders (6,224
      training rows, R², seeds 1-3) and credit default (7,200, accuracy) the refit lost
      (0.9298, 0.9205, 0.9411 -> 0.9195, 0.8955, 0.9291 and 0.975, 0.9725, 0.979 ->
      0.9715, 0.969, 0.9785), and from 5,000 rows the validation split holds 500 rows and
      more, no longer a noisy choice of the epoch;
    - below :data:`LARGE_TABLE_ROWS` (small tables too): hidden 256,256, weight decay 1e-3;
    - from :data:`LARGE_TABLE_ROWS` on: hidden 128,128 (a quarter of the arithmetic per
      row: the same scores on the large tables measured, in less time), weight decay 1e-4
      (many rows regularize already), a 10 % validation split, up to 200 epochs, the
      ``plateau`` schedule, early stopping with patience 8 where a validation loss counts
      as lower only below ``best * (1 - LARGE_TABLE_MIN_DELTA)`` (1 %), keeping the
      weights of the epoch with the lowest loss all the same (``min_delta`` 0 before:
      late in the run, at a learning rate cut three or four times, the loss moves by
      a few tenths of a percent from epoch to epoch, the running statistics of batch
      norm more than the weights, and any new low restarted the wait). Replayed on the
      recorded runs of adult and diamonds (a run that stops sooner is a prefix of the
      same run), seeds 1-10: diamonds trained 353 epochs instead of 469 (mean R²
      0.98118 against 0.98120; at most 0.00013 lower on a seed), adult 135 instead
      of 158 (the same epochs kept: the same accuracy). Patience 5 alone saved less
      (395 and 128 epochs, diamonds 0.98115), patience 4 stopped one diamonds seed at
      epoch 11 (R² 0.9751), patience 3 (the plateau's own: no epoch at the cut rate)
      cost every seed (mean 0.9761); keeping the last counted improvement instead of
      the lowest loss, a shorter plateau wait (2) and batches of 1,024 (at 2e-3 or 4e-3)
      cost more score (docs/tabular.md, "Large tables: when early stopping ends the run");
    - the batch size of :func:`tabular_batch_size`;
    - the continuous features' piecewise-linear encoding (``--numeric-encoding ple``) with
      at most 8 quantile bins per feature below :data:`LARGE_TABLE_ROWS` and 48 from there
      on: measured on seven real tables, 8 bins raised the small tables' mean scores or
      kept them within a test row or two (48 bins let the Ames house prices overfit: R²
      0.77 on one seed), while adult and diamonds needed more (with 8 or 16 they stayed
      below their bars). Adult gained further up to 192 bins, diamonds was best at 48 to
      64; 96 cost 1.5x the whole diamonds run against 1.1x for 48 (a wider first layer),
      too close to the issue's speed bar.

    Everything else is :data:`TABULAR_DEFAULTS`: dropout 0.1, Adam at 2e-3 (``plateau``:
    divided by 5 after 3 epochs without a lower validation loss)."""
    large = n_train >= LARGE_TABLE_ROWS
    small = n_train < SMALL_TABLE_ROWS
    return {"hidden": [128, 128] if large else [256, 256],
            "weight_decay": 1e-4 if large else 1e-3,
            "patience": 8 if large else 0 if small else 10,
            "min_delta": LARGE_TABLE_MIN_DELTA if large else 0.0,
            "batch_size": tabular_batch_size(n_train),
            "numeric_bins": 48 if large else 8,
            "val_fraction": 0.0 if small else TABLE_VAL_FRACTION,
            "epochs": SMALL_TABLE_EPOCHS if small else 200,
            "schedule": "cosine" if small else "plateau",
            "refit": SMALL_TABLE_ROWS <= n_train < REFIT_TABLE_ROWS}


def _encodes_numbers(table: TableEncoder | None, cfg: dict) -> bool:
    """Whether a run's model encodes continuous features piecewise-linearly: a table with
    some, and ``numeric_encoding`` ``ple``."""
    return table is not None and table.n_continuous > 0 and \
        cfg.get("numeric_encoding") == "ple"


def table_numeric_bins(train, standardizer, n_continuous: int, n_bins: int,
                       dtype: str = "float32") -> list[np.ndarray]:
    """The :class:`fastnn.nn.PiecewiseLinearEncoding` bin edges of a table's continuous
    features: :func:`fastnn.nn.quantile_bins` (at most ``n_bins`` bins, repeated quantiles
    merged) of the *standardized* training rows (what the model sees: ``train``, an
    ArrayDataset, through ``standardizer``), in ``dtype``. Standardizing is affine, so the
    encoding is the same as with edges on the raw values. Rows are subsampled (seeded) to
    at most 200,000: the quantiles of a sample that size are within about 0.2 % of the
    whole's in rank."""
    from .nn import quantile_bins

    rows = train.rows if train.rows is not None else np.arange(len(train.X))
    if len(rows) > 200_000:
        rows = np.sort(np.random.default_rng(0).choice(rows, 200_000, replace=False))
    X = np.asarray(train.X[rows][:, :n_continuous], np.float64)
    X = (X - np.asarray(standardizer.mean)[:n_continuous]) / \
        np.asarray(standardizer.std)[:n_continuous]
    return quantile_bins(X, n_bins, dtype=dtype)


def tabular_batch_size(n_train: int) -> int:
    """The batch size of a table with ``n_train`` training rows: about 1/64 of the rows as a
    power of two, between 32 and 512 (small tables take small noisy steps, large ones
    steps the cores can fill)."""
    return int(min(512, max(32, 2 ** round(np.log2(max(1, n_train) / 64)))))


# ------------------------------------------------------------------------ a trained model
@dataclass
class TrainedModel:
    """A model rebuilt from a checkpoint, with the way it reads raw data and answers."""

    model: object
    encoding: Encoding
    config: dict
    path: str = ""

    @property
    def task(self) -> str:
        return self.encoding.task

    @property
    def dtype(self) -> str:
        return self.config["architecture"]["dtype"]

    def _check_features(self, n: int, where: str) -> None:
        want = self.config["architecture"]["input_dim"]
        if n != want:
            raise DataError(f"{where} has {n} features per sample; the model takes {want}")

    def outputs(self, X, batch_size: int = 1024, counts: dict | None = None) -> np.ndarray:
        """The model's raw outputs (N, C) or (N, K) for raw features ``X`` (N, D), or for a
        table (a pandas DataFrame, a pyarrow Table, or a CSV/Parquet path) with the model's
        feature columns (``counts`` receives the blanks filled and unknown categories)."""
        from .datasets import as_table
        from .train import predict

        if as_table(X) is not None or (isinstance(X, str) and self.encoding.table is not None):
            X = load_features(X, self.encoding, counts)
        X = np.asarray(X) if not isinstance(X, np.ndarray) else X
        if X.dtype.kind not in "fiu":
            raise DataError(f"features must be numeric, got dtype {X.dtype}")
        X = X.reshape(1, -1) if X.ndim == 1 else _features(X)
        self._check_features(X.shape[1], "the input")
        check_finite(X, name="the input")
        out = []
        for i in range(0, len(X), batch_size):
            xb = self.encoding.standardizer.transform(X[i:i + batch_size], dtype=self.dtype)
            out.append(predict(self.model, xb, batch_size=batch_size))
        return np.concatenate(out) if out else np.empty((0, self.encoding.n_outputs))

    def predict(self, X, counts: dict | None = None) -> np.ndarray:
        """Predicted labels (N,) (in the training data's labels) or values (original units);
        ``X`` as for :meth:`outputs`."""
        return self.encoding.decode_outputs(self.outputs(X, counts=counts))

    def scores(self, X, counts: dict | None = None) -> np.ndarray:
        """What ``fastnn predict --scores`` writes: class scores (N, C) (logits), or for a
        regressor its predicted values."""
        out = self.outputs(X, counts=counts)
        return out if self.task == "classification" else self.encoding.decode_outputs(out)

    def evaluate(self, data: ArrayDataset, keep: list | None = None) -> dict:
        """Loss and metrics on an encoded data set (see :func:`prepare_data`); ``keep``
        receives the outputs and the encoded targets (see
        :func:`fastnn.train.evaluate_metrics`)."""
        from .train import evaluate_metrics

        self._check_features(data.n_features, "the data")
        loss = make_loss(self.config["run"].get("loss"), self.task)
        return evaluate_metrics(self.model, loss, data, batch_size=4096,
                                target_scaler=self.encoding.target_scaler, keep=keep)


def load_trained(path: str) -> TrainedModel:
    """A checkpoint of ``fastnn train`` (or a ``.safetensors`` file that ``fastnn export``
    wrote from one) as a :class:`TrainedModel`, in evaluation mode."""
    from .checkpoint import CheckpointError, load_checkpoint, restore

    if str(path).endswith(".safetensors"):
        return _load_trained_safetensors(path)
    ckpt = load_checkpoint(path)
    cfg = ckpt.meta.get("config", {})
    if not isinstance(cfg.get("architecture"), dict):
        raise CheckpointError(f"{path}: records no architecture to rebuild the model from")
    _check_architecture_fits(ckpt, cfg["architecture"])
    try:  # the record is data from a file: any inconsistency in it is a damaged checkpoint
        model = build_model(cfg["architecture"])
        restore(ckpt, model=model)
        model.eval()
        trained = TrainedModel(model, Encoding.from_checkpoint(ckpt), cfg, path)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{path}: a damaged run record ({type(exc).__name__}: "
                              f"{str(exc)[:160]})") from None
    _check_trained(trained, CheckpointError)
    return trained


def _check_trained(trained: TrainedModel, error: type[ValueError]) -> None:
    """Refuse a file whose parts do not fit together (the architecture, the encoding and the
    model): its standardization and classes or target scaling are numbers of the model's
    input and output sizes, and the model maps one row of input_dim features to one row of
    its outputs."""
    path, arch, enc = trained.path, trained.config.get("architecture"), trained.encoding
    if not isinstance(arch, dict):
        raise error(f"{path}: records no architecture")
    n_in, n_out = arch.get("input_dim"), arch.get("n_outputs", arch.get("n_classes"))
    parts = [("the input standardization's mean", enc.standardizer.mean, n_in),
             ("the input standardization's std", enc.standardizer.std, n_in)]
    if enc.task == "classification":
        parts.append(("the classes", enc.classes.labels, n_out))
    else:
        parts += [("the target scaling's mean", enc.target_scaler.mean, n_out),
                  ("the target scaling's std", enc.target_scaler.std, n_out)]
    for what, values, n in parts:
        values = np.asarray(values)
        kinds = "biufUS" if what == "the classes" else "iuf"
        if values.shape != (n,) or values.dtype.kind not in kinds:
            noun = "numbers" if kinds == "iuf" else "labels"
            raise error(f"{path}: {what} has shape {values.shape} and dtype {values.dtype}; the "
                        f"model needs shape ({n!r:.40},) of {noun}")
    if enc.task == "regression" and enc.target_scaler.ndim not in (1, 2):
        raise error(f"{path}: the targets' recorded ndim is {enc.target_scaler.ndim!r:.40}")
    try:
        with np.errstate(all="ignore"):
            out = trained.outputs(np.zeros((1, n_in)))
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise error(f"{path}: the model does not take the recorded {n_in} features "
                    f"({type(exc).__name__}: {str(exc)[:160]})") from None
    if out.shape != (1, n_out):
        raise error(f"{path}: the model gives {out.shape[1:]} outputs per row, the run "
                    f"records {n_out}")


def _check_architecture_fits(ckpt, arch: dict) -> None:
    """Refuse an architecture whose weights the file cannot hold, before building it: each
    Linear's (in, out) weight must fit in the model arrays the checkpoint stores (so a
    record claiming 10^9 units allocates nothing)."""
    from .checkpoint import CheckpointError

    stored = ckpt.section("model")
    held = sum(int(a.size) for a in stored.values())
    n_out = arch.get("n_outputs", arch.get("n_classes"))
    hidden = arch.get("hidden")
    widths = [arch.get("input_dim"), *(hidden if isinstance(hidden, list) else [None]), n_out]
    if not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise CheckpointError(f"{ckpt.path}: the architecture's sizes must be positive "
                              f"integers, got input_dim, hidden, outputs = {widths!r:.120}")
    need = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    if need > held or len(widths) - 1 > len(stored):
        raise CheckpointError(f"{ckpt.path}: the architecture {widths!r:.120} needs {need} "
                              f"weights in {len(widths) - 1} Linear layers; the file holds "
                              f"{held} values in {len(stored)} model arrays")


def _load_trained_safetensors(path: str) -> TrainedModel:
    import json

    from .interop import load_safetensors, read_safetensors_metadata

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    from .interop import SafetensorsFileError

    meta = read_safetensors_metadata(path)
    encoding = Encoding.from_metadata(meta, where=path)
    try:
        config = json.loads(meta["run.config"])
    except (KeyError, ValueError, RecursionError):
        raise DataError(f"{path}: no run configuration in its metadata") from None
    if not isinstance(config, dict) or not isinstance(config.get("run", {}), dict):
        raise SafetensorsFileError(f"{path}: the run configuration in its metadata is not a "
                                   "JSON object")
    arch = config.get("architecture", {})
    if not isinstance(arch, dict):
        raise SafetensorsFileError(f"{path}: the architecture in its metadata is not a JSON "
                                   "object")
    # a TabularMLP is not a Sequential of fastnn's layers: rebuilt from the run's record
    try:
        if arch.get("cardinalities"):
            # checked before anything is allocated: the embedding tables alone must fit in
            # the bytes the file holds (float16 is the smallest dtype a weight may have)
            cells = sum(int(c) * int(d) for c, d in zip(arch["cardinalities"],
                                                        arch["embedding_dims"], strict=True))
            if cells < 0 or 2 * cells > os.path.getsize(path):
                raise SafetensorsFileError(
                    f"{path}: its table architecture needs {cells:,} embedding weights, more "
                    f"than the file's {os.path.getsize(path):,} bytes hold")
        skeleton = build_model(arch) if arch.get("cardinalities") \
            or arch.get("numeric_bin_counts") else None
    except (KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, SafetensorsFileError):
            raise
        raise SafetensorsFileError(f"{path}: a damaged table architecture in its metadata "
                                   f"({str(exc)[:160]})") from None
    model = load_safetensors(path, model=skeleton)
    model.eval()
    trained = TrainedModel(model, encoding, config, path)
    _check_trained(trained, SafetensorsFileError)
    return trained


def export_run(checkpoint: str, onnx: str | None = None, safetensors: str | None = None,
               opset: int = 17, fold_batchnorm: bool = False,
               probabilities: bool = False) -> list[str]:
    """Export a ``fastnn train`` checkpoint for serving; returns the paths written.

    ``onnx``: a graph that takes *raw* features (the run's standardization is its first two
    nodes) and outputs what ``fastnn predict --scores`` writes for the same rows: a
    classifier's class scores (``probabilities``: softmax probabilities instead), a
    regressor's values in the original units. The class labels are in the model's
    ``metadata_props`` (``fastnn.classes``, JSON), as are the feature names. A table model's
    graph takes the raw columns instead, one input each, blanks and unseen categories handled
    inside (:func:`fastnn.interop.export_table_onnx`).
    ``safetensors``: the weights with PyTorch's names and layouts, and the run (task,
    standardization, classes or target scaling, configuration) in ``__metadata__``, so
    ``fastnn predict FILE.safetensors`` and :func:`load_trained` read it like a checkpoint.
    """
    import json

    if onnx is None and safetensors is None:
        raise ConfigError("say what to write: --onnx FILE and/or --safetensors FILE")
    trained = load_trained(checkpoint)
    enc, written = trained.encoding, []
    table = enc.table
    if onnx is not None:
        from .interop import export_onnx, require

        if probabilities and enc.task != "classification":
            raise ConfigError("--probabilities is for classifiers; this is a regression model")
        reg = enc.task == "regression"
        scaled = {"output_mean": enc.target_scaler.mean if reg else None,
                  "output_std": enc.target_scaler.std if reg else None}
        if table is not None:  # a graph on the raw columns (see export_table_onnx)
            from .interop import export_table_onnx

            proto = export_table_onnx(
                trained.model, table, onnx, input_mean=enc.standardizer.mean,
                input_std=enc.standardizer.std, opset=opset, fold_batchnorm=fold_batchnorm,
                probabilities=probabilities,
                log_target=reg and enc.target_scaler.transform == "log", **scaled)
        else:
            proto = export_onnx(trained.model, onnx, opset=opset, fold_batchnorm=fold_batchnorm,
                                probabilities=probabilities, input_mean=enc.standardizer.mean,
                                input_std=enc.standardizer.std, **scaled)
        onnx_lib = require("onnx", "ONNX export")
        props = {"fastnn.task": enc.task,
                 "fastnn.outputs": "probabilities" if probabilities else
                 "scores" if not reg else "values",
                 "fastnn.feature_names": json.dumps(
                     table.feature_columns if table is not None else enc.feature_names)}
        if not reg:
            props["fastnn.classes"] = json.dumps(enc.classes.labels.tolist())
        else:
            props["fastnn.target_names"] = json.dumps(enc.target_names)
        onnx_lib.helper.set_model_props(proto, props)
        tmp = onnx + ".tmp"
        onnx_lib.save(proto, tmp)
        os.replace(tmp, onnx)
        written.append(onnx)
    if safetensors is not None:
        from .interop import save_safetensors

        meta = enc.metadata()
        meta["run.config"] = json.dumps(trained.config)
        save_safetensors(trained.model, safetensors, metadata=meta)
        written.append(safetensors)
    return written


# ------------------------------------------------------------------------ a training run
def describe(data: PreparedData, cfg: dict, threads: int | None = None,
             step: str | None = None) -> str:
    """The first line of a run: data, task (and why), model, loss, optimizer, schedule, and
    how a step runs (``step``: "compiled step", or the graph and why)."""
    enc, n_in = data.encoding, data.n_features
    n_val = 0 if data.val is None else len(data.val)
    target = f"{len(enc.classes)} classes" if enc.task == "classification" else \
        f"{enc.n_outputs} target{'s' if enc.n_outputs > 1 else ''}"
    loss = cfg["loss"] or LOSSES[enc.task][0]
    model = "MLP"
    encoded = _encodes_numbers(enc.table, cfg)
    if enc.table is not None and (enc.table.cardinalities or encoded):
        k = len(enc.table.cardinalities)
        model = (f"TabularMLP ({enc.table.n_continuous} continuous + {k} "
                 f"embedding{'s' if k > 1 else ''})")
    return (f"{data.spec} ({len(data.train)} train, {n_val} val, {len(data.test)} test, "
            f"{n_in} features, {target}); task {enc.task} ({data.why}); "
            f"{_model_summary(cfg, n_in, enc.n_outputs, data.spec, model)} "
            f"{cfg['activation']}{' +BN' if cfg['batchnorm'] else ''}, {cfg['dtype']}; "
            f"loss {loss}, {cfg['optimizer']} lr={cfg['lr']:g}, schedule {cfg['schedule']}, "
            f"{cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''}"
            + (f" (early stopping, patience {cfg['patience']})" if cfg.get("patience") else "")
            + f", batch {cfg['batch_size']}"
            + (f", continuous features piecewise-linear encoded ({cfg['numeric_bins']} "
               "quantile bins at most)" if encoded else "")
            + (f", target log(1 + y){' (auto)' if cfg.get('target_transform') == 'auto' else ''}"
               if getattr(enc.target_scaler, "transform", "none") == "log" else "")
            + (", augmented (crops, flips)" if cfg["augment"] else "")
            + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else "")
            + (f"; {step}" if step else ""))


#: A run's checkpoint is written after an epoch that ends at least this many seconds after
#: the last one was (and after the last epoch): ``ModelCheckpoint(min_seconds=...)``. Every
#: epoch before: on diamonds (35 epochs of 0.1 s) the 36 writes took 0.15 s of a 6 s run.
CHECKPOINT_SECONDS = 1.0


def run_training(given: dict, out: str | None = None, resume: str | None = None,
                 comm=None, quiet: bool = False, sync_batchnorm: bool = False,
                 threads: int | None = None, log=None, target: str | None = None) -> RunResult:
    """Train an MLP as ``fastnn train`` does and write its checkpoint and reports.

    Parameters
    ----------
    given : settings by :data:`DEFAULTS`' names (None or absent: the default, or on resume
        the recorded value).
    out : output directory (default: the resumed checkpoint's directory, else
        ``runs/<timestamp>``).
    resume : a checkpoint to continue; only ``epochs`` may change (a larger number continues
        on the schedule of the longer run).
    comm : a :class:`fastnn.distributed.Communicator` for data-parallel training.
    log : where the progress lines go (default: stderr; None-like when ``quiet``).
    target : the target column when ``given["data"]`` is a pandas DataFrame or a pyarrow
        Table (a table in memory rather than ``csv:FILE:TARGET``).

    Returns
    -------
    RunResult with the final metrics and the paths of the files written.
    """
    import sys

    from . import reports
    from .checkpoint import load_checkpoint, restore, save_checkpoint
    from .random import manual_seed
    from .train import EarlyStopping, ModelCheckpoint, TrainingDiverged, fit

    log = log or sys.stderr
    ckpt = load_checkpoint(resume) if resume else None
    cfg = resolve_config(given, ckpt.meta["config"] if ckpt is not None else None)
    encoding = Encoding.from_checkpoint(ckpt) if ckpt is not None else None
    counts: dict = {}

    def prepare(val_fraction):
        counts.clear()
        return prepare_data(cfg["data"], cfg["task"], cfg["seed"], val_fraction, encoding,
                            test=cfg["test"], target=target,
                            roles={k: cfg[k] for k in ("categorical", "numeric", "drop")},
                            target_transform=cfg["target_transform"], counts=counts)

    # None: a table's validation share, by its size; first split as a larger table's (10 %)
    by_size = cfg["val_fraction"] is None
    data = prepare(TABLE_VAL_FRACTION if by_size else cfg["val_fraction"])
    recipe = tabular_recipe(len(data.train))  # the size rule counts the rows of a 10 % split
    if by_size:
        # Asked for early stopping (--patience), a small table keeps a validation split.
        cfg["val_fraction"] = recipe["val_fraction"] if not cfg["patience"] else \
            TABLE_VAL_FRACTION
        if cfg["val_fraction"] != TABLE_VAL_FRACTION:  # a small table: every row trains
            data = prepare(cfg["val_fraction"])
    enc = data.encoding
    if data.train is None:
        raise DataError(f"{data.spec}: nothing to train on")
    if ckpt is None and cfg["arch"] == "cnn":  # images: one mean and scale per channel
        standardize_per_channel(enc.standardizer, data.train.X, data.train.rows,
                                image_shape(cfg["data"], int(data.n_features)))
    if comm is not None and enc.task != "classification":
        raise NotImplementedError("--distributed trains classifiers only; regression runs "
                                  "in one process")
    by_recipe = {key for key in recipe if key not in ("refit", "min_delta")
                 and cfg.get(key) is None}
    for key in by_recipe:  # a table's default by its size
        cfg[key] = recipe[key]
    # Early stopping that the recipe chose picks the epoch count; the run is then trained
    # again on every row for that many epochs (tabular_recipe: ``refit``).
    refit = recipe["refit"] and by_size and {"patience", "epochs", "schedule"} <= by_recipe \
        and ckpt is None and comm is None
    loss_fn = make_loss(cfg["loss"], enc.task)
    arch = {"input_dim": int(data.n_features), "hidden": cfg["hidden"],
            "n_outputs": enc.n_outputs, "activation": cfg["activation"],
            "batchnorm": cfg["batchnorm"], "dropout": cfg["dropout"], "dtype": cfg["dtype"],
            **_cnn_architecture(cfg, data)}
    table = enc.table
    if table is not None and table.cardinalities:
        from .nn.tabular import embedding_size

        arch.update({"n_continuous": table.n_continuous, "cardinalities": table.cardinalities,
                     "embedding_dims": [cfg["embedding_dim"] or embedding_size(c)
                                        for c in table.cardinalities],
                     "embedding_dim": cfg["embedding_dim"]})
    numeric_bins = None
    if _encodes_numbers(table, cfg):
        numeric_bins = table_numeric_bins(data.train, enc.standardizer, table.n_continuous,
                                          cfg["numeric_bins"], cfg["dtype"])
        arch.update({"n_continuous": table.n_continuous,
                     "cardinalities": arch.get("cardinalities", []),
                     "embedding_dims": arch.get("embedding_dims", []),
                     "numeric_bin_counts": [len(b) - 1 for b in numeric_bins]})
    if table is not None:
        arch.update({"numeric_encoding": cfg["numeric_encoding"],
                     "numeric_bins": cfg["numeric_bins"]})
    config = {
        "architecture": arch,
        "task": enc.record(data.why if ckpt is None else
                           ckpt.meta["config"].get("task", {}).get("why", "")),
        "data": {"spec": _spec_name(cfg["data"]), "seed": cfg["seed"],
                 "val_fraction": cfg["val_fraction"]},
        "run": {k: cfg[k] for k in DEFAULTS if k not in ARCHITECTURE and k not in
                ("task", "data")},
    }
    config["run"]["data"] = config["data"]["spec"]
    if cfg["test"] is not None:
        config["run"]["test"] = _spec_name(cfg["test"])
    if ckpt is not None:
        before = dict(ckpt.meta["config"]["architecture"])
        before.setdefault("n_outputs", before.pop("n_classes", None))
        if before != config["architecture"]:
            raise ConfigError(f"the data {config['data']['spec']!r} gives a model of "
                              f"{config['architecture']}, which does not fit the checkpoint's "
                              f"{before}")
    manual_seed(cfg["seed"])
    model = build_model(config["architecture"])
    if numeric_bins is not None:  # the edges of the training rows (a resumed run: restored)
        model.numeric_encoding.edges[...] = np.concatenate(numeric_bins)
    optimizer = make_optimizer(cfg["optimizer"], model.parameters(), cfg["lr"],
                               cfg["weight_decay"])
    schedule = make_schedule(cfg["schedule"], optimizer, cfg["epochs"])
    # BatchNorm cannot train on a batch of one sample: when the shuffled epoch would end
    # with one, that sample waits for the next epoch (a different one each time).
    drop_last = cfg["batchnorm"] and len(data.train) % cfg["batch_size"] == 1 \
        and len(data.train) > 1
    loader = DataLoader(data.train, batch_size=cfg["batch_size"], shuffle=True,
                        seed=cfg["seed"], dtype=cfg["dtype"], drop_last=drop_last)
    start_epoch, history = 0, []
    if ckpt is not None:
        restore(ckpt, model=model, optimizer=optimizer, scheduler=schedule, loader=loader)
        start_epoch, history = int(ckpt.meta["epoch"]), list(ckpt.meta.get("history", []))
        if start_epoch >= cfg["epochs"]:
            raise ConfigError(f"the checkpoint has {start_epoch} epochs already; ask for more "
                              f"with --epochs N > {start_epoch}")

    batches = AugmentedBatches(loader, image_shape(cfg["data"], int(data.n_features))) \
        if cfg["augment"] else loader  # only the training batches: validation sees the data
    if out is None:
        out = os.path.dirname(os.path.abspath(resume)) if resume else \
            os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    if comm is not None:  # one output directory for the job: rank 0's
        out = comm.comm.bcast(out, root=0)
    rank0 = comm is None or comm.rank == 0
    if rank0:
        os.makedirs(out, exist_ok=True)
    ckpt_path = os.path.join(out, "model.npz")

    def save(epoch, logs):  # after epochs (CHECKPOINT_SECONDS): the last good state on disk
        save_checkpoint(ckpt_path, model=model, optimizer=optimizer, scheduler=schedule,
                        loader=loader, epoch=epoch, config=config, history=history,
                        standardizer=enc.standardizer, arrays=enc.arrays())

    step = None
    if comm is None:
        from .train import LocalStep

        step = LocalStep(model, optimizer)
        why = step.prepare(loss_fn)
        how = "compiled step" if why is None else f"graph step ({why})"
    else:
        how = "data-parallel graph step"
    if not quiet:
        print(f"fastnn train: {describe(data, cfg, threads, how)}", file=log)
    for note in data.notes if rank0 else ():  # lost rows are said even with --quiet
        print(f"fastnn train: {note}", file=log)
    if table is not None:
        dims = arch.get("embedding_dims")
        if not quiet:
            print(table.role_table(dims), file=log)
            if counts:
                print(f"fastnn train: in the test file: {describe_counts(counts)}", file=log)
        if rank0:
            reports.write_json(os.path.join(out, "columns.json"), table.role_rows())
    helper = None
    if rank0:
        from . import _prewarm
        from ._warmup import announce_compilation

        if announce_compilation() and comm is None:  # a cold cache: compile on two cores
            helper = _prewarm.start(model, loss_fn, optimizer, data.n_features)
    t0 = time.perf_counter()
    checkpoint = ModelCheckpoint(save, min_seconds=CHECKPOINT_SECONDS)
    callbacks = [checkpoint]
    stopper = None
    if cfg["patience"] and data.val is not None and comm is None:
        # a table's: a relative threshold by its size, the lowest loss's weights kept
        min_delta = recipe["min_delta"] if table is not None else 0.0
        config["run"]["min_delta"] = min_delta
        stopper = EarlyStopping(model, patience=cfg["patience"], restore_best="value",
                                min_delta=min_delta, min_delta_mode="rel")
        callbacks.append(stopper)
    try:
        # A diverging run overflows before its loss turns NaN; fit reports that once.
        with np.errstate(over="ignore", invalid="ignore"):
            if comm is None:
                fit(model, loss_fn, optimizer, batches, val=data.val, epochs=cfg["epochs"],
                    schedule=schedule, quiet=quiet, start_epoch=start_epoch, history=history,
                    callbacks=callbacks, log=log,
                    target_scaler=enc.target_scaler, step=step)
                if stopper is not None and stopper._best_state is not None \
                        and stopper.kept_epoch != history[-1]["epoch"]:
                    # stopped early: the best epoch's weights are back; keep them on disk
                    model.load_state_dict(stopper._best_state)
                    config["run"]["best_epoch"] = stopper.kept_epoch
                    save(history[-1]["epoch"], history[-1])
                    if not quiet:
                        print(f"fastnn train: early stopping kept epoch {stopper.kept_epoch} "
                              f"(val_loss {stopper.kept:.4f})", file=log)
                else:
                    checkpoint.flush()
            else:
                _fit_distributed(model, loss_fn, optimizer, batches, data, cfg, schedule,
                                 comm, sync_batchnorm, save, start_epoch, history, quiet, log)
    except TrainingDiverged as exc:
        kept = f"; the last good checkpoint is {ckpt_path}" if os.path.isfile(ckpt_path) else ""
        raise TrainingDiverged(f"{exc}{kept}") from None
    finally:
        if helper is not None:
            _prewarm.stop(helper)
    if refit and stopper is not None and stopper.kept_epoch >= 1:
        return _refit(given, cfg, stopper.kept_epoch, history, out, quiet, threads, log, target)
    seconds = time.perf_counter() - t0
    test = TrainedModel(model, enc, config, ckpt_path)
    kept: list = []
    with _threads_fit_chose(step):
        test_metrics = test.evaluate(data.test, keep=kept)
        if not rank0:
            return RunResult({}, out)
        if table is None:
            result = reports.write_run(out, history, test_metrics, config, seconds,
                                       start_epoch, enc, *kept)
        else:  # which columns matter, on the test set, while the pictures are drawn
            result, drawing = reports.write_run(out, history, test_metrics, config, seconds,
                                                start_epoch, enc, *kept, background=True)
            try:
                importance = permutation_importance(test, data.test, seed=cfg["seed"])
            except BaseException:
                drawing.wait(reraise=False)
                raise
            drawing.wait()
    if table is not None:
        metric = "accuracy" if enc.task == "classification" else "r2"
        result.metrics["importance"] = importance
        result.metrics["importance_metric"] = metric
        reports.write_json(result.files["metrics"], result.metrics)
        result.files["importance"] = os.path.join(out, "importance.png")
        note = reports.plot_importance(result.files["importance"],
                                       result.metrics["importance"], metric)
        if note:
            result.notes["importance"] = note
    return result


def _refit(given: dict, cfg: dict, best_epoch: int, history: list, out: str, quiet: bool,
           threads, log, target) -> RunResult:
    """Train a table run again on every training row (no validation split) for the
    ``best_epoch`` epochs its early stopping chose, on a cosine schedule over them, with the
    first run's size-dependent settings (the larger row count could cross a size rule), into
    the same ``out``; the first run's history is kept in ``metrics.json`` (``refit``)."""
    from . import reports

    if not quiet:
        print(f"fastnn train: early stopping chose epoch {best_epoch} on the validation "
              f"split; training again on every row for {best_epoch} epoch"
              f"{'s' * (best_epoch > 1)} (cosine schedule)", file=log)
    again = {**given, "val_fraction": 0.0, "patience": 0, "epochs": best_epoch,
             "schedule": "cosine",
             **{k: cfg[k] for k in ("hidden", "weight_decay", "batch_size", "numeric_bins")}}
    result = run_training(again, out=out, quiet=quiet, threads=threads, log=log, target=target)
    result.metrics["refit"] = {"best_epoch": best_epoch,
                               "val_fraction": TABLE_VAL_FRACTION,
                               "patience": cfg["patience"],
                               "early_stopping_history": history}
    reports.write_json(result.files["metrics"], result.metrics)
    return result


@contextmanager
def _threads_fit_chose(step):
    """Run the block on the thread count that ``fit``'s governor ended on (``step``: its
    :class:`fastnn.train.LocalStep`, or None): one thread when other processes starved the
    pool during training (see :class:`fastnn._threads.ThreadGovernor`; measured on this
    2-core machine under load, a permutation importance took 4 to 12 s on two threads, 0.6 s
    on one), the budget again afterwards. The numbers do not depend on the count."""
    governor = getattr(step, "governor", None)
    if governor is None or governor.current == governor.budget:
        yield
        return
    governor._set(governor.current)
    try:
        yield
    finally:
        governor.restore()


def permutation_importance(trained: TrainedModel, data: ArrayDataset, seed: int = 0,
                           max_rows: int = 10_000) -> dict[str, float]:
    """Per column of a table model: how much the test accuracy (classification) or R²
    (regression) drops when that column's values are shuffled across the rows (all of its
    features together: value, blank indicator, date parts, category code). Computed on up
    to ``max_rows`` rows of ``data`` (seeded), one shuffle per column.

    The passes go through :meth:`TrainedModel.outputs` one batch of 1,024 rows at a time
    (its default batches: the same bits), each timed for a
    :class:`fastnn._threads.ThreadGovernor` that drops to one thread while other processes
    starve the pool, as ``fit``'s steps do."""
    from ._threads import ThreadGovernor, get_num_threads
    from .kernels import blas
    from .tasks import regression_metrics

    enc = trained.encoding
    rng = np.random.default_rng(seed)
    rows = data.rows if data.rows is not None else np.arange(len(data.X))
    if len(rows) > max_rows:
        rows = np.sort(rng.choice(rows, max_rows, replace=False))
    X, y = np.asarray(data.X[rows]), data.y[rows]
    governor = ThreadGovernor(get_num_threads()) if blas.AVAILABLE else None

    def outputs(features) -> np.ndarray:
        if not len(features):
            return trained.outputs(features)
        parts, batch = [], 1024
        for i in range(0, len(features), batch):
            t0 = time.perf_counter()
            parts.append(trained.outputs(features[i:i + batch], batch_size=batch))
            if governor is not None:
                governor.record(time.perf_counter() - t0)
        return np.concatenate(parts)

    def score(features) -> float:
        out = outputs(features)
        if enc.task == "classification":
            return float((out.argmax(axis=1) == y).mean())
        scaler = enc.target_scaler
        return regression_metrics(scaler.decode(out), scaler.decode(y))["r2"]

    try:
        base = score(X)
        importance = {}
        for name, idx in enc.table.column_indices().items():
            shuffled = X.copy()
            shuffled[:, idx] = X[rng.permutation(len(X))][:, idx]
            importance[name] = base - score(shuffled)
    finally:
        if governor is not None:
            governor.restore()
    return importance


def describe_counts(counts: dict) -> str:
    """What :meth:`fastnn.tabular.TableEncoder.transform` counted, in one line."""
    parts = []
    for name, c in counts.items():
        bits = []
        if c.get("blank"):
            new = " (none in training)" if c.get("filled_unseen_blank") else ""
            bits.append(f"{c['blank']} blank{'s' if c['blank'] > 1 else ''} filled{new}")
        if c.get("unknown"):
            bits.append(f"{c['unknown']} unknown categor{'ies' if c['unknown'] > 1 else 'y'}")
        if c.get("clipped"):
            bits.append(f"{c['clipped']} clipped to the training range")
        parts.append(f"{name}: {', '.join(bits)}")
    return "; ".join(parts) if parts else "no blanks, no unknown categories"


def _fit_distributed(model, loss_fn, optimizer, loader, data, cfg, schedule, comm,
                     sync_batchnorm, save, start_epoch, history, quiet, log):
    from .distributed import DistributedDataParallel, DistributedSampler
    from .train import ModelCheckpoint, fit

    ddp = DistributedDataParallel(model, optimizer, comm, sync_batchnorm=sync_batchnorm)
    fit(model, loss_fn, optimizer, DistributedSampler(loader, comm), val=data.val,
        epochs=cfg["epochs"], schedule=schedule, callbacks=[ModelCheckpoint(save)],
        start_epoch=start_epoch, history=history, quiet=quiet, log=log, step=ddp)
