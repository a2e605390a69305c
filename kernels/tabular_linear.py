"""The continuous features' part of a tabular MLP's first Linear layer, without writing the
piecewise-linear components it multiplies.

A feature's piecewise-linear encoding (``fastnn.nn.PiecewiseLinearEncoding``: components
``v_t = min(max((x - left_t) / width_t, lower_t), upper_t)`` over the feature's bins, the
first unclipped below, the last unclipped above) is, for every number x, a run of ones, then
at most one other value, then zeros: x lies in one bin; the bins to its left are full, those
to its right empty. So the product of a row's components with the layer's weight needs no
multiply per component:

    z[r, h] = bias[h] + sum_g ( prefix_g[m_rg, h] + f_rg * WT[s_g + m_rg, h] )
    prefix_g[m, h] = sum_{t < m} WT[s_g + t, h]

for the group g of components of feature g (columns s_g .. e_g - 1 of the first input,
``T_g = e_g - s_g`` of them), its run length m_rg (leading components equal to 1) and the
value f_rg of component s_g + m_rg (0 when m_rg = T_g). W (W_in, H) is the layer's weight
(fastnn's layout: x @ W), WT = W[:T] its rows of the components. A feature
without an encoding is a group of one component with left 0, width 1 and no clipping: its
run is 0 (or 1 when x is exactly 1) and f is x itself. The weight's gradient follows the
same runs:

    dW[s_g + t, h] = sum_{r: m_rg > t} dz[r, h] + sum_{r: m_rg = t} f_rg dz[r, h]
    db[h]          = sum_r dz[r, h]

(the first sum, over the rows whose run covers component t, is a suffix sum of the rows'
gradients binned by run length). Per row and group the forward does two H-wide adds where
the product with the written components does T_g, and the backward two where the product
with them does T_g for dW (and T_g more for the input gradient, which nobody needs: the
components of data have no gradient). Measured on diamonds-like batches (512 rows, 6
features of 48 bins, 128 units, float32, an idle machine, medians): forward 101 µs and
backward 106 µs on one thread (55 and 62 on two), where the one product with the written
components took 388 µs on one (and the dense backward needs two of them).

The run and the value come from the encoding's own formula: for the edges
``PiecewiseLinearEncoding`` derives (``width_t = left_{t+1} - left_t`` in the dtype, lower 0
but the first's, upper 1 but the last's; the caller checks) the components are 1 below x's
bin and 0 above it, exactly, since rounding is monotone: x >= left_{t+1} gives
fl(x - left_t) >= width_t, a component clipped to 1, and x < left_t gives
fl(x - left_t) <= 0, one clipped to 0. So a bisection on the left edges finds the bin, and
the formula gives its one component (to the rounding of the divide, which the kernels' fast
math may take as a multiply by the reciprocal). A NaN feature has no such structure: the
forward then reports it (returns False) and the caller multiplies the written components.

Shapes: x (N, G + C) float (the G continuous features first); group_start (G + 1,) int64;
left, width, lower, upper (T,); prefix (T + G, H), group g's rows starting at s_g + g;
WT (T, H); bias (H,); z (N, H); runs (N, G) int64; fracs (N, G); dz (N, H); dW (W_in, H)
(rows 0 .. T - 1 written); db (H,).
"""

from __future__ import annotations

import math

from numba import prange

from ._jit import jit, kernel
from ._typed import typed

#: Rows per chunk of the forward's parallel loop.
ROWS_PER_CHUNK = 64


@jit
def group_prefix(WT, group_start, prefix):
    """``prefix[s_g + g + m] = sum_{t < m} WT[s_g + t]`` for m = 0 .. T_g (module
    docstring), summed in t order."""
    n_groups = group_start.shape[0] - 1
    n_units = WT.shape[1]
    for g in range(n_groups):
        s, e = group_start[g], group_start[g + 1]
        base = s + g
        for h in range(n_units):
            prefix[base, h] = 0
        for t in range(s, e):
            row, prev, w = prefix[base + t - s + 1], prefix[base + t - s], WT[t]
            for h in range(n_units):
                row[h] = prev[h] + w[h]


@jit
def _component(xv, left, width, lower, upper, t):
    """Component t of the encoding of the value xv (the encoding's formula, its bits)."""
    v = (xv - left[t]) / width[t]
    if v < lower[t]:
        v = lower[t]
    if v > upper[t]:
        v = upper[t]
    return v


