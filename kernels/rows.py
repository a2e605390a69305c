"""Batches of rows: gather (shuffled) rows of a data set, cast and standardize them, in one pass.

    out[i, j] = (X[r_i, j] - shift[j]) / scale[j]    in out's dtype,  r_i = idx[i]

X (N, D) of any real dtype (the data set, possibly memory-mapped), idx (B,) int64 row
indices, or (0,) for the rows 0..B-1; shift, scale (D,) in out's dtype, or (0,) for a cast
only; out (B, D) float32 or float64. X[r_i, j] is first cast to out's dtype, then the
subtraction and the division are done in out's dtype (NumPy's ``copyto`` then ``subtract``
and ``divide`` do the same). Why one kernel: the shuffled rows of a large data set come
from memory one at a time (a few cache lines each), and the gather, the cast and the two
broadcast NumPy passes cost a 100-feature batch of 200 rows about 90 µs, a tenth of the
training step it feeds; here the rows are read once, by the pool.

The rows of an encoded table are made here too (:func:`encode_block`): a block of rows of
the matrix ``fastnn.tabular`` builds from a raw table, every column's blanks filled, values
clipped and blank indicators written in one pass over the block.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import jit, kernel
from ._typed import typed


@kernel
def gather_standardize(X, idx, shift, scale, out):
    """out = (X[idx] - shift) / scale (see the module docstring). Parallel over rows: each
    output row is written by one thread, from one row of X."""
    b, d = out.shape
    if d == 0:
        return
    gather = idx.shape[0] == b
    standardize = shift.shape[0] == d
    for i in prange(b):
        r = np.int64(idx[i]) if gather else np.int64(i)  # one type (prange's i is unsigned)
        row, dst = X[r], out[i]
        if standardize:
            for j in range(d):
                dst[j] = (typed(dst[0], row[j]) - shift[j]) / scale[j]
        else:
            for j in range(d):
                dst[j] = typed(dst[0], row[j])


@jit
def gather_values(values, idx, out):
    """out[i] = values[idx[i]]: the targets of a batch of shuffled rows.

    values (N,), idx (B,) int64 row indices in [0, N), out (B,) of values' dtype (integer or
    float). Serial: a batch's targets are a few hundred numbers, fewer than starting the
    pool would pay for (``fastnn.data.take_rows``: 1.6 µs for 200 int64 labels against
    2.8 µs for ``np.take``).
    """
    for i in range(out.shape[0]):
        out[i] = values[idx[i]]


#: Rows per chunk of :func:`encode_block`: the chunk's rows of the matrix (256 rows of a few
#: dozen float64 columns: tens of KB) stay in the L2 cache while its source columns are read
#: one after the other.
ENCODE_CHUNK_ROWS = 256


@kernel
def encode_block(src, dest, fill, low, high, mark, out, counts):
    """A block of rows of an encoded table: source columns filled, clipped and placed.

    For each source column c < C and row i < R, with v = src[c, i]:

        blank = v is NaN;   v = fill[c] where blank
        v = low[c] where v < low[c];   v = high[c] where v > high[c]
        out[i, dest[c]] = v                      where dest[c] >= 0
        out[i, mark[c]] = 1.0 if blank else 0.0  where mark[c] >= 0

    src (C, R) float64, NaN for a blank; dest, mark (C,) int64 column indices of ``out`` or
    -1 (every output column written by exactly one source, not checked: the caller,
    ``fastnn.tabular``, plans them); fill, low, high (C,) float64 (no clipping: -inf, inf);
    out (R, D) float64 C-ordered (a block of rows of the matrix); counts (K, C, 2) int64,
    K = ceil(R / ENCODE_CHUNK_ROWS), zeroed by the caller: the blanks and the clipped values
    of column c in chunk k (the caller sums over k). The fill comes before the clip, as
    the NumPy steps it replaces did (a median lies within the range anyway).

    Why a kernel: the matrix is row-major, so writing it column by column touches a cache
    line per row and column (NumPy's fill, clip and transposed copy did that pass per group
    of columns, plus one over each column's own array); here each line of the matrix is
    written once, from all of the block's columns. Parallel over chunks of rows: each
    thread owns whole rows of ``out`` (and takes their first-touch page faults), and its own
    slice of ``counts`` (no shared sums).
    """
    n_src, n_rows = src.shape
    n_chunks = (n_rows + ENCODE_CHUNK_ROWS - 1) // ENCODE_CHUNK_ROWS
    for k in prange(n_chunks):
        lo = np.int64(k) * ENCODE_CHUNK_ROWS  # one type (prange's k is unsigned)
        hi = min(lo + ENCODE_CHUNK_ROWS, n_rows)
        for c in range(n_src):
            values = src[c]
            j, m, f, a, b = dest[c], mark[c], fill[c], low[c], high[c]
            blanks = 0
            clipped = 0
            for i in range(lo, hi):
                v = values[i]
                blank = v != v
                if blank:
                    v = f
                    blanks += 1
                if v < a:
                    v = a
                    clipped += 1
                elif v > b:
                    v = b
                    clipped += 1
                if j >= 0:
                    out[i, j] = v
                if m >= 0:
                    out[i, m] = 1.0 if blank else 0.0
            counts[k, c, 0] = blanks
            counts[k, c, 1] = clipped


@jit
def filled_values(values, rows, every, out):
    """The non-blank values of a column's fitted rows, and their range, in one pass.

        out[:m] = [values[r] for r in rows if values[r] is not NaN]   (in rows' order)

    values (N,) float64, NaN for a blank; rows (R,) int64 indices into values (any order),
    ignored when ``every`` is True (then every row, in order); out (R,) float64, (N,) when
    ``every``. Returns (m, smallest, largest) of out[:m] (inf, -inf when m is 0); where
    -0.0 and 0.0 both occur, which one is the smallest or largest is either (the caller,
    ``fastnn.tabular``, asks NumPy when a bound is zero).

    Why a kernel: the fit of a numeric column took NumPy's gather, NaN test, boolean
    selection, minimum and maximum, five passes over the column; here one. Serial: the
    columns are fitted a column per thread.
    """
    n = values.shape[0] if every else rows.shape[0]
    m = 0
    lo = np.inf
    hi = -np.inf
    for i in range(n):
        v = values[i] if every else values[rows[i]]
        if v == v:
            out[m] = v
            m += 1
            if v < lo:
                lo = v
            if v > hi:
                hi = v
    return m, lo, hi


@jit
def values_between(values, lo, hi, out):
    """How many values lie below ``lo``, and those within [lo, hi], in one pass.

        below = count of values[i] < lo;   out[:k] = [v for v in values if lo <= v <= hi]

    values (N,) float64 without NaN; lo <= hi float64; out (N,) float64. Returns
    (below, k). Why a kernel: the median of a long column (``fastnn.tabular``'s fit) brackets
    its middle values between two values of a sample and partitions only the values in
    between; in NumPy the bracket took five passes and three temporary arrays. Serial: the
    columns are fitted a column per thread.
    """
    below = 0
    k = 0
    for i in range(values.shape[0]):
        v = values[i]
        # without branches: whether a value falls below, inside or above is a coin toss
        # near the median (a branch per value mispredicted about every other time, 3x slower)
        below += v < lo
        out[k] = v  # kept only if inside: k moves on (k <= i < N)
        k += (v >= lo) & (v <= hi)
    return below, k


@jit
def values_from_arrow(data, valid, bit0, out):
    """A piece of an Arrow integer or real column as float64, NaN for a blank.

        out[i] = float64(data[i]) if bit (bit0 + i) of valid is set else NaN

    data (R,) the values buffer of the piece (any integer or real dtype; a blank's value is
    whatever the buffer holds, never read); valid (B,) uint8 Arrow's validity bitmap (least
    significant bit first), or (0,) when the piece has no blanks; bit0 the piece's offset
    into the bitmap; out (R,) float64. The caller (``fastnn.tabular``) checks that the
    bitmap holds bits bit0 .. bit0 + R - 1. Why a kernel: Arrow's conversion to NumPy made a
    new array for every block of every column, which was then copied into the block's
    buffer; here the buffer is written once. Serial: a thread fills a block of rows.
    """
    n = out.shape[0]
    if valid.shape[0] == 0:
        for i in range(n):
            out[i] = data[i]
        return
    for i in range(n):
        b = bit0 + i
        out[i] = data[i] if (valid[b >> 3] >> (b & 7)) & 1 else np.nan


@jit
def codes_from_arrow(index, valid, bit0, code, unknown, out):
    """A piece of a dictionary-encoded Arrow column as the codes of its entries.

        out[i] = code[index[i]] if bit (bit0 + i) of valid is set else code[-1]

    index (R,) the piece's dictionary indices (int8/16/32/64); valid, bit0 as for
    :func:`values_from_arrow`; code (V + 1,) float64 the code of each of the V dictionary
    entries, then a blank's; unknown (V + 1,) bool: whether the entry's code counts as
    unknown; out (R,) float64. Returns (blanks, unknowns), or (-1, i) when index[i] lies
    outside 0..V-1 (a damaged file: the caller raises). Serial: a thread fills a block of
    rows.
    """
    n = out.shape[0]
    v = code.shape[0] - 1
    blanks = 0
    unknowns = 0
    has_valid = valid.shape[0] > 0
    for i in range(n):
        b = bit0 + i
        if has_valid and not (valid[b >> 3] >> (b & 7)) & 1:
            out[i] = code[v]
            blanks += 1
            continue
        k = np.int64(index[i])
        if k < 0 or k >= v:
            return -1, i
        out[i] = code[k]
        unknowns += unknown[k]
    return blanks, unknowns
