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
_S26 = np.uint64(26)
_ZERO = np.uint64(0)

#: Elements per parallel chunk (whole rows of them, at least one row): a fixed number, so the
#: split depends on the shape alone (each element's value does not depend on it anyway).
ELEMENTS_PER_CHUNK = 4096

#: Philox blocks computed in one vectorized pass along a row (the scratch of one thread:
#: 4 x 256 words, and 1,024 in element order).
SEGMENT_BLOCKS = 256

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
def philox4x32_blocks(b_lo, nb, c1, c2, k0, k1, w0s, w1s, w2s, w3s):
    """Philox4x32-10 of the counters (b_lo + j, c1, c2, 0), j < nb (b_lo + nb <= 2^32), under
    the key (k0, k1):
    word k of block j into wks[j] (uint32 arrays of at least nb). One loop over the blocks
    with a separate array per word: LLVM vectorizes it (one block per SIMD lane)."""
    for j in range(nb):
        x0, x1, x2, x3 = np.uint64(b_lo + j), c1, c2, _ZERO
        key0, key1 = k0, k1
        for rnd in range(PHILOX_ROUNDS):
            if rnd > 0:
                key0 = (key0 + PHILOX_W0) & _LOW32
                key1 = (key1 + PHILOX_W1) & _LOW32
            p0 = PHILOX_M0 * x0
            p1 = PHILOX_M1 * x2
            x0, x1, x2, x3 = ((p1 >> _S32) ^ x1 ^ key0, p1 & _LOW32,
                              (p0 >> _S32) ^ x3 ^ key1, p0 & _LOW32)
        w0s[j] = np.uint32(x0)
        w1s[j] = np.uint32(x1)
        w2s[j] = np.uint32(x2)
        w3s[j] = np.uint32(x3)


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


@kernel
def dropout_forward(x, p, key_lo, key_hi, row_offset, units, y, mask):
    """mask = (u >= p) / (1 - p) and y = x * mask, u the Philox uniforms of the module
    docstring for the global rows row_offset .. row_offset + n // units - 1.

    x, y, mask : (n,) float32 or float64, rows of ``units`` elements (y may be x; mask shares
    memory with neither).
    p : drop probability in [0, 1); key_lo, key_hi : the two 32-bit words of the key;
    row_offset : global index of the first row; units : elements per row.

    The comparison u >= p is made on the integers behind u: u = v * 2^-b with v the b top
    bits (b = 24 or 53) lies on the grid of multiples of 2^-b, so u >= p exactly when
    v >= ceil(p * 2^b) (an integer, exact in float64 since p * 2^b is).

    Parallel over fixed chunks of whole rows (ELEMENTS_PER_CHUNK elements, at least one row):
    every element's uniform depends only on its own (row, unit), so any split of the work
    gives the same bits. Along a row, SEGMENT_BLOCKS Philox blocks at a time are computed in
    one loop over the block index, each word into its own scratch array (that loop LLVM
    vectorizes: the 32 x 32 -> 64-bit products are SIMD multiplies, one block per lane;
    writing the four words of a block next to each other, or one block per call, kept it
    scalar), then the words are put in element order and turned into the mask and y in one
    elementwise pass over views of the segment. Measured for 512 x 128 float32 on one
    thread (shared machine, medians of 100): 263 -> 60 us, the same bits as before. A row's
    ragged last block (fewer units than words) takes the same path, its extra words unused.
    """
    n = x.shape[0]
    if n == 0:
        return
    per_block = 2 if x.itemsize == 8 else 4
    rows = n // units
    full_blocks = units // per_block  # blocks of a row without a ragged end
    ragged = units - full_blocks * per_block
    k0, k1 = np.uint64(key_lo) & _LOW32, np.uint64(key_hi) & _LOW32
    # the integer threshold ceil(p 2^b) (module docstring); the uniforms' bits v are
    # compared with it as uint64 in both dtypes
    bits_scale = 16777216.0 if per_block == 4 else 9007199254740992.0  # 2^24, 2^53
    threshold = np.uint64(math.ceil(p * bits_scale))
    scale = typed(x[0], 1.0 / (1.0 - p))
    zero = typed(x[0], 0.0)
    rows_per_chunk = max(1, ELEMENTS_PER_CHUNK // units)
    blocks_per_row = full_blocks + (1 if ragged else 0)
    for c in prange((rows + rows_per_chunk - 1) // rows_per_chunk):
        seg = min(SEGMENT_BLOCKS, blocks_per_row)
        w0s = np.empty(seg, np.uint32)
        w1s = np.empty(seg, np.uint32)
        w2s = np.empty(seg, np.uint32)
        w3s = np.empty(seg, np.uint32)
        v = np.empty(seg * per_block, np.uint64)  # the uniforms' bits, in element order
        for r in range(c * rows_per_chunk, min(rows, (c + 1) * rows_per_chunk)):
            row = np.uint64(row_offset + r)
            row_lo, row_hi = row & _LOW32, row >> _S32
            base = r * units
            for b_lo in range(0, blocks_per_row, SEGMENT_BLOCKS):
                nb = min(SEGMENT_BLOCKS, blocks_per_row - b_lo)
                philox4x32_blocks(b_lo, nb, row_lo, row_hi, k0, k1, w0s, w1s, w2s, w3s)
                if per_block == 4:  # float32: the top 24 bits of each word
                    for j in range(nb):
                        v[4 * j] = np.uint64(w0s[j]) >> _S8
                        v[4 * j + 1] = np.uint64(w1s[j]) >> _S8
                        v[4 * j + 2] = np.uint64(w2s[j]) >> _S8
                        v[4 * j + 3] = np.uint64(w3s[j]) >> _S8
                else:  # float64: 27 + 26 bits of two words
                    for j in range(nb):
                        v[2 * j] = ((np.uint64(w0s[j]) >> _S5) << _S26) \
                            | (np.uint64(w1s[j]) >> _S6)
                        v[2 * j + 1] = ((np.uint64(w2s[j]) >> _S5) << _S26) \
                            | (np.uint64(w3s[j]) >> _S6)
                i0 = base + b_lo * per_block
                # a row's ragged last block has fewer units than words: its extra words unused
                n_seg = min(nb * per_block, units - b_lo * per_block)
                # views of the segment: indexed by the loop counter alone (known >= 0), the
                # loop needs no wraparound check and vectorizes (measured: 2.5x faster)
                xs, ys, ms = x[i0:i0 + n_seg], y[i0:i0 + n_seg], mask[i0:i0 + n_seg]
                for j in range(n_seg):
                    m = scale if v[j] >= threshold else zero
                    ms[j] = m
                    ys[j] = xs[j] * m
