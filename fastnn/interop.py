"""Models that leave fastnn and models that come in.

- safetensors (:func:`save_safetensors`, :func:`load_safetensors`): the tensors under
  PyTorch's names and in PyTorch's layouts, so that the equivalent ``torch.nn.Sequential``
  loads the file with ``strict=True``; the architecture as JSON in ``__metadata__``, so that
  fastnn rebuilds the model from the file alone.
- ONNX (:func:`export_onnx`): an inference graph in eval mode, checked by
  ``onnx.checker.check_model(full_check=True)``.
- PyTorch (:func:`sequential_from_torch`, :func:`load_torch_state_dict`, reached as
  ``fnn.Sequential.from_torch`` and ``model.load_state_dict(sd, layout="torch")``).

The optional packages (safetensors, onnx; torch only when the caller hands over a torch
object) are imported inside the functions that need them, so ``import fastnn`` stays cheap.

PyTorch's names. fastnn's ``Linear(..., activation="relu")`` is one module where PyTorch
has two (``nn.Linear`` and ``nn.ReLU``), so in PyTorch's names every fused activation (the
``activation=`` of a ``Linear`` or ``BatchNorm1d``) takes the next index of its Sequential:
``Sequential(Linear(4, 8, activation="relu"), Linear(8, 2))`` is saved as ``0.weight``,
``0.bias``, ``2.weight``, ``2.bias``, the names of ``nn.Sequential(nn.Linear(4, 8),
nn.ReLU(), nn.Linear(8, 2))``. A model without ``activation=`` keeps its own names.

Layouts. ``Linear.weight`` is (in_features, out_features) in fastnn and (out_features,
in_features) in PyTorch: transposed on the way out and back. ``Maxout.weight`` is saved
like a PyTorch Linear's: (out_features * pieces, in_features), row ``j * pieces + k``
holding piece k of output j (the pieces of one output in adjacent rows), ``bias``
(out_features * pieces,) in the same order; in PyTorch,
``F.linear(x, weight, bias).unflatten(-1, (out_features, pieces)).amax(-1)``.
BatchNorm1d's ``weight``, ``bias``, ``running_mean``, ``running_var`` and
``num_batches_tracked`` (an int64 scalar) and PReLU's ``weight`` are PyTorch's as they are.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping

import numpy as np

from .nn import conv as C
from .nn import layers as L
from .nn._torch_layout import (  # noqa: F401  (moved down to fastnn.nn; kept here by name)
    UnsupportedLayerError,
    _as_array,
    _check_against_model,
    _fused_activation,
    _is_torch,
    _join,
    _layout_table,
    _torch_module_paths,
    load_torch_state_dict,
    sequential_from_torch,
    torch_state_dict,
)
from .nn.module import Module, Sequential
from .safeload import FileFormatError, check_file

__all__ = [
    "SafetensorsFileError",
    "UnsupportedLayerError",
    "export_onnx",
    "export_table_onnx",
    "load_safetensors",
    "load_torch_state_dict",
    "read_safetensors_metadata",
    "save_safetensors",
    "sequential_from_torch",
    "torch_state_dict",
]

_INSTALL_HINT = "pip install 'fastnn[export]'"


class SafetensorsFileError(FileFormatError):
    """A safetensors file that fastnn refuses: malformed, foreign, or not fitting the model
    (a :class:`fastnn.safeload.FileFormatError`, hence a ValueError)."""


def require(module: str, purpose: str):
    """Import an optional dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise ImportError(
            f"{purpose} needs the {package!r} package: {_INSTALL_HINT}"
        ) from exc


