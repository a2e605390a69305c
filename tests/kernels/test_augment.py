"""kernels/augment.py against tests/naive.py (and torchvision's formula, written out)."""

import numba
import numpy as np
import pytest

import naive
from fastnn.kernels import augment


@pytest.mark.parametrize("shape,pad", [((3, 5, 6), 2), ((1, 4, 4), 4), ((2, 3, 7), 0)])
def test_flip_crop_matches_the_naive_twin(shape, pad, dtype):
    C, H, W = shape
    rng = np.random.default_rng(0)
    B = 9
    x = rng.standard_normal((B, C * H * W)).astype(dtype)
    offsets = rng.integers(0, 2 * pad + 1, size=(B, 2))
    offsets[0] = (0, 2 * pad)  # the corners of the padded image
    offsets[1] = (2 * pad, 0)
    flips = (rng.random(B) < 0.5).astype(np.uint8)
    flips[:2] = (1, 0)
    expected = naive.flip_crop(x, C, H, W, pad, offsets, flips)
    got = x.copy()
    augment.flip_crop.serial(got, C, H, W, pad, offsets, flips, np.empty_like(x))
    assert np.array_equal(got, expected)


def test_flip_crop_without_shift_or_flip_is_the_identity_and_flip_twice_too():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 2 * 3 * 5)).astype(np.float32)
    scratch = np.empty_like(x)
    same = x.copy()
    centre = np.full((4, 2), 4)
    augment.flip_crop.serial(same, 2, 3, 5, 4, centre, np.zeros(4, np.uint8), scratch)
    assert np.array_equal(same, x)
    twice = x.copy()
    for _ in range(2):
        augment.flip_crop.serial(twice, 2, 3, 5, 4, centre, np.ones(4, np.uint8), scratch)
    assert np.array_equal(twice, x)


def test_flip_crop_same_bits_on_one_and_two_threads():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 3 * 16 * 16)).astype(np.float32)
    offsets = rng.integers(0, 9, size=(64, 2))
    flips = (rng.random(64) < 0.5).astype(np.uint8)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            got = x.copy()
            augment.flip_crop.parallel(got, 3, 16, 16, 4, offsets, flips, np.empty_like(x))
            results.append(got)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(results[0], results[-1])
    assert np.array_equal(results[0], naive.flip_crop(x, 3, 16, 16, 4, offsets, flips))
