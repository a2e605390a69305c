"""Layers and containers with PyTorch's names (``fnn.nn``, also re-exported as ``fnn``)."""

from .. import init  # noqa: F401  (fnn.nn.init, as torch.nn.init)
from ..losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    MultiClassHingeLoss,
    NLLLoss,
    SmoothL1Loss,
)
from . import (
    _chain,  # noqa: F401  (registers Sequential's chain of Linear layers)
    _torch_layout,  # noqa: F401  (load_state_dict(layout="torch"), from_torch)
    functional,  # noqa: F401  (fnn.nn.functional)
)
from .conv import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    Dropout2d,
    MaxPool2d,
    Unflatten,
)
from .layers import (
    ELU,
    GELU,
    BatchNorm1d,
    Dropout,
    Embedding,
    Flatten,
    GaussianNoise,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    LogSoftmax,
    Maxout,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Swish,
    Tanh,
    make_activation,
)
from .module import Module, ModuleDict, ModuleList, Parameter, Sequential
from .numeric_encoding import PiecewiseLinearEncoding, quantile_bins
from .tabular import TabularMLP

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "Dropout2d",
    "MaxPool2d",
    "Unflatten",
    "ELU",
    "GELU",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "PiecewiseLinearEncoding",
    "quantile_bins",
    "Flatten",
    "GaussianNoise",
    "HuberLoss",
    "Identity",
    "L1Loss",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "Maxout",
    "Module",
    "ModuleDict",
    "ModuleList",
    "MultiClassHingeLoss",
    "NLLLoss",
    "PReLU",
    "Parameter",
    "ReLU",
    "Sequential",
    "SiLU",
    "SmoothL1Loss",
    "Softmax",
    "Softplus",
    "Sigmoid",
    "Swish",
    "TabularMLP",
    "Tanh",
    "make_activation",
]

#: Layers PyTorch has and fastnn does not, with what fastnn offers instead.
_ABSENT_LAYERS = {
    **dict.fromkeys(
        ["Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "MaxPool1d",
         "MaxPool3d", "AvgPool1d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveMaxPool2d",
         "Unfold", "Fold", "Upsample"],
        "fastnn has no convolution or pooling layers but Conv2d, Conv1d, MaxPool2d, "
        "AvgPool2d, AdaptiveAvgPool2d, BatchNorm2d and Dropout2d (NCHW); Flatten turns "
        "images into rows"),
    **dict.fromkeys(
        ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"],
        "fastnn has no recurrent layers; it trains multilayer perceptrons (Linear, "
        "Embedding, LayerNorm, ...)"),
    **dict.fromkeys(
        ["Transformer", "TransformerEncoder", "TransformerDecoder", "TransformerEncoderLayer",
         "TransformerDecoderLayer", "MultiheadAttention"],
        "fastnn has no attention layers; build one from Linear, LayerNorm, fnn.softmax and "
        "matmul (@)"),
    **dict.fromkeys(
        ["BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "GroupNorm",
         "SyncBatchNorm"],
        "fastnn has BatchNorm1d (inputs (N, C) or (N, C, L)), BatchNorm2d and LayerNorm; "
        "for synchronized batch statistics see fastnn.distributed (sync_batchnorm=True)"),
    **dict.fromkeys(["Dropout1d", "Dropout3d", "AlphaDropout"],
                    "fastnn has Dropout (elementwise), Dropout2d (channels) and GaussianNoise"),
    "DataParallel": "fastnn trains data-parallel over MPI: fastnn.distributed",
    "parallel": "fastnn trains data-parallel over MPI: fastnn.distributed",
    "KLDivLoss": "fastnn's losses are in fastnn.losses (cross_entropy, nll_loss, mse_loss, "
                 "l1_loss, huber_loss, smooth_l1_loss, binary_cross_entropy(_with_logits))",
    "MultiMarginLoss": "fastnn has MultiClassHingeLoss (summed over classes, not divided by C)",
    "Bilinear": "use Linear on concatenated inputs (fnn.cat)",
    "utils": "clipping is fnn.optim.clip_grad_norm_; data loading is fastnn.data",
}


def absent_hint(name: str) -> str | None:
    """What fastnn offers instead of the PyTorch layer ``name``, or None if it is unknown."""
    return _ABSENT_LAYERS.get(name)


def __getattr__(name: str):
    hint = _ABSENT_LAYERS.get(name)
    if hint is None:
        raise AttributeError(f"module 'fastnn.nn' has no attribute {name!r}")
    raise AttributeError(f"fastnn.nn has no {name!r}: {hint}")
