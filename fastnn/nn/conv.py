"""Convolutional layers with PyTorch's names, arguments and defaults, NCHW: Conv2d, Conv1d,
MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm2d and Dropout2d.

As the dense layers (``layers.py``), each forward calls fused kernels
(``fastnn.kernels.conv``, ``.pool``, ``.batchnorm``) and builds ONE graph node whose backward
closure, right beside it, applies the local gradients the forward pass cached; work arrays
come from the layer's :class:`~fastnn._buffers.BufferPool`. A Conv2d or BatchNorm2d followed
by an activation in a :class:`~fastnn.nn.Sequential` runs as one fused kernel call each way
(``activation="relu"`` asks for it directly).
"""

from __future__ import annotations

import math

import numpy as np

from .. import init
from .._buffers import BufferPool
from .._dtype import as_float_array, resolve_dtype
from ..graph import Tensor, is_grad_enabled, node
from ..kernels import activations as K_act
from ..kernels import batchnorm as K_bn
from ..kernels import conv as K_conv
from ..kernels import pool as K_pool
from .layers import (
    Activation,
    BatchNorm1d,
    _as_input,
    _cast_free_input,
    _grad_out,
    dropout_forward_into,
    init_dropout,
    make_activation,
)
from .module import Module, Parameter

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _tuple(value, n: int, name: str, owner: str, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ``n`` ints, each >= ``minimum``) as an n-tuple."""
    items = (value,) * n if isinstance(value, (int, np.integer)) and not isinstance(
        value, bool) else tuple(value) if isinstance(value, (tuple, list)) else None
    if items is None or len(items) != n or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum
            for v in items):
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise ValueError(f"{owner}: {name} must be {kind} or a tuple of {n} of them, "
                         f"got {value!r}")
    return tuple(int(v) for v in items)


def _positive_int(value, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def conv_padding(padding, kernel_size, stride, dilation, owner: str) -> tuple[int, ...]:
    """Per-axis (lo, hi) pads flattened, e.g. (top, bottom, left, right) for 2-D, from an
    int, a tuple, "valid" (none) or "same" (total dil (k - 1), the extra one after, as
    PyTorch pads an even kernel; stride 1 only, as PyTorch)."""
    n = len(kernel_size)
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * n)
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{owner}: padding='same' is not supported for strided "
                                 f"convolutions (stride={stride}), as in PyTorch")
            pads = []
            for k, d in zip(kernel_size, dilation, strict=True):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"{owner}: padding must be 'valid', 'same', an integer or a tuple, "
                         f"got {padding!r}")
    pads = _tuple(padding, n, "padding", owner, minimum=0)
    return tuple(p for p in pads for _ in (0, 1))


# ------------------------------------------------------------------------------ Conv
def conv2d_forward(X: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride,
                   padding, dilation, groups: int, code: int, alpha: float,
                   pool: BufferPool) -> tuple[np.ndarray, tuple]:
    """y = act(conv2d(X, W) + b) by ``kernels.conv``: the one forward of Conv2d and Conv1d
    (their graph node and the compiled step's stage both call it).

    Parameters
    ----------
    X : (N, C, H, W) C-contiguous (a Conv1d input (N, C, L) as (N, C, 1, L)).
    weight : (O, C/G, kh, kw) elements in that order (a Conv1d weight (O, C/G, k)).
    bias : (O,) or None. stride, dilation : (2,). padding : (top, bottom, left, right).
    groups : G. code, alpha : the fused activation (``kernels.activations``).
    pool : where the output and work arrays come from.

    Returns
    -------
    y : (N, O, OH, OW), from ``pool``.
    cache : what :func:`conv2d_backward` needs.
    """
    N, C, H, Wd = X.shape
    O = weight.shape[0]
    dt = weight.dtype
    kh, kw = (1, weight.shape[2]) if weight.ndim == 3 else weight.shape[2:]
    cg = C // groups
    W4 = np.ascontiguousarray(weight).reshape(O, cg, kh, kw)
    OH = K_conv.output_size(H, kh, stride[0], padding[0], padding[1], dilation[0])
    OW = K_conv.output_size(Wd, kw, stride[1], padding[2], padding[3], dilation[1])
    if OH <= 0 or OW <= 0:
        raise ValueError(f"conv: input of spatial size {(H, Wd)} (padded by {padding}) is "
                         f"smaller than the dilated kernel {(kh, kw)} (dilation {dilation})")
    b = bias if bias is not None else np.empty(0, dt)
    P = OH * OW
    y = pool.get("y", (N, O, OH, OW), dt)
    d = pool.get("d" if code != K_act.IDENTITY else "d0",
                 (N if code != K_act.IDENTITY else 0, O, OH, OW), dt)
    direct = K_conv.uses_direct(C, O, groups)  # depthwise: direct loops, no column matrix
    # stride 1: shifted products on the padded images, no column matrix
    shifted = not direct and K_conv.uses_shifted(stride, groups)
    # a large layer: chunks of images whose column matrix stays in cache (0: batch-wide)
    chunk = 0 if direct or shifted else K_conv.chunk_plan(N, C, OH, OW, kh, kw,
                                                          np.dtype(dt).itemsize)
    scratch = cols = per_chunk = None
    if direct:
        K_conv.depthwise_forward_call(X, W4, b, stride, padding, dilation, code, alpha, y, d)
    elif shifted:
        per_chunk = K_conv.shifted_plan(N, C, O, H, Wd, padding, np.dtype(dt).itemsize)
        scratch = K_conv.shifted_scratch_shapes(N, W4.shape, per_chunk)
        K_conv.conv2d_forward_shifted(X, W4, b, padding, dilation, code, alpha, per_chunk,
                                      pool.get("shifted_w", scratch["w_taps"], dt), y, d)
    elif chunk:
        scratch = K_conv.chunk_scratch_shapes(N, W4.shape, OH, OW, groups, chunk)
        K_conv.conv2d_forward_chunked(X, W4, b, stride, padding, dilation, groups, code,
                                      alpha, chunk, pool.get("chunk_cols", scratch["cols"], dt),
                                      pool.get("chunk_z", scratch["z"], dt), y, d)
    else:
        cols = pool.get("cols", (groups, cg * kh * kw, N * P), dt)
        z = pool.get("z", (O, N * P), dt)
        K_conv.conv2d_forward(X, W4, b, stride, padding, dilation, groups, code, alpha, cols,
                              z, y, d)
    return y, (X, W4, stride, padding, dilation, groups, d, direct, shifted, per_chunk, chunk,
               scratch, cols)


def conv2d_backward(dy, cache: tuple, dW: np.ndarray | None, dW_into: np.ndarray | None,
                    db: np.ndarray | None, need_dx: bool, pool: BufferPool):
    """The gradients of :func:`conv2d_forward` from dy = d(loss)/dy (N, O, OH, OW).

    The weight gradient (O, C/G, kh, kw) is written into ``dW``, or added into ``dW_into``
    when ``dW`` is None (a product with beta = 1); the bias gradient (O,) into ``db`` (None:
    no bias). Returns dx (N, C, H, W) from ``pool``, or None when not ``need_dx``.
    """
    X, W4, stride, padding, dilation, groups, d, direct, shifted, per_chunk, chunk, scratch, \
        cols = cache
    N = X.shape[0]
    O, _, kh, kw = W4.shape
    dt = W4.dtype
    OH, OW = d.shape[2:]  # (d is (0, O, OH, OW) without an activation)
    g = np.ascontiguousarray(dy, dtype=dt).reshape(N, O, OH, OW)
    P = OH * OW
    partial = pool.get("partial", (N, O), np.float64)
    dx = pool.get("dx", X.shape, dt) if need_dx else None
    if direct:
        K_conv.depthwise_backward_call(
            g, d, X, W4, stride, padding, dilation, pool.get("dz", g.shape, dt),
            pool.get("partial_w", (N, O, kh * kw), np.float64), partial, dx, dW, db, dW_into)
    elif shifted:
        K_conv.conv2d_backward_shifted(
            g, d, X, W4, padding, dilation, per_chunk,
            pool.get("shifted_w", scratch["w_taps"], dt),
            pool.get("shifted_dW", scratch["dW_tasks"], dt), partial, dx, dW, db, dW_into)
    elif chunk:
        K_conv.conv2d_backward_chunked(
            g, d, X, W4, stride, padding, dilation, groups, chunk,
            pool.get("chunk_cols", scratch["cols"], dt), pool.get("chunk_z", scratch["z"], dt),
            pool.get("chunk_dcols", scratch["dcols"], dt),
            pool.get("chunk_dW", scratch["dW_tasks"], dt), partial, dx, dW, db, dW_into)
    else:
        dcols = pool.get("dcols", cols.shape, dt) if dx is not None else None
        K_conv.conv2d_backward(g, d, cols, W4, stride, padding, dilation,
                               pool.get("dz", (O, N * P), dt), partial, dcols, dx, dW, db,
                               dW_into)
    return dx


def conv2d_node(x: Tensor, X: np.ndarray, weight: Tensor, bias: Tensor | None, stride,
                padding, dilation, groups: int, act: Activation | None, pool: BufferPool,
                out_shape=None) -> Tensor:
    """y = act(conv2d(x, W) + b) as one graph node (:func:`conv2d_forward`,
    :func:`conv2d_backward`).

    ``X`` is x's data as a C-contiguous (N, C, H, W) array (a Conv1d input (N, C, L) is
    (N, C, 1, L)); ``weight`` has (O, C/G, kh, kw) elements in that order (a Conv1d weight is
    (O, C/G, k)); stride, dilation (2,), padding (top, bottom, left, right). ``out_shape``:
    the output's shape (default (N, O, OH, OW)).
    """
    code = act.code if act is not None else K_act.IDENTITY
    alpha = act.alpha if act is not None else 0.0
    y, cache = conv2d_forward(X, weight.data, bias.data if bias is not None else None, stride,
                              padding, dilation, groups, code, alpha, pool)
    parents = (x, weight) if bias is None else (x, weight, bias)
    shape = out_shape if out_shape is not None else y.shape
    out = node(y.reshape(shape), parents, "conv" if act is None else f"conv+{act.name}")
    if out.requires_grad:
        O, dt = y.shape[1], y.dtype

        def backward(g):
            dW, dW_into = _grad_out(weight)  # the product adds into dW_into (beta = 1)
            db = db_into = None
            if bias is not None:
                db, db_into = _grad_out(bias, lambda: pool.get("db", (O,), dt))
            dx = conv2d_backward(g, cache, dW, dW_into, db, x.requires_grad, pool)
            if db_into is not None:
                db_into += db
            if dx is not None:
                x.accumulate_grad(dx.reshape(x.shape), owned=True)
            if not isinstance(weight, Parameter) and weight.requires_grad:
                weight.accumulate_grad(dW, owned=True)
            if bias is not None and not isinstance(bias, Parameter) and bias.requires_grad:
                bias.accumulate_grad(db, owned=True)

        out.set_backward(backward)
    return out


class _ConvNd(Module):
    """What Conv1d and Conv2d share: arguments, checks, parameters, initialization."""

    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", activation=None,
                 dtype=None, device=None):
        super().__init__()
        name, n = type(self).__name__, self._dims
        if device is not None and str(device) != "cpu" and not str(device).startswith("cpu:"):
            raise ValueError(f"{name}: device {device!r}: fastnn computes on the CPU only")
        self.in_channels = _positive_int(in_channels, "in_channels", name)
        self.out_channels = _positive_int(out_channels, "out_channels", name)
        self.groups = _positive_int(groups, "groups", name)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must both be divisible by groups ({groups})")
        self.kernel_size = _tuple(kernel_size, n, "kernel_size", name)
        self.stride = _tuple(stride, n, "stride", name)
        self.dilation = _tuple(dilation, n, "dilation", name)
        self._pads = conv_padding(padding, self.kernel_size, self.stride, self.dilation, name)
        self.padding = padding if isinstance(padding, str) else _tuple(padding, n, "padding",
                                                                        name, minimum=0)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING_MODES}, got "
                             f"{padding_mode!r}")
        if padding_mode != "zeros":
            raise NotImplementedError(f"{name}: padding_mode={padding_mode!r} is not "
                                      f"implemented in fastnn (only 'zeros')")
        self.padding_mode = padding_mode
        self.dtype = resolve_dtype(dtype)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.weight = Parameter(np.empty(shape, self.dtype))
        self.bias = Parameter(np.empty(self.out_channels, self.dtype)) if bias else None
        # Not registered as a child module: it is part of this layer's kernel.
        object.__setattr__(self, "activation", make_activation(activation))
        self._pool = BufferPool()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's: kaiming_uniform_(a=sqrt(5)) for the weight, i.e. U(-1/sqrt(fan_in),
        1/sqrt(fan_in)) with fan_in = in_channels / groups * prod(kernel_size), and the same
        bound for the bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels // self.groups * int(np.prod(self.kernel_size))
            bound = 1.0 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def _describe(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size})")

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self._dims:
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * self._dims:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.activation is not None:
            s += f", activation={self.activation.name!r}"
        return s

    def fusable_with(self, nxt) -> bool:
        """Whether :class:`Sequential` may run this layer and ``nxt`` as one fused kernel."""
        return self.activation is None and isinstance(nxt, Activation)

    def conv2d_arguments(self) -> tuple[tuple[int, int], tuple[int, ...], tuple[int, int]]:
        """(stride, padding (top, bottom, left, right), dilation) as :func:`conv2d_forward`
        takes them (a Conv1d as a convolution of height 1)."""
        if self._dims == 1:
            (s,), (d,), (lo, hi) = self.stride, self.dilation, self._pads
            return (1, s), (0, 0, lo, hi), (1, d)
        return self.stride, self._pads, self.dilation


class Conv2d(_ConvNd):
    """2-D convolution (PyTorch's cross-correlation), NCHW, with a fused activation:
    y = act(conv2d(x, weight) + bias).

    Parameters
    ----------
    in_channels, out_channels : C and O. kernel_size, stride, dilation : int or (h, w).
    padding : int, (h, w), "valid" (none) or "same" (output size = input size, stride 1;
        an even kernel gets the extra row/column at the bottom/right, as in PyTorch).
    groups : G; in_channels and out_channels divisible by it (G = C: depthwise).
    bias : learn a bias (O,). padding_mode : only "zeros" (the others raise
        NotImplementedError). activation : None, a name or an activation module, fused.
    dtype : parameter dtype.

    Attributes: ``weight`` (O, C/G, kh, kw) (PyTorch's layout), ``bias`` (O,) or None.
    Input (N, C, H, W) or (C, H, W) for one image; output (N, O, OH, OW),
    OH = (H + 2 ph - dh (kh - 1) - 1) // sh + 1. Initialization: PyTorch's.
    """

    _dims = 2

    def forward(self, x, _fused: Activation | None = None):
        x = _as_input(self, x, min_ndim=3, max_ndim=4)
        if x.ndim == 3:  # one image, as PyTorch
            y = self.forward(x.reshape(1, *x.shape), _fused)
            return y.reshape(*y.shape[1:])
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self._describe()}: expected input of shape (N, "
                             f"{self.in_channels}, H, W), got {x.shape}")
        X = np.ascontiguousarray(x.data)
        stride, padding, dilation = self.conv2d_arguments()
        return conv2d_node(x, X, self.weight, self.bias, stride, padding, dilation,
                           self.groups, _fused or self.activation, self._pool)


class Conv1d(_ConvNd):
    """1-D convolution, (N, C, L) -> (N, O, OL), on Conv2d's kernels (as H = 1).

    Arguments as :class:`Conv2d` with ints for kernel_size, stride, padding, dilation;
    ``weight`` (O, C/G, k). Input (N, C, L) or (C, L).
    """

    _dims = 1

    def forward(self, x, _fused: Activation | None = None):
        x = _as_input(self, x, min_ndim=2, max_ndim=3)
        if x.ndim == 2:  # one sequence, as PyTorch
            y = self.forward(x.reshape(1, *x.shape), _fused)
            return y.reshape(*y.shape[1:])
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self._describe()}: expected input of shape (N, "
                             f"{self.in_channels}, L), got {x.shape}")
        n, c, length = x.shape
        X = np.ascontiguousarray(x.data).reshape(n, c, 1, length)
        (k,), (s,), (d,), (lo, hi) = self.kernel_size, self.stride, self.dilation, self._pads
        out_len = K_conv.output_size(length, k, s, lo, hi, d)
        stride, padding, dilation = self.conv2d_arguments()
        return conv2d_node(x, X, self.weight, self.bias, stride, padding, dilation,
                           self.groups, _fused or self.activation, self._pool,
                           out_shape=(n, self.out_channels, out_len))


# ------------------------------------------------------------------------------ pooling
def _planes(layer_name: str, x: Tensor) -> tuple[Tensor, np.ndarray, bool]:
    """(x as a 4-D Tensor, its data as C-contiguous (N*C, H, W) planes, was it 3-D)."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{layer_name}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, "
                         f"got shape {x.shape}")
    if x.numel() == 0:
        raise ValueError(f"{layer_name}: got an empty input of shape {x.shape}")
    single = x.ndim == 3
    h, w = x.shape[-2:]
    return x, np.ascontiguousarray(x.data).reshape(-1, h, w), single


def max_pool2d_forward(X: np.ndarray, kernel_size, stride, padding, dilation,
                       ceil_mode: bool, pool: BufferPool,
                       keep_argmax: bool = False) -> tuple[np.ndarray, tuple]:
    """MaxPool2d of the C-contiguous planes X (P, H, W) by ``kernels.pool``: the one forward
    of the layer's graph node and the compiled step's stage. Returns (y (P, OH, OW) from
    ``pool``, cache for :func:`max_pool2d_backward`: X and the argmax (P, OH, OW) int64 among
    it; a 2x2 stride-2 pool keeps a (0, OH, OW) argmax unless ``keep_argmax``, its backward
    finding the winners again from X by the forward's comparisons)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"MaxPool2d: padding {padding} must be at most half of kernel_size "
                         f"{kernel_size}")
    h, w = X.shape[1:]
    oh = K_pool.pool_output_size(h, kh, sh, ph, dh, ceil_mode)
    ow = K_pool.pool_output_size(w, kw, sw, pw, dw, ceil_mode)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"MaxPool2d: input of spatial size {(h, w)} is too small for "
                         f"kernel_size {kernel_size} (dilation {dilation}, padding {padding})")
    dt = X.dtype
    y = pool.get("y", (X.shape[0], oh, ow), dt)
    # MaxPool2d(2) keeps no argmax: its backward finds the winners again from X
    recompute = not keep_argmax and K_pool.is_2x2(kernel_size, stride, padding, dilation,
                                                  ceil_mode, (h, w))
    arg = pool.get("arg", (0 if recompute else X.shape[0], oh, ow), np.int64)
    K_pool.max_pool2d_forward(y.size * kh * kw)(X, kh, kw, sh, sw, ph, pw, dh, dw, y, arg)
    return y, (X, y.shape, arg, recompute)


def max_pool2d_backward(dy, cache: tuple, pool: BufferPool) -> np.ndarray:
    """dx (P, H, W) from ``pool``: dy (P, OH, OW) (any layout) routed to each window's max."""
    X, y_shape, arg, recompute = cache
    dx = pool.get("dx", X.shape, X.dtype)
    g = np.ascontiguousarray(dy, dtype=X.dtype).reshape(y_shape)
    if recompute:
        K_pool.max_pool2d_2x2_backward(dx.size)(g, X, dx)
    else:
        K_pool.max_pool2d_backward(dx.size)(g, arg, dx)
    return dx


def max_pool2d_node(x: Tensor, kernel_size, stride, padding, dilation, ceil_mode: bool,
                    pool: BufferPool, return_indices: bool = False):
    """MaxPool2d of x (N, C, H, W) or (C, H, W) as one graph node (:func:`max_pool2d_forward`,
    :func:`max_pool2d_backward`)."""
    x, X, _ = _planes("MaxPool2d", x)
    y, cache = max_pool2d_forward(X, kernel_size, stride, padding, dilation, ceil_mode, pool,
                                  keep_argmax=return_indices)
    shape = (*x.shape[:-2], *y.shape[1:])
    out = node(y.reshape(shape), (x,), "max_pool2d")
    if out.requires_grad:

        def backward(g):
            x.accumulate_grad(max_pool2d_backward(g, cache, pool).reshape(x.shape), owned=True)

        out.set_backward(backward)
    if return_indices:
        return out, Tensor(cache[2].reshape(shape).copy())
    return out


def avg_pool2d_forward(X: np.ndarray, kernel_size, stride, padding, ceil_mode: bool,
                       count_include_pad: bool, divisor_override,
                       pool: BufferPool) -> tuple[np.ndarray, tuple]:
    """AvgPool2d of the C-contiguous planes X (P, H, W) by ``kernels.pool``: the one forward
    of the layer's graph node and the compiled step's stage. Returns (y (P, OH, OW) from
    ``pool``, cache for :func:`avg_pool2d_backward`)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"AvgPool2d: padding {padding} must be at most half of kernel_size "
                         f"{kernel_size}")
    divisor = 0
    if divisor_override is not None:
        divisor = _positive_int(divisor_override, "divisor_override", "AvgPool2d")
    h, w = X.shape[1:]
    oh = K_pool.pool_output_size(h, kh, sh, ph, 1, ceil_mode)
    ow = K_pool.pool_output_size(w, kw, sw, pw, 1, ceil_mode)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"AvgPool2d: input of spatial size {(h, w)} is too small for "
                         f"kernel_size {kernel_size} (padding {padding})")
    dt = X.dtype
    y = pool.get("y", (X.shape[0], oh, ow), dt)
    include = bool(count_include_pad)
    K_pool.avg_pool2d_forward(y.size * kh * kw)(X, kh, kw, sh, sw, ph, pw, include, divisor, y)
    return y, (X.shape, dt, y.shape, kh, kw, sh, sw, ph, pw, include, divisor)


def avg_pool2d_backward(dy, cache: tuple, pool: BufferPool) -> np.ndarray:
    """dx (P, H, W) from ``pool``: dy (P, OH, OW) (any layout) spread over each window."""
    x_shape, dt, y_shape, kh, kw, sh, sw, ph, pw, include, divisor = cache
    dx = pool.get("dx", x_shape, dt)
    K_pool.avg_pool2d_backward(dx.size)(
        np.ascontiguousarray(dy, dtype=dt).reshape(y_shape), kh, kw, sh, sw, ph, pw,
        include, divisor, dx)
    return dx


def avg_pool2d_node(x: Tensor, kernel_size, stride, padding, ceil_mode: bool,
                    count_include_pad: bool, divisor_override, pool: BufferPool) -> Tensor:
    """AvgPool2d of x (N, C, H, W) or (C, H, W) as one graph node (:func:`avg_pool2d_forward`,
    :func:`avg_pool2d_backward`)."""
    x, X, _ = _planes("AvgPool2d", x)
    y, cache = avg_pool2d_forward(X, kernel_size, stride, padding, ceil_mode,
                                  count_include_pad, divisor_override, pool)
    out = node(y.reshape(*x.shape[:-2], *y.shape[1:]), (x,), "avg_pool2d")
    if out.requires_grad:

        def backward(g):
            x.accumulate_grad(avg_pool2d_backward(g, cache, pool).reshape(x.shape), owned=True)

        out.set_backward(backward)
    return out


def adaptive_output_size(output_size, h: int, w: int) -> tuple[int, int]:
    """AdaptiveAvgPool2d's (OH, OW) for (h, w) planes: ``output_size`` an int, or a pair whose
    None entries keep the input's size."""
    sizes = (output_size, output_size) if not isinstance(output_size, (tuple, list)) \
        else tuple(output_size)
    if len(sizes) != 2:
        raise ValueError(f"AdaptiveAvgPool2d: output_size must be an int or a pair, got "
                         f"{output_size!r}")
    oh, ow = (h if sizes[0] is None else sizes[0]), (w if sizes[1] is None else sizes[1])
    return (_positive_int(oh, "output_size", "AdaptiveAvgPool2d"),
            _positive_int(ow, "output_size", "AdaptiveAvgPool2d"))


def adaptive_avg_pool2d_forward(X: np.ndarray, output_size,
                                pool: BufferPool) -> tuple[np.ndarray, tuple]:
    """AdaptiveAvgPool2d of the C-contiguous planes X (P, H, W) by ``kernels.pool``: the one
    forward of the layer's graph node and the compiled step's stage. Returns (y (P, OH, OW)
    from ``pool``, cache for :func:`adaptive_avg_pool2d_backward`)."""
    oh, ow = adaptive_output_size(output_size, *X.shape[1:])
    dt = X.dtype
    y = pool.get("y", (X.shape[0], oh, ow), dt)
    K_pool.adaptive_avg_pool2d_forward(X.size)(X, y)
    return y, (X.shape, dt, y.shape)


def adaptive_avg_pool2d_backward(dy, cache: tuple, pool: BufferPool) -> np.ndarray:
    """dx (P, H, W) from ``pool``: dy (P, OH, OW) (any layout) spread over each window."""
    x_shape, dt, y_shape = cache
    dx = pool.get("dx", x_shape, dt)
    K_pool.adaptive_avg_pool2d_backward(dx.size)(
        np.ascontiguousarray(dy, dtype=dt).reshape(y_shape), dx)
    return dx


def adaptive_avg_pool2d_node(x: Tensor, output_size, pool: BufferPool) -> Tensor:
    """AdaptiveAvgPool2d of x (N, C, H, W) or (C, H, W) to ``output_size`` (an int, or a pair
    whose None entries keep the input's size) as one graph node
    (:func:`adaptive_avg_pool2d_forward`, :func:`adaptive_avg_pool2d_backward`)."""
    x, X, _ = _planes("AdaptiveAvgPool2d", x)
    y, cache = adaptive_avg_pool2d_forward(X, output_size, pool)
    out = node(y.reshape(*x.shape[:-2], *y.shape[1:]), (x,), "adaptive_avg_pool2d")
    if out.requires_grad:

        def backward(g):
            x.accumulate_grad(adaptive_avg_pool2d_backward(g, cache, pool).reshape(x.shape),
                              owned=True)

        out.set_backward(backward)
    return out


class MaxPool2d(Module):
    """Max over windows, PyTorch's MaxPool2d: ``kernel_size``, ``stride`` (default: the
    kernel size), ``padding`` (-inf, at most half the kernel), ``dilation``, ``ceil_mode``;
    ``return_indices`` also returns the flat indices h * W + w of the maxima (int64).
    Ties: the first maximum in row-major order wins; NaN propagates. Input (N, C, H, W) or
    (C, H, W), any dtype kept (``dtype`` casts)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False, dtype=None):
        super().__init__()
        self.kernel_size = _tuple(kernel_size, 2, "kernel_size", "MaxPool2d")
        self.stride = self.kernel_size if stride is None else _tuple(stride, 2, "stride",
                                                                     "MaxPool2d")
        self.padding = _tuple(padding, 2, "padding", "MaxPool2d", minimum=0)
        self.dilation = _tuple(dilation, 2, "dilation", "MaxPool2d")
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)
        self.dtype = None if dtype is None else resolve_dtype(dtype)
        self._pool = BufferPool()

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")

    def forward(self, x):
        return max_pool2d_node(_cast_free_input(self, x), self.kernel_size, self.stride,
                               self.padding, self.dilation, self.ceil_mode, self._pool,
                               self.return_indices)


class AvgPool2d(Module):
    """Mean over windows, PyTorch's AvgPool2d: ``kernel_size``, ``stride`` (default: the
    kernel size), ``padding`` (zeros, at most half the kernel), ``ceil_mode``,
    ``count_include_pad`` (divide by the window including padding), ``divisor_override``."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None, dtype=None):
        super().__init__()
        self.kernel_size = _tuple(kernel_size, 2, "kernel_size", "AvgPool2d")
        self.stride = self.kernel_size if stride is None else _tuple(stride, 2, "stride",
                                                                     "AvgPool2d")
        self.padding = _tuple(padding, 2, "padding", "AvgPool2d", minimum=0)
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        if divisor_override is not None:
            _positive_int(divisor_override, "divisor_override", "AvgPool2d")
        self.divisor_override = divisor_override
        self.dtype = None if dtype is None else resolve_dtype(dtype)
        self._pool = BufferPool()

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}")

    def forward(self, x):
        return avg_pool2d_node(_cast_free_input(self, x), self.kernel_size, self.stride,
                               self.padding, self.ceil_mode, self.count_include_pad,
                               self.divisor_override, self._pool)


