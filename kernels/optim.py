"""Optimizer updates: each is one pass over flat parameter, gradient and state buffers.

Every optimizer's update is written once, for one element, with torch.optim's formula
(``foreach=False`` semantics) and per-group hyperparameters; the kernel walks *work items*,
fixed slices ``[start, end)`` of at most ``CHUNK`` elements that each lie in one parameter
group (``group[w]``), so that parameter groups with their own lr/weight decay share one call.
Updates are elementwise (no reductions), so any split over threads gives identical results.
The items are dealt to threads by the caller (``thread_first``): where the GEMM
(``blas.gemm_blocks``) splits a weight's gradient by rows, thread t updates the rows it
computed, so the gradient is read from the cache that holds it. Measured, whole training
steps in one process alternating the two ways (medians of paired ratios): with the flat
buffer simply cut in halves, the 784-512-512-10 BN step was 12% to 32% slower and the
784-128-10 step 0% to 26% slower, the more so when the machine's two cores sit far apart (a
slow phase of this shared machine).

Shapes: param, grad, and each state buffer (n,) of one dtype; item_start, item_end,
item_group (W,) int64 and thread_first (T + 1,) int64 (``work_items``); hp (G, K) float64,
one row of hyperparameters per group, in the order of the kernel's ``*_COLUMNS`` (indexed
by the named constants below). Scalars are cast to the buffer's dtype.

``grad_sq_partial`` computes the global gradient norm for ``clip_grad_norm_``.

SQUARES: ``sgd_step`` and ``adam_step`` can also add up the squares of the parameters they
just wrote, per thread and group, while each work item is still in L1 (``squares``).
scikit-learn adds 0.5 * alpha * ||W||^2 of the weights before each step to that step's loss:
those are the squares the previous step's update wrote. Summed by a kernel of their own, the
weights of a (256, 256) network cost 8.6 µs a step (read back from both cores' caches after
the update), about 1% of a float32 step; summed here, far less. Per thread, in item order,
so the sums do not depend on timing; the caller zeroes ``squares`` before the step (a
compiled step may update in several calls, which then add up).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import jit, kernel
from ._typed import typed

#: Elements per work item (the items of one thread run one after another).
CHUNK = 4096

# The columns of each optimizer's hyperparameter matrix ``hp`` (one row per parameter
# group), by name: the kernels index ``hp`` with these constants and ``fastnn.optim`` fills
# the rows by the same names, so the two sides cannot drift apart.
SGD_COLUMNS = ("lr", "weight_decay", "momentum", "dampening", "nesterov", "first_step",
               "maximize")
SGD_LR, SGD_WD, SGD_MOMENTUM, SGD_DAMPENING, SGD_NESTEROV, SGD_FIRST, SGD_MAXIMIZE = range(7)
ADAGRAD_COLUMNS = ("clr", "weight_decay", "eps", "maximize")
ADAGRAD_CLR, ADAGRAD_WD, ADAGRAD_EPS, ADAGRAD_MAXIMIZE = range(4)
RMSPROP_COLUMNS = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")
(RMSPROP_LR, RMSPROP_ALPHA, RMSPROP_EPS, RMSPROP_WD, RMSPROP_MOMENTUM, RMSPROP_CENTERED,
 RMSPROP_MAXIMIZE) = range(7)
ADAM_COLUMNS = ("step_size", "beta1", "beta2", "eps", "bias_correction2_sqrt", "weight_decay",
                "decay", "amsgrad", "maximize")
(ADAM_STEP_SIZE, ADAM_BETA1, ADAM_BETA2, ADAM_EPS, ADAM_BC2_SQRT, ADAM_WD, ADAM_DECAY,
 ADAM_AMSGRAD, ADAM_MAXIMIZE) = range(9)

#: Elements from which an update runs on the thread pool. An update costs a few ns per
#: element (a square root and a division): measured, Adam over 64K float32 parameters
#: 26 µs serial, 17 µs on 2 threads; over 16K, 9.0 and 8.2 µs.
PARALLEL_MIN_ELEMENTS = 1 << 15


def work_items(segments: list[tuple[int, int, int, int]]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split ``(start, end, group, thread)`` segments into work items of at most CHUNK elements.

    Returns item_start, item_end, item_group (W,) int64, the items of thread 0 first, then
    those of thread 1, ...; and thread_first (T + 1,) int64: thread t's items are
    ``thread_first[t]:thread_first[t + 1]``.
    """
    n_threads = 1 + max((seg[3] for seg in segments), default=0)
    per_thread: list[list[tuple[int, int, int]]] = [[] for _ in range(n_threads)]
    for start, end, group, thread in segments:
        for s in range(start, end, CHUNK):
            per_thread[thread].append((s, min(end, s + CHUNK), group))
    items = [item for thread_items in per_thread for item in thread_items]
    first = np.cumsum([0] + [len(t) for t in per_thread])
    as_i64 = lambda v: np.asarray(v, dtype=np.int64).reshape(-1)  # noqa: E731
    return (as_i64([i[0] for i in items]), as_i64([i[1] for i in items]),
            as_i64([i[2] for i in items]), as_i64(first))


