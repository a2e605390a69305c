"""Layers. Each forward calls fused kernels and builds ONE graph node whose closure, right
beside it, applies the layer's local gradients (cached by the forward pass) in the backward
pass. Work arrays come from a per-layer :class:`~fastnn._buffers.BufferPool`, so repeated
calls with the same batch shape allocate nothing large.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import numpy as np

from .. import init
from .._buffers import BufferPool
from .._dtype import as_float_array, empty_marker, resolve_dtype
from ..graph import Tensor, is_grad_enabled, log_softmax, node, softmax, softplus
from ..kernels import activations as K_act
from ..kernels import batchnorm as K_bn
from ..kernels import dense as K_dense
from ..kernels import dropout as K_drop
from ..kernels import embedding as K_emb
from ..kernels import layernorm as K_ln
from ..kernels import maxout as K_maxout
from ..random import new_generator
from .module import Module, Parameter

#: The most dimensions a layer that treats leading dimensions as rows accepts (NumPy's limit).
_MAX_NDIM = 64


def _as_input(layer: Module, x, min_ndim: int = 1, max_ndim: int = 2) -> Tensor:
    """``x`` as a Tensor of the layer's dtype, with its dimensions checked.

    Arrays and numbers of any real dtype are cast; a Tensor of another dtype is cast through
    a graph op (its gradient is cast back).
    """
    if isinstance(x, Tensor):
        if x.dtype != layer.dtype:
            x = x.astype(layer.dtype)
    else:
        x = Tensor(as_float_array(x, dtype=layer.dtype, name=f"{type(layer).__name__} input"))
    if not min_ndim <= x.ndim <= max_ndim:
        dims = " or ".join(f"{d}-D" for d in range(min_ndim, max_ndim + 1))
        raise ValueError(
            f"{layer._describe()}: expected a {dims} input, got shape {x.shape}"
        )
    if x.numel() == 0:
        raise ValueError(f"{layer._describe()}: got an empty input of shape {x.shape}")
    return x


def _as_2d(x: Tensor) -> np.ndarray:
    """The input's data as a C-contiguous (N, D) array (a 1-D input is one sample)."""
    arr = x.data if x.ndim == 2 else x.data.reshape(1, -1)
    return np.ascontiguousarray(arr)


# ------------------------------------------------------------------------ activations
class Activation(Module):
    """A parameter-free elementwise activation computed by one kernel pass (the base of ReLU,
    Tanh, GELU, ...: ``code`` and ``alpha`` name the kernel's activation).

    ``dtype=None`` keeps the input's dtype; a dtype casts the input to it.
    """

    name = "identity"

    def __init__(self, alpha: float = 0.0, dtype=None):
        super().__init__()
        self.alpha = float(alpha)
        self.dtype = None if dtype is None else resolve_dtype(dtype)
        self._pool = BufferPool()

    @property
    def code(self) -> int:
        return K_act.CODES[self.name]

    def forward(self, x):
        x = _cast_free_input(self, x)
        return activation_node(x, self.code, self.alpha, self.name, self._pool)


def _cast_free_input(layer, x) -> Tensor:
    """The input of a parameter-free layer: cast to ``layer.dtype`` if it has one, else kept
    in its own (floating) dtype."""
    if not isinstance(x, Tensor):
        return Tensor(as_float_array(x, dtype=layer.dtype, name=f"{type(layer).__name__} input"))
    if layer.dtype is not None and x.dtype != layer.dtype:
        return x.astype(layer.dtype)
    if x.dtype.kind != "f":  # an integer or bool Tensor: the default float dtype
        return Tensor(x.data)
    return x


def activation_node(x: Tensor, code: int, alpha: float, name: str, pool: BufferPool) -> Tensor:
    """y = act(x) elementwise, any shape; the local gradient is written in the same pass."""
    if code == K_act.IDENTITY:
        return x
    src = np.ascontiguousarray(x.data).reshape(-1)
    y = pool.get("y", src.shape, src.dtype)
    d = pool.get("d", src.shape, src.dtype)  # always written by the kernel
    K_act.activation_forward(src.size)(code, alpha, src, y, d)
    out = node(y.reshape(x.shape), (x,), name)
    if out.requires_grad:

        def backward(g):  # chain rule through the cached local gradient
            dx = pool.get("dx", src.shape, src.dtype)
            K_act.activation_backward(src.size)(np.ascontiguousarray(g).reshape(-1), d, dx)
            x.accumulate_grad(dx.reshape(x.shape), owned=True)

        out.set_backward(backward)
    return out


class Identity(Activation):
    """y = x."""

    name = "identity"

    def __init__(self, *args, dtype=None, **kwargs):
        super().__init__(dtype=dtype)


class ReLU(Activation):
    """y = max(x, 0)."""

    name = "relu"

    def __init__(self, dtype=None):
        super().__init__(dtype=dtype)


class LeakyReLU(Activation):
    """y = x if x > 0 else negative_slope * x."""

    name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, dtype=None):
        super().__init__(negative_slope, dtype=dtype)

    @property
    def negative_slope(self) -> float:
        return self.alpha

    def extra_repr(self) -> str:
        return f"negative_slope={self.alpha}"


