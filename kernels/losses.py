"""Losses: each kernel computes the loss and its gradient together, in one pass.

All losses are means over the batch, and each kernel writes d(loss)/d(input) into a buffer
it is handed (the local gradient the backward pass multiplies by the incoming scalar).
Per-row losses are summed over fixed chunks of rows and the chunk sums added in order, so
the value does not depend on the thread count. Label checks happen in the same pass: a kernel
returns the index of the first bad label (or -1), and the caller raises.

Formulas (N rows, C classes, y_i the label of row i):

- softmax cross-entropy: L = (1/N) sum_i [logsumexp(z_i) - z_i,y_i],
  dL/dz_ij = (softmax(z_i)_j - [j == y_i]) / N. Stable: exp only of z - max(z).
- multiclass hinge (the SVM loss): L = (1/N) sum_i sum_{j != y_i} max(0, z_ij - z_i,y_i + margin),
  dL/dz_ij = [margin term of j > 0] / N for j != y_i and -(number of such j) / N for y_i.
- mean squared error: L = (1/n) sum_k (p_k - t_k)^2, dL/dp = 2 (p - t) / n over all n elements.
- binary cross-entropy with logits: L = (1/n) sum_k [max(z,0) - z t + log(1 + exp(-|z|))],
  dL/dz = (sigmoid(z) - t) / n: finite for any |z|.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import jit, kernel
from ._typed import typed
from .activations import sigmoid_point

ROWS_PER_CHUNK = 64


def n_chunks(n_rows: int) -> int:
    """Entries of the ``partial`` scratch for ``n_rows`` rows (or elements)."""
    return max(1, (n_rows + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK)


@jit
def _ordered_sum(partial):
    """Sum of ``partial`` in index order: the same total on any number of threads."""
    total = 0.0
    for k in range(partial.shape[0]):
        total += partial[k]
    return total


@kernel
def softmax_cross_entropy(logits, labels, dlogits, partial):
    """Mean softmax cross-entropy of (N, C) logits against int labels (N,), and its gradient.

    dlogits (N, C) receives dL/dlogits; partial (n_chunks(N),) float64 receives per-chunk
    loss sums. Returns the index of the first label outside [0, C), or -1.
    Parallel over chunks of rows: rows are independent.
    """
    n, c = logits.shape
    inv_n = typed(logits[0, 0], 1.0 / n)
    bad = n
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            label = labels[i]
            if label < 0 or label >= c:
                bad = min(bad, i)
                continue
            top = logits[i, 0]
            for j in range(1, c):
                top = max(top, logits[i, j])
            s = typed(top, 0.0)
            for j in range(c):
                e = np.exp(logits[i, j] - top)
                dlogits[i, j] = e
                s += e
            inv_s = typed(top, 1.0) / s
            for j in range(c):
                dlogits[i, j] *= inv_s * inv_n
            dlogits[i, label] -= inv_n
            total += np.log(s) + top - logits[i, label]
        partial[k] = total
    return (bad if bad < n else -1), _ordered_sum(partial)


@kernel
def multiclass_hinge(scores, labels, margin, dscores, partial):
    """Mean multiclass hinge loss of (N, C) scores, and its gradient into dscores (N, C).

    Returns (index of the first label outside [0, C) or -1, sum of the per-row losses).
    Parallel over row chunks.
    """
    n, c = scores.shape
    inv_n = typed(scores[0, 0], 1.0 / n)
    zero = typed(scores[0, 0], 0.0)
    bad = n
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            label = labels[i]
            if label < 0 or label >= c:
                bad = min(bad, i)
                continue
            correct = scores[i, label]
            count = 0
            for j in range(c):
                if j == label:
                    continue
                m = scores[i, j] - correct + margin
                if m > 0:
                    total += m
                    dscores[i, j] = inv_n
                    count += 1
                else:
                    dscores[i, j] = zero
            dscores[i, label] = -count * inv_n
        partial[k] = total
    return (bad if bad < n else -1), _ordered_sum(partial)


@kernel
def mse(pred, target, dpred, partial):
    """Mean squared error over flat (n,) arrays; dpred = 2 (pred - target) / n.

    Returns the sum of squared errors (chunk sums added in order)."""
    n = pred.shape[0]
    two_over_n = typed(pred[0], 2.0 / n)
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            r = pred[i] - target[i]
            total += r * r
            dpred[i] = two_over_n * r
        partial[k] = total
    return _ordered_sum(partial)


@kernel
def bce_with_logits(logits, target, dlogits, partial):
    """Mean binary cross-entropy of flat (n,) logits against targets in [0, 1]; stable.

    Returns the sum of the per-element losses (chunk sums added in order)."""
    n = logits.shape[0]
    inv_n = typed(logits[0], 1.0 / n)
    zero = typed(logits[0], 0.0)
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            z = logits[i]
            t = target[i]
            total += max(z, zero) - z * t + np.log1p(np.exp(-abs(z)))
            dlogits[i] = (sigmoid_point(z) - t) * inv_n
        partial[k] = total
    return _ordered_sum(partial)