class AdaptiveAvgPool2d(Module):
    """Mean over adaptive windows, PyTorch's AdaptiveAvgPool2d: ``output_size`` an int or
    (h, w) (None keeps that input size); output row i averages input rows
    [floor(i H / h), ceil((i + 1) H / h)). ``AdaptiveAvgPool2d(1)`` is global average
    pooling."""

    def __init__(self, output_size, dtype=None):
        super().__init__()
        self.output_size = output_size
        self.dtype = None if dtype is None else resolve_dtype(dtype)
        self._pool = BufferPool()

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, x):
        return adaptive_avg_pool2d_node(_cast_free_input(self, x), self.output_size,
                                        self._pool)


# --------------------------------------------------------------------------- BatchNorm2d
def batchnorm2d_forward(X: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float,
                        momentum: float, running_mean: np.ndarray, running_var: np.ndarray,
                        code: int, alpha: float, batch_stats: bool, needs_grad: bool,
                        pool: BufferPool) -> tuple[np.ndarray, tuple]:
    """y = act(gamma * (x - mean) / sqrt(var + eps) + beta) per channel of X (n, c, L) by
    ``kernels.batchnorm``: the one forward of BatchNorm2d's graph node and the compiled step's
    stage.

    ``batch_stats``: normalize with the batch's statistics, and update ``running_mean`` /
    ``running_var`` ((0,) arrays: none to update) with ``momentum``; else with the running
    statistics. ``needs_grad``: keep what :func:`batchnorm2d_backward` needs. Returns
    (y (n, c, L) from ``pool``, cache).
    """
    n, c, L = X.shape
    dt = gamma.dtype
    y = pool.get("y", (n, c, L), dt)
    # batch statistics keep neither xhat nor d: the backward recomputes them from X
    d = pool.get("d", (0 if batch_stats else n, c, L), dt)
    d_backward = d if code != K_act.IDENTITY else d[:0]  # identity: dz = dy
    xhat = inv_std = mean = None
    if batch_stats:
        xhat = y[:0]
        mean = pool.get("mean", (c,), dt)
        inv_std = pool.get("inv_std", (c,), dt)
        K_bn.batchnorm2d_forward_train(
            X, gamma, beta, eps, momentum, running_mean, running_var, code, alpha, y, xhat, d,
            mean, inv_std, pool.get("partial", (n, 2, c), np.float64),
            pool.get("stats", (3, c), np.float64))
    else:
        K_bn.batchnorm2d_forward_eval(X, gamma, beta, eps, running_mean, running_var, code,
                                      alpha, y, d)
        if needs_grad:
            inv_std = (1.0 / np.sqrt(running_var + eps)).astype(dt)
            xhat = (X - running_mean[:, None]) * inv_std[:, None]
    return y, (X, gamma, beta, code, alpha, mean, d_backward, xhat, inv_std, batch_stats)


