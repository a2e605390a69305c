"""PyTorch's ``torch.utils`` paths: ``fastnn.utils.data`` (datasets, samplers, DataLoader)."""

from . import data

__all__ = ["data"]