class ELU(Activation):
    """y = x if x > 0 else alpha * (exp(x) - 1)."""

    name = "elu"

    def __init__(self, alpha: float = 1.0, dtype=None):
        super().__init__(alpha, dtype=dtype)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x))."""

    name = "sigmoid"

    def __init__(self, dtype=None):
        super().__init__(dtype=dtype)


class Tanh(Activation):
    """y = tanh(x)."""

    name = "tanh"

    def __init__(self, dtype=None):
        super().__init__(dtype=dtype)


class GELU(Activation):
    """y = x Phi(x) (``approximate="none"``) or its tanh approximation (``"tanh"``)."""

    def __init__(self, approximate: str = "none", dtype=None):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        super().__init__(dtype=dtype)
        self.approximate = approximate

    @property
    def name(self) -> str:
        return "gelu" if self.approximate == "none" else "gelu_tanh"

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Activation):
    """y = x * sigmoid(x) (Swish)."""

    name = "silu"

    def __init__(self, dtype=None):
        super().__init__(dtype=dtype)


Swish = SiLU

_ACTIVATIONS = {
    "identity": Identity, "linear": Identity, "relu": ReLU, "leaky_relu": LeakyReLU,
    "elu": ELU, "sigmoid": Sigmoid, "tanh": Tanh, "gelu": GELU,
    "gelu_tanh": lambda: GELU("tanh"), "silu": SiLU, "swish": SiLU,
}


def make_activation(spec) -> Activation | None:
    """An activation module from a name ("relu", "gelu", ...), a module, or None."""
    if spec is None or isinstance(spec, Activation):
        return spec
    if isinstance(spec, str) and spec.lower() in _ACTIVATIONS:
        return _ACTIVATIONS[spec.lower()]()
    raise ValueError(
        f"activation must be None, an activation module or one of {sorted(_ACTIVATIONS)}, "
        f"got {spec!r}"
    )


class _AlongDim(Module):
    """A normalization of x along ``dim`` (Softmax, LogSoftmax): ``_function(x, dim)``."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, x):
        return self._function(_float_input(x, type(self).__name__), self.dim)


class Softmax(_AlongDim):
    """y = exp(x) / sum(exp(x)) along ``dim`` (``dim=None``: PyTorch's legacy choice, with
    a warning)."""

    _function = staticmethod(softmax)


class LogSoftmax(_AlongDim):
    """y = x - logsumexp(x) along ``dim`` (log-probabilities, for ``NLLLoss``)."""

    _function = staticmethod(log_softmax)


class Softplus(Module):
    """y = log(1 + exp(beta x)) / beta, and x where beta x > threshold (PyTorch's)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        if not beta > 0:
            raise ValueError(f"Softplus: beta must be positive, got {beta!r}")
        self.beta, self.threshold = float(beta), float(threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"

    def forward(self, x):
        return softplus(_float_input(x, "Softplus"), self.beta, self.threshold)


def _float_input(x, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x if x.dtype.kind == "f" else Tensor(x.data)
    return Tensor(as_float_array(x, name=f"{name} input"))


# ------------------------------------------------------------------------------ Linear
class Linear(Module):
    """y = act(x @ W + b): one GEMM and one fused pass forward, one pass and two GEMMs back.

    Parameters
    ----------
    in_features, out_features : sizes D and M.
    bias : learn an additive bias b (M,).
    activation : None, a name ("relu", "gelu", ...) or an activation module, fused into the
        layer's kernel.
    dtype : parameter dtype (default: ``fnn.get_default_dtype()``).

    Attributes
    ----------
    weight : Parameter (in_features, out_features) (the transpose of PyTorch's layout).
    bias : Parameter (out_features,) or None.

    PyTorch's default initialization: W and b ~ U(-1/sqrt(D), 1/sqrt(D)) (kaiming_uniform_
    with a = sqrt(5)). Input (N, D), (D,) for one sample, or (*, D) (every leading index a
    row, as PyTorch); any real dtype is cast.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation=None, dtype=None):
        super().__init__()
        for arg, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"Linear: {arg} must be a positive integer, got {v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = resolve_dtype(dtype)
        self.weight = Parameter(np.empty((self.in_features, self.out_features), self.dtype))
        self.bias = Parameter(np.empty(self.out_features, self.dtype)) if bias else None
        # Not registered as a child module: it is part of this layer's kernel.
        object.__setattr__(self, "activation", make_activation(activation))
        self._pool = BufferPool()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def _describe(self) -> str:
        return f"Linear(in_features={self.in_features}, out_features={self.out_features})"

    def extra_repr(self) -> str:
        act = f", activation={self.activation.name!r}" if self.activation else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}{act}")

    def fusable_with(self, nxt) -> bool:
        """Whether :class:`Sequential` may run this layer and ``nxt`` as one fused kernel."""
        return self.activation is None and isinstance(nxt, Activation)

    def forward(self, x, _fused: Activation | None = None):
        x = _as_input(self, x, max_ndim=_MAX_NDIM)
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self._describe()}: expected input of shape (N, {self.in_features}), "
                f"({self.in_features},) or (*, {self.in_features}), got {x.shape}"
            )
        act = _fused or self.activation
        if x.ndim > 2:  # (*, D): the leading dimensions are rows, as in PyTorch
            y = linear_node(x.reshape(-1, self.in_features), self.weight, self.bias, act,
                            self._pool)
            return y.reshape(*x.shape[:-1], self.out_features)
        return linear_node(x, self.weight, self.bias, act, self._pool)