def batchnorm2d_backward(dy, cache: tuple, need_dx: bool, pool: BufferPool):
    """The gradients of :func:`batchnorm2d_forward` from dy (n, c, L) (any layout): (dx
    (n, c, L) or None when not ``need_dx``, dgamma (c,), dbeta (c,)), each from ``pool``."""
    X, gamma, beta, code, alpha, mean, d_backward, xhat, inv_std, batch_stats = cache
    x_shape = X.shape
    n, c, L = x_shape
    dt = gamma.dtype
    g = np.ascontiguousarray(dy, dtype=dt).reshape(n, c, L)
    dx = pool.get("dx", x_shape, dt) if need_dx else None
    dgamma, dbeta = pool.get("dgamma", (c,), dt), pool.get("dbeta", (c,), dt)
    if batch_stats:
        K_bn.batchnorm2d_backward_recompute(
            g, X, mean, gamma, beta, inv_std, code, alpha,
            dx if dx is not None else pool.get("dz", x_shape, dt), dgamma, dbeta,
            pool.get("partial_b", (n, 2, c), np.float64),
            pool.get("sums_b", (2, c), np.float64), want_dx=dx is not None)
    else:  # fixed statistics: an affine map per channel
        dz = g * d_backward if d_backward.shape[0] else g
        np.sum(dz, axis=(0, 2), out=dbeta)
        np.sum(dz * xhat, axis=(0, 2), out=dgamma)
        if dx is not None:
            np.multiply(dz, (gamma * inv_std)[:, None], out=dx)
    return dx, dgamma, dbeta


