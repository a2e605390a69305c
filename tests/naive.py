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
