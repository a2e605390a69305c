"""Batch normalization over the batch axis of (N, C) data, with a fused activation.

Training forward (PyTorch's BatchNorm1d):

    mean_j  = (1/N) sum_i x_ij
    var_j   = (1/N) sum_i (x_ij - mean_j)^2             (biased: used to normalize)
    inv_j   = 1 / sqrt(var_j + eps)
    xhat_ij = (x_ij - mean_j) * inv_j
    y_ij    = act(gamma_j xhat_ij + beta_j),  d_ij = act'(gamma_j xhat_ij + beta_j)
    running_mean <- (1 - momentum) running_mean + momentum mean
    running_var  <- (1 - momentum) running_var  + momentum var * N / (N - 1)   (unbiased)

Two passes over x: the first accumulates shifted sums (shifted by the first row, which keeps
the variance accurate when |mean| >> std), the second normalizes and writes y, xhat, d.

Backward, with dz = dy * d (the activation's chain rule) and dxhat = gamma * dz:

    dbeta_j  = sum_i dz_ij
    dgamma_j = sum_i dz_ij xhat_ij
    dx_ij    = inv_j / N * (N dxhat_ij - gamma_j dbeta_j - xhat_ij gamma_j dgamma_j)

one pass for the two column sums and one for dx, in one kernel call.

Shapes: x, y, xhat, d, dy, dx (N, C); gamma, beta, mean, inv_std, running_* (C,);
partial (n_chunks(N), 2, C) scratch. Reductions run over fixed chunks of rows whose
partial sums are added in chunk order: the result does not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import ROWS_PER_CHUNK, jit, kernel
from ._jit import row_chunks as n_chunks  # noqa: F401  (rows of the ``partial`` scratch)
from ._typed import typed
from .activations import IDENTITY, activation_row

# The column reductions below take four rows per sweep over their accumulators: a sweep
# per row loads and stores both float64 accumulators for every element, which measured 2.3x
# slower (the sums of a 128x512 float32 chunk: 17.8 µs one row a sweep, 7.7 µs four).


@jit
def _shifted_sums_rows(x, shift, s0, s1):
    """s0[j] = sum_i (x_ij - shift_j), s1[j] = sum_i (x_ij - shift_j)^2 over the rows of x
    (float64), four rows at a time in a fixed order."""
    n = x.shape[0]
    s0[:] = 0.0
    s1[:] = 0.0
    i = 0
    while i + 4 <= n:
        r0, r1, r2, r3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        for j in range(s0.shape[0]):
            sh = shift[j]
            a = np.float64(r0[j]) - sh
            b = np.float64(r1[j]) - sh
            c = np.float64(r2[j]) - sh
            e = np.float64(r3[j]) - sh
            s0[j] += (a + b) + (c + e)
            s1[j] += (a * a + b * b) + (c * c + e * e)
        i += 4
    for k in range(i, n):
        row = x[k]
        for j in range(s0.shape[0]):
            v = np.float64(row[j]) - shift[j]
            s0[j] += v
            s1[j] += v * v


@kernel
def _shifted_sums(x, shift, partial):
    """partial[c, 0, j] = sum (x_ij - shift_j), partial[c, 1, j] = sum (x_ij - shift_j)^2 per
    chunk c of ROWS_PER_CHUNK rows (float64 accumulation).

    Parallel over row chunks; each chunk owns its slice of ``partial``.
    """
    n = x.shape[0]
    for c in prange(partial.shape[0]):
        lo = c * ROWS_PER_CHUNK
        _shifted_sums_rows(x[lo:min(n, lo + ROWS_PER_CHUNK)], shift, partial[c, 0],
                           partial[c, 1])


@kernel
def _normalize_activate(code, alpha, x, mean, inv_std, gamma, beta, y, xhat, d):
    """y = act(gamma * (x - mean) * inv_std + beta) and d = act'(.); xhat when it is (N, C).

    Parallel over rows: rows are independent.
    """
    n, m = x.shape
    store_xhat = xhat.shape[0] == n
    for i in prange(n):
        for j in range(m):
            h = (x[i, j] - mean[j]) * inv_std[j]
            if store_xhat:
                xhat[i, j] = h
            y[i, j] = gamma[j] * h + beta[j]
        activation_row(code, alpha, y[i], d[i])


@jit
def sum_chunks(partial, out):
    """out[k, j] = sum over chunks c, in order, of partial[c, k, j] (deterministic)."""
    out[:] = 0.0
    for c in range(partial.shape[0]):
        for k in range(partial.shape[1]):
            for j in range(partial.shape[2]):
                out[k, j] += partial[c, k, j]


@jit
def _finish_statistics(sums, n, shift, eps, momentum, running_mean, running_var, mean,
                       inv_std):
    """mean, inv_std (and the running statistics, if given) from the shifted sums."""
    update = running_mean.shape[0] == mean.shape[0]
    for j in range(mean.shape[0]):
        m1 = sums[0, j] / n
        var = max(sums[1, j] / n - m1 * m1, 0.0)  # biased variance (shift-invariant)
        mu = shift[j] + m1
        mean[j] = mu
        inv_std[j] = 1.0 / np.sqrt(var + eps)
        if update:
            running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * mu
            running_var[j] = (1.0 - momentum) * running_var[j] + momentum * n / (n - 1) * var


def batchnorm_forward_train(
    x, gamma, beta, eps, momentum, running_mean, running_var,
    code, alpha, y, xhat, d, mean, inv_std, partial, sync=None, stats=None,
) -> int:
    """Training forward: batch statistics, normalization, activation, running statistics.

    Parameters
    ----------
    x : (N, C), N >= 2. gamma, beta : (C,) (ones and zeros when not affine).
    eps, momentum : floats, PyTorch's meaning (momentum None is not supported here).
    running_mean, running_var : (C,) updated in place; pass (0,) arrays to skip.
    code, alpha : the activation fused after the affine map.
    y : (N, C) output. xhat : (N, C) normalized input kept for backward, or (0, C).
    d : (N, C) receives the activation's local gradient. mean, inv_std : (C,) outputs.
    partial : (n_chunks(N), 2, C) float64 scratch.
    sync : None, or an object with ``broadcast_(a)`` and ``allreduce_(a)`` (in place, sum)
        over the processes that share the batch (synchronized batch normalization): the
        sums are shifted by process 0's first row and added up over all processes, so the
        statistics are those of the whole batch.
    stats : optional (3, C) float64 scratch (the shift and the two sums), to allocate nothing.

    Returns
    -------
    int : the number of samples the statistics cover (N, or the total over processes).
    """
    c = x.shape[1]
    if stats is None:
        stats = np.empty((3, c))
    shift, sums = stats[0], stats[1:]
    shift[:] = x[0]
    if sync is not None:
        sync.broadcast_(shift)
    _shifted_sums(x.size)(x, shift, partial)
    sum_chunks(partial, sums)
    n = x.shape[0]
    if sync is not None:
        buf = np.append(sums.reshape(-1), float(n))
        sync.allreduce_(buf)
        sums[:], n = buf[:-1].reshape(2, -1), int(round(buf[-1]))
    if running_mean.shape[0] == 0:
        running_mean = running_var = mean[:0]
    _finish_statistics(sums, n, shift, eps, momentum, running_mean, running_var, mean, inv_std)
    _normalize_activate(x.size)(code, alpha, x, mean, inv_std, gamma, beta, y, xhat, d)
    return n


def batchnorm_forward_eval(x, gamma, beta, eps, running_mean, running_var, code, alpha, y, d):
    """Evaluation forward: y = act(gamma (x - rm) / sqrt(rv + eps) + beta), running statistics.

    x, y, d : (N, C) (d receives the activation's local gradient); the rest (C,).
    """
    inv_std = (1.0 / np.sqrt(running_var + eps)).astype(x.dtype)
    empty = y[:0]
    _normalize_activate(x.size)(
        code, alpha, x, running_mean.astype(x.dtype), inv_std, gamma, beta, y, empty, d
    )


@jit
def _column_sums_rows(dy, d, xhat, s0, s1):
    """s0[j] = sum_i dz_ij, s1[j] = sum_i dz_ij xhat_ij over the rows of dy (float64), with
    dz = dy * d, or dy when d has no rows; four rows at a time in a fixed order:
    s0[j] += (a + b) + (c + e), s1[j] += (a h0 + b h1) + (c h2 + e h3) per sweep."""
    s0[:] = 0.0
    s1[:] = 0.0
    if d.shape[0] == dy.shape[0]:
        _column_sums_rows_times_d(dy, d, xhat, s0, s1)
    else:
        _column_sums_rows_plain(dy, xhat, s0, s1)


# Two straight-line versions rather than one with ``dy * d if use_d else dy`` per element:
# the branch kept LLVM from vectorizing (measured 2x slower on 200x256 float32).
@jit
def _column_sums_rows_times_d(dy, d, xhat, s0, s1):
    n = dy.shape[0]
    i = 0
    while i + 4 <= n:
        g0, g1, g2, g3 = dy[i], dy[i + 1], dy[i + 2], dy[i + 3]
        d0, d1, d2, d3 = d[i], d[i + 1], d[i + 2], d[i + 3]
        h0, h1, h2, h3 = xhat[i], xhat[i + 1], xhat[i + 2], xhat[i + 3]
        for j in range(s0.shape[0]):
            a = np.float64(g0[j] * d0[j])
            b = np.float64(g1[j] * d1[j])
            c = np.float64(g2[j] * d2[j])
            e = np.float64(g3[j] * d3[j])
            s0[j] += (a + b) + (c + e)
            s1[j] += (a * h0[j] + b * h1[j]) + (c * h2[j] + e * h3[j])
        i += 4
    for k in range(i, n):
        gk, dk, hk = dy[k], d[k], xhat[k]
        for j in range(s0.shape[0]):
            g = np.float64(gk[j] * dk[j])
            s0[j] += g
            s1[j] += g * hk[j]


@jit
def _column_sums_rows_plain(dy, xhat, s0, s1):
    n = dy.shape[0]
    i = 0
    while i + 4 <= n:
        g0, g1, g2, g3 = dy[i], dy[i + 1], dy[i + 2], dy[i + 3]
        h0, h1, h2, h3 = xhat[i], xhat[i + 1], xhat[i + 2], xhat[i + 3]
        for j in range(s0.shape[0]):
            a = np.float64(g0[j])
            b = np.float64(g1[j])
            c = np.float64(g2[j])
            e = np.float64(g3[j])
            s0[j] += (a + b) + (c + e)
            s1[j] += (a * h0[j] + b * h1[j]) + (c * h2[j] + e * h3[j])
        i += 4
    for k in range(i, n):
        gk, hk = dy[k], xhat[k]
        for j in range(s0.shape[0]):
            g = np.float64(gk[j])
            s0[j] += g
            s1[j] += g * hk[j]


@kernel
def _column_sums(dy, d, xhat, partial):
    """Per-chunk sums of dz and dz * xhat, with dz = dy * d (or dy when d is (0, C)).

    Parallel over row chunks; each chunk owns its slice of ``partial``."""
    n = dy.shape[0]
    use_d = d.shape[0] == n
    for c in prange(partial.shape[0]):
        lo = c * ROWS_PER_CHUNK
        hi = min(n, lo + ROWS_PER_CHUNK)
        _column_sums_rows(dy[lo:hi], d[lo:hi] if use_d else d, xhat[lo:hi], partial[c, 0],
                          partial[c, 1])


@kernel
def _input_grad(dy, d, xhat, gamma, inv_std, dbeta, dgamma, n_total, dx):
    """dx = inv/N * (N gamma dz - gamma dbeta - xhat gamma dgamma), N = n_total.

    Parallel over rows."""
    n, m = dy.shape
    use_d = d.shape[0] == n
    inv_n = typed(dy[0, 0], 1.0 / n_total)
    for i in prange(n):
        for j in range(m):
            g = dy[i, j] * d[i, j] if use_d else dy[i, j]
            dx[i, j] = gamma[j] * inv_std[j] * (g - inv_n * (dbeta[j] + xhat[i, j] * dgamma[j]))


def batchnorm_backward(dy, d, xhat, gamma, inv_std, dx, dgamma, dbeta, partial,
                       sync=None, n_total=None, sums=None) -> None:
    """Gradients of the training forward.

    Parameters
    ----------
    dy : (N, C). d : (N, C) cached activation gradient, or (0, C) for none.
    xhat : (N, C) and inv_std : (C,) cached by the forward pass. gamma : (C,).
    dx : (N, C) output, or None when the input needs no gradient.
    dgamma, dbeta : (C,) outputs (always computed: dx needs them).
    partial : (n_chunks(N), 2, C) float64 scratch; sums : optional (2, C) float64 scratch.
    sync, n_total : synchronized batch normalization (see the forward pass): ``dgamma`` and
        ``dbeta`` receive this process's part (the optimizer's all-reduce adds them up),
        while ``dx`` uses the sums over all processes and their ``n_total`` samples.
    """
    _column_sums(dy.size)(dy, d, xhat, partial)
    if sums is None:
        sums = np.empty((2, dy.shape[1]))
    sum_chunks(partial, sums)
    dbeta[:] = sums[0]
    dgamma[:] = sums[1]
    if dx is None:
        return
    n = dy.shape[0] if n_total is None else n_total
    g_beta, g_gamma = dbeta, dgamma
    if sync is not None:
        sync.allreduce_(sums)
        g_beta, g_gamma = sums[0].astype(dbeta.dtype), sums[1].astype(dgamma.dtype)
    _input_grad(dy.size)(dy, d, xhat, gamma, inv_std, g_beta, g_gamma, n, dx)


# ------------------------------------------------------------------ planned calls
# A compiled training step (``fastnn.compiled``) runs a layer's training forward and its
# backward as one call each, with the serial-or-pool choice made once per batch size: the
# same kernels as ``batchnorm_forward_train`` / ``batchnorm_backward`` without ``sync``.
_sums_serial, _sums_parallel = _shifted_sums.serial, _shifted_sums.parallel
_norm_serial, _norm_parallel = _normalize_activate.serial, _normalize_activate.parallel
_colsums_serial, _colsums_parallel = _column_sums.serial, _column_sums.parallel
_dx_serial, _dx_parallel = _input_grad.serial, _input_grad.parallel


def planned_on_pool(n: int, c: int) -> bool:
    """Whether the planned calls run their passes on the pool for an (n, c) batch (the
    choice ``batchnorm_forward_train`` / ``batchnorm_backward`` make per call)."""
    return _normalize_activate(n * c) is _normalize_activate.parallel


@jit
def planned_forward_train(x, gamma, beta, eps, momentum, running_mean, running_var, code,
                          alpha, y, xhat, d, mean, inv_std, partial, stats, parallel):
    """``batchnorm_forward_train(...)`` without ``sync``, the variant given by ``parallel``;
    ``stats`` (3, C) float64 scratch; running_mean/var (0,) to skip them."""
    n = x.shape[0]
    shift, sums = stats[0], stats[1:]
    for j in range(shift.shape[0]):
        shift[j] = x[0, j]
    if parallel:
        _sums_parallel(x, shift, partial)
    else:
        _sums_serial(x, shift, partial)
    sum_chunks(partial, sums)
    if running_mean.shape[0] == 0:
        _finish_statistics(sums, n, shift, eps, momentum, mean[:0], mean[:0], mean, inv_std)
    else:
        _finish_statistics(sums, n, shift, eps, momentum, running_mean, running_var, mean,
                           inv_std)
    if parallel:
        _norm_parallel(code, alpha, x, mean, inv_std, gamma, beta, y, xhat, d)
    else:
        _norm_serial(code, alpha, x, mean, inv_std, gamma, beta, y, xhat, d)


@jit
def planned_backward(dy, d, xhat, gamma, inv_std, dx, dgamma, dbeta, partial, sums, parallel):
    """``batchnorm_backward(...)`` without ``sync`` (N = dy's rows), the variant given by
    ``parallel``; dx (0, C) to skip the input's gradient."""
    if parallel:
        _colsums_parallel(dy, d, xhat, partial)
    else:
        _colsums_serial(dy, d, xhat, partial)
    sum_chunks(partial, sums)
    for j in range(dbeta.shape[0]):
        dbeta[j] = sums[0, j]
        dgamma[j] = sums[1, j]
    if dx.shape[0] != dy.shape[0]:
        return
    if parallel:
        _dx_parallel(dy, d, xhat, gamma, inv_std, dbeta, dgamma, dy.shape[0], dx)
    else:
        _dx_serial(dy, d, xhat, gamma, inv_std, dbeta, dgamma, dy.shape[0], dx)


# ------------------------------------------------------------------ BatchNorm2d (NCHW)
# PyTorch's BatchNorm2d: the statistics of channel c run over N, H and W. The kernels below
# see x as (N, C, L), L = H * W, and keep the formulas above with M = N * L samples per
# channel. Per-image partial sums (partial (N, 2, C) float64, image n written by one
# iteration) are added in image order by ``sum_chunks``: the bits depend on N alone. Their
# summing loops store nothing (a pure reduction), so they may be reassociated (vectorized).


@kernel(reassociate=True)
def _shifted_sums_nchw(x, shift, partial):
    """partial[n, 0, c] = sum_l (x[n, c, l] - shift[c]), partial[n, 1, c] = sum_l of its
    square (float64). x (N, C, L). Parallel over images: each owns partial[n]."""
    N, C, L = x.shape
    for n in prange(N):
        for c in range(C):
            row = x[n, c]
            sh = shift[c]
            s0 = 0.0
            s1 = 0.0
            for i in range(L):
                v = np.float64(row[i]) - sh
                s0 += v
                s1 += v * v
            partial[n, 0, c] = s0
            partial[n, 1, c] = s1


@kernel
def _normalize_activate_nchw(code, alpha, x, mean, inv_std, gamma, beta, y, xhat, d):
    """y = act(gamma (x - mean) inv_std + beta); d = act'(.) and xhat when they have N
    images (else the backward recomputes them: :func:`batchnorm2d_backward_recompute`).
    x, y, d, xhat (N, C, L). Parallel over (image, channel) rows."""
    N, C, L = x.shape
    store_xhat = xhat.shape[0] == N
    store_d = d.shape[0] == N
    for t in prange(N * C):
        n = t // C
        c = t % C
        src, dst = x[n, c], y[n, c]
        drow = d[n, c] if store_d else np.empty_like(dst)
        m, s, gm, bt = mean[c], inv_std[c], gamma[c], beta[c]
        if store_xhat:
            hrow = xhat[n, c]
            for i in range(L):
                h = (src[i] - m) * s
                hrow[i] = h
                dst[i] = gm * h + bt
        else:
            for i in range(L):
                dst[i] = gm * ((src[i] - m) * s) + bt
        activation_row(code, alpha, dst, drow)


@kernel(reassociate=True)
def _column_sums_nchw(dy, d, xhat, partial):
    """partial[n, 0, c] = sum_l dz, partial[n, 1, c] = sum_l dz xhat (float64), dz = dy * d
    (dy when d has no images). dy, d, xhat (N, C, L). Parallel over images."""
    N, C, L = dy.shape
    use_d = d.shape[0] == N
    for n in prange(N):
        for c in range(C):
            g, h = dy[n, c], xhat[n, c]
            s0 = 0.0
            s1 = 0.0
            if use_d:
                dd = d[n, c]
                for i in range(L):
                    v = np.float64(g[i] * dd[i])
                    s0 += v
                    s1 += v * h[i]
            else:
                for i in range(L):
                    v = np.float64(g[i])
                    s0 += v
                    s1 += v * h[i]
            partial[n, 0, c] = s0
            partial[n, 1, c] = s1


@kernel
def _input_grad_nchw(dy, d, xhat, gamma, inv_std, dbeta, dgamma, m_total, dx):
    """dx = gamma inv_std (dz - (dbeta + xhat dgamma) / M), M = m_total samples per channel.
    Parallel over (image, channel) rows."""
    N, C, L = dy.shape
    use_d = d.shape[0] == N
    inv_m = typed(dy[0, 0, 0], 1.0 / m_total)
    for t in prange(N * C):
        n = t // C
        c = t % C
        g, h, out = dy[n, c], xhat[n, c], dx[n, c]
        scale, db, dg = gamma[c] * inv_std[c], dbeta[c], dgamma[c]
        if use_d:
            dd = d[n, c]
            for i in range(L):
                out[i] = scale * (g[i] * dd[i] - inv_m * (db + h[i] * dg))
        else:
            for i in range(L):
                out[i] = scale * (g[i] - inv_m * (db + h[i] * dg))


def batchnorm2d_forward_train(x, gamma, beta, eps, momentum, running_mean, running_var,
                              code, alpha, y, xhat, d, mean, inv_std, partial, stats) -> int:
    """Training forward of BatchNorm2d (+ activation): statistics per channel over N, H, W.

    Parameters
    ----------
    x : (N, C, L) C-contiguous (L = H * W), N * L >= 2. gamma, beta : (C,).
    eps, momentum : PyTorch's meaning (the caller turns momentum None into 1 / batches).
    running_mean, running_var : (C,) updated in place (unbiased variance); (0,) to skip.
    code, alpha : the fused activation. y : (N, C, L) output.
    d : (N, C, L) the local gradient act'(.), or (0, C, L) not to keep it.
    xhat : (N, C, L) kept for backward, or (0, C, L). With neither kept (two arrays the
        size of x fewer), :func:`batchnorm2d_backward_recompute` recomputes both from x.
    mean, inv_std : (C,) outputs.
    partial : (N, 2, C) float64 scratch. stats : (3, C) float64 scratch.

    Returns the number of samples per channel, M = N * L.
    """
    N, C, L = x.shape
    shift, sums = stats[0], stats[1:]
    shift[:] = x[0, :, 0]
    _shifted_sums_nchw(x.size)(x, shift, partial)
    sum_chunks(partial, sums)
    m = N * L
    if running_mean.shape[0] == 0:
        running_mean = running_var = mean[:0]
    _finish_statistics(sums, m, shift, eps, momentum, running_mean, running_var, mean, inv_std)
    _normalize_activate_nchw(x.size)(code, alpha, x, mean, inv_std, gamma, beta, y, xhat, d)
    return m


def batchnorm2d_forward_eval(x, gamma, beta, eps, running_mean, running_var, code, alpha,
                             y, d) -> None:
    """Evaluation forward: y = act(gamma (x - rm) / sqrt(rv + eps) + beta); x, y, d (N, C, L)."""
    inv_std = (1.0 / np.sqrt(running_var + eps)).astype(x.dtype)
    _normalize_activate_nchw(x.size)(code, alpha, x, running_mean.astype(x.dtype), inv_std,
                                     gamma, beta, y, y[:0], d)


def batchnorm2d_backward(dy, d, xhat, gamma, inv_std, dx, dgamma, dbeta, partial, sums) -> None:
    """Gradients of the training forward: dy, d (or (0, C, L) for none), xhat, dx (N, C, L)
    (dx None to skip it); dgamma, dbeta (C,) outputs; partial (N, 2, C) and sums (2, C)
    float64 scratch."""
    N, C, L = dy.shape
    _column_sums_nchw(dy.size)(dy, d, xhat, partial)
    sum_chunks(partial, sums)
    dbeta[:] = sums[0]
    dgamma[:] = sums[1]
    if dx is not None:
        _input_grad_nchw(dy.size)(dy, d, xhat, gamma, inv_std, dbeta, dgamma, N * L, dx)


# ------------------------------------------------- BatchNorm2d backward without xhat and d
# Training keeps x anyway (it is the previous layer's output, which that layer's backward
# reads), so xhat = (x - mean) inv_std and d = act'(gamma xhat + beta) need not be stored:
# recomputing them from x, by the forward's own expressions (the same bits), costs a few
# operations per element where keeping them cost two arrays the size of x (for the small
# CIFAR net, 96 MB of its step's memory) and two more passes of writes and reads.


@jit(reassociate=True)
def _sum_and_dot(a, b):
    """(sum_i a[i], sum_i a[i] b[i]) in float64: a pure reduction (stores nothing)."""
    s0 = 0.0
    s1 = 0.0
    for i in range(a.shape[0]):
        v = np.float64(a[i])
        s0 += v
        s1 += v * b[i]
    return s0, s1


@kernel
def _recomputed_dz_sums_nchw(dy, x, mean, inv_std, gamma, beta, code, alpha, dz, partial):
    """dz = dy * act'(gamma xhat + beta) with xhat = (x - mean) inv_std recomputed (dz = dy
    for the identity); partial[n, 0, c] = sum_l dz, partial[n, 1, c] = sum_l dz xhat
    (float64). dy, x, dz (N, C, L). Parallel over images: each owns partial[n]."""
    N, C, L = dy.shape
    for n in prange(N):
        hrow = np.empty_like(x[n, 0])
        zrow = np.empty_like(x[n, 0])
        drow = np.empty_like(x[n, 0])
        for c in range(C):
            src, g, out = x[n, c], dy[n, c], dz[n, c]
            m, s, gm, bt = mean[c], inv_std[c], gamma[c], beta[c]
            for i in range(L):
                h = (src[i] - m) * s  # the forward's expressions: the same bits
                hrow[i] = h
                zrow[i] = gm * h + bt
            if code != IDENTITY:
                activation_row(code, alpha, zrow, drow)
                for i in range(L):
                    out[i] = g[i] * drow[i]
            else:
                for i in range(L):
                    out[i] = g[i]
            s0, s1 = _sum_and_dot(out, hrow)
            partial[n, 0, c] = s0
            partial[n, 1, c] = s1


@kernel
def _input_grad_recomputed_nchw(dz, x, mean, inv_std, gamma, dbeta, dgamma, m_total, dx):
    """dx = gamma inv_std (dz - (dbeta + xhat dgamma) / M), xhat = (x - mean) inv_std
    recomputed; dx may be dz itself (each element is read, then written). dz, x, dx
    (N, C, L). Parallel over (image, channel) rows."""
    N, C, L = dz.shape
    inv_m = typed(dz[0, 0, 0], 1.0 / m_total)
    for t in prange(N * C):
        n = t // C
        c = t % C
        g, src, out = dz[n, c], x[n, c], dx[n, c]
        m, s = mean[c], inv_std[c]
        scale, db, dg = gamma[c] * s, dbeta[c], dgamma[c]
        for i in range(L):
            h = (src[i] - m) * s
            out[i] = scale * (g[i] - inv_m * (db + h * dg))


def batchnorm2d_backward_recompute(dy, x, mean, gamma, beta, inv_std, code, alpha, dx,
                                   dgamma, dbeta, partial, sums, want_dx: bool = True) -> None:
    """Gradients of :func:`batchnorm2d_forward_train` run without keeping xhat and d.

    Parameters
    ----------
    dy, x : (N, C, L) the output's gradient and the forward's input (unchanged since).
    mean, inv_std : (C,) the forward's outputs. gamma, beta : (C,) as the forward.
    code, alpha : the forward's activation.
    dx : (N, C, L) receives dL/dx; first it holds dz = dy * act'(.) (so it is needed, as
        scratch, even with ``want_dx`` False).
    dgamma, dbeta : (C,) outputs. partial (N, 2, C), sums (2, C) : float64 scratch.
    want_dx : False to stop after dgamma and dbeta (dx then holds dz).
    """
    N, C, L = dy.shape
    _recomputed_dz_sums_nchw(dy.size)(dy, x, mean, inv_std, gamma, beta, code, alpha, dx,
                                      partial)
    sum_chunks(partial, sums)
    dbeta[:] = sums[0]
    dgamma[:] = sums[1]
    if want_dx:
        _input_grad_recomputed_nchw(dy.size)(dx, x, mean, inv_std, gamma, dbeta, dgamma,
                                             N * L, dx)
