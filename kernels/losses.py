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
- softmax cross-entropy with PyTorch's options (``cross_entropy_options``): class weights w
  (C,), an ``ignore_index`` and label smoothing eps. With logp = log_softmax(z_i),
  loss_i = -sum_j a_ij logp_ij, a_ij = (1 - eps) w_y [j == y] + (eps / C) w_j (y = y_i), and
  dloss_i/dz_ij = A_i p_ij - a_ij with A_i = sum_j a_ij; ignored rows give 0. The mean divides
  by sum_i w_(y_i) over the rows not ignored (PyTorch's normalisation).
- soft-target cross-entropy (``cross_entropy_probs``): targets t (N, C) of probabilities,
  a_ij = w_j ((1 - eps) t_ij + eps / C), the same loss and gradient; the mean divides by N.
- negative log-likelihood (``nll``): loss_i = -w_y x_i,y of log-probabilities x, gradient
  -w_y at (i, y) and 0 elsewhere; weights, ignore_index and the mean as above.

Elementwise losses over flat (n,) arrays, r = p - t; each writes ``scale * dloss_k/dp_k``
(scale = 1/n for a mean, 1 for a sum or per-element losses) and, when given an (n,)
``loss_out``, the per-element losses; each returns the sum of the losses:

- mean squared error: loss = r^2, dloss/dp = 2 r.
- L1: loss = |r|, dloss/dp = sign(r) (0 at r = 0, as PyTorch).
- Huber / smooth L1 (``huber``): with q(r) = r^2 / 2 if |r| < delta else delta (|r| - delta/2),
  loss = q(r) / beta, dloss/dp = (r if |r| < delta else delta sign(r)) / beta. PyTorch's
  huber_loss is beta = 1; smooth_l1_loss(beta) is delta = beta.
- binary cross-entropy with logits: loss = w [(1 - t) z + (1 + (pw - 1) t) softplus(-z)],
  dloss/dz = w [(1 - t) - (1 + (pw - 1) t) sigmoid(-z)], which is w (sigmoid(z) - t) without
  a pos_weight pw; softplus(-z) = max(-z, 0) + log(1 + exp(-|z|)), finite for any |z|.
- binary cross-entropy of probabilities p in [0, 1]: loss = -w [t log p + (1 - t) log(1 - p)]
  with each log clamped at -100, dloss/dp = w (p - t) / max(p (1 - p), 1e-12) (PyTorch's).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import ROWS_PER_CHUNK, jit, kernel
from ._jit import row_chunks as n_chunks  # noqa: F401  (rows of the ``partial`` scratch)
from ._typed import typed
from .activations import sigmoid_point


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


@jit
def _labels_and_weight_total(labels, weight, c, ignore_index):
    """(index of the first label outside [0, C) that is not ``ignore_index``, or -1; the
    sum of the weights w_(y_i) of the rows not ignored, serially and in order)."""
    has_w = weight.shape[0] == c
    bad = -1
    w_total = 0.0
    for i in range(labels.shape[0]):
        label = labels[i]
        if label == ignore_index:
            continue
        if label < 0 or label >= c:
            if bad < 0:
                bad = i
            continue
        w_total += weight[label] if has_w else 1.0
    return bad, w_total


@kernel
def cross_entropy_options(logits, labels, weight, ignore_index, smoothing, mean, dlogits,
                          loss_rows, partial):
    """Softmax cross-entropy of (N, C) logits against int labels (N,), with class weights,
    an ignored label and label smoothing (the formulas above), and its gradient.

    weight (C,), or (0,) for none. ignore_index: rows with this label contribute nothing.
    smoothing: eps in [0, 1]. mean: scale the gradient by 1 / sum of the rows' weights.
    dlogits (N, C) receives the gradient (scaled when ``mean``); loss_rows (N,) receives the
    per-row losses, or is (0,) to skip. partial (n_chunks(N),) float64 scratch.
    Returns (index of the first label outside [0, C) that is not ``ignore_index``, or -1;
    the sum of the row losses; the sum of the rows' weights w_(y_i) over rows not ignored).
    The weights are summed first, serially and in order (O(N)); then rows in parallel chunks.
    """
    n, c = logits.shape
    has_w = weight.shape[0] == c
    store = loss_rows.shape[0] == n
    bad, w_total = _labels_and_weight_total(labels, weight, c, ignore_index)
    if bad >= 0:
        return bad, 0.0, w_total
    w_sum = 0.0  # sum_j w_j, the smoothing term's total weight
    for j in range(c):
        w_sum += weight[j] if has_w else 1.0
    scale = 1.0 / w_total if mean else 1.0
    keep = 1.0 - smoothing
    spread = smoothing / c
    zero = typed(logits[0, 0], 0.0)
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            label = labels[i]
            if label == ignore_index:
                for j in range(c):
                    dlogits[i, j] = zero
                if store:
                    loss_rows[i] = zero
                continue
            top = logits[i, 0]
            for j in range(1, c):
                top = max(top, logits[i, j])
            s = 0.0
            for j in range(c):
                s += np.exp(np.float64(logits[i, j] - top))
            log_s = np.log(s) + top  # logsumexp: logp_ij = z_ij - log_s
            w_y = weight[label] if has_w else 1.0
            big_a = keep * w_y + spread * w_sum
            row = 0.0
            for j in range(c):
                w_j = weight[j] if has_w else 1.0
                a = spread * w_j + (keep * w_y if j == label else 0.0)
                logp = logits[i, j] - log_s
                row -= a * logp
                dlogits[i, j] = (big_a * np.exp(logp) - a) * scale
            if store:
                loss_rows[i] = row
            total += row
        partial[k] = total
    return -1, _ordered_sum(partial), w_total


@kernel
def cross_entropy_probs(logits, targets, weight, smoothing, scale, dlogits, loss_rows, partial):
    """Softmax cross-entropy of (N, C) logits against (N, C) class probabilities ``targets``,
    with class weights (C,) or (0,) and label smoothing (the formulas above).

    dlogits (N, C) receives ``scale`` times the gradient; loss_rows (N,) the row losses, or
    (0,) to skip. Returns the sum of the row losses. Parallel over row chunks.
    """
    n, c = logits.shape
    has_w = weight.shape[0] == c
    store = loss_rows.shape[0] == n
    keep = 1.0 - smoothing
    spread = smoothing / c
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            top = logits[i, 0]
            for j in range(1, c):
                top = max(top, logits[i, j])
            s = 0.0
            big_a = 0.0
            for j in range(c):
                s += np.exp(np.float64(logits[i, j] - top))
                big_a += (weight[j] if has_w else 1.0) * (keep * targets[i, j] + spread)
            log_s = np.log(s) + top
            row = 0.0
            for j in range(c):
                a = (weight[j] if has_w else 1.0) * (keep * targets[i, j] + spread)
                logp = logits[i, j] - log_s
                row -= a * logp
                dlogits[i, j] = (big_a * np.exp(logp) - a) * scale
            if store:
                loss_rows[i] = row
            total += row
        partial[k] = total
    return _ordered_sum(partial)


@kernel
def nll(logp, labels, weight, ignore_index, mean, dlogp, loss_rows, partial):
    """Negative log-likelihood of (N, C) log-probabilities against int labels (N,).

    loss_i = -w_y logp_i,y (0 for rows labelled ``ignore_index``); dlogp (N, C) receives the
    gradient (-w_y at (i, y), scaled by 1 / sum of the weights when ``mean``; 0 elsewhere);
    weight (C,) or (0,); loss_rows (N,) or (0,). Returns (first bad label index or -1, sum
    of the row losses, sum of the weights of the rows not ignored). Parallel over row chunks.
    """
    n, c = logp.shape
    has_w = weight.shape[0] == c
    store = loss_rows.shape[0] == n
    bad, w_total = _labels_and_weight_total(labels, weight, c, ignore_index)
    if bad >= 0:
        return bad, 0.0, w_total
    scale = 1.0 / w_total if mean else 1.0
    zero = typed(logp[0, 0], 0.0)
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            for j in range(c):
                dlogp[i, j] = zero
            label = labels[i]
            row = 0.0
            if label != ignore_index:
                w_y = weight[label] if has_w else 1.0
                row = -w_y * logp[i, label]
                dlogp[i, label] = -w_y * scale
            if store:
                loss_rows[i] = row
            total += row
        partial[k] = total
    return -1, _ordered_sum(partial), w_total


@kernel
def mse(pred, target, scale, dpred, loss_out, partial):
    """Squared error over flat (n,) arrays: dpred = scale * 2 (pred - target); loss_out (n,)
    receives (pred - target)^2, or is (0,) to skip. Returns the sum of squared errors (chunk
    sums added in order). Parallel over chunks of elements."""
    n = pred.shape[0]
    store = loss_out.shape[0] == n
    two_scale = typed(pred[0], 2.0 * scale)
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            r = pred[i] - target[i]
            total += r * r
            dpred[i] = two_scale * r
            if store:
                loss_out[i] = r * r
        partial[k] = total
    return _ordered_sum(partial)


@kernel
def l1(pred, target, scale, dpred, loss_out, partial):
    """Absolute error over flat (n,) arrays: dpred = scale * sign(pred - target) (0 where they
    are equal); loss_out (n,) or (0,). Returns the sum of |pred - target|. Parallel over
    chunks of elements."""
    n = pred.shape[0]
    store = loss_out.shape[0] == n
    s = typed(pred[0], scale)
    zero = typed(pred[0], 0.0)
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            r = pred[i] - target[i]
            a = abs(r)
            total += a
            dpred[i] = s if r > zero else (-s if r < zero else zero)
            if store:
                loss_out[i] = a
        partial[k] = total
    return _ordered_sum(partial)


@kernel
def huber(pred, target, delta, inv_beta, scale, dpred, loss_out, partial):
    """Huber loss over flat (n,) arrays, divided by beta (``inv_beta`` = 1 / beta):
    q(r) / beta with q(r) = r^2/2 if |r| < delta else delta (|r| - delta/2); dpred = scale *
    (r if |r| < delta else delta sign(r)) / beta. loss_out (n,) or (0,). Returns the sum of
    the losses. Parallel over chunks of elements."""
    n = pred.shape[0]
    store = loss_out.shape[0] == n
    d = typed(pred[0], delta)
    half = typed(pred[0], 0.5)
    ib = typed(pred[0], inv_beta)
    g_scale = typed(pred[0], scale * inv_beta)
    zero = typed(pred[0], 0.0)
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            r = pred[i] - target[i]
            a = abs(r)
            if a < d:
                loss = half * r * r * ib
                g = r
            else:
                loss = d * (a - half * d) * ib
                g = d if r > zero else -d
            total += loss
            dpred[i] = g_scale * g
            if store:
                loss_out[i] = loss
        partial[k] = total
    return _ordered_sum(partial)


@kernel
def bce_with_logits(logits, target, weight, pos_weight, scale, dlogits, loss_out, partial):
    """Binary cross-entropy of flat (n,) logits against targets in [0, 1], stable for any
    logit; weight and pos_weight are (n,) (broadcast by the caller) or (0,) for none.

    dlogits = scale * dloss/dz; loss_out (n,) or (0,). Returns the sum of the losses.
    Parallel over chunks of elements."""
    n = logits.shape[0]
    store = loss_out.shape[0] == n
    has_w = weight.shape[0] == n
    has_pw = pos_weight.shape[0] == n
    s = typed(logits[0], scale)
    zero = typed(logits[0], 0.0)
    one = typed(logits[0], 1.0)
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            z = logits[i]
            t = target[i]
            if has_pw:
                lw = one + (pos_weight[i] - one) * t
                loss = (one - t) * z + lw * (max(-z, zero) + np.log1p(np.exp(-abs(z))))
                g = (one - t) - lw * sigmoid_point(-z)
            else:
                loss = max(z, zero) - z * t + np.log1p(np.exp(-abs(z)))
                g = sigmoid_point(z) - t
            if has_w:
                loss *= weight[i]
                g *= weight[i]
            total += loss
            dlogits[i] = s * g
            if store:
                loss_out[i] = loss
        partial[k] = total
    return _ordered_sum(partial)


@kernel
def bce(probs, target, weight, scale, dprobs, loss_out, partial):
    """Binary cross-entropy of flat (n,) probabilities in [0, 1] against targets, PyTorch's
    clamped form (the formulas above); weight (n,) or (0,).

    dprobs = scale * dloss/dp; loss_out (n,) or (0,). Returns (index of the first element
    whose input or target is outside [0, 1] or NaN, or -1; the sum of the losses). Parallel
    over chunks of elements.
    """
    n = probs.shape[0]
    store = loss_out.shape[0] == n
    has_w = weight.shape[0] == n
    s = typed(probs[0], scale)
    zero = typed(probs[0], 0.0)
    one = typed(probs[0], 1.0)
    floor = typed(probs[0], -100.0)
    tiny = typed(probs[0], 1e-12)
    bad = n
    for k in prange(partial.shape[0]):
        total = 0.0
        for i in range(k * ROWS_PER_CHUNK, min(n, (k + 1) * ROWS_PER_CHUNK)):
            p = probs[i]
            t = target[i]
            if not (p >= zero and p <= one and t >= zero and t <= one):
                bad = min(bad, i)
                continue
            loss = -(t * max(np.log(p), floor) + (one - t) * max(np.log1p(-p), floor))
            g = (p - t) / max(p * (one - p), tiny)
            if has_w:
                loss *= weight[i]
                g *= weight[i]
            total += loss
            dprobs[i] = s * g
            if store:
                loss_out[i] = loss
        partial[k] = total
    return (bad if bad < n else -1), _ordered_sum(partial)


@jit
def count_argmax_hits(scores, labels):
    """How many rows i of scores (N, C) have their largest entry at labels[i] (N,): NumPy's
    ``(scores.argmax(axis=1) == labels).sum()``, whose argmax is the first largest entry
    and the first NaN of a row that has one. Serial: a training step's outputs are small,
    and a pass over them is cheaper than waking the pool."""
    n, c = scores.shape
    hits = 0
    for i in range(n):
        best = scores[i, 0]
        at = 0
        if not np.isnan(best):
            for j in range(1, c):
                v = scores[i, j]
                if np.isnan(v):
                    at = j
                    break
                if v > best:
                    best, at = v, j
        if at == labels[i]:
            hits += 1
    return hits
