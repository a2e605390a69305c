"""The main job as library calls: a configuration becomes data, a model, an optimizer, a
schedule and a loss; a training run writes its checkpoint and reports; a checkpoint becomes
a model that reads raw data and answers in the original labels or units.

``fastnn train``, ``evaluate`` and ``predict`` are thin shells over :func:`run_training`,
:func:`load_trained` and :class:`TrainedModel`; Python users can call them the same way.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from .data import ArrayDataset, DataError, DataLoader, Standardizer, check_finite, split_rows
from .tasks import Classes, TargetScaler, infer_task

DEFAULTS = {
    "data": "digits", "task": "auto", "hidden": "256,256", "activation": "relu",
    "batchnorm": True, "dropout": 0.2, "loss": None, "optimizer": "adam", "lr": None,
    "weight_decay": 1e-4, "schedule": "cosine", "epochs": 30, "batch_size": 64, "seed": 0,
    "val_fraction": 0.1, "dtype": "float32", "arch": "mlp", "augment": False,
}
#: Settings that define the model (a checkpoint rebuilds it from them).
ARCHITECTURE = ("hidden", "activation", "batchnorm", "dropout", "dtype", "arch")
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05,
              "rmsprop": 1e-3, "adam": 2e-3, "adamw": 2e-3}
SCHEDULES = ("none", "step", "cosine")
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
    """``none``, ``step`` (x0.1 every third of the run) or ``cosine`` (to 0 at ``epochs``).

    The schedule is defined by the run's total number of epochs: a resumed run that asks
    for more epochs continues on the curve of the longer run from where it stands."""
    from .optim import lr_scheduler as S

    if name == "none":
        return None
    if name == "step":
        return S.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    if name == "cosine":
        return S.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
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
    """The MLP of an ``architecture`` record (see :func:`fastnn.train.build_mlp`), or the
    CNN of one with ``"arch": "cnn"`` (:func:`build_cnn`)."""
    from .train import build_mlp

    n_out = arch.get("n_outputs", arch.get("n_classes"))
    if arch.get("arch", "mlp") == "cnn":
        return build_cnn(arch["image_shape"], arch["hidden"], n_out, arch["activation"],
                         arch["batchnorm"], arch["dropout"], arch["dtype"])
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


def _model_summary(cfg: dict, n_in: int, n_out: int, spec: str) -> str:
    """"MLP 64-256-256-10", or for --arch cnn "CNN 1x8x8 conv 32-32 pool, head 256-256-10"."""
    head = f"{'-'.join(map(str, cfg['hidden']))}-{n_out}"
    if cfg.get("arch", "mlp") != "cnn":
        return f"MLP {n_in}-{head}"
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
        return out

    def record(self, why: str = "") -> dict:
        """The JSON part (for the checkpoint's configuration)."""
        return {"kind": self.task, "why": why,
                "target_ndim": None if self.target_scaler is None else self.target_scaler.ndim,
                "feature_names": self.feature_names, "target_names": self.target_names}

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
            if meta["run.task"] == "classification":
                return cls("classification", std,
                           classes=Classes(np.array(json.loads(meta["run.classes"]))), **kw)
            scaler = TargetScaler(np.array(json.loads(meta["run.target_mean"]), np.float64),
                                  np.array(json.loads(meta["run.target_std"]), np.float64),
                                  int(meta.get("run.target_ndim", "1")))
            return cls("regression", std, target_scaler=scaler, **kw)
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"{where}: a damaged run encoding in its metadata ({exc})") from None

    @classmethod
    def from_checkpoint(cls, ckpt) -> Encoding:
        from .checkpoint import CheckpointError

        a, cfg = ckpt.arrays, ckpt.meta.get("config", {})
        if "data/mean" not in a or "data/std" not in a:
            raise CheckpointError(f"{ckpt.path}: records no standardization of the inputs")
        std = Standardizer(a["data/mean"], a["data/std"])
        rec = cfg.get("task") or {"kind": "classification"}  # version-1 runs: classifiers
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
                       target_names=rec.get("target_names"))
        if "data/target_mean" not in a:
            raise CheckpointError(f"{ckpt.path}: a regression run without its target scaling")
        scaler = TargetScaler(a["data/target_mean"], a["data/target_std"],
                              int(rec.get("target_ndim") or 1))
        return cls("regression", std, target_scaler=scaler,
                   feature_names=rec.get("feature_names"), target_names=rec.get("target_names"))


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

    @property
    def n_features(self) -> int:
        return (self.train or self.test).n_features


