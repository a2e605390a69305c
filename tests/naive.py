"""Slow, obvious float64 NumPy twins of the kernels: what each kernel must compute.

Every kernel in ``kernels/`` has its twin here; the kernel tests compare against them.
They favour the textbook formula over speed or numerical tricks, and work in float64.
"""

from __future__ import annotations

import math

import numpy as np

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def activation(name: str, z, alpha: float = 0.0):
    """(y, dy/dz) of the named activation, elementwise, in float64 (PyTorch's formulas)."""
    z = _f64(z)
    if name == "identity":
        return z.copy(), np.ones_like(z)
    if name == "relu":
        return np.maximum(z, 0.0), (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, z, alpha * z), np.where(z > 0, 1.0, alpha)
    if name == "elu":
        y = np.where(z > 0, z, alpha * (np.exp(np.minimum(z, 0.0)) - 1.0))
        return y, np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0.0)))
    if name == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        return s, s * (1.0 - s)
    if name == "tanh":
        t = np.tanh(z)
        return t, 1.0 - t**2
    if name == "gelu":
        erf = np.vectorize(math.erf)
        cdf = 0.5 * (1.0 + erf(z / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)
        return z * cdf, cdf + z * pdf
    if name == "gelu_tanh":
        u = SQRT_2_OVER_PI * (z + 0.044715 * z**3)
        t = np.tanh(u)
        du = SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * z**2)
        return 0.5 * z * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t**2) * du
    if name == "silu":
        s = 1.0 / (1.0 + np.exp(-z))
        return z * s, s + z * s * (1.0 - s)
    raise KeyError(name)


def prelu_forward(x, weight):
    """y = x if x > 0 else w * x, w per column (C,) or shared (1,)."""
    x, w = _f64(x), _f64(weight)
    return np.where(x > 0, x, w * x)


def prelu_backward(dy, x, weight):
    """(dx, dw) of PReLU: dx = dy * (1 if x > 0 else w), dw = sum over rows of dy * min(x, 0)."""
    dy, x, w = _f64(dy), _f64(x), _f64(weight)
    dx = np.where(x > 0, dy, dy * w)
    dw = (dy * np.minimum(x, 0.0)).sum(axis=0)
    if w.shape[0] == 1:
        dw = np.array([dw.sum()])
    return dx, dw


def gemm(A, B, C, trans_a=False, trans_b=False, beta=0.0):
    """op(A) @ op(B) + beta * C in float64 (beta == 0 ignores C, NaN included)."""
    a = _f64(A).T if trans_a else _f64(A)
    b = _f64(B).T if trans_b else _f64(B)
    out = a @ b
    return out if beta == 0.0 else out + beta * _f64(C)


def dense_forward(x, W, b, name="identity", alpha=0.0):
    """(y, d) of y = act(x @ W + b)."""
    z = _f64(x) @ _f64(W) + (_f64(b) if b is not None and len(b) else 0.0)
    return activation(name, z, alpha)


def dense_backward(dy, x, W, b, name="identity", alpha=0.0):
    """(dx, dW, db) of y = act(x @ W + b)."""
    _, d = dense_forward(x, W, b, name, alpha)
    dz = _f64(dy) * d
    return dz @ _f64(W).T, _f64(x).T @ dz, dz.sum(axis=0)


def batchnorm_forward_train(x, gamma, beta, eps, momentum, running_mean, running_var,
                            name="identity", alpha=0.0):
    """(y, d, new_running_mean, new_running_var) of training-mode BatchNorm1d + activation."""
    x = _f64(x)
    n = x.shape[0]
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    xhat = (x - mean) / np.sqrt(var + eps)
    y, d = activation(name, _f64(gamma) * xhat + _f64(beta), alpha)
    rm = (1 - momentum) * _f64(running_mean) + momentum * mean
    rv = (1 - momentum) * _f64(running_var) + momentum * var * n / (n - 1)
    return y, d, rm, rv


def batchnorm_forward_eval(x, gamma, beta, eps, running_mean, running_var, name="identity",
                           alpha=0.0):
    xhat = (_f64(x) - _f64(running_mean)) / np.sqrt(_f64(running_var) + eps)
    return activation(name, _f64(gamma) * xhat + _f64(beta), alpha)


