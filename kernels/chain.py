"""A chain of dense layers under a softmax cross-entropy: forward, loss and backward of a
training step in one call.

A compiled training step (``fastnn.compiled``) of a plain MLP runs, per batch, one
``planned_forward`` per layer, the loss kernel, then one ``planned_backward`` per layer.
Called one by one from Python, each of those costs a Numba dispatch (about 1.3 µs to unbox a
dozen arrays) and the Python around it (measured on a (2, 2) network, whose kernels do almost
nothing: 47 µs a step one by one, 34 µs as here). :func:`dense_chain_step` makes exactly the
same calls, in the same order and on the same buffers, from one compiled loop: the same bits.

The per-layer arguments come as two tuples of per-layer tuples, built once per batch size by
the plan; every layer's tuple has the same Numba type, so that a loop can index them:

- ``fwd[i] = (W, b, code, alpha, y, d, partial, parts, product_parallel, pass_parallel)``,
  ``planned_forward``'s arguments after ``x``: W (D_i, M_i), b (M_i,) or (0,), y and d
  (N, M_i), partial (P - 1, N, M_i) or (0, 1, 1);
- ``bwd[i] = (dz, partial, dx, dW, db, sums_parallel, dw_parts, dw_parallel, dx_parts,
  dx_parallel)``, ``planned_backward``'s arguments after ``dy, d, x, W`` (d and W are the
  forward's): dx (N, D_i), or (0, D_i) for the first layer (no input gradient).

Tuples rather than Numba typed lists (which unbox in O(1)): making a typed list of these
tuples compiles typed-list methods in every process (this module's code comes from the disk
cache, those methods would not). The caller must have started Numba's thread pool: loaded
from the cache, this function's first call in a fresh process crashed otherwise (its
parallel callees' runtime symbols are bound when the pool starts). A tuple unboxes at
about 0.1 µs an array (measured: 1.8 µs for 20 arrays), against about 1.3 µs for each of
the seven calls this replaces.

Layer i's input is the batch x for i = 0, else layer i - 1's output ``fwd[i - 1][4]``; the
gradient reaching layer i is the loss gradient for the last layer, else layer i + 1's
``dx``.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from ._typed import typed
from .dense import planned_backward, planned_forward
from .losses import softmax_cross_entropy

_ce_serial, _ce_parallel = softmax_cross_entropy.serial, softmax_cross_entropy.parallel


@jit
def dense_chain_step(x, labels, fwd, bwd, dlogits, loss_partial, loss_parallel):
    """Forward through every layer, the mean softmax cross-entropy of the last output, and,
    when that loss is finite and every label in range, the backward of every layer.

    x (N, D_0) the batch; labels (N,) int64 class indices; fwd, bwd the layers' argument
    tuples (module docstring); dlogits (N, C) receives the loss gradient; loss_partial
    (row_chunks(N),) float64 the loss kernel's partial sums; loss_parallel picks its variant.

    Returns (bad, value): bad is the first label outside [0, C) or -1; value is the mean loss
    rounded to the dtype of x, as ``loss.item()`` gives it. The backward ran (every dW, db,
    and the dx of layers after the first, written) only when bad is -1 and value is finite.
    """
    n_layers = len(fwd)
    W, b, code, alpha, y, d, partial, parts, product_parallel, pass_parallel = fwd[0]
    planned_forward(x, W, b, code, alpha, y, d, partial, parts, product_parallel, pass_parallel)
    for i in range(1, n_layers):
        W, b, code, alpha, y, d, partial, parts, product_parallel, pass_parallel = fwd[i]
        planned_forward(fwd[i - 1][4], W, b, code, alpha, y, d, partial, parts,
                        product_parallel, pass_parallel)
    logits = fwd[n_layers - 1][4]
    if loss_parallel:
        bad, total = _ce_parallel(logits, labels, dlogits, loss_partial)
    else:
        bad, total = _ce_serial(logits, labels, dlogits, loss_partial)
    value = typed(logits[0, 0], total / logits.shape[0])
    if bad >= 0 or not np.isfinite(value):
        return bad, np.float64(value)
    g = dlogits
    for i in range(n_layers - 1, 0, -1):
        dz, partial_b, dx, dW, db, sums_par, dw_parts, dw_par, dx_parts, dx_par = bwd[i]
        planned_backward(g, fwd[i][5], fwd[i - 1][4], fwd[i][0], dz, partial_b, dx, dW, db,
                         sums_par, dw_parts, dw_par, dx_parts, dx_par)
        g = dx
    dz, partial_b, dx, dW, db, sums_par, dw_parts, dw_par, dx_parts, dx_par = bwd[0]
    planned_backward(g, fwd[0][5], x, fwd[0][0], dz, partial_b, dx, dW, db, sums_par,
                     dw_parts, dw_par, dx_parts, dx_par)
    return bad, np.float64(value)
