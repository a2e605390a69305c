"""The planned kernel calls of the dense layers, shared by the two paths that run a
``Sequential`` from a plan made once per batch size: the hand-written loop's chain
(:mod:`fastnn.nn._chain`) and the compiled step (:mod:`fastnn.compiled`).

For each layer: the work arrays for one batch size (``*_buffers``), with the choices that
``dense_forward`` / ``dense_backward`` and BatchNorm's kernels would make at every call
(which product, how many blocks, serial or on the thread pool) made here once, and the calls
that both paths make with them. One place, so the two paths run the same kernels with the
same arguments, block splits and scratch shapes (the layer-by-layer graph's bits).

Here (in ``fastnn.nn``) because the chain may not import ``fastnn.compiled``, which imports
``fastnn.nn`` (lower layers never import higher ones).
"""

from __future__ import annotations

import numpy as np

from .._dtype import empty_marker
from ..kernels import activations as K_act
from ..kernels import batchnorm as K_bn
from ..kernels import blas as K_blas
from ..kernels import dense as K_dense
from .layers import dropout_forward_into


class StageBuffers:
    """One stage's work arrays for one batch size (attributes set by the ``*_buffers``
    functions and the stage that owns them)."""


_ON_POOL = None


def on_pool() -> tuple:
    """The kernel variants that run on the thread pool (a planned call's ``*_par`` flags)."""
    global _ON_POOL
    if _ON_POOL is None:
        _ON_POOL = (K_blas.gemm_blocks.parallel, K_blas.gemm_split_k.parallel,
                    K_dense.bias_activation_forward.parallel, K_dense.add_bias.parallel,
                    K_dense.dz_and_bias_grad.parallel)
    return _ON_POOL


def fused_activation(layer, act) -> tuple[int, float]:
    """The (code, alpha) of the activation fused into ``layer``: ``act`` (a following
    activation layer) or the layer's own, else the identity."""
    act = act or layer.activation
    return (act.code, act.alpha) if act is not None else (K_act.IDENTITY, 0.0)


# ----------------------------------------------------------------------------- Linear
def linear_buffers(n: int, dt, d_in: int, m: int, code: int, need_dx: bool,
                   with_y: bool = True) -> StageBuffers:
    """y = act(x @ W + b) for (n, d_in) inputs, m outputs: ``dense_forward`` /
    ``dense_backward``'s work arrays, and (when NumPy's CBLAS can be called from the pool,
    ``blas.AVAILABLE``; ``s.planned``) their choices for ``planned_forward`` /
    ``planned_backward``.

    Attributes: ``y`` (None unless ``with_y``), ``d``, ``partial`` (split-K scratch or
    None, as ``dense_forward`` takes it), ``dz``, ``partial_b``, ``dx`` (None unless
    ``need_dx``); planned: ``partial_arg``, ``dx_arg`` (empty markers for None), ``parts``,
    ``product_par``, ``pass_par`` and ``bwd`` (``planned_backward``'s last five arguments).
    """
    s = StageBuffers()
    s.y = np.empty((n, m), dt) if with_y else None
    s.d = np.empty((n, m), dt) if code != K_act.IDENTITY else empty_marker(dt, m)
    split_k = K_dense.split_k_partial_shape(n, d_in, m)
    s.partial = np.empty(split_k, dt) if split_k is not None else None
    s.dz = np.empty((n, m), dt) if s.d.shape[0] else s.d
    s.partial_b = np.empty((K_dense.n_chunks(n), m))
    s.dx = np.empty((n, d_in), dt) if need_dx else None
    s.planned = K_blas.AVAILABLE
    if s.planned:
        pool = on_pool()
        if s.partial is not None:
            product, parts = K_blas.gemm_split_k(n * m * d_in), s.partial.shape[0] + 1
        else:
            product, parts = K_blas.gemm_kernel(n, m, d_in)
        elementwise = (K_dense.bias_activation_forward if code != K_act.IDENTITY
                       else K_dense.add_bias)(n * m)
        dw_product, dw_parts = K_blas.gemm_kernel(d_in, m, n)
        dx_product, dx_parts = K_blas.gemm_kernel(n, d_in, m)
        s.partial_arg = s.partial if s.partial is not None else np.empty((0, 1, 1), dt)
        s.dx_arg = s.dx if need_dx else np.empty((0, d_in), dt)
        s.parts, s.product_par = int(parts), product in pool
        s.pass_par = elementwise in pool
        s.bwd = (K_dense.dz_and_bias_grad(n * m) in pool, int(dw_parts),
                 dw_product in pool, int(dx_parts), dx_product in pool)
    return s


# ----------------------------------------------------------------------------- BatchNorm1d
def batchnorm_buffers(n: int, dt, c: int, code: int, need_dx: bool,
                      with_y: bool = True) -> StageBuffers:
    """Training-mode BatchNorm1d (+ activation) on (n, c): ``kernels.batchnorm.planned_*``'s
    work arrays and their choice of serial or pooled passes. ``dx`` is None unless
    ``need_dx``; ``dx_arg`` is what ``planned_backward`` takes then (an empty marker)."""
    s = StageBuffers()
    s.y = np.empty((n, c), dt) if with_y else None
    s.xhat, s.d = np.empty((n, c), dt), np.empty((n, c), dt)
    s.d_backward = s.d if code != K_act.IDENTITY else empty_marker(dt, c)
    s.mean, s.inv_std = np.empty(c, dt), np.empty(c, dt)
    s.partial = np.empty((K_bn.n_chunks(n), 2, c))
    s.stats, s.sums = np.empty((3, c)), np.empty((2, c))
    s.partial_b = np.empty((K_bn.n_chunks(n), 2, c))
    s.ones, s.zeros = np.ones(c, dt), np.zeros(c, dt)  # gamma, beta when not affine
    s.dgamma, s.dbeta = np.empty(c, dt), np.empty(c, dt)
    s.dx = np.empty((n, c), dt) if need_dx else None
    s.dx_arg = s.dx if need_dx else np.empty((0, c), dt)
    s.on_pool = K_bn.planned_on_pool(n, c)
    return s


