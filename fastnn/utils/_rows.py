"""Gathering rows of arrays into batch buffers: the one path from a data set's arrays to a
batch, shared by ``fastnn.data.DataLoader`` (``fit``'s batches) and
``fastnn.utils.data.DataLoader`` (PyTorch's face). It sits below both.
"""

from __future__ import annotations

import numpy as np

from .._buffers import BufferPool
from ..kernels import rows as K_rows

_NO_ROWS = np.empty(0, np.int64)
_NO_STATS = {np.dtype(np.float32): np.empty(0, np.float32),
             np.dtype(np.float64): np.empty(0, np.float64)}


def _numba_reads(X) -> bool:
    """Whether the rows kernels read ``X``: a plain (not memory-mapped), writable array of
    real numbers that Numba types (no float16, no foreign byte order)."""
    return (type(X) is np.ndarray and X.flags.writeable
            and (X.dtype.kind in "biu" or X.dtype in _NO_STATS) and X.dtype.byteorder in "=|")


def _rows_kernel_takes(X) -> bool:
    """Whether ``kernels.rows.gather_standardize`` reads ``X``: a C-contiguous 2-D array
    that :func:`_numba_reads`."""
    return _numba_reads(X) and X.ndim == 2 and X.flags.c_contiguous


def take_rows(X: np.ndarray, idx: np.ndarray, out: np.ndarray,
              pool: BufferPool | None = None) -> np.ndarray:
    """out[:] = X[idx], the rows ``idx`` of X, cast to out's dtype.

    Parameters
    ----------
    X : (N, ...) array.
    idx : (B,) integer row indices into X, each in [0, N) (not checked: the caller made them).
    out : (B, ...) array that receives the rows.
    pool : where a scratch batch in X's dtype comes from when NumPy gathers and then casts
        (default: a new array).

    One parallel kernel (``kernels.rows.gather_standardize`` without statistics) when X is a
    plain 2-D array it reads and out float32/float64 (a batch of 200 rows of 100 float32:
    3 µs against 9 µs for ``np.take``); a serial loop (``kernels.rows.gather_values``) for a
    1-D array of labels or targets into out of its dtype (200 int64 labels: 1.6 µs for this
    call against 2.8 µs for ``np.take``); ``np.take`` into out otherwise.
    """
    gather = _row_kernel(X, out) if idx.dtype == np.int64 else None
    if gather is not None:
        kern, stats = gather
        kern(X, idx, *stats, out)
    elif X.dtype == out.dtype:
        np.take(X, idx, axis=0, out=out)
    else:
        raw = pool.get("take_rows", out.shape, X.dtype) if pool is not None \
            else np.empty(out.shape, X.dtype)
        np.take(X, idx, axis=0, out=raw)
        np.copyto(out, raw, casting="unsafe")
    return out


def _row_kernel(X: np.ndarray, out: np.ndarray):
    """``(kernel, stats)`` such that ``kernel(X, idx, *stats, out)`` gathers rows of X into
    out for int64 indices, when a rows kernel reads X and writes out (see
    :func:`take_rows`); else None."""
    if out.dtype in _NO_STATS and out.flags.c_contiguous and _rows_kernel_takes(X) \
            and X.shape[1:] == out.shape[1:]:
        none = _NO_STATS[out.dtype]
        return K_rows.gather_standardize(out.size), (none, none)
    if X.ndim == 1 and X.dtype == out.dtype and _numba_reads(X):  # a batch's labels/targets
        return K_rows.gather_values, ()
    return None


def row_taker(X: np.ndarray, out: np.ndarray, pool: BufferPool | None = None):
    """``take(idx) -> out``: :func:`take_rows` ``(X, idx, out, pool)`` with its choice of
    kernel made once, for a loop that gathers batch after batch of the same data into the
    same buffer (the checks cost about 1.5 µs of Python a batch; a batch of scikit-learn's
    (256, 256) network trains in about 0.8 ms). X and out must not change meanwhile.
    """
    gather = _row_kernel(X, out)
    if gather is None:
        return lambda idx: take_rows(X, idx, out, pool)
    kern, stats = gather

    def take(idx: np.ndarray) -> np.ndarray:
        if idx.dtype != np.int64:
            return take_rows(X, idx, out, pool)
        kern(X, idx, *stats, out)
        return out

    return take