def _version() -> str:
    """fastnn's version, as ``fastnn.__version__`` finds it (this module is below the package's
    ``__init__``, which imports it, so it asks the installed metadata itself)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fastnn")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


def _atomic_write(path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path``, then rename it into place, so
    that a crash never leaves half a file under the final name."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ================================================================ layers and their arguments
_ACTIVATIONS = (L.Identity, L.ReLU, L.LeakyReLU, L.ELU, L.Sigmoid, L.Tanh, L.GELU, L.SiLU)

# ------------------------------------------------ convolutional layers (fastnn.nn.conv)
# Their weights are in PyTorch's layout already (Conv2d (out, in / groups, kh, kw)): saved
# and loaded as they are. Their arguments in the architecture JSON; tuples as lists.
_CONV_LAYERS = (C.Conv2d, C.Conv1d, C.MaxPool2d, C.AvgPool2d, C.AdaptiveAvgPool2d,
                C.BatchNorm2d, C.Dropout2d, C.Unflatten)
_CONV_COMMON = {"in_channels": "int", "out_channels": "int", "kernel_size": "ints",
                "stride": "ints", "padding": "padding", "dilation": "ints", "groups": "int",
                "bias": "bool", "activation": "activation", "dtype": "dtype"}
_CONV_ARGS: dict[str, dict[str, str]] = {
    "Conv2d": _CONV_COMMON,
    "Conv1d": _CONV_COMMON,
    "MaxPool2d": {"kernel_size": "ints", "stride": "ints", "padding": "ints",
                  "dilation": "ints", "ceil_mode": "bool", "dtype": "dtype?"},
    "AvgPool2d": {"kernel_size": "ints", "stride": "ints", "padding": "ints",
                  "ceil_mode": "bool", "count_include_pad": "bool", "divisor_override": "int?",
                  "dtype": "dtype?"},
    "AdaptiveAvgPool2d": {"output_size": "sizes", "dtype": "dtype?"},
    "BatchNorm2d": {"num_features": "int", "eps": "float", "momentum": "float?",
                    "affine": "bool", "track_running_stats": "bool",
                    "activation": "activation", "dtype": "dtype"},
    "Dropout2d": {"p": "float", "dtype": "dtype?"},
    "Unflatten": {"dim": "int", "unflattened_size": "ints"},
}


def _conv_layer_args(m) -> dict:
    """The constructor arguments of a layer of fastnn.nn.conv (activation as the module)."""
    name = type(m).__name__
    dtype = _dtype_name(getattr(m, "dtype", None))
    if name in ("Conv2d", "Conv1d"):
        padding = m.padding if isinstance(m.padding, str) else list(m.padding)
        return {"in_channels": m.in_channels, "out_channels": m.out_channels,
                "kernel_size": list(m.kernel_size), "stride": list(m.stride),
                "padding": padding, "dilation": list(m.dilation), "groups": m.groups,
                "bias": m.bias is not None, "activation": m.activation, "dtype": dtype}
    if name == "MaxPool2d":
        return {"kernel_size": list(m.kernel_size), "stride": list(m.stride),
                "padding": list(m.padding), "dilation": list(m.dilation),
                "ceil_mode": m.ceil_mode, "dtype": dtype}
    if name == "AvgPool2d":
        return {"kernel_size": list(m.kernel_size), "stride": list(m.stride),
                "padding": list(m.padding), "ceil_mode": m.ceil_mode,
                "count_include_pad": m.count_include_pad,
                "divisor_override": m.divisor_override, "dtype": dtype}
    if name == "AdaptiveAvgPool2d":
        size = m.output_size
        return {"output_size": list(size) if isinstance(size, (tuple, list)) else [size, size],
                "dtype": dtype}
    if name == "BatchNorm2d":
        return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
                "affine": m.affine, "track_running_stats": m.track_running_stats,
                "activation": m.activation, "dtype": dtype}
    if name == "Dropout2d":
        return {"p": m.p, "dtype": dtype}
    return {"dim": m.dim, "unflattened_size": list(m.unflattened_size)}  # Unflatten


_LAYERS = {cls.__name__: cls for cls in (
    L.Linear, L.BatchNorm1d, L.Maxout, L.PReLU, L.Dropout, L.GaussianNoise, L.Flatten,
    *_ACTIVATIONS, *_CONV_LAYERS,
)}
_SUPPORTED = "Sequential, " + ", ".join(_LAYERS)


def _layer_type(m) -> type | None:
    """The fastnn layer class ``m`` is an instance of exactly (a subclass may compute
    something else), or None."""
    cls = _LAYERS.get(type(m).__name__)
    return cls if cls is type(m) else None


def _dtype_name(dtype) -> str | None:
    return None if dtype is None else np.dtype(dtype).name


# Each layer's constructor arguments in the architecture JSON, with the kind of value each
# takes: the JSON is data from a file, checked before any constructor sees it.
_ARGS: dict[str, dict[str, str]] = {
    "Linear": {"in_features": "int", "out_features": "int", "bias": "bool",
               "activation": "activation", "dtype": "dtype"},
    "BatchNorm1d": {"num_features": "int", "eps": "float", "momentum": "float?",
                    "affine": "bool", "track_running_stats": "bool",
                    "activation": "activation", "dtype": "dtype"},
    "Maxout": {"in_features": "int", "out_features": "int", "pieces": "int", "bias": "bool",
               "dtype": "dtype"},
    "PReLU": {"num_parameters": "int", "dtype": "dtype"},
    "Dropout": {"p": "float", "dtype": "dtype?"},
    "GaussianNoise": {"std": "float", "dtype": "dtype?"},
    "Flatten": {"start_dim": "int", "end_dim": "int"},
    "LeakyReLU": {"negative_slope": "float", "dtype": "dtype?"},
    "ELU": {"alpha": "float", "dtype": "dtype?"},
    "GELU": {"approximate": "str", "dtype": "dtype?"},
    **{name: {"dtype": "dtype?"} for name in ("Identity", "ReLU", "Sigmoid", "Tanh", "SiLU")},
    **_CONV_ARGS,
}


def _layer_args(m) -> dict:
    """The constructor arguments that rebuild layer ``m`` (weights aside)."""
    name = type(m).__name__
    dtype = _dtype_name(getattr(m, "dtype", None))
    if name == "Linear":
        return {"in_features": m.in_features, "out_features": m.out_features,
                "bias": m.bias is not None, "activation": _activation_spec(m.activation),
                "dtype": dtype}
    if name == "BatchNorm1d":
        return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
                "affine": m.affine, "track_running_stats": m.track_running_stats,
                "activation": _activation_spec(m.activation), "dtype": dtype}
    if name == "Maxout":
        return {"in_features": m.in_features, "out_features": m.out_features,
                "pieces": m.pieces, "bias": m.bias is not None, "dtype": dtype}
    if name == "PReLU":
        return {"num_parameters": m.num_parameters, "dtype": dtype}
    if name == "Flatten":
        return {"start_dim": m.start_dim, "end_dim": m.end_dim}
    if name in _CONV_ARGS:
        args = _conv_layer_args(m)
        if "activation" in args:
            args["activation"] = _activation_spec(m.activation)
        return args
    args = {"Dropout": {"p": getattr(m, "p", None)},
            "GaussianNoise": {"std": getattr(m, "std", None)},
            "LeakyReLU": {"negative_slope": getattr(m, "alpha", None)},
            "ELU": {"alpha": getattr(m, "alpha", None)},
            "GELU": {"approximate": getattr(m, "approximate", None)}}.get(name, {})
    return {**args, "dtype": dtype}


def _activation_spec(act) -> dict | None:
    if act is None:
        return None
    if _layer_type(act) is None:
        raise UnsupportedLayerError(f"activation {type(act).__name__} is not one of fastnn's")
    return {"type": type(act).__name__, "args": _layer_args(act)}


def architecture(model: Module, _path: str = "") -> dict:
    """The JSON-able description of ``model`` that :func:`build_architecture` rebuilds.

    ``{"type": "Sequential", "layers": [...]}`` for a Sequential (nested ones too),
    ``{"type": "Linear", "args": {...}}`` for a layer. Raises UnsupportedLayerError naming
    the first module that is not one of fastnn's layers.
    """
    if type(model) is Sequential:
        return {"type": "Sequential",
                "layers": [architecture(m, _join(_path, n)) for n, m in model.named_children()]}
    if _layer_type(model) is None:
        raise UnsupportedLayerError(
            f"layer {_path or '<model>'!r} is a {type(model).__name__}, not one of fastnn's "
            f"layers ({_SUPPORTED})"
        )
    return {"type": type(model).__name__, "args": _layer_args(model)}


def _check_arg(where: str, key: str, kind: str, value) -> None:
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None and (optional or kind == "activation"):
        return
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "dtype": value in ("float32", "float64"),
        "activation": isinstance(value, dict),
        "ints": isinstance(value, list) and 0 < len(value) <= 3 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value),
        "padding": value in ("same", "valid") or (isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)),
        "sizes": isinstance(value, list) and len(value) == 2 and all(
            v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in value),
    }[kind]
    if not ok:
        raise ValueError(f"{where}: argument {key!r} must be {kind}, got {value!r}")


def build_architecture(spec, _path: str = "") -> Module:
    """Rebuild a model (fresh weights) from :func:`architecture`'s description.

    Only fastnn's own layer classes are ever constructed, with checked arguments: the
    description is data, never code. Raises ValueError naming the offending entry.
    """
    where = f"architecture entry {_path or '<model>'!r}"
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ValueError(f"{where}: expected an object with a 'type', got {spec!r:.80}")
    kind = spec["type"]
    if kind == "Sequential":
        layers = spec.get("layers")
        if not isinstance(layers, list) or set(spec) != {"type", "layers"}:
            raise ValueError(f"{where}: a Sequential needs exactly 'type' and a 'layers' list")
        return Sequential(*(build_architecture(s, _join(_path, str(i)))
                            for i, s in enumerate(layers)))
    if kind not in _LAYERS:
        raise ValueError(f"{where}: unknown layer type {kind!r} (fastnn has {_SUPPORTED})")
    args = spec.get("args", {})
    if not isinstance(args, dict) or not set(spec) <= {"type", "args"}:
        raise ValueError(f"{where}: expected {{'type': ..., 'args': {{...}}}}")
    allowed = _ARGS[kind]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: {kind} takes no argument(s) {unknown}")
    kwargs = {}
    for key, value in args.items():
        _check_arg(f"{where} ({kind})", key, allowed[key], value)
        if allowed[key] == "activation" and value is not None:
            if value.get("type") not in {cls.__name__ for cls in _ACTIVATIONS}:
                raise ValueError(f"{where}: activation must be an activation layer, "
                                 f"got {value.get('type')!r}")
            value = build_architecture(value, _join(_path, "activation"))
        kwargs[key] = value
    try:
        return _LAYERS[kind](**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


# ======================================================================== PyTorch's names
# (fastnn/nn/_torch_layout.py: the names and layouts, Sequential.from_torch)


# ============================================================================ safetensors
_ST_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8")}
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
_META_ARCH, _META_VERSION, _META_FORMAT = "fastnn.architecture", "fastnn.version", "format"


def save_safetensors(model: Module, path, metadata: Mapping[str, str] | None = None) -> None:
    """Write the model's tensors as a safetensors file with PyTorch's names and layouts.

    Parameters
    ----------
    model : a fastnn Module (usually a Sequential), float32 or float64.
    path : file to write; written to a temporary file beside it, then renamed.
    metadata : extra ``str -> str`` entries for the file's ``__metadata__`` (keys
        ``format`` and ``fastnn.*`` are fastnn's own).

    The file holds ``"0.weight"`` (out_features, in_features) for a Linear, BatchNorm's
    ``weight``, ``bias``, ``running_mean``, ``running_var`` and ``num_batches_tracked``
    (int64 scalar), PReLU's ``weight``, Maxout's (out * pieces, in) ``weight`` (module
    docstring), so ``torch.nn.Sequential(...).load_state_dict(load_file(path),
    strict=True)`` takes it for the equivalent PyTorch model (fused activations take their
    own index, see the module docstring). ``__metadata__`` holds ``format: pt``,
    ``fastnn.version`` and, when every module is one of fastnn's layers,
    ``fastnn.architecture`` (JSON), from which :func:`load_safetensors` rebuilds the model.
    """
    if not isinstance(model, Module):
        raise TypeError(f"save_safetensors: model must be a fastnn Module, "
                        f"got {type(model).__name__}")
    st = require("safetensors.numpy", "save_safetensors")
    meta = {_META_FORMAT: "pt", _META_VERSION: _version()}
    try:
        meta[_META_ARCH] = json.dumps(architecture(model), separators=(",", ":"))
    except UnsupportedLayerError:
        pass  # a model of its own classes: its tensors only (load them with model=)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"save_safetensors: metadata must be a mapping of str to str, "
                        f"got {type(metadata).__name__}")
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save_safetensors: metadata must map str to str, got "
                            f"{key!r}: {type(value).__name__}")
        if key == _META_FORMAT or key.startswith("fastnn."):
            raise ValueError(f"save_safetensors: metadata key {key!r} is reserved for fastnn "
                             f"('format' and 'fastnn.*')")
        meta[key] = value
    tensors = torch_state_dict(model)
    for name, arr in tensors.items():
        if arr.dtype not in (np.float32, np.float64, np.int64):
            raise TypeError(f"save_safetensors: {name!r} has dtype {arr.dtype}; "
                            f"fastnn writes float32, float64 and int64")
    _atomic_write(path, st.save(tensors, metadata=meta))


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"duplicate keys {dup}")
    return dict(pairs)


def _parse_header(data: bytes, name: str) -> tuple[dict, dict[str, str]]:
    """Check a safetensors file's layout: an 8-byte little-endian header length, a JSON
    header, tensors whose byte ranges tile the data exactly. Returns (entries, metadata)."""

    def bad(msg: str) -> SafetensorsFileError:
        return SafetensorsFileError(f"{name}: {msg}")

    size = len(data)
    if size < 8:
        raise bad(f"truncated: {size} bytes, not even the 8-byte header length of a "
                  f"safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n < 2 or n > size - 8 or n > _MAX_HEADER:
        raise bad(f"wrong header length: the first 8 bytes say {n} bytes of header, the file "
                  f"has {size - 8} after them (truncated, or not a safetensors file)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(f"the {n}-byte header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise bad(f"the header is a JSON {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise bad("__metadata__ must map strings to strings")
    data_len = size - 8 - n
    spans = []
    for key, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {key!r}: expected dtype, shape and data_offsets, got {info!r:.80}")
        dt, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in _ST_DTYPES:
            raise bad(f"tensor {key!r} has dtype {dt!r}; fastnn reads F32, F64 and I64 "
                      f"(num_batches_tracked)")
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise bad(f"tensor {key!r}: shape must be a list of non-negative integers, "
                      f"got {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise bad(f"tensor {key!r}: data_offsets must be [begin, end] with "
                      f"0 <= begin <= end, got {offsets!r}")
        need = math.prod(shape) * _ST_DTYPES[dt].itemsize
        if offsets[1] - offsets[0] != need:
            raise bad(f"tensor {key!r}: data_offsets {offsets} hold {offsets[1] - offsets[0]} "
                      f"bytes, its dtype {dt} and shape {shape} need {need}")
        spans.append((offsets[0], offsets[1], key))
    spans.sort()
    end, last = 0, None
    for begin, stop, key in spans:
        if begin < end:
            raise bad(f"overlapping offsets: tensor {key!r} starts at byte {begin}, inside "
                      f"tensor {last!r} (which ends at {end})")
        if begin > end:
            raise bad(f"offsets do not cover the data: bytes {end}..{begin} belong to no "
                      f"tensor")
        end, last = stop, key
    if end > data_len:
        raise bad(f"truncated: the tensors need {end} bytes of data, the file holds "
                  f"{data_len}")
    if end < data_len:
        raise bad(f"offsets do not cover the data: the tensors end at byte {end}, the data "
                  f"has {data_len} (trailing bytes)")
    return header, meta


def _claimed_weights(spec) -> int:
    """The fewest weights the layers of an architecture description hold (a Linear's or a
    Maxout's weight, a BatchNorm1d's or a PReLU's features): a genuine file stores at least
    as many. Malformed entries count nothing (build_architecture refuses them)."""
    total, stack = 0, [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            args = node.get("args")
            if isinstance(args, dict):
                sizes = [args.get(k) for k in ("in_features", "out_features", "pieces",
                                               "num_features", "num_parameters")]
                sizes = [v for v in sizes if isinstance(v, int) and not isinstance(v, bool)]
                stores = args.get("affine") is not False or \
                    args.get("track_running_stats") is not False  # else a BatchNorm1d of nothing
                if sizes and stores:
                    total += math.prod(max(v, 0) for v in sizes)
                stack.append(args.get("activation"))
            stack.append(node.get("layers"))
    return total


def _read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str], str]:
    name = check_file(path)
    with open(name, "rb") as f:
        data = f.read()
    _, meta = _parse_header(data, name)
    st = require("safetensors.numpy", "load_safetensors")
    try:
        tensors = st.load(data)
    except Exception as exc:  # safetensors' own checks, after ours (SafetensorError)
        raise SafetensorsFileError(f"{name}: safetensors refused the file: {exc}") from None
    return tensors, meta, name


def read_safetensors_metadata(path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (checked as :func:`load_safetensors`
    checks it; no tensor is read into a model)."""
    name = check_file(path)
    with open(name, "rb") as f:
        data = f.read()
    return _parse_header(data, name)[1]


def load_safetensors(path, model: Module | None = None) -> Module:
    """Load a safetensors file with PyTorch's names and layouts.

    Parameters
    ----------
    path : a file written by :func:`save_safetensors`, or by ``safetensors.torch.save_file``
        from the equivalent PyTorch model (then pass ``model``).
    model : load into this model, in place (strict: every name and shape must fit); without
        it, the model is rebuilt from the architecture in the file's ``__metadata__``.

    Returns
    -------
    The model. Refuses (SafetensorsFileError, a ValueError, one line) a truncated file, a
    wrong header length, offsets that overlap or do not cover the data, a dtype fastnn does
    not use (F32, F64, and I64 for ``num_batches_tracked``), a file without fastnn's
    architecture when no model is given, names or shapes that do not fit. Every check runs
    before anything is assigned: a refused file leaves ``model`` as it was. Nothing in the
    file is executed (no pickle; the architecture builds only fastnn's layer classes).
    Float32 values load into float64 models and back (cast, as PyTorch does).
    """
    if model is not None and not isinstance(model, Module):
        raise TypeError(f"load_safetensors: model must be a fastnn Module or None, "
                        f"got {type(model).__name__}")
    tensors, meta, name = _read_safetensors(path)
    if model is None:
        spec = meta.get(_META_ARCH)
        if spec is None:
            raise SafetensorsFileError(
                f"{name}: no fastnn architecture in __metadata__ (not written by "
                f"fastnn.save_safetensors?); pass model= to load its tensors into your model"
            )
        try:
            spec = json.loads(spec)
            held = sum(math.prod(t.shape) for t in tensors.values())
            claimed = _claimed_weights(spec)
            if claimed > held:  # checked before building: a claim of 10^9 units allocates nothing
                raise ValueError(f"its layers need at least {claimed} weights, the file holds "
                                 f"{held}")
            model = build_architecture(spec)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise SafetensorsFileError(f"{name}: bad fastnn architecture: {exc}") from None
    try:
        converted, _, _ = _check_against_model(model, tensors, True, name)
    except ValueError as exc:
        raise SafetensorsFileError(str(exc)) from None
    model.load_state_dict(converted, strict=True)
    return model


# =================================================================================== ONNX
def _leaves(model: Module, path: str = "") -> Iterator[tuple[str, Module]]:
    """(path, layer) in execution order, through nested Sequentials."""
    if isinstance(model, Sequential) and type(model).forward is Sequential.forward:
        for name, child in model.named_children():
            yield from _leaves(child, _join(path, name))
        return
    if _layer_type(model) is None:
        raise UnsupportedLayerError(
            f"export_onnx: layer {path or '<model>'!r} is a {type(model).__name__}, which has "
            f"no ONNX export (supported: {_SUPPORTED})"
        )
    yield path, model


class _GraphBuilder:
    """Nodes and initializers of an ONNX graph, with unique names."""

    def __init__(self, onnx, opset: int):
        self.onnx, self.opset = onnx, opset
        self.nodes, self.initializers, self._used = [], [], set()

    def name(self, base: str) -> str:
        base = base or "t"
        name, k = base, 1
        while name in self._used:
            name, k = f"{base}_{k}", k + 1
        self._used.add(name)
        return name

    def const(self, base: str, value, dtype=np.float32) -> str:
        name = self.name(base)
        arr = np.array(value, dtype=dtype, order="C")
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        out = self.name(base)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=self.name(
            f"{op}:{base}"), **attrs))
        return out