def batchnorm_forward_train(layer, code: int, alpha: float, x, s: StageBuffers, y):
    """``layer``'s (a BatchNorm1d in training) forward into ``y``: batch statistics, the
    running statistics and ``num_batches_tracked`` updated as the layer does. Returns gamma
    (what the backward needs)."""
    gamma = layer.weight.data if layer.affine else s.ones
    beta = layer.bias.data if layer.affine else s.zeros
    momentum = layer.momentum
    if layer.track_running_stats:
        # The layer's count, in place (as ``+=`` on the attribute does, without the
        # module's __setattr__: 1.8 µs a step).
        count = layer.num_batches_tracked
        count += 1
        if count is not layer.num_batches_tracked:  # not an array: set it
            layer.num_batches_tracked = count
        if momentum is None:
            momentum = 1.0 / float(count)
        rm, rv = layer.running_mean, layer.running_var
    else:
        rm = rv = empty_marker(x.dtype)
    K_bn.planned_forward_train(x, gamma, beta, layer.eps, momentum or 0.0, rm, rv,
                               code, alpha, y, s.xhat, s.d, s.mean, s.inv_std,
                               s.partial, s.stats, s.on_pool)
    return gamma


def batchnorm_backward(g, s: StageBuffers, gamma, dgamma, dbeta):
    """The input gradient (``s.dx``, None when not needed) and dgamma, dbeta written into
    the arrays given."""
    K_bn.planned_backward(g, s.d_backward, s.xhat, gamma, s.inv_std, s.dx_arg, dgamma, dbeta,
                          s.partial_b, s.sums, s.on_pool)
    return s.dx


# ----------------------------------------------------------------------------- elementwise
def elementwise_buffers(shape: tuple, dt, need_dx: bool, with_y: bool = True) -> StageBuffers:
    """An activation or dropout on ``shape`` (batch first): the output, the local gradient
    (``local``) and the kernel variants for its size (``forward``, ``backward``)."""
    s = StageBuffers()
    s.y = np.empty(shape, dt) if with_y else None
    s.local = np.empty(shape, dt)
    s.dx = np.empty(shape, dt) if need_dx else None
    size = s.local.size
    s.forward = K_act.activation_forward(size)
    s.backward = K_act.activation_backward(size)
    return s


def activation_forward(code: int, alpha: float, x, s: StageBuffers, y) -> None:
    """y = f(x) and the local gradient (``activation_node``'s call)."""
    s.forward(code, alpha, x.reshape(-1), y.reshape(-1), s.local.reshape(-1))


def dropout_forward(layer, x, s: StageBuffers, y) -> None:
    """Inverted dropout in training with the layer's own draws (``dropout_node``'s call);
    the local gradient is the scaled mask."""
    dropout_forward_into(x.reshape(-1), layer.p, layer.generator, y.reshape(-1),
                         s.local.reshape(-1), x.size // x.shape[0])


def elementwise_backward(g, s: StageBuffers):
    """dx = g * local (``activation_backward``); None when no input gradient is needed."""
    if s.dx is None:
        return None
    s.backward(np.ascontiguousarray(g).reshape(-1), s.local.reshape(-1), s.dx.reshape(-1))
    return s.dx


# ----------------------------------------------------------------------------- PReLU
def prelu_buffers(shape: tuple, k: int, dt, need_dx: bool, with_y: bool = True) -> StageBuffers:
    """PReLU with ``k`` slopes (1, or one per unit) on ``shape`` (batch first)."""
    s = StageBuffers()
    s.y = np.empty(shape, dt) if with_y else None
    s.dx = np.empty(shape, dt) if need_dx else None
    s.dx_arg = s.dx.reshape(-1, k) if need_dx else empty_marker(dt, k)
    size = int(np.prod(shape))
    s.partial = np.empty((K_dense.n_chunks(size // k), k))
    s.forward = K_act.prelu_forward(size)
    s.backward = K_act.prelu_backward(size)
    return s


def prelu_forward(layer, x, s: StageBuffers, y) -> None:
    """``PReLU.forward``'s call into ``y``."""
    k = layer.num_parameters
    s.forward(x.reshape(-1, k), layer.weight.data, y.reshape(-1, k))


def prelu_backward(layer, g, x, s: StageBuffers):
    """``PReLU``'s backward: the input gradient into ``s.dx`` (when needed); returns the
    slopes' gradient (the layer's weight's shape)."""
    k = layer.num_parameters
    X = x.reshape(-1, k)
    s.backward(np.ascontiguousarray(g).reshape(X.shape), X, layer.weight.data, s.dx_arg,
               s.partial)
    dw = s.partial.sum(axis=0)
    return dw.sum(keepdims=True) if k == 1 else dw
