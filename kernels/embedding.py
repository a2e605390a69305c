"""Embedding lookup: rows of a (V, D) table picked by integer indices, and the scatter-add of
their gradient back into the table.

Forward:  out[i, :] = weight[indices[i], :]                       (i < N, 0 <= indices[i] < V)
Backward: dweight[v, :] = sum over i with indices[i] == v of dout[i, :]   (v != padding_idx;
          the padding row gets no gradient, as PyTorch)

The backward's scatter is deterministic on any number of threads: the work is split over
fixed chunks of the table's rows (their number depends on V alone); a chunk owns its rows
of dweight and scans the indices in order, adding the gradient of every index that falls in
its rows. So each table row receives its contributions in index order, whatever the
threads, and no two threads ever write one row.

Shapes: weight, dweight (V, D); indices (N,) int64; out, dout (N, D).
"""

from __future__ import annotations

from numba import prange

from ._jit import kernel

#: Rows of the table per chunk of the backward scatter. Fixed (never derived from the thread
#: count). A chunk rescans the N indices, so the scan costs N * V / TABLE_ROWS_PER_CHUNK
#: comparisons against the N * D additions of the scatter itself.
TABLE_ROWS_PER_CHUNK = 256

#: Indices per chunk of the forward's parallel loop.
INDICES_PER_CHUNK = 256


@kernel
def embedding_forward(weight, indices, out):
    """out[i] = weight[indices[i]]. Returns the position of the first index outside [0, V),
    or -1 (rows at such positions are left unwritten).

    Parallel over chunks of indices: each output row is written by one iteration.
    """
    v = weight.shape[0]
    n = indices.shape[0]
    bad = n
    for c in prange((n + INDICES_PER_CHUNK - 1) // INDICES_PER_CHUNK):
        for i in range(c * INDICES_PER_CHUNK, min(n, (c + 1) * INDICES_PER_CHUNK)):
            k = indices[i]
            if k < 0 or k >= v:
                bad = min(bad, i)
                continue
            out[i, :] = weight[k, :]
    return bad if bad < n else -1


@kernel
def embedding_backward(indices, dout, padding_idx, dweight, accumulate):
    """dweight[v] (+)= sum of dout[i] over the i with indices[i] == v, for v != padding_idx.

    ``accumulate`` False overwrites dweight (rows no index hits become 0); True adds into it.
    ``padding_idx`` < 0 means none. Indices must already be checked (forward did).
    Parallel over fixed chunks of the table's rows, each scanning the indices in order.
    """
    v = dweight.shape[0]
    n = indices.shape[0]
    for c in prange((v + TABLE_ROWS_PER_CHUNK - 1) // TABLE_ROWS_PER_CHUNK):
        lo = c * TABLE_ROWS_PER_CHUNK
        hi = min(v, lo + TABLE_ROWS_PER_CHUNK)
        if not accumulate:
            for r in range(lo, hi):
                dweight[r, :] = 0.0
        for i in range(n):
            k = indices[i]
            if k >= lo and k < hi and k != padding_idx:
                for j in range(dweight.shape[1]):
                    dweight[k, j] += dout[i, j]