# Each update is an inner function over the zero-based slices of one work item: LLVM
# vectorizes that loop, loop-invariant branches and all (measured, Adam over 1M float32:
# 2.4 ms as a loop over ``range(start, end)`` of the whole buffers, whose indices Numba
# cannot prove non-negative; 0.31 ms as below).


@jit(reassociate=True)
def _sum_of_squares(a):
    """sum(a ** 2), accumulated in a's dtype (a work item of an update, still in L1), as
    float64. A pure reduction with ``reassoc``: vector lanes, in an order fixed by the
    length alone."""
    s = typed(a[0], 0.0)
    for i in range(a.shape[0]):
        s += a[i] * a[i]
    return np.float64(s)


@jit
def _sgd_slice(p, g_in, buf, lr, wd, mom, damp, nesterov, first, sign):
    use_mom = buf.shape[0] == p.shape[0]
    for i in range(p.shape[0]):
        g = sign * g_in[i] + wd * p[i]
        if use_mom:
            b = g if first else mom * buf[i] + damp * g
            buf[i] = b
            g = g + mom * b if nesterov else b
        p[i] -= lr * g


@kernel(min_parallel=PARALLEL_MIN_ELEMENTS)
def sgd_step(param, grad, momentum_buffer, squares, item_start, item_end, item_group,
             thread_first, hp):
    """SGD with momentum, dampening, Nesterov and weight decay (torch.optim.SGD).

    hp columns: lr, weight_decay, momentum, dampening, nesterov (0/1), first (0/1: the first
    step, when the buffer is set to the gradient itself), maximize (0/1).

        g = grad (negated if maximize) + weight_decay * p
        buf = g                                   on the first step
        buf = momentum * buf + (1 - dampening) g  afterwards        (only if momentum != 0)
        g = g + momentum * buf if nesterov else buf                 (only if momentum != 0)
        p = p - lr * g

    Plain SGD is the case momentum = 0 (``momentum_buffer`` may then be empty).
    ``squares`` (T, G) float64, or (0, 0) to skip: squares[t, k] += the sum of the updated
    parameters' squares over thread t's items of group k (see ``SQUARES``).
    Parallel over threads, each over its own work items (see ``work_items``): the update is
    elementwise.
    """
    for t in prange(thread_first.shape[0] - 1):
        for w in range(thread_first[t], thread_first[t + 1]):
            k, lo, hi = item_group[w], item_start[w], item_end[w]
            x = param[0]
            buf = momentum_buffer[lo:hi] if hp[k, SGD_MOMENTUM] != 0.0 else momentum_buffer[0:0]
            _sgd_slice(param[lo:hi], grad[lo:hi], buf, typed(x, hp[k, SGD_LR]),
                       typed(x, hp[k, SGD_WD]), typed(x, hp[k, SGD_MOMENTUM]),
                       typed(x, 1.0 - hp[k, SGD_DAMPENING]), hp[k, SGD_NESTEROV] != 0.0,
                       hp[k, SGD_FIRST] != 0.0,
                       typed(x, -1.0 if hp[k, SGD_MAXIMIZE] != 0.0 else 1.0))
            if squares.shape[0] > 0:
                squares[t, k] += _sum_of_squares(param[lo:hi])


@jit
def _adagrad_slice(p, g_in, state_sum, clr, wd, eps, sign):
    for i in range(p.shape[0]):
        g = sign * g_in[i] + wd * p[i]
        s = state_sum[i] + g * g
        state_sum[i] = s
        p[i] -= clr * g / (np.sqrt(s) + eps)


