"""A ``Sequential`` of ``Linear`` layers called in grad mode as ONE graph node.

Why: a PyTorch-style hand-written loop (``loss_fn(model(xb), yb).backward()``) runs the graph
path, which for every layer builds a Tensor and a backward closure, asks a pool for five or
six work arrays and lets ``dense_forward`` / ``dense_backward`` choose, at every call, which
product and which variant (serial or on the pool) of each pass to run. For a small MLP that
Python work costs about as much as the arithmetic (measured: 64-128-10, Adam, batch 128, the
loop took 1.5x to 2x the compiled step of ``fnn.compile_step``).

Here, as in the compiled step, those choices are made once per batch size
(:class:`_Plan`), and each layer's forward and backward is one jitted call
(``kernels.dense.planned_forward`` / ``planned_backward``), which runs the very kernels of
``dense_forward`` / ``dense_backward`` with the same arguments, block splits and scratch
shapes: the same bits as the layer-by-layer graph (``tests/nn/test_chain.py``). The chain is
one graph node: one closure, one entry in the backward walk.

When it runs (:func:`chain_forward` returns None otherwise, and the layers run one by one):
grad mode on, every fused step a ``Linear`` (with its own or a following activation) whose
parameters are fastnn Parameters that all require grad, C-contiguous, of one dtype; no hooks
on the layers; the input a 2-D C-contiguous array or Tensor of that dtype, one that needs no
gradient (a data batch), with the first layer's width; the CBLAS products the planned calls
use available (``kernels.blas.AVAILABLE``).

Buffers: a plan owns every work array of the chain for one batch size but the output, which
comes from the chain's own :class:`fastnn._buffers.BufferPool`. A plan is reused only when no
graph node holds it (a closure that has not run its non-retaining backward); reference counts
tell, as in that pool, and an interpreter that failed the pool's check at import gets a new
plan every call (slower, never wrong). Why the output apart: a training loop's last ``loss``
is still alive while the next forward runs, and its graph keeps the last output; with the
output apart, every step runs in the same plan's buffers (as the compiled step does), where
two plans in turn measured 30% slower (twice the memory the kernels sweep).
"""

from __future__ import annotations

import sys

import numpy as np

from .._buffers import MAX_PER_KEY, REUSE_IS_SAFE, BufferPool
from .._dtype import empty_marker
from ..graph import Tensor, node
from ..kernels import activations as K_act
from ..kernels import blas as K_blas
from ..kernels import dense as K_dense
from . import module as _module
from .layers import Activation, Linear
from .module import Parameter

# References to a plan that ``_Chain.plan`` itself holds while it checks it: the plans'
# list, the loop variable and getrefcount's own argument (``_buffers._POOL_ONLY``'s rule).
_PLAN_ONLY = 3

_ON_POOL = None


def _on_pool():
    """The kernel variants that run on the thread pool (as ``fastnn.compiled`` lists them)."""
    global _ON_POOL
    if _ON_POOL is None:
        _ON_POOL = (K_blas.gemm_blocks.parallel, K_blas.gemm_split_k.parallel,
                    K_dense.bias_activation_forward.parallel, K_dense.add_bias.parallel,
                    K_dense.dz_and_bias_grad.parallel)
    return _ON_POOL


