"""The compiled training step: a ``Sequential``'s step (an MLP or a CNN) as a precomputed plan of
kernel calls.

The graph path builds, at every step, a Tensor and a backward closure per layer, asks a pool
for each buffer and walks the graph backwards; for a small model that Python work costs as
much as the arithmetic. Here the same kernels run from a plan made once per batch size:

    forward    stage by stage: y_i = layer_i(y_(i-1)) into buffers owned by the plan
    loss       one kernel: the value and d(loss)/d(output)  (checked before any update)
    backward   stage by stage in reverse: the gradients of the stage's parameters go straight
               into the optimizer's flat gradient buffer
    update     the optimizer's one update over all parameters (or, ``fuse_optimizer=True``,
               each stage's parameters right after their gradients, while they are in cache)

A plain MLP (only ``Linear`` stages, cross-entropy, the update not fused) runs its forward,
loss and backward as one call, ``kernels.chain.dense_chain_step``, which makes the stages'
very kernel calls from one compiled loop: one dispatch instead of seven and no Python
between them (a (2, 2) network's step, whose kernels do almost nothing: 47 -> 34 µs; the
(256, 256) float32 scikit-learn fit 1.4% to 3.5% faster).

Why the update is not fused by default: measured on this project's 2-core machine (each
step in its own process, alternated, medians of 3; ``fuse_optimizer`` True against False),
fusing made the step slower or no faster at every size: 784-128-10 (batch 32) 0%,
100-256-256-5 (200) +3%, 256-64-64-10 BN (256) +3%, 784-512-512-10 BN (128) +0.5%,
784-2048x3-10 BN (512) +1%. The update reads and writes three to four arrays per gradient
(parameters, moments), so keeping the gradient in cache saves little, while one call per
layer costs a launch of the thread pool each.

Each stage makes the very kernel calls of its layer's graph node, with the same arguments,
block splits and scratch shapes, so the two paths give the same bits after any number of
steps (``tests/test_compiled.py`` checks every layer, loss and optimizer). The optimizer's
update is elementwise, so updating a layer at a time gives the bits of one update over all.

Convolutional networks compile too: their stages (``Conv2d``, ``Conv1d``, ``MaxPool2d``,
``AvgPool2d``, ``AdaptiveAvgPool2d``, ``BatchNorm2d`` with its fused activation, ``Dropout2d``,
``Unflatten``) call the same ``*_forward -> (out, cache)`` / ``*_backward`` functions of
:mod:`fastnn.nn.conv` that the layers' graph nodes call, with the layer's own buffer pool:
one way through the kernels rather than a copy of their calls. A CNN's step is dominated by
its convolutions, so there the compiled step saves the graph's Python work (Tensors, closures,
the backward walk) rather than arithmetic.

What compiles: a :class:`fastnn.nn.Sequential` of ``Linear`` (any activation),
``BatchNorm1d`` (2-D input, no synchronized statistics), the activations, ``PReLU``, ``Dropout``,
``Identity``, ``Flatten`` (start_dim 1, end_dim -1), ``Unflatten`` (not of the batch
dimension), ``Conv2d``, ``Conv1d``, ``MaxPool2d`` (without ``return_indices``),
``AvgPool2d``, ``AdaptiveAvgPool2d``, ``BatchNorm2d`` (no synchronized statistics) and
``Dropout2d``, all parameters in one dtype, trainable, and all in the optimizer (one of
fastnn's), whose output is (N, C); any loss (cross-entropy and the mean squared error run as
one kernel; any other loss runs as its graph node on the plan's output). Plans are made per
batch shape (a CNN with adaptive pooling takes several image sizes). A batch the plan cannot
take as it is (another dtype, a non-contiguous array, a Tensor that needs a cast, the model
or a BatchNorm or dropout layer in evaluation mode, a batch of one with BatchNorm, images a
layer does not take) runs on the graph path instead, which validates it and gives the same
result (or raises the same error). :func:`compile_step` raises :class:`NotCompilable`
(saying why) for a model that cannot compile at all; :func:`fastnn.fit` then uses the graph.
"""

from __future__ import annotations

import math
import time
import weakref

import numba
import numpy as np

from . import losses as L
from . import nn
from ._dtype import empty_marker
from ._graph_step import NonFiniteLoss, count_correct, graph_step
from .graph import Tensor
from .kernels import activations as K_act
from .kernels import blas as K_blas
from .kernels import chain as K_chain
from .kernels import conv as K_conv
from .kernels import dense as K_dense
from .kernels import losses as K_loss
from .kernels import pool as K_pool
from .nn import _stages
from .nn import conv as _conv
from .nn import layers as _layers
from .optim.optimizers import Optimizer

