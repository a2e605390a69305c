"""Layers and containers with PyTorch's names (``fnn.nn``, also re-exported as ``fnn``)."""

from ..losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, MultiClassHingeLoss
from .layers import (
    ELU,
    GELU,
    BatchNorm1d,
    Dropout,
    GaussianNoise,
    Identity,
    LeakyReLU,
    Linear,
    Maxout,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Swish,
    Tanh,
    make_activation,
)
from .module import Module, Parameter, Sequential

__all__ = [
    "ELU",
    "GELU",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "CrossEntropyLoss",
    "Dropout",
    "GaussianNoise",
    "Identity",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "Maxout",
    "Module",
    "MultiClassHingeLoss",
    "PReLU",
    "Parameter",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Swish",
    "Tanh",
    "make_activation",
]
