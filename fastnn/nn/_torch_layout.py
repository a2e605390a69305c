"""PyTorch's names and layouts for fastnn's layers: ``model.load_state_dict(sd, layout="torch")``,
``fnn.Sequential.from_torch(module)`` and the torch-named state dict that safetensors files
hold (:func:`torch_state_dict`).

Pure NumPy name and transposition tables over the layer classes; torch itself is imported
only when the caller hands over a torch object. It lives in ``fastnn.nn`` (not in
``fastnn.interop``, which builds on it for safetensors and ONNX) because two methods of
``nn.module`` reach it: this module needs the layer classes, which build on ``nn.module``, so
it sits above both and hands its two entry points to ``nn.module`` when it is imported
(``fastnn.nn`` imports it); ``nn.module`` imports nothing above itself.

PyTorch's names. fastnn's ``Linear(..., activation="relu")`` is one module where PyTorch
has two (``nn.Linear`` and ``nn.ReLU``), so in PyTorch's names every fused activation (the
``activation=`` of a ``Linear`` or ``BatchNorm1d``) takes the next index of its Sequential.
Layouts: ``Linear.weight`` and ``Maxout.weight`` are transposed with respect to PyTorch's
(out, in); everything else is PyTorch's as it is (see ``fastnn.interop``'s docstring).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..graph import Tensor
from . import conv as C
from . import layers as L
from . import module as _module
from .module import Module, Sequential


class UnsupportedLayerError(TypeError):
    """A layer that has no counterpart on the other side (ONNX, PyTorch, the architecture)."""


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _fused_activation(m) -> Module | None:
    """The activation a Linear, BatchNorm1d/2d or Conv1d/2d applies itself
    (``activation=``), or None."""
    if isinstance(m, (L.Linear, L.BatchNorm1d, C.Conv2d, C.Conv1d)):
        return m.activation
    return None


# ======================================================================== PyTorch's names
def _torch_module_paths(model: Module) -> dict[str, str]:
    """fastnn module path -> the path of the same module in the equivalent PyTorch model.

    Inside a Sequential a fused activation (``activation=`` of Linear/BatchNorm1d) is a
    module of its own in PyTorch and takes the next index, which shifts the ones after it.
    """
    paths = {"": ""}

    def walk(mod: Module, fpath: str, tpath: str) -> None:
        is_seq = isinstance(mod, Sequential)
        index = 0
        for name, child in mod.named_children():
            cf = _join(fpath, name)
            ct = _join(tpath, str(index) if is_seq else name)
            paths[cf] = ct
            walk(child, cf, ct)
            index += 2 if _fused_activation(child) is not None else 1

    walk(model, "", "")
    return paths


def _layout_table(model: Module) -> dict[str, tuple[str, np.ndarray, bool]]:
    """torch name -> (fastnn name, the model's array, transposed in PyTorch's layout)."""
    paths = _torch_module_paths(model)
    modules = dict(model.named_modules())
    entries = [(n, p.data) for n, p in model.named_parameters()]
    entries += list(model.named_buffers())
    table = {}
    for fname, arr in entries:
        mpath, _, attr = fname.rpartition(".")
        transposed = attr == "weight" and isinstance(modules[mpath], (L.Linear, L.Maxout))
        table[_join(paths[mpath], attr)] = (fname, arr, transposed)
    return table


def torch_state_dict(model: Module) -> dict[str, np.ndarray]:
    """Copies of the model's parameters and buffers under PyTorch's names and layouts.

    Linear and Maxout weights (out, in); everything else as fastnn holds it
    (``num_batches_tracked`` an int64 scalar). C-contiguous arrays, in registration order.
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a fastnn Module, got {type(model).__name__}")
    # np.array, not np.ascontiguousarray: that makes the 0-d num_batches_tracked (1,)
    return {t: np.array(arr.T if tr else arr, order="C", copy=True)
            for t, (_, arr, tr) in _layout_table(model).items()}


def _is_torch(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "torch"


def _as_array(value, name: str) -> np.ndarray:
    """A state-dict value as an ndarray: ndarrays, fastnn Tensors, torch tensors
    (``.detach().cpu().numpy()``, so torch is never imported here) and nested lists."""
    if isinstance(value, Tensor):
        arr = value.data
    elif _is_torch(value) and hasattr(value, "detach"):
        try:
            arr = value.detach().cpu().numpy()
        except (TypeError, RuntimeError) as exc:  # bfloat16 has no NumPy dtype
            raise TypeError(f"{name!r}: cannot convert a torch tensor of dtype "
                            f"{value.dtype} to NumPy ({exc})") from None
    else:
        arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name!r} has non-numeric dtype {arr.dtype}")
    return arr