def linear_node(x: Tensor, weight: Tensor, bias: Tensor | None, act: Activation | None,
                pool: BufferPool) -> Tensor:
    """y = act(x @ W + b) as one graph node: x (N, D) or (D,), W (D, M), b (M,) or None, all
    of one dtype. One GEMM and one fused pass forward, one pass and two GEMMs back.

    ``weight`` and ``bias`` are Parameters (a layer's: their gradients go straight into the
    optimizer's buffer) or any Tensors (``F.linear``).
    """
    code = act.code if act is not None else K_act.IDENTITY
    alpha = act.alpha if act is not None else 0.0
    X = _as_2d(x)
    n, m, dt = X.shape[0], weight.shape[1], weight.dtype
    W = weight.data if weight.data.flags.c_contiguous else np.ascontiguousarray(weight.data)
    b = bias.data if bias is not None else empty_marker(dt)
    y = pool.get("y", (n, m), dt)
    parents = (x, weight) if bias is None else (x, weight, bias)
    # The fused pass always writes the local gradient; the identity has none (dz = dy).
    d = pool.get("d", (n, m), dt) if code != K_act.IDENTITY else empty_marker(dt, m)
    split_k = K_dense.split_k_partial_shape(n, X.shape[1], m)
    partial = pool.get("y_partial", split_k, dt) if split_k is not None else None
    K_dense.dense_forward(X, W, b, code, alpha, y, d, partial)
    out = node(y if x.ndim == 2 else y.reshape(m), parents,
                "linear" if code == K_act.IDENTITY else f"linear+{act.name}")
    if out.requires_grad:

        def backward(g):
            g = np.ascontiguousarray(g).reshape(n, m)
            dz = pool.get("dz", (n, m), dt) if d.shape[0] else d  # identity: dz is g
            partial = pool.get("partial", (K_dense.n_chunks(n), m), np.float64)
            dW, dW_into = _grad_out(weight)  # the GEMM adds into dW_into (beta = 1)
            db = db_into = None
            if bias is not None:
                db, db_into = _grad_out(bias, lambda: pool.get("db", (m,), dt))
            dx = pool.get("dx", X.shape, dt) if x.requires_grad else None
            K_dense.dense_backward(g, d, X, W, dz, partial, dx, dW, db, dW_into)
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


def _grad_out(t: Tensor, scratch=None):
    """Where a kernel writes ``t``'s gradient: a Parameter's own slot (see
    ``Parameter.grad_destination``), or for any other Tensor a new array that the caller then
    accumulates (or, when ``t`` needs no gradient, a scratch array nobody reads)."""
    if isinstance(t, Parameter) and t.requires_grad:
        return t.grad_destination(scratch)
    return np.empty(t.shape, t.dtype), None


