"""Fully connected layer with a fused activation: y = act(x @ W + b).

Forward is one BLAS GEMM (``x @ W`` into the output buffer) and then ONE pass that adds the
bias, applies the activation and writes its local gradient ``d = act'(z)``. Backward is ONE
pass that forms ``dz = dy * d`` and the bias gradient ``db = sum_rows(dz)``, then two GEMMs:
``dW = x^T dz`` and ``dx = dz W^T`` (skipped when the input needs no gradient).

Shapes: x (N, D), W (D, M), b (M,), y/d/dy/dz (N, M), dx (N, D), dW (D, M), db (M,).
The GEMMs go to ``blas.gemm`` (NumPy's BLAS called from fastnn's thread pool, into the
output buffer; transposed operands are passed as flags, not copied). The elementwise passes
are Numba kernels.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from . import blas
from ._jit import ROWS_PER_CHUNK, jit, kernel
from ._jit import row_chunks as n_chunks  # noqa: F401  (rows of the ``partial`` scratch)
from .activations import IDENTITY, activation_row
from .blas import gemm


@kernel
def bias_activation_forward(code, alpha, z, b, d):
    """In place: z[i, j] <- act(z[i, j] + b[j]); d[i, j] <- act'(z[i, j] + b[j]).

    z (N, M) holds x @ W on entry and y on exit; b (M,) or (0,) for no bias;
    d (N, M) receives the local gradient.
    Parallel over rows: rows are independent, and a row is a contiguous stretch of memory.
    """
    n, m = z.shape
    has_bias = b.shape[0] == m
    for i in prange(n):
        if has_bias:
            for j in range(m):
                z[i, j] += b[j]
        activation_row(code, alpha, z[i], d[i])


@kernel
def add_bias(z, b):
    """z[i, j] += b[j] in place: z (N, M), b (M,). Parallel over rows.

    (NumPy's broadcasting ``np.add(z, b, out=z)`` allocates a 32 KB iteration buffer per
    call, which a training step should not.)
    """
    n, m = z.shape
    for i in prange(n):
        for j in range(m):
            z[i, j] += b[j]


@jit
def _dz_and_sums_rows(dy, d, dz, s):
    """dz = dy * d (or dy when d has no rows; stored only when dz has rows) and
    s[j] = sum_i dz_ij over the rows of dy, in float64, four rows per sweep over ``s`` (a
    sweep per row loads and stores every accumulator per element), in a fixed order:
    s[j] = sum over sweeps of (dz_i,j + dz_i+1,j) + (dz_i+2,j + dz_i+3,j), then the rest."""
    n = dy.shape[0]
    if d.shape[0] != n:
        _sum_rows(dy, s)
    elif dz.shape[0] == n:
        _dz_rows(dy, d, dz)
        _sum_rows(dz, s)
    else:  # the sums of dy * d without storing it (no caller of fastnn's needs this)
        s[:] = 0.0
        for i in range(n):
            g, h = dy[i], d[i]
            for j in range(s.shape[0]):
                s[j] += np.float64(g[j] * h[j])


@jit
def _dz_rows(dy, d, dz):
    """dz = dy * d, row by row (each row a zero-based loop that LLVM vectorizes)."""
    for i in range(dy.shape[0]):
        g, h, z = dy[i], d[i], dz[i]
        for j in range(g.shape[0]):
            z[j] = g[j] * h[j]


@jit
def _sum_rows(x, s):
    """s[j] = the column sums of x in float64, four rows per sweep (see above). A second
    pass over the rows ``_dz_rows`` just wrote, from cache: measured 2x faster than one
    pass doing both (whose per-element branches kept LLVM from vectorizing)."""
    n = x.shape[0]
    s[:] = 0.0
    i = 0
    while i + 4 <= n:
        x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        for j in range(s.shape[0]):
            s[j] += (np.float64(x0[j]) + np.float64(x1[j])) + \
                (np.float64(x2[j]) + np.float64(x3[j]))
        i += 4
    for k in range(i, n):
        xk = x[k]
        for j in range(s.shape[0]):
            s[j] += np.float64(xk[j])


@kernel
def dz_and_bias_grad(dy, d, dz, partial):
    """dz = dy * d and per-chunk column sums of dz (the bias gradient), in one call.

    dy (N, M); d (N, M), or (0, M) for the identity (dz = dy); dz (N, M), or (0, M) to
    only sum (the identity: the caller then uses dy as dz, saving a copy);
    partial (ceil(N / ROWS_PER_CHUNK), M) float64 receives the column sums of each chunk of
    ROWS_PER_CHUNK rows, accumulated in float64 (as BatchNorm's); the caller adds them in
    order (deterministic on any thread count).
    Parallel over row chunks: each chunk writes its own row of ``partial``, no races.
    """
    n = dy.shape[0]
    use_d = d.shape[0] == n
    store = dz.shape[0] == n
    for c in prange(partial.shape[0]):
        lo = c * ROWS_PER_CHUNK
        hi = min(n, lo + ROWS_PER_CHUNK)
        _dz_and_sums_rows(dy[lo:hi], d[lo:hi] if use_d else d, dz[lo:hi] if store else dz,
                          partial[c])




#: Forward products split over the inner dimension (``blas.gemm_split_k``) when their work
#: (N * D * M multiply-adds) lies in this range and the batch N is below D (the partial
#: products are then smaller than the weight). Measured in one process, alternating: the
#: 784-128-10 step (batch 32) 20% faster than with the output columns split, the
#: 784-512-512-10 BN step 2% to 11%; the 784-2048x3-10 step (batch 512, 2G multiply-adds
#: per layer, compute-bound) 3% slower, so large products keep the column split.
SPLIT_K_WORK = (blas.PARALLEL_MIN_WORK, 1 << 28)


def split_k_partial_shape(n: int, d: int, m: int) -> tuple[int, int, int] | None:
    """Shape of the scratch ``dense_forward`` needs to split x (n, d) @ W (d, m) over d, or
    None when that product is not split so."""
    if (blas.AVAILABLE and blas.BLOCKS > 1 and n < d
            and SPLIT_K_WORK[0] <= n * d * m < SPLIT_K_WORK[1]):
        return (blas.BLOCKS - 1, n, m)
    return None


def dense_forward(x, W, b, code, alpha, y, d, partial=None) -> None:
    """y = act(x @ W + b), d = act'(x @ W + b): one GEMM, then one fused pass.

    Parameters
    ----------
    x : (N, D) C-contiguous. W : (D, M). b : (M,), or (0,) for no bias.
    code, alpha : the activation (``activations.CODES``) and its parameter.
    y : (N, M) output, C-contiguous. d : (N, M) receives the local gradient; for the
        identity (GEMM plus at most a bias add) it is not touched and may be (0, M).
    partial : optional (P - 1, N, M) scratch, of ``split_k_partial_shape``: split the GEMM
        over D into P blocks (``blas.gemm_split_k``).
    """
    if partial is not None:
        blas.gemm_split_k(y.size * x.shape[1])(x, W, y, partial, partial.shape[0] + 1)
    else:
        gemm(x, W, y)
    if code == IDENTITY:
        if b.shape[0]:
            add_bias(y.size)(y, b)
        return
    bias_activation_forward(y.size)(code, alpha, y, b, d)


def dense_backward(dy, d, x, W, dz, partial, dx, dW, db, accumulate_dW=None) -> None:
    """Gradients of y = act(x @ W + b) given dy = dL/dy.

    Parameters
    ----------
    dy : (N, M). d : (N, M) local gradient from the forward pass, or (0, M) for identity.
    x : (N, D) the forward input. W : (D, M).
    dz : (N, M) scratch that receives dL/dz (unused for the identity, where dz = dy).
    partial : (n_chunks(N), M) float64 scratch.
    dx : (N, D) receives dL/dx, or None to skip it (the first layer).
    dW : (D, M) receives x^T dz. db : (M,) receives sum_rows(dz), or None for no bias.
    accumulate_dW : optional (D, M) array to which x^T dz is added instead (``+=``, in the
        GEMM), for a gradient that already holds an earlier contribution; ``dW`` is then
        not touched (may be None).
    """
    if d.shape[0] == 0:  # the identity: dz is dy itself, only the bias needs a pass
        if db is not None:
            dz_and_bias_grad(dy.size)(dy, d, dz[:0], partial)
        dz = dy
    else:
        dz_and_bias_grad(dy.size)(dy, d, dz, partial)
    affine_backward(dz, x, W, partial if db is not None else None, dx, dW, db, accumulate_dW)


def affine_backward(dz, x, W, partial, dx, dW, db, accumulate_dW=None) -> None:
    """The gradients of z = x @ W + b given dz = dL/dz (N, M), shared by Linear and Maxout.

    partial : (n_chunks(N), M) float64 holding the column sums of dz per row chunk (written
        by ``dz_and_bias_grad``), or None without a bias; db (M,) receives their sum, added
        in order and rounded once. dW (D, M) receives x^T dz, or ``accumulate_dW`` gets it
        added (``+=``, in the GEMM: beta = 1). dx (N, D) receives dz W^T, or None to skip.
    """
    if db is not None:
        db[:] = partial[0] if partial.shape[0] == 1 else partial.sum(axis=0)
    if accumulate_dW is not None:
        gemm(x, dz, accumulate_dW, trans_a=True, beta=1.0)
    else:
        gemm(x, dz, dW, trans_a=True)
    if dx is not None:
        gemm(dz, W, dx, trans_b=True)


# ------------------------------------------------------------------ planned calls
# ``dense_forward`` and ``dense_backward`` decide, at every call, which product and which
# variant (serial or on the pool) of each pass to run. A compiled training step
# (``fastnn.compiled``) decides once per batch size and makes each layer's forward and
# backward one call into the functions below, which run the very same kernels (hence the
# same bits) without a Python call per kernel.
_gemm_blocks_serial, _gemm_blocks_parallel = blas.gemm_blocks.serial, blas.gemm_blocks.parallel
_split_k_serial, _split_k_parallel = blas.gemm_split_k.serial, blas.gemm_split_k.parallel
_add_bias_serial, _add_bias_parallel = add_bias.serial, add_bias.parallel
_bias_act_serial, _bias_act_parallel = (bias_activation_forward.serial,
                                        bias_activation_forward.parallel)
_sums_serial, _sums_parallel = dz_and_bias_grad.serial, dz_and_bias_grad.parallel


@jit
def _product(A, trans_a, B, trans_b, C, parts, parallel):
    if parallel:
        _gemm_blocks_parallel(A, trans_a, B, trans_b, C, 0.0, parts)
    else:
        _gemm_blocks_serial(A, trans_a, B, trans_b, C, 0.0, parts)


@jit
def planned_forward(x, W, b, code, alpha, y, d, partial, parts, product_parallel,
                    pass_parallel):
    """``dense_forward(x, W, b, code, alpha, y, d, partial)`` with its choices given:
    ``partial`` (P - 1, N, M) splits the product over D into ``parts`` = P blocks when it has
    blocks, else the product is cut into ``parts`` blocks of C; ``product_parallel`` and
    ``pass_parallel`` pick the variants."""
    if partial.shape[0] > 0:
        if product_parallel:
            _split_k_parallel(x, W, y, partial, parts)
        else:
            _split_k_serial(x, W, y, partial, parts)
    else:
        _product(x, False, W, False, y, parts, product_parallel)
    if code == IDENTITY:
        if b.shape[0] > 0:
            if pass_parallel:
                _add_bias_parallel(y, b)
            else:
                _add_bias_serial(y, b)
    elif pass_parallel:
        _bias_act_parallel(code, alpha, y, b, d)
    else:
        _bias_act_serial(code, alpha, y, b, d)


@jit
def planned_backward(dy, d, x, W, dz, partial, dx, dW, db, sums_parallel, dw_parts,
                     dw_parallel, dx_parts, dx_parallel):
    """``dense_backward(dy, d, x, W, dz, partial, dx, dW, db)`` with its choices given: db
    (M,) or (0,) for no bias, dx (N, D) or (0, D) to skip it; the bias gradient is the
    column sums of ``partial`` added in chunk order (as NumPy's ``sum(axis=0)``)."""
    n, m = dy.shape
    has_bias = db.shape[0] == m
    dzz = dz
    if d.shape[0] == 0:  # the identity: dz is dy, only the bias needs a pass
        if has_bias:
            if sums_parallel:
                _sums_parallel(dy, d, dz[:0], partial)
            else:
                _sums_serial(dy, d, dz[:0], partial)
        dzz = dy
    elif sums_parallel:
        _sums_parallel(dy, d, dz, partial)
    else:
        _sums_serial(dy, d, dz, partial)
    if has_bias:
        for j in range(m):
            s = partial[0, j]
            for c in range(1, partial.shape[0]):
                s += partial[c, j]
            db[j] = s
    _product(x, True, dzz, False, dW, dw_parts, dw_parallel)
    if dx.shape[0] == n:
        _product(dzz, False, W, True, dx, dx_parts, dx_parallel)
