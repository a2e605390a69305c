"""Checkpoints: one ``.npz`` file (read without pickle), written atomically.

Layout: ``model/<name>`` (the model's state_dict), ``optim/<state>/<k>`` (the optimizer's
flat state buffers), ``data/mean`` and ``data/std`` (the standardization fitted on the
training data), ``data/classes`` (a classifier's original labels, class i is
``classes[i]``) or ``data/target_mean`` and ``data/target_std`` (a regressor's target
standardization), and ``__fastnn__``: a JSON document with the run's configuration
(architecture and data spec, so that the file alone rebuilds the model), the epoch, the
optimizer's hyperparameters and step counts, the schedule's and the data loader's state,
the dropout layers' generator states and the history.

A write goes to a temporary file in the same directory, is flushed to disk, then renamed
over the target: a crash mid-write leaves the previous checkpoint intact. A read checks every
array's header against the bytes the file holds before it allocates anything
(:mod:`fastnn.safeload`), and the JSON record's fields before they are used.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from .safeload import FileFormatError, read_npz

FORMAT = "fastnn-checkpoint"
VERSION = 1


class CheckpointError(FileFormatError):
    """A file that is not a usable fastnn checkpoint (missing, truncated, foreign, mismatched).

    A :class:`fastnn.safeload.FileFormatError`, hence a DataError and a ValueError."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read: the JSON meta and the arrays by name."""

    meta: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    path: str = ""

    def section(self, prefix: str) -> dict[str, np.ndarray]:
        """Arrays under ``prefix/`` with the prefix removed."""
        p = prefix + "/"
        return {k[len(p):]: v for k, v in self.arrays.items() if k.startswith(p)}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _generators(model) -> list[np.random.Generator]:
    """The random generators of a model's modules (Dropout, GaussianNoise and any module of
    yours with a ``generator`` attribute), in module order."""
    return [m.generator for m in model.modules()
            if isinstance(getattr(m, "generator", None), np.random.Generator)]


def save_checkpoint(path: str, *, model, optimizer=None, scheduler=None, loader=None,
                    epoch: int = 0, config: dict | None = None, history=None,
                    standardizer=None, arrays: dict[str, np.ndarray] | None = None) -> str:
    """Write a checkpoint of a training run to ``path`` atomically; returns ``path``.

    ``arrays``: more arrays to keep, by name (e.g. ``data/classes``: the original class
    labels; numbers, booleans or a str array, all stored without pickle).
    """
    extra = dict(arrays or {})
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    for name, value in extra.items():
        value = np.asarray(value)
        if value.dtype.kind == "O":
            raise TypeError(f"checkpoint array {name!r} holds Python objects (dtype object); "
                            "store strings as a str array")
        arrays[name] = value
    meta = {"format": FORMAT, "version": VERSION, "epoch": int(epoch),
            "config": config or {}, "history": history or []}
    if optimizer is not None:
        state = optimizer.flat_state_dict()
        for name, bufs in state["state"].items():
            for k, b in enumerate(bufs):
                arrays[f"optim/{name}/{k}"] = b
        meta["optimizer"] = {"param_groups": state["param_groups"], "steps": state["steps"],
                             "layout": state["layout"], "state": sorted(state["state"]),
                             "class": type(optimizer).__name__}
    if scheduler is not None:
        meta["scheduler"] = {"class": type(scheduler).__name__, "state": scheduler.state_dict()}
    if loader is not None:
        meta["loader"] = loader.state_dict()
    meta["generators"] = [g.bit_generator.state for g in _generators(model)]
    if standardizer is not None and standardizer.mean is not None:
        arrays["data/mean"], arrays["data/std"] = standardizer.mean, standardizer.std
    arrays["__fastnn__"] = np.array(json.dumps(_jsonable(meta)))

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def load_checkpoint(path: str) -> Checkpoint:
    """Read a checkpoint; anything else (missing, truncated, foreign) raises CheckpointError."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    arrays = read_npz(path, error=CheckpointError)  # every header checked before reading
    record = arrays.pop("__fastnn__", None)
    if record is None:
        raise CheckpointError(f"{path}: not a fastnn checkpoint (no __fastnn__ record)")
    if record.dtype.kind != "U" or record.ndim != 0:
        raise CheckpointError(f"{path}: the __fastnn__ record is not a JSON string (dtype "
                              f"{record.dtype}, shape {record.shape})")
    try:
        meta = json.loads(str(record))
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: the __fastnn__ record is not valid JSON "
                              f"({str(exc)[:120]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fastnn checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')!r:.40}, "
                              f"this fastnn reads version {VERSION}")
    _check_record(meta, path)
    return Checkpoint(meta, arrays, path)


#: The JSON record's fields and their types (those a reader relies on).
_RECORD_TYPES = {"epoch": int, "config": dict, "history": list, "optimizer": dict,
                 "scheduler": dict, "loader": dict, "generators": list}


def _check_record(meta: dict, path: str) -> None:
    for key, kind in _RECORD_TYPES.items():
        if key in meta and not isinstance(meta[key], kind):
            raise CheckpointError(f"{path}: the record's {key!r} is a "
                                  f"{type(meta[key]).__name__}, not a {kind.__name__}")
    om = meta.get("optimizer")
    if om is not None:
        if not (isinstance(om.get("layout"), list) and isinstance(om.get("state"), list)
                and all(isinstance(k, str) for k in om["state"])
                and isinstance(om.get("class"), str)):
            raise CheckpointError(f"{path}: a damaged optimizer record")


def restore(ckpt: Checkpoint, *, model, optimizer=None, scheduler=None, loader=None,
            standardizer=None) -> None:
    """Load a checkpoint's states into the given objects (each optional but the model)."""
    try:
        model.load_state_dict(ckpt.section("model"))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{ckpt.path}: does not fit this model: {exc}") from None
    if optimizer is not None:
        om = ckpt.meta.get("optimizer")
        if om is None:
            raise CheckpointError(f"{ckpt.path}: holds no optimizer state")
        if om.get("class") != type(optimizer).__name__:
            raise CheckpointError(f"{ckpt.path}: optimizer is {om.get('class')}, not "
                                  f"{type(optimizer).__name__}")
        bufs = ckpt.section("optim")
        try:
            state = {name: [bufs[f"{name}/{k}"] for k in range(len(om["layout"]))]
                     for name in om["state"]}
            optimizer.load_state_dict({"param_groups": om["param_groups"], "steps": om["steps"],
                                       "state": state, "layout": om["layout"]})
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(f"{ckpt.path}: optimizer state does not fit: {exc}") from None
    try:
        if scheduler is not None and "scheduler" in ckpt.meta:
            scheduler.load_state_dict(ckpt.meta["scheduler"]["state"])
        if loader is not None and "loader" in ckpt.meta:
            loader.load_state_dict(ckpt.meta["loader"])
        gens = _generators(model)
        saved = ckpt.meta.get("generators", [])
        if len(saved) == len(gens):
            for g, s in zip(gens, saved, strict=True):
                g.bit_generator.state = s
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{ckpt.path}: a damaged schedule, loader or generator state "
                              f"({type(exc).__name__}: {str(exc)[:120]})") from None
    if standardizer is not None and "data/mean" in ckpt.arrays:
        standardizer.mean, standardizer.std = ckpt.arrays["data/mean"], ckpt.arrays["data/std"]
