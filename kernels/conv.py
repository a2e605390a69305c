"""2-D convolution (PyTorch's Conv2d, NCHW), bias and activation fused, by one of three
algorithms (the caller picks by :func:`uses_direct`, :func:`uses_shifted`, :func:`chunk_plan`):

- stride 1, groups 1 (every layer of LeNet-5 and of the small CIFAR net): shifted products on
  the zero-padded images, no column matrix (:func:`conv2d_forward_shifted`, below);
- depthwise (groups == C == O): direct loops (:func:`depthwise_forward_call`);
- otherwise (strided, grouped): im2col and BLAS products, batch-wide for a small layer
  (:func:`conv2d_forward`, described here) or chunk by chunk in cache for a large one
  (:func:`conv2d_forward_chunked`).

The formula, for all three:

    z[n, o, oh, ow] = b[o] + sum_{c, i, j} W[o, c, i, j]
                      * x[n, g*Cg + c, oh*sh - pt + i*dh, ow*sw - pl + j*dw]
    y = act(z),  d = act'(z)

with g = o // Og the group of output channel o, Cg = C / G input and Og = O / G output
channels per group, taps outside the input reading zero (padding top/bottom pt/pb, left/right
pl/pr: asymmetric padding is what "same" needs for an even kernel, as PyTorch pads), and
OH = (H + pt + pb - dh (kh - 1) - 1) // sh + 1 (OW alike).

Shapes: x (N, C, H, W); W (O, Cg, kh, kw) (PyTorch's layout); b (O,) or (0,); y, d, dy
(N, O, OH, OW); with P = OH * OW and CKg = Cg * kh * kw:

- ``cols`` (G, CKg, N * P), the column matrix, row (c, i, j) of group g holding, for every
  output position of every image, the input value its tap (c, i, j) reads (im2col);
- ``z`` / ``dz`` (O, N * P): the product W_g (Og, CKg) @ cols[g] (CKg, N P) for each group,
  stacked: group-major rows are exactly the output channels, so the pass that adds the bias,
  applies the activation and transposes to NCHW does not care about groups.

Forward: im2col (parallel over (row of cols, image) pairs: pure copies), G BLAS products
through ``blas.gemm`` (one for groups=1, the hot path), then one pass per (image, channel)
that writes y, d. Backward: one pass forms dz = dy * d transposed into (O, N P) and the bias
gradient's per-image partial sums (float64, added in image order: deterministic), then per
group dW_g = dz_g cols_g^T and dcols_g = W_g^T dz_g, and col2im (parallel over (image,
channel) planes, each plane summed in a fixed order by one thread: no races, the same bits
on any number of threads).

Why one product with N P columns rather than one per image: a training batch gives a wide
product that ``blas.gemm`` splits over fastnn's pool (column blocks), where N products of
(O, CKg) @ (CKg, P) would each be too small to split and cost a Python call each.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ._jit import jit, kernel
from ._typed import typed
from .activations import IDENTITY, activation_row
from .blas import (
    _NO_TRANS,
    _TRANS,
    PARALLEL_MIN_WORK,
    _cblas,
    gemm,
    hold_blas_to_one_thread,
    restore_blas_threads,
)


def output_size(size: int, kernel_size: int, stride: int, pad_lo: int, pad_hi: int,
                dilation: int) -> int:
    """Output length of a convolution along one axis: (size + pads - dil (k - 1) - 1) // s + 1."""
    return (size + pad_lo + pad_hi - dilation * (kernel_size - 1) - 1) // stride + 1