def _emit_batchnorm(g: _GraphBuilder, x: str, m, where: str, base: str) -> str:
    """ONNX's BatchNormalization (running statistics; ones and zeros where not affine) for a
    BatchNorm1d or BatchNorm2d ``m``, then its fused activation."""
    c = m.num_features
    gamma = m.weight.data if m.affine else np.ones(c)
    beta = m.bias.data if m.affine else np.zeros(c)
    y = g.node("BatchNormalization",
               [x, g.const(_join(where, "weight" if m.affine else "ones"), gamma),
                g.const(_join(where, "bias" if m.affine else "zeros"), beta),
                g.const(_join(where, "running_mean"), m.running_mean),
                g.const(_join(where, "running_var"), m.running_var)],
               f"{base}.batchnorm", epsilon=float(m.eps))
    if m.activation is not None:
        y = _emit_activation(g, y, m.activation, base)
    return y


def _emit_activation(g: _GraphBuilder, x: str, act, base: str) -> str:
    t = type(act)
    if t is L.Identity:
        return x
    if t is L.ReLU:
        return g.node("Relu", [x], f"{base}.relu")
    if t is L.LeakyReLU:
        return g.node("LeakyRelu", [x], f"{base}.leaky_relu", alpha=float(act.alpha))
    if t is L.ELU:
        return g.node("Elu", [x], f"{base}.elu", alpha=float(act.alpha))
    if t is L.Sigmoid:
        return g.node("Sigmoid", [x], f"{base}.sigmoid")
    if t is L.Tanh:
        return g.node("Tanh", [x], f"{base}.tanh")
    if t is L.SiLU:  # x * sigmoid(x): ONNX has no SiLU before opset 24's Swish
        s = g.node("Sigmoid", [x], f"{base}.sigmoid")
        return g.node("Mul", [x, s], f"{base}.silu")
    if t is L.GELU:
        if g.opset >= 20:
            return g.node("Gelu", [x], f"{base}.gelu", approximate=act.approximate)
        half = g.const(f"{base}.half", 0.5)
        one = g.const(f"{base}.one", 1.0)
        if act.approximate == "none":  # 0.5 x (1 + erf(x / sqrt(2)))
            inner = g.node("Mul", [x, g.const(f"{base}.inv_sqrt2", 1 / math.sqrt(2))],
                           f"{base}.scaled")
            phi = g.node("Erf", [inner], f"{base}.erf")
        else:  # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
            x3 = g.node("Mul", [g.node("Mul", [x, x], f"{base}.x2"), x], f"{base}.x3")
            cubic = g.node("Add", [x, g.node("Mul", [x3, g.const(f"{base}.c", 0.044715)],
                                              f"{base}.cx3")], f"{base}.cubic")
            inner = g.node("Mul", [cubic, g.const(f"{base}.k", math.sqrt(2 / math.pi))],
                           f"{base}.scaled")
            phi = g.node("Tanh", [inner], f"{base}.tanh")
        halfx = g.node("Mul", [x, half], f"{base}.halfx")
        return g.node("Mul", [halfx, g.node("Add", [phi, one], f"{base}.onep")],
                      f"{base}.gelu")
    raise UnsupportedLayerError(f"export_onnx: {base!r}: no ONNX form for {t.__name__}")


