"""fastnn: fast CPU training of neural networks with Numba kernels and a PyTorch-shaped API.

>>> import fastnn as fnn
>>> x = fnn.Tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([2., 4.], dtype=float32)
"""

from __future__ import annotations

import os as _os

from . import kernels

# GEMMs run on Numba's OpenMP pool (kernels/blas.py), so its threads are the only workers and
# may spin between kernels (libgomp's default: a few ms, then sleep); a wake-up per kernel
# would cost more than the kernels of a small step. Only where NumPy's BLAS cannot be called
# that way do GEMMs run on BLAS's own threads; then idle OpenMP threads must sleep, or they
# fight BLAS's for the cores (measured, 784-2048x3-10 MLP at batch 512 on 2 cores: 273 ms a
# step spinning, 181 ms passive). Set before Numba starts its pool (at the first parallel
# kernel, never during import); a user's setting wins.
if not kernels.blas.AVAILABLE:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from . import init, losses, nn, optim
from ._dtype import get_default_dtype, set_default_dtype
from ._threads import get_num_threads, set_num_threads
from ._warmup import warmup
from .gradcheck import GradcheckError, GradcheckReport, gradcheck
from .graph import (
    Tensor,
    activation,
    exp,
    is_grad_enabled,
    log,
    maximum,
    no_grad,
    relu,
    sigmoid,
    tanh,
)
from .interop import export_onnx, load_safetensors, save_safetensors
from .nn import *  # noqa: F403  (layers at top level, as DESIGN.md promises)
from .nn import __all__ as _nn_all
from .random import manual_seed
from .viz import draw_graph  # imports graphviz only when a graph is drawn

__all__ = [  # noqa: PLE0605
    "GradcheckError",
    "GradcheckReport",
    "Tensor",
    "__version__",
    "activation",
    "draw_graph",
    "exp",
    "export_onnx",
    "get_default_dtype",
    "get_num_threads",
    "gradcheck",
    "init",
    "is_grad_enabled",
    "kernels",
    "load_safetensors",
    "log",
    "losses",
    "manual_seed",
    "maximum",
    "nn",
    "optim",
    "no_grad",
    "relu",
    "save_safetensors",
    "set_default_dtype",
    "set_num_threads",
    "sigmoid",
    "tanh",
    "warmup",
    *_nn_all,
]

try:
    __version__ = _version("fastnn")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
