"""fastnn's Numba kernels, shipped as ``fastnn.kernels``.

Pure functions on NumPy arrays that compute, in place, into buffers they are handed.
This package never imports ``fastnn``: the Python layer decides what to compute and owns
the buffers; the kernels compute. Inside this package, imports are relative.
"""

from . import (
    activations,
    batchnorm,
    blas,
    conv,
    dense,
    dropout,
    embedding,
    layernorm,
    losses,
    maxout,
    optim,
    pool,
    rows,
)
from ._jit import Kernel, all_kernels

__all__ = ["Kernel", "activations", "all_kernels", "batchnorm", "blas", "conv", "dense", "dropout",
           "embedding", "layernorm", "losses", "maxout", "optim", "pool",
           "rows"]