class _Plan:
    """Every work array of the chain for one batch size, and each layer's planned-call
    arguments: ``fwd[i]`` are ``planned_forward``'s after x, W, b; ``bwd[i]``
    ``planned_backward``'s after dy, d, x, W (with dW and db left to the call, since they
    are the parameters' gradients); ``pools[i]`` the layer's scratch for the unplanned
    fallback (a gradient that already holds an earlier contribution)."""

    __slots__ = ("fwd", "bwd", "ys", "ds", "dzs", "partials_b", "dxs", "out_shape")

    def __init__(self, n: int, dt: np.dtype, layers):
        on_pool = _on_pool()
        self.fwd, self.bwd, self.ys, self.ds, self.dzs, self.partials_b, self.dxs = \
            [], [], [], [], [], [], []
        last = len(layers) - 1
        for i, (lin, code, alpha) in enumerate(layers):
            d_in, m = lin.in_features, lin.out_features
            # the last layer's output comes from the chain's pool at every call (chain_forward)
            y = np.empty((n, m), dt) if i < last else None
            d = np.empty((n, m), dt) if code != K_act.IDENTITY else empty_marker(dt, m)
            split_k = K_dense.split_k_partial_shape(n, d_in, m)
            partial = np.empty(split_k, dt) if split_k is not None else None
            dz = np.empty((n, m), dt) if d.shape[0] else d
            partial_b = np.empty((K_dense.n_chunks(n), m))
            dx = np.empty((n, d_in), dt) if i > 0 else np.empty((0, d_in), dt)
            # The choices dense_forward / dense_backward make at every call, made once.
            if partial is not None:
                product, parts = K_blas.gemm_split_k(n * m * d_in), partial.shape[0] + 1
            else:
                product, parts = K_blas.gemm_kernel(n, m, d_in)
            elementwise = (K_dense.bias_activation_forward if code != K_act.IDENTITY
                           else K_dense.add_bias)(n * m)
            dw_product, dw_parts = K_blas.gemm_kernel(d_in, m, n)
            dx_product, dx_parts = K_blas.gemm_kernel(n, d_in, m)
            self.fwd.append((code, alpha, y, d,
                             partial if partial is not None else np.empty((0, 1, 1), dt),
                             parts, product in on_pool, elementwise in on_pool))
            self.bwd.append((K_dense.dz_and_bias_grad(n * m) in on_pool, dw_parts,
                             dw_product in on_pool, dx_parts, dx_product in on_pool))
            self.ys.append(y)
            self.ds.append(d)
            self.dzs.append(dz)
            self.partials_b.append(partial_b)
            self.dxs.append(dx)
        self.out_shape = (n, layers[-1][0].out_features)


class _Chain:
    """A Sequential's fused steps when they are all ``Linear`` layers: (layer, activation
    code, alpha) each, and the plans by batch size."""

    __slots__ = ("layers", "plans", "dtype", "in_features", "op", "outputs")

    def __init__(self, layers, names):
        self.layers = layers
        self.plans: dict[int, list[_Plan]] = {}
        self.dtype = layers[0][0].dtype
        self.in_features = layers[0][0].in_features
        self.op = f"sequential({', '.join(names)})"
        # The output arrays: apart from the plans, since a user's variable (the last loss,
        # whose graph keeps its inputs) commonly holds the last output while the next forward
        # runs; the plan, freed by the backward, is then one set of buffers for every step.
        self.outputs = BufferPool()

    def forward(self, x) -> Tensor | None:
        """:func:`chain_forward` of this chain."""
        return chain_forward(self, x)

    def plan(self, n: int) -> _Plan:
        """A plan for batch size ``n`` that nothing holds (a new one if all are held)."""
        plans = self.plans.get(n)
        if plans is None:
            if len(self.plans) >= MAX_PER_KEY:  # batch sizes that keep changing
                del self.plans[next(iter(self.plans))]
            plans = self.plans[n] = []
        if REUSE_IS_SAFE:
            for plan in plans:
                if sys.getrefcount(plan) <= _PLAN_ONLY:
                    return plan
        plan = _Plan(n, self.dtype, self.layers)
        if REUSE_IS_SAFE and len(plans) < MAX_PER_KEY:
            plans.append(plan)
        return plan