# --------------------------------------------------------------------------- BatchNorm1d
class BatchNorm1d(Module):
    """Batch normalization over the batch, PyTorch's BatchNorm1d: inputs (N, C), or (N, C, L)
    with statistics over N and L.

    Training: normalize with the batch mean and biased variance; update
    ``running_mean``/``running_var`` with ``momentum`` (the unbiased variance into
    ``running_var``; ``momentum=None`` gives the cumulative average). Evaluation (or
    ``track_running_stats=False`` off): normalize with the running statistics.
    An ``activation`` (or a following activation in a Sequential) is fused into the kernels.

    Parameters
    ----------
    num_features : C. eps : added to the variance. momentum : float in [0, 1] or None.
    affine : learn ``weight`` (gamma, ones) and ``bias`` (beta, zeros), each (C,).
    track_running_stats : keep running statistics (else batch statistics in eval too).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, activation=None,
                 dtype=None):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features <= 0:
            raise ValueError(f"BatchNorm1d: num_features must be a positive integer, "
                             f"got {num_features!r}")
        if not eps > 0:
            raise ValueError(f"BatchNorm1d: eps must be positive, got {eps!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm1d: momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.dtype = dt = resolve_dtype(dtype)
        c = self.num_features
        self.weight = Parameter(np.ones(c, dt)) if affine else None
        self.bias = Parameter(np.zeros(c, dt)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dt))
            self.register_buffer("running_var", np.ones(c, dt))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        # Not registered as a child module: it is part of this layer's kernel.
        object.__setattr__(self, "activation", make_activation(activation))
        self._ones, self._zeros = np.ones(c, dt), np.zeros(c, dt)
        self._pool = BufferPool()
        object.__setattr__(self, "_sync", None)  # see sync_statistics

    def sync_statistics(self, comm) -> None:
        """Compute training batch statistics over every process of ``comm`` (an object with
        ``allreduce_(array)`` summing in place, as :class:`fastnn.distributed.Communicator`),
        so that data-parallel training equals one process on the whole batch; None turns it
        off (each process its own batch's statistics, PyTorch DDP's default)."""
        object.__setattr__(self, "_sync", comm)

    @property
    def statistics_comm(self):
        """The communicator set by :meth:`sync_statistics`, or None."""
        return self._sync

    def _describe(self) -> str:
        return f"BatchNorm1d({self.num_features})"

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")

    def fusable_with(self, nxt) -> bool:
        return self.activation is None and isinstance(nxt, Activation)

    def forward(self, x, _fused: Activation | None = None):
        x = _as_input(self, x, min_ndim=2, max_ndim=3)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self._describe()}: expected input of shape (N, "
                             f"{self.num_features}) or (N, {self.num_features}, L), "
                             f"got {x.shape}")
        if x.ndim == 3:  # (N, C, L): statistics over N and L, as PyTorch's BatchNorm1d
            n, c, length = x.shape
            y = self._forward_2d(x.permute(0, 2, 1).reshape(n * length, c), _fused)
            return y.reshape(n, length, c).permute(0, 2, 1)
        return self._forward_2d(x, _fused)

    def _forward_2d(self, x: Tensor, _fused: Activation | None) -> Tensor:
        n, c = x.shape
        act = _fused or self.activation
        code = act.code if act is not None else K_act.IDENTITY
        alpha = act.alpha if act is not None else 0.0
        use_batch_stats = self.training or not self.track_running_stats
        sync = self._sync if use_batch_stats else None
        if use_batch_stats and n < 2 and sync is None:
            raise ValueError(
                f"{self._describe()}: training needs more than 1 sample per channel to "
                f"compute batch statistics, got input of shape {x.shape}"
            )
        X = np.ascontiguousarray(x.data)
        dt, pool = self.dtype, self._pool
        gamma = self.weight.data if self.affine else self._ones
        beta = self.bias.data if self.affine else self._zeros
        params = (self.weight, self.bias) if self.affine else ()
        needs_grad = is_grad_enabled() and (x.requires_grad or bool(params))
        y = pool.get("y", (n, c), dt)
        d = pool.get("d", (n, c), dt)  # always written by the kernels
        d_backward = d if code != K_act.IDENTITY else empty_marker(dt, c)  # identity: dz = dy
        if use_batch_stats:
            xhat = pool.get("xhat", (n, c), dt) if needs_grad else empty_marker(dt, c)
            inv_std = pool.get("inv_std", (c,), dt)
            momentum = self.momentum
            if self.training and self.track_running_stats:
                self.num_batches_tracked += 1
                if momentum is None:
                    momentum = 1.0 / float(self.num_batches_tracked)
                rm, rv = self.running_mean, self.running_var
            else:
                rm = rv = empty_marker(dt)
            n_total = K_bn.batchnorm_forward_train(
                X, gamma, beta, self.eps, momentum or 0.0, rm, rv, code, alpha,
                y, xhat, d, pool.get("mean", (c,), dt), inv_std,
                pool.get("partial", (K_bn.n_chunks(n), 2, c), np.float64), sync=sync,
                stats=pool.get("stats", (3, c), np.float64),
            )
            if n_total < 2:
                raise ValueError(
                    f"{self._describe()}: training needs more than 1 sample per channel "
                    f"over all processes, got {n_total}"
                )
        else:
            K_bn.batchnorm_forward_eval(X, gamma, beta, self.eps, self.running_mean,
                                        self.running_var, code, alpha, y, d)
            if needs_grad:
                inv_std = (1.0 / np.sqrt(self.running_var + self.eps)).astype(dt)
                xhat = (X - self.running_mean) * inv_std
        out = node(y, (x, *params), "batchnorm" if act is None else f"batchnorm+{act.name}")
        if out.requires_grad:
            weight, bias = self.weight, self.bias

            def backward(g):
                g = np.ascontiguousarray(g)
                dx = pool.get("dx", X.shape, dt) if x.requires_grad else None
                dgamma, dbeta = pool.get("dgamma", (c,), dt), pool.get("dbeta", (c,), dt)
                if use_batch_stats:
                    K_bn.batchnorm_backward(g, d_backward, xhat, gamma, inv_std, dx, dgamma, dbeta,
                                            pool.get("partial_b", (K_bn.n_chunks(n), 2, c),
                                                     np.float64), sync=sync, n_total=n_total,
                                            sums=pool.get("sums_b", (2, c), np.float64))
                else:  # fixed statistics: an affine map per channel
                    dz = g * d_backward if d_backward.shape[0] else g
                    np.sum(dz, axis=0, out=dbeta)
                    np.sum(dz * xhat, axis=0, out=dgamma)
                    if dx is not None:
                        np.multiply(dz, gamma * inv_std, out=dx)
                if weight is not None and weight.requires_grad:
                    weight.accumulate_grad(dgamma, owned=True)
                if bias is not None and bias.requires_grad:
                    bias.accumulate_grad(dbeta, owned=True)
                if dx is not None:
                    x.accumulate_grad(dx, owned=True)

            out.set_backward(backward)
        return out


# ----------------------------------------------------------------------------- LayerNorm
def as_normalized_shape(shape) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not shape or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0
                        for n in shape):
        raise ValueError(f"LayerNorm: normalized_shape must be a positive integer or a tuple "
                         f"of them, got {shape!r}")
    return tuple(int(n) for n in shape)


class LayerNorm(Module):
    """Layer normalization, PyTorch's LayerNorm: each sample is normalized over its last
    dimensions ``normalized_shape`` (mean and biased variance of those values), then scaled
    and shifted elementwise by ``weight`` (ones) and ``bias`` (zeros). The same in training
    and evaluation. An ``activation`` (or a following activation in a Sequential) is fused
    into the kernels, as for BatchNorm1d.

    Parameters
    ----------
    normalized_shape : int or tuple, the trailing shape (*, *normalized_shape) of the input.
    eps : added to the variance. elementwise_affine : learn ``weight`` and ``bias``.
    bias : learn ``bias`` too (with ``elementwise_affine``).
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, activation=None, dtype=None):
        super().__init__()
        self.normalized_shape = as_normalized_shape(normalized_shape)
        if not eps > 0:
            raise ValueError(f"LayerNorm: eps must be positive, got {eps!r}")
        self.eps, self.elementwise_affine = float(eps), bool(elementwise_affine)
        self.dtype = dt = resolve_dtype(dtype)
        shape = self.normalized_shape
        self.weight = Parameter(np.ones(shape, dt)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape, dt)) if elementwise_affine and bias else None
        # Not registered as a child module: it is part of this layer's kernel.
        object.__setattr__(self, "activation", make_activation(activation))
        self._pool = BufferPool()

    def _describe(self) -> str:
        return f"LayerNorm({self.normalized_shape})"

    def extra_repr(self) -> str:
        act = f", activation={self.activation.name!r}" if self.activation else ""
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}{act}")

    def fusable_with(self, nxt) -> bool:
        return self.activation is None and isinstance(nxt, Activation)

    def forward(self, x, _fused: Activation | None = None):
        x = _as_input(self, x, min_ndim=len(self.normalized_shape), max_ndim=_MAX_NDIM)
        return layer_norm_node(x, self.normalized_shape, self.weight, self.bias, self.eps,
                               _fused or self.activation, self._pool)


