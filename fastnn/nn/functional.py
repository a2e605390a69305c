"""The functional face of the layers and losses, ``torch.nn.functional``'s names and defaults:
``import fastnn.nn.functional as F``.

Each function calls the kernels its layer uses (``F.relu`` is ``nn.ReLU``'s kernel, ``F.linear``
``nn.Linear``'s fused GEMM, ``F.layer_norm`` ``nn.LayerNorm``'s, the losses ``fastnn.losses``),
so there is no second implementation to drift apart.

Differences from PyTorch: ``F.linear(input, weight, bias)`` takes fastnn's weight layout
(in_features, out_features) (y = x @ W + b, as ``nn.Linear.weight``); ``inplace=True`` is
accepted and the result is a new tensor all the same; ``F.dropout`` takes its key from the
global generator (``fnn.manual_seed``).
"""

from __future__ import annotations

import numpy as np

from .._buffers import BufferPool
from .._dtype import as_float_array
from ..graph import Tensor, from_numpy, log_softmax, softmax, softplus
from ..kernels import activations as K_act
from ..losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from ..random import default_generator
from .layers import (
    activation_node,
    as_normalized_shape,
    dropout_node,
    embedding_node,
    layer_norm_node,
    linear_node,
)

_pool = BufferPool()


def _input(x) -> Tensor:
    """``x`` as a floating Tensor (arrays of any real dtype, and integer Tensors, are cast)."""
    if isinstance(x, Tensor):
        return x if x.dtype.kind == "f" else Tensor(x.data)
    return Tensor(as_float_array(x, name="input"))


def _act(x, name: str, alpha: float = 0.0) -> Tensor:
    return activation_node(_input(x), K_act.CODES[name], float(alpha), name, _pool)


# ------------------------------------------------------------------------ activations
def relu(input, inplace: bool = False) -> Tensor:
    """max(x, 0) elementwise (the ReLU kernel)."""
    return _act(input, "relu")


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x if x > 0 else negative_slope * x."""
    return _act(input, "leaky_relu", negative_slope)


def elu(input, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x if x > 0 else alpha (exp(x) - 1)."""
    return _act(input, "elu", alpha)


