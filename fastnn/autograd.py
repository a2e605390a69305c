"""PyTorch's ``torch.autograd`` paths on fastnn's graph: :func:`grad`, :func:`backward`, and
the grad-mode switches (``no_grad``, ``enable_grad``, ``set_grad_enabled``,
``inference_mode``).

Both functions run the same backward walk as ``Tensor.backward`` (``graph.run_backward``),
with PyTorch's rules for ``retain_graph`` (the graph's saved values are freed after the walk
unless it is True) and ``create_graph`` (not available: NotImplementedError).
"""

from __future__ import annotations

import numpy as np

from .gradcheck import gradcheck
from .graph import (
    Tensor,
    _as_tensor_list,
    _leaves,
    _topological_order,
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    run_backward,
    set_grad_enabled,
)

__all__ = ["backward", "enable_grad", "grad", "gradcheck", "inference_mode",
           "is_grad_enabled", "no_grad", "set_grad_enabled"]


def _gradients(outputs: list[Tensor], grad_outputs) -> list:
    if grad_outputs is None:
        return [None] * len(outputs)
    grads = [grad_outputs] if isinstance(grad_outputs, Tensor) or not isinstance(
        grad_outputs, (list, tuple)) else list(grad_outputs)
    if len(grads) != len(outputs):
        raise RuntimeError(f"grad_outputs has {len(grads)} entries, but outputs has "
                           f"{len(outputs)}")
    return grads


def backward(tensors, grad_tensors=None, retain_graph: bool | None = None,
             create_graph: bool = False, inputs=None) -> None:
    """``torch.autograd.backward``: the sum of several ``t.backward(g)`` in one walk (each
    shared node's backward runs once)."""
    roots = _as_tensor_list(tensors, "backward(tensors)")
    run_backward(roots, _gradients(roots, grad_tensors), retain_graph, create_graph, inputs)


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool | None = None,
         materialize_grads: bool = False) -> tuple:
    """d(outputs)/d(inputs), returned as a tuple of arrays, without touching any ``.grad``
    (``torch.autograd.grad``).

    Parameters
    ----------
    outputs : Tensor or sequence of Tensors (one-element ones need no ``grad_outputs``).
    inputs : Tensor or sequence of Tensors that require grad.
    grad_outputs : the gradients to seed each output with (None: 1 for a scalar).
    retain_graph : keep the graph for another backward (default False).
    create_graph : must be False (NotImplementedError: no higher-order derivatives).
    allow_unused : return None for an input the outputs do not depend on (else
        RuntimeError); ``materialize_grads=True`` returns zeros instead.

    Returns
    -------
    tuple of ndarray (or None), one per input, shaped as the input.
    """
    if create_graph:
        run_backward([], [], create_graph=True)  # raises NotImplementedError, saying why
    outs = _as_tensor_list(outputs, "grad(outputs)")
    ins = _as_tensor_list(inputs, "grad(inputs)")
    if not ins:
        raise RuntimeError("grad requires non-empty inputs.")
    for t in ins:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    if allow_unused is None:
        allow_unused = materialize_grads
    # Every leaf's gradient state is put aside for the walk, so that nothing accumulates
    # into a .grad (or into an optimizer's flat gradient buffer) and the inputs' gradients
    # start from None; then it is all put back.
    order = _topological_order(outs)
    saved = []
    for t in _leaves(order, outs):
        state = [t.grad]
        t.grad = None
        if hasattr(t, "grad_buffer"):  # a Parameter: its gradient's home in the flat buffer
            state += [t.grad_buffer, t._zeroed_grad]
            t.grad_buffer, t._zeroed_grad = None, None
        saved.append((t, state))
    kept = {id(t): t.grad for t in ins if t._backward is not None}  # non-leaf inputs
    try:
        run_backward(outs, _gradients(outs, grad_outputs), retain_graph, False, ins)
        result = tuple(t.grad for t in ins)
    finally:
        for t, state in saved:
            t.grad = state[0]
            if len(state) > 1:
                t.grad_buffer, t._zeroed_grad = state[1], state[2]
        for t in ins:
            if id(t) in kept:
                t.grad = kept[id(t)]
    if any(g is None for g in result):
        if not allow_unused:
            raise RuntimeError("One of the differentiated Tensors appears to not have been "
                               "used in the graph. Set allow_unused=True if this is the "
                               "desired behavior.")
        if materialize_grads:
            result = tuple(np.zeros_like(t.data) if g is None else g
                           for t, g in zip(ins, result, strict=True))
    return result


def __getattr__(name: str):
    hints = {
        "Function": "fastnn has no custom autograd Functions; add an operation with "
                    "fastnn.graph.node(data, parents, op) and out.set_backward(fn)",
        "Variable": "use fnn.Tensor(data, requires_grad=True)",
        "functional": "fastnn has no jacobian/hessian helpers; fnn.autograd.grad gives first "
                      "derivatives",
        "forward_ad": "fastnn has reverse mode only (backward, fnn.autograd.grad)",
        "profiler": "see fastnn.profile",
        "detect_anomaly": "fastnn stops training on a NaN or Inf loss; fnn.gradcheck checks "
                          "gradients",
        "set_detect_anomaly": "fastnn stops training on a NaN or Inf loss; fnn.gradcheck "
                              "checks gradients",
    }
    if name in hints:
        raise AttributeError(f"fastnn.autograd has no {name!r}: {hints[name]}")
    raise AttributeError(f"module 'fastnn.autograd' has no attribute {name!r}")