@kernel(min_parallel=PARALLEL_MIN_ELEMENTS)
def adagrad_step(param, grad, state_sum, item_start, item_end, item_group, thread_first, hp):
    """Adagrad (torch.optim.Adagrad).

    hp columns: clr = lr / (1 + (step - 1) lr_decay), weight_decay, eps, maximize (0/1).

        g = grad + weight_decay * p;  sum += g^2;  p = p - clr * g / (sqrt(sum) + eps)

    Parallel over threads, each over its own work items (see ``work_items``): the update is
    elementwise.
    """
    for t in prange(thread_first.shape[0] - 1):
        for w in range(thread_first[t], thread_first[t + 1]):
            k, lo, hi = item_group[w], item_start[w], item_end[w]
            x = param[0]
            _adagrad_slice(param[lo:hi], grad[lo:hi], state_sum[lo:hi],
                           typed(x, hp[k, ADAGRAD_CLR]), typed(x, hp[k, ADAGRAD_WD]),
                           typed(x, hp[k, ADAGRAD_EPS]),
                           typed(x, -1.0 if hp[k, ADAGRAD_MAXIMIZE] != 0.0 else 1.0))


@jit
def _rmsprop_slice(p, g_in, sq_avg, buf, g_avg, lr, alpha, one_m_alpha, eps, wd, mom, sign):
    use_mom = buf.shape[0] == p.shape[0]
    centered = g_avg.shape[0] == p.shape[0]
    for i in range(p.shape[0]):
        g = sign * g_in[i] + wd * p[i]
        sq = alpha * sq_avg[i] + one_m_alpha * g * g
        sq_avg[i] = sq
        if centered:
            ga = alpha * g_avg[i] + one_m_alpha * g
            g_avg[i] = ga
            avg = np.sqrt(sq - ga * ga) + eps
        else:
            avg = np.sqrt(sq) + eps
        if use_mom:
            b = mom * buf[i] + g / avg
            buf[i] = b
            p[i] -= lr * b
        else:
            p[i] -= lr * g / avg


@kernel(min_parallel=PARALLEL_MIN_ELEMENTS)
def rmsprop_step(param, grad, square_avg, momentum_buffer, grad_avg,
                 item_start, item_end, item_group, thread_first, hp):
    """RMSprop (torch.optim.RMSprop), with ``centered`` and ``momentum``.

    hp columns: lr, alpha, eps, weight_decay, momentum, centered (0/1), maximize (0/1).

        g = grad + weight_decay * p
        sq = alpha sq + (1 - alpha) g^2
        centered: ga = alpha ga + (1 - alpha) g;  avg = sqrt(sq - ga^2) + eps
        else:     avg = sqrt(sq) + eps
        momentum > 0: buf = momentum buf + g / avg;  p = p - lr buf
        else:         p = p - lr g / avg

    ``momentum_buffer`` / ``grad_avg`` may be empty when no group uses momentum / centering.
    Parallel over threads, each over its own work items (see ``work_items``): the update is
    elementwise.
    """
    for t in prange(thread_first.shape[0] - 1):
        for w in range(thread_first[t], thread_first[t + 1]):
            k, lo, hi = item_group[w], item_start[w], item_end[w]
            x = param[0]
            buf = momentum_buffer[lo:hi] if hp[k, RMSPROP_MOMENTUM] > 0.0 \
                else momentum_buffer[0:0]
            g_avg = grad_avg[lo:hi] if hp[k, RMSPROP_CENTERED] != 0.0 else grad_avg[0:0]
            _rmsprop_slice(param[lo:hi], grad[lo:hi], square_avg[lo:hi], buf, g_avg,
                           typed(x, hp[k, RMSPROP_LR]), typed(x, hp[k, RMSPROP_ALPHA]),
                           typed(x, 1.0 - hp[k, RMSPROP_ALPHA]), typed(x, hp[k, RMSPROP_EPS]),
                           typed(x, hp[k, RMSPROP_WD]), typed(x, hp[k, RMSPROP_MOMENTUM]),
                           typed(x, -1.0 if hp[k, RMSPROP_MAXIMIZE] != 0.0 else 1.0))


