"""Ahead-of-use compilation of the common kernels (``fnn.warmup()``)."""

from __future__ import annotations

import sys
import time

import numpy as np

from .kernels import activations as _act


def _activation_kernels(dtype) -> None:
    x = np.linspace(-1.0, 1.0, 8, dtype=dtype)
    y, d = np.empty_like(x), np.empty_like(x)
    for k in (_act.activation_forward, _act.activation_backward):
        for variant in (k.serial, k.parallel):
            if k is _act.activation_forward:
                variant(_act.RELU, 0.0, x, y, d)
            else:
                variant(y, d, x.copy())
    x2 = x.reshape(2, 4)
    w = np.full(4, 0.25, dtype=dtype)
    out = np.empty_like(x2)
    for variant in (_act.prelu_forward.serial, _act.prelu_forward.parallel):
        variant(x2, w, out)
    partial = np.empty((1, 4), dtype=dtype)
    for variant in (_act.prelu_backward.serial, _act.prelu_backward.parallel):
        variant(x2, x2, w, out, partial)


#: Each entry compiles one group of kernels for one dtype.
WARMUPS = [_activation_kernels]


def warmup(dtypes=("float32", "float64"), verbose: bool = True) -> float:
    """Compile (or load from the on-disk cache) the kernels that training uses.

    Kernels compile lazily on first use; calling this first moves that cost to a moment of
    the caller's choosing. With a warm cache it takes a fraction of a second.

    Parameters
    ----------
    dtypes : the dtypes to compile for.
    verbose : print how long it took to stderr.

    Returns
    -------
    float
        Seconds taken.
    """
    start = time.perf_counter()
    for dtype in dtypes:
        for fn in WARMUPS:
            fn(np.dtype(dtype))
    seconds = time.perf_counter() - start
    if verbose:
        print(f"fastnn: kernels ready in {seconds:.2f} s", file=sys.stderr)
    return seconds