#: Plans (buffers for one batch size) a step keeps: a training loop uses two (its batch
#: size and the last, smaller batch). The dense stages' plans own their arrays, so this
#: bounds them; the CNN stages' arrays come from their layers' pools, which bound them
#: (``_buffers.MAX_SHAPES_PER_ROLE``): a plan holds them only from its step's forward to its
#: backward (``b.cache``), so a shape the pool drops stays valid for the step using it.
_MAX_PLANS = 4


class NotCompilable(TypeError):
    """The model, loss or optimizer has no compiled form; the message says which part."""


# ----------------------------------------------------------------------------- stages
class _Buffers:
    """One stage's buffers for one batch size (attributes set by the stage)."""


# The dense stages' work arrays and kernel calls are ``fastnn.nn._stages``'s, which the hand-
# written loop's chain (``fastnn.nn._chain``) calls too: one place for both paths.
class _LinearStage:
    """y = act(x @ W + b): ``dense_forward`` / ``dense_backward``'s kernel calls, with their
    choices (which GEMM, how many blocks, serial or parallel passes) made once per batch
    size rather than at every call, as one jitted call per direction."""

    def __init__(self, layer: nn.Linear, act):
        self.layer, self.params = layer, [p for p in (layer.weight, layer.bias) if p is not None]
        self.code, self.alpha = _stages.fused_activation(layer, act)
        self.in_features, self.out_features = layer.in_features, layer.out_features

    def out_shape(self, in_shape: tuple) -> tuple | None:
        return (self.out_features,) if in_shape == (self.in_features,) else None

    def buffers(self, n: int, dt, need_dx: bool, in_shape: tuple) -> _Buffers:
        b = _stages.linear_buffers(n, dt, self.in_features, self.out_features, self.code,
                                   need_dx)
        has_bias = self.layer.bias is not None
        # The parameters' arrays are the optimizer's flat views, bound here once
        # (``CompiledStep.run`` copies an array a user assigned back into its view first).
        layer = self.layer
        b.W, b.dW = layer.weight.data, layer.weight.grad_buffer
        b.bias = layer.bias.data if has_bias else empty_marker(dt)
        b.db = layer.bias.grad_buffer if has_bias else None
        # One jitted call per direction (``kernels.dense.planned_*``) with the choices made
        # in ``linear_buffers``. Without NumPy's CBLAS to call from the pool
        # (``blas.AVAILABLE``), the layer's own functions run.
        if b.planned:
            b.fwd_args = (self.code, self.alpha, b.y, b.d, b.partial_arg, b.parts,
                          b.product_par, b.pass_par)
            b.bwd_args = (b.dz, b.partial_b, b.dx_arg, b.dW,
                          b.db if has_bias else empty_marker(dt), *b.bwd)
        return b

    def forward(self, x, b):
        W, y, bias = b.W, b.y, b.bias
        b.x = x
        if not b.planned:
            K_dense.dense_forward(x, W, bias, self.code, self.alpha, y, b.d, b.partial)
            return y
        K_dense.planned_forward(x, W, bias, *b.fwd_args)
        return y

    def backward(self, g, b):
        W, dW, db = b.W, b.dW, b.db
        if not b.planned:
            K_dense.dense_backward(g, b.d, b.x, W, b.dz, b.partial_b, b.dx, dW, db)
            return b.dx
        K_dense.planned_backward(g, b.d, b.x, W, *b.bwd_args)
        return b.dx


class _BatchNormStage:
    """Training-mode batch normalization (+ activation): ``BatchNorm1d``'s training forward
    and backward as one planned call each (``kernels.batchnorm.planned_*``)."""

    def __init__(self, layer: nn.BatchNorm1d, act):
        self.layer = layer
        self.params = [layer.weight, layer.bias] if layer.affine else []
        self.code, self.alpha = _stages.fused_activation(layer, act)

    def out_shape(self, in_shape: tuple) -> tuple | None:
        return in_shape if in_shape == (self.layer.num_features,) else None

    def buffers(self, n: int, dt, need_dx: bool, in_shape: tuple) -> _Buffers:
        return _stages.batchnorm_buffers(n, dt, self.layer.num_features, self.code, need_dx)

    def forward(self, x, b):
        b.gamma = _stages.batchnorm_forward_train(self.layer, self.code, self.alpha, x, b, b.y)
        return b.y

    def backward(self, g, b):
        layer = self.layer
        dgamma = layer.weight.grad_buffer if layer.affine else b.dgamma
        dbeta = layer.bias.grad_buffer if layer.affine else b.dbeta
        return _stages.batchnorm_backward(g, b, b.gamma, dgamma, dbeta)


class _ElementwiseStage:
    """A stage that keeps its input's width: y = f(x) and a local gradient (N, W) in the
    forward pass; the backward pass multiplies the incoming gradient by it
    (``activation_backward``), for the activations and dropout alike."""

    params: list = []

    def out_shape(self, in_shape: tuple) -> tuple | None:
        return in_shape

    def buffers(self, n, dt, need_dx, in_shape):
        return _stages.elementwise_buffers((n, *in_shape), dt, need_dx)

    def backward(self, g, b):
        return _stages.elementwise_backward(g, b)


