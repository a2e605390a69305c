"""Optimizers (torch.optim's names and update formulas on flat buffers), learning-rate
schedules (``fastnn.optim.lr_scheduler``, as ``torch.optim.lr_scheduler``) and gradient
clipping.

``optimizers`` holds the update rules; ``lr_scheduler`` depends on it and not the other way
round (no import circle).
"""

from . import lr_scheduler
from .optimizers import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    FlatBuffer,
    Optimizer,
    RMSprop,
    clip_grad_norm_,
    clip_grad_value_,
)

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "FlatBuffer", "Optimizer", "RMSprop",
           "clip_grad_norm_", "clip_grad_value_", "lr_scheduler"]
