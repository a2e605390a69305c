"""kernels/conv.py against tests/naive.py."""

import numba
import numpy as np
import pytest

import naive
from fastnn.kernels import conv
from fastnn.kernels.activations import CODES, IDENTITY

# (N, C, H, W, O, kh, kw, stride, padding (t, b, l, r), dilation, groups)
CASES = [
    (2, 3, 7, 6, 4, 3, 3, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (3, 2, 8, 5, 5, 2, 3, (2, 1), (1, 1, 2, 2), (1, 1), 1),
    (2, 4, 9, 9, 6, 3, 2, (2, 3), (0, 1, 1, 0), (2, 1), 2),  # asymmetric, dilated, groups
    (2, 4, 6, 7, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 4),  # depthwise
    (1, 3, 5, 5, 2, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 1x1
]


def _buffers(case, dtype, code):
    n, c, h, w, o, kh, kw, stride, pad, dil, groups = case
    oh = conv.output_size(h, kh, stride[0], pad[0], pad[1], dil[0])
    ow = conv.output_size(w, kw, stride[1], pad[2], pad[3], dil[1])
    cols = np.empty((groups, c // groups * kh * kw, n * oh * ow), dtype)
    z = np.empty((o, n * oh * ow), dtype)
    y = np.empty((n, o, oh, ow), dtype)
    d = np.empty((n if code != IDENTITY else 0, o, oh, ow), dtype)
    return cols, z, y, d


def _run(case, dtype, act, bias=True, seed=0):
    n, c, h, w, o, kh, kw, stride, pad, dil, groups = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = rng.standard_normal((o, c // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else np.empty(0, dtype)
    code = CODES[act]
    cols, z, y, d = _buffers(case, dtype, code)
    conv.conv2d_forward(x, W, b, stride, pad, dil, groups, code, 0.0, cols, z, y, d)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dz, partial = np.empty_like(z), np.empty((n, o))
    dcols, dx = np.empty_like(cols), np.empty_like(x)
    dW, db = np.empty_like(W), np.empty(o, dtype) if bias else None
    conv.conv2d_backward(dy, d, cols, W, stride, pad, dil, dz, partial, dcols, dx, dW, db)
    return (x, W, b if bias else None, dy), (y, d, dx, dW, db)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("act", ["identity", "relu"])
def test_forward_and_backward_match_the_naive_twin(case, act, dtype, tol):
    _, _, _, _, _, _, _, stride, pad, dil, groups = case
    (x, W, b, dy), (y, d, dx, dW, db) = _run(case, dtype, act)
    y_ref, d_ref = naive.conv2d_forward(x, W, b, stride, pad, dil, groups, act)
    np.testing.assert_allclose(y, y_ref, rtol=tol["rtol"], atol=tol["atol"] * 10)
    if act != "identity":
        np.testing.assert_allclose(d, d_ref, **tol)
    dx_ref, dW_ref, db_ref = naive.conv2d_backward(dy, x, W, stride, pad, dil, groups, d_ref)
    for got, ref in ((dx, dx_ref), (dW, dW_ref), (db, db_ref)):
        np.testing.assert_allclose(got, ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 30)


def test_without_bias_and_without_dx_and_accumulating_dW():
    case = CASES[1]
    n, c, h, w, o, kh, kw, stride, pad, dil, groups = case
    (x, W, _, dy), (y, d, _, dW, _) = _run(case, np.float64, "identity", bias=False)
    y_ref, _ = naive.conv2d_forward(x, W, None, stride, pad, dil, groups)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    cols, z, _, _ = _buffers(case, np.float64, IDENTITY)
    conv.conv2d_forward(x, W, np.empty(0), stride, pad, dil, groups, IDENTITY, 0.0, cols, z,
                        np.empty_like(y), d)
    acc = np.ones_like(W)
    conv.conv2d_backward(dy, d, cols, W, stride, pad, dil, np.empty_like(z), np.empty((n, o)),
                         None, None, None, None, accumulate_dW=acc)
    np.testing.assert_allclose(acc, dW + 1.0, rtol=1e-12)


def test_same_bits_on_one_and_two_threads():
    # float32 only: the kernels split the work over images and rows whatever the dtype (no
    # block size depends on it), so float64 would check the same split again, at the price
    # of compiling three parallel kernels for this test alone (~9 s on a cold cache)
    case = (8, 6, 12, 12, 16, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1)  # large enough for the pool
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            results.append(_run(case, np.float32, "relu")[1])
    finally:
        numba.set_num_threads(before)
    for a, b in zip(results[0], results[-1], strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("with_d", [True, False])
def test_dz_and_bias_partial_matches_the_naive_twin(with_d, dtype, tol):
    rng = np.random.default_rng(5)
    n, o, p = 3, 4, 7
    dy = rng.standard_normal((n, o, p)).astype(dtype)
    d = rng.standard_normal((n, o, p)).astype(dtype) if with_d else np.empty((0, o, p), dtype)
    dz, partial = np.full((o, n * p), np.nan, dtype), np.full((n, o), np.nan)
    conv.dz_and_bias_partial.serial(dy, d, dz, partial)
    dz_ref, partial_ref = naive.conv_dz_and_bias_partial(dy, d if with_d else None)
    assert np.array_equal(dz, dz_ref)  # one product, one rounding: the same bits
    np.testing.assert_allclose(partial, partial_ref, rtol=1e-12, atol=1e-12)


def test_dz_plane_spreads_rows_over_a_wider_grid():
    # the shifted products' layout: rows of OW values every Wp positions, the gaps untouched
    rng = np.random.default_rng(6)
    n, o, rows, row_len, stride = 2, 3, 4, 5, 7
    dy = rng.standard_normal((n, o, rows * row_len))
    d = rng.standard_normal((n, o, rows * row_len))
    dst = np.full((rows - 1) * stride + row_len + 2, np.nan)
    s = conv._dz_plane(dy, d, 1, 2, rows, row_len, dst, stride)
    want = (dy[1, 2] * d[1, 2]).reshape(rows, row_len)
    grid = np.full(((rows - 1) * stride + row_len + 2 + stride - 1) // stride * stride, np.nan)
    grid[:dst.size] = dst
    grid = grid.reshape(-1, stride)
    assert np.array_equal(grid[:rows, :row_len], want)
    assert np.isnan(grid[:rows - 1, row_len:]).all() and np.isnan(dst[-2:]).all()
    np.testing.assert_allclose(s, want.sum(), rtol=1e-12)


DEPTHWISE = [  # (N, C, H, W, multiplier, kh, kw, stride, padding, dilation)
    (2, 3, 7, 6, 1, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (2, 2, 8, 9, 2, 2, 3, (2, 1), (0, 1, 2, 0), (1, 2)),
    (1, 4, 6, 7, 1, 3, 2, (1, 2), (1, 1, 0, 1), (2, 1)),
]


@pytest.mark.parametrize("case", DEPTHWISE)
@pytest.mark.parametrize("act", ["identity", "tanh"])
def test_depthwise_direct_matches_the_naive_twin(case, act, dtype, tol):
    n, c, h, w, mult, kh, kw, stride, pad, dil = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = rng.standard_normal((c * mult, 1, kh, kw)).astype(dtype)
    b = rng.standard_normal(c * mult).astype(dtype)
    oh = conv.output_size(h, kh, stride[0], pad[0], pad[1], dil[0])
    ow = conv.output_size(w, kw, stride[1], pad[2], pad[3], dil[1])
    y = np.empty((n, c * mult, oh, ow), dtype)
    d = np.empty_like(y) if act != "identity" else y[:0]
    conv.depthwise_forward_call(x, W, b, stride, pad, dil, CODES[act], 0.0, y, d)
    y_ref, d_ref = naive.conv2d_forward(x, W, b, stride, pad, dil, c, act)
    np.testing.assert_allclose(y, y_ref, rtol=tol["rtol"], atol=tol["atol"] * 10)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dW, db = np.empty_like(x), np.empty_like(W), np.empty_like(b)
    conv.depthwise_backward_call(dy, d, x, W, stride, pad, dil, np.empty_like(y),
                                 np.empty((n, c * mult, kh * kw)), np.empty((n, c * mult)),
                                 dx, dW, db)
    dx_ref, dW_ref, db_ref = naive.conv2d_backward(dy, x, W, stride, pad, dil, c,
                                                   d_ref if act != "identity" else None)
    for got, ref in ((dx, dx_ref), (dW, dW_ref), (db, db_ref)):
        np.testing.assert_allclose(got, ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 30)


def test_depthwise_same_bits_on_one_and_two_threads():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 16, 12, 12)).astype(np.float32)
    W = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    b = np.zeros(16, np.float32)
    pad = (1, 1, 1, 1)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            y, d = np.empty((8, 16, 12, 12), np.float32), np.empty((8, 16, 12, 12), np.float32)
            conv.depthwise_forward_call(x, W, b, (1, 1), pad, (1, 1), CODES["relu"], 0.0, y, d)
            dx, dW, db = np.empty_like(x), np.empty_like(W), np.empty_like(b)
            conv.depthwise_backward_call(y, d, x, W, (1, 1), pad, (1, 1), np.empty_like(y),
                                         np.empty((8, 16, 9)), np.empty((8, 16)), dx, dW, db)
            results.append((y, dx, dW, db))
    finally:
        numba.set_num_threads(before)
    for a, b_ in zip(results[0], results[-1], strict=True):
        assert np.array_equal(a, b_)


# The chunked path (chunks of images in cache, for large layers) at small shapes: the chunk
# size and the task cap are lowered through their parameters. (N, C, H, W, O, kh, kw,
# stride, padding, dilation, groups, images per chunk, max tasks)
CHUNKED = [
    (5, 3, 7, 6, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, 2, 16),  # a short last chunk
    (7, 4, 9, 8, 6, 3, 2, (2, 1), (0, 1, 1, 0), (2, 1), 2, 1, 3),  # tasks of 2-3 chunks, groups
]


def _run_chunked(case, dtype, act, bias=True, accumulate=False, seed=0):
    n, c, h, w, o, kh, kw, stride, pad, dil, groups, per_chunk, max_tasks = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = rng.standard_normal((o, c // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else np.empty(0, dtype)
    oh = conv.output_size(h, kh, stride[0], pad[0], pad[1], dil[0])
    ow = conv.output_size(w, kw, stride[1], pad[2], pad[3], dil[1])
    shapes = conv.chunk_scratch_shapes(n, W.shape, oh, ow, groups, per_chunk, max_tasks)
    scratch = {k: np.empty(s, dtype) for k, s in shapes.items()}
    y = np.empty((n, o, oh, ow), dtype)
    d = np.empty((n if act != "identity" else 0, o, oh, ow), dtype)
    conv.conv2d_forward_chunked(x, W, b, stride, pad, dil, groups, CODES[act], 0.0, per_chunk,
                                scratch["cols"], scratch["z"], y, d, max_tasks=max_tasks)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dW, db = np.empty_like(x), np.empty_like(W), np.empty(o, dtype) if bias else None
    acc = np.ones_like(W) if accumulate else None
    conv.conv2d_backward_chunked(dy, d, x, W, stride, pad, dil, groups, per_chunk,
                                 scratch["cols"], np.empty(shapes["z"], dtype),
                                 scratch["dcols"], scratch["dW_tasks"], np.empty((n, o)), dx,
                                 dW, db, accumulate_dW=acc, max_tasks=max_tasks)
    return (x, W, b if bias else None, dy), (y, d, dx, acc if accumulate else dW, db)


@pytest.mark.parametrize("case", CHUNKED)
@pytest.mark.parametrize("act", ["identity", "relu"])
def test_chunked_matches_the_naive_twin(case, act, dtype, tol):
    stride, pad, dil, groups = case[7:11]
    (x, W, b, dy), (y, d, dx, dW, db) = _run_chunked(case, dtype, act)
    y_ref, d_ref = naive.conv2d_forward(x, W, b, stride, pad, dil, groups, act)
    np.testing.assert_allclose(y, y_ref, rtol=tol["rtol"], atol=tol["atol"] * 10)
    if act != "identity":
        np.testing.assert_allclose(d, d_ref, **tol)
    dx_ref, dW_ref, db_ref = naive.conv2d_backward(dy, x, W, stride, pad, dil, groups,
                                                   d_ref if act != "identity" else None)
    for got, ref in ((dx, dx_ref), (dW, dW_ref), (db, db_ref)):
        np.testing.assert_allclose(got, ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 30)


def test_chunked_without_bias_accumulates_dW():
    case = CHUNKED[1]
    stride, pad, dil, groups = case[7:11]
    (x, W, _, dy), (y, _, _, acc, _) = _run_chunked(case, np.float64, "identity", bias=False,
                                                     accumulate=True)
    np.testing.assert_allclose(y, naive.conv2d_forward(x, W, None, stride, pad, dil,
                                                       groups)[0], rtol=1e-12, atol=1e-12)
    _, dW_ref, _ = naive.conv2d_backward(dy, x, W, stride, pad, dil, groups, None)
    np.testing.assert_allclose(acc, dW_ref + 1.0, rtol=1e-12, atol=1e-12)


def test_chunked_same_bits_on_one_and_two_threads():
    case = (9, 6, 12, 12, 16, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, 2, 16)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            # the parallel variant whatever the size (the serial one is the same loop)
            results.append(_run_chunked(case, np.float32, "relu")[1])
    finally:
        numba.set_num_threads(before)
    for a, b in zip(results[0], results[-1], strict=True):
        assert np.array_equal(a, b)


def test_chunk_plan_keeps_small_layers_batch_wide():
    # LeNet-5's convolutions (batch 64): column matrices of 5 and 3.8 MB, batch-wide
    assert conv.chunk_plan(64, 1, 28, 28, 5, 5, 4) == 0
    assert conv.chunk_plan(64, 6, 10, 10, 5, 5, 4) == 0
    # the small CIFAR net's 32->32 convolution (batch 128, 151 MB): one image per chunk
    assert conv.chunk_plan(128, 32, 32, 32, 3, 3, 4) == 1
    assert conv.chunk_plan(128, 3, 32, 32, 3, 3, 4) == 4


# The shifted products (stride 1, groups 1: no column matrix), at small shapes with small
# chunks and task caps. (N, C, H, W, O, kh, kw, padding, dilation, images per chunk,
# max tasks)
SHIFTED = [
    (5, 3, 7, 6, 4, 3, 3, (1, 1, 1, 1), (1, 1), 2, 16),  # a short last chunk
    (7, 4, 9, 8, 6, 3, 2, (0, 1, 2, 0), (2, 1), 1, 3),  # asymmetric, dilated, tasks of 2-3
    (3, 5, 6, 6, 3, 1, 1, (0, 0, 0, 0), (1, 1), 3, 16),  # 1x1, one chunk
    (2, 2, 5, 7, 3, 5, 4, (2, 2, 1, 2), (1, 1), 1, 16),  # a kernel as large as the input
]


def _run_shifted(case, dtype, act, bias=True, accumulate=False, want_dx=True, seed=0):
    n, c, h, w, o, kh, kw, pad, dil, per_chunk, max_tasks = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = rng.standard_normal((o, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else np.empty(0, dtype)
    oh = conv.output_size(h, kh, 1, pad[0], pad[1], dil[0])
    ow = conv.output_size(w, kw, 1, pad[2], pad[3], dil[1])
    shapes = conv.shifted_scratch_shapes(n, W.shape, per_chunk, max_tasks)
    # scratch full of NaN: the kernels must write every value they read
    s = {k: np.full(shape, np.nan, dtype) for k, shape in shapes.items()}
    y = np.empty((n, o, oh, ow), dtype)
    d = np.empty((n if act != "identity" else 0, o, oh, ow), dtype)
    conv.conv2d_forward_shifted(x, W, b, pad, dil, CODES[act], 0.0, per_chunk, s["w_taps"], y,
                                d, max_tasks=max_tasks)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = np.empty_like(x) if want_dx else None
    dW, db = np.empty_like(W), np.empty(o, dtype) if bias else None
    acc = np.ones_like(W) if accumulate else None
    s = {k: np.full(shape, np.nan, dtype) for k, shape in shapes.items()}
    conv.conv2d_backward_shifted(dy, d, x, W, pad, dil, per_chunk, s["w_taps"], s["dW_tasks"],
                                 np.empty((n, o)), dx, dW, db, accumulate_dW=acc,
                                 max_tasks=max_tasks)
    return (x, W, b if bias else None, dy), (y, d, dx, acc if accumulate else dW, db)


@pytest.mark.parametrize("case", SHIFTED)
@pytest.mark.parametrize("act", ["identity", "relu"])
def test_shifted_matches_the_naive_twin(case, act, dtype, tol):
    pad, dil = case[7:9]
    (x, W, b, dy), (y, d, dx, dW, db) = _run_shifted(case, dtype, act)
    y_ref, d_ref = naive.conv2d_forward(x, W, b, (1, 1), pad, dil, 1, act)
    np.testing.assert_allclose(y, y_ref, rtol=tol["rtol"], atol=tol["atol"] * 10)
    if act != "identity":
        np.testing.assert_allclose(d, d_ref, **tol)
    dx_ref, dW_ref, db_ref = naive.conv2d_backward(dy, x, W, (1, 1), pad, dil, 1,
                                                   d_ref if act != "identity" else None)
    for got, ref in ((dx, dx_ref), (dW, dW_ref), (db, db_ref)):
        np.testing.assert_allclose(got, ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 30)


def test_shifted_without_bias_or_dx_accumulates_dW():
    case = SHIFTED[1]
    pad, dil = case[7:9]
    (x, W, _, dy), (y, _, dx, acc, db) = _run_shifted(case, np.float64, "identity",
                                                      bias=False, accumulate=True,
                                                      want_dx=False)
    assert dx is None and db is None
    np.testing.assert_allclose(y, naive.conv2d_forward(x, W, None, (1, 1), pad, dil, 1)[0],
                               rtol=1e-12, atol=1e-12)
    _, dW_ref, _ = naive.conv2d_backward(dy, x, W, (1, 1), pad, dil, 1, None)
    np.testing.assert_allclose(acc, dW_ref + 1.0, rtol=1e-12, atol=1e-12)


def test_shifted_same_bits_on_one_and_two_threads():
    case = (9, 16, 10, 10, 8, 3, 3, (1, 1, 1, 1), (1, 1), 2, 16)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            got = _run_shifted(case, np.float32, "relu")[1]
            # and without dx (a first layer), each call on the parallel variant
            got_no_dx = _run_shifted(case, np.float32, "identity", want_dx=False)[1]
            results.append(got + tuple(a for a in got_no_dx if a is not None))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(results[0], results[-1], strict=True):
        assert np.array_equal(a, b)


def test_uses_shifted_only_for_stride_one_and_groups_one():
    assert conv.uses_shifted((1, 1), 1)
    assert not conv.uses_shifted((2, 1), 1)
    assert not conv.uses_shifted((1, 1), 2)