class _ActivationStage(_ElementwiseStage):
    """A standalone activation (``activation_node``'s calls)."""

    def __init__(self, layer):
        self.code, self.alpha = layer.code, layer.alpha

    def forward(self, x, b):
        _stages.activation_forward(self.code, self.alpha, x, b, b.y)
        return b.y


class _DropoutStage(_ElementwiseStage):
    """Inverted dropout in training (``dropout_node``'s calls: the same draws); the local
    gradient is the scaled mask."""

    def __init__(self, layer: nn.Dropout):
        self.layer = layer

    def forward(self, x, b):
        _stages.dropout_forward(self.layer, x, b, b.y)
        return b.y


class _PReLUStage:
    """PReLU with a learned slope, shared or one per unit (``PReLU.forward``'s calls)."""

    def __init__(self, layer: nn.PReLU):
        self.layer, self.params = layer, [layer.weight]

    def out_shape(self, in_shape: tuple) -> tuple | None:
        k = self.layer.num_parameters  # one slope per unit: (N, k) inputs, as the layer
        return in_shape if k == 1 or in_shape == (k,) else None

    def buffers(self, n, dt, need_dx, in_shape):
        return _stages.prelu_buffers((n, *in_shape), self.layer.num_parameters, dt, need_dx)

    def forward(self, x, b):
        b.x = x
        _stages.prelu_forward(self.layer, x, b, b.y)
        return b.y

    def backward(self, g, b):
        self.layer.weight.grad_buffer[...] = _stages.prelu_backward(self.layer, g, b.x, b)
        return b.dx


# ----------------------------------------------------------------------------- CNN stages
# Each calls the ``*_forward`` / ``*_backward`` pair that its layer's graph node calls
# (``fastnn.nn.conv``), with the layer's own buffer pool: one way through the kernels, so
# the bits are the graph's and any change to how the layer calls its kernels reaches both.
# ``b.cache`` is dropped at the start of every step (``CompiledStep.run``), so that the pool
# hands the same arrays out again.
class _ConvStage:
    """Conv2d or Conv1d (+ a fused activation): ``conv2d_forward`` / ``conv2d_backward``."""

    def __init__(self, layer, act):
        self.layer = layer
        self.params = [p for p in (layer.weight, layer.bias) if p is not None]
        self.code, self.alpha = _stages.fused_activation(layer, act)
        self.stride, self.padding, self.dilation = layer.conv2d_arguments()
        self.one_d = isinstance(layer, nn.Conv1d)

    def out_shape(self, in_shape: tuple) -> tuple | None:
        layer = self.layer
        if len(in_shape) != (2 if self.one_d else 3) or in_shape[0] != layer.in_channels:
            return None
        h, w = (1, in_shape[1]) if self.one_d else in_shape[1:]
        kh, kw = (1, *layer.kernel_size) if self.one_d else layer.kernel_size
        (sh, sw), (pt, pb, pl, pr), (dh, dw) = self.stride, self.padding, self.dilation
        oh = K_conv.output_size(h, kh, sh, pt, pb, dh)
        ow = K_conv.output_size(w, kw, sw, pl, pr, dw)
        if oh <= 0 or ow <= 0:  # the graph raises for it
            return None
        return (layer.out_channels, ow) if self.one_d else (layer.out_channels, oh, ow)

    def buffers(self, n, dt, need_dx, in_shape):
        b = _Buffers()
        b.x4 = (n, in_shape[0], 1, in_shape[1]) if self.one_d else (n, *in_shape)
        b.in_shape, b.out_shape = (n, *in_shape), (n, *self.out_shape(in_shape))
        b.need_dx, b.cache = need_dx, None
        return b

    def forward(self, x, b):
        layer = self.layer
        y, b.cache = _conv.conv2d_forward(
            x.reshape(b.x4), layer.weight.data, None if layer.bias is None else layer.bias.data,
            self.stride, self.padding, self.dilation, layer.groups, self.code, self.alpha,
            layer._pool)
        return y.reshape(b.out_shape)

    def backward(self, g, b):
        layer = self.layer
        dx = _conv.conv2d_backward(g, b.cache, layer.weight.grad_buffer, None,
                                   None if layer.bias is None else layer.bias.grad_buffer,
                                   b.need_dx, layer._pool)
        return None if dx is None else dx.reshape(b.in_shape)