def layer_norm_node(x: Tensor, normalized_shape: tuple[int, ...], weight: Tensor | None,
                    bias: Tensor | None, eps: float, act: Activation | None,
                    pool: BufferPool) -> Tensor:
    """LayerNorm (+ activation) of ``x`` (*, *normalized_shape) as one graph node: one kernel
    call forward, one backward (``kernels.layernorm``). ``weight``/``bias`` of shape
    ``normalized_shape`` or None, in x's dtype."""
    tail = len(normalized_shape)
    if x.shape[x.ndim - tail:] != normalized_shape:
        raise ValueError(f"LayerNorm: expected an input of shape (*, "
                         f"{', '.join(map(str, normalized_shape))}), got {x.shape}")
    if x.numel() == 0:
        raise ValueError(f"LayerNorm: got an empty input of shape {x.shape}")
    dt = x.dtype
    m = int(np.prod(normalized_shape))
    X = np.ascontiguousarray(x.data).reshape(-1, m)
    n = X.shape[0]
    code = act.code if act is not None else K_act.IDENTITY
    alpha = act.alpha if act is not None else 0.0
    gamma = weight.data.reshape(m) if weight is not None else _ones(dt, m)
    beta = bias.data.reshape(m) if bias is not None else _zeros(dt, m)
    params = tuple(p for p in (weight, bias) if p is not None)
    needs_grad = is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))
    y = pool.get("y", (n, m), dt)
    d = pool.get("d", (n, m), dt)  # always written by the kernel
    xhat = pool.get("xhat", (n, m), dt) if needs_grad else empty_marker(dt, m)
    inv_std = pool.get("inv_std", (n,), dt)
    K_ln.layernorm_forward(X, np.ascontiguousarray(gamma), np.ascontiguousarray(beta), eps,
                           code, alpha, y, xhat, d, inv_std)
    out = node(y.reshape(x.shape), (x, *params), "layernorm" if act is None
                else f"layernorm+{act.name}")
    if out.requires_grad:
        d_backward = d if code != K_act.IDENTITY else empty_marker(dt, m)  # identity: dz = dy

        def backward(g):
            g = np.ascontiguousarray(g).reshape(n, m)
            dx = pool.get("dx", (n, m), dt) if x.requires_grad else empty_marker(dt, m)
            dgamma, dbeta = pool.get("dgamma", (m,), dt), pool.get("dbeta", (m,), dt)
            K_ln.layernorm_backward(g, d_backward, xhat, gamma, inv_std, dx, dgamma, dbeta,
                                    pool.get("partial", (K_ln.n_chunks(n), 2, m), np.float64),
                                    sums=pool.get("sums", (2, m), np.float64))
            if weight is not None and weight.requires_grad:
                weight.accumulate_grad(dgamma.reshape(weight.shape), owned=True)
            if bias is not None and bias.requires_grad:
                bias.accumulate_grad(dbeta.reshape(bias.shape), owned=True)
            if x.requires_grad:
                x.accumulate_grad(dx.reshape(x.shape), owned=True)

        out.set_backward(backward)
    return out


_CONSTANTS = {}


def _ones(dtype, m: int) -> np.ndarray:
    key = ("ones", np.dtype(dtype), m)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = np.ones(m, dtype)
    return _CONSTANTS[key]


def _zeros(dtype, m: int) -> np.ndarray:
    key = ("zeros", np.dtype(dtype), m)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = np.zeros(m, dtype)
    return _CONSTANTS[key]


# ----------------------------------------------------------------------------- Embedding
class EmbeddingIndexError(ValueError, IndexError):
    """An embedding index outside [0, num_embeddings) (an IndexError, as PyTorch raises, and
    a ValueError, as fastnn raises for bad input)."""


def _indices(indices, fn: str) -> np.ndarray:
    """Integer indices as int64 (whole-number floating Tensors count, as labels do)."""
    arr = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if isinstance(indices, Tensor) and arr.dtype.kind == "f" and np.isfinite(arr).all() \
            and (arr == np.round(arr)).all():
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{fn}: indices must be integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


