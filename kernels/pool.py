"""2-D pooling over NCHW planes: max (argmax routed), average, adaptive average.

All kernels see the input as planes x (P, H, W) with P = N * C (an image's channel is one
plane) and the output as y (P, OH, OW); they are parallel over planes: each plane of the
output, and in backward each plane of dx, is written by one iteration in a fixed order, so
there are no races and the bits do not depend on the thread count.

Max pooling (PyTorch's MaxPool2d): y[p, oh, ow] = max over taps (i, j) of
x[p, oh*sh - ph + i*dh, ow*sw - pw + j*dw], taps outside the input ignored (padding is
-inf). The scan goes row by row and a value replaces the maximum when it is larger or NaN
(PyTorch's rule: the first of equal maxima wins, a NaN propagates); ``arg`` keeps the flat
index h * W + w of the winner, and backward adds dy to dx at it (the max gate).

Average pooling (PyTorch's AvgPool2d): the window [oh*sh - ph, oh*sh - ph + kh) is clipped
to [0, H + ph) for the divisor with ``count_include_pad`` and to [0, H) for the sum and the
divisor without; ``divisor_override`` > 0 replaces the divisor. Backward spreads dy / divisor
over the clipped window.

Adaptive average pooling (PyTorch's AdaptiveAvgPool2d): output row oh averages input rows
[floor(oh H / OH), ceil((oh + 1) H / OH)) (columns alike).

Output sizes (``pool_output_size``) follow PyTorch's ``pooling_output_shape``, ceil_mode
included (a last window must start inside the input or its left padding).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import jit, kernel


def pool_output_size(size: int, kernel_size: int, stride: int, padding: int, dilation: int,
                     ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape along one axis."""
    span = size + 2 * padding - dilation * (kernel_size - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


@jit
def _max_pool_2x2_plane(plane, out, arg, store_arg):
    """The 2x2, stride-2, unpadded, undilated window maxima of one plane: the common case
    (every CNN's ``MaxPool2d(2)``), with the general loop's rule and scan order
    ((0, 0), (0, 1), (1, 0), (1, 1); a value wins when larger or NaN), unrolled: the general
    loop's bounds, strides and index arithmetic per window cost 5 to 10 times as much."""
    W = plane.shape[1]
    OH, OW = out.shape
    for oh in range(OH):
        top = plane[2 * oh]
        bottom = plane[2 * oh + 1]
        row0 = 2 * oh * W
        yrow = out[oh]
        for ow in range(OW):
            w = 2 * ow
            best = top[w]
            idx = row0 + w
            v = top[w + 1]
            if v > best or np.isnan(v):
                best = v
                idx = row0 + w + 1
            v = bottom[w]
            if v > best or np.isnan(v):
                best = v
                idx = row0 + W + w
            v = bottom[w + 1]
            if v > best or np.isnan(v):
                best = v
                idx = row0 + W + w + 1
            yrow[ow] = best
            if store_arg:
                arg[oh, ow] = idx


@kernel
def max_pool2d_forward(x, kh, kw, sh, sw, ph, pw, dh, dw, y, arg):
    """y = the window maxima of x and arg = their flat indices h * W + w.

    x (P, H, W); y (P, OH, OW); arg (P, OH, OW) int64. Parallel over planes. The 2x2
    stride-2 window without padding or dilation (:func:`is_2x2`) runs an unrolled loop
    (:func:`_max_pool_2x2_plane`, the same comparisons in the same order: the same bits);
    there ``arg`` may have no planes, not to keep it (:func:`max_pool2d_2x2_backward`
    finds the winners again from x).
    """
    P, H, W = x.shape
    _, OH, OW = y.shape
    if (kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0 and dh == 1
            and dw == 1 and 2 * OH <= H and 2 * OW <= W):
        store_arg = arg.shape[0] == P
        for p in prange(P):
            _max_pool_2x2_plane(x[p], y[p], arg[p] if store_arg else arg.reshape(-1)[:0]
                                .reshape(0, 0), store_arg)
        return
    store_arg = arg.shape[0] == P
    for p in prange(P):
        plane = x[p]
        for oh in range(OH):
            h0 = oh * sh - ph
            while h0 < 0:
                h0 += dh
            h1 = min(oh * sh - ph + (kh - 1) * dh + 1, H)
            for ow in range(OW):
                w0 = ow * sw - pw
                while w0 < 0:
                    w0 += dw
                w1 = min(ow * sw - pw + (kw - 1) * dw + 1, W)
                best = -np.inf
                idx = h0 * W + w0
                for h in range(h0, h1, dh):
                    row = plane[h]
                    for w in range(w0, w1, dw):
                        v = row[w]
                        if v > best or np.isnan(v):
                            best = v
                            idx = h * W + w
                y[p, oh, ow] = best
                if store_arg:
                    arg[p, oh, ow] = idx


@kernel
def max_pool2d_backward(dy, arg, dx):
    """dx[p].flat[arg[p, o]] += dy[p, o] for every output o, dx zeroed first.

    dy, arg (P, OH, OW); dx (P, H, W). Parallel over planes; within a plane the outputs are
    added in order (overlapping windows that share a winner add up deterministically).
    """
    P, H, W = dx.shape
    _, OH, OW = dy.shape
    for p in prange(P):
        flat = dx[p].reshape(H * W)
        flat[:] = 0
        g = dy[p].reshape(OH * OW)
        a = arg[p].reshape(OH * OW)
        for o in range(OH * OW):
            flat[a[o]] += g[o]


def is_2x2(kernel_size, stride, padding, dilation, ceil_mode: bool, size) -> bool:
    """Whether a max pooling is the plain 2x2 stride-2 window (no padding, no dilation, no
    partial last window): the case whose argmax need not be kept."""
    (h, w) = size
    return (tuple(kernel_size) == (2, 2) and tuple(stride) == (2, 2)
            and tuple(padding) == (0, 0) and tuple(dilation) == (1, 1)
            and (not ceil_mode or (h % 2 == 0 and w % 2 == 0)))


@kernel
def max_pool2d_2x2_backward(dy, x, dx):
    """dx of the 2x2 stride-2 max pooling without a kept argmax: in each window, dx at the
    winner of :func:`_max_pool_2x2_plane`'s scan (found again from x, by the same
    comparisons in the same order) is dy, the rest of dx is 0. dy (P, OH, OW); x, dx
    (P, H, W). Parallel over planes (the windows do not overlap)."""
    P, H, W = x.shape
    _, OH, OW = dy.shape
    for p in prange(P):
        plane, out, g = x[p], dx[p], dy[p]
        out[:, :] = 0
        for oh in range(OH):
            top, bottom = plane[2 * oh], plane[2 * oh + 1]
            dtop, dbottom = out[2 * oh], out[2 * oh + 1]
            for ow in range(OW):
                w = 2 * ow
                best = top[w]
                which = 0
                v = top[w + 1]
                if v > best or np.isnan(v):
                    best = v
                    which = 1
                v = bottom[w]
                if v > best or np.isnan(v):
                    best = v
                    which = 2
                v = bottom[w + 1]
                if v > best or np.isnan(v):
                    which = 3
                if which == 0:
                    dtop[w] = g[oh, ow]
                elif which == 1:
                    dtop[w + 1] = g[oh, ow]
                elif which == 2:
                    dbottom[w] = g[oh, ow]
                else:
                    dbottom[w + 1] = g[oh, ow]


@kernel
def avg_pool2d_forward(x, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override, y):
    """y = window sums of x divided by the window's divisor (see the module docstring).

    x (P, H, W); y (P, OH, OW); divisor_override 0 for none. Sums in float64.
    Parallel over planes.
    """
    P, H, W = x.shape
    _, OH, OW = y.shape
    for p in prange(P):
        plane = x[p]
        for oh in range(OH):
            h0 = oh * sh - ph
            h1 = min(h0 + kh, H + ph)
            for ow in range(OW):
                w0 = ow * sw - pw
                w1 = min(w0 + kw, W + pw)
                pool_size = (h1 - h0) * (w1 - w0)
                ha, hb = max(h0, 0), min(h1, H)
                wa, wb = max(w0, 0), min(w1, W)
                if ha >= hb or wa >= wb:
                    y[p, oh, ow] = 0
                    continue
                s = 0.0
                for h in range(ha, hb):
                    for w in range(wa, wb):
                        s += np.float64(plane[h, w])
                if divisor_override > 0:
                    div = divisor_override
                elif count_include_pad:
                    div = pool_size
                else:
                    div = (hb - ha) * (wb - wa)
                y[p, oh, ow] = s / div


@kernel
def avg_pool2d_backward(dy, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override, dx):
    """dx[p, h, w] = sum of dy[p, oh, ow] / divisor over the windows containing (h, w).

    dy (P, OH, OW); dx (P, H, W). Parallel over planes, outputs in order.
    """
    P, H, W = dx.shape
    _, OH, OW = dy.shape
    for p in prange(P):
        plane = dx[p]
        plane[:, :] = 0
        for oh in range(OH):
            h0 = oh * sh - ph
            h1 = min(h0 + kh, H + ph)
            for ow in range(OW):
                w0 = ow * sw - pw
                w1 = min(w0 + kw, W + pw)
                pool_size = (h1 - h0) * (w1 - w0)
                ha, hb = max(h0, 0), min(h1, H)
                wa, wb = max(w0, 0), min(w1, W)
                if ha >= hb or wa >= wb:
                    continue
                if divisor_override > 0:
                    div = divisor_override
                elif count_include_pad:
                    div = pool_size
                else:
                    div = (hb - ha) * (wb - wa)
                g = dy[p, oh, ow] / div
                for h in range(ha, hb):
                    for w in range(wa, wb):
                        plane[h, w] += g


@kernel
def adaptive_avg_pool2d_forward(x, y):
    """y[p, oh, ow] = mean of x[p, h, w] over h in [floor(oh H/OH), ceil((oh+1) H/OH)),
    w alike. x (P, H, W); y (P, OH, OW). Sums in float64. Parallel over planes."""
    P, H, W = x.shape
    _, OH, OW = y.shape
    for p in prange(P):
        plane = x[p]
        for oh in range(OH):
            ha = (oh * H) // OH
            hb = ((oh + 1) * H + OH - 1) // OH
            for ow in range(OW):
                wa = (ow * W) // OW
                wb = ((ow + 1) * W + OW - 1) // OW
                s = 0.0
                for h in range(ha, hb):
                    for w in range(wa, wb):
                        s += np.float64(plane[h, w])
                y[p, oh, ow] = s / ((hb - ha) * (wb - wa))


@kernel
def adaptive_avg_pool2d_backward(dy, dx):
    """dx[p, h, w] = sum of dy[p, oh, ow] / window size over the windows containing (h, w).
    dy (P, OH, OW); dx (P, H, W). Parallel over planes, outputs in order."""
    P, H, W = dx.shape
    _, OH, OW = dy.shape
    for p in prange(P):
        plane = dx[p]
        plane[:, :] = 0
        for oh in range(OH):
            ha = (oh * H) // OH
            hb = ((oh + 1) * H + OH - 1) // OH
            for ow in range(OW):
                wa = (ow * W) // OW
                wb = ((ow + 1) * W + OW - 1) // OW
                g = dy[p, oh, ow] / ((hb - ha) * (wb - wa))
                for h in range(ha, hb):
                    for w in range(wa, wb):
                        plane[h, w] += g