class BatchNorm2d(BatchNorm1d):
    """Batch normalization of (N, C, H, W) images per channel over N, H and W, PyTorch's
    BatchNorm2d: the arguments, attributes, running statistics (``momentum=None``: the
    cumulative average) and formulas of :class:`BatchNorm1d`, with N * H * W samples per
    channel. An ``activation`` (or a following activation in a Sequential) is fused into the
    kernels. With ``sync_statistics`` (data-parallel), the pixels go through BatchNorm1d's
    synchronized kernels as rows."""

    def _describe(self) -> str:
        return f"BatchNorm2d({self.num_features})"

    def running_update(self) -> tuple[float, np.ndarray, np.ndarray]:
        """(momentum, running_mean, running_var) for one training forward with the batch's
        statistics, counting the batch in ``num_batches_tracked`` (``momentum=None``: the
        cumulative average); without running statistics, (0, empty, empty)."""
        if not self.track_running_stats:
            return 0.0, np.empty(0, self.dtype), np.empty(0, self.dtype)
        self.num_batches_tracked += 1
        momentum = self.momentum
        if momentum is None:
            momentum = 1.0 / float(self.num_batches_tracked)
        return momentum, self.running_mean, self.running_var

    def forward(self, x, _fused: Activation | None = None):
        x = _as_input(self, x, min_ndim=4, max_ndim=4)
        n, c, h, w = x.shape
        if c != self.num_features:
            raise ValueError(f"{self._describe()}: expected input of shape (N, "
                             f"{self.num_features}, H, W), got {x.shape}")
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats and self._sync is not None:  # pixels as rows: the synced kernels
            rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
            return self._forward_2d(rows, _fused).reshape(n, h, w, c).permute(0, 3, 1, 2)
        if use_batch_stats and n * h * w < 2:
            raise ValueError(f"{self._describe()}: training needs more than 1 value per "
                             f"channel to compute batch statistics, got input of shape "
                             f"{x.shape}")
        act = _fused or self.activation
        code = act.code if act is not None else K_act.IDENTITY
        alpha = act.alpha if act is not None else 0.0
        X = np.ascontiguousarray(x.data).reshape(n, c, h * w)
        gamma = self.weight.data if self.affine else self._ones
        beta = self.bias.data if self.affine else self._zeros
        params = (self.weight, self.bias) if self.affine else ()
        needs_grad = is_grad_enabled() and (x.requires_grad or bool(params))
        if use_batch_stats:
            if self.training:
                momentum, rm, rv = self.running_update()
            else:  # no running statistics: nothing to update
                momentum, rm, rv = 0.0, np.empty(0, self.dtype), np.empty(0, self.dtype)
        else:
            momentum, rm, rv = 0.0, self.running_mean, self.running_var
        y, cache = batchnorm2d_forward(X, gamma, beta, self.eps, momentum or 0.0, rm, rv,
                                       code, alpha, use_batch_stats, needs_grad, self._pool)
        out = node(y.reshape(x.shape), (x, *params),
                   "batchnorm2d" if act is None else f"batchnorm2d+{act.name}")
        if out.requires_grad:
            weight, bias, pool = self.weight, self.bias, self._pool

            def backward(g):
                dx, dgamma, dbeta = batchnorm2d_backward(g, cache, x.requires_grad, pool)
                if weight is not None and weight.requires_grad:
                    weight.accumulate_grad(dgamma, owned=True)
                if bias is not None and bias.requires_grad:
                    bias.accumulate_grad(dbeta, owned=True)
                if dx is not None:
                    x.accumulate_grad(dx.reshape(x.shape), owned=True)

            out.set_backward(backward)
        return out


