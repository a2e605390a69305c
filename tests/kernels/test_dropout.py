"""kernels/dropout.py: Philox4x32-10 against its published known answers, the dropout kernel
against tests/naive.py, and the statistics of its masks."""

import math

import numba
import numpy as np
import pytest

import naive
from fastnn.kernels import dropout

# Random123's known-answer vectors for Philox4x32-10 (Random123 1.14, tests/kat_vectors, the
# three "philox4x32 10" lines: counter (4 words), key (2 words), result (4 words); also in
# Salmon et al. 2011's reference code). NumPy's np.random.Philox is Philox4x64, not a
# reference for this generator.
PHILOX4X32_10_KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def run(x2d, p, key, row_offset=0, variant="serial"):
    """(y, mask) of the kernel on the (rows, units) array ``x2d``."""
    rows, units = x2d.shape
    x = np.ascontiguousarray(x2d).reshape(-1)
    y, mask = np.full_like(x, np.nan), np.full_like(x, np.nan)
    fn = getattr(dropout.dropout_forward, variant)
    fn(x, p, key % 2**32, key >> 32, row_offset, units, y, mask)
    return y.reshape(rows, units), mask.reshape(rows, units)


@pytest.mark.parametrize("counter,key,expected", PHILOX4X32_10_KAT)
def test_philox_matches_the_published_known_answers(counter, key, expected):
    words = dropout.philox4x32(*(np.uint64(v) for v in counter), *(np.uint64(v) for v in key))
    assert tuple(int(w) for w in words) == expected
    assert naive.philox4x32_10(counter, key) == expected  # the twin too


def test_uniform_conversions_use_the_top_bits_and_stay_below_one():
    assert dropout.uniform24(np.uint64(0)) == 0.0
    assert dropout.uniform24(np.uint64(0xFFFFFFFF)) == 1.0 - 2.0**-24
    assert dropout.uniform24(np.uint64(0xFF)) == 0.0  # the low 8 bits are dropped
    assert dropout.uniform24(np.uint64(0x80000000)) == 0.5
    assert dropout.uniform53(np.uint64(0xFFFFFFFF), np.uint64(0xFFFFFFFF)) == 1.0 - 2.0**-53
    assert dropout.uniform53(np.uint64(0), np.uint64(0x3F)) == 0.0
    assert dropout.uniform53(np.uint64(0), np.uint64(0x40)) == 2.0**-53
    assert dropout.uniform53(np.uint64(0x80000000), np.uint64(0)) == 0.5


@pytest.mark.parametrize("units", [1, 2, 3, 4, 5, 7, 8, 13])
def test_forward_matches_naive(dtype, units):
    rng = np.random.default_rng(units)
    x = rng.standard_normal((9, units)).astype(dtype)
    key, offset = 0x0123456789ABCDEF, 2**32 - 4  # rows cross into the counter's high word
    y_ref, mask_ref = naive.dropout_counter_based(x, 0.3, key, offset)
    for variant in ("serial", "parallel"):
        y, mask = run(x, 0.3, key, offset, variant)
        np.testing.assert_array_equal(mask, mask_ref.astype(dtype))  # the same drops, exactly
        np.testing.assert_array_equal(y, (x * mask_ref.astype(dtype)))


def test_threshold_on_the_uniform_grid_equals_comparing_with_p(dtype):
    # p exactly on, and just off, the points the uniforms can take: u >= p must hold as in
    # float64 arithmetic, whatever rounding p suffers in the array's dtype.
    x = np.ones((64, 40), dtype)
    u = naive.dropout_uniforms(64, 40, 99, 0, dtype)
    for target in np.sort(u.ravel())[[100, 1000, 2000]]:  # values that u takes
        for p in (target, np.nextafter(target, 0), np.nextafter(target, 1),
                  target - 2.0**-30, target + 2.0**-30):
            _, mask = run(x, float(p), 99)
            np.testing.assert_array_equal(mask != 0, u >= p)


