"""2-D convolution (PyTorch's Conv2d, NCHW) by im2col and one BLAS product, bias and
activation fused.

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

import numpy as np
from numba import prange

from ._jit import jit, kernel
from ._typed import typed
from .activations import IDENTITY, activation_row
from .blas import gemm


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
    zero = typed(x[0, 0, 0, 0], 0.0)
    for t in prange(G * CKg * N):
        n = t % N
        row = t // N
        g = row // CKg
        r = row % CKg
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        plane = x[n, g * Cg + c]
        out = cols[g, r]
        off_w = j * dw - pl
        lo, hi = _valid_range(off_w, sw, W, OW)
        for oh in range(OH):
            h = oh * sh - pt + i * dh
            base = n * P + oh * OW
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
        g = ch // Cg
        c = ch % Cg
        plane = dx[n, ch]
        plane[:, :] = 0
        for i in range(kh):
            for j in range(kw):
                src = dcols[g, (c * kh + i) * kw + j]
                off_w = j * dw - pl
                lo, hi = _valid_range(off_w, sw, W, OW)
                for oh in range(OH):
                    h = oh * sh - pt + i * dh
                    if h < 0 or h >= H:
                        continue
                    xrow = plane[h]
                    base = n * P + oh * OW
                    if sw == 1:
                        dst = xrow[lo + off_w:hi + off_w]
                        part = src[base + lo:base + hi]
                        for k in range(hi - lo):
                            dst[k] += part[k]
                    else:
                        for ow in range(lo, hi):
                            xrow[ow * sw + off_w] += src[base + ow]


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


@kernel
def dz_and_bias_partial(dy, d, dz, partial):
    """dz[o, n*P + p] = dy[n, o, p] * d[n, o, p] (dy alone when d has no images) and
    partial[n, o] = sum_p dz[o, n*P + p] in float64. dy, d (N, O, P); dz (O, N*P);
    partial (N, O) float64.

    Parallel over (image, channel) pairs: each writes its own stretch of dz and its own
    entry of ``partial``; the bias gradient adds ``partial`` over images in order.
    """
    N, O, P = dy.shape
    use_d = d.shape[0] == N
    for t in prange(N * O):
        n = t // O
        o = t % O
        g = dy[n, o]
        dst = dz[o, n * P:(n + 1) * P]
        s = 0.0
        if use_d:
            h = d[n, o]
            for p in range(P):
                v = g[p] * h[p]
                dst[p] = v
                s += np.float64(v)
        else:
            for p in range(P):
                v = g[p]
                dst[p] = v
                s += np.float64(v)
        partial[n, o] = s


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
def depthwise_backward_weight(dy, d, x, kw, sh, sw, pt, pl, dh, dw, dz, partial_w, partial_b):
    """dz = dy * d (dy when d has no images); partial_b[n, o] = sum dz[n, o] and
    partial_w[n, o, i*kw + j] = sum_{oh, ow} dz[n, o, oh, ow] x[n, o // mult, tap (i, j)]
    (float64). dy, d, dz (N, O, OH, OW); x (N, C, H, W); partial_w (N, O, kh*kw);
    partial_b (N, O).

    Parallel over (image, output channel) planes; the caller adds the partial sums over
    images in order (deterministic).
    """
    N, O, OH, OW = dy.shape
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    mult = O // C
    kk = partial_w.shape[2]
    use_d = d.shape[0] == N
    for t in prange(N * O):
        n = t // O
        o = t % O
        g, z = dy[n, o], dz[n, o]
        s = 0.0
        for oh in range(OH):
            for ow in range(OW):
                v = g[oh, ow] * d[n, o, oh, ow] if use_d else g[oh, ow]
                z[oh, ow] = v
                s += np.float64(v)
        partial_b[n, o] = s
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
                xrow, zrow = plane[h], z[oh]
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
    """:func:`conv2d_backward` for groups == C by the direct loops: dz (N, O, OH, OW),
    partial_w (N, O, kh*kw) and partial_b (N, O) float64 scratch; dx None to skip it."""
    (sh, sw), (dh, dw), (pt, _pb, pl, _pr) = stride, dilation, padding
    O, _, kh, kw = weight.shape
    work = dy.size * kh * kw
    depthwise_backward_weight(work)(dy, d, x, kw, sh, sw, pt, pl, dh, dw, dz, partial_w,
                                    partial_b)
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