# ----------------------------------------------------------------------------- Dropout2d
def dropout2d_forward(X: np.ndarray, p: float, generator: np.random.Generator,
                      pool: BufferPool) -> tuple[np.ndarray, np.ndarray]:
    """Channel dropout of the C-contiguous X (N, C, *): each (image, channel) is zeroed with
    probability p and the others scaled by 1 / (1 - p); the mask of channel c of image n is
    dropout's (``dropout_forward_into``) for row n, unit c. The one forward of Dropout2d's
    graph node and the compiled step's stage. Returns (y, the scaled mask (N, C, 1, ...)
    (the cache: the local gradient)), both from ``pool``."""
    n, c = X.shape[:2]
    ones = np.ones(n * c, X.dtype)
    keep = pool.get("keep", ones.shape, X.dtype)
    mask = pool.get("mask", ones.shape, X.dtype)
    dropout_forward_into(ones, p, generator, keep, mask, c)
    mask = mask.reshape(n, c, *(1,) * (X.ndim - 2))
    y = pool.get("y", X.shape, X.dtype)
    np.multiply(X, mask, out=y)
    return y, mask


def dropout2d_backward(dy, mask: np.ndarray, pool: BufferPool) -> np.ndarray:
    """dx = dy * mask (dy (N, C, *), any layout), from ``pool``."""
    dx = pool.get("dx", dy.shape, mask.dtype)
    np.multiply(dy, mask, out=dx)
    return dx