def gelu(input, approximate: str = "none") -> Tensor:
    """x Phi(x) (``approximate="none"``) or its tanh approximation (``"tanh"``)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _act(input, "gelu" if approximate == "none" else "gelu_tanh")


def silu(input, inplace: bool = False) -> Tensor:
    """x sigmoid(x) (Swish)."""
    return _act(input, "silu")


def sigmoid(input) -> Tensor:
    """1 / (1 + exp(-x))."""
    return _act(input, "sigmoid")


def tanh(input) -> Tensor:
    """tanh(x)."""
    return _act(input, "tanh")


# ------------------------------------------------------------------------------ layers
def linear(input, weight, bias=None) -> Tensor:
    """y = input @ weight + bias with fastnn's weight layout: ``weight`` (in_features,
    out_features), ``bias`` (out_features,) (the layout of ``nn.Linear.weight``; PyTorch's
    ``F.linear`` takes the transpose). ``input`` (N, D), (D,) or (*, D) is cast to the
    weight's dtype."""
    w = weight if isinstance(weight, Tensor) else Tensor(as_float_array(weight, name="weight"))
    if w.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (in_features, out_features), got {w.shape}")
    b = None
    if bias is not None:
        b = bias if isinstance(bias, Tensor) else Tensor(as_float_array(bias, name="bias"))
        if b.shape != (w.shape[1],):
            raise ValueError(f"linear: bias must have shape ({w.shape[1]},) for weight {w.shape}, "
                             f"got {b.shape}")
        b = b.astype(w.dtype)
    x = _input(input)
    if x.ndim == 0 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"linear: input of shape {x.shape} does not fit weight {w.shape} "
                         f"(in_features, out_features): its last dimension must be {w.shape[0]}")
    x = x.astype(w.dtype)
    if x.ndim > 2:
        y = linear_node(x.reshape(-1, w.shape[0]), w, b, None, _pool)
        return y.reshape(*x.shape[:-1], w.shape[1])
    return linear_node(x, w, b, None, _pool)


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Inverted dropout (the Dropout kernel): zero each element with probability ``p`` and
    scale the rest by 1 / (1 - p) when ``training``; the input itself otherwise.

    As ``nn.Dropout``, with one 64-bit key per call drawn from the global generator
    (``fnn.manual_seed``): the mask of element (row, unit) is a function of that key, the
    row's index in the global batch and the unit, so it does not depend on threads or on a
    data-parallel split of the rows (``fastnn.nn.layers.dropout_row_offset``)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    x = _input(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return dropout_node(x, float(p), default_generator(), _pool)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize each sample over its trailing ``normalized_shape`` (mean and biased variance),
    then ``* weight + bias`` (each of that shape, optional): ``nn.LayerNorm``'s kernel."""
    shape = as_normalized_shape(normalized_shape)
    x = _input(input)
    w = None if weight is None else (weight if isinstance(weight, Tensor)
                                     else Tensor(as_float_array(weight, name="weight")))
    b = None if bias is None else (bias if isinstance(bias, Tensor)
                                   else Tensor(as_float_array(bias, name="bias")))
    for name, p in (("weight", w), ("bias", b)):
        if p is not None and p.shape != shape:
            raise ValueError(f"layer_norm: {name} must have shape {shape}, got {p.shape}")
    dt = w.dtype if w is not None else (b.dtype if b is not None else x.dtype)
    return layer_norm_node(x.astype(dt), shape, None if w is None else w.astype(dt),
                           None if b is None else b.astype(dt), float(eps), None, _pool)


def embedding(input, weight, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` (num_embeddings, embedding_dim) at the integer indices ``input``
    (*): (*, embedding_dim); the ``padding_idx`` row gets no gradient. ``nn.Embedding``'s
    kernels."""
    w = weight if isinstance(weight, Tensor) else Tensor(as_float_array(weight, name="weight"))
    if w.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got "
                         f"{w.shape}")
    if padding_idx is not None:
        padding_idx = int(padding_idx) % w.shape[0]
    return embedding_node(input, w, padding_idx, _pool)


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot rows: shape (*, num_classes) for class indices of shape (*);
    ``num_classes=-1`` takes the largest index + 1."""
    idx = np.asarray(tensor.data if isinstance(tensor, Tensor) else tensor)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expects integer class indices, got dtype {idx.dtype}")
    if num_classes == -1:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
        raise ValueError(f"one_hot: class indices must be in [0, {num_classes}), got "
                         f"[{idx.min()}, {idx.max()}]")
    return from_numpy((idx[..., None] == np.arange(num_classes)).astype(np.int64))


#: ``torch.nn.functional`` names fastnn does not have, with what to use instead.
_ABSENT = {
    **dict.fromkeys(["conv3d", "conv_transpose1d", "conv_transpose2d", "max_pool1d",
                     "avg_pool1d", "adaptive_max_pool2d", "unfold", "fold", "interpolate",
                     "grid_sample"],
                    "fastnn has conv1d, conv2d, max_pool2d, avg_pool2d and "
                    "adaptive_avg_pool2d, and no resampling"),
    "batch_norm": "use the fnn.BatchNorm1d or fnn.BatchNorm2d layer (it keeps the running "
                  "statistics)",
    "normalize": "x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)",
    "cosine_similarity": "(a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=1e-8)",
    "relu6": "x.clamp(0, 6)",
    "hardtanh": "x.clamp(min_val, max_val)",
    "scaled_dot_product_attention": "F.softmax(q @ k.transpose(-2, -1) / d ** 0.5, dim=-1) @ v",
    "kl_div": "(target * (target.log() - input)).sum() / N, from fnn tensor operations",
    "pad": "fnn.cat with fnn.zeros (or fnn.full) blocks",
    "multi_margin_loss": "fnn.losses.multiclass_hinge (summed over classes, not divided by C)",
}


def __getattr__(name: str):
    hint = _ABSENT.get(name)
    if hint is None:
        raise AttributeError(f"module 'fastnn.nn.functional' has no attribute {name!r}")
    raise AttributeError(f"fastnn.nn.functional has no {name!r}: {hint}")


__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dropout",
    "elu",
    "embedding",
    "gelu",
    "huber_loss",
    "l1_loss",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "mse_loss",
    "nll_loss",
    "one_hot",
    "relu",
    "sigmoid",
    "silu",
    "smooth_l1_loss",
    "softmax",
    "softplus",
    "tanh",
]


# ------------------------------------------------------------ convolution and pooling
# The kernels of fastnn.nn.conv's layers (Conv2d, MaxPool2d, ...), torch.nn.functional's
# names and arguments; weights in PyTorch's layout (out, in / groups, *kernel).
from . import conv as _conv  # noqa: E402  (appended section: the conv layers' nodes)


def _conv_operands(input, weight, bias, dims: int, name: str):
    w = weight if isinstance(weight, Tensor) else Tensor(as_float_array(weight, name="weight"))
    if w.ndim != dims + 2:
        raise ValueError(f"{name}: weight must be {dims + 2}-D (out_channels, in_channels / "
                         f"groups, *kernel_size), got shape {w.shape}")
    b = None
    if bias is not None:
        b = bias if isinstance(bias, Tensor) else Tensor(as_float_array(bias, name="bias"))
        if b.shape != (w.shape[0],):
            raise ValueError(f"{name}: bias must have shape ({w.shape[0]},), got {b.shape}")
        b = b.astype(w.dtype)
    x = _input(input).astype(w.dtype)
    return x, w, b


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-D convolution (``nn.Conv2d``'s kernels): input (N, C, H, W) or (C, H, W), weight
    (O, C / groups, kh, kw), bias (O,) or None; padding an int, a pair, "valid" or "same"."""
    x, w, b = _conv_operands(input, weight, bias, 2, "conv2d")
    groups = _conv._positive_int(groups, "groups", "conv2d")
    stride = _conv._tuple(stride, 2, "stride", "conv2d")
    dilation = _conv._tuple(dilation, 2, "dilation", "conv2d")
    pads = _conv.conv_padding(padding, w.shape[2:], stride, dilation, "conv2d")
    single = x.ndim == 3
    if single:
        x = x.reshape(1, *x.shape)
    if x.ndim != 4 or x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(f"conv2d: input of shape {x.shape} does not fit weight {w.shape} "
                         f"with groups={groups} (expected (N, {w.shape[1] * groups}, H, W))")
    y = _conv.conv2d_node(x, np.ascontiguousarray(x.data), w, b, stride, pads, dilation, groups,
                          None, _pool)
    return y.reshape(*y.shape[1:]) if single else y


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """1-D convolution on the 2-D kernels: input (N, C, L) or (C, L), weight (O, C / groups, k)."""
    x, w, b = _conv_operands(input, weight, bias, 1, "conv1d")
    groups = _conv._positive_int(groups, "groups", "conv1d")
    (s,) = _conv._tuple(stride, 1, "stride", "conv1d")
    (d,) = _conv._tuple(dilation, 1, "dilation", "conv1d")
    lo, hi = _conv.conv_padding(padding, w.shape[2:], (s,), (d,), "conv1d")
    single = x.ndim == 2
    if single:
        x = x.reshape(1, *x.shape)
    if x.ndim != 3 or x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(f"conv1d: input of shape {x.shape} does not fit weight {w.shape} "
                         f"with groups={groups} (expected (N, {w.shape[1] * groups}, L))")
    n, c, length = x.shape
    out_len = _conv.K_conv.output_size(length, w.shape[2], s, lo, hi, d)
    y = _conv.conv2d_node(x, np.ascontiguousarray(x.data).reshape(n, c, 1, length), w, b,
                          (1, s), (0, 0, lo, hi), (1, d), groups, None, _pool,
                          out_shape=(n, w.shape[0], out_len))
    return y.reshape(*y.shape[1:]) if single else y


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """``nn.MaxPool2d``'s kernel: (out) or (out, flat indices) with ``return_indices``."""
    layer = _conv.MaxPool2d(kernel_size, stride, padding, dilation, return_indices, ceil_mode)
    return _conv.max_pool2d_node(_input(input), layer.kernel_size, layer.stride, layer.padding,
                                 layer.dilation, layer.ceil_mode, _pool, layer.return_indices)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None) -> Tensor:
    """``nn.AvgPool2d``'s kernel."""
    layer = _conv.AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad,
                            divisor_override)
    return _conv.avg_pool2d_node(_input(input), layer.kernel_size, layer.stride, layer.padding,
                                 layer.ceil_mode, layer.count_include_pad,
                                 layer.divisor_override, _pool)


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """``nn.AdaptiveAvgPool2d``'s kernel."""
    return _conv.adaptive_avg_pool2d_node(_input(input), output_size, _pool)


def dropout2d(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Channel dropout (``nn.Dropout2d``), the key from the global generator."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout2d: p must be a probability in [0, 1], got {p!r}")
    x = _input(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return _conv.dropout2d_node(x, float(p), default_generator(), _pool)


__all__ += ["adaptive_avg_pool2d", "avg_pool2d", "conv1d", "conv2d", "dropout2d",
            "max_pool2d"]