def _features(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), -1) if X.ndim != 2 else X


def prepare_data(spec: str, task: str = "auto", seed: int = 0, val_fraction: float = 0.1,
                 encoding: Encoding | None = None, whole: bool = False) -> PreparedData:
    """Load ``spec`` and make its train/validation/test parts (deterministic from ``seed``).

    Without a test part in the source, 20% of the rows are held out for testing (seeded
    with ``seed + 1``), then ``val_fraction`` of the rest for validation. The task is
    ``task`` or inferred (:func:`fastnn.tasks.infer_task`); the classes come from all of the
    source's labels, the standardization of inputs and targets from the training part only.
    With ``encoding`` (a trained model's), nothing is fitted: the data is read the model's
    way. ``whole``: every row of the source is test data (scoring a new file).
    """
    from .datasets import load_csv, load_spec, split_csv_spec

    if encoding is not None and encoding.feature_names and spec.startswith("csv:"):
        path, target = split_csv_spec(spec[4:])  # the model's columns, by name
        split = load_csv(path, target or ",".join(encoding.target_names or []) or None,
                         features=encoding.feature_names)
    else:
        split = load_spec(spec)
    X = None if split.X is None else _features(split.X)
    X_test = None if split.X_test is None else _features(split.X_test)
    y, y_test = split.y, split.y_test
    if X is not None and y is None:
        raise DataError(f"{spec}: no targets to train or score on")
    for name, arr in (("X", X), ("X_test", X_test)):
        if arr is not None:
            check_finite(arr, name=f"{spec} {name}")

    if whole:  # every row is test data
        if X is not None and X_test is not None:
            X = np.concatenate([X, X_test])
            y = np.concatenate([y, y_test])
        elif X is None:
            X, y = X_test, y_test
        X_test = y_test = None
    if X is None:  # only a test part: a file to score
        if encoding is None:
            raise DataError(f"{spec}: holds only X_test/y_test, nothing to train on")
        X, y = X_test, y_test
        X_test = y_test = None
        whole = True

    if whole:
        train_rows = val_rows = None
        test_rows = np.arange(len(X))
    elif X_test is None:
        train_rows, test_rows = split_rows(len(X), TEST_FRACTION, seed=seed + 1,
                                           name="test fraction")
    else:
        train_rows, test_rows = np.arange(len(X)), None
    if not whole and val_fraction > 0:
        train_rows, val_rows = split_rows(len(X), val_fraction, seed=seed, rows=train_rows,
                                          name="--val-fraction")
    elif not whole:
        val_rows = None

    why = ""
    if encoding is None:
        kind, why = infer_task(np.concatenate([y, y_test]) if y_test is not None
                               and y.ndim == y_test.ndim else y, task)
        standardizer = Standardizer().fit(X, rows=train_rows)
        names = {"feature_names": split.feature_names, "target_names": split.target_names}
        if kind == "classification":
            encoding = Encoding(kind, standardizer, classes=Classes.fit(y, y_test), **names)
        else:
            encoding = Encoding(kind, standardizer,
                                target_scaler=TargetScaler().fit(y, rows=train_rows), **names)
    elif task not in ("auto", encoding.task):
        raise ConfigError(f"--task {task} does not fit the model, a {encoding.task} model")

    y_enc = encoding.encode_targets(y, name="y")
    parts = []
    for rows in (train_rows, val_rows):
        parts.append(None if rows is None else
                     ArrayDataset(X, y_enc, rows=rows, transform=encoding.standardizer,
                                  check=False))
    if X_test is not None:
        test = ArrayDataset(X_test, encoding.encode_targets(y_test, name="y_test"),
                            transform=encoding.standardizer, check=False)
    else:
        test = ArrayDataset(X, y_enc, rows=test_rows, transform=encoding.standardizer,
                            check=False)
    return PreparedData(spec, parts[0], parts[1], test, encoding, why)


