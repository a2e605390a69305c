"""Ahead-of-use compilation of the kernels that training uses (``fnn.warmup()``)."""

from __future__ import annotations

import sys
import time

import numpy as np

from .kernels import all_kernels


def _tiny_training_step(dtype) -> None:
    """One forward/backward through every layer kind and loss, on tiny arrays."""
    from . import losses, nn
    from .graph import Tensor

    model = nn.Sequential(
        nn.Linear(4, 6, dtype=dtype), nn.BatchNorm1d(6, dtype=dtype), nn.ReLU(),
        nn.Dropout(0.1, seed=0), nn.Linear(6, 6, activation="gelu", dtype=dtype),
        nn.LayerNorm(6, dtype=dtype), nn.ReLU(),
        nn.PReLU(6, dtype=dtype), nn.Maxout(6, 3, pieces=2, dtype=dtype),
    )
    x = Tensor(np.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4), requires_grad=True)
    out = model(x) + nn.Embedding(4, 3, dtype=dtype)(np.array([0, 3, 1]))
    labels = np.array([0, 1, 2])
    zeros = np.zeros_like(out.data)
    loss = (losses.cross_entropy(out, labels) + losses.multiclass_hinge(out, labels)
            + losses.mse_loss(out, zeros) + losses.l1_loss(out, zeros)
            + losses.huber_loss(out, zeros)
            + losses.binary_cross_entropy_with_logits(out, zeros))
    loss = loss + nn.Sigmoid()(out).sum()
    loss.backward()
    model.eval()
    model(x)


def cache_is_warm() -> bool:
    """Whether the on-disk kernel cache holds the training kernels (a cheap file check)."""
    import os

    from .kernels import dense, optim

    def cached(dispatcher) -> bool:
        cache = getattr(dispatcher, "_cache", None)
        index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
        return index is not None and os.path.exists(index)

    # A run uses the serial or the parallel variant of a kernel by the size of its work:
    # either one cached counts (checking only one said "compiling" on every warm run).
    return all(cached(k.serial) or cached(k.parallel)
               for k in (dense.bias_activation_forward, dense.dz_and_bias_grad,
                         optim.adam_step))


def announce_compilation(stream=None) -> None:
    """Say so before a cold kernel cache makes the first step slow."""
    if not cache_is_warm():
        print("fastnn: compiling the kernels for the first time (about half a minute; they "
              "are cached on disk for later runs)", file=stream or sys.stderr, flush=True)


def warmup(dtypes=("float32", "float64"), verbose: bool = True) -> float:
    """Compile (or load from the on-disk cache) the kernels that training uses.

    Kernels compile lazily on first use; calling this first moves that cost to a moment of
    the caller's choosing. Both the serial and the parallel variant of every kernel are
    compiled. With a warm cache it takes a fraction of a second.

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
    kernels = all_kernels()
    thresholds = [k.min_parallel for k in kernels]
    try:
        for dtype in dtypes:
            for min_parallel in (1 << 62, 0):  # serial variants, then parallel ones
                for k in kernels:
                    k.min_parallel = min_parallel
                _tiny_training_step(np.dtype(dtype))
    finally:
        for k, t in zip(kernels, thresholds, strict=True):
            k.min_parallel = t
    seconds = time.perf_counter() - start
    if verbose:
        print(f"fastnn: kernels ready in {seconds:.2f} s", file=sys.stderr)
    return seconds