class _BatchNorm2dStage:
    """Training-mode BatchNorm2d (+ a fused activation): ``batchnorm2d_forward`` /
    ``batchnorm2d_backward``."""

    def __init__(self, layer: nn.BatchNorm2d, act):
        self.layer = layer
        self.params = [layer.weight, layer.bias] if layer.affine else []
        self.code, self.alpha = _stages.fused_activation(layer, act)

    def out_shape(self, in_shape: tuple) -> tuple | None:
        return in_shape if len(in_shape) == 3 and in_shape[0] == self.layer.num_features \
            else None

    def buffers(self, n, dt, need_dx, in_shape):
        b = _Buffers()
        c, h, w = in_shape
        b.rows, b.in_shape = (n, c, h * w), (n, *in_shape)
        # as the graph: keep xhat when a gradient flows into the input or the parameters
        b.need_dx, b.needs_grad, b.cache = need_dx, need_dx or self.layer.affine, None
        return b

    def forward(self, x, b):
        layer = self.layer
        gamma = layer.weight.data if layer.affine else layer._ones
        beta = layer.bias.data if layer.affine else layer._zeros
        momentum, rm, rv = layer.running_update()
        y, b.cache = _conv.batchnorm2d_forward(
            x.reshape(b.rows), gamma, beta, layer.eps, momentum or 0.0, rm, rv, self.code,
            self.alpha, True, b.needs_grad, layer._pool)
        return y.reshape(b.in_shape)

    def backward(self, g, b):
        layer = self.layer
        dx, dgamma, dbeta = _conv.batchnorm2d_backward(g, b.cache, b.need_dx, layer._pool)
        if layer.affine:
            layer.weight.grad_buffer[...] = dgamma
            layer.bias.grad_buffer[...] = dbeta
        return None if dx is None else dx.reshape(b.in_shape)


class _PoolStage:
    """MaxPool2d, AvgPool2d or AdaptiveAvgPool2d: the (N*C, H, W) planes through the
    layer's ``*_forward`` / ``*_backward`` pair."""

    params: list = []

    def __init__(self, layer):
        self.layer = layer
        if isinstance(layer, nn.MaxPool2d):
            self.fwd, self.bwd = _conv.max_pool2d_forward, _conv.max_pool2d_backward
            self.args = (layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                         layer.ceil_mode)
        elif isinstance(layer, nn.AvgPool2d):
            self.fwd, self.bwd = _conv.avg_pool2d_forward, _conv.avg_pool2d_backward
            self.args = (layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode,
                         layer.count_include_pad, layer.divisor_override)
        else:
            self.fwd = _conv.adaptive_avg_pool2d_forward
            self.bwd = _conv.adaptive_avg_pool2d_backward
            self.args = (layer.output_size,)

    def out_shape(self, in_shape: tuple) -> tuple | None:
        if len(in_shape) != 3 or not all(in_shape):
            return None
        c, h, w = in_shape
        layer = self.layer
        if isinstance(layer, nn.AdaptiveAvgPool2d):
            try:
                return (c, *_conv.adaptive_output_size(layer.output_size, h, w))
            except ValueError:  # the graph raises for it
                return None
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        dh, dw = getattr(layer, "dilation", (1, 1))
        if ph > kh // 2 or pw > kw // 2:
            return None
        oh = K_pool.pool_output_size(h, kh, sh, ph, dh, layer.ceil_mode)
        ow = K_pool.pool_output_size(w, kw, sw, pw, dw, layer.ceil_mode)
        return (c, oh, ow) if oh > 0 and ow > 0 else None

    def buffers(self, n, dt, need_dx, in_shape):
        b = _Buffers()
        c, h, w = in_shape
        b.planes, b.in_shape = (n * c, h, w), (n, *in_shape)
        b.out_shape, b.cache = (n, *self.out_shape(in_shape)), None
        return b

    def forward(self, x, b):
        y, b.cache = self.fwd(x.reshape(b.planes), *self.args, self.layer._pool)
        return y.reshape(b.out_shape)

    def backward(self, g, b):
        return self.bwd(g, b.cache, self.layer._pool).reshape(b.in_shape)


class _Dropout2dStage:
    """Channel dropout in training: ``dropout2d_forward`` / ``dropout2d_backward`` (the same
    draws as the graph node)."""

    params: list = []

    def __init__(self, layer: nn.Dropout2d):
        self.layer = layer

    def out_shape(self, in_shape: tuple) -> tuple | None:
        return in_shape

    def buffers(self, n, dt, need_dx, in_shape):
        b = _Buffers()
        b.cache = None
        return b

    def forward(self, x, b):
        layer = self.layer
        y, b.cache = _conv.dropout2d_forward(x, layer.p, layer.generator, layer._pool)
        return y

    def backward(self, g, b):
        return _conv.dropout2d_backward(g, b.cache, self.layer._pool)


