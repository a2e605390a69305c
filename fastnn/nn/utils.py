"""PyTorch's ``torch.nn.utils`` paths: gradient clipping and flattening of parameters.

``clip_grad_norm_`` is ``fastnn.optim.clip_grad_norm_`` (one kernel over an optimizer's flat
gradient buffer); this module sits beside the optimizers, and the top-level package imports
it (``fnn.nn.utils``), so that ``fastnn.nn`` itself does not import ``fastnn.optim``.
"""

from __future__ import annotations

import numpy as np

from ..graph import Tensor
from ..optim.optimizers import clip_grad_norm_

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector",
           "vector_to_parameters"]


def _param_list(parameters) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient into [-clip_value, clip_value], in place (PyTorch's
    ``clip_grad_value_``)."""
    clip_value = float(clip_value)
    if not clip_value >= 0:
        raise ValueError(f"clip_grad_value_: clip_value must be non-negative, got {clip_value}")
    for p in _param_list(parameters):
        if p.grad is not None:
            np.clip(p.grad, -clip_value, clip_value, out=p.grad)


def parameters_to_vector(parameters) -> Tensor:
    """All parameters' values as one 1-D Tensor (a copy), in order."""
    params = _param_list(parameters)
    return Tensor(np.concatenate([p.data.ravel() for p in params]), dtype=params[0].dtype)


def vector_to_parameters(vec, parameters) -> None:
    """Copy consecutive slices of ``vec`` into the parameters, in place."""
    v = np.asarray(vec.data if isinstance(vec, Tensor) else vec)
    params = _param_list(parameters)
    total = sum(p.data.size for p in params)
    if v.ndim != 1 or v.size != total:
        raise ValueError(f"vector_to_parameters: vec must be 1-D of length {total} (the "
                         f"parameters' total size), got shape {v.shape}")
    offset = 0
    for p in params:
        p.data[...] = v[offset:offset + p.data.size].reshape(p.data.shape)
        offset += p.data.size
