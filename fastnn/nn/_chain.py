"""A ``Sequential`` called in grad mode as ONE graph node: its layers' kernels run from a plan
made once per batch size.

Why: a PyTorch-style hand-written loop (``loss_fn(model(xb), yb).backward()``) runs the graph
path, which for every layer builds a Tensor and a backward closure, asks a pool for five or
six work arrays and lets ``dense_forward`` / ``dense_backward`` (and BatchNorm's) choose, at
every call, which product and which variant (serial or on the pool) of each pass to run. For a
small MLP that Python work costs about as much as the arithmetic (measured: 64-128-10, Adam,
batch 128, the loop took 1.5x to 2x the compiled step of ``fnn.compile_step``; with
BatchNorm, 256-64-64-10 batch 256, 1.6x).

Here, as in the compiled step (``fastnn.compiled``; both call ``fastnn.nn._stages``), those choices
are made once per batch size (:class:`_Plan`), and each layer's forward and backward is one
jitted call that runs the very kernels of the layer's graph node with the same arguments,
block splits and scratch shapes: the same bits as the layer-by-layer graph
(``tests/nn/test_chain.py``). The chain is one graph node: one closure, one entry in the
backward walk. For a chain of ``Linear`` layers only, the calls' argument tuples are kept from
call to call. (Not one jitted call for all the layers, as ``kernels.chain.dense_chain_step``
makes for the compiled step: Numba types a tuple of layers by its length, so every new depth
compiled anew, measured 30 s on this machine, for about 1 µs a layer less.)

Steps (``Sequential._fusion_plan`` entries) that chain: ``Linear`` (with its own or a following
activation), ``BatchNorm1d`` in training (with a fused activation; batch statistics, running
statistics updated as the layer does), a standalone activation, ``Dropout`` in training (the
layer's own draws), ``PReLU``; ``Identity`` and ``Flatten()`` are no-ops on the (N, D) batches
the chain takes. Anything else (a custom module, LayerNorm, a convolution) and the Sequential
runs its layers one by one.

When it runs (:func:`chain_forward` returns None otherwise, and the layers run one by one,
which validate the input and give the same numbers): grad mode on; every parameter a fastnn
Parameter that requires grad, C-contiguous, of the chain's one dtype; no hooks on the layers;
every BatchNorm1d and Dropout in training mode (BatchNorm1d without ``sync_statistics``, a
Dropout with p > 0); the input a 2-D C-contiguous array or Tensor of that dtype, at least 2
rows when there is a BatchNorm1d, with the first layer's width; the CBLAS products the
planned calls use available (``kernels.blas.AVAILABLE``).

An input that needs a gradient (the concatenated embeddings of ``TabularMLP``, any graph
node before the Sequential) is the chain node's parent: its plan (kept apart, under the key
``(n, True)``) has every stage compute its input's gradient, and the first stage's goes to
the input (a copy, since the plan's array is overwritten by the next step). Measured on
``fastnn bench --tables``' model (a 217-wide batch of 512 into (256, 256), BatchNorm,
dropout 0.1, Adam), the layers one by one took 0.25 ms a step more (of 9 ms, one thread).

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
from . import _stages
from . import module as _module
from ._stages import StageBuffers
from .layers import Activation, BatchNorm1d, Dropout, Flatten, Linear, PReLU
from .module import Parameter

# References to a plan that ``_Chain.plan`` itself holds while it checks it: the plans'
# list, the loop variable and getrefcount's own argument (``_buffers._POOL_ONLY``'s rule).
_PLAN_ONLY = 3

def _is_param(p, dt) -> bool:
    """A Parameter the chain may write the gradient of: requires grad, C-contiguous, ``dt``."""
    return type(p) is Parameter and p.requires_grad and p.data.dtype == dt \
        and p.data.flags.c_contiguous


# ----------------------------------------------------------------------------- stages
# Each stage's work arrays and kernel calls are ``fastnn.nn._stages``'s, which the compiled
# step's stages call too; a stage here adds what the graph node needs: the checks that the
# call qualifies (``ready``) and where the parameters' gradients go.
class _LinearStage:
    """y = act(x @ W + b): ``linear_node``'s kernels as ``planned_forward`` /
    ``planned_backward`` calls (``dense_forward`` / ``dense_backward`` with their choices
    made once per batch size)."""

    has_params = True

    def __init__(self, lin: Linear, act):
        self.layer = lin
        self.code, self.alpha = _stages.fused_activation(lin, act)
        self.in_features, self.out_features = lin.in_features, lin.out_features
        act = act or lin.activation
        self.name = "linear" if self.code == K_act.IDENTITY else f"linear+{act.name}"

    def ready(self, dt, params: list) -> bool:
        lin = self.layer
        if lin._hooks is not None or lin.dtype != dt:
            return False
        W, b = lin.weight, lin.bias
        if not _is_param(W, dt):
            return False
        params.append(W)
        if b is not None:
            if not _is_param(b, dt):
                return False
            params.append(b)
        return True

    def buffers(self, n: int, dt, need_dx: bool, width: int, last: bool) -> StageBuffers:
        # (the last output: the chain's pool's)
        return _stages.linear_buffers(n, dt, self.in_features, self.out_features, self.code,
                                      need_dx, with_y=not last)

    def forward(self, x, s, y):
        """Returns the weight it multiplied by (what the backward needs)."""
        b, W = self.layer.bias, self.layer.weight.data
        dt = y.dtype
        K_dense.planned_forward(x, W,
                                b.data if b is not None else empty_marker(dt), self.code,
                                self.alpha, y, s.d, s.partial_arg, s.parts, s.product_par,
                                s.pass_par)
        return W

    def backward(self, g, x, s, W, dx=None):
        """The input gradient (``s.dx``, or ``dx`` when given: an array of its shape to
        write it into)."""
        lin = self.layer
        weight, bias = lin.weight, lin.bias
        dt = W.dtype
        # (a parameter switched off for this walk, ``backward(inputs=...)``: scratch)
        dW, dW_into = weight.grad_destination() if weight.requires_grad \
            else (np.empty(W.shape, dt), None)
        db = db_into = None
        if bias is not None:
            db, db_into = bias.grad_destination(lambda m=bias.shape[0]: np.empty(m, dt)) \
                if bias.requires_grad else (np.empty(bias.shape, dt), None)
        if dx is None:
            dx, dx_arg = s.dx, s.dx_arg
        else:
            dx_arg = dx
        if dW_into is None and g.dtype == dt:
            K_dense.planned_backward(g, s.d, x, W, s.dz, s.partial_b, dx_arg, dW,
                                     db if db is not None else empty_marker(dt), *s.bwd)
        else:  # a gradient that holds an earlier contribution: the GEMM adds into it
            K_dense.dense_backward(g, s.d, x, W, s.dz, s.partial_b, dx, dW, db, dW_into)
        if db_into is not None:
            db_into += db
        return dx


class _BatchNormStage:
    """Training-mode BatchNorm1d (+ activation): ``BatchNorm1d``'s training kernels as one
    planned call each way (``kernels.batchnorm.planned_*``)."""

    def __init__(self, layer: BatchNorm1d, act):
        self.layer = layer
        self.has_params = layer.affine
        self.code, self.alpha = _stages.fused_activation(layer, act)
        self.in_features = self.out_features = layer.num_features
        act = act or layer.activation
        self.name = "batchnorm" if act is None else f"batchnorm+{act.name}"

    def ready(self, dt, params: list) -> bool:
        layer = self.layer
        if layer._hooks is not None or layer.dtype != dt or not layer.training \
                or layer._sync is not None:
            return False
        if layer.affine:
            if not (_is_param(layer.weight, dt) and _is_param(layer.bias, dt)):
                return False
            params += (layer.weight, layer.bias)
        return True

    def buffers(self, n: int, dt, need_dx: bool, width: int, last: bool) -> StageBuffers:
        return _stages.batchnorm_buffers(n, dt, self.layer.num_features, self.code, need_dx,
                                         with_y=not last)

    def forward(self, x, s, y):
        return _stages.batchnorm_forward_train(self.layer, self.code, self.alpha, x, s, y)

    def backward(self, g, x, s, gamma):
        layer = self.layer
        weight, bias = layer.weight, layer.bias
        dgamma, dbeta, dg_into, db_into = s.dgamma, s.dbeta, None, None
        if layer.affine:  # (a parameter switched off for this walk: scratch)
            if weight.requires_grad:
                dgamma, dg_into = weight.grad_destination(lambda: s.dgamma)
            if bias.requires_grad:
                dbeta, db_into = bias.grad_destination(lambda: s.dbeta)
        dx = _stages.batchnorm_backward(g, s, gamma, dgamma, dbeta)
        if dg_into is not None:
            dg_into += dgamma
        if db_into is not None:
            db_into += dbeta
        return dx


class _ElementwiseStage:
    """A stage without parameters that keeps its input's width: y = f(x) and a local
    gradient in the forward pass; the backward multiplies by it (``activation_backward``),
    for the activations and dropout alike."""

    has_params = False
    in_features = out_features = None

    def buffers(self, n: int, dt, need_dx: bool, width: int, last: bool) -> StageBuffers:
        return _stages.elementwise_buffers((n, width), dt, need_dx, with_y=not last)

    def backward(self, g, x, s, saved):
        return _stages.elementwise_backward(g, s)


class _ActivationStage(_ElementwiseStage):
    """A standalone activation (``activation_node``'s calls)."""

    def __init__(self, layer: Activation):
        self.layer, self.code, self.alpha, self.name = layer, layer.code, layer.alpha, layer.name

    def ready(self, dt, params: list) -> bool:
        layer = self.layer
        return layer._hooks is None and (layer.dtype is None or layer.dtype == dt)

    def forward(self, x, s, y):
        _stages.activation_forward(self.code, self.alpha, x, s, y)


class _DropoutStage(_ElementwiseStage):
    """Inverted dropout in training (``dropout_node``'s calls: the same draws); the local
    gradient is the scaled mask."""

    name = "dropout"

    def __init__(self, layer: Dropout):
        self.layer = layer

    def ready(self, dt, params: list) -> bool:
        layer = self.layer
        return layer._hooks is None and layer.training and layer.p > 0.0 \
            and (layer.dtype is None or layer.dtype == dt)

    def forward(self, x, s, y):
        _stages.dropout_forward(self.layer, x, s, y)


class _PReLUStage:
    """PReLU with a learned slope, shared or one per unit (``PReLU.forward``'s calls)."""

    has_params = True
    in_features = out_features = None
    name = "prelu"

    def __init__(self, layer: PReLU):
        self.layer = layer

    def ready(self, dt, params: list) -> bool:
        layer = self.layer
        if layer._hooks is not None or layer.dtype != dt or not _is_param(layer.weight, dt):
            return False
        params.append(layer.weight)
        return True

    def buffers(self, n: int, dt, need_dx: bool, width: int, last: bool) -> StageBuffers:
        return _stages.prelu_buffers((n, width), self.layer.num_parameters, dt, need_dx,
                                     with_y=not last)

    def forward(self, x, s, y):
        _stages.prelu_forward(self.layer, x, s, y)

    def backward(self, g, x, s, saved):
        w = self.layer.weight
        dw = _stages.prelu_backward(self.layer, g, x, s)
        if w.requires_grad:
            w.accumulate_grad(dw, owned=True)
        return s.dx


def _stage(m, fused):
    """The stage of one fusion-plan entry; None for a no-op; False when it cannot chain."""
    if type(m) is Linear:
        if fused is not None and not isinstance(fused, Activation):
            return False
        return _LinearStage(m, fused)
    if type(m) is BatchNorm1d:
        if fused is not None and not isinstance(fused, Activation):
            return False
        return _BatchNormStage(m, fused)
    if fused is not None:
        return False
    if isinstance(m, Activation) and type(m).forward is Activation.forward:
        return None if m.code == K_act.IDENTITY else _ActivationStage(m)
    if type(m) is Dropout:
        return _DropoutStage(m)
    if type(m) is PReLU:
        return _PReLUStage(m)
    if type(m) is Flatten and m.start_dim == 1 and m.end_dim == -1:
        return None  # a no-op on (N, D)
    return False


# ----------------------------------------------------------------------------- the plan
class _Plan:
    """Every work array of the chain for one batch size: one ``StageBuffers`` per stage;
    ``linear``: for a chain of Linear layers only, the parts of the layers' planned calls'
    arguments that do not change from call to call, and the tuples kept (``_linear_chain``)."""

    __slots__ = ("stages", "out_shape", "linear")

    def __init__(self, n: int, dt: np.dtype, chain: _Chain, input_grad: bool = False):
        # ``input_grad``: the input needs a gradient, so every stage computes its input's
        # (else the stages up to the first with parameters need none); a first Linear
        # writes it into an array of the chain's pool (``chain_forward``), not the plan's.
        self.stages = []
        last = len(chain.stages) - 1
        for i, (st, width) in enumerate(zip(chain.stages, chain.widths, strict=True)):
            need_dx = i > chain.first_param or (
                input_grad and (i > 0 or type(st) is not _LinearStage))
            self.stages.append(st.buffers(n, dt, need_dx, width, i == last))
        self.out_shape = (n, chain.out_features)
        self.linear = None


class _Chain:
    """A Sequential's fused steps as stages, and the plans by batch size."""

    __slots__ = ("stages", "plans", "dtype", "in_features", "out_features", "widths", "op",
                 "outputs", "first_param", "only_linear", "n_min", "checked", "generation")

    def __init__(self, stages, dtype, widths, out_features):
        self.stages = stages
        self.plans: dict[int, list[_Plan]] = {}
        self.dtype = dtype
        self.widths, self.in_features, self.out_features = widths, widths[0], out_features
        self.op = f"sequential({', '.join(s.name for s in stages)})"
        # The stages before the first one with parameters need no backward (the input needs
        # no gradient); that one needs no input gradient.
        self.first_param = next(i for i, s in enumerate(stages) if s.has_params)
        self.only_linear = all(type(s) is _LinearStage for s in stages)
        self.n_min = 2 if any(type(s) is _BatchNormStage for s in stages) else 1
        # The output arrays: apart from the plans, since a user's variable (the last loss,
        # whose graph keeps its inputs) commonly holds the last output while the next forward
        # runs; the plan, freed by the backward, is then one set of buffers for every step.
        self.outputs = BufferPool()
        # A chain of Linear layers: what its last full check saw, and how many it passed
        # (``_linear_ready``; kept argument tuples are of one generation).
        self.checked, self.generation = None, 0

    @property
    def layers(self):
        """The chain's Linear stages as (layer, activation code, alpha)."""
        return [(s.layer, s.code, s.alpha) for s in self.stages if type(s) is _LinearStage]


    def plan(self, n: int, input_grad: bool = False) -> _Plan:
        """A plan for batch size ``n`` that nothing holds (a new one if all are held);
        ``input_grad``: one that computes the input's gradient too (kept under the key
        ``(n, True)``)."""
        key = (n, True) if input_grad else n
        plans = self.plans.get(key)
        if plans is None:
            if len(self.plans) >= MAX_PER_KEY:  # batch sizes that keep changing
                del self.plans[next(iter(self.plans))]
            plans = self.plans[key] = []
        if REUSE_IS_SAFE:
            for plan in plans:
                if sys.getrefcount(plan) <= _PLAN_ONLY:
                    return plan
        plan = _Plan(n, self.dtype, self, input_grad)
        if REUSE_IS_SAFE and len(plans) < MAX_PER_KEY:
            plans.append(plan)
        return plan


def make_chain(fusion_plan) -> _Chain | None:
    """The chain of a Sequential's fusion plan ``[(module, fused activation or None)]``, or
    None when a step cannot chain (see the module docstring), no step has parameters, the
    widths do not follow (the layers' own forward raises the shape error), or the blocked
    products are not available."""
    if not K_blas.AVAILABLE or not fusion_plan:
        return None
    stages = []
    for m, fused in fusion_plan:
        st = _stage(m, fused)
        if st is False:
            return None
        if st is not None:
            stages.append(st)
    if not stages or not any(s.has_params for s in stages):
        return None
    dts = {s.layer.dtype for s in stages if type(s) in (_LinearStage, _BatchNormStage,
                                                        _PReLUStage)}
    if len(dts) != 1:
        return None
    # Each stage's input width: a stage without its own sizes keeps its input's.
    first = next((s.in_features for s in stages if s.in_features is not None), None)
    if first is None:  # only PReLU stages: widths unknown
        return None
    widths, width = [], first
    for s in stages:
        if s.in_features is not None and s.in_features != width:
            return None
        if type(s) is _PReLUStage and s.layer.num_parameters not in (1, width):
            return None
        widths.append(width)
        width = s.out_features if s.out_features is not None else width
    return _Chain(stages, dts.pop(), widths, width)


def chain_forward(chain: _Chain, x) -> Tensor | None:
    """The chain's output as one graph node, or None when this call does not qualify (see
    the module docstring); then the caller runs the layers one by one, which validates the
    input and gives the same numbers."""
    dt = chain.dtype
    input_grad = False
    if isinstance(x, Tensor):
        input_grad = x.requires_grad  # (grad mode is on: Sequential.forward checked)
        X = x.data
    elif isinstance(x, np.ndarray):
        X = x
    else:
        return None
    if not (X.ndim == 2 and X.dtype == dt and X.flags.c_contiguous
            and X.shape[1] == chain.in_features and X.shape[0] >= chain.n_min):
        return None
    stages = chain.stages
    if chain.only_linear and not input_grad:
        params = _linear_ready(chain)
        if params is None:
            return None
        plan = chain.plan(X.shape[0])
        return _linear_chain(chain, plan, X, chain.outputs.get("y", plan.out_shape, dt),
                             params)
    params: list = []
    for st in stages:
        if not st.ready(dt, params):
            return None
    n = X.shape[0]
    plan = chain.plan(n, input_grad)
    y = chain.outputs.get("y", plan.out_shape, dt)
    sps = plan.stages
    # Each stage's input, and what its backward needs of its forward (the weight as it was,
    # gamma), so that a parameter the user replaces in between changes nothing.
    inputs, saved = [], []
    h, last = X, len(stages) - 1
    for i, st in enumerate(stages):
        s = sps[i]
        out = s.y if i < last else y
        inputs.append(h)
        saved.append(st.forward(h, s, out))
        h = out
    first = chain.first_param
    if input_grad:
        first = 1 if type(stages[0]) is _LinearStage else 0

    def backward(g):
        g = np.ascontiguousarray(g).reshape(plan.out_shape)
        for i in range(last, first - 1, -1):
            g = stages[i].backward(g, inputs[i], sps[i], saved[i])
        if input_grad:
            if first:  # a Linear first: its input gradient goes straight into an array of
                # the chain's pool (one nobody holds), which the input keeps or adds
                dx = chain.outputs.get("dx", X.shape, dt)
                g = stages[0].backward(g, X, sps[0], saved[0], dx)
                owned = True
            else:  # the plan's array (overwritten by the next step): the input copies it
                owned = False
            if x.requires_grad:
                x.accumulate_grad(g, owned=owned)

    out = node(y, (x, *params) if input_grad else tuple(params), chain.op)
    out.set_backward(backward)
    return out


def _linear_ready(chain: _Chain):
    """The parameters of a chain of Linear layers as a tuple, or None when a layer does not
    qualify. The full checks (``_LinearStage.ready``) run when something changed since the
    last call that passed them: a hook, a replaced Parameter or array, requires_grad."""
    seen = chain.checked
    if seen is not None:
        for lin, W, b, Wd, bd in seen[0]:
            if lin._hooks is not None or lin.weight is not W or lin.bias is not b \
                    or W.data is not Wd or not W.requires_grad:
                break
            if b is not None and (b.data is not bd or not b.requires_grad):
                break
        else:
            return seen[1]
    params: list = []
    dt = chain.dtype
    for st in chain.stages:
        if not st.ready(dt, params):
            chain.checked = None
            return None
    layers = tuple((st.layer, st.layer.weight, st.layer.bias, st.layer.weight.data,
                    st.layer.bias.data if st.layer.bias is not None else None)
                   for st in chain.stages)
    chain.checked = (layers, tuple(params))
    chain.generation += 1
    return chain.checked[1]


def _linear_chain(chain: _Chain, plan: _Plan, X, y, params) -> Tensor:
    """A chain of Linear layers only: ``planned_forward`` per layer, and ``planned_backward``
    per layer when every gradient goes where it is written (no earlier contribution to add
    to). The calls' argument tuples are kept between calls (per plan) while the parameters'
    arrays stay the same."""
    stages, sps, dt = chain.stages, plan.stages, chain.dtype
    if plan.linear is None:  # the parts of the calls' arguments that stay
        fwd_fixed, bwd_fixed = [], []
        for st, s in zip(stages, sps, strict=True):
            fwd_fixed.append((int(st.code), float(st.alpha), s.d, s.partial_arg, s.parts,
                              bool(s.product_par), bool(s.pass_par)))
            sums_par, dw_parts, dw_par, dx_parts, dx_par = s.bwd
            bwd_fixed.append((s.dz, s.partial_b, s.dx_arg, bool(sums_par), int(dw_parts),
                              bool(dw_par), int(dx_parts), bool(dx_par)))
        plan.linear = (fwd_fixed, bwd_fixed, [], [None])
    fwd_fixed, bwd_fixed, fwd_kept, bwd_kept = plan.linear
    last = len(stages) - 1
    # Kept: every layer's tuple but the last's, whose output array changes (the chain's
    # pool's: holding it here would keep the pool from reusing it).
    if fwd_kept and fwd_kept[0] == chain.generation:
        head, tail = fwd_kept[1], fwd_kept[2]
    else:
        fwd = []
        for i, st in enumerate(stages):
            lin = st.layer
            b = lin.bias
            code, alpha, d, partial, parts, product_par, pass_par = fwd_fixed[i]
            fwd.append((lin.weight.data, b.data if b is not None else empty_marker(dt), code,
                        alpha, sps[i].y, d, partial, parts, product_par, pass_par))
        head, tail = tuple(fwd[:-1]), fwd[-1][:4] + fwd[-1][5:]
        fwd_kept[:] = [chain.generation, head, tail]
    fwd = (*head, (*tail[:4], y, *tail[4:]))
    h = X
    for args in fwd:
        K_dense.planned_forward(h, *args)
        h = args[4]
    out = node(y, params, chain.op)
    generation = chain.generation

    def backward(g):
        g = np.ascontiguousarray(g).reshape(plan.out_shape)
        if g.dtype == dt and g.flags.writeable:
            bwd = bwd_kept[0]
            if bwd is not None and bwd[0] == generation:
                # the steady state: every gradient None, to go into its parameter's buffer
                homes = bwd[1]
                for p, home in zip(params, homes):  # noqa: B905 (same length)
                    if p.grad is not None or p.grad_buffer is not home \
                            or not p.requires_grad:
                        break
                else:
                    for p, home in zip(params, homes):  # noqa: B905
                        p.grad = home
                        p._zeroed_grad = None
                    _linear_backward(g, X, fwd, bwd[2])
                    return
            if all(p.requires_grad and _fresh(p) for p in params):
                # every gradient is written where it goes: the whole backward in one call
                at_home = all(p.grad is None and p.grad_buffer is not None for p in params)
                bwd = []
                for i, st in enumerate(stages):
                    lin = st.layer
                    dW = lin.weight.grad_destination()[0]
                    db = lin.bias.grad_destination()[0] if lin.bias is not None \
                        else empty_marker(dt)
                    dz, partial_b, dx, sums_par, dw_parts, dw_par, dx_parts, dx_par = \
                        bwd_fixed[i]
                    bwd.append((dz, partial_b, dx, dW, db, sums_par, dw_parts, dw_par,
                                dx_parts, dx_par))
                bwd = tuple(bwd)
                if at_home:
                    bwd_kept[0] = (generation, tuple(p.grad for p in params), bwd)
                _linear_backward(g, X, fwd, bwd)
                return
        weights = [f[0] for f in fwd]
        for i in range(last, -1, -1):  # some gradient to add to: layer by layer
            g = stages[i].backward(g, sps[i - 1].y if i else X, sps[i], weights[i])

    out.set_backward(backward)
    return out


def _linear_backward(g, X, fwd, bwd) -> None:
    """Every Linear layer's ``planned_backward`` from the last to the first: ``fwd[i]`` and
    ``bwd[i]`` are layer i's arguments (``planned_forward``'s after its input;
    ``planned_backward``'s after dy, d, x, W)."""
    for i in range(len(fwd) - 1, 0, -1):
        f = fwd[i]
        K_dense.planned_backward(g, f[5], fwd[i - 1][4], f[0], *bwd[i])
        g = bwd[i][2]
    f = fwd[0]
    K_dense.planned_backward(g, f[5], X, f[0], *bwd[0])


def _fresh(p: Parameter) -> bool:
    """Whether ``p.grad_destination()`` would hand out an array to write the gradient into
    (no earlier contribution to add to)."""
    return p.grad is None or p._zeroed_grad is p.grad


_Chain.forward = chain_forward  # (a method without a frame of its own)
_module.CHAIN["make"] = make_chain  # what Sequential.forward calls (see module.CHAIN)