def dropout2d_node(x: Tensor, p: float, generator: np.random.Generator,
                   pool: BufferPool) -> Tensor:
    """Channel dropout of x (N, C, *) as one graph node (:func:`dropout2d_forward`,
    :func:`dropout2d_backward`)."""
    if x.ndim < 2:
        raise ValueError(f"Dropout2d: expected an input of at least 2 dimensions, got shape "
                         f"{x.shape}")
    y, mask = dropout2d_forward(np.ascontiguousarray(x.data), p, generator, pool)
    out = node(y, (x,), "dropout2d")
    if out.requires_grad:

        def backward(g):
            x.accumulate_grad(dropout2d_backward(g, mask, pool), owned=True)

        out.set_backward(backward)
    return out


class Dropout2d(Module):
    """Channel dropout, PyTorch's Dropout2d: in training each channel of each image (input
    (N, C, H, W), or (N, C, L) as PyTorch reads a 3-D input) is zeroed with probability
    ``p``, the others scaled by 1 / (1 - p); the identity in evaluation. Masks from the
    layer's seeded generator, as :class:`Dropout`."""

    def __init__(self, p: float = 0.5, seed: int | None = None, dtype=None):
        super().__init__()
        init_dropout(self, p, seed, dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x):
        x = _cast_free_input(self, x)
        if not self.training or self.p == 0.0:
            return x
        return dropout2d_node(x, self.p, self.generator, self._pool)