def batchnorm_backward(dy, x, gamma, eps, name="identity", alpha=0.0, beta=None):
    """(dx, dgamma, dbeta) of training-mode BatchNorm1d + activation, by the textbook chain."""
    x, gamma = _f64(x), _f64(gamma)
    beta = np.zeros_like(gamma) if beta is None else _f64(beta)
    n = x.shape[0]
    mean = x.mean(axis=0)
    xc = x - mean
    var = (xc**2).mean(axis=0)
    std = np.sqrt(var + eps)
    xhat = xc / std
    _, d = activation(name, gamma * xhat + beta, alpha)
    dz = _f64(dy) * d
    dbeta = dz.sum(axis=0)
    dgamma = (dz * xhat).sum(axis=0)
    dxhat = dz * gamma
    dvar = (dxhat * xc * -0.5 * std**-3).sum(axis=0)
    dmean = (-dxhat / std).sum(axis=0) + dvar * (-2.0 * xc).mean(axis=0)
    dx = dxhat / std + dvar * 2.0 * xc / n + dmean / n
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, eps, name="identity", alpha=0.0):
    """(y, d) of LayerNorm over each row of x (N, D) (biased variance) + activation."""
    x = _f64(x)
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + eps)
    return activation(name, _f64(gamma) * xhat + _f64(beta), alpha)


def layernorm_backward(dy, x, gamma, beta, eps, name="identity", alpha=0.0):
    """(dx, dgamma, dbeta) of LayerNorm + activation, by the textbook chain per row."""
    x, gamma = _f64(x), _f64(gamma)
    d_feat = x.shape[1]
    mean = x.mean(axis=1, keepdims=True)
    xc = x - mean
    var = (xc**2).mean(axis=1, keepdims=True)
    std = np.sqrt(var + eps)
    xhat = xc / std
    _, d = activation(name, gamma * xhat + _f64(beta), alpha)
    dz = _f64(dy) * d
    dxhat = dz * gamma
    dvar = (dxhat * xc * -0.5 * std**-3).sum(axis=1, keepdims=True)
    dmean = (-dxhat / std).sum(axis=1, keepdims=True) + dvar * (-2.0 * xc).mean(axis=1,
                                                                               keepdims=True)
    dx = dxhat / std + dvar * 2.0 * xc / d_feat + dmean / d_feat
    return dx, (dz * xhat).sum(axis=0), dz.sum(axis=0)


def embedding_forward(weight, indices):
    """The rows of ``weight`` at ``indices``."""
    return np.stack([_f64(weight)[k] for k in indices]) if len(indices) else \
        np.zeros((0, np.shape(weight)[1]))


def embedding_backward(indices, dout, num_embeddings, padding_idx=-1):
    """The (V, D) gradient of the table: dout[i] added into row indices[i], one at a time."""
    dout = _f64(dout)
    dw = np.zeros((num_embeddings, dout.shape[1]))
    for i, k in enumerate(indices):
        if k != padding_idx:
            dw[k] += dout[i]
    return dw


def softmax_cross_entropy(logits, labels):
    """(loss, dlogits) of the mean softmax cross-entropy."""
    z = _f64(logits)
    n = z.shape[0]
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = (np.log(np.exp(z).sum(axis=1)) - z[np.arange(n), labels]).mean()
    grad = p.copy()
    grad[np.arange(n), labels] -= 1.0
    return loss, grad / n


def multiclass_hinge(scores, labels, margin=1.0):
    """(loss, dscores) of the mean multiclass SVM loss (sum over wrong classes)."""
    s = _f64(scores)
    n = s.shape[0]
    correct = s[np.arange(n), labels][:, None]
    m = s - correct + margin
    m[np.arange(n), labels] = 0.0
    active = (m > 0).astype(np.float64)
    grad = active.copy()
    grad[np.arange(n), labels] = -active.sum(axis=1)
    return np.maximum(m, 0).sum() / n, grad / n


