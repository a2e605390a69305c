"""The first Linear's input of a tabular MLP in one pass: the encoded continuous features and
the embedding rows of the categorical codes, written straight into one (N, W) matrix.

Input rows x (N, K + C): K continuous features, then C columns of categorical codes (whole
numbers held as floats, what ``fastnn.tabular.TableEncoder`` writes). Output (N, W) with
W = T + sum_j D_j:

    out[r, t]              = min(max((x[r, feature[t]] - left[t]) / width[t], lower[t]),
                                 upper[t])                               t < T
    out[r, offset[j] + d]  = table_j[codes[j, r], d]                     d < D_j
    codes[j, r]            = x[r, K + j] as an integer

The first line is the piecewise-linear encoding (``fastnn.nn.PiecewiseLinearEncoding``;
``feature = 0..K-1``, ``left = 0``, ``width = 1``, ``lower = -inf``, ``upper = +inf`` copy
the features as they are), computed in the output's dtype in the order NumPy computes it
(convert, subtract, divide, clip), so it gives the same bits. The second is an embedding
lookup (``kernels/embedding.py``); its backward is that module's ``embedding_backward`` on
the gradient's columns of table j, with the codes this kernel wrote.

Shapes: x (N, K + C) float; feature (T,) int64; left, width, lower, upper (T,) and every
table_j (V_j, D_j) in the output's dtype; offsets (C,) int64; codes (C, N) int64; out (N, W).
"""

from __future__ import annotations

import math

from numba import prange

from ._jit import kernel
from ._typed import typed

#: Rows per chunk of the parallel loop.
ROWS_PER_CHUNK = 64


@kernel
def tabular_input_forward(x, n_continuous, feature, left, width, lower, upper, tables,
                          offsets, codes, out):
    """Fill ``out`` and ``codes`` (module docstring). Returns True, or False when a code is
    not a whole number in [0, V_j) (NaN, inf, 2.5, -1, V_j ...): then ``out`` and ``codes``
    are partly written and the caller reports which code (the graph path raises the error).

    Parallel over fixed chunks of rows: each output row and each code is written by one
    iteration; the chunks with a bad code are counted (a sum reduction: any order gives the
    same count).
    """
    n = x.shape[0]
    n_enc = feature.shape[0]
    n_tab = offsets.shape[0]
    bad_chunks = 0
    for c in prange((n + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK):
        chunk_ok = True
        for r in range(c * ROWS_PER_CHUNK, min(n, (c + 1) * ROWS_PER_CHUNK)):
            xr = x[r]
            orow = out[r]
            for t in range(n_enc):
                v = typed(orow[0], xr[feature[t]])
                v = (v - left[t]) / width[t]
                if v < lower[t]:
                    v = lower[t]
                if v > upper[t]:
                    v = upper[t]
                orow[t] = v
            for j in range(n_tab):
                table = tables[j]
                code = xr[n_continuous + j]
                if not (math.isfinite(code) and code == math.floor(code)
                        and 0 <= code < table.shape[0]):
                    chunk_ok = False
                    continue
                k = int(code)
                codes[j, r] = k
                off = offsets[j]
                for d in range(table.shape[1]):
                    orow[off + d] = table[k, d]
        bad_chunks += 0 if chunk_ok else 1
    return bad_chunks == 0
