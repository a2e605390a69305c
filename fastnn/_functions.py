"""Functional forms of Tensor methods, with PyTorch's names: ``fnn.sum(x, dim)``,
``fnn.max(x, dim)``, ``fnn.argmax``, ``fnn.var``, ``fnn.matmul``, ...

They live apart from ``graph.py`` because several of them (``sum``, ``max``, ``min``,
``abs``, ``pow``) are names of Python builtins that ``graph.py`` itself uses.
"""

from __future__ import annotations

import numpy as np

from .graph import Tensor


def _as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _method(name: str, doc: str):
    def fn(input, *args, **kwargs):
        return getattr(_as_tensor(input), name)(*args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


sum = _method("sum", "``input.sum(dim, keepdim)``.")  # noqa: A001
mean = _method("mean", "``input.mean(dim, keepdim)``.")
var = _method("var", "``input.var(dim, unbiased, keepdim, correction=)`` (unbiased default).")
std = _method("std", "``input.std(dim, unbiased, keepdim, correction=)`` (unbiased default).")
amax = _method("amax", "``input.amax(dim, keepdim)``.")
amin = _method("amin", "``input.amin(dim, keepdim)``.")
argmax = _method("argmax", "``input.argmax(dim=None, keepdim=False)``.")
argmin = _method("argmin", "``input.argmin(dim=None, keepdim=False)``.")
logsumexp = _method("logsumexp", "``input.logsumexp(dim, keepdim)``.")
sort = _method("sort", "``input.sort(dim=-1, descending=False)``: (values, indices).")
topk = _method("topk", "``input.topk(k, dim=-1, largest=True)``: (values, indices).")
reshape = _method("reshape", "``input.reshape(shape)``.")
flatten = _method("flatten", "``input.flatten(start_dim=0, end_dim=-1)``.")
unsqueeze = _method("unsqueeze", "``input.unsqueeze(dim)``.")
squeeze = _method("squeeze", "``input.squeeze(dim=None)``.")
transpose = _method("transpose", "``input.transpose(dim0, dim1)``.")
permute = _method("permute", "``input.permute(dims)``.")
split = _method("split", "``input.split(split_size_or_sections, dim=0)``.")
chunk = _method("chunk", "``input.chunk(chunks, dim=0)``.")
isnan = _method("isnan", "``input.isnan()``.")
isfinite = _method("isfinite", "``input.isfinite()``.")
abs = _method("abs", "``input.abs()``: |x|, gradient sign(x).")  # noqa: A001
square = _method("square", "``input.square()``.")
reciprocal = _method("reciprocal", "``input.reciprocal()``.")
rsqrt = _method("rsqrt", "``input.rsqrt()``.")
log1p = _method("log1p", "``input.log1p()``.")
expm1 = _method("expm1", "``input.expm1()``.")
sin = _method("sin", "``input.sin()``.")
cos = _method("cos", "``input.cos()``.")
sign = _method("sign", "``input.sign()`` (gradient 0).")
round = _method("round", "``input.round()`` (gradient 0).")  # noqa: A001
floor = _method("floor", "``input.floor()`` (gradient 0).")
ceil = _method("ceil", "``input.ceil()`` (gradient 0).")
cumsum = _method("cumsum", "``input.cumsum(dim)``.")
prod = _method("prod", "``input.prod(dim=None, keepdim=False)``.")
norm = _method("norm", "``input.norm(p=2, dim=None, keepdim=False)``.")
narrow = _method("narrow", "``input.narrow(dim, start, length)``.")
index_select = _method("index_select", "``input.index_select(dim, index)``.")
gather = _method("gather", "``input.gather(dim, index)``.")
nonzero = _method("nonzero", "``input.nonzero()``: (count, ndim) int64 indices.")


def max(input, dim=None, keepdim: bool = False):  # noqa: A001
    """``torch.max``: the largest element; ``(values, indices)`` along ``dim``; or the
    elementwise maximum of two tensors."""
    return _as_tensor(input).max(dim, keepdim)


def min(input, dim=None, keepdim: bool = False):  # noqa: A001
    """``torch.min``: see :func:`max`."""
    return _as_tensor(input).min(dim, keepdim)


def matmul(input, other) -> Tensor:
    """``input @ other``."""
    return _as_tensor(input) @ other


def mm(input, other) -> Tensor:
    """The product of two matrices."""
    return _as_tensor(input).mm(other)


def pow(input, exponent):  # noqa: A001
    """``input ** exponent`` (either may be a number)."""
    if isinstance(input, Tensor):
        return input**exponent
    return _as_tensor(exponent).__rpow__(input)


def equal(input, other) -> bool:
    """True when both have the same shape and values (``torch.equal``)."""
    return _as_tensor(input).equal(other)


def allclose(input, other, rtol: float = 1e-05, atol: float = 1e-08,
             equal_nan: bool = False) -> bool:
    """Whether |input - other| <= atol + rtol |other| everywhere (``torch.allclose``)."""
    a = input.data if isinstance(input, Tensor) else np.asarray(input)
    b = other.data if isinstance(other, Tensor) else np.asarray(other)
    return bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


__all__ = ["abs", "allclose", "amax", "amin", "argmax", "argmin", "ceil", "chunk", "cos",
           "cumsum", "equal", "expm1", "flatten", "floor", "gather", "index_select", "isfinite",
           "isnan", "log1p", "logsumexp", "matmul", "max", "mean", "min", "mm", "narrow",
           "nonzero", "norm", "permute", "pow", "prod", "reciprocal", "reshape", "round",
           "rsqrt", "sign", "sin", "sort", "split", "square", "squeeze", "std", "sum", "topk",
           "transpose", "unsqueeze", "var"]
