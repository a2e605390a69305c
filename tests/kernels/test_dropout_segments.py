"""kernels/dropout.py's vectorized Philox pass (``philox4x32_blocks``) and the kernel on rows
longer than one segment of SEGMENT_BLOCKS blocks: the same words and masks as the scalar
Philox4x32-10 of tests/naive.py."""

import numpy as np

import naive
from fastnn.kernels import dropout


def test_blocks_equal_the_scalar_philox_word_for_word():
    n, b_lo, row_lo, row_hi, key = 37, 2**32 - 40, 0xFFFFFFFF, 3, (0xA4093822, 0x299F31D0)
    words = [np.full(n, 7, np.uint32) for _ in range(4)]
    dropout.philox4x32_blocks(b_lo, n, np.uint64(row_lo), np.uint64(row_hi),
                              np.uint64(key[0]), np.uint64(key[1]), *words)
    for j in range(n):
        expected = naive.philox4x32_10((b_lo + j, row_lo, row_hi, 0), key)
        assert tuple(int(w[j]) for w in words) == expected


def test_rows_longer_than_a_segment_match_naive(dtype):
    per = 2 if dtype == np.float64 else 4
    units = dropout.SEGMENT_BLOCKS * per * 2 + per + 1  # two whole segments, a part, a tail
    x = np.random.default_rng(3).standard_normal((2, units)).astype(dtype)
    key, offset = 0x0123456789ABCDEF, 5
    _, mask_ref = naive.dropout_counter_based(x, 0.25, key, offset)
    for variant in (dropout.dropout_forward.serial, dropout.dropout_forward.parallel):
        flat = x.reshape(-1).copy()
        y, mask = np.empty_like(flat), np.empty_like(flat)
        variant(flat, 0.25, key % 2**32, key >> 32, offset, units, y, mask)
        np.testing.assert_array_equal(mask.reshape(x.shape), mask_ref.astype(dtype))
        np.testing.assert_array_equal(y.reshape(x.shape), x * mask_ref.astype(dtype))
