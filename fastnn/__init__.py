"""fastnn: fast CPU training of neural networks with Numba kernels and a PyTorch-shaped API.

>>> import fastnn as fnn
>>> x = fnn.Tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([2., 4.], dtype=float32)
"""

from __future__ import annotations

import os as _os

import numpy as _np

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
from typing import TYPE_CHECKING as _TYPE_CHECKING

from . import _functions, autograd, init, losses, nn, optim, utils
from ._dtype import get_default_dtype, set_default_dtype
from ._functions import *  # noqa: F403  (torch-style functions: fnn.sum, fnn.max, ...)
from ._threads import get_num_threads, set_num_threads
from ._warmup import warmup
from .compiled import CompiledStep, NotCompilable, compile_step
from .gradcheck import GradcheckError, GradcheckReport, gradcheck
from .graph import *  # noqa: F403  (Tensor, its functions and factories)
from .graph import __all__ as _graph_all
from .nn import *  # noqa: F403  (layers at top level, as DESIGN.md promises)
from .nn import __all__ as _nn_all
from .nn import utils as _nn_utils  # noqa: F401  (fnn.nn.utils: it imports optim, nn does not)
from .random import Generator, manual_seed
from .viz import draw_graph  # imports graphviz only when a graph is drawn

if _TYPE_CHECKING:  # imported at their first use, see __getattr__
    from .interop import export_onnx, load_safetensors, save_safetensors

__all__ = [  # noqa: PLE0605
    "Generator",
    "GradcheckError",
    "GradcheckReport",
    "__version__",
    "autograd",
    "draw_graph",
    "export_onnx",
    "get_default_dtype",
    "get_num_threads",
    "gradcheck",
    "init",
    "kernels",
    "load_safetensors",
    "losses",
    "manual_seed",
    "nn",
    "optim",
    "CompiledStep",
    "NotCompilable",
    "compile_step",
    "save_safetensors",
    "set_default_dtype",
    "set_num_threads",
    "utils",
    "warmup",
    *_graph_all,
    *_functions.__all__,
    *_nn_all,
]

# dtypes by PyTorch's names (NumPy dtypes: ``x.dtype == fnn.float32`` holds). Not in
# ``__all__``: ``from fastnn import *`` must not shadow the builtins float, int and bool.
float32 = float = _np.dtype("float32")  # noqa: A001
float64 = double = _np.dtype("float64")
int64 = long = _np.dtype("int64")
int32 = int = _np.dtype("int32")  # noqa: A001
uint8 = _np.dtype("uint8")
bool = _np.dtype("bool")  # noqa: A001

def device(type: str = "cpu", index: int | None = None) -> str:
    """PyTorch's ``torch.device(...)`` as a string ("cpu", "cuda:0", ...), so that
    ``device = torch.device("cuda" if torch.cuda.is_available() else "cpu")`` ports: fastnn
    computes on the CPU, and moving a tensor or module to anything else raises."""
    return str(type) if index is None else f"{type}:{index}"


class _Cuda:
    """``fnn.cuda``: there is no GPU; ``is_available()`` is False, as on PyTorch without one."""

    @staticmethod
    def is_available() -> bool:
        return False

    @staticmethod
    def device_count() -> int:
        return 0

    @staticmethod
    def manual_seed(seed: int) -> None:
        """Nothing to seed: fastnn has no GPU generator (``fnn.manual_seed`` seeds fastnn)."""

    manual_seed_all = manual_seed

    def __getattr__(self, name: str):
        raise AttributeError(f"fastnn.cuda has no {name!r}: fastnn computes on the CPU only")


cuda = _Cuda()


def __dir__() -> list[str]:
    return sorted({*globals(), *_INTEROP})

#: What PyTorch has and fastnn does not, with what fastnn offers instead.
_ABSENT = {
    "save": "fastnn saves without pickle: model.state_dict() with numpy.savez, or "
            "fastnn.checkpoint.save_checkpoint",
    "load": "fastnn loads without pickle: numpy.load(..., allow_pickle=False) then "
            "model.load_state_dict, or fastnn.checkpoint.load_checkpoint",
    "compile": "fastnn's kernels are already compiled (Numba); a whole training step "
               "compiles with fnn.compile_step(model, loss_fn, optimizer)",
    "jit": "fastnn's kernels are already compiled (Numba); see fnn.warmup()",
    "float16": "fastnn computes in float32 or float64",
    "half": "fastnn computes in float32 or float64",
    "bfloat16": "fastnn computes in float32 or float64",
    "einsum": "use matmul (@), sum, permute and reshape",
}


#: Public names imported at their first use (``fnn.export_onnx``, ``from fastnn import
#: save_safetensors``): fastnn.interop, the ONNX and safetensors code, is an import that
#: ``fastnn train`` never needs (measured: 20-30 ms compiled from source, 2 ms from a .pyc).
_INTEROP = ("export_onnx", "load_safetensors", "save_safetensors")


def __getattr__(name: str):
    if name == "interop":  # the submodule itself (``fnn.interop.export_onnx``), as before
        import importlib  # (not ``from . import``: that asks this function again)

        return importlib.import_module(f"{__name__}.interop")
    if name in _INTEROP:
        from . import interop

        globals().update({n: getattr(interop, n) for n in _INTEROP})
        return globals()[name]
    from .nn import absent_hint

    hint = _ABSENT.get(name) or absent_hint(name)
    if hint is None:
        raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
    raise AttributeError(f"fastnn has no {name!r}: {hint}")

try:
    __version__ = _version("fastnn")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