@jit
def _adam_slice(param, grad, exp_avg, exp_avg_sq, vmax, step_size, b1, one_m_b1, b2, one_m_b2,
                eps, bc2_sqrt, wd, decay, sign):
    amsgrad = vmax.shape[0] == param.shape[0]
    for i in range(param.shape[0]):
        p = param[i] * decay
        g = sign * grad[i] + wd * p
        m = b1 * exp_avg[i] + one_m_b1 * g
        v = b2 * exp_avg_sq[i] + one_m_b2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            v = max(vmax[i], v)
            vmax[i] = v
        param[i] = p - step_size * m / (np.sqrt(v) / bc2_sqrt + eps)


@kernel(min_parallel=PARALLEL_MIN_ELEMENTS)
def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, squares,
              item_start, item_end, item_group, thread_first, hp):
    """Adam and AdamW (torch.optim.Adam / AdamW), with ``amsgrad``.

    hp columns: step_size = lr / (1 - beta1^t), beta1, beta2, eps,
    bias_correction2_sqrt = sqrt(1 - beta2^t), weight_decay (L2, Adam),
    decay = 1 - lr * weight_decay (decoupled, AdamW; 1 for Adam), amsgrad (0/1), maximize.

        p = decay * p
        g = grad + weight_decay * p
        m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
        amsgrad: vmax = max(vmax, v), used for v below
        p = p - step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)

    ``max_exp_avg_sq`` may be empty when no group uses amsgrad. ``squares`` (T, G) float64,
    or (0, 0) to skip: squares[t, k] += the sum of the updated parameters' squares over
    thread t's items of group k (see ``SQUARES``).
    Parallel over threads, each over its own work items (see ``work_items``): the update is
    elementwise.
    """
    for t in prange(thread_first.shape[0] - 1):
        for w in range(thread_first[t], thread_first[t + 1]):
            k, lo, hi = item_group[w], item_start[w], item_end[w]
            x = param[0]
            vmax = max_exp_avg_sq[lo:hi] if hp[k, ADAM_AMSGRAD] != 0.0 \
                else max_exp_avg_sq[0:0]
            _adam_slice(param[lo:hi], grad[lo:hi], exp_avg[lo:hi], exp_avg_sq[lo:hi], vmax,
                        typed(x, hp[k, ADAM_STEP_SIZE]), typed(x, hp[k, ADAM_BETA1]),
                        typed(x, 1.0 - hp[k, ADAM_BETA1]), typed(x, hp[k, ADAM_BETA2]),
                        typed(x, 1.0 - hp[k, ADAM_BETA2]), typed(x, hp[k, ADAM_EPS]),
                        typed(x, hp[k, ADAM_BC2_SQRT]), typed(x, hp[k, ADAM_WD]),
                        typed(x, hp[k, ADAM_DECAY]),
                        typed(x, -1.0 if hp[k, ADAM_MAXIMIZE] != 0.0 else 1.0))
            if squares.shape[0] > 0:
                squares[t, k] += _sum_of_squares(param[lo:hi])


@kernel(min_parallel=PARALLEL_MIN_ELEMENTS, reassociate=True)
def grad_sq_partial(grad, partial):
    """partial[c] = sum of grad[i]^2 over chunk c of CHUNK elements (float64 accumulation);
    returns the sum of ``partial``.

    The chunks are fixed, so the result does not depend on the thread count. A pure
    reduction (its summing loops store nothing), compiled with ``reassociate``: LLVM sums in
    vector lanes, in an order fixed by the lengths alone (7.7 µs over 92K float32 elements,
    against 114 µs one addition after another).
    """
    n = grad.shape[0]
    for c in prange(partial.shape[0]):
        s = 0.0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            v = np.float64(grad[i])
            s += v * v
        partial[c] = s
    total = 0.0
    for c in range(partial.shape[0]):
        total += partial[c]
    return total


@kernel(min_parallel=PARALLEL_MIN_ELEMENTS)
def scale_inplace(x, factor):
    """x *= factor over a flat buffer. Parallel over fixed chunks."""
    n = x.shape[0]
    f = typed(x[0], factor)
    for c in prange((n + CHUNK - 1) // CHUNK):
        # a slice indexed from 0, so the loop vectorizes (activations.activation_backward)
        part = x[c * CHUNK:min(n, (c + 1) * CHUNK)]
        for i in range(part.shape[0]):
            part[i] *= f