def _feature_shape(leaves, input_dim) -> tuple[int, ...]:
    """The shape of one sample at the input: ``input_dim``, or read off the first layer
    that fixes it."""
    if input_dim is not None:
        dims = (input_dim,) if isinstance(input_dim, (int, np.integer)) else tuple(input_dim)
        if not dims or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                               and d > 0 for d in dims):
            raise ValueError(f"export_onnx: input_dim must be a positive integer or a tuple "
                             f"of them, got {input_dim!r}")
        return tuple(int(d) for d in dims)
    for _, m in leaves:
        t = type(m)
        if t in (L.Linear, L.Maxout):
            return (m.in_features,)
        if t is L.BatchNorm1d:
            return (m.num_features,)
        if t is L.PReLU and m.num_parameters > 1:
            return (m.num_parameters,)
        if t is L.Flatten:
            break
        if t is C.Unflatten and m.dim == 1 and -1 not in m.unflattened_size:
            return (math.prod(m.unflattened_size),)
        if t in _CONV_LAYERS:
            break
    raise ValueError("export_onnx: cannot tell the input's shape from the model's first "
                     "layers; pass input_dim= (features per sample, an int or a tuple)")


def _emit_conv_layer(g: _GraphBuilder, x: str, m, where: str, base: str, feat, nxt,
                     fold_batchnorm: bool) -> tuple[str, tuple[int, ...], int]:
    """The ONNX nodes of a layer of fastnn.nn.conv: (output name, its shape per sample, how
    many following layers were folded into it). Conv2d/Conv1d -> Conv (a BatchNorm2d right
    after a Conv2d without activation folded into it with ``fold_batchnorm``), MaxPool2d ->
    MaxPool, AvgPool2d -> AveragePool, AdaptiveAvgPool2d -> GlobalAveragePool (output 1) or
    AveragePool (sizes that divide the input), BatchNorm2d -> BatchNormalization, Unflatten
    -> Reshape, Dropout2d vanishes."""
    from .kernels import conv as K_conv
    from .kernels import pool as K_pool

    t = type(m)

    def refuse(why: str):
        raise UnsupportedLayerError(f"export_onnx: layer {base!r} ({t.__name__}): {why}")

    def expect(ok: bool, want: str) -> None:
        if not ok:
            raise ValueError(f"export_onnx: layer {where or '<model>'!r} ({t.__name__}) "
                             f"expects {want} per sample, but gets {feat}")

    if t is C.Unflatten:
        d = m.dim if m.dim > 0 else m.dim + len(feat) + 1
        expect(1 <= d <= len(feat), "a dimension to split")
        sizes = list(m.unflattened_size)
        if -1 in sizes:
            sizes[sizes.index(-1)] = feat[d - 1] // math.prod(v for v in sizes if v != -1)
        expect(math.prod(sizes) == feat[d - 1], f"{math.prod(sizes)} values in dimension {d}")
        new = (*feat[:d - 1], *sizes, *feat[d:])
        shape = g.const(f"{base}.shape", [0, *new], np.int64)
        return g.node("Reshape", [x, shape], f"{base}.reshape"), new, 0
    if t is C.Dropout2d:
        return x, feat, 0
    if t in (C.Conv2d, C.Conv1d):
        two = t is C.Conv2d
        expect(len(feat) == (3 if two else 2) and feat[0] == m.in_channels,
               f"({m.in_channels}, H, W)" if two else f"({m.in_channels}, L)")
        W = m.weight.data.astype(np.float64)
        b = m.bias.data.astype(np.float64) if m.bias is not None else None
        act, folded = m.activation, 0
        if (fold_batchnorm and two and act is None and type(nxt) is C.BatchNorm2d
                and nxt.track_running_stats):
            s = 1.0 / np.sqrt(nxt.running_var.astype(np.float64) + nxt.eps)
            if nxt.affine:
                s = s * nxt.weight.data
            shift = nxt.bias.data if nxt.affine else 0.0
            W = W * s[:, None, None, None]
            b = ((b if b is not None else 0.0) - nxt.running_mean) * s + shift
            act, folded = nxt.activation, 1
        pads = m._pads  # (lo, hi) per axis; ONNX wants every axis' begin, then every end
        inputs = [x, g.const(_join(where, "weight"), W)]
        if b is not None:
            inputs.append(g.const(_join(where, "bias"), b))
        y = g.node("Conv", inputs, f"{base}.conv", kernel_shape=list(m.kernel_size),
                   strides=list(m.stride), dilations=list(m.dilation), group=m.groups,
                   pads=[*pads[0::2], *pads[1::2]])
        spatial = tuple(K_conv.output_size(n, k, s_, lo, hi, d) for n, k, s_, lo, hi, d in zip(
            feat[1:], m.kernel_size, m.stride, pads[0::2], pads[1::2], m.dilation,
            strict=True))
        if act is not None:
            y = _emit_activation(g, y, act, base)
        return y, (m.out_channels, *spatial), folded
    if t is C.BatchNorm2d:
        expect(len(feat) == 3 and feat[0] == m.num_features, f"({m.num_features}, H, W)")
        if not m.track_running_stats:
            refuse("track_running_stats=False normalizes by batch statistics even in eval "
                   "mode; ONNX's BatchNormalization needs running statistics")
        return _emit_batchnorm(g, x, m, where, base), feat, 0
    expect(len(feat) == 3, "(C, H, W)")
    c, h, w = feat
    if t is C.AdaptiveAvgPool2d:
        size = m.output_size if isinstance(m.output_size, (tuple, list)) else (
            m.output_size, m.output_size)
        oh, ow = (h if size[0] is None else size[0]), (w if size[1] is None else size[1])
        if (oh, ow) == (1, 1):
            return g.node("GlobalAveragePool", [x], f"{base}.gap"), (c, 1, 1), 0
        if h % oh or w % ow:
            refuse(f"output {(oh, ow)} does not divide the input {(h, w)}: its windows "
                   f"have different sizes, which no ONNX pooling operator expresses")
        k = [h // oh, w // ow]
        return g.node("AveragePool", [x], f"{base}.avgpool", kernel_shape=k, strides=k), \
            (c, oh, ow), 0
    ph, pw = m.padding
    dil = m.dilation if t is C.MaxPool2d else (1, 1)
    oh, ow = (K_pool.pool_output_size(n, k, s_, p, d, m.ceil_mode) for n, k, s_, p, d in zip(
        (h, w), m.kernel_size, m.stride, (ph, pw), dil, strict=True))
    if m.ceil_mode and any(
            K_pool.pool_output_size(n, k, s_, p, d, True) != (n + 2 * p - d * (k - 1) - 1
                                                              + s_ - 1) // s_ + 1
            for n, k, s_, p, d in zip((h, w), m.kernel_size, m.stride, (ph, pw), dil,
                                      strict=True)):
        refuse("with ceil_mode, PyTorch drops a last window that would start in the right "
               "padding, which ONNX's ceil_mode does not")
    attrs = dict(kernel_shape=list(m.kernel_size), strides=list(m.stride),
                 pads=[ph, pw, ph, pw], ceil_mode=int(m.ceil_mode))
    if t is C.MaxPool2d:
        y = g.node("MaxPool", [x], f"{base}.maxpool", dilations=list(dil), **attrs)
    else:
        if m.divisor_override is not None:
            refuse("divisor_override has no ONNX AveragePool attribute")
        if m.ceil_mode and m.count_include_pad and (ph or pw):
            refuse("ceil_mode with count_include_pad and padding: PyTorch's divisor of a "
                   "window that runs past the padding is not ONNX's")
        y = g.node("AveragePool", [x], f"{base}.avgpool",
                   count_include_pad=int(m.count_include_pad), **attrs)
    return y, (c, oh, ow), 0


def _check_stats(name: str, value, shape: tuple[int, ...], positive: bool) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    try:
        ok = np.broadcast_shapes(arr.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"export_onnx: {name} has shape {arr.shape}, expected one that "
                         f"broadcasts to {shape} (per feature)")
    if not np.all(np.isfinite(arr)) or (positive and np.any(arr == 0)):
        raise ValueError(f"export_onnx: {name} must be finite{' and non-zero' if positive else ''}")
    return arr


def export_onnx(model: Module, path, opset: int = 17, input_dim=None,
                fold_batchnorm: bool = False, probabilities: bool = False, *,
                input_mean=None, input_std=None, output_mean=None, output_std=None):
    """Export a model's eval-mode computation as an ONNX graph (float32).

    Parameters
    ----------
    model : a Sequential (nested ones too) of fastnn's layers, or one layer.
    path : the ``.onnx`` file to write (atomically).
    opset : ONNX opset, 13 up to what the installed onnx knows (the onnxruntime that runs
        the file must know it too: 1.20 reads up to 21); the file's ``ir_version`` is the
        lowest that the opset needs (the newest IR may be newer than onnxruntime reads).
    input_dim : features per sample (an int, or a tuple for inputs that a Flatten turns
        into rows); by default read off the first Linear, Maxout, BatchNorm1d or PReLU.
    fold_batchnorm : fold a BatchNorm1d that directly follows a Linear (without its own
        activation) into that Linear's Gemm.
    probabilities : append a Softmax over the last axis (class probabilities).
    input_mean, input_std : per-feature arrays (D,); the graph then takes raw features and
        computes ``(x - input_mean) / input_std`` first (a training run's standardization).
    output_mean, output_std : per-output arrays (M,); the graph then ends with
        ``y * output_std + output_mean`` (targets standardized in training).

    The graph has one input ``"input"`` (batch, D) and one output ``"output"`` (batch, M),
    float32, with a dynamic batch dimension. Operators: Linear -> Gemm (fastnn's (in, out)
    weight, so ``transB=0``) and its fused activation as a node of its own; BatchNorm1d ->
    BatchNormalization (running statistics); ReLU, LeakyReLU, ELU, PReLU, Sigmoid, Tanh ->
    Relu, LeakyRelu, Elu, PRelu, Sigmoid, Tanh; SiLU -> Sigmoid, Mul; GELU -> Gelu (opset
    >= 20) or its formula (Erf or Tanh, Mul, Add); Maxout -> Gemm, Reshape, ReduceMax;
    Flatten -> Flatten (Reshape for other dims); Dropout, GaussianNoise, Identity vanish.
    The model's own train/eval mode is left as it is (nothing is run). Returns the
    ``onnx.ModelProto`` (checked with ``onnx.checker.check_model(full_check=True)``).
    """
    onnx = require("onnx", "export_onnx")
    importlib.import_module("onnx.numpy_helper")
    if not isinstance(model, Module):
        raise TypeError(f"export_onnx: model must be a fastnn Module, got {type(model).__name__}")
    max_opset = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not 13 <= opset <= max_opset:
        raise ValueError(f"export_onnx: opset must be an integer from 13 to {max_opset} "
                         f"(the installed onnx {onnx.__version__}), got {opset!r}")
    opset = int(opset)
    if probabilities and (output_mean is not None or output_std is not None):
        raise ValueError("export_onnx: probabilities=True is for classifiers, output_mean/"
                         "output_std for standardized regression targets: not both")
    leaves = list(_leaves(model))
    in_shape = _feature_shape(leaves, input_dim)
    g = _GraphBuilder(onnx, opset)
    g.name("input")
    x, feat = "input", in_shape
    in_mean = _check_stats("input_mean", input_mean, feat, positive=False)
    in_std = _check_stats("input_std", input_std, feat, positive=True)
    if in_mean is not None:
        x = g.node("Sub", [x, g.const("input_mean", in_mean)], "input.centered")
    if in_std is not None:
        x = g.node("Div", [x, g.const("input_std", in_std)], "input.scaled")

    def expect(where: str, m, ok: bool, want: str) -> None:
        if not ok:
            raise ValueError(f"export_onnx: layer {where or '<model>'!r} ({type(m).__name__}) "
                             f"expects {want} per sample, but gets {feat}")

    i = 0
    while i < len(leaves):
        where, m = leaves[i]
        t, base = type(m), where or type(m).__name__.lower()
        if t in (L.Linear, L.Maxout):
            expect(where, m, feat == (m.in_features,), f"({m.in_features},)")
            W = m.weight.data.astype(np.float64)
            b = m.bias.data.astype(np.float64) if m.bias is not None else None
            act = m.activation if t is L.Linear else None
            nxt = leaves[i + 1][1] if i + 1 < len(leaves) else None
            if (fold_batchnorm and t is L.Linear and act is None
                    and type(nxt) is L.BatchNorm1d and nxt.track_running_stats):
                # BN(x W + b) = x (W s) + (b - mean) s + beta, s = gamma / sqrt(var + eps)
                s = 1.0 / np.sqrt(nxt.running_var.astype(np.float64) + nxt.eps)
                if nxt.affine:
                    s = s * nxt.weight.data
                shift = nxt.bias.data if nxt.affine else 0.0
                W = W * s
                b = ((b if b is not None else 0.0) - nxt.running_mean) * s + shift
                act = nxt.activation
                i += 1
            inputs = [x, g.const(_join(where, "weight"), W)]
            if b is not None:
                inputs.append(g.const(_join(where, "bias"), b))
            x = g.node("Gemm", inputs, f"{base}.gemm")
            width = W.shape[1]
            if t is L.Maxout:  # (N, out * pieces) -> (N, out, pieces) -> max over pieces
                shape = g.const(f"{base}.shape", [-1, m.out_features, m.pieces], np.int64)
                x = g.node("Reshape", [x, shape], f"{base}.pieces")
                if opset >= 18:
                    axes = g.const(f"{base}.axes", [2], np.int64)
                    x = g.node("ReduceMax", [x, axes], f"{base}.max", keepdims=0)
                else:
                    x = g.node("ReduceMax", [x], f"{base}.max", axes=[2], keepdims=0)
                width = m.out_features
            feat = (width,)
            if act is not None:
                x = _emit_activation(g, x, act, base)
        elif t is L.BatchNorm1d:
            expect(where, m, len(feat) in (1, 2) and feat[0] == m.num_features,
                   f"({m.num_features},) or ({m.num_features}, L)")
            if not m.track_running_stats:
                raise UnsupportedLayerError(
                    f"export_onnx: layer {base!r} is a BatchNorm1d(track_running_stats=False), "
                    f"which normalizes each batch by its own statistics even in eval mode; "
                    f"ONNX's BatchNormalization needs running statistics")
            x = _emit_batchnorm(g, x, m, where, base)
        elif t is L.PReLU:
            shared = m.num_parameters == 1
            if not shared:
                expect(where, m, feat == (m.num_parameters,), f"({m.num_parameters},)")
            slope = g.const(_join(where, "weight"), m.weight.data)
            x = g.node("PRelu", [x, slope], f"{base}.prelu")
        elif t is L.Flatten:
            dims = (None, *feat)  # None: the batch dimension
            nd = len(dims)
            start, end = m.start_dim % nd, m.end_dim % nd
            if start <= end:
                if start == 0:
                    raise UnsupportedLayerError(
                        f"export_onnx: layer {base!r} is a Flatten(start_dim={m.start_dim}) "
                        f"that merges the batch dimension into the features")
                new = (*feat[:start - 1], math.prod(feat[start - 1:end]), *feat[end:])
                if end == nd - 1 and start == 1:
                    x = g.node("Flatten", [x], f"{base}.flatten", axis=1)
                else:
                    shape = g.const(f"{base}.shape", [0, *new], np.int64)
                    x = g.node("Reshape", [x, shape], f"{base}.reshape")
                feat = new
        elif t in _CONV_LAYERS:
            nxt = leaves[i + 1][1] if i + 1 < len(leaves) else None
            x, feat, folded = _emit_conv_layer(g, x, m, where, base, feat, nxt, fold_batchnorm)
            i += folded
        elif t in (L.Dropout, L.GaussianNoise, L.Identity):
            pass  # the identity in eval mode
        else:
            x = _emit_activation(g, x, m, base)
        i += 1

    out_std = _check_stats("output_std", output_std, feat, positive=False)
    out_mean = _check_stats("output_mean", output_mean, feat, positive=False)
    if out_std is not None:
        x = g.node("Mul", [x, g.const("output_std", out_std)], "output.scaled")
    if out_mean is not None:
        x = g.node("Add", [x, g.const("output_mean", out_mean)], "output.shifted")
    if probabilities:
        x = g.node("Softmax", [x], "probabilities", axis=-1)
    if not g.nodes or g.nodes[-1].output[0] != x:  # a model that computes nothing
        x = g.node("Identity", [x], "output.identity")
    g.nodes[-1].output[0] = "output"  # the last node writes the graph's output
    h = onnx.helper
    graph = h.make_graph(
        g.nodes, "fastnn",
        [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", *in_shape])],
        [h.make_tensor_value_info("output", onnx.TensorProto.FLOAT, ["batch", *feat])],
        initializer=g.initializers,
    )
    opsets = [h.make_opsetid("", opset)]
    proto = h.make_model(graph, opset_imports=opsets, producer_name="fastnn",
                         producer_version=_version())
    proto.ir_version = h.find_min_ir_version_for(opsets)
    onnx.checker.check_model(proto, full_check=True)
    _atomic_write(path, proto.SerializeToString())
    return proto


# ============================================================ a table model on raw columns
#: Strings a boolean column's cell may hold (pyarrow's CSV reader takes these as booleans).
_BOOL_SPELLINGS = {"true": ("true", "True", "TRUE", "1"), "false": ("false", "False", "FALSE",
                                                                   "0")}


def _emit_date_parts(g: _GraphBuilder, seconds: str, base: str) -> str:
    """(N, 6) double: year, month, day, weekday (Monday 0), day of year, elapsed days of
    ``seconds`` (N, 1) since 1970-01-01 UTC, as :func:`fastnn.tabular._date_parts` gives
    them. The civil date is Howard Hinnant's ``civil_from_days`` in exact whole-number
    double arithmetic (Floor of quotients), valid for any day a float64 second count holds."""
    def c(v):
        return g.const(f"{base}.k", [[float(v)]], np.float64)

    def op(name, a, b):
        return g.node(name, [a, b if isinstance(b, str) else c(b)], f"{base}.{name.lower()}")

    def floordiv(a, k):
        return g.node("Floor", [op("Div", a, k)], f"{base}.floor")

    days = g.node("Floor", [op("Div", seconds, 86400)], f"{base}.days")
    z = op("Add", days, 719468)  # days since 0000-03-01
    era = floordiv(z, 146097)  # 400-year eras
    doe = op("Sub", z, op("Mul", era, 146097))  # day of era [0, 146096]
    yoe = floordiv(op("Add", op("Sub", op("Sub", doe, floordiv(doe, 1460)), floordiv(doe, 146096)),
                      floordiv(doe, 36524)), 365)  # year of era [0, 399]
    doy = op("Sub", doe, op("Sub", op("Add", op("Mul", yoe, 365), floordiv(yoe, 4)),
                            floordiv(yoe, 100)))  # day of the year from March 1
    mp = floordiv(op("Add", op("Mul", doy, 5), 2), 153)  # month from March, [0, 11]
    day = op("Add", op("Sub", doy, floordiv(op("Add", op("Mul", mp, 153), 2), 5)), 1)
    jan_feb = g.node("Cast", [op("GreaterOrEqual", mp, 10)], f"{base}.janfeb",
                     to=g.onnx.TensorProto.DOUBLE)
    month = op("Sub", op("Add", mp, 3), op("Mul", jan_feb, 12))
    year = op("Add", op("Add", yoe, op("Mul", era, 400)), jan_feb)
    # day of year: days since January 1 of that year (days_from_civil(year, 1, 1)) + 1
    y1 = op("Sub", year, 1)
    era1 = floordiv(y1, 400)
    yoe1 = op("Sub", y1, op("Mul", era1, 400))
    jan1 = op("Sub", op("Add", op("Mul", era1, 146097), op("Add", op("Sub", op("Add", op(
        "Mul", yoe1, 365), floordiv(yoe1, 4)), floordiv(yoe1, 100)), 306)), 719468)
    dayofyear = op("Add", op("Sub", days, jan1), 1)
    shifted = op("Add", days, 3)  # 1970-01-01 was a Thursday
    weekday = op("Sub", shifted, op("Mul", floordiv(shifted, 7), 7))
    elapsed = op("Div", seconds, 86400)
    return g.node("Concat", [year, month, day, weekday, dayofyear, elapsed], f"{base}.parts",
                  axis=1)


def export_table_onnx(model: Module, table, path, *, input_mean, input_std, opset: int = 17,
                      fold_batchnorm: bool = False, probabilities: bool = False,
                      output_mean=None, output_std=None, log_target: bool = False):
    """Export a :class:`fastnn.nn.TabularMLP` with its table encoding as one ONNX graph whose
    inputs are the raw columns.

    Parameters
    ----------
    model : the TabularMLP (or, for a table without categorical columns, the Sequential MLP)
        that reads the table's encoded matrix (eval mode is not needed: nothing is run).
    table : its :class:`fastnn.tabular.TableEncoder` (roles, medians, vocabularies).
    path : the ``.onnx`` file to write (atomically).
    input_mean, input_std : the run's standardization (D,) of the encoded matrix (the code
        columns have mean 0, std 1).
    opset, fold_batchnorm, probabilities, output_mean, output_std : as for
        :func:`export_onnx` (they apply to the MLP part).
    log_target : end with ``exp(y) - 1`` (a ``--target-transform log`` regression).

    Inputs: one per feature column (the ones not dropped), named after it, shape (N, 1):

    - ``tensor(double)`` for a numeric column and for a categorical column of whole numbers
      (its value is a category and also a continuous feature); NaN is a blank;
    - ``tensor(double)`` for a date column: seconds since 1970-01-01 UTC (NaN a blank), from
      which the graph computes year, month, day, weekday, day of year and elapsed days;
    - ``tensor(string)`` for any other categorical column (text, booleans): the cell's text;
      the empty string ``""`` is a blank, and so are the markers fastnn's CSV reader takes
      for a blank (pyarrow's ``ConvertOptions().null_values``: ``NA``, ``N/A``, ``null``,
      ``NaN``, ...) unless training saw them as values. A boolean column takes
      ``true``/``false`` (also ``True``, ``TRUE``, ``1`` and their ``false`` twins).

    Inside the graph: a blank number becomes the training median (IsNaN, Where), then is
    clipped to the training range (Clip) and, for a
    column that had blanks in training, a 0/1 indicator; each categorical column's text goes
    through an ``ai.onnx.ml`` LabelEncoder (its vocabulary -> codes from 2, anything else ->
    1 "unknown", a blank -> 0 if training had blanks, else 1), then a Gather on its embedding
    table; the continuous block is standardized in double and cast to float (and, for a
    model with a ``numeric_encoding``, piecewise-linear encoded: Gather of each component's
    column, Sub, Div, Max, Min with the module's constants); Concat; the MLP as
    :func:`export_onnx` writes it. Output ``"output"`` (N, M) float32. Returns the checked
    ``onnx.ModelProto``.
    """
    onnx = require("onnx", "export_table_onnx")
    importlib.import_module("onnx.numpy_helper")
    h, TP = onnx.helper, onnx.TensorProto
    n_cont = table.n_continuous
    # a table without categorical columns trains a plain MLP (a Sequential) on its matrix
    plain = not table.cardinalities and not hasattr(model, "mlp")
    mlp = model if plain else getattr(model, "mlp", None)
    embeddings = [] if plain else list(getattr(model, "embeddings", []))
    if mlp is None or len(embeddings) != len(table.cardinalities) \
            or (not plain and getattr(model, "n_continuous", None) != n_cont):
        raise ValueError("export_table_onnx: model must be the TabularMLP of this table "
                         f"encoding ({n_cont} continuous features, {len(table.cardinalities)} "
                         "categorical columns)")
    mean = np.asarray(input_mean, np.float64)
    std = np.asarray(input_std, np.float64)
    if mean.shape != (table.n_features,) or std.shape != (table.n_features,):
        raise ValueError(f"export_table_onnx: input_mean and input_std must have shape "
                         f"({table.n_features},), got {mean.shape} and {std.shape}")
    ple = None if plain else getattr(model, "numeric_encoding", None)
    n_numeric = n_cont if ple is None else ple.out_features
    width = n_numeric + sum(int(e.weight.shape[1]) for e in embeddings)
    with tempfile.TemporaryDirectory() as tmp:  # the MLP's graph, as export_onnx writes it
        body = export_onnx(mlp, os.path.join(tmp, "mlp.onnx"), opset=opset, input_dim=width,
                           fold_batchnorm=fold_batchnorm, probabilities=probabilities,
                           output_mean=output_mean, output_std=output_std)
    importlib.import_module("onnx.compose")
    body = onnx.compose.add_prefix_graph(body.graph, "mlp/")  # the MLP's names, apart
    columns = table.feature_columns
    taken = {n for node in body.node for n in (*node.output, node.name)}
    taken |= {t.name for t in body.initializer} | {"output"}
    clash = [c for c in columns if c in taken]
    if clash:
        raise ValueError(f"export_table_onnx: column {clash[0]!r} has the name of the graph's "
                         "output or of a tensor of its MLP; rename the column")
    g = _GraphBuilder(onnx, int(opset))
    g._used.update([*taken, *columns])  # the inputs keep their names; the rest take others
    inputs, values, indicators, date_parts, codes = [], [], [], [], []

    def label_encoder(x: str, keys: list[str], vals: list[int], default: int, base: str) -> str:
        out = g.name(base)
        g.nodes.append(h.make_node("LabelEncoder", [x], [out], name=g.name(f"LabelEncoder:{base}"),
                                   domain="ai.onnx.ml", keys_strings=keys, values_int64s=vals,
                                   default_int64=default))
        return out

    def fill(x: str, median: float, base: str) -> tuple[str, str]:
        """(x with blanks -> median, IsNaN(x))"""
        blank = g.node("IsNaN", [x], f"{base}.blank")
        med = g.const(f"{base}.median", [[median]], np.float64)
        return g.node("Where", [blank, med, x], f"{base}.filled"), blank

    from pyarrow.csv import ConvertOptions

    from .tabular import BLANK_CODE, FIRST_CODE, UNKNOWN_CODE

    # the cells fastnn's CSV reader (pyarrow's, strings_can_be_null) reads as blank: "" first
    blank_markers = sorted(ConvertOptions().null_values, key=lambda m: (m != "", m))

    for c in table.columns:
        if c.role == "dropped":
            continue
        numeric_in = c.role in ("numeric", "date") or c.also_numeric
        inputs.append(h.make_tensor_value_info(
            c.name, TP.DOUBLE if numeric_in else TP.STRING, ["batch", 1]))
        base = f"{c.name}.enc"
        if numeric_in:
            filled, blank = fill(c.name, c.median, base)
            if c.role == "date":
                date_parts.append(_emit_date_parts(g, filled, base))
            elif c.low is not None:  # clipped to the training range, as the encoder does
                values.append(g.node("Clip", [filled, g.const(f"{base}.low", c.low, np.float64),
                                              g.const(f"{base}.high", c.high, np.float64)],
                                     f"{base}.clipped"))
            else:
                values.append(filled)
            if c.indicator:
                indicators.append(g.node("Cast", [blank], f"{base}.na", to=TP.DOUBLE))
        if c.role != "categorical":
            continue
        vocab = [str(v) for v in c.vocabulary]
        blank_code = BLANK_CODE if c.blank_seen else UNKNOWN_CODE
        if c.also_numeric:  # whole numbers: the value's text, as the encoder writes it
            keys = [float(v) for v in vocab]
            code = g.name(f"{base}.code")
            g.nodes.append(h.make_node(
                "LabelEncoder", [filled], [code], name=g.name(f"LabelEncoder:{base}"),
                domain="ai.onnx.ml",
                keys_tensor=onnx.numpy_helper.from_array(np.array(keys, np.float64)),
                values_tensor=onnx.numpy_helper.from_array(
                    np.arange(FIRST_CODE, FIRST_CODE + len(keys), dtype=np.int64)),
                default_tensor=onnx.numpy_helper.from_array(
                    np.array([UNKNOWN_CODE], np.int64))))
            code = g.node("Where", [blank, g.const(f"{base}.blank_code", [[blank_code]],
                                                   np.int64), code], f"{base}.codes")
        else:
            keys, vals = [], []
            for i, v in enumerate(vocab):
                for spelling in (_BOOL_SPELLINGS.get(v, (v,)) if c.source == "bool" else (v,)):
                    keys.append(spelling)
                    vals.append(FIRST_CODE + i)
            for marker in blank_markers:  # a blank, as fastnn's CSV reader takes it
                if marker not in vocab and marker not in keys:
                    keys.append(marker)
                    vals.append(blank_code)
            code = label_encoder(c.name, keys, vals, UNKNOWN_CODE, f"{base}.codes")
        codes.append(code)

    parts = []
    if n_cont:
        blocks = values + indicators + date_parts  # the encoder's order
        cont = g.node("Concat", blocks, "continuous", axis=1) if len(blocks) > 1 else blocks[0]
        cont = g.node("Sub", [cont, g.const("continuous_mean", mean[None, :n_cont],
                                            np.float64)], "continuous.centered")
        cont = g.node("Div", [cont, g.const("continuous_std", std[None, :n_cont], np.float64)],
                      "continuous.scaled")
        cont = g.node("Cast", [cont], "continuous.float", to=TP.FLOAT)
        if ple is not None:  # PiecewiseLinearEncoding, in float32 as the model computes it
            feature, left, bin_width, lower, upper = ple.constants()
            dt = np.float32  # the graph's continuous block is float32 (as the MLP's weights)
            cont = g.node("Gather", [cont, g.const("numeric_encoding.feature", feature,
                                                   np.int64)], "numeric_encoding.columns",
                          axis=1)
            cont = g.node("Sub", [cont, g.const("numeric_encoding.left", left[None], dt)],
                          "numeric_encoding.shifted")
            cont = g.node("Div", [cont, g.const("numeric_encoding.width", bin_width[None], dt)],
                          "numeric_encoding.scaled")
            cont = g.node("Max", [cont, g.const("numeric_encoding.lower", lower[None], dt)],
                          "numeric_encoding.above")
            cont = g.node("Min", [cont, g.const("numeric_encoding.upper", upper[None], dt)],
                          "numeric_encoding.encoded")
        parts.append(cont)
    for j, (code, emb) in enumerate(zip(codes, embeddings, strict=True)):
        rows = g.node("Gather", [g.const(f"embeddings.{j}.weight", emb.weight.data), code],
                      f"embeddings.{j}.rows", axis=0)  # (N, 1, dim)
        parts.append(g.node("Flatten", [rows], f"embeddings.{j}.flat", axis=1))
    g.nodes.append(h.make_node("Concat", parts, [body.input[0].name],
                               name=g.name("Concat:features"), axis=1))
    nodes = g.nodes + list(body.node)
    out_info = onnx.ValueInfoProto()
    out_info.CopyFrom(body.output[0])
    out_info.name = nodes[-1].output[0] = "output"
    if log_target:  # exp(y) - 1: the targets' log(1 + y), undone
        nodes[-1].output[0] = g.name("output.log")
        ex = g.node("Exp", [nodes[-1].output[0]], "output.exp")
        nodes.append(g.nodes[-1])
        nodes.append(h.make_node("Sub", [ex, g.const("one", 1.0)], ["output"],
                                 name=g.name("Sub:output.expm1")))
    graph = h.make_graph(nodes, "fastnn_table", inputs, [out_info],
                         initializer=g.initializers + list(body.initializer))
    opsets = [h.make_opsetid("", int(opset)), h.make_opsetid("ai.onnx.ml", 4)]
    proto = h.make_model(graph, opset_imports=opsets, producer_name="fastnn",
                         producer_version=_version())
    proto.ir_version = h.find_min_ir_version_for(opsets)
    onnx.checker.check_model(proto, full_check=True)
    _atomic_write(path, proto.SerializeToString())
    return proto