def make_chain(fusion_plan) -> _Chain | None:
    """The chain of a Sequential's fusion plan ``[(module, fused activation or None)]``, or
    None when a step is not a ``Linear`` (or the blocked products are not available)."""
    if not K_blas.AVAILABLE or not fusion_plan:
        return None
    layers, names = [], []
    for m, fused in fusion_plan:
        if type(m) is not Linear or (fused is not None and not isinstance(fused, Activation)):
            return None
        act = fused or m.activation
        layers.append((m, act.code if act is not None else K_act.IDENTITY,
                       act.alpha if act is not None else 0.0))
        names.append("linear" if act is None or act.code == K_act.IDENTITY
                     else f"linear+{act.name}")
    dts = {lin.dtype for lin, _, _ in layers}
    if len(dts) != 1:
        return None
    for (a, _, _), (b, _, _) in zip(layers, layers[1:], strict=False):
        if a.out_features != b.in_features:
            return None  # the layers' own forward raises the shape error
    return _Chain(layers, names)


def chain_forward(chain: _Chain, x) -> Tensor | None:
    """The chain's output as one graph node, or None when this call does not qualify (see
    the module docstring); then the caller runs the layers one by one, which validates the
    input and gives the same numbers."""
    dt = chain.dtype
    if isinstance(x, Tensor):
        if x.requires_grad:
            return None
        X = x.data
    elif isinstance(x, np.ndarray):
        X = x
    else:
        return None
    if not (X.ndim == 2 and X.dtype == dt and X.flags.c_contiguous
            and X.shape[1] == chain.in_features and X.shape[0] > 0):
        return None
    params, weights = [], []
    for lin, _, _ in chain.layers:
        if lin._hooks is not None or lin.dtype != dt:
            return None
        W, b = lin.weight, lin.bias
        if not (type(W) is Parameter and W.requires_grad and W.data.dtype == dt
                and W.data.flags.c_contiguous):
            return None
        params.append(W)
        weights.append(W.data)
        if b is not None:
            if not (type(b) is Parameter and b.requires_grad and b.data.dtype == dt):
                return None
            params.append(b)
    n = X.shape[0]
    plan = chain.plan(n)
    layers, fwd = chain.layers, plan.fwd
    y = chain.outputs.get("y", plan.out_shape, dt)
    h, last = X, len(layers) - 1
    for i, (lin, _, _) in enumerate(layers):
        b = lin.bias
        args = fwd[i] if i < last else fwd[i][:2] + (y,) + fwd[i][3:]
        K_dense.planned_forward(h, weights[i],
                                b.data if b is not None else empty_marker(dt), *args)
        h = args[2]
    out = node(y, tuple(params), chain.op)

    def backward(g):
        g = np.ascontiguousarray(g).reshape(plan.out_shape)
        bwd, ys, ds, dzs, partials_b, dxs = (plan.bwd, plan.ys, plan.ds, plan.dzs,
                                             plan.partials_b, plan.dxs)
        for i in range(len(layers) - 1, -1, -1):
            lin = layers[i][0]
            weight, bias = lin.weight, lin.bias
            xi = ys[i - 1] if i else X
            W = weights[i]
            dW, dW_into = weight.grad_destination()
            db = db_into = None
            if bias is not None:
                db, db_into = bias.grad_destination(
                    lambda m=bias.shape[0]: np.empty(m, dt))
            if dW_into is None and g.dtype == dt:
                sums_par, dw_parts, dw_par, dx_parts, dx_par = bwd[i]
                K_dense.planned_backward(g, ds[i], xi, W, dzs[i], partials_b[i], dxs[i], dW,
                                         db if db is not None else empty_marker(dt),
                                         sums_par, dw_parts, dw_par, dx_parts, dx_par)
            else:  # a gradient that holds an earlier contribution: the GEMM adds into it
                K_dense.dense_backward(g, ds[i], xi, W, dzs[i], partials_b[i],
                                       dxs[i] if i else None, dW, db, dW_into)
            if db_into is not None:
                db_into += db
            g = dxs[i]

    out.set_backward(backward)
    return out


_module.CHAIN["make"] = make_chain  # what Sequential.forward calls (see module.CHAIN)
