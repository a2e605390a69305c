"""Layer normalization of each row of (N, D) data over its D features, with a fused activation.

The sibling of ``batchnorm.py``: the statistics are per sample (per row) instead of per
feature, so there are no running statistics and training and evaluation compute the same.

Forward (PyTorch's LayerNorm over the last D = prod(normalized_shape) values):

    mean_i  = (1/D) sum_j x_ij
    var_i   = (1/D) sum_j (x_ij - mean_i)^2           (biased, as PyTorch)
    inv_i   = 1 / sqrt(var_i + eps)
    xhat_ij = (x_ij - mean_i) * inv_i
    y_ij    = act(gamma_j xhat_ij + beta_j),  d_ij = act'(gamma_j xhat_ij + beta_j)

Backward, with dz = dy * d (the activation's chain rule) and g = gamma * dz (= dL/dxhat):

    dbeta_j  = sum_i dz_ij
    dgamma_j = sum_i dz_ij xhat_ij
    dx_ij    = inv_i * (g_ij - (sum_k g_ik + xhat_ij sum_k g_ik xhat_ik) / D)

Each is ONE kernel call over the rows: the forward reads a row twice while it is in cache
(its mean, then its centred squares: exact where a one-pass sum of squares would cancel)
and writes y, xhat and d; the backward forms each row's two sums and dx, and adds the row's
dz and dz * xhat into its chunk's column sums. Sums are accumulated in float64.

Shapes: x, y, xhat, d, dy, dx (N, D); gamma, beta (D,); inv_std (N,);
partial (n_chunks(N), 2, D) float64 scratch.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import ROWS_PER_CHUNK, kernel
from ._jit import row_chunks as n_chunks  # noqa: F401  (rows of the ``partial`` scratch)
from .activations import activation_row
from .batchnorm import sum_chunks as _sum_chunks


@kernel
def _normalize_rows(x, gamma, beta, eps, code, alpha, y, xhat, d, inv_std):
    """The forward pass, one row at a time.

    Parallel over rows: each row's statistics and outputs are its own, so any split of the
    rows gives the same bits.
    """
    n, m = x.shape
    store_xhat = xhat.shape[0] == n
    for i in prange(n):
        s = 0.0
        for j in range(m):
            s += x[i, j]
        mean = s / m
        ss = 0.0
        for j in range(m):
            c = x[i, j] - mean
            ss += c * c
        inv = 1.0 / np.sqrt(ss / m + eps)
        inv_std[i] = inv
        for j in range(m):
            h = (x[i, j] - mean) * inv
            if store_xhat:
                xhat[i, j] = h
            y[i, j] = gamma[j] * h + beta[j]
        activation_row(code, alpha, y[i], d[i])


def layernorm_forward(x, gamma, beta, eps, code, alpha, y, xhat, d, inv_std) -> None:
    """y = act(gamma * xhat + beta) with xhat each row of x normalized (see module docstring).

    Parameters
    ----------
    x : (N, D) C-contiguous. gamma, beta : (D,) (ones and zeros without an affine map).
    eps : added to each row's variance. code, alpha : the fused activation.
    y : (N, D) output. xhat : (N, D) normalized input kept for backward, or (0, D) to skip.
    d : (N, D) receives the activation's local gradient. inv_std : (N,) receives 1/sqrt(var+eps).
    """
    _normalize_rows(x.size)(x, gamma, beta, float(eps), code, alpha, y, xhat, d, inv_std)


@kernel
def _backward_rows(dy, d, xhat, gamma, inv_std, dx, partial):
    """dx per row and each chunk's column sums of dz and dz * xhat into ``partial``.

    Parallel over chunks of ROWS_PER_CHUNK rows: a chunk owns its rows of dx and its slice
    of ``partial``, so nothing is shared between threads.
    """
    n, m = dy.shape
    use_d = d.shape[0] == n
    store_dx = dx.shape[0] == n
    inv_m = 1.0 / m
    for c in prange(partial.shape[0]):
        col_dz = partial[c, 0]
        col_dzx = partial[c, 1]
        col_dz[:] = 0.0
        col_dzx[:] = 0.0
        for i in range(c * ROWS_PER_CHUNK, min(n, (c + 1) * ROWS_PER_CHUNK)):
            s1 = 0.0
            s2 = 0.0
            for j in range(m):
                dz = dy[i, j] * d[i, j] if use_d else dy[i, j]
                h = xhat[i, j]
                col_dz[j] += dz
                col_dzx[j] += dz * h
                g = dz * gamma[j]
                s1 += g
                s2 += g * h
            if store_dx:
                inv = inv_std[i]
                for j in range(m):
                    dz = dy[i, j] * d[i, j] if use_d else dy[i, j]
                    dx[i, j] = inv * (dz * gamma[j] - (s1 + xhat[i, j] * s2) * inv_m)


def layernorm_backward(dy, d, xhat, gamma, inv_std, dx, dgamma, dbeta, partial,
                       sums=None) -> None:
    """Gradients of :func:`layernorm_forward`.

    Parameters
    ----------
    dy : (N, D). d : (N, D) cached activation gradient, or (0, D) for none (dz = dy).
    xhat : (N, D) and inv_std : (N,) cached by the forward pass. gamma : (D,).
    dx : (N, D) output, or (0, D) when the input needs no gradient.
    dgamma, dbeta : (D,) outputs. partial : (n_chunks(N), 2, D) float64 scratch;
    sums : optional (2, D) float64 scratch.
    """
    _backward_rows(dy.size)(dy, d, xhat, gamma, inv_std, dx, partial)
    if sums is None:
        sums = np.empty((2, dy.shape[1]))
    _sum_chunks(partial, sums)
    dbeta[:] = sums[0]
    dgamma[:] = sums[1]