def cross_entropy_options(logits, labels, weight=None, ignore_index=-100, smoothing=0.0):
    """(per-row losses, per-row gradients, weight total) of softmax cross-entropy with class
    weights, an ignored label and label smoothing, straight from the definition:
    loss_i = -sum_j a_ij log p_ij, a_ij = (1 - eps) w_y [j == y] + (eps / C) w_j."""
    z = _f64(logits)
    n, c = z.shape
    w = np.ones(c) if weight is None else _f64(weight)
    logp = z - np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)) \
        - z.max(axis=1, keepdims=True)
    p = np.exp(logp)
    losses, grads, w_total = np.zeros(n), np.zeros((n, c)), 0.0
    for i in range(n):
        if labels[i] == ignore_index:
            continue
        a = smoothing / c * w
        a[labels[i]] += (1 - smoothing) * w[labels[i]]
        losses[i] = -(a * logp[i]).sum()
        grads[i] = a.sum() * p[i] - a
        w_total += w[labels[i]]
    return losses, grads, w_total


def cross_entropy_probs(logits, targets, weight=None, smoothing=0.0):
    """(per-row losses, per-row gradients) of cross-entropy against class probabilities."""
    z = _f64(logits)
    n, c = z.shape
    w = np.ones(c) if weight is None else _f64(weight)
    logp = z - z.max(axis=1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    a = w * ((1 - smoothing) * _f64(targets) + smoothing / c)
    return -(a * logp).sum(axis=1), a.sum(axis=1, keepdims=True) * np.exp(logp) - a


def nll(logp, labels, weight=None, ignore_index=-100):
    """(per-row losses, per-row gradients, weight total) of the negative log-likelihood."""
    x = _f64(logp)
    n, c = x.shape
    w = np.ones(c) if weight is None else _f64(weight)
    losses, grads, w_total = np.zeros(n), np.zeros((n, c)), 0.0
    for i in range(n):
        if labels[i] != ignore_index:
            losses[i] = -w[labels[i]] * x[i, labels[i]]
            grads[i, labels[i]] = -w[labels[i]]
            w_total += w[labels[i]]
    return losses, grads, w_total


def mse(pred, target):
    r = _f64(pred) - _f64(target)
    return (r**2).mean(), 2.0 * r / r.size


def l1(pred, target):
    """(per-element losses, local gradients) of |p - t|."""
    r = _f64(pred) - _f64(target)
    return np.abs(r), np.sign(r)


def huber(pred, target, delta=1.0):
    """(per-element losses, local gradients) of PyTorch's huber_loss."""
    r = _f64(pred) - _f64(target)
    quad = np.abs(r) < delta
    loss = np.where(quad, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    return loss, np.where(quad, r, delta * np.sign(r))


def smooth_l1(pred, target, beta=1.0):
    """(per-element losses, local gradients) of PyTorch's smooth_l1_loss."""
    r = _f64(pred) - _f64(target)
    if beta == 0:
        return np.abs(r), np.sign(r)
    quad = np.abs(r) < beta
    return (np.where(quad, 0.5 * r**2 / beta, np.abs(r) - 0.5 * beta),
            np.where(quad, r / beta, np.sign(r)))


def bce_with_logits(logits, target, weight=None, pos_weight=None):
    """(mean loss, gradient of the mean) of binary cross-entropy on logits, from the
    probabilities (fine for moderate logits); weight and pos_weight broadcast."""
    z, t = _f64(logits), _f64(target)
    p = 1.0 / (1.0 + np.exp(-z))
    pw = 1.0 if pos_weight is None else _f64(pos_weight)
    w = 1.0 if weight is None else _f64(weight)
    with np.errstate(divide="ignore"):
        loss = -w * (pw * t * np.log(p) + (1 - t) * np.log1p(-p))
    grad = w * (pw * t * (p - 1) + (1 - t) * p)
    return loss.mean(), np.broadcast_to(grad, z.shape) / z.size


def bce(probs, target, weight=None):
    """(per-element losses, local gradients) of binary cross-entropy on probabilities, with
    PyTorch's clamp of each log at -100 and of p (1 - p) at 1e-12."""
    p, t = _f64(probs), _f64(target)
    w = 1.0 if weight is None else _f64(weight)
    with np.errstate(divide="ignore"):
        loss = -w * (t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log(1 - p), -100))
    return loss, w * (p - t) / np.maximum(p * (1 - p), 1e-12)


def dropout_forward(x, u, p):
    """(y, mask) of inverted dropout given the uniforms u."""
    mask = (_f64(u) >= p) / (1.0 - p)
    return _f64(x) * mask, mask


def philox4x32_10(counter, key):
    """Philox4x32-10 (Salmon et al. 2011) of Python-int words: counter (4,), key (2,) -> (4,).

    Written from the paper's round function with Python's unbounded ints:
    (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)), the
    key bumped by (W0, W1) mod 2^32 between rounds.
    """
    m0, m1, w0, w1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
    c0, c1, c2, c3 = (int(v) for v in counter)
    k0, k1 = (int(v) for v in key)
    for r in range(10):
        if r:
            k0, k1 = (k0 + w0) % 2**32, (k1 + w1) % 2**32
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 % 2**32, (p0 >> 32) ^ c3 ^ k1, p0 % 2**32
    return c0, c1, c2, c3


def dropout_uniforms(rows, units, key, row_offset, dtype):
    """(rows, units) float64 uniforms of counter-based dropout (kernels/dropout.py): element
    (r, j) of global row R = row_offset + r from Philox4x32-10 of counter
    (j // per, R mod 2^32, R div 2^32, 0) and key (key mod 2^32, key div 2^32); per = 4 words
    of 24 bits each for float32, per = 2 pairs of words of 27 + 26 bits for float64."""
    per = 2 if np.dtype(dtype) == np.float64 else 4
    u = np.empty((rows, units))
    k = (key % 2**32, key >> 32)
    for r in range(rows):
        row = row_offset + r
        for j in range(units):
            w = philox4x32_10((j // per, row % 2**32, row >> 32, 0), k)
            t = j % per
            if per == 4:
                u[r, j] = (w[t] >> 8) / 2.0**24
            else:
                u[r, j] = ((w[2 * t] >> 5) * 2**26 + (w[2 * t + 1] >> 6)) / 2.0**53
    return u


def dropout_counter_based(x, p, key, row_offset=0):
    """(y, mask) of dropout on the (rows, units) array ``x`` with the uniforms of
    :func:`dropout_uniforms` (a slow, obvious reading of the kernel's formula)."""
    x = np.asarray(x)
    return dropout_forward(x, dropout_uniforms(*x.shape, key, row_offset, x.dtype), p)


def maxout_forward(x, W, b, pieces):
    """(y, arg) of the maxout unit: max over groups of ``pieces`` adjacent columns."""
    z = _f64(x) @ _f64(W) + (_f64(b) if b is not None and len(b) else 0.0)
    z = z.reshape(z.shape[0], -1, pieces)
    return z.max(axis=2), z.argmax(axis=2)


def maxout_backward(dy, x, W, b, pieces):
    """(dx, dW, db) of the maxout unit, routing dy to the (first) winning piece."""
    _, arg = maxout_forward(x, W, b, pieces)
    n, m = arg.shape
    dz = np.zeros((n, m, pieces))
    np.put_along_axis(dz, arg[..., None], _f64(dy)[..., None], axis=2)
    dz = dz.reshape(n, m * pieces)
    return dz @ _f64(W).T, _f64(x).T @ dz, dz.sum(axis=0)


# ------------------------------------------------------------------ optimizers
class NaiveOptimizer:
    """torch.optim's update formulas (their documented algorithms), one array at a time,
    in float64. ``step(grads)`` updates ``self.params`` (a list of float64 arrays)."""

    def __init__(self, params, **hp):
        self.params = [np.array(p, dtype=np.float64) for p in params]
        self.hp = hp
        self.t = 0
        self.state = [dict() for _ in self.params]

    def step(self, grads):
        self.t += 1
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            g = _f64(g).copy()
            if self.hp.get("maximize"):
                g = -g
            self.params[i] = self.update(p, g, self.state[i])


class NaiveSGD(NaiveOptimizer):
    def update(self, p, g, st):
        lr, mom, damp = self.hp["lr"], self.hp.get("momentum", 0.0), self.hp.get("dampening", 0.0)
        g = g + self.hp.get("weight_decay", 0.0) * p
        if mom != 0:
            st["buf"] = g.copy() if "buf" not in st else mom * st["buf"] + (1 - damp) * g
            g = g + mom * st["buf"] if self.hp.get("nesterov") else st["buf"]
        return p - lr * g


class NaiveAdagrad(NaiveOptimizer):
    def update(self, p, g, st):
        g = g + self.hp.get("weight_decay", 0.0) * p
        clr = self.hp["lr"] / (1 + (self.t - 1) * self.hp.get("lr_decay", 0.0))
        st["sum"] = st.get("sum", np.full_like(p, self.hp.get("initial_accumulator_value", 0.0)))
        st["sum"] = st["sum"] + g * g
        return p - clr * g / (np.sqrt(st["sum"]) + self.hp.get("eps", 1e-10))


class NaiveRMSprop(NaiveOptimizer):
    def update(self, p, g, st):
        a, eps, mom = self.hp.get("alpha", 0.99), self.hp.get("eps", 1e-8), \
            self.hp.get("momentum", 0.0)
        g = g + self.hp.get("weight_decay", 0.0) * p
        st["sq"] = a * st.get("sq", np.zeros_like(p)) + (1 - a) * g * g
        if self.hp.get("centered"):
            st["ga"] = a * st.get("ga", np.zeros_like(p)) + (1 - a) * g
            avg = np.sqrt(st["sq"] - st["ga"] ** 2) + eps
        else:
            avg = np.sqrt(st["sq"]) + eps
        if mom > 0:
            st["buf"] = mom * st.get("buf", np.zeros_like(p)) + g / avg
            return p - self.hp["lr"] * st["buf"]
        return p - self.hp["lr"] * g / avg


class NaiveAdam(NaiveOptimizer):
    decoupled = False

    def update(self, p, g, st):
        lr, (b1, b2) = self.hp.get("lr", 1e-3), self.hp.get("betas", (0.9, 0.999))
        eps = self.hp.get("eps", 1e-8)
        wd = self.hp.get("weight_decay", 1e-2 if self.decoupled else 0.0)  # torch's defaults
        if self.decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        st["m"] = b1 * st.get("m", np.zeros_like(p)) + (1 - b1) * g
        st["v"] = b2 * st.get("v", np.zeros_like(p)) + (1 - b2) * g * g
        v = st["v"]
        if self.hp.get("amsgrad"):
            st["vmax"] = np.maximum(st.get("vmax", np.zeros_like(p)), v)
            v = st["vmax"]
        m_hat = st["m"] / (1 - b1**self.t)
        return p - lr * m_hat / (np.sqrt(v) / np.sqrt(1 - b2**self.t) + eps)


class NaiveAdamW(NaiveAdam):
    decoupled = True


def gather_standardize(X, idx, shift, scale, dtype):
    """kernels/rows.py: (X[idx] cast to dtype - shift) / scale, one NumPy step at a time
    (idx None: all rows; shift None: a cast only)."""
    rows = np.asarray(X)[idx] if idx is not None else np.asarray(X)
    out = rows.astype(dtype)
    if shift is not None:
        out = (out - shift.astype(dtype)) / scale.astype(dtype)
    return out


def gather_values(values, idx):
    """kernels/rows.py's gather_values: values[idx], one element at a time."""
    return np.array([values[i] for i in idx], dtype=np.asarray(values).dtype)


def encode_block(src, dest, fill, low, high, mark, width):
    """kernels/rows.py's encode_block, one NumPy step at a time: (out (R, width), NaN where
    no source writes; blanks (C,); clipped (C,))."""
    blank = np.isnan(src)
    v = np.where(blank, fill[:, None], src)
    clipped = (v < low[:, None]) | (v > high[:, None])
    v = np.clip(v, low[:, None], high[:, None])
    out = np.full((src.shape[1], width), np.nan)
    for c in range(len(src)):
        if dest[c] >= 0:
            out[:, dest[c]] = v[c]
        if mark[c] >= 0:
            out[:, mark[c]] = blank[c].astype(np.float64)
    return out, blank.sum(axis=1), clipped.sum(axis=1)


def filled_values(values, rows, every):
    """kernels/rows.py's filled_values: (the non-blank values of the fitted rows in their
    order, smallest, largest), by boolean selection (inf, -inf when none)."""
    part = np.asarray(values, np.float64) if every else np.asarray(values, np.float64)[rows]
    kept = part[~np.isnan(part)]
    return kept, (kept.min() if len(kept) else np.inf), (kept.max() if len(kept) else -np.inf)


def values_between(values, lo, hi):
    """kernels/rows.py's values_between: (count below lo, the values within [lo, hi])."""
    values = np.asarray(values, np.float64)
    return int(np.count_nonzero(values < lo)), values[(values >= lo) & (values <= hi)]


def _valid_bits(valid, bit0, n):
    """Bits bit0 .. bit0 + n - 1 of an Arrow validity bitmap (all set when it is empty)."""
    if len(valid) == 0:
        return np.ones(n, bool)
    bits = np.unpackbits(np.asarray(valid, np.uint8), bitorder="little")
    return bits[bit0:bit0 + n].astype(bool)


def values_from_arrow(data, valid, bit0, n):
    """kernels/rows.py's values_from_arrow: data as float64, NaN where the bitmap's bit is
    clear."""
    return np.where(_valid_bits(valid, bit0, n), np.asarray(data[:n], np.float64), np.nan)


def codes_from_arrow(index, valid, bit0, code, unknown):
    """kernels/rows.py's codes_from_arrow: (codes, blanks, unknowns), or None when an index
    lies outside the dictionary."""
    n = len(index)
    ok = _valid_bits(valid, bit0, n)
    k = np.asarray(index, np.int64)
    if np.any((k[ok] < 0) | (k[ok] >= len(code) - 1)):
        return None
    k = np.where(ok, k, len(code) - 1)
    return code[k], int(np.count_nonzero(~ok)), int(np.count_nonzero(unknown[k] & ok))


# ------------------------------------------------------------------ convolution, pooling
def _pad_nchw(x, pt, pb, pl, pr, value=0.0):
    n, c, h, w = x.shape
    xp = np.full((n, c, h + pt + pb, w + pl + pr), value)
    xp[:, :, pt:pt + h, pl:pl + w] = x
    return xp


def conv2d_forward(x, W, b, stride, padding, dilation, groups, name="identity", alpha=0.0):
    """(y, d) of act(conv2d(x, W) + b), NCHW, padding (top, bottom, left, right): a loop over
    output channels and taps, each tap a strided slice of the zero-padded input."""
    x, W = _f64(x), _f64(W)
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    o, cg, kh, kw = W.shape
    xp = _pad_nchw(x, pt, pb, pl, pr)
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    z = np.zeros((n, o, oh, ow))
    for oc in range(o):
        g = oc // og
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                for ci in range(cg):
                    z[:, oc] += patch[:, ci] * W[oc, ci, i, j]
    if b is not None:
        z += _f64(b)[None, :, None, None]
    return activation(name, z, alpha)


def conv2d_backward(dy, x, W, stride, padding, dilation, groups, d=None):
    """(dx, dW, db) of conv2d given dy (and the activation's local gradient d, if any)."""
    x, W = _f64(x), _f64(W)
    dz = _f64(dy) * (1.0 if d is None else _f64(d))
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    o, cg, kh, kw = W.shape
    oh, ow = dz.shape[2:]
    xp = _pad_nchw(x, pt, pb, pl, pr)
    dxp = np.zeros_like(xp)
    dW = np.zeros_like(W)
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(kh):
            for j in range(kw):
                sl = (slice(None), slice(g * cg, (g + 1) * cg),
                      slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                      slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))
                patch = xp[sl]
                for ci in range(cg):
                    dW[oc, ci, i, j] = (patch[:, ci] * dz[:, oc]).sum()
                dxp[sl] += dz[:, oc][:, None] * W[oc, :, i, j][None, :, None, None]
    dx = dxp[:, :, pt:pt + h, pl:pl + w]
    return dx, dW, dz.sum(axis=(0, 2, 3))


def conv_dz_and_bias_partial(dy, d=None):
    """(dz, partial) of the convolutions' backward step: dz (O, N*P) = dy * d transposed
    from (N, O, P) (dy alone without d) and partial (N, O) = dz's sum over each image's P
    positions, in float64. dz is the product in dy's own dtype (one rounding, as the kernel
    stores it)."""
    n, o, p = dy.shape
    z = dy if d is None else dy * d
    dz = np.ascontiguousarray(z.transpose(1, 0, 2)).reshape(o, n * p)
    return dz, _f64(z).sum(axis=2)


def pool_output_size(size, k, s, p, dil, ceil_mode):
    """PyTorch's pooling_output_shape."""
    out = (size + 2 * p - dil * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool2d(x, k, s, p, dil, ceil_mode=False):
    """(y, dx_of(dy)) of MaxPool2d: each window scanned row by row, the first maximum wins."""
    x = _f64(x)
    n, c, h, w = x.shape
    oh = pool_output_size(h, k[0], s[0], p[0], dil[0], ceil_mode)
    ow = pool_output_size(w, k[1], s[1], p[1], dil[1], ceil_mode)
    y = np.empty((n, c, oh, ow))
    arg = np.empty((n, c, oh, ow, 2), int)
    for a in range(oh):
        for b in range(ow):
            best = np.full((n, c), -np.inf)
            where = np.zeros((n, c, 2), int)
            first = True
            for i in range(k[0]):
                hh = a * s[0] - p[0] + i * dil[0]
                if not 0 <= hh < h:
                    continue
                for j in range(k[1]):
                    ww = b * s[1] - p[1] + j * dil[1]
                    if not 0 <= ww < w:
                        continue
                    v = x[:, :, hh, ww]
                    take = (v > best) | np.isnan(v) | first
                    first = False
                    best = np.where(take, v, best)
                    where[take] = (hh, ww)
            y[:, :, a, b] = best
            arg[:, :, a, b] = where

    def backward(dy):
        dx = np.zeros((n, c, h, w))
        for a in range(oh):
            for b in range(ow):
                for i in range(n):
                    for j in range(c):
                        hh, ww = arg[i, j, a, b]
                        dx[i, j, hh, ww] += dy[i, j, a, b]
        return dx

    return y, backward


def avg_pool2d(x, k, s, p, ceil_mode=False, count_include_pad=True, divisor_override=None):
    """(y, dx_of(dy)) of AvgPool2d with PyTorch's window clipping and divisors."""
    x = _f64(x)
    n, c, h, w = x.shape
    oh = pool_output_size(h, k[0], s[0], p[0], 1, ceil_mode)
    ow = pool_output_size(w, k[1], s[1], p[1], 1, ceil_mode)
    windows = {}
    y = np.zeros((n, c, oh, ow))
    for a in range(oh):
        for b in range(ow):
            h0, w0 = a * s[0] - p[0], b * s[1] - p[1]
            h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
            size = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            if h0 >= h1 or w0 >= w1:
                continue
            div = divisor_override or (size if count_include_pad else (h1 - h0) * (w1 - w0))
            windows[a, b] = (h0, h1, w0, w1, div)
            y[:, :, a, b] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / div

    def backward(dy):
        dx = np.zeros((n, c, h, w))
        for (a, b), (h0, h1, w0, w1, div) in windows.items():
            dx[:, :, h0:h1, w0:w1] += _f64(dy)[:, :, a, b][:, :, None, None] / div
        return dx

    return y, backward


def adaptive_avg_pool2d(x, out_size):
    """(y, dx_of(dy)) of AdaptiveAvgPool2d: windows [floor(o H / O), ceil((o + 1) H / O))."""
    x = _f64(x)
    n, c, h, w = x.shape
    oh, ow = out_size
    y = np.zeros((n, c, oh, ow))
    windows = {}
    for a in range(oh):
        for b in range(ow):
            h0, h1 = math.floor(a * h / oh), math.ceil((a + 1) * h / oh)
            w0, w1 = math.floor(b * w / ow), math.ceil((b + 1) * w / ow)
            windows[a, b] = (h0, h1, w0, w1)
            y[:, :, a, b] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))

    def backward(dy):
        dx = np.zeros((n, c, h, w))
        for (a, b), (h0, h1, w0, w1) in windows.items():
            dx[:, :, h0:h1, w0:w1] += _f64(dy)[:, :, a, b][:, :, None, None] / (
                (h1 - h0) * (w1 - w0))
        return dx

    return y, backward


def _nchw_rows(x):
    """(N, C, H, W) -> (N H W, C): every pixel of every image a row of BatchNorm1d."""
    x = _f64(x)
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def _rows_nchw(r, shape):
    n, c, h, w = shape
    return r.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def batchnorm2d_forward_train(x, gamma, beta, eps, momentum, running_mean, running_var,
                              name="identity", alpha=0.0):
    """BatchNorm2d training forward: BatchNorm1d on the pixels as rows."""
    y, d, rm, rv = batchnorm_forward_train(_nchw_rows(x), gamma, beta, eps, momentum,
                                           running_mean, running_var, name, alpha)
    return _rows_nchw(y, x.shape), _rows_nchw(d, x.shape), rm, rv


def batchnorm2d_backward(dy, x, gamma, eps, name="identity", alpha=0.0, beta=None):
    dx, dg, db = batchnorm_backward(_nchw_rows(dy), _nchw_rows(x), gamma, eps, name, alpha,
                                    beta)
    return _rows_nchw(dx, x.shape), dg, db


def csr_rows_to_dense(data, indices, indptr, rows, shape, dtype):
    """kernels/sparse.py: rows of the CSR matrix (data, indices, indptr) of ``shape``, made
    dense in ``dtype`` one stored value at a time (duplicates summed, as SciPy's toarray)."""
    out = np.zeros((len(rows), shape[1]), np.float64)
    for i, r in enumerate(rows):
        for k in range(indptr[r], indptr[r + 1]):
            out[i, indices[k]] += data[k]
    return out.astype(dtype)


def flip_crop(x, C, H, W, pad, offsets, flips):
    """kernels/augment.flip_crop: torchvision's RandomCrop(padding=pad) then
    RandomHorizontalFlip, written with np.pad and slicing; returns a new (B, C*H*W) array."""
    imgs = x.reshape(-1, C, H, W)
    padded = np.pad(imgs, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.empty_like(imgs)
    for n in range(imgs.shape[0]):
        oy, ox = offsets[n]
        crop = padded[n, :, oy:oy + H, ox:ox + W]
        out[n] = crop[:, :, ::-1] if flips[n] else crop
    return out.reshape(x.shape)


def tabular_input_forward(x, n_continuous, feature, left, width, lower, upper, tables, dtype):
    """kernels/tabular_input.py: the piecewise-linear components of the continuous columns
    (convert to ``dtype``, subtract, divide, clip: NumPy's order) then, for each code column
    j, the rows of ``tables[j]`` at its codes, side by side; returns (out (N, W), codes
    (C, N)). Written with NumPy fancy indexing and concatenate, one part after another."""
    x = np.asarray(x)
    enc = x[:, :n_continuous].astype(dtype)[:, feature]
    enc = np.minimum(np.maximum((enc - left) / width, lower), upper)
    codes = x[:, n_continuous:].T.astype(np.int64)
    parts = [enc] + [np.asarray(t)[c] for t, c in zip(tables, codes, strict=True)]
    return np.concatenate(parts, axis=1).astype(dtype), codes


def ple_linear_forward(x, group_start, left, width, lower, upper, W, bias):
    """kernels/tabular_linear.py: the continuous features' part of a first Linear layer,
    ``bias + V @ W[:T]`` with V (N, T) the written components (each feature's group through
    the encoding's formula in NumPy, float64), and each row's run (leading components equal
    to 1) and the value after it. Returns (z (N, H), runs (N, G), fracs (N, G))."""
    x = np.asarray(x, np.float64)
    n_groups = len(group_start) - 1
    feature = np.repeat(np.arange(n_groups), np.diff(group_start))
    V = np.minimum(np.maximum((x[:, feature] - left) / width, lower), upper)
    n_comp = len(feature)
    runs = np.zeros((len(x), n_groups), np.int64)
    fracs = np.zeros((len(x), n_groups))
    for g in range(n_groups):
        s, e = group_start[g], group_start[g + 1]
        for r in range(len(x)):
            v = V[r, s:e]
            m = 0
            while m < e - s and v[m] == 1:
                m += 1
            runs[r, g] = m
            fracs[r, g] = v[m] if m < e - s else 0.0
    z = np.asarray(bias, np.float64) + V @ np.asarray(W, np.float64)[:n_comp]
    return z, runs, fracs


def ple_linear_backward(x, group_start, left, width, lower, upper, dz):
    """kernels/tabular_linear.py: the weight rows' and the bias's gradients, ``V.T @ dz``
    and ``dz.sum(0)`` with V the written components (float64)."""
    x = np.asarray(x, np.float64)
    feature = np.repeat(np.arange(len(group_start) - 1), np.diff(group_start))
    V = np.minimum(np.maximum((x[:, feature] - left) / width, lower), upper)
    dz = np.asarray(dz, np.float64)
    return V.T @ dz, dz.sum(0)