def test_a_split_of_the_rows_gives_the_rows_of_the_whole(dtype):
    x = np.random.default_rng(0).standard_normal((37, 11)).astype(dtype)
    y, mask = run(x, 0.5, 7)
    for cut in (1, 18, 36):
        y_a, m_a = run(x[:cut], 0.5, 7, row_offset=0)
        y_b, m_b = run(x[cut:], 0.5, 7, row_offset=cut)
        np.testing.assert_array_equal(np.vstack([m_a, m_b]), mask)
        np.testing.assert_array_equal(np.vstack([y_a, y_b]), y)


def test_same_bits_on_one_or_two_threads_and_serial(dtype):
    x = np.random.default_rng(1).standard_normal((300, 257)).astype(dtype)  # many chunks
    y_serial, m_serial = run(x, 0.2, 12345, 3)
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            y, m = run(x, 0.2, 12345, 3, "parallel")
            np.testing.assert_array_equal(y, y_serial)
            np.testing.assert_array_equal(m, m_serial)
    finally:
        numba.set_num_threads(before)


def test_y_may_overwrite_x(dtype):
    x = np.random.default_rng(2).standard_normal((5, 6)).astype(dtype)
    y_ref, m_ref = run(x, 0.4, 3)
    flat = x.reshape(-1).copy()
    mask = np.empty_like(flat)
    dropout.dropout_forward.serial(flat, 0.4, 3, 0, 0, 6, flat, mask)
    np.testing.assert_array_equal(flat.reshape(5, 6), y_ref)


def binomial_bound(n, p, sigmas=5.0):
    return sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.9])
def test_fraction_of_zeros_is_p_within_a_binomial_bound(dtype, p):
    x = np.ones((512, 1000), dtype)
    _, mask = run(x, p, 2024, variant="parallel")
    dropped = mask == 0
    assert abs(dropped.mean() - p) < binomial_bound(dropped.size, p)
    np.testing.assert_array_equal(mask[~dropped], dtype(1 / (1 - p)))
    # every row and every column drops at the rate p (no unit or row is favoured)
    assert np.all(np.abs(dropped.mean(axis=1) - p) < binomial_bound(1000, p, 6))
    assert np.all(np.abs(dropped.mean(axis=0) - p) < binomial_bound(512, p, 6))


def test_masks_are_uncorrelated_across_rows_units_and_keys(dtype):
    x = np.ones((400, 400), dtype)
    kept = run(x, 0.5, 1)[1] != 0
    other_key = run(x, 0.5, 2)[1] != 0
    shifted = run(x, 0.5, 1, row_offset=1)[1] != 0
    bound = binomial_bound(kept.size, 0.5, 6) * 2  # correlation of two fair coins, ~N(0, 1/n)

    def corr(a, b):
        return abs(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    assert corr(kept, other_key) < bound  # another key (the next step): a new mask
    assert corr(kept[1:], kept[:-1]) < bound  # neighbouring rows
    assert corr(kept[:, 1:], kept[:, :-1]) < bound  # neighbouring units (within Philox blocks)
    assert corr(kept[:, 4:], kept[:, :-4]) < bound  # the same word of neighbouring blocks
    np.testing.assert_array_equal(shifted[:-1], kept[1:])  # rows are numbered, not positions
    assert corr(shifted, kept) < bound


def test_uniforms_fill_the_interval_evenly(dtype):
    # chi-square over 64 bins of the uniforms behind a mask (via thresholds p = k/64)
    x = np.ones((256, 256), dtype)
    n = x.size
    drops = [float((run(x, k / 64, 77)[1] == 0).mean()) for k in range(65 - 1)] + [1.0]
    counts = np.diff(np.array(drops)) * n
    chi2 = float(((counts - n / 64) ** 2 / (n / 64)).sum())
    assert chi2 < 120  # 63 degrees of freedom: P(chi2 > 120) < 1e-5