class Embedding(Module):
    """A lookup table, PyTorch's Embedding: integer indices (*) pick rows of ``weight``
    (num_embeddings, embedding_dim), giving (*, embedding_dim). Initialised N(0, 1) (from
    ``fnn.manual_seed``'s generator); the ``padding_idx`` row starts at zero and gets no
    gradient. Indices outside [0, num_embeddings) raise, naming the first one.

    The backward adds each index's gradient into its row, deterministically on any number of
    threads (``kernels.embedding``).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype=None, _weight=None):
        super().__init__()
        for arg, v in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"Embedding: {arg} must be a positive integer, got {v!r}")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = _padding_index(padding_idx, self.num_embeddings)
        self.dtype = resolve_dtype(dtype)
        shape = (self.num_embeddings, self.embedding_dim)
        if _weight is None:
            self.weight = Parameter(np.empty(shape, self.dtype))
            self.reset_parameters()
        else:
            w = _weight.data if isinstance(_weight, Tensor) else as_float_array(_weight)
            if w.shape != shape:
                raise ValueError(f"Embedding: weight must have shape {shape}, got {w.shape}")
            self.weight = Parameter(np.array(w, dtype=self.dtype))
        self._pool = BufferPool()

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx: int | None = None):
        """An Embedding holding ``embeddings`` (V, D) (a copy); ``freeze`` keeps it fixed."""
        w = embeddings.data if isinstance(embeddings, Tensor) else as_float_array(embeddings)
        if w.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, got {w.shape}")
        emb = cls(w.shape[0], w.shape[1], padding_idx=padding_idx, dtype=w.dtype, _weight=w)
        emb.weight.requires_grad_(not freeze)
        return emb

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def _describe(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"

    def forward(self, indices):
        return embedding_node(indices, self.weight, self.padding_idx, self._pool)


def _padding_index(padding_idx, v: int) -> int | None:
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)) \
            or not -v <= padding_idx < v:
        raise ValueError(f"Embedding: padding_idx must be an integer in [-{v}, {v}), got "
                         f"{padding_idx!r}")
    return int(padding_idx) % v


def embedding_node(indices, weight: Tensor, padding_idx: int | None,
                   pool: BufferPool) -> Tensor:
    """Rows of ``weight`` (V, D) at integer ``indices`` (*) as one graph node, (*, D)."""
    idx = _indices(indices, "Embedding")
    flat = idx.reshape(-1)
    v, dim = weight.shape
    W = weight.data if weight.data.flags.c_contiguous else np.ascontiguousarray(weight.data)
    out = np.empty((flat.size, dim), W.dtype)
    bad = K_emb.embedding_forward(out.size)(W, flat, out) if flat.size else -1
    if bad >= 0:
        raise EmbeddingIndexError(
            f"Embedding: index {flat[bad]} (at flat position {bad}) is out of range for "
            f"num_embeddings={v}: indices must be in [0, {v})")
    result = node(out.reshape(*idx.shape, dim), (weight,), "embedding")
    if result.requires_grad:
        pad = -1 if padding_idx is None else padding_idx

        def backward(g):
            g = np.ascontiguousarray(g, dtype=W.dtype).reshape(flat.size, dim)
            dW, add_to = _grad_out(weight)
            chunk_start = pool.get("chunk_start", (K_emb.n_table_chunks(v) + 1,), np.int64)
            order = pool.get("order", flat.shape, np.int64)
            if add_to is not None:  # a gradient already there: add into it
                K_emb.embedding_backward(g.size)(flat, g, pad, add_to, True, chunk_start,
                                                 order)
                return
            K_emb.embedding_backward(g.size)(flat, g, pad, dW, False, chunk_start, order)
            if not isinstance(weight, Parameter):
                weight.accumulate_grad(dW, owned=True)

        result.set_backward(backward)
    return result


# ----------------------------------------------------------------------------- Flatten
class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...): images into the rows a Linear layer takes.

    ``start_dim`` and ``end_dim`` as PyTorch's ``nn.Flatten`` (defaults 1 and -1).
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(as_float_array(x, name="Flatten input"))
        nd = x.ndim
        start, end = self.start_dim % max(nd, 1), self.end_dim % max(nd, 1)
        if nd == 0 or start > end:
            return x
        shape = x.shape[:start] + (int(np.prod(x.shape[start:end + 1])),) + x.shape[end + 1:]
        return x.reshape(shape)


# ------------------------------------------------------------------- Dropout, noise
def init_dropout(layer: Module, p, seed: int | None, dtype) -> None:
    """The state every dropout layer keeps (Dropout, Dropout2d): ``p`` checked, the dtype,
    the layer's own seeded generator and its buffer pool."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{type(layer).__name__}: p must be a probability in [0, 1), "
                         f"got {p!r}")
    layer.p = float(p)
    layer.dtype = None if dtype is None else resolve_dtype(dtype)
    layer.generator = new_generator(seed)
    layer._pool = BufferPool()


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability p and scale the rest
    by 1/(1-p); the identity in evaluation.

    Each training call draws one 64-bit key from the layer's own seeded generator
    (``self.generator``, whose state checkpoints save); the uniform of element (row, unit) is
    then Philox4x32-10 of (key, global row, unit) (``fastnn.kernels.dropout``). So the masks
    depend on the seed, the number of earlier training calls and each element's place in the
    global batch, never on the thread count or on how data-parallel ranks split the batch
    (:func:`dropout_row_offset`). Rows are the first dimension of the input, units the
    elements of one row.

    Parameters
    ----------
    p : probability of an element being zeroed, in [0, 1).
    seed : seed of the layer's generator (default: drawn from ``fnn.manual_seed``'s state).
    """

    def __init__(self, p: float = 0.5, seed: int | None = None, dtype=None):
        super().__init__()
        init_dropout(self, p, seed, dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x):
        x = _cast_free_input(self, x)
        if not self.training or self.p == 0.0:
            return x
        return dropout_node(x, self.p, self.generator, self._pool)


_dropout_row_offset: contextvars.ContextVar[int] = contextvars.ContextVar(
    "fastnn_dropout_row_offset", default=0)


@contextlib.contextmanager
def dropout_row_offset(offset: int) -> Iterator[None]:
    """Inside the ``with`` block, dropout numbers the rows of its inputs from ``offset``.

    A data-parallel rank that holds rows [lo, hi) of a global batch runs its forward pass in
    ``with dropout_row_offset(lo):``, and its masks are then exactly those rows of the mask
    that one process draws for the whole batch. Outside any block the offset is 0. The offset
    is per thread (a context variable) and blocks nest.

    Parameters
    ----------
    offset : index, in the global batch, of the first row of the inputs (an int >= 0).
    """
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
        raise ValueError(f"dropout_row_offset: offset must be an integer >= 0, got {offset!r}")
    token = _dropout_row_offset.set(int(offset))
    try:
        yield
    finally:
        _dropout_row_offset.reset(token)


def current_dropout_row_offset() -> int:
    """The row offset that dropout uses now (0 outside :func:`dropout_row_offset`)."""
    return _dropout_row_offset.get()


def dropout_forward_into(src: np.ndarray, p: float, generator: np.random.Generator,
                         y: np.ndarray, mask: np.ndarray, units: int,
                         row_offset: int | None = None) -> None:
    """Inverted dropout of the flat array ``src`` (n,) into ``y`` (n,); ``mask`` (n,) receives
    the scaled mask (the local gradient). The one place that draws dropout's randomness:
    the graph node and the compiled step (``fastnn.compiled``) both call it.

    ``src`` holds n // ``units`` rows of ``units`` elements (C order); its rows are rows
    ``row_offset``, ``row_offset + 1``, ... of the global batch (default: the current
    :func:`dropout_row_offset`, 0 outside one). Draws exactly one 64-bit key from
    ``generator`` per call (also when n is 0), so every rank of a data-parallel job, and one
    process, advance it alike.

    Parameters
    ----------
    src, y, mask : (n,) C-contiguous arrays of one float dtype (float32 or float64).
    p : drop probability in [0, 1).
    generator : the NumPy Generator that supplies the key.
    units : elements per row (>= 1; n must be a multiple of it).
    row_offset : global index of the first row (>= 0), or None for the current offset.
    """
    if row_offset is None:
        row_offset = _dropout_row_offset.get()
    n = src.size
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) \
            or not 1 <= units <= K_drop.MAX_UNITS or n % units:
        raise ValueError(f"dropout: units must be an integer in [1, {K_drop.MAX_UNITS}] that "
                         f"divides the {n} elements, got {units!r}")
    if isinstance(row_offset, bool) or not isinstance(row_offset, (int, np.integer)) \
            or not 0 <= row_offset < 2**63 - n:
        raise ValueError(f"dropout: row_offset must be an integer >= 0, got {row_offset!r}")
    key = generator.bit_generator.random_raw()  # 64 bits of the generator's stream
    if n:
        K_drop.dropout_forward(n)(src, p, key & 0xFFFFFFFF, key >> 32, int(row_offset),
                                  int(units), y, mask)


def dropout_node(x: Tensor, p: float, generator: np.random.Generator, pool: BufferPool) -> Tensor:
    """Inverted dropout of ``x`` (any shape; rows along its first dimension) with probability
    ``p``, the key drawn from ``generator`` and rows numbered from the current
    :func:`dropout_row_offset`; the kernel writes the scaled mask, which backward multiplies
    by."""
    src = np.ascontiguousarray(x.data).reshape(-1)
    rows = x.shape[0] if x.ndim else 1
    units = src.size // rows if rows else 1
    mask = pool.get("mask", src.shape, src.dtype)
    y = pool.get("y", src.shape, src.dtype)
    dropout_forward_into(src, p, generator, y, mask, max(units, 1))
    if src.size == 0:
        return x
    out = node(y.reshape(x.shape), (x,), "dropout")
    if out.requires_grad:

        def backward(g):  # the mask is the local gradient
            dx = pool.get("dx", src.shape, src.dtype)
            K_act.activation_backward(src.size)(np.ascontiguousarray(g).reshape(-1), mask, dx)
            x.accumulate_grad(dx.reshape(x.shape), owned=True)

        out.set_backward(backward)
    return out


class GaussianNoise(Module):
    """Additive input noise in training: y = x + std * N(0, 1); the identity in evaluation.

    The gradient passes unchanged (an add gate). ``seed`` as for Dropout.
    """

    def __init__(self, std: float = 0.1, seed: int | None = None, dtype=None):
        super().__init__()
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not std >= 0:
            raise ValueError(f"GaussianNoise: std must be a non-negative number, got {std!r}")
        self.std = float(std)
        self.dtype = None if dtype is None else resolve_dtype(dtype)
        self.generator = new_generator(seed)
        self._pool = BufferPool()

    def extra_repr(self) -> str:
        return f"std={self.std}"

    def forward(self, x):
        x = _cast_free_input(self, x)
        if not self.training or self.std == 0.0 or x.numel() == 0:
            return x
        noise = self._pool.get("noise", x.shape, x.dtype)
        self.generator.standard_normal(out=noise, dtype=x.dtype)
        noise *= x.dtype.type(self.std)
        return x + Tensor(noise)


# --------------------------------------------------------------------------------- PReLU
class PReLU(Module):
    """y = x if x > 0 else a * x with a learned slope ``weight``: one shared (num_parameters=1)
    or one per channel (dimension 1 of an (N, C) input, num_parameters=C), initialised to
    ``init``."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, dtype=None):
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, (int, np.integer)) \
                or num_parameters <= 0:
            raise ValueError(f"PReLU: num_parameters must be a positive integer, "
                             f"got {num_parameters!r}")
        self.num_parameters = int(num_parameters)
        self.dtype = resolve_dtype(dtype)
        self.weight = Parameter(np.full(self.num_parameters, init, self.dtype))
        self._pool = BufferPool()

    def _describe(self) -> str:
        return f"PReLU(num_parameters={self.num_parameters})"

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"

    def forward(self, x):
        shared = self.num_parameters == 1
        x = _as_input(self, x, min_ndim=0 if shared else 2, max_ndim=8 if shared else 2)
        if not shared and x.shape[1] != self.num_parameters:
            raise ValueError(f"{self._describe()}: expected input of shape (N, "
                             f"{self.num_parameters}), got {x.shape}")
        X = np.ascontiguousarray(x.data).reshape(-1, 1 if shared else self.num_parameters)
        w = self.weight
        y = self._pool.get("y", X.shape, self.dtype)
        K_act.prelu_forward(X.size)(X, w.data, y)
        out = node(y.reshape(x.shape), (x, w), "prelu")
        if out.requires_grad:
            pool = self._pool

            def backward(g):
                g = np.ascontiguousarray(g).reshape(X.shape)
                dx = np.empty_like(X) if x.requires_grad else empty_marker(X.dtype, X.shape[1])
                partial = pool.get("partial", (K_dense.n_chunks(X.shape[0]), X.shape[1]),
                                   np.float64)
                K_act.prelu_backward(X.size)(g, X, w.data, dx, partial)
                dw = partial.sum(axis=0)
                if shared:
                    dw = dw.sum(keepdims=True)
                if w.requires_grad:
                    w.accumulate_grad(dw, owned=True)
                if x.requires_grad:
                    x.accumulate_grad(dx.reshape(x.shape), owned=True)

            out.set_backward(backward)
        return out