@kernel
def ple_linear_forward(x, group_start, left, width, lower, upper, prefix, WT, bias, z, runs,
                       fracs):
    """``z = bias + (the continuous features' components) @ W[:T]`` (module docstring),
    and each row's runs and values for the backward. Returns False when a continuous
    feature is NaN (then ``z`` is partly written; the caller takes the path that writes the
    components).

    The run of a value x in group g is the number k of the group's later left edges at or
    below x (a bisection on comparisons: no division), plus one when component s_g + k,
    computed by the encoding's formula, is 1 too (x on or within rounding of its right
    edge); f is that component otherwise.

    Parallel over fixed chunks of rows: each row of ``z``, ``runs`` and ``fracs`` is written
    by one iteration; the chunks holding a NaN are counted (a sum: any order, same count).
    """
    n = x.shape[0]
    n_groups = group_start.shape[0] - 1
    n_units = z.shape[1]
    nan_chunks = 0
    for c in prange((n + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK):
        chunk_ok = True
        r0, r1 = c * ROWS_PER_CHUNK, min(n, (c + 1) * ROWS_PER_CHUNK)
        # the chunk's runs first, then its sums: two simple loops (measured 0.74x the time
        # of one loop doing both, whose branches kept the adds from running back to back)
        for r in range(r0, r1):
            for g in range(n_groups):
                xv = typed(z[0, 0], x[r, g])
                s, e = group_start[g], group_start[g + 1]
                if math.isnan(xv):
                    chunk_ok = False
                    runs[r, g] = 0
                    fracs[r, g] = 0
                    continue
                lo, hi = s + 1, e  # the first left edge above x, in (s, e]
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if left[mid] <= xv:
                        lo = mid + 1
                    else:
                        hi = mid
                t = lo - 1  # x's component: the run s .. t-1 is 1, t+1 .. e-1 are 0
                f = _component(xv, left, width, lower, upper, t)
                if f == 1:
                    t += 1
                    f = typed(z[0, 0], 0)
                runs[r, g] = t - s
                fracs[r, g] = f
        for r in range(r0, r1):
            zr = z[r]
            for h in range(n_units):
                zr[h] = bias[h]
            for g in range(n_groups):
                s = group_start[g]
                m = runs[r, g]
                f = fracs[r, g]
                p = prefix[s + g + m]
                if f != 0:
                    w = WT[s + m]
                    for h in range(n_units):
                        zr[h] += p[h] + f * w[h]
                elif m:
                    for h in range(n_units):
                        zr[h] += p[h]
        nan_chunks += 0 if chunk_ok else 1
    return nan_chunks == 0


@kernel
def ple_linear_backward(dz, group_start, runs, fracs, dW, db, binned):
    """``dW[:T]`` and ``db`` from the output gradient ``dz`` (N, H) and the forward's
    ``runs`` and ``fracs`` (module docstring). ``binned`` (T + G, H): scratch, the rows'
    gradients summed by run length (group g's in rows s_g + g .. e_g + g).

    Parallel over the groups (and one more iteration for ``db``): a group owns its rows of
    ``dW`` and of ``binned`` and sums the rows of ``dz`` in order, so nothing is reduced
    across threads (the same bits on any number of threads) and every add is a whole row of
    H units (they vectorize).
    """
    n = dz.shape[0]
    n_units = dz.shape[1]
    n_groups = group_start.shape[0] - 1
    for g in prange(n_groups + 1):
        if g == n_groups:
            for h in range(n_units):
                db[h] = 0
            for r in range(n):
                dzr = dz[r]
                for h in range(n_units):
                    db[h] += dzr[h]
            continue
        s, e = group_start[g], group_start[g + 1]
        for i in range(s + g, e + g + 1):
            for h in range(n_units):
                binned[i, h] = 0
        for t in range(s, e):
            for h in range(n_units):
                dW[t, h] = 0
        for r in range(n):
            dzr = dz[r]
            m = runs[r, g]
            acc = binned[s + g + m]
            for h in range(n_units):
                acc[h] += dzr[h]
            f = fracs[r, g]
            if s + m < e and f != 0:
                col = dW[s + m]
                for h in range(n_units):
                    col[h] += f * dzr[h]
        # component t is covered by the rows whose run is longer: a suffix sum of the bins
        # (kept in the bin of the run that covers all: it is not read again)
        covered = binned[e + g]
        for t in range(e - 1, s - 1, -1):
            if t < e - 1:
                longer = binned[t + g + 1]
                for h in range(n_units):
                    covered[h] += longer[h]
            row = dW[t]
            for h in range(n_units):
                row[h] += covered[h]
