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
from .random import default_generator


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
    rng = generator or default_generator()
    return _fill(t, rng.uniform(a, b, _array(t).shape))


def normal_(t, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with N(mean, std^2)."""
    rng = generator or default_generator()
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


__all__ = [
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]