# -------------------------------------------------------------------------------- Maxout
class Maxout(Module):
    """y_j = max over ``pieces`` affine maps (x @ W + b)_(j*pieces + k), k < pieces.

    ``weight`` (in_features, out_features * pieces) and ``bias`` (out_features * pieces,)
    keep the pieces of output j in adjacent columns; initialised like Linear. Backward routes
    the gradient to the winning piece (the max gate; on a tie, the first piece).
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = 2, bias: bool = True,
                 dtype=None):
        super().__init__()
        for arg, v in (("in_features", in_features), ("out_features", out_features),
                       ("pieces", pieces)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"Maxout: {arg} must be a positive integer, got {v!r}")
        self.in_features, self.out_features, self.pieces = int(in_features), int(out_features), \
            int(pieces)
        self.dtype = resolve_dtype(dtype)
        width = self.out_features * self.pieces
        self.weight = Parameter(np.empty((self.in_features, width), self.dtype))
        self.bias = Parameter(np.empty(width, self.dtype)) if bias else None
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)
        self._pool = BufferPool()

    def _describe(self) -> str:
        return (f"Maxout(in_features={self.in_features}, out_features={self.out_features}, "
                f"pieces={self.pieces})")

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"pieces={self.pieces}")

    def forward(self, x):
        x = _as_input(self, x)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{self._describe()}: expected input of shape (N, "
                             f"{self.in_features}), got {x.shape}")
        X = _as_2d(x)
        n, m, k, dt, pool = X.shape[0], self.out_features, self.pieces, self.dtype, self._pool
        W, bias = self.weight.data, self.bias
        b = bias.data if bias is not None else empty_marker(dt)
        z = pool.get("z", (n, m * k), dt)
        y = pool.get("y", (n, m), dt)
        arg = pool.get("arg", (n, m), np.int32)
        K_maxout.maxout_forward(X, W, b, k, z, y, arg)
        parents = (x, self.weight) if bias is None else (x, self.weight, bias)
        out = node(y if x.ndim == 2 else y.reshape(m), parents, "maxout")
        if out.requires_grad:
            weight = self.weight

            def backward(g):
                g = np.ascontiguousarray(g).reshape(n, m)
                dz = pool.get("dz", (n, m * k), dt)
                partial = pool.get("partial", (K_dense.n_chunks(n), m * k), np.float64)
                dW, dW_into = _grad_out(weight)  # the GEMM adds into dW_into (beta = 1)
                db = db_into = None
                if bias is not None:
                    db, db_into = _grad_out(bias, lambda: pool.get("db", (m * k,), dt))
                dx = pool.get("dx", X.shape, dt) if x.requires_grad else None
                K_maxout.maxout_backward(g, arg, k, X, W, dz, partial, dx, dW, db, dW_into)
                if db_into is not None:
                    db_into += db
                if dx is not None:
                    x.accumulate_grad(dx.reshape(x.shape), owned=True)

            out.set_backward(backward)
        return out
