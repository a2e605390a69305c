"""Maxout unit: y_ij = max_k z_i,(j*K + k) with z = x @ W + b (K = pieces affine maps).

W (D, M*K) and b (M*K,) hold the K pieces of output j in the adjacent columns j*K .. j*K+K-1.
Forward: one GEMM into z (N, M*K), then one pass writing y (N, M) and the winning piece
``arg`` (N, M) (int32). Backward routes like the max gate: dz is dy at the winning piece and
0 elsewhere (on a tie the first piece wins, as ``torch.max(dim)`` picks one index), then the
dense layer's reductions and GEMMs: db = sum_rows(dz), dW = x^T dz, dx = dz W^T.
"""

from __future__ import annotations

from numba import prange

from ._jit import kernel
from ._typed import typed
from .blas import gemm
from .dense import affine_backward, dz_and_bias_grad


@kernel
def maxout_reduce(z, b, pieces, y, arg):
    """y[i, j] = max_k (z[i, j*K + k] + b[j*K + k]); arg[i, j] = the k attaining it.

    z (N, M*K), b (M*K,) or (0,), y (N, M), arg (N, M) int32. Parallel over rows.
    """
    n, m = y.shape
    has_bias = b.shape[0] == z.shape[1]
    for i in prange(n):
        for j in range(m):
            base = j * pieces
            best = z[i, base] + b[base] if has_bias else z[i, base]
            best_k = 0
            for k in range(1, pieces):
                v = z[i, base + k] + b[base + k] if has_bias else z[i, base + k]
                if v > best:
                    best = v
                    best_k = k
            y[i, j] = best
            arg[i, j] = best_k


@kernel
def maxout_route(dy, arg, pieces, dz):
    """dz[i, j*K + k] = dy[i, j] if k == arg[i, j] else 0 (the max gate). Parallel over rows."""
    n, m = dy.shape
    zero = typed(dy[0, 0], 0.0)
    for i in prange(n):
        for j in range(m):
            for k in range(pieces):
                dz[i, j * pieces + k] = dy[i, j] if k == arg[i, j] else zero


def maxout_forward(x, W, b, pieces, z, y, arg) -> None:
    """Forward of Maxout. x (N, D); W (D, M*K); b (M*K,) or (0,); z (N, M*K) scratch;
    y (N, M) output; arg (N, M) int32 winning piece."""
    gemm(x, W, z)
    maxout_reduce(z.size)(z, b, pieces, y, arg)


def maxout_backward(dy, arg, pieces, x, W, dz, partial, dx, dW, db,
                    accumulate_dW=None) -> None:
    """Gradients of Maxout given dy (N, M): the winners' gradients routed into dz (N, M*K),
    then the affine gradients of z = x @ W + b (``dense.affine_backward``). partial
    (n_chunks(N), M*K) float64 scratch; dx (N, D) or None; dW (D, M*K); db (M*K,) or None;
    accumulate_dW: optional (D, M*K) array to which x^T dz is added instead (in the GEMM;
    ``dW`` then unused)."""
    maxout_route(dz.size)(dy, arg, pieces, dz)
    if db is not None:
        dz_and_bias_grad(dz.size)(dz, dz[:0], dz[:0], partial)  # column sums of dz only
    affine_backward(dz, x, W, partial, dx, dW, db, accumulate_dW)
