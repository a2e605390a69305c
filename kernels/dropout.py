"""Inverted dropout with counter-based uniforms: y = x * mask, mask = (u >= p) / (1 - p).

Dividing by 1 - p at training time keeps E[y] = x, so evaluation is the identity. The mask is
the layer's local gradient: backward is dx = dy * mask (``activations.activation_backward``).

Where the uniforms come from
----------------------------
Each uniform ``u`` is a pure function of (key, global row, unit), computed inside the kernel
by Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
SC 2011; in cuRAND, TensorFlow and PyTorch's CUDA dropout). Nothing is drawn
in sequence, so a mask depends neither on how the rows are split over processes
(data-parallel ranks number their rows globally, from ``row_offset``) nor on the thread
count:

    words = Philox4x32-10(counter = (block, row mod 2^32, row div 2^32, 0),
                          key = (key mod 2^32, key div 2^32))

with ``row = row_offset + r`` for row ``r`` of the (rows, units) input. One call gives four
32-bit words:

- float32: four uniforms, units 4*block .. 4*block+3, each from the top 24 bits of one word,
  u = (w >> 8) * 2^-24: every float32 in [0, 1) with a 2^-24 spacing, exactly representable;
- float64: two uniforms, units 2*block and 2*block+1, each from 53 bits of two words (the top
  27 of the first, the top 26 of the second), u = ((w0 >> 5) * 2^26 + (w1 >> 6)) * 2^-53.

So P(u < p) = ceil(p * 2^b) / 2^b with b = 24 or 53: p to within 6e-8 in float32. The key
changes every call (the layer draws it from its seeded generator), which makes masks of
different steps independent; within a call, distinct (row, unit) give distinct counters.

Shapes: flat (n,) arrays holding ``n // units`` rows of ``units`` elements (C order).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import jit, kernel
from ._typed import typed

# Philox4x32's constants (Salmon et al. 2011, Random123's philox.h): the two multipliers and
# the Weyl increments of the key schedule (golden ratio and sqrt(3) - 1, in 32 bits).
PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)
PHILOX_ROUNDS = 10

_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S8 = np.uint64(8)
_S6 = np.uint64(6)
_S5 = np.uint64(5)
_ZERO = np.uint64(0)

#: Philox blocks (of 4 float32 or 2 float64 elements) per parallel chunk: a fixed number, so
#: the split depends on the data alone (each element's value does not depend on it anyway).
BLOCKS_PER_CHUNK = 1024

#: Largest ``units`` per row: the block index of a unit must fit the 32-bit counter word.
MAX_UNITS = 1 << 33


@jit
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10: the 4 x 32-bit counter (c0, c1, c2, c3) under the 2 x 32-bit key (k0, k1)
    to 4 x 32-bit words, each argument and result a uint64 holding a 32-bit value.

    A round multiplies two words by M0, M1 into 64-bit products (hi, lo) and mixes:
    (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0));
    the key gains (W0, W1) mod 2^32 before each round but the first.
    """
    x0, x1 = np.uint64(c0) & _LOW32, np.uint64(c1) & _LOW32
    x2, x3 = np.uint64(c2) & _LOW32, np.uint64(c3) & _LOW32
    key0, key1 = np.uint64(k0) & _LOW32, np.uint64(k1) & _LOW32
    for r in range(PHILOX_ROUNDS):
        if r > 0:
            key0 = (key0 + PHILOX_W0) & _LOW32
            key1 = (key1 + PHILOX_W1) & _LOW32
        p0 = PHILOX_M0 * x0  # both factors < 2^32: the product fits 64 bits
        p1 = PHILOX_M1 * x2
        x0, x1, x2, x3 = ((p1 >> _S32) ^ x1 ^ key0, p1 & _LOW32,
                          (p0 >> _S32) ^ x3 ^ key1, p0 & _LOW32)
    return x0, x1, x2, x3


@jit
def uniform24(w):
    """The float in [0, 1) of the top 24 bits of the 32-bit word ``w``: (w >> 8) * 2^-24."""
    return np.float64(np.uint64(w) >> _S8) * 5.9604644775390625e-08


@jit
def uniform53(w0, w1):
    """The float in [0, 1) of 53 bits of two 32-bit words: ((w0 >> 5) 2^26 + (w1 >> 6)) 2^-53."""
    hi = np.float64(np.uint64(w0) >> _S5)
    lo = np.float64(np.uint64(w1) >> _S6)
    return (hi * 67108864.0 + lo) * 1.1102230246251565e-16


