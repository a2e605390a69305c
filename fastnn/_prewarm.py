"""A cold start compiles on two cores: a helper process compiles the run's kernels too.

Numba compiles one kernel at a time per process (one compiler lock, the GIL held for most
of it), so on a cold kernel cache the first training step of ``fastnn train`` kept one core
busy for about 30 s of CPU time while the other idled. :func:`start` launches a helper
process that builds the same model (from :func:`fastnn.interop.architecture`'s JSON, fresh
weights), the same loss and optimizer kind, and runs a few steps on a tiny batch: first
with every kernel's parallel variant (the expensive ones to compile: parfor lowering), then
the serial ones, then the compiled step and evaluation. Both processes compile under
:func:`fastnn.kernels.share_compilation`'s per-kernel file locks, so each kernel is compiled
once, by whichever process gets to it first, and the other loads it from the disk cache.
The helper changes nothing of the run: it trains a throwaway model on made-up numbers, and
its only output is the kernel cache, which is keyed by the kernels' code and types alone.
:func:`stop` ends it when the run no longer needs it.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np


def start(model, loss_fn, optimizer, n_inputs: int) -> int | None:
    """Launch the helper for ``model`` (a Sequential of fastnn layers taking ``n_inputs``
    features), ``loss_fn`` (one of :mod:`fastnn.losses`' functions) and ``optimizer``'s
    kind; returns its process id, or None where it cannot help (a model
    :func:`fastnn.interop.architecture` does not describe, no ``posix_spawn``/``flock``).
    Turns on compile sharing in this process."""
    from .interop import UnsupportedLayerError, architecture
    from .kernels._jit import share_compilation

    try:
        import fcntl  # noqa: F401  (the locks need it)

        spec = {"architecture": architecture(model),
                "loss": getattr(loss_fn, "__name__", ""),
                "optimizer": type(optimizer).__name__,
                "dtype": np.dtype(next(iter(model.parameters())).dtype).name,
                "n_inputs": int(n_inputs)}
    except (ImportError, UnsupportedLayerError, StopIteration, AttributeError, TypeError):
        return None
    share_compilation(True)
    env = {**os.environ, "FASTNN_SHARE_COMPILATION": "1", "FASTNN_NO_BYTECODE": "1"}
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        return os.posix_spawn(sys.executable,
                              [sys.executable, "-m", "fastnn._prewarm", json.dumps(spec)], env,
                              file_actions=[(os.POSIX_SPAWN_DUP2, devnull, fd)
                                            for fd in (0, 1, 2)])
    except (OSError, AttributeError):
        share_compilation(False)
        return None
    finally:
        os.close(devnull)


def stop(pid: int | None) -> None:
    """End the helper (if it is still compiling, nothing of this run needs it any more)."""
    if pid is None:
        return
    from .kernels._jit import share_compilation

    share_compilation(False)
    try:
        os.kill(pid, signal.SIGTERM)  # its cache files are written by rename: never torn
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _steps(spec: dict) -> None:
    """The helper's work: a few steps of a model like the run's on made-up data."""
    from . import losses, optim
    from .compiled import NotCompilable, compile_step
    from .graph import no_grad
    from .interop import build_architecture
    from .kernels import all_kernels
    from .train import graph_step

    dtype = np.dtype(spec["dtype"])
    model = build_architecture(spec["architecture"])
    loss_fn = getattr(losses, spec["loss"], None) or losses.cross_entropy
    optimizer = getattr(optim, spec["optimizer"], optim.Adam)(model.parameters(), lr=1e-3)
    x = np.linspace(-1.0, 1.0, 4 * spec["n_inputs"], dtype=dtype).reshape(4, -1)
    out_features = model(x).shape[1]
    if loss_fn in (losses.cross_entropy, losses.multiclass_hinge):
        y = np.arange(4, dtype=np.int64) % out_features
    else:
        y = np.zeros((4, out_features), dtype)
    kernels = all_kernels()
    thresholds = [k.min_parallel for k in kernels]
    try:
        for min_parallel in (0, 1 << 62):  # the parallel variants first: they cost the most
            for k in kernels:
                k.min_parallel = min_parallel
            graph_step(model, loss_fn, optimizer, x, y)
            model.eval()
            with no_grad():
                model(x)
            model.train()
    finally:
        for k, t in zip(kernels, thresholds, strict=True):
            k.min_parallel = t
    try:
        compile_step(model, loss_fn, optimizer)(x, y)
    except NotCompilable:
        pass


if __name__ == "__main__":
    _steps(json.loads(sys.argv[1]))