def _check_against_model(model: Module, arrays: Mapping, strict: bool, what: str,
                         ) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Match torch-named ``arrays`` to ``model``: every check before anything is assigned.

    Returns (fastnn-named arrays in fastnn's layouts, missing, unexpected); raises
    ValueError naming the tensors that do not fit (with ``strict``, missing and unexpected
    names too).
    """
    table = _layout_table(model)
    keys = list(arrays.keys())
    missing = [t for t in table if t not in arrays]
    unexpected = sorted(k for k in keys if k not in table)
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}")
        names = list(table) if len(table) <= 24 else [*list(table)[:24], "..."]
        raise ValueError(f"{what}: names do not fit the model ({type(model).__name__}): "
                         f"{'; '.join(parts)} (PyTorch's names; the model has {names})")
    converted, wrong = {}, []
    for t, (fname, target, transposed) in table.items():
        if t not in arrays:
            continue
        v = _as_array(arrays[t], t)
        expected = target.shape[::-1] if transposed else target.shape
        if v.shape != expected:
            wrong.append(f"{t!r} has shape {tuple(v.shape)}, the model expects {expected}")
            continue
        if (v.dtype.kind == "f") != (target.dtype.kind == "f"):
            wrong.append(f"{t!r} has dtype {v.dtype}, the model holds {target.dtype}")
            continue
        converted[fname] = v.T if transposed else v
    if wrong:
        raise ValueError(f"{what}: " + "; ".join(wrong) + " (PyTorch's layout)")
    return converted, missing, unexpected


def load_torch_state_dict(model: Module, state_dict: Mapping, strict: bool = True
                          ) -> tuple[list[str], list[str]]:
    """Load a state dict with PyTorch's names and layouts into ``model``, in place.

    ``model.load_state_dict(sd, layout="torch")`` calls this. Values may be torch tensors
    (converted with ``.detach().cpu().numpy()``; torch itself is never imported), NumPy
    arrays or fastnn Tensors. Every name, shape and kind of dtype is checked before any
    value is assigned. Returns (missing_keys, unexpected_keys) in PyTorch's names.
    """
    if not hasattr(state_dict, "keys"):
        raise TypeError(f"load_state_dict expects a mapping of names to arrays, got "
                        f"{type(state_dict).__name__}")
    what = "load_state_dict(layout='torch')"
    converted, missing, unexpected = _check_against_model(model, state_dict, strict, what)
    model.load_state_dict(converted, strict=False)  # checked above: assigns everything
    return missing, unexpected


# ================================================================================ PyTorch
def sequential_from_torch(module, cls: type[Sequential] = Sequential) -> Sequential:
    """A fastnn Sequential equal to a ``torch.nn.Sequential`` (``fnn.Sequential.from_torch``).

    Supported: Linear, BatchNorm1d, ReLU, LeakyReLU, ELU, PReLU, Sigmoid, Tanh, GELU, SiLU,
    Dropout, Flatten, Identity and nested Sequentials, with their arguments; each torch
    module becomes one fastnn module (so the names match), with the weights copied in the
    layers' dtype (float32 or float64). The train/eval mode is kept. Anything else raises
    UnsupportedLayerError naming the layer.
    """
    if not _is_torch(module):
        raise TypeError(f"Sequential.from_torch expects a torch.nn.Sequential, "
                        f"got {type(module).__name__}")
    import torch  # handed a torch object: torch is there

    if type(module) is not torch.nn.Sequential:
        raise TypeError(f"Sequential.from_torch expects a torch.nn.Sequential, "
                        f"got {type(module).__name__}")
    model = _from_torch(module, "", cls, torch.nn)
    load_torch_state_dict(model, _state_by_position(module, "", torch.nn), strict=True)
    model.train(bool(module.training))
    return model


def _state_by_position(m, prefix: str, nn) -> dict:
    """A torch Sequential's state dict named by position ("0.weight"), as fastnn names its
    children, even where the torch model named them (``Sequential(OrderedDict(...))``)."""
    if type(m) is nn.Sequential:
        state = {}
        for i, child in enumerate(m.children()):
            state.update(_state_by_position(child, _join(prefix, str(i)), nn))
        return state
    return {_join(prefix, k): v for k, v in m.state_dict().items()}


def _torch_dtype(tensor, path: str):
    if tensor is None:
        return None
    name = str(tensor.dtype).replace("torch.", "")
    if name not in ("float32", "float64"):
        raise TypeError(f"Sequential.from_torch: layer {path!r} holds {name} tensors; "
                        f"fastnn has float32 and float64 (call .float() or .double() first)")
    return name


def _from_torch(m, path: str, cls, nn) -> Module:
    t = type(m)
    where = path or "<model>"
    if t is nn.Sequential:
        return cls(*(_from_torch(c, _join(path, n), Sequential, nn)
                     for n, c in m.named_children()))
    simple = {nn.ReLU: L.ReLU, nn.Sigmoid: L.Sigmoid, nn.Tanh: L.Tanh, nn.SiLU: L.SiLU,
              nn.Identity: L.Identity}
    try:
        if t in simple:
            return simple[t]()
        if t is nn.Linear:
            return L.Linear(m.in_features, m.out_features, bias=m.bias is not None,
                            dtype=_torch_dtype(m.weight, where))
        if t is nn.BatchNorm1d:
            ref = m.weight if m.weight is not None else m.running_mean
            return L.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum,
                                 affine=m.affine, track_running_stats=m.track_running_stats,
                                 dtype=_torch_dtype(ref, where))
        if t is nn.LeakyReLU:
            return L.LeakyReLU(m.negative_slope)
        if t is nn.ELU:
            return L.ELU(m.alpha)
        if t is nn.GELU:
            return L.GELU(m.approximate)
        if t is nn.PReLU:
            return L.PReLU(m.num_parameters, init=float(m.init),
                           dtype=_torch_dtype(m.weight, where))
        if t is nn.Dropout:
            return L.Dropout(m.p)
        if t is nn.Flatten:
            return L.Flatten(m.start_dim, m.end_dim)
        converted = _conv_from_torch(m, nn, lambda tensor: _torch_dtype(tensor, where))
        if converted is not None:
            return converted
    except ValueError as exc:
        raise ValueError(f"Sequential.from_torch: layer {where!r} ({t.__name__}): {exc}") \
            from None
    raise UnsupportedLayerError(
        f"Sequential.from_torch: layer {where!r} is a torch {t.__name__}, which fastnn does "
        f"not have (supported: Sequential, Linear, BatchNorm1d, ReLU, LeakyReLU, ELU, PReLU, "
        f"Sigmoid, Tanh, GELU, SiLU, Dropout, Flatten, Identity, {', '.join(_CONV_NAMES)})"
    )


#: The convolutional layers (fastnn.nn.conv) that Sequential.from_torch converts.
_CONV_NAMES = ("Conv2d", "Conv1d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm2d",
               "Dropout2d", "Unflatten")


def _conv_from_torch(m, nn, dtype_of) -> Module | None:
    """The fastnn layer for a torch convolutional layer ``m`` (its weights copied later by
    name), or None when ``m`` is none of them. ``dtype_of(tensor)``: the fastnn dtype."""
    t = type(m)
    if t in (nn.Conv2d, nn.Conv1d):
        cls = C.Conv2d if t is nn.Conv2d else C.Conv1d
        return cls(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                   padding=m.padding, dilation=m.dilation, groups=m.groups,
                   bias=m.bias is not None, padding_mode=m.padding_mode,
                   dtype=dtype_of(m.weight))
    if t is nn.BatchNorm2d:
        ref = m.weight if m.weight is not None else m.running_mean
        return C.BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                             track_running_stats=m.track_running_stats, dtype=dtype_of(ref))
    if t is nn.MaxPool2d:
        return C.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices,
                           m.ceil_mode)
    if t is nn.AvgPool2d:
        return C.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                           m.count_include_pad, m.divisor_override)
    if t is nn.AdaptiveAvgPool2d:
        return C.AdaptiveAvgPool2d(m.output_size)
    if t is nn.Dropout2d:
        return C.Dropout2d(m.p)
    if t is nn.Unflatten:
        return C.Unflatten(m.dim, m.unflattened_size)
    return None


# ``nn.module`` calls these for ``load_state_dict(layout="torch")`` and
# ``Sequential.from_torch`` (it cannot import this module, which builds on it).
_module.TORCH_LAYOUT.update(load_state_dict=load_torch_state_dict,
                            from_torch=sequential_from_torch)