@jit
def _element(g, blocks_per_row, per_block, units):
    """Index of the first element of Philox block ``g`` (blocks numbered row by row)."""
    r = g // blocks_per_row
    return r * units + min((g - r * blocks_per_row) * per_block, units)


@kernel
def dropout_forward(x, p, key_lo, key_hi, row_offset, units, y, mask):
    """mask = (u >= p) / (1 - p) and y = x * mask, u the Philox uniforms of the module
    docstring for the global rows row_offset .. row_offset + n // units - 1.

    x, y, mask : (n,) float32 or float64, rows of ``units`` elements (y may be x; mask shares
    memory with neither).
    p : drop probability in [0, 1); key_lo, key_hi : the two 32-bit words of the key;
    row_offset : global index of the first row; units : elements per row.

    Parallel over fixed chunks of BLOCKS_PER_CHUNK Philox blocks: every element's uniform
    depends only on its own (row, unit), so any split of the work gives the same bits. A
    chunk first writes its uniforms into ``mask`` (exact in either dtype), one block after
    another along a row, then turns them into the mask and y in one elementwise pass.
    """
    n = x.shape[0]
    if n == 0:
        return
    per_block = 2 if x.itemsize == 8 else 4
    rows = n // units
    blocks_per_row = (units + per_block - 1) // per_block
    full_blocks = units // per_block  # blocks of a row without a ragged end
    n_blocks = rows * blocks_per_row
    k0, k1 = np.uint64(key_lo) & _LOW32, np.uint64(key_hi) & _LOW32
    # u >= p compared in the array's dtype (measured: the whole float32 kernel ran 2x faster
    # than with a float32-to-float64 compare, which LLVM did not vectorize):
    # the uniforms lie on the grid of multiples of 2^-bits, so u >= p is exactly u >= the
    # first grid point at or above p, and that point is exact in either dtype.
    grid = 16777216.0 if per_block == 4 else 9007199254740992.0  # 2^24, 2^53
    threshold = typed(x[0], math.ceil(p * grid) / grid)
    scale = typed(x[0], 1.0 / (1.0 - p))
    zero = typed(x[0], 0.0)
    for c in prange((n_blocks + BLOCKS_PER_CHUNK - 1) // BLOCKS_PER_CHUNK):
        g_lo = c * BLOCKS_PER_CHUNK
        g_hi = min(n_blocks, g_lo + BLOCKS_PER_CHUNK)
        r = g_lo // blocks_per_row
        b_lo = g_lo - r * blocks_per_row
        g = g_lo
        while g < g_hi:  # the chunk's blocks, a run along one row at a time
            b_hi = min(blocks_per_row, b_lo + (g_hi - g))
            row = np.uint64(row_offset + r)
            row_lo, row_hi = row & _LOW32, row >> _S32
            base = r * units
            for b in range(b_lo, min(b_hi, full_blocks)):
                w0, w1, w2, w3 = philox4x32(np.uint64(b), row_lo, row_hi, _ZERO, k0, k1)
                i = base + b * per_block
                if per_block == 2:
                    mask[i] = uniform53(w0, w1)
                    mask[i + 1] = uniform53(w2, w3)
                else:
                    mask[i] = uniform24(w0)
                    mask[i + 1] = uniform24(w1)
                    mask[i + 2] = uniform24(w2)
                    mask[i + 3] = uniform24(w3)
            if b_hi > full_blocks:  # the row's ragged last block: fewer units than words
                w0, w1, w2, w3 = philox4x32(np.uint64(full_blocks), row_lo, row_hi, _ZERO,
                                            k0, k1)
                i = base + full_blocks * per_block
                if per_block == 2:
                    mask[i] = uniform53(w0, w1)
                else:
                    mask[i] = uniform24(w0)
                    if units - full_blocks * per_block > 1:
                        mask[i + 1] = uniform24(w1)
                    if units - full_blocks * per_block > 2:
                        mask[i + 2] = uniform24(w2)
            g += b_hi - b_lo
            r += 1
            b_lo = 0
        for i in range(_element(g_lo, blocks_per_row, per_block, units),
                       _element(g_hi, blocks_per_row, per_block, units)):
            m = scale if mask[i] >= threshold else zero
            mask[i] = m
            y[i] = x[i] * m
