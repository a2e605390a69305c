"""Batches of rows of a sparse matrix, densified into a batch buffer.

    out[i, :] = 0;  out[i, indices[k]] = data[k]   for k in indptr[r_i] .. indptr[r_i + 1] - 1,
    r_i = idx[i]   (or start + i when idx has length 0),   data[k] cast to out's dtype

A SciPy CSR matrix (N, D) is the three arrays data (nnz,) real, indices (nnz,) integer
column numbers in [0, D), indptr (N + 1,) integer; out (B, D) float32 or float64, C-ordered.
The caller hands CSR in canonical format (no column twice in a row, as SciPy's
``sum_duplicates`` leaves it): then every stored value is written once, as a plain copy,
and the batch equals the same rows of ``X.toarray()`` bit for bit. Column order within a
row does not matter.

Why a kernel: a scikit-learn estimator fed a wide one-hot matrix (200,000 x 5,000) would
need 8 GB to densify it whole; densifying only the batch that the step is about to train
on needs B x D (a few MB), and the rows' few stored values are all the kernel reads apart
from the zeroing of the buffer. SciPy's ``X[idx].toarray()`` does the same in two passes
with two allocations per batch.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel
from ._typed import typed


@kernel
def csr_rows_to_dense(data, indices, indptr, idx, start, out):
    """out = X[rows].toarray() for the CSR matrix X = (data, indices, indptr) (see the module
    docstring); rows = idx, or start .. start + B - 1 when idx is empty. Parallel over rows:
    each output row is zeroed and filled by one thread from one row of X, so no two threads
    write the same memory and the result does not depend on the thread count."""
    b, d = out.shape
    gather = idx.shape[0] == b
    for i in prange(b):
        r = np.int64(idx[i]) if gather else np.int64(start) + np.int64(i)
        dst = out[i]
        for j in range(d):
            dst[j] = typed(dst[0], 0)
        for k in range(indptr[r], indptr[r + 1]):
            dst[indices[k]] = typed(dst[0], data[k])