# ----------------------------------------------------------------------------- Unflatten
class Unflatten(Module):
    """Dimension ``dim`` split into ``unflattened_size``, PyTorch's nn.Unflatten: rows of
    pixels (N, C*H*W), as fastnn's data loaders hand out images, become (N, C, H, W) with
    ``Unflatten(1, (C, H, W))`` in front of a Conv2d. A view: no copy, the gradient passes
    back reshaped."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        sizes = tuple(unflattened_size)
        if not sizes or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                            or (v <= 0 and v != -1) for v in sizes):
            raise ValueError(f"Unflatten: unflattened_size must be a tuple of positive "
                             f"integers (one may be -1), got {unflattened_size!r}")
        self.dim, self.unflattened_size = int(dim), tuple(int(v) for v in sizes)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

    def forward(self, x):
        x = as_input_tensor(x, "Unflatten input")
        size = x.shape[self.dim] if -x.ndim <= self.dim < x.ndim else None
        known = int(np.prod([v for v in self.unflattened_size if v != -1]))
        if size is None or (size != known if -1 not in self.unflattened_size
                            else size % known):
            raise ValueError(f"Unflatten: cannot split dimension {self.dim} of an input of "
                             f"shape {x.shape} into {self.unflattened_size}")
        return x.unflatten(self.dim, self.unflattened_size)


def as_input_tensor(x, name: str) -> Tensor:
    """``x`` as a floating Tensor (for the functional forms)."""
    if isinstance(x, Tensor):
        return x if x.dtype.kind == "f" else Tensor(x.data)
    return Tensor(as_float_array(x, name=name))
