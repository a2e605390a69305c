"""Weight initializers, in place, with torch.nn.init's names, gains and formulas.

fastnn stores a Linear weight as (in_features, out_features) (y = x @ W + b), the transpose
of PyTorch's (out_features, in_features). So for a 2-D weight here ``fan_in = shape[0]`` and
``fan_out = shape[1]``; the resulting distributions equal PyTorch's for the same layer.
Every function takes a Tensor/Parameter or an ndarray, fills it in place and returns it;
random ones draw from ``generator`` or the global one (``fnn.manual_seed``).
"""

from __future__ import annotations

import math

import numpy as np

from .graph import Tensor
from .random import numpy_generator


def _array(t) -> np.ndarray:
    arr = t.data if isinstance(t, Tensor) else t
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"init: expected a Tensor or ndarray, got {type(t).__name__}")
    return arr


def _fill(t, values) -> object:
    _array(t)[...] = values
    return t


def calculate_fan_in_and_fan_out(t) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: a 2-D (Linear) weight is stored as (in, out); a
    convolution's weight (out, in / groups, *kernel) in PyTorch's layout, as PyTorch counts it
    (fan_in = in / groups * receptive field)."""
    shape = _array(t).shape
    if len(shape) < 2:
        raise ValueError(
            f"fan in and fan out need a weight of at least 2 dimensions, got shape {shape}"
        )
    if len(shape) > 2:
        receptive = int(np.prod(shape[2:]))
        return shape[1] * receptive, shape[0] * receptive
    return shape[0], shape[1]


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch.nn.init.calculate_gain: the recommended gain for a nonlinearity."""
    linear = ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv3d")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity!r}")


def _fan(t, mode: str) -> int:
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")


def uniform_(t, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with U(a, b)."""
    rng = numpy_generator(generator)
    return _fill(t, rng.uniform(a, b, _array(t).shape))


def normal_(t, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with N(mean, std^2)."""
    rng = numpy_generator(generator)
    return _fill(t, rng.normal(mean, std, _array(t).shape))


def constant_(t, val: float):
    """Fill with ``val``."""
    return _fill(t, val)


def zeros_(t):
    """Fill with 0."""
    return _fill(t, 0.0)


def ones_(t):
    """Fill with 1."""
    return _fill(t, 1.0)


def xavier_uniform_(t, gain: float = 1.0, generator=None):
    """Glorot: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -a, a, generator)


def xavier_normal_(t, gain: float = 1.0, generator=None):
    """Glorot: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def kaiming_uniform_(t, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None):
    """He: U(-bound, bound), bound = sqrt(3) * gain / sqrt(fan), gain = calculate_gain(nl, a)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(t, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None):
    """He: N(0, std^2), std = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode))
    return normal_(t, 0.0, std, generator)


def trunc_normal_(t, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator=None):
    """Fill with N(mean, std^2) truncated to [a, b] (``a``, ``b`` absolute bounds, as in
    PyTorch): PyTorch's inverse-CDF method, u ~ U(2 Phi(alpha) - 1, 2 Phi(beta) - 1),
    x = mean + std sqrt(2) erfinv(u), clamped to [a, b]; alpha, beta = (a, b - mean) / std."""
    from scipy.special import erfinv

    if std <= 0 or not a < b:
        raise ValueError(f"trunc_normal_: need std > 0 and a < b, got std={std}, a={a}, b={b}")
    arr = _array(t)

    def norm_cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    lo, hi = norm_cdf((a - mean) / std), norm_cdf((b - mean) / std)
    u = numpy_generator(generator).uniform(2 * lo - 1, 2 * hi - 1, arr.shape)
    values = np.clip(mean + std * math.sqrt(2.0) * erfinv(u), a, b)
    return _fill(t, values)


def orthogonal_(t, gain: float = 1.0, generator=None):
    """Fill a 2-D weight with a (semi-)orthogonal matrix times ``gain`` (Saxe et al.),
    PyTorch's construction: QR of a normal matrix, Q's columns signed by diag(R).

    PyTorch builds its (out, in) weight; fastnn's is (in, out), its transpose, so the
    matrix drawn is PyTorch's, transposed: for in >= out the columns are orthonormal
    (W^T W = I), otherwise the rows (W W^T = I). Weights of more than 2 dimensions
    (convolutions, whose layout fastnn's init does not assume) raise NotImplementedError.
    """
    arr = _array(t)
    if arr.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if arr.ndim > 2:
        raise NotImplementedError(
            f"orthogonal_ of a {arr.ndim}-D weight: fastnn's init fills 2-D (in, out) "
            "weights; convolution weights are not supported here yet")
    n_in, n_out = arr.shape
    rows, cols = n_out, n_in  # PyTorch's (out, in) weight
    flat = numpy_generator(generator).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(t, gain * q.T)  # back to fastnn's (in, out)


def eye_(t):
    """Fill a 2-D weight with the identity (ones on the diagonal): y = x @ W passes the first
    min(in, out) inputs through, as PyTorch's ``eye_`` on its (out, in) weight does."""
    arr = _array(t)
    if arr.ndim != 2:
        raise ValueError(f"Only tensors with 2 dimensions are supported, got shape {arr.shape}")
    return _fill(t, np.eye(*arr.shape))


def dirac_(t, groups: int = 1):
    """Fill a 3-, 4- or 5-D convolution weight with the Dirac delta (the convolution passes
    its input channels through), PyTorch's formula on PyTorch's convolution layout
    (out_channels, in_channels / groups, *kernel): for each group g and channel
    d < min(out / groups, in), weight[g * out_per_group + d, d, centre of the kernel] = 1."""
    arr = _array(t)
    if arr.ndim not in (3, 4, 5):
        raise ValueError(f"Only tensors with 3, 4, or 5 dimensions are supported, got shape "
                         f"{arr.shape} (dirac_ fills convolution weights)")
    out_ch = arr.shape[0]
    if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0 \
            or out_ch % groups:
        raise ValueError(f"dim 0 must be divisible by groups, got shape {arr.shape} and "
                         f"groups={groups!r}")
    per_group = out_ch // groups
    arr[...] = 0
    centre = tuple(k // 2 for k in arr.shape[2:])
    for g in range(groups):
        for d in range(min(per_group, arr.shape[1])):
            arr[(g * per_group + d, d, *centre)] = 1
    return t


def sparse_(t, sparsity: float, std: float = 0.01, generator=None):
    """Fill a 2-D weight with N(0, std^2) and zero a fraction ``sparsity`` of each input's
    weights (Martens 2010), PyTorch's formula: in each column of PyTorch's (out, in) weight,
    ceil(sparsity * out) entries are zero; fastnn's (in, out) weight is its transpose, so
    each row here (an input feature) has that many zeros among its ``out`` entries."""
    arr = _array(t)
    if arr.ndim != 2:
        raise ValueError(f"Only tensors with 2 dimensions are supported, got shape {arr.shape}")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparse_: sparsity must be in [0, 1], got {sparsity!r}")
    n_in, n_out = arr.shape
    rng = numpy_generator(generator)
    values = rng.normal(0.0, std, (n_in, n_out))
    n_zeros = int(math.ceil(sparsity * n_out))
    for i in range(n_in):
        values[i, rng.permutation(n_out)[:n_zeros]] = 0.0
    return _fill(t, values)


__all__ = [
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "constant_",
    "dirac_",
    "eye_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "orthogonal_",
    "sparse_",
    "trunc_normal_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]