@jit
def _valid_range(off, stride, size, n_out):
    """[lo, hi) of the output indices o with 0 <= o * stride + off < size."""
    lo = 0 if off >= 0 else (-off + stride - 1) // stride
    last = size - 1 - off
    hi = 0 if last < 0 else min(n_out, last // stride + 1)
    return lo, max(lo, hi)


@jit
def _im2col_stretch(plane, i, j, sh, sw, pt, pl, dh, dw, OH, OW, out, col0):
    """out[col0 + oh*OW + ow] = plane[oh*sh - pt + i*dh, ow*sw - pl + j*dw] (0 outside the
    (H, W) plane): the OH * OW values that tap (i, j) reads for one image and channel."""
    H, W = plane.shape
    zero = typed(plane[0, 0], 0.0)
    off_w = j * dw - pl
    lo, hi = _valid_range(off_w, sw, W, OW)
    for oh in range(OH):
        h = oh * sh - pt + i * dh
        base = col0 + oh * OW
        if h < 0 or h >= H:
            for ow in range(OW):
                out[base + ow] = zero
            continue
        xrow = plane[h]
        for ow in range(lo):
            out[base + ow] = zero
        if sw == 1:  # a contiguous stretch: a copy LLVM vectorizes
            dst = out[base + lo:base + hi]
            part = xrow[lo + off_w:hi + off_w]
            for k in range(hi - lo):
                dst[k] = part[k]
        else:
            for ow in range(lo, hi):
                out[base + ow] = xrow[ow * sw + off_w]
        for ow in range(hi, OW):
            out[base + ow] = zero


@kernel
def im2col(x, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, cols):
    """cols[g, (c*kh + i)*kw + j, n*P + oh*OW + ow] = x[n, g*Cg + c, oh*sh - pt + i*dh,
    ow*sw - pl + j*dw], or 0 outside x. x (N, C, H, W); cols (G, Cg*kh*kw, N*OH*OW).

    Parallel over (row of cols, image) pairs: each writes its own stretch of P values and
    reads x only, so any split is exact.
    """
    N, C, H, W = x.shape
    G, CKg, NP = cols.shape
    Cg = C // G
    P = OH * OW
    for t in prange(G * CKg * N):
        n = t % N
        row = t // N
        g = row // CKg
        r = row % CKg
        c = r // (kh * kw)
        _im2col_stretch(x[n, g * Cg + c], (r // kw) % kh, r % kw, sh, sw, pt, pl, dh, dw,
                        OH, OW, cols[g, r], n * P)


@jit
def _col2im_plane(dcols_g, c, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, col0, plane):
    """plane[h, w] = sum over taps (i, j) and outputs (oh, ow) reading (h, w) of
    dcols_g[(c*kh + i)*kw + j, col0 + oh*OW + ow], in the order (i, j, oh, ow): one image's
    channel c of the adjoint of im2col. dcols_g (CKg, >= col0 + OH*OW); plane (H, W)."""
    H, W = plane.shape
    plane[:, :] = 0
    for i in range(kh):
        for j in range(kw):
            src = dcols_g[(c * kh + i) * kw + j]
            off_w = j * dw - pl
            lo, hi = _valid_range(off_w, sw, W, OW)
            for oh in range(OH):
                h = oh * sh - pt + i * dh
                if h < 0 or h >= H:
                    continue
                xrow = plane[h]
                base = col0 + oh * OW
                if sw == 1:
                    dst = xrow[lo + off_w:hi + off_w]
                    part = src[base + lo:base + hi]
                    for k in range(hi - lo):
                        dst[k] += part[k]
                else:
                    for ow in range(lo, hi):
                        xrow[ow * sw + off_w] += src[base + ow]


@kernel
def col2im(dcols, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, dx):
    """dx[n, ch, h, w] = sum of dcols[g, (c*kh + i)*kw + j, n*P + oh*OW + ow] over the taps
    (i, j) and outputs (oh, ow) that read x[n, ch, h, w] (the adjoint of :func:`im2col`).

    Parallel over (image, channel) planes: each plane of dx is summed by one iteration, in
    the fixed order (i, j, oh, ow), so there are no races and the bits do not depend on the
    thread count.
    """
    N, C, H, W = dx.shape
    G, CKg, NP = dcols.shape
    Cg = C // G
    P = OH * OW
    for t in prange(N * C):
        n = t // C
        ch = t % C
        _col2im_plane(dcols[ch // Cg], ch % Cg, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW,
                      n * P, dx[n, ch])


@kernel
def bias_activation_nchw(code, alpha, z, b, y, d):
    """y[n, o, p] = act(z[o, n*P + p] + b[o]), d[n, o, p] = act'(.) (d untouched for the
    identity). z (O, N*P); b (O,) or (0,); y, d (N, O, P).

    Parallel over (image, channel) pairs: each writes one contiguous row of y (and of d).
    """
    N, O, P = y.shape
    has_bias = b.shape[0] == O
    for t in prange(N * O):
        n = t // O
        o = t % O
        src = z[o, n * P:(n + 1) * P]
        dst = y[n, o]
        if has_bias:
            bo = b[o]
            for p in range(P):
                dst[p] = src[p] + bo
        else:
            for p in range(P):
                dst[p] = src[p]
        if code != IDENTITY:
            activation_row(code, alpha, dst, d[n, o])


@jit
def _dz_plane(dy, d, n, o, rows, row_len, dst, row_stride):
    """One (image, channel) plane of dz = dy * d, written into ``dst``, and its sum: for
    r < rows and k < row_len,

        dst[r*row_stride + k] = dy[n, o, r*row_len + k] * d[n, o, r*row_len + k]

    (dy alone when d has no images: the identity has no local gradient); returns the sum of
    the values written, in float64, added in the order written (r, then k).

    dy, d (N, O, rows*row_len), d may be (0, O, rows*row_len); dst 1-D with at least
    (rows - 1)*row_stride + row_len values. ``row_stride`` row_len packs the plane
    (the im2col and depthwise layouts); a larger one spreads its rows over a wider grid
    (the shifted products' padded grid, where the positions between rows stay untouched).

    Serial: it is the body of one iteration of its callers' parallel loops over (image,
    channel) planes (or over tasks of whole chunks of images), so each plane's sum runs in
    one fixed order on one thread, and the bias gradient's partial sum of a plane has the
    same bits on any number of threads. The shared step of every convolution's backward
    pass (:func:`dz_and_bias_partial`, :func:`chunked_backward`, the shifted products'
    tasks and :func:`depthwise_backward_weight`).
    """
    g = dy[n, o]
    use_d = d.shape[0] == dy.shape[0]
    s = 0.0
    for r in range(rows):
        src = g[r * row_len:(r + 1) * row_len]
        out = dst[r * row_stride:r * row_stride + row_len]
        if use_d:
            h = d[n, o, r * row_len:(r + 1) * row_len]
            for k in range(row_len):
                v = src[k] * h[k]
                out[k] = v
                s += np.float64(v)
        else:
            for k in range(row_len):
                v = src[k]
                out[k] = v
                s += np.float64(v)
    return s


@kernel
def dz_and_bias_partial(dy, d, dz, partial):
    """dz[o, n*P + p] = dy[n, o, p] * d[n, o, p] (dy alone when d has no images) and
    partial[n, o] = sum_p dz[o, n*P + p] in float64 (:func:`_dz_plane`). dy, d (N, O, P);
    dz (O, N*P); partial (N, O) float64.

    Parallel over (image, channel) pairs: each writes its own stretch of dz and its own
    entry of ``partial``; the bias gradient adds ``partial`` over images in order.
    """
    N, O, P = dy.shape
    for t in prange(N * O):
        n = t // O
        o = t % O
        partial[n, o] = _dz_plane(dy, d, n, o, 1, P, dz[o, n * P:(n + 1) * P], P)


@jit
def _sum_images(partial, db):
    """db[o] = sum over images n, in order, of partial[n, o] (rounded once to db's dtype)."""
    for o in range(db.shape[0]):
        s = 0.0
        for n in range(partial.shape[0]):
            s += partial[n, o]
        db[o] = s


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, code, alpha,
                   cols, z, y, d) -> None:
    """y = act(conv2d(x, W) + b) and d = act'(.), by im2col and one product per group.

    Parameters
    ----------
    x : (N, C, H, W) C-contiguous. weight : (O, C/G, kh, kw) C-contiguous. bias : (O,) or (0,).
    stride, dilation : (sh, sw), (dh, dw). padding : (pt, pb, pl, pr). groups : G.
    code, alpha : the fused activation (``activations.CODES``).
    cols : (G, C/G*kh*kw, N*OH*OW) scratch, kept for backward. z : (O, N*OH*OW) scratch.
    y : (N, O, OH, OW) output. d : (N, O, OH, OW) local gradient (not touched for the
        identity; may then have no images).
    """
    N = x.shape[0]
    O, _, kh, kw = weight.shape
    OH, OW = y.shape[2], y.shape[3]
    (sh, sw), (dh, dw), (pt, _pb, pl, _pr) = stride, dilation, padding
    im2col(cols.size)(x, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, cols)
    G, CKg, NP = cols.shape
    Og = O // G
    W2 = weight.reshape(G, Og, CKg)
    for g in range(G):
        gemm(W2[g], cols[g], z[g * Og:(g + 1) * Og])
    bias_activation_nchw(y.size)(code, alpha, z, bias, y.reshape(N, O, OH * OW),
                                 d.reshape(d.shape[0], O, OH * OW))


def conv2d_backward(dy, d, cols, weight, stride, padding, dilation, dz, partial, dcols, dx,
                    dW, db, accumulate_dW=None) -> None:
    """Gradients of :func:`conv2d_forward` given dy = dL/dy.

    Parameters
    ----------
    dy : (N, O, OH, OW) C-contiguous. d : the forward's local gradient, or (0, O, OH, OW)
        for the identity. cols : the forward's column matrix (G, CKg, N*P).
    weight : (O, C/G, kh, kw). stride, padding, dilation : as the forward.
    dz : (O, N*P) scratch. partial : (N, O) float64 scratch.
    dcols : (G, CKg, N*P) scratch, or None with dx None.
    dx : (N, C, H, W) receives dL/dx, or None to skip it.
    dW : (O, C/G, kh, kw) receives dL/dW (C-contiguous), unless ``accumulate_dW`` is given:
        then dL/dW is added into it (beta = 1 in the product) and dW is not touched.
    db : (O,) receives dL/db, or None without a bias.
    """
    N, O, OH, OW = dy.shape
    P = OH * OW
    dz_and_bias_partial(dy.size)(dy.reshape(N, O, P), d.reshape(d.shape[0], O, P), dz,
                                 partial)
    if db is not None:
        _sum_images(partial, db)
    G, CKg, NP = cols.shape
    Og = O // G
    W2 = weight.reshape(G, Og, CKg)
    target = accumulate_dW if accumulate_dW is not None else dW
    if not target.flags.c_contiguous:  # a reshape would copy: the product would write a copy
        raise ValueError(f"conv2d_backward: the weight gradient must be C-contiguous, got "
                         f"strides {target.strides}")
    dW2 = target.reshape(G, Og, CKg)
    beta = 1.0 if accumulate_dW is not None else 0.0
    for g in range(G):
        dzg = dz[g * Og:(g + 1) * Og]
        gemm(dzg, cols[g], dW2[g], trans_b=True, beta=beta)
        if dx is not None:
            gemm(W2[g], dzg, dcols[g], trans_a=True)
    if dx is not None:
        _, kh, kw = weight.shape[1:]
        (sh, sw), (dh, dw), (pt, _pb, pl, _pr) = stride, dilation, padding
        col2im(dx.size)(dcols, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, dx)


# ------------------------------------------------------------- chunks of images, in cache
# For a large layer the column matrix of the whole batch does not fit in any cache (the
# small CIFAR net's 32->32 convolution at 32x32, batch 128: 151 MB), so im2col writes it to
# memory, the product reads it back, and both are bound by memory. Below, the batch is cut
# into chunks of a few images whose column matrix fits in a core's L2 cache; each chunk's
# im2col, product(s), bias and activation run back to back on one thread (single-threaded
# BLAS), so its column matrix never leaves that core's cache. The backward pass recomputes
# each chunk's columns from x rather than keeping them: no batch-sized column matrix at all.

#: Column-matrix size (bytes, whole batch) from which :func:`chunk_plan` cuts the batch into
#: chunks rather than running one batch-wide product (measurements in :func:`chunk_plan`).
CHUNK_MIN_BYTES = 8 << 20

#: Target size (bytes) of one chunk's column matrix: half of a core's 1 MiB L2 cache here,
#: leaving room for the chunk's product and the weights.
CHUNK_BYTES = 512 << 10

#: At most this many tasks (runs of consecutive chunks, each on one thread) per call: each
#: task keeps its own partial weight gradient, and these are added in task order at the end.
MAX_TASKS = 16


def chunk_plan(N: int, C: int, OH: int, OW: int, kh: int, kw: int, itemsize: int) -> int:
    """Images per chunk for a convolution of N images with C input channels and an (OH, OW)
    output, or 0 for the batch-wide product (:func:`conv2d_forward`).

    The choice and the chunk size follow the data's size alone, never the thread count, so
    the bits of a result do not depend on how many threads compute it.

    Measured (forward + backward with a fused ReLU, float32, batch 128, one thread, medians
    of 7 alternated calls on the shared, loaded 2-core machine; chunks of 256 KB / 512 KB /
    2 MB of columns against the batch-wide product): 3->32 channels at 32x32 (14 MB of
    columns) 103 / 89 / 108 against 133 ms; 32->32 at 32x32 (151 MB) 546 / 506 / 498
    against 620; 32->64 at 16x16 (38 MB) 198 / 192 / 192 against 224; 64->64 at 16x16
    (75 MB) 392 / 398 / 437 against 449. LeNet-5's layers (batch 64, 5 and 3.8 MB) gained
    nothing (17.0 batch-wide, 16.5-19.0 chunked; 14.5 against 14.4-15.5), hence 8 MB.
    """
    col_bytes_per_image = C * kh * kw * OH * OW * itemsize
    if N < 2 or N * col_bytes_per_image < CHUNK_MIN_BYTES:
        return 0
    return max(1, min(N, CHUNK_BYTES // col_bytes_per_image))


def chunk_tasks(N: int, images_per_chunk: int, max_tasks: int = MAX_TASKS) -> int:
    """Number of tasks of a chunked call: the number of chunks, at most ``max_tasks``."""
    return max(1, min(max_tasks, (N + images_per_chunk - 1) // images_per_chunk))


def chunk_scratch_shapes(N: int, weight_shape, OH: int, OW: int, groups: int,
                         images_per_chunk: int, max_tasks: int = MAX_TASKS) -> dict:
    """Shapes of the scratch arrays of :func:`conv2d_forward_chunked` and
    :func:`conv2d_backward_chunked`, per task: one chunk's column matrix (``cols``,
    ``dcols``) and product (``z``), and a partial weight gradient (``dW_tasks``).

    Per task rather than per pool thread: a thread's index (``numba.get_thread_id``) is not
    available in the serial variant before the pool has started (it crashed), and per-task
    scratch keeps the kernels free of any notion of threads (at most MAX_TASKS chunks'
    worth: 19 MB of columns for the CIFAR net's 32->32 layer, against 151 MB batch-wide)."""
    O, Cg, kh, kw = weight_shape
    cP = images_per_chunk * OH * OW
    tasks = chunk_tasks(N, images_per_chunk, max_tasks)
    return {"cols": (tasks, groups, Cg * kh * kw, cP), "z": (tasks, O, cP),
            "dcols": (tasks, groups, Cg * kh * kw, cP), "dW_tasks": (tasks, O, Cg * kh * kw)}


@jit
def _im2col_images(x, n0, n1, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, cols):
    """:func:`im2col` of images n0 <= n < n1 into the first (n1 - n0) P columns of
    cols (G, CKg, >= (n1 - n0) P), image n at columns (n - n0) P onward."""
    G, CKg, _ = cols.shape
    Cg = x.shape[1] // G
    P = OH * OW
    for g in range(G):
        for r in range(CKg):
            c = r // (kh * kw)
            for n in range(n0, n1):
                _im2col_stretch(x[n, g * Cg + c], (r // kw) % kh, r % kw, sh, sw, pt, pl,
                                dh, dw, OH, OW, cols[g, r], (n - n0) * P)


@jit
def _chunk_bounds(n_chunks, tasks, t):
    """(first chunk, end chunk) of task t: the chunks cut as evenly as integers allow."""
    return n_chunks * t // tasks, n_chunks * (t + 1) // tasks


@kernel(min_parallel=PARALLEL_MIN_WORK)
def chunked_forward(x, W2, b, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, code, alpha,
                    images_per_chunk, tasks, cols, z, y, d):
    """:func:`conv2d_forward` chunk by chunk. For each chunk of c images n0 <= n < n1:
    im2col into the task's cols (G, CKg, c P); z[g Og:(g+1) Og, :m P] = W_g @ cols_g
    (one single-threaded BLAS call per group, m = n1 - n0); then y[n, o, p] = act(z[o,
    (n - n0) P + p] + b[o]) and d = act'(.). x (N, C, H, W); W2 (G, Og, CKg);
    b (O,) or (0,); cols (tasks, G, CKg, c P), z (tasks, O, c P) scratch;
    y, d (N, O, P) (d untouched for the identity).

    Parallel over tasks (runs of consecutive chunks): each writes its own images of y and d
    and works in its own scratch; every product is one BLAS call on one thread, so the
    bits depend on the chunks alone, not on which or how many threads run them.
    """
    N = x.shape[0]
    G, Og, CKg = W2.shape
    O = G * Og
    P = OH * OW
    cP = images_per_chunk * P
    n_chunks = (N + images_per_chunk - 1) // images_per_chunk
    has_bias = b.shape[0] == O
    blas_threads = hold_blas_to_one_thread()
    for t in prange(tasks):
        cols_t, z_t = cols[t], z[t]
        first, end = _chunk_bounds(n_chunks, tasks, t)
        for chunk in range(first, end):
            n0 = chunk * images_per_chunk
            n1 = min(N, n0 + images_per_chunk)
            mP = (n1 - n0) * P
            _im2col_images(x, n0, n1, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, cols_t)
            for g in range(G):
                # z_g (Og, mP) = W_g (Og, CKg) @ cols_g[:, :mP], leading dimensions cP
                _cblas(_NO_TRANS, _NO_TRANS, Og, mP, CKg, W2, g * Og * CKg, CKg,
                       cols_t, g * CKg * cP, cP, 0.0, z_t, g * Og * cP, cP)
            for n in range(n0, n1):
                for o in range(O):
                    src = z_t[o, (n - n0) * P:(n - n0 + 1) * P]
                    dst = y[n, o]
                    if has_bias:
                        bo = b[o]
                        for p in range(P):
                            dst[p] = src[p] + bo
                    else:
                        for p in range(P):
                            dst[p] = src[p]
                    if code != IDENTITY:
                        activation_row(code, alpha, dst, d[n, o])
    restore_blas_threads(blas_threads)


@kernel(min_parallel=PARALLEL_MIN_WORK)
def chunked_backward(dy, d, x, W2, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, images_per_chunk,
                     tasks, want_dx, cols, dz, dcols, partial_b, dW_tasks, dx):
    """Gradients of :func:`chunked_forward` chunk by chunk, for each chunk of images
    n0 <= n < n1 (m = n1 - n0):

    - dz[o, (n - n0) P + p] = dy[n, o, p] d[n, o, p] (dy alone when d has no images), and
      partial_b[n, o] = sum_p of it in float64;
    - cols: the chunk's im2col, recomputed from x;
    - dW_tasks[t, g Og + i, :] (+)= dz_g (Og, m P) @ cols_g^T: the task's first chunk writes,
      the next ones add (beta = 1), in chunk order;
    - with ``want_dx``: dcols_g = W_g^T @ dz_g, then col2im into dx[n0:n1].

    dy, d (N, O, P); x, dx (N, C, H, W); W2 (G, Og, CKg); cols, dcols (tasks, G, CKg, c P),
    dz (tasks, O, c P) scratch; partial_b (N, O) float64; dW_tasks (tasks, O, CKg).

    Parallel over tasks: each writes its own images of dx and of partial_b and its own
    partial weight gradient, which the caller adds in task order (:func:`sum_tasks`).
    """
    N, O, P = dy.shape
    G, Og, CKg = W2.shape
    C = x.shape[1]
    Cg = C // G
    cP = images_per_chunk * P
    n_chunks = (N + images_per_chunk - 1) // images_per_chunk
    blas_threads = hold_blas_to_one_thread()
    for t in prange(tasks):
        cols_t, dz_t, dcols_t = cols[t], dz[t], dcols[t]
        first, end = _chunk_bounds(n_chunks, tasks, t)
        for chunk in range(first, end):
            n0 = chunk * images_per_chunk
            n1 = min(N, n0 + images_per_chunk)
            mP = (n1 - n0) * P
            for n in range(n0, n1):
                for o in range(O):
                    partial_b[n, o] = _dz_plane(dy, d, n, o, 1, P,
                                                dz_t[o, (n - n0) * P:(n - n0 + 1) * P], P)
            _im2col_images(x, n0, n1, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, cols_t)
            beta = 0.0 if chunk == first else 1.0
            for g in range(G):
                # dW_g (Og, CKg) (+)= dz_g (Og, mP) @ cols_g[:, :mP]^T
                _cblas(_NO_TRANS, _TRANS, Og, CKg, mP, dz_t, g * Og * cP, cP, cols_t,
                       g * CKg * cP, cP, beta, dW_tasks[t], g * Og * CKg, CKg)
                if want_dx:
                    # dcols_g (CKg, mP) = W_g^T (CKg, Og) @ dz_g (Og, mP)
                    _cblas(_TRANS, _NO_TRANS, CKg, mP, Og, W2, g * Og * CKg, CKg, dz_t,
                           g * Og * cP, cP, 0.0, dcols_t, g * CKg * cP, cP)
            if want_dx:
                for n in range(n0, n1):
                    for ch in range(C):
                        _col2im_plane(dcols_t[ch // Cg], ch % Cg, kh, kw, sh, sw, pt, pl,
                                      dh, dw, OH, OW, (n - n0) * P, dx[n, ch])
    restore_blas_threads(blas_threads)


@kernel
def sum_tasks(dW_tasks, target, beta):
    """target[e] = beta * target[e] + dW_tasks[0, e] + dW_tasks[1, e] + ..., added in task
    order. dW_tasks (T, M); target (M,); beta 0 (write) or 1 (accumulate).

    Parallel over elements: each element's sum runs in the fixed task order on one thread.
    """
    T, M = dW_tasks.shape
    for e in prange(M):
        s = dW_tasks[0, e]
        for t in range(1, T):
            s += dW_tasks[t, e]
        if beta != 0.0:
            target[e] = target[e] + s
        else:
            target[e] = s


def conv2d_forward_chunked(x, weight, bias, stride, padding, dilation, groups, code, alpha,
                           images_per_chunk, cols, z, y, d,
                           max_tasks: int = MAX_TASKS) -> None:
    """:func:`conv2d_forward` with the batch cut into chunks of ``images_per_chunk`` images
    (:func:`chunk_plan`), each chunk's im2col and products in cache on one thread.

    Parameters
    ----------
    x, weight, bias, stride, padding, dilation, groups, code, alpha, y, d :
        as :func:`conv2d_forward`.
    images_per_chunk : images per chunk (>= 1).
    cols, z : scratch of ``chunk_scratch_shapes(...)["cols"]`` and ``["z"]``; nothing in
        them is needed by the backward pass (it recomputes the columns from x).
    max_tasks : at most this many tasks (must be the backward's).
    """
    N = x.shape[0]
    O, _, kh, kw = weight.shape
    OH, OW = y.shape[2], y.shape[3]
    (sh, sw), (dh, dw), (pt, _pb, pl, _pr) = stride, dilation, padding
    G = groups
    W2 = weight.reshape(G, O // G, -1)
    tasks = chunk_tasks(N, images_per_chunk, max_tasks)
    work = y.size * W2.shape[2]
    chunked_forward(work if tasks > 1 else 0)(
        x, W2, bias, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, code, alpha, images_per_chunk,
        tasks, cols, z, y.reshape(N, O, OH * OW), d.reshape(d.shape[0], O, OH * OW))


def conv2d_backward_chunked(dy, d, x, weight, stride, padding, dilation, groups,
                            images_per_chunk, cols, dz, dcols, dW_tasks, partial, dx, dW, db,
                            accumulate_dW=None, max_tasks: int = MAX_TASKS) -> None:
    """Gradients of :func:`conv2d_forward_chunked` given dy = dL/dy.

    Parameters
    ----------
    dy, d, weight, stride, padding, dilation, partial, dx, dW, db, accumulate_dW :
        as :func:`conv2d_backward` (dx None to skip it).
    x : (N, C, H, W) the forward's input (its columns are recomputed chunk by chunk).
    images_per_chunk, max_tasks : as the forward.
    cols, dz, dcols, dW_tasks : scratch of ``chunk_scratch_shapes(...)`` ``["cols"]``,
        ``["z"]``, ``["dcols"]``, ``["dW_tasks"]`` (dcols unused when dx is None).
    """
    N, O, OH, OW = dy.shape
    _, _, kh, kw = weight.shape
    (sh, sw), (dh, dw), (pt, _pb, pl, _pr) = stride, dilation, padding
    G = groups
    W2 = weight.reshape(G, O // G, -1)
    target = accumulate_dW if accumulate_dW is not None else dW
    if not target.flags.c_contiguous:
        raise ValueError(f"conv2d_backward_chunked: the weight gradient must be "
                         f"C-contiguous, got strides {target.strides}")
    tasks = chunk_tasks(N, images_per_chunk, max_tasks)
    want_dx = dx is not None
    work = dy.size * W2.shape[2]
    chunked_backward(work if tasks > 1 else 0)(
        dy.reshape(N, O, OH * OW), d.reshape(d.shape[0], O, OH * OW), x, W2, kh, kw, sh, sw,
        pt, pl, dh, dw, OH, OW, images_per_chunk, tasks, want_dx, cols, dz, dcols, partial,
        dW_tasks[:tasks], dx if want_dx else x[:0])
    if db is not None:
        _sum_images(partial, db)
    flat = target.reshape(-1)
    sum_tasks(flat.size)(dW_tasks[:tasks].reshape(tasks, -1), flat,
                         1.0 if accumulate_dW is not None else 0.0)


# ------------------------------------------------------- stride 1: shifted products, no im2col
# For a stride-1 convolution the column matrix is redundant: laid out on the zero-padded
# input's grid (Hp = H + pt + pb rows of Wp = W + pl + pr), tap (i, j) of output position
# q = oh Wp + ow reads the padded input at q + off(i, j), off(i, j) = i dh Wp + j dw. So the
# padded images, stored flat per channel, ARE every tap's rows of the column matrix, each
# shifted by a constant, and the product W @ cols splits into kh kw products
#
#     z[:, q] = sum over taps t = (i, j) of W_t (O, C) @ xp[:, q + off_t]       (all q at once)
#
# each reading a strided window of xp (leading dimension: the images' length) in place:
# no im2col, no col2im, no column matrix (9 C values per output pixel for a 3x3 kernel),
# only a zero-padded copy of the images (about C values per pixel). The output lives on the
# same padded grid: the Wp - OW columns past each row's end (and, between the images of a
# chunk, the rows past OH) are computed and dropped (6% more products for one 32x32 image
# padded by 1 a chunk, 12 to 19% at 16x16 with one or two images a chunk).
# Backward runs the same shifts: dW_t (O, C) = dz (O, q) @ xp[:, q + off_t]^T (dz on the
# grid, zero at the dropped positions), and dxp[:, q + off_t] += W_t^T (C, O) @ dz (O, q),
# tap by tap into windows of a padded gradient, whose interior is dx.
#
# Chunks of images and tasks as in the chunked im2col path above (the same determinism:
# single-threaded BLAS calls on chunks cut by the data's size, per-task partial weight
# gradients added in task order). Measured (see :func:`uses_shifted`) it beat im2col on
# every stride-1 layer tried, from one input channel to 64.

#: Target size (bytes) of one chunk's padded images plus its output grid. Measured (forward
#: + backward, one thread, batch 128, medians of 7 alternated calls, images per chunk 1 / 2
#: / 3 / 4): 32->32 at 32x32 138 / 134 / 150 / 157 ms; 32->64 at 16x16 79 / 89 / 89 / 95;
#: 64->64 at 16x16 159 / 159 / 184 / 176. 256 KB gives 1, 2 and 1 images there.
SHIFTED_CHUNK_BYTES = 256 << 10

#: Columns (output grid positions) per block of the products: each block's taps run back
#: to back, so that block of the output (or of dz) stays in cache across the kh kw
#: products (0: the chunk's columns at once). Measured (one thread, batch 128, medians of
#: 7, blocks of 0 / 256 / 512 / 1024 columns): the 32->32 layer's backward at 32x32
#: 99 / 67 / 66 / 98 ms, its forward 38 / 36 / 29 / 35; the 16x16 layers within 10%.
SHIFTED_COL_BLOCK = 512


def uses_shifted(stride, groups: int) -> bool:
    """Whether a convolution runs the shifted products (:func:`conv2d_forward_shifted`):
    stride 1 and groups 1 (depthwise convolutions take the direct loops first).

    Measured (forward + backward with a fused ReLU, float32, one thread, medians of 5 to 9
    alternated calls on the shared, loaded 2-core machine; the shifted products against the
    path taken before, the chunked or batch-wide im2col): the small CIFAR net's layers
    (batch 128, 3x3, padding 1) 3->32 at 32x32 22 against 31 ms, 32->32 at 32x32 182 / 249,
    32->64 at 16x16 55 / 66, 64->64 at 16x16 113 / 137; LeNet-5's (batch 64, 5x5) 1->6 at
    28x28 padding 2 6.4 / 7.3, 6->16 at 14x14 2.7 / 4.3; batch 32, 3x3 at 16x16: 8->16 1.6 /
    7.6, 16->16 10.4 / 14.6. Even with one input channel (a product with inner dimension 1
    per tap) the copy that im2col makes costs more than the short products.
    """
    return tuple(stride) == (1, 1) and groups == 1


def shifted_plan(N: int, C: int, O: int, H: int, W: int, padding, itemsize: int) -> int:
    """Images per chunk of the shifted products: as many as keep one chunk's padded images
    and output grid within :data:`SHIFTED_CHUNK_BYTES` (at least 1, at most N). Follows the
    data's size only, never the thread count."""
    pt, pb, pl, pr = padding
    per_image = (C + O) * (H + pt + pb) * (W + pl + pr) * itemsize
    return max(1, min(N, SHIFTED_CHUNK_BYTES // per_image))


def shifted_scratch_shapes(N: int, weight_shape, images_per_chunk: int,
                           max_tasks: int = MAX_TASKS) -> dict:
    """Shapes of the scratch arrays of the shifted products that outlive a task: the weights
    by tap ``w_taps`` (kh kw, O, C) and the per-task weight gradients ``dW_tasks`` (tasks,
    kh kw, O, C) (at most ``max_tasks`` tasks). The chunk-sized buffers (padded images,
    output grid, padded input gradient) are allocated by the entry points, one set per
    worker thread for the length of the call: kept per task, as the chunked im2col path
    keeps its columns, they held 7 to 13 MB per layer of the small CIFAR net for good."""
    O, C, kh, kw = weight_shape
    tasks = chunk_tasks(N, images_per_chunk, max_tasks)
    return {"w_taps": (kh * kw, O, C), "dW_tasks": (tasks, kh * kw, O, C)}


@jit
def _weight_taps(weight, w_taps):
    """w_taps[i*kw + j, o, c] = weight[o, c, i, j]: each tap's (O, C) matrix contiguous."""
    O, C, kh, kw = weight.shape
    for i in range(kh):
        for j in range(kw):
            for o in range(O):
                for c in range(C):
                    w_taps[i * kw + j, o, c] = weight[o, c, i, j]


@jit
def _pad_images(x, n0, n1, pt, pl, Wp, plane, xp):
    """xp[c, (n - n0) plane + (h + pt) Wp + w + pl] = x[n, c, h, w] for n0 <= n < n1; the
    padding positions of xp are not written (the caller zeroed them)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for n in range(n0, n1):
        base = (n - n0) * plane + pt * Wp + pl
        for c in range(C):
            dst = xp[c]
            for h in range(H):
                row = x[n, c, h]
                at = base + h * Wp
                for w in range(W):
                    dst[at + w] = row[w]


@kernel(min_parallel=PARALLEL_MIN_WORK)
def shifted_forward(x, w_taps, b, kw, dh, dw, pt, pl, Wp, plane, OH, OW, code, alpha,
                    images_per_chunk, tasks, workers, col_block, xp, zg, y, d):
    """:func:`conv2d_forward` for stride 1 by shifted products. For each chunk of m images
    n0 <= n < n1: the padded images into xp (C, m plane); with q = (n - n0) plane + oh Wp +
    ow and off_t = i dh Wp + j dw for tap t = i kw + j,
    zg[o, q] = sum_t sum_c w_taps[t, o, c] xp[c, q + off_t] (one single-threaded BLAS call
    per tap, accumulating, over q < (m - 1) plane + (OH - 1) Wp + OW); then
    y[n, o, oh OW + ow] = act(zg[o, q] + b[o]), d = act'(.).

    x (N, C, H, W); w_taps (kh kw, O, C); b (O,) or (0,); y, d (N, O, OH OW) (d untouched
    for the identity).

    Tasks (runs of consecutive chunks) as :func:`chunked_forward`; parallel over workers,
    each running a contiguous run of tasks in its own scratch xp[wk] (C, m plane), zero
    (the padding positions are never written), and zg[wk] (O, m plane): a task's result
    depends on the task alone, not on which or how many workers run it. ``workers``: at
    most the pool's threads (a jitted ``numba.get_num_threads()`` would keep the kernel out
    of the disk cache).
    """
    N = x.shape[0]
    O = w_taps.shape[1]
    n_chunks = (N + images_per_chunk - 1) // images_per_chunk
    has_bias = b.shape[0] == O
    blas_threads = hold_blas_to_one_thread()
    for wk in prange(workers):
        xp_t, z_t = xp[wk], zg[wk]
        for t in range(tasks * wk // workers, tasks * (wk + 1) // workers):
            _shifted_forward_task(x, w_taps, b, has_bias, kw, dh, dw, pt, pl, Wp, plane, OH,
                                  OW, code, alpha, images_per_chunk, n_chunks, tasks, t,
                                  col_block, xp_t, z_t, y, d)
    restore_blas_threads(blas_threads)


@jit
def _shifted_forward_task(x, w_taps, b, has_bias, kw, dh, dw, pt, pl, Wp, plane, OH, OW, code,
                          alpha, images_per_chunk, n_chunks, tasks, t, col_block, xp_t, z_t,
                          y, d):
    """Task t of :func:`shifted_forward` in the scratch xp_t, z_t."""
    N = x.shape[0]
    KK, O, C = w_taps.shape
    L = xp_t.shape[1]
    first, end = _chunk_bounds(n_chunks, tasks, t)
    for chunk in range(first, end):
        n0 = chunk * images_per_chunk
        n1 = min(N, n0 + images_per_chunk)
        _pad_images(x, n0, n1, pt, pl, Wp, plane, xp_t)
        ncols = (n1 - n0 - 1) * plane + (OH - 1) * Wp + OW
        step = col_block if col_block > 0 else ncols
        for k0 in range(0, ncols, step):
            k = min(ncols, k0 + step) - k0
            for tap in range(KK):
                off = (tap // kw) * dh * Wp + (tap % kw) * dw
                # zg[:, k0:k0+k] (+)= W_tap (O, C) @ xp[:, off+k0:off+k0+k]
                _cblas(_NO_TRANS, _NO_TRANS, O, k, C, w_taps, tap * O * C, C, xp_t, off + k0,
                       L, 0.0 if tap == 0 else 1.0, z_t, k0, L)
        for n in range(n0, n1):
            base = (n - n0) * plane
            for o in range(O):
                zrow = z_t[o]
                dst = y[n, o]
                for oh in range(OH):
                    src = zrow[base + oh * Wp:base + oh * Wp + OW]
                    out = dst[oh * OW:(oh + 1) * OW]
                    if has_bias:
                        bo = b[o]
                        for ow in range(OW):
                            out[ow] = src[ow] + bo
                    else:
                        for ow in range(OW):
                            out[ow] = src[ow]
                if code != IDENTITY:
                    activation_row(code, alpha, dst, d[n, o])


@kernel(min_parallel=PARALLEL_MIN_WORK)
def shifted_backward(dy, d, x, w_taps, kw, dh, dw, pt, pl, Wp, plane, OH, OW,
                     images_per_chunk, tasks, workers, col_block, want_dx, xp, zg, dxp,
                     partial_b, dW_tasks, dx):
    """Gradients of :func:`shifted_forward`, chunk by chunk (m images n0 <= n < n1):

    - zg[o, q] = dy[n, o, oh OW + ow] d[...] (dy alone when d has no images) on the grid
      (zero at the dropped positions) and partial_b[n, o] = its sum over (oh, ow), float64;
    - xp: the chunk's padded images, recomputed from x;
    - dW_tasks[t, tap] (+)= zg (O, ncols) @ xp[:, off_tap:off_tap + ncols]^T: the task's
      first chunk writes, the next ones add, in chunk order;
    - with ``want_dx``: dxp[:, off_tap:off_tap + ncols] += W_tap^T (C, O) @ zg (O, ncols),
      taps in order, dxp zeroed first; dx[n, c, h, w] = dxp[c, (n - n0) plane + (h + pt) Wp
      + w + pl].

    dy, d (N, O, OH OW); x, dx (N, C, H, W); w_taps (kh kw, O, C); partial_b (N, O)
    float64; dW_tasks (tasks, kh kw, O, C).

    Parallel over workers as :func:`shifted_forward` (scratch xp[wk], zg[wk] zero, as
    the dropped positions of the grid must stay; dxp[wk] (C or 0, m plane)); each task
    writes its own images of dx and partial_b and its own partial weight gradient, added by
    the caller in task order (:func:`sum_tap_tasks`).
    """
    N = x.shape[0]
    n_chunks = (N + images_per_chunk - 1) // images_per_chunk
    blas_threads = hold_blas_to_one_thread()
    for wk in prange(workers):
        xp_t, z_t, dxp_t = xp[wk], zg[wk], dxp[wk]
        for t in range(tasks * wk // workers, tasks * (wk + 1) // workers):
            _shifted_backward_task(dy, d, x, w_taps, kw, dh, dw, pt, pl, Wp, plane, OH, OW,
                                   images_per_chunk, n_chunks, tasks, t, col_block, want_dx,
                                   xp_t, z_t, dxp_t, partial_b, dW_tasks, dx)
    restore_blas_threads(blas_threads)


@jit
def _shifted_backward_task(dy, d, x, w_taps, kw, dh, dw, pt, pl, Wp, plane, OH, OW,
                           images_per_chunk, n_chunks, tasks, t, col_block, want_dx, xp_t,
                           z_t, dxp_t, partial_b, dW_tasks, dx):
    """Task t of :func:`shifted_backward` in the scratch xp_t, z_t, dxp_t."""
    N = x.shape[0]
    KK, O, C = w_taps.shape
    H, W = x.shape[2], x.shape[3]
    L = xp_t.shape[1]
    first, end = _chunk_bounds(n_chunks, tasks, t)
    for chunk in range(first, end):
        n0 = chunk * images_per_chunk
        n1 = min(N, n0 + images_per_chunk)
        for n in range(n0, n1):
            base = (n - n0) * plane
            for o in range(O):
                partial_b[n, o] = _dz_plane(dy, d, n, o, OH, OW, z_t[o, base:], Wp)
        _pad_images(x, n0, n1, pt, pl, Wp, plane, xp_t)
        ncols = (n1 - n0 - 1) * plane + (OH - 1) * Wp + OW
        step = col_block if col_block > 0 else ncols
        if want_dx:
            dxp_t[:, :(n1 - n0) * plane] = 0
        for k0 in range(0, ncols, step):
            k = min(ncols, k0 + step) - k0
            beta = 0.0 if chunk == first and k0 == 0 else 1.0
            for tap in range(KK):
                off = (tap // kw) * dh * Wp + (tap % kw) * dw
                # dW_tap (O, C) (+)= zg[:, k0:k0+k] @ xp[:, off+k0:off+k0+k]^T
                _cblas(_NO_TRANS, _TRANS, O, C, k, z_t, k0, L, xp_t, off + k0, L, beta,
                       dW_tasks[t], tap * O * C, C)
            if want_dx:
                for tap in range(KK):
                    off = (tap // kw) * dh * Wp + (tap % kw) * dw
                    # dxp[:, off+k0:off+k0+k] += W_tap^T (C, O) @ zg[:, k0:k0+k]
                    _cblas(_TRANS, _NO_TRANS, C, k, O, w_taps, tap * O * C, C, z_t, k0, L,
                           1.0, dxp_t, off + k0, L)
        if want_dx:
            for n in range(n0, n1):
                base = (n - n0) * plane + pt * Wp + pl
                for c in range(C):
                    src_plane = dxp_t[c]
                    for h in range(H):
                        row = dx[n, c, h]
                        at = base + h * Wp
                        for w in range(W):
                            row[w] = src_plane[at + w]


@kernel
def sum_tap_tasks(dW_tasks, target, beta):
    """target[o, c, i, j] = beta target[o, c, i, j] + sum over tasks t, in order, of
    dW_tasks[t, i kw + j, o, c]. dW_tasks (T, kh kw, O, C); target (O, C, kh, kw); beta 0
    (write) or 1 (accumulate).

    Parallel over output channels: each element's sum runs in the fixed task order.
    """
    T = dW_tasks.shape[0]
    O, C, kh, kw = target.shape
    for o in prange(O):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    s = dW_tasks[0, i * kw + j, o, c]
                    for t in range(1, T):
                        s += dW_tasks[t, i * kw + j, o, c]
                    if beta != 0.0:
                        target[o, c, i, j] = target[o, c, i, j] + s
                    else:
                        target[o, c, i, j] = s


def _workers(tasks: int) -> int:
    """Workers of a shifted call: one per thread of the pool, at most one per task."""
    return max(1, min(tasks, numba.get_num_threads()))


def _shifted_geometry(x_shape, weight_shape, padding):
    """(kh, kw, Wp, Hp Wp): the kernel and the padded image's row length and size."""
    (_, _, H, W), (_, _, kh, kw) = x_shape, weight_shape
    pt, pb, pl, pr = padding
    Wp = W + pl + pr
    return kh, kw, Wp, (H + pt + pb) * Wp


def conv2d_forward_shifted(x, weight, bias, padding, dilation, code, alpha, images_per_chunk,
                           w_taps, y, d, max_tasks: int = MAX_TASKS) -> None:
    """:func:`conv2d_forward` for stride 1 and groups 1 by shifted products (no im2col).

    Parameters
    ----------
    x, weight, bias, padding, dilation, code, alpha, y, d : as :func:`conv2d_forward`
        (stride (1, 1) and groups 1 implied; see :func:`uses_shifted`).
    images_per_chunk : images per chunk (:func:`shifted_plan`).
    w_taps : scratch of ``shifted_scratch_shapes(...)["w_taps"]`` (not needed by the
        backward pass).
    max_tasks : at most this many tasks (must be the scratch's).
    """
    N, O = x.shape[0], weight.shape[0]
    OH, OW = y.shape[2], y.shape[3]
    kh, kw, Wp, plane = _shifted_geometry(x.shape, weight.shape, padding)
    tasks = chunk_tasks(N, images_per_chunk, max_tasks)
    workers = _workers(tasks)
    _weight_taps(weight, w_taps)
    # per worker and for this call only (calloc'd zero: the padding positions stay zero)
    L = images_per_chunk * plane
    xp = np.zeros((workers, x.shape[1], L), x.dtype)
    zg = np.empty((workers, O, L), x.dtype)
    work = y.size * weight.shape[1] * kh * kw
    shifted_forward(work if tasks > 1 else 0)(
        x, w_taps, bias, kw, dilation[0], dilation[1], padding[0], padding[2], Wp, plane,
        OH, OW, code, alpha, images_per_chunk, tasks, workers, SHIFTED_COL_BLOCK, xp, zg,
        y.reshape(N, O, OH * OW), d.reshape(d.shape[0], O, OH * OW))


def conv2d_backward_shifted(dy, d, x, weight, padding, dilation, images_per_chunk, w_taps,
                            dW_tasks, partial, dx, dW, db, accumulate_dW=None,
                            max_tasks: int = MAX_TASKS) -> None:
    """Gradients of :func:`conv2d_forward_shifted` given dy = dL/dy.

    Parameters
    ----------
    dy, d, weight, padding, dilation, partial, dx, dW, db, accumulate_dW :
        as :func:`conv2d_backward` (dx None to skip it).
    x : (N, C, H, W) the forward's input (its padded copy is rebuilt chunk by chunk).
    images_per_chunk, max_tasks : as the forward.
    w_taps, dW_tasks : scratch of ``shifted_scratch_shapes(...)``.
    """
    N, O, OH, OW = dy.shape
    kh, kw, Wp, plane = _shifted_geometry(x.shape, weight.shape, padding)
    target = accumulate_dW if accumulate_dW is not None else dW
    if not target.flags.c_contiguous:
        raise ValueError(f"conv2d_backward_shifted: the weight gradient must be "
                         f"C-contiguous, got strides {target.strides}")
    tasks = chunk_tasks(N, images_per_chunk, max_tasks)
    workers = _workers(tasks)
    _weight_taps(weight, w_taps)
    want_dx = dx is not None
    # per worker and for this call only; xp and zg zero (padding, dropped grid positions)
    L = images_per_chunk * plane
    C = x.shape[1]
    xp = np.zeros((workers, C, L), x.dtype)
    zg = np.zeros((workers, O, L), x.dtype)
    dxp = np.empty((workers, C if want_dx else 0, L), x.dtype)
    work = dy.size * weight.shape[1] * kh * kw
    shifted_backward(work if tasks > 1 else 0)(
        dy.reshape(N, O, OH * OW), d.reshape(d.shape[0], O, OH * OW), x, w_taps, kw,
        dilation[0], dilation[1], padding[0], padding[2], Wp, plane, OH, OW,
        images_per_chunk, tasks, workers, SHIFTED_COL_BLOCK, want_dx, xp, zg, dxp, partial,
        dW_tasks[:tasks],
        dx if want_dx else x[:0])
    if db is not None:
        _sum_images(partial, db)
    sum_tap_tasks(target.size)(dW_tasks[:tasks], target.reshape(weight.shape),
                               1.0 if accumulate_dW is not None else 0.0)


# ------------------------------------------------------------------ depthwise, direct
# groups == C (each output channel reads one input channel): im2col would feed G products
# of one row each (W_g (mult, kh kw) @ cols_g (kh kw, N P)), a Python call and a BLAS call
# per channel. The direct loops below read each input plane in place instead.


def uses_direct(in_channels: int, out_channels: int, groups: int) -> bool:
    """Whether a convolution runs the direct depthwise loops rather than im2col + products:
    for groups == in_channels == out_channels (depthwise, multiplier 1).

    Measured (forward + backward, float32, one thread, medians of 15 alternated calls on the
    shared 2-core machine; kernel 3 unless said): N=64 C=32 16x16: im2col 83.7 ms, direct
    63.8 ms; N=64 C=64 8x8: 68.2 / 55.8; N=32 C=16 28x28 kernel 5: 213 / 109; N=8 C=8 8x8:
    0.24 / 0.18; with multiplier 2 (O = 2C, N=64 C=32 16x16) im2col won, 148 / 162 ms.
    """
    return groups > 1 and groups == in_channels == out_channels


@kernel
def depthwise_forward(code, alpha, x, w, b, sh, sw, pt, pl, dh, dw, y, d):
    """y[n, o] = act(b[o] + sum_{i, j} w[o, 0, i, j] x[n, o // mult, shifted by (i, j)]),
    d = act'(.) (untouched for the identity); mult = O / C. x (N, C, H, W); w (O, 1, kh,
    kw); b (O,) or (0,); y, d (N, O, OH, OW). The taps are added in the order (i, j).

    Parallel over (image, output channel) planes: each writes its own plane of y.
    """
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    OH, OW = y.shape[2], y.shape[3]
    mult = O // C
    has_bias = b.shape[0] == O
    for t in prange(N * O):
        n = t // O
        o = t % O
        plane = x[n, o // mult]
        out = y[n, o]
        bo = b[o] if has_bias else typed(x[0, 0, 0, 0], 0.0)
        out[:, :] = bo
        for i in range(kh):
            for j in range(kw):
                wv = w[o, 0, i, j]
                off_w = j * dw - pl
                lo, hi = _valid_range(off_w, sw, W, OW)
                for oh in range(OH):
                    h = oh * sh - pt + i * dh
                    if h < 0 or h >= H:
                        continue
                    xrow, orow = plane[h], out[oh]
                    if sw == 1:
                        src = xrow[lo + off_w:hi + off_w]
                        dst = orow[lo:hi]
                        for k in range(hi - lo):
                            dst[k] += wv * src[k]
                    else:
                        for ow in range(lo, hi):
                            orow[ow] += wv * xrow[ow * sw + off_w]
        if code != IDENTITY:
            for oh in range(OH):
                activation_row(code, alpha, out[oh], d[n, o, oh])


@kernel
def depthwise_backward_weight(dy, d, x, OW, kw, sh, sw, pt, pl, dh, dw, dz, partial_w,
                              partial_b):
    """dz = dy * d (dy when d has no images) and partial_b[n, o] = sum dz[n, o]
    (:func:`_dz_plane`); partial_w[n, o, i*kw + j] = sum_{oh, ow} dz[n, o, oh OW + ow]
    x[n, o // mult, tap (i, j)] (float64). dy, d, dz (N, O, OH*OW) (d may have no images);
    x (N, C, H, W); partial_w (N, O, kh*kw); partial_b (N, O).

    Parallel over (image, output channel) planes; the caller adds the partial sums over
    images in order (deterministic).
    """
    N, O, P = dy.shape
    OH = P // OW
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    mult = O // C
    kk = partial_w.shape[2]
    for t in prange(N * O):
        n = t // O
        o = t % O
        z = dz[n, o]
        partial_b[n, o] = _dz_plane(dy, d, n, o, 1, P, z, P)
        plane = x[n, o // mult]
        for r in range(kk):
            i = r // kw
            j = r % kw
            off_w = j * dw - pl
            lo, hi = _valid_range(off_w, sw, W, OW)
            acc = 0.0
            for oh in range(OH):
                h = oh * sh - pt + i * dh
                if h < 0 or h >= H:
                    continue
                xrow, zrow = plane[h], z[oh * OW:(oh + 1) * OW]
                for ow in range(lo, hi):
                    acc += np.float64(zrow[ow] * xrow[ow * sw + off_w])
            partial_w[n, o, r] = acc


@kernel
def depthwise_backward_input(dz, w, sh, sw, pt, pl, dh, dw, dx):
    """dx[n, c, h, w] = sum over the output channels o of c and their taps (i, j) and
    outputs reading (h, w) of w[o, 0, i, j] dz[n, o, oh, ow]. dz (N, O, OH, OW);
    w (O, 1, kh, kw); dx (N, C, H, W).

    Parallel over (image, input channel) planes, each summed by one iteration in a fixed
    order (o, i, j, oh, ow).
    """
    N, C, H, W = dx.shape
    O, _, kh, kw = w.shape
    OH, OW = dz.shape[2], dz.shape[3]
    mult = O // C
    for t in prange(N * C):
        n = t // C
        c = t % C
        plane = dx[n, c]
        plane[:, :] = 0
        for o in range(c * mult, (c + 1) * mult):
            z = dz[n, o]
            for i in range(kh):
                for j in range(kw):
                    wv = w[o, 0, i, j]
                    off_w = j * dw - pl
                    lo, hi = _valid_range(off_w, sw, W, OW)
                    for oh in range(OH):
                        h = oh * sh - pt + i * dh
                        if h < 0 or h >= H:
                            continue
                        xrow, zrow = plane[h], z[oh]
                        if sw == 1:
                            dst = xrow[lo + off_w:hi + off_w]
                            src = zrow[lo:hi]
                            for k in range(hi - lo):
                                dst[k] += wv * src[k]
                        else:
                            for ow in range(lo, hi):
                                xrow[ow * sw + off_w] += wv * zrow[ow]


def depthwise_forward_call(x, weight, bias, stride, padding, dilation, code, alpha, y, d):
    """:func:`conv2d_forward` for groups == C by the direct loops (no column matrix)."""
    (sh, sw), (dh, dw), (pt, _pb, pl, _pr) = stride, dilation, padding
    depthwise_forward(y.size * weight.shape[2] * weight.shape[3])(
        code, alpha, x, weight, bias, sh, sw, pt, pl, dh, dw, y, d)


def depthwise_backward_call(dy, d, x, weight, stride, padding, dilation, dz, partial_w,
                            partial_b, dx, dW, db, accumulate_dW=None) -> None:
    """:func:`conv2d_backward` for groups == C by the direct loops: dz (N, O, OH, OW)
    C-contiguous, partial_w (N, O, kh*kw) and partial_b (N, O) float64 scratch; dx None to
    skip it."""
    (sh, sw), (dh, dw), (pt, _pb, pl, _pr) = stride, dilation, padding
    O, _, kh, kw = weight.shape
    N, _, OH, OW = dy.shape
    if not dz.flags.c_contiguous:  # a reshape would copy: the kernel would write the copy
        raise ValueError(f"depthwise_backward_call: dz must be C-contiguous, got strides "
                         f"{dz.strides}")
    work = dy.size * kh * kw
    depthwise_backward_weight(work)(
        dy.reshape(N, O, OH * OW), d.reshape(d.shape[0], O, OH * OW), x, OW, kw, sh, sw, pt,
        pl, dh, dw, dz.reshape(N, O, OH * OW), partial_w, partial_b)
    if db is not None:
        _sum_images(partial_b, db)
    sums = np.empty(O * kh * kw)
    _sum_images(partial_w.reshape(partial_w.shape[0], O * kh * kw), sums)
    if accumulate_dW is not None:
        accumulate_dW += sums.reshape(accumulate_dW.shape).astype(accumulate_dW.dtype)
    else:
        dW[...] = sums.reshape(dW.shape)
    if dx is not None:
        depthwise_backward_input(work)(dz, weight, sh, sw, pt, pl, dh, dw, dx)