def load_features(source: str, encoding: Encoding | None = None) -> np.ndarray:
    """The features of every row of ``source`` (N, D), for prediction.

    ``source`` is a file (``.npz``: array ``X``, or ``X_test``; ``.csv``: the model's feature
    columns by name, so a target column in the file is ignored; ``.npy``: memory-mapped) or
    a data spec as for ``fastnn train`` (all of its rows, training and test part).
    """
    from .datasets import load_csv, load_npy, load_npz, load_spec, split_csv_spec

    kind, sep, rest = source.partition(":")
    if not sep or os.path.exists(source):  # a plain path
        kind, rest = os.path.splitext(source)[1].lstrip(".").lower(), source
        if kind not in ("npz", "csv", "npy"):
            raise DataError(f"{source}: give a .npz, .csv or .npy file, or a data spec such as "
                            "npz:FILE or csv:FILE")
    if kind == "csv":
        path, target = split_csv_spec(rest)
        names = encoding.feature_names if encoding is not None else None
        split = load_csv(path, None if names else target, features=names)
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
def resolve_config(given: dict, recorded: dict | None = None) -> dict:
    """The run's settings: ``given`` (None = not given), else the recorded ones of a resumed
    run, else :data:`DEFAULTS`. A resumed run keeps its settings; only ``epochs`` may change.
    """
    cfg = {}
    recorded = recorded or {}
    for key, default in DEFAULTS.items():
        value = given.get(key)
        if key in ARCHITECTURE:
            before = recorded.get("architecture", {}).get(key)
        elif key == "task":
            before = recorded.get("task", {}).get("kind")
        else:
            before = recorded.get("run", {}).get(key)
        if key == "hidden" and value is not None:
            value = parse_hidden(value)
        if key == "task" and value == "auto":
            value = None
        if recorded and key != "epochs" and value is not None and before is not None \
                and value != before:
            raise ConfigError(f"--{key.replace('_', '-')} {value} does not fit the checkpoint, "
                              f"which was trained with {before} (a resumed run keeps its "
                              "settings; start a new run to change them)")
        cfg[key] = value if value is not None else (before if before is not None else default)
    cfg["hidden"] = parse_hidden(cfg["hidden"])
    if cfg["optimizer"] not in DEFAULT_LR:
        raise ConfigError(f"--optimizer must be one of {', '.join(DEFAULT_LR)}, got "
                          f"{cfg['optimizer']!r}")
    if cfg["lr"] is None:
        cfg["lr"] = DEFAULT_LR[cfg["optimizer"]]
    checks = [
        ("epochs", isinstance(cfg["epochs"], int) and cfg["epochs"] >= 1, "a positive integer"),
        ("batch_size", isinstance(cfg["batch_size"], int) and cfg["batch_size"] >= 1,
         "a positive integer"),
        ("dropout", 0 <= cfg["dropout"] < 1, "in [0, 1)"),
        ("val_fraction", 0 <= cfg["val_fraction"] < 1, "in [0, 1)"),
        ("lr", cfg["lr"] > 0, "positive"),
        ("weight_decay", cfg["weight_decay"] >= 0, "zero or positive"),
        ("activation", cfg["activation"] in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}"),
        ("schedule", cfg["schedule"] in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
        ("dtype", cfg["dtype"] in ("float32", "float64"), "float32 or float64"),
    ]
    for key, ok, what in checks:
        if not ok:
            raise ConfigError(f"--{key.replace('_', '-')} must be {what}, got {cfg[key]!r}")
    return cfg


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

    def outputs(self, X, batch_size: int = 1024) -> np.ndarray:
        """The model's raw outputs (N, C) or (N, K) for raw features ``X`` (N, D)."""
        from .train import predict

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

    def predict(self, X) -> np.ndarray:
        """Predicted labels (N,) (in the training data's labels) or values (original units)."""
        return self.encoding.decode_outputs(self.outputs(X))

    def scores(self, X) -> np.ndarray:
        """What ``fastnn predict --scores`` writes: class scores (N, C) (logits), or for a
        regressor its predicted values."""
        out = self.outputs(X)
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
    if "architecture" not in cfg:
        raise CheckpointError(f"{path}: records no architecture to rebuild the model from")
    model = build_model(cfg["architecture"])
    restore(ckpt, model=model)
    model.eval()
    return TrainedModel(model, Encoding.from_checkpoint(ckpt), cfg, path)


def _load_trained_safetensors(path: str) -> TrainedModel:
    import json

    from .interop import load_safetensors, read_safetensors_metadata

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    meta = read_safetensors_metadata(path)
    encoding = Encoding.from_metadata(meta, where=path)
    model = load_safetensors(path)
    model.eval()
    try:
        config = json.loads(meta["run.config"])
    except (KeyError, ValueError):
        raise DataError(f"{path}: no run configuration in its metadata") from None
    return TrainedModel(model, encoding, config, path)


def export_run(checkpoint: str, onnx: str | None = None, safetensors: str | None = None,
               opset: int = 17, fold_batchnorm: bool = False,
               probabilities: bool = False) -> list[str]:
    """Export a ``fastnn train`` checkpoint for serving; returns the paths written.

    ``onnx``: a graph that takes *raw* features (the run's standardization is its first two
    nodes) and outputs what ``fastnn predict --scores`` writes for the same rows: a
    classifier's class scores (``probabilities``: softmax probabilities instead), a
    regressor's values in the original units. The class labels are in the model's
    ``metadata_props`` (``fastnn.classes``, JSON), as are the feature names.
    ``safetensors``: the weights with PyTorch's names and layouts, and the run (task,
    standardization, classes or target scaling, configuration) in ``__metadata__``, so
    ``fastnn predict FILE.safetensors`` and :func:`load_trained` read it like a checkpoint.
    """
    import json

    if onnx is None and safetensors is None:
        raise ConfigError("say what to write: --onnx FILE and/or --safetensors FILE")
    trained = load_trained(checkpoint)
    enc, written = trained.encoding, []
    if onnx is not None:
        from .interop import export_onnx, require

        if probabilities and enc.task != "classification":
            raise ConfigError("--probabilities is for classifiers; this is a regression model")
        reg = enc.task == "regression"
        proto = export_onnx(trained.model, onnx, opset=opset, fold_batchnorm=fold_batchnorm,
                            probabilities=probabilities, input_mean=enc.standardizer.mean,
                            input_std=enc.standardizer.std,
                            output_mean=enc.target_scaler.mean if reg else None,
                            output_std=enc.target_scaler.std if reg else None)
        onnx_lib = require("onnx", "ONNX export")
        props = {"fastnn.task": enc.task,
                 "fastnn.outputs": "probabilities" if probabilities else
                 "scores" if not reg else "values",
                 "fastnn.feature_names": json.dumps(enc.feature_names)}
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
@dataclass
class RunResult:
    """What :func:`run_training` did: the metrics and where it wrote its files."""

    metrics: dict
    out: str
    files: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def describe(data: PreparedData, cfg: dict, threads: int | None = None,
             step: str | None = None) -> str:
    """The first line of a run: data, task (and why), model, loss, optimizer, schedule, and
    how a step runs (``step``: "compiled step", or the graph and why)."""
    enc, n_in = data.encoding, data.n_features
    n_val = 0 if data.val is None else len(data.val)
    target = f"{len(enc.classes)} classes" if enc.task == "classification" else \
        f"{enc.n_outputs} target{'s' if enc.n_outputs > 1 else ''}"
    loss = cfg["loss"] or LOSSES[enc.task][0]
    return (f"{data.spec} ({len(data.train)} train, {n_val} val, {len(data.test)} test, "
            f"{n_in} features, {target}); task {enc.task} ({data.why}); "
            f"{_model_summary(cfg, n_in, enc.n_outputs, data.spec)} "
            f"{cfg['activation']}{' +BN' if cfg['batchnorm'] else ''}, {cfg['dtype']}; "
            f"loss {loss}, {cfg['optimizer']} lr={cfg['lr']:g}, schedule {cfg['schedule']}, "
            f"{cfg['epochs']} epochs, batch {cfg['batch_size']}"
            + (", augmented (crops, flips)" if cfg["augment"] else "")
            + (f", {threads} threads" if threads else "") + (f"; {step}" if step else ""))


def run_training(given: dict, out: str | None = None, resume: str | None = None,
                 comm=None, quiet: bool = False, sync_batchnorm: bool = False,
                 threads: int | None = None, log=None) -> RunResult:
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

    Returns
    -------
    RunResult with the final metrics and the paths of the files written.
    """
    import sys

    from . import reports
    from .checkpoint import load_checkpoint, restore, save_checkpoint
    from .random import manual_seed
    from .train import ModelCheckpoint, TrainingDiverged, fit

    log = log or sys.stderr
    ckpt = load_checkpoint(resume) if resume else None
    cfg = resolve_config(given, ckpt.meta["config"] if ckpt is not None else None)
    encoding = Encoding.from_checkpoint(ckpt) if ckpt is not None else None
    data = prepare_data(cfg["data"], cfg["task"], cfg["seed"], cfg["val_fraction"], encoding)
    enc = data.encoding
    if data.train is None:
        raise DataError(f"{cfg['data']}: nothing to train on")
    if comm is not None and enc.task != "classification":
        raise NotImplementedError("--distributed trains classifiers only; regression runs "
                                  "in one process")
    loss_fn = make_loss(cfg["loss"], enc.task)
    config = {
        "architecture": {"input_dim": int(data.n_features), "hidden": cfg["hidden"],
                         "n_outputs": enc.n_outputs, "activation": cfg["activation"],
                         "batchnorm": cfg["batchnorm"], "dropout": cfg["dropout"],
                         "dtype": cfg["dtype"], **_cnn_architecture(cfg, data)},
        "task": enc.record(data.why if ckpt is None else
                           ckpt.meta["config"].get("task", {}).get("why", "")),
        "data": {"spec": cfg["data"], "seed": cfg["seed"], "val_fraction": cfg["val_fraction"]},
        "run": {k: cfg[k] for k in DEFAULTS if k not in ARCHITECTURE and k != "task"},
    }
    if ckpt is not None:
        before = dict(ckpt.meta["config"]["architecture"])
        before.setdefault("n_outputs", before.pop("n_classes", None))
        if before != config["architecture"]:
            raise ConfigError(f"the data {cfg['data']!r} gives a model of "
                              f"{config['architecture']}, which does not fit the checkpoint's "
                              f"{before}")
    manual_seed(cfg["seed"])
    model = build_model(config["architecture"])
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

    def save(epoch, logs):  # after every epoch: the last good state stays on disk
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
    if rank0:
        from ._warmup import announce_compilation

        announce_compilation()
    t0 = time.perf_counter()
    try:
        # A diverging run overflows before its loss turns NaN; fit reports that once.
        with np.errstate(over="ignore", invalid="ignore"):
            if comm is None:
                fit(model, loss_fn, optimizer, batches, val=data.val, epochs=cfg["epochs"],
                    schedule=schedule, quiet=quiet, start_epoch=start_epoch, history=history,
                    callbacks=[ModelCheckpoint(save)], log=log,
                    target_scaler=enc.target_scaler, step=step)
            else:
                _fit_distributed(model, loss_fn, optimizer, batches, data, cfg, schedule,
                                 comm, sync_batchnorm, save, start_epoch, history, quiet, log)
    except TrainingDiverged as exc:
        kept = f"; the last good checkpoint is {ckpt_path}" if os.path.isfile(ckpt_path) else ""
        raise TrainingDiverged(f"{exc}{kept}") from None
    seconds = time.perf_counter() - t0
    test = TrainedModel(model, enc, config, ckpt_path)
    kept: list = []
    test_metrics = test.evaluate(data.test, keep=kept)
    if not rank0:
        return RunResult({}, out)
    return reports.write_run(out, history, test_metrics, config, seconds, start_epoch, enc,
                             *kept)


def _fit_distributed(model, loss_fn, optimizer, loader, data, cfg, schedule, comm,
                     sync_batchnorm, save, start_epoch, history, quiet, log):
    from .distributed import DistributedDataParallel, DistributedSampler
    from .train import ModelCheckpoint, fit

    ddp = DistributedDataParallel(model, optimizer, comm, sync_batchnorm=sync_batchnorm)
    fit(model, loss_fn, optimizer, DistributedSampler(loader, comm), val=data.val,
        epochs=cfg["epochs"], schedule=schedule, callbacks=[ModelCheckpoint(save)],
        start_epoch=start_epoch, history=history, quiet=quiet, log=log, step=ddp)