class _ReshapeStage:
    """Flatten or Unflatten: a view of the batch in another shape, and of its gradient."""

    params: list = []

    def __init__(self, layer):
        self.layer = layer

    def out_shape(self, in_shape: tuple) -> tuple | None:
        layer = self.layer
        if isinstance(layer, nn.Flatten):  # start_dim 1, end_dim -1 (see _stage)
            return (math.prod(in_shape),)
        dim = layer.dim if layer.dim >= 0 else layer.dim + len(in_shape) + 1
        sizes = layer.unflattened_size
        if not 1 <= dim <= len(in_shape):  # (dim 0 would split the batch)
            return None
        size = in_shape[dim - 1]
        known = math.prod(v for v in sizes if v != -1)
        if -1 in sizes:
            if size % known:
                return None
            sizes = tuple(size // known if v == -1 else v for v in sizes)
        elif known != size:
            return None
        return (*in_shape[:dim - 1], *sizes, *in_shape[dim:])

    def buffers(self, n, dt, need_dx, in_shape):
        b = _Buffers()
        b.in_shape, b.out_shape = (n, *in_shape), (n, *self.out_shape(in_shape))
        return b

    def forward(self, x, b):
        return x.reshape(b.out_shape)

    def backward(self, g, b):
        return g.reshape(b.in_shape)


def _stage(module, fused):
    """The stage of one entry of ``Sequential.fused_layers()``, or None for a no-op."""
    if isinstance(module, nn.Linear):
        return _LinearStage(module, fused)
    if type(module) is nn.BatchNorm1d:  # not BatchNorm2d, its (N, C, H, W) subclass
        return _BatchNormStage(module, fused)
    if type(module) is nn.BatchNorm2d:
        return _BatchNorm2dStage(module, fused)
    if isinstance(module, (nn.Conv2d, nn.Conv1d)):
        return _ConvStage(module, fused)
    if isinstance(module, nn.MaxPool2d):
        if module.return_indices:
            raise NotCompilable("MaxPool2d(return_indices=True) returns a pair")
        return _PoolStage(module)
    if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return _PoolStage(module)
    if isinstance(module, nn.Dropout2d):
        return None if module.p == 0.0 else _Dropout2dStage(module)
    if isinstance(module, nn.Unflatten):
        return _ReshapeStage(module)
    if isinstance(module, _layers.Activation):
        return None if module.code == K_act.IDENTITY else _ActivationStage(module)
    if isinstance(module, nn.PReLU):
        return _PReLUStage(module)
    if isinstance(module, nn.Dropout):
        return None if module.p == 0.0 else _DropoutStage(module)
    if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
        return _ReshapeStage(module)
    raise NotCompilable(f"{type(module).__name__} has no compiled form")


# ----------------------------------------------------------------------------- losses
class _CrossEntropy:
    """The plain ``cross_entropy(logits, labels)``: one kernel, value and gradient."""

    def accepts(self, out_features, y) -> bool:
        return isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "iu"

    def buffers(self, n, c, dt) -> _Buffers:
        b = _Buffers()
        b.grad = np.empty((n, c), dt)
        b.partial = np.empty(K_loss.n_chunks(n))
        return b

    @staticmethod
    def labels(y: np.ndarray) -> np.ndarray:
        """The class indices as the kernel takes them (int64)."""
        return y if y.dtype == np.int64 else y.astype(np.int64)

    def forward(self, z, y, b):
        """The loss value as the graph's ``loss.item()`` gives it, and d(loss)/dz."""
        labels = self.labels(y)
        bad, total = K_loss.softmax_cross_entropy(z.size)(z, labels, b.grad, b.partial)
        if bad >= 0:  # a bad label (raises as the graph does) or one to ignore
            return _graph_loss(L.cross_entropy, z, labels)
        return float(z.dtype.type(total / z.shape[0])), b.grad


class _MeanSquaredError:
    """The plain ``mse_loss(pred, target)``: one kernel, value and gradient."""

    def accepts(self, out_features, y) -> bool:
        return isinstance(y, np.ndarray) and y.dtype.kind == "f" and y.ndim == 2 \
            and y.shape[1] == out_features

    def buffers(self, n, k, dt) -> _Buffers:
        b = _Buffers()
        b.grad = np.empty((n, k), dt)
        b.partial = np.empty(K_loss.n_chunks(n * k))
        return b

    def forward(self, z, y, b):
        t = y if y.dtype == z.dtype and y.flags.c_contiguous else \
            np.ascontiguousarray(y, dtype=z.dtype)
        scale = 1.0 / z.size
        total = K_loss.mse(z.size)(z.reshape(-1), t.reshape(-1), scale, b.grad.reshape(-1),
                                   empty_marker(z.dtype), b.partial)
        return float(z.dtype.type(total * scale)), b.grad


class _GraphLoss:
    """Any other loss: its graph node on the plan's output."""

    def __init__(self, loss_fn):
        self.loss_fn = loss_fn

    def accepts(self, out_features, y) -> bool:
        return True

    def buffers(self, n, c, dt) -> _Buffers:
        return _Buffers()

    def forward(self, z, y, b):
        return _graph_loss(self.loss_fn, z, y)


def _graph_loss(loss_fn, z, y):
    out = Tensor(z, requires_grad=True)
    loss = loss_fn(out, y)
    if not isinstance(loss, Tensor) or loss.ndim != 0:
        raise NotCompilable("the loss function does not return a scalar Tensor")
    value = loss.item()
    if not math.isfinite(value):
        return value, None
    loss.backward()
    return value, np.ascontiguousarray(out.grad)


def _loss(loss_fn):
    if loss_fn is L.cross_entropy or (type(loss_fn) is L.CrossEntropyLoss and
                                     loss_fn.weight is None and loss_fn.reduction == "mean"
                                     and loss_fn.label_smoothing == 0.0):
        return _CrossEntropy()
    if loss_fn is L.mse_loss or (type(loss_fn) is L.MSELoss and loss_fn.reduction == "mean"):
        return _MeanSquaredError()
    if not callable(loss_fn):
        raise NotCompilable(f"the loss {loss_fn!r} is not callable")
    return _GraphLoss(loss_fn)


# ----------------------------------------------------------------------------- the step
class CompiledStep:
    """A training step of ``model`` with ``loss_fn`` and ``optimizer`` as a plan of kernel
    calls; see the module docstring and :func:`compile_step`.

    ``step(x, y)`` does what ``optimizer.zero_grad(); loss = loss_fn(model(x), y);
    loss.backward(); optimizer.step()`` does, and returns ``loss.item()``; a NaN or Inf loss
    raises :class:`fastnn.train.NonFiniteLoss` before anything is updated (the batch
    normalization running statistics of the forward pass excepted, as on the graph path).
    Afterwards each parameter's ``.grad`` holds this step's gradient, as after the graph
    step.
    """

    def __init__(self, model, loss_fn, optimizer, fuse_optimizer: bool = False,
                 adaptive_threads: bool = True):
        if not isinstance(model, nn.Sequential):
            raise NotCompilable(f"the model is a {type(model).__name__}, not a fastnn "
                                "Sequential")
        if not isinstance(optimizer, Optimizer):
            raise NotCompilable(f"the optimizer is a {type(optimizer).__name__}, not one of "
                                "fastnn.optim's")
        if any(m._hooks is not None for m in model.modules()):
            raise NotCompilable("the model has hooks (register_*_hook): the graph path runs them")
        layers = model.fused_layers()
        stages = [_stage(m, fused) for m, fused in layers]
        self.stages = [s for s in stages if s is not None]
        params = list(model.parameters())
        if not params:
            raise NotCompilable("the model has no parameters")
        if any(not p.requires_grad for p in params):
            raise NotCompilable("some parameters are frozen (requires_grad=False)")
        flats = optimizer.flat_buffers
        if len(flats) != 1 or {id(p) for p in flats[0].params} != {id(p) for p in params} \
                or len(flats[0].params) != len(params):
            raise NotCompilable("the optimizer does not hold exactly the model's parameters, "
                                "in one dtype")
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.flat = flats[0]
        self.dtype = self.flat.dtype
        for m, _ in layers:  # a layer that casts its input to another dtype (graph only)
            dt = getattr(m, "dtype", None)  # (a NumPy dtype compares equal to None)
            if dt is not None and dt != self.dtype:
                raise NotCompilable(f"{type(m).__name__} computes in {m.dtype}, the model's "
                                    f"parameters are {self.dtype}")
        self.loss = _loss(loss_fn)
        # sample shape (the batch's without N) -> each stage's input shape and the output's,
        # or None for a shape the layers do not take (the graph path raises for it)
        self._shapes: dict[tuple, tuple | None] = {}
        self.fuse_optimizer = fuse_optimizer
        self.updates = [optimizer.partial_update(s.params) if fuse_optimizer and s.params
                        else None for s in self.stages]
        # Every parameter has its gradient after the plan's backward: the update of them all
        # needs none of step()'s checks for missing or replaced gradients.
        self.update_all = optimizer.partial_update(list(self.flat.params))
        self._views = list(zip(self.flat.params, self.flat.data_views, self.flat.grad_views,
                               strict=True))
        # A stage's backward runs when it or an earlier stage has parameters; it hands a
        # gradient down when an earlier stage has parameters.
        has_params = [bool(s.params) for s in self.stages]
        self.need_dx = [any(has_params[:i]) for i in range(len(self.stages))]
        self.first_backward = min((i for i, h in enumerate(has_params) if h), default=0)
        self.batchnorms = [s.layer for s in self.stages
                           if isinstance(s, (_BatchNormStage, _BatchNorm2dStage))]
        # the layers that compute otherwise in evaluation mode (the plan is training's)
        self.moded = self.batchnorms + [s.layer for s in self.stages
                                        if isinstance(s, (_DropoutStage, _Dropout2dStage))]
        self._plans: dict[int, tuple] = {}
        self.governor = None
        if adaptive_threads and K_blas.AVAILABLE:
            from ._threads import ThreadGovernor

            # As in fit's steps: one thread while other processes starve the pool.
            self.governor = ThreadGovernor()
            weakref.finalize(self, self.governor.restore)

    # ------------------------------------------------------------------ public face
    def __call__(self, x, y) -> float:
        """One training step on the batch x (N, ...), y (arrays, or the Tensors a DataLoader
        yields); returns the loss value."""
        t0 = time.perf_counter()
        x, y, fits = self._batch(x, y)
        if fits:
            value = self.run(x, y)[0]
        else:
            value = graph_step(self.model, self.loss_fn, self.optimizer, x, y)[0]
        if self.governor is not None:
            self.governor.record(time.perf_counter() - t0)
        return value

    def close(self) -> None:
        """Give back the thread budget if the step lowered it (also done when the step is
        garbage-collected)."""
        if self.governor is not None:
            self.governor.restore()

    def accepts(self, x, y) -> bool:
        """Whether the plan takes this batch as it is (else the graph path runs it)."""
        return self._batch(x, y)[2]

    def _batch(self, x, y) -> tuple:
        """(x, y, whether the plan takes them as they are): the one place that unwraps a
        batch and tests it, for both :meth:`__call__` and :meth:`accepts`.

        A DataLoader's Tensors become their arrays; a Tensor that requires grad stays (the
        graph path computes its gradient, so the plan does not take it)."""
        if isinstance(x, Tensor) and not x.requires_grad:
            x = x.data
        if isinstance(y, Tensor) and not y.requires_grad:
            y = y.data
        if not (isinstance(x, np.ndarray) and x.ndim >= 2 and x.dtype == self.dtype
                and x.flags.c_contiguous and x.shape[0] and self.model.training
                and len(y) == x.shape[0]):
            return x, y, False
        shapes = self.shapes(x.shape[1:])
        if shapes is None or not self.loss.accepts(shapes[-1][0], y):
            return x, y, False
        if self.batchnorms:
            if x.shape[0] < 2:
                return x, y, False
            for layer in self.batchnorms:
                if layer.statistics_comm is not None:
                    return x, y, False
        for layer in self.moded:  # a layer put in evaluation mode on its own
            if not layer.training:
                return x, y, False
        return x, y, True

    def shapes(self, sample_shape: tuple) -> tuple | None:
        """Each stage's input sample shape, then the output's (C,), for batches of samples
        of ``sample_shape``; None when a layer does not take it or the output is not (N, C)."""
        shapes = self._shapes.get(sample_shape, False)
        if shapes is False:
            shapes, shape = [], tuple(sample_shape)
            for s in self.stages:
                shapes.append(shape)
                shape = s.out_shape(shape)
                if shape is None:
                    break
            shapes = tuple(shapes) + (shape,) if shape is not None and len(shape) == 1 \
                else None
            if len(self._shapes) < 64:  # a few shapes in any real run
                self._shapes[tuple(sample_shape)] = shapes
        return shapes

    def run(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """The step on a batch that :meth:`accepts`; returns (loss value, outputs (N, C))."""
        flat = self.flat
        for p, dv, _ in self._views:
            if p.data is not dv:  # a user assigned a new array: copy it in (as step() does)
                flat.sync()
                break
        plan = self._plans.get(x.shape[0])
        if plan is None or plan[3] != x.shape[1:]:
            if plan is None and len(self._plans) >= _MAX_PLANS:  # batch sizes that keep
                del self._plans[next(iter(self._plans))]  # changing: drop the oldest plan
            plan = self._plans[x.shape[0]] = self._plan(x.shape)
        buffers, loss_buffers, chain, _ = plan
        for b in buffers:  # last step's arrays, free for the layers' pools to hand out again
            b.cache = None
        by_stages = chain is None
        if chain is not None:  # forward, loss and backward in one call
            bad, value = K_chain.dense_chain_step(x.reshape(x.shape[0], -1),
                                                  self.loss.labels(y), chain[0], chain[1],
                                                  loss_buffers.grad, loss_buffers.partial,
                                                  chain[2])
            h = buffers[-1].y
            # a label outside the classes: the stages run one by one (the graph's loss raises
            # for it, or ignores it, as on the graph path)
            by_stages = bad >= 0
        fused = self.fuse_optimizer
        if by_stages:
            h = x
            for stage, b in zip(self.stages, buffers, strict=True):
                h = stage.forward(h, b)
            value, g = self.loss.forward(h, y, loss_buffers)
        if not math.isfinite(value):
            raise NonFiniteLoss(value)
        self.optimizer.begin_step()
        if by_stages:
            stages, updates = self.stages, self.updates
            for i in range(len(stages) - 1, self.first_backward - 1, -1):
                g = stages[i].backward(g, buffers[i])
                if fused and updates[i] is not None:
                    updates[i]()
        for p, _, gv in self._views:
            p.grad = gv
            p.mark_grad_zeroed(False)
        if not fused:
            self.update_all()
        return value, h

    def train_step(self, x, y, n: int, loss_fn) -> tuple[float, int | None]:
        """The :class:`fastnn.train.LocalStep` interface: (mean loss, correct or None)."""
        value, out = self.run(x, y)
        return value, count_correct(out, y) if y.dtype.kind in "iu" else None

    def _plan(self, shape: tuple):
        """The buffers for batches of ``shape`` (one that :meth:`shapes` takes): (stage
        buffers, loss buffers, the chain's arguments or None, the sample shape)."""
        n, dt, shapes = shape[0], self.dtype, self.shapes(shape[1:])
        buffers = [s.buffers(n, dt, self.need_dx[i], shapes[i])
                   for i, s in enumerate(self.stages)]
        loss_buffers = self.loss.buffers(n, shapes[-1][0], dt)
        return buffers, loss_buffers, self._chain(buffers, n, shapes[-1][0]), shape[1:]

    def _chain(self, buffers, n: int, out_features: int):
        """``kernels.chain.dense_chain_step``'s layer arguments for these buffers, when the
        plan is a chain of planned ``Linear`` stages (after any Flatten in front, a view)
        under the plain cross-entropy (and the update is not fused into the backward); else
        None."""
        stages = self.stages
        front = next((i for i, s in enumerate(stages) if not isinstance(s, _ReshapeStage)),
                     len(stages))
        if self.fuse_optimizer or not isinstance(self.loss, _CrossEntropy) or front == len(
                stages) or not all(isinstance(s, _LinearStage) and b.planned for s, b in zip(
                    stages[front:], buffers[front:], strict=True)):
            return None
        fwd, bwd = [], []
        for b in buffers[front:]:
            code, alpha, y, d, partial, parts, product_par, pass_par = b.fwd_args
            # One Numba type for every layer's tuple: Python ints, floats and bools as such.
            fwd.append((b.W, b.bias, int(code), float(alpha), y, d, partial, int(parts),
                        bool(product_par), bool(pass_par)))
            dz, partial_b, dx, dW, db, sums_par, dw_parts, dw_par, dx_parts, dx_par = b.bwd_args
            bwd.append((dz, partial_b, dx, dW, db, bool(sums_par), int(dw_parts), bool(dw_par),
                        int(dx_parts), bool(dx_par)))
        loss_parallel = K_loss.softmax_cross_entropy(n * out_features) \
            is K_loss.softmax_cross_entropy.parallel
        # Start Numba's thread pool first (a no-op once started): the chain's code loaded
        # from the on-disk cache calls into the parallel runtime, whose symbols are bound only
        # when the pool starts; its first call in a fresh process crashed otherwise.
        numba.get_num_threads()
        return tuple(fwd), tuple(bwd), loss_parallel

    def __repr__(self) -> str:
        names = ", ".join(type(s).__name__.strip("_").replace("Stage", "")
                          for s in self.stages)
        return (f"CompiledStep([{names}], loss={type(self.loss).__name__.strip('_')}, "
                f"optimizer={type(self.optimizer).__name__}, fused={self.fuse_optimizer})")


def compile_step(model, loss_fn, optimizer, *, fuse_optimizer: bool = False,
                 adaptive_threads: bool = True) -> CompiledStep:
    """The training step of ``model`` as a precomputed plan of kernel calls.

    Parameters
    ----------
    model : a :class:`fastnn.nn.Sequential` of Linear, BatchNorm1d, activations, Dropout,
        Identity, Flatten, Unflatten, Conv2d, Conv1d, the poolings, BatchNorm2d, Dropout2d
        (see the module docstring).
    loss_fn : ``loss_fn(outputs, targets) -> scalar Tensor``; ``fnn.losses.cross_entropy``
        and ``mse_loss`` (and their classes with default options) run as one kernel.
    optimizer : a fastnn optimizer over exactly the model's parameters.
    fuse_optimizer : update each layer's parameters right after its gradient is computed,
        while it is in cache (same bits; measured no faster here, see the module docstring;
        default: one update after the whole backward pass).
    adaptive_threads : time the steps and run on one thread while other processes starve
        the thread pool (as :func:`fastnn.fit` does; the bits do not depend on it);
        ``step.close()`` gives the thread budget back.

    Returns
    -------
    CompiledStep : ``step(x, y) -> float``, x (N, D) rows or (N, C, H, W) images (what the
        model's first layer takes), y (N,) labels or (N, K) targets.
        The same bits as the graph path's step, after any number of steps.

    Raises
    ------
    NotCompilable : the model, loss or optimizer has no compiled form (the message says
        which); the graph path trains it.
    """
    return CompiledStep(model, loss_fn, optimizer, fuse_optimizer=fuse_optimizer,
                        adaptive_threads=adaptive_threads)


__all__ = ["CompiledStep", "NotCompilable", "compile_step"]
