"""Where the time of a training step goes, kernel by kernel.

``profile_step`` runs a model's forward + loss + backward (+ an optional optimizer step)
repeatedly with every kernel entry point of ``fastnn.kernels`` wrapped by a timer, and
reports each one's *exclusive* time (its own time minus that of the kernels it calls: the
exclusive time of ``dense_forward`` is its GEMM, that of ``bias_activation_forward`` the
fused pass). What no kernel accounts for is the Python layer's overhead.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from . import kernels
from . import kernels as _kernels

_MODULES = ("activations", "batchnorm", "blas", "dense", "dropout", "losses", "maxout", "optim")


class _Timer:
    def __init__(self):
        self.exclusive = defaultdict(float)
        self.calls = defaultdict(int)
        self._stack: list[float] = []  # time spent in children, per open frame

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                children = self._stack.pop()
                self.exclusive[name] += elapsed - children
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1] += elapsed

        return timed


class _TimedKernel:
    """Stands in for a :class:`~fastnn.kernels.Kernel`: times the variant it returns."""

    def __init__(self, kernel, name, timer):
        self._kernel, self._name, self._timer = kernel, name, timer

    def __call__(self, work):
        variant = self._kernel(work)
        which = "parallel" if variant is self._kernel.parallel else "serial"
        return self._timer.wrap(f"{self._name} [{which}]", variant)

    def __getattr__(self, attr):
        return getattr(self._kernel, attr)


def profile_step(step: Callable[[], object], repeats: int = 50, warmup: int = 5
                 ) -> dict[str, object]:
    """Time ``step()`` ``repeats`` times with every kernel timed.

    Parameters
    ----------
    step : a function running one training step (forward, loss, backward, update).
    repeats, warmup : timed and untimed (compilation, buffer allocation) runs.

    Returns
    -------
    dict with ``step_ms`` (median of the untimed-instrumentation runs), ``kernels``
    ({name: (ms per step, calls per step)}, largest first) and ``other_ms`` (the step time
    that no kernel accounts for: Python, the graph, NumPy glue).
    """
    for _ in range(warmup):
        step()
    plain = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        plain.append(time.perf_counter() - t0)
    timer = _Timer()
    patched = []
    for mod_name in _MODULES:
        mod = getattr(kernels, mod_name)
        for attr, obj in list(vars(mod).items()):
            if attr.startswith("_") and not isinstance(obj, _kernels.Kernel):
                continue
            name = f"{mod_name}.{attr}"
            if isinstance(obj, _kernels.Kernel):
                patched.append((mod, attr, obj))
                setattr(mod, attr, _TimedKernel(obj, name, timer))
            elif callable(obj) and getattr(obj, "__module__", "") == mod.__name__ \
                    and attr.endswith(("forward", "backward", "_train", "_eval")):
                patched.append((mod, attr, obj))
                setattr(mod, attr, timer.wrap(name, obj))
    try:
        for _ in range(repeats):
            step()
    finally:
        for mod, attr, obj in patched:
            setattr(mod, attr, obj)
    step_ms = float(np.median(plain)) * 1e3
    rows = {k: (v / repeats * 1e3, timer.calls[k] / repeats) for k, v in timer.exclusive.items()}
    rows = dict(sorted(rows.items(), key=lambda kv: -kv[1][0]))
    return {"step_ms": step_ms, "kernels": rows,
            "other_ms": step_ms - sum(ms for ms, _ in rows.values())}


def format_profile(result: dict[str, object]) -> str:
    """A table of :func:`profile_step`'s result."""
    lines = [f"{'kernel (exclusive time)':<48} {'ms/step':>9} {'share':>7} {'calls':>6}"]
    total = result["step_ms"]
    for name, (ms, calls) in result["kernels"].items():
        lines.append(f"{name:<48} {ms:9.3f} {ms / total:7.1%} {calls:6.0f}")
    lines.append(f"{'Python layer, graph, NumPy glue':<48} {result['other_ms']:9.3f} "
                 f"{result['other_ms'] / total:7.1%}")
    lines.append(f"{'whole step (median, uninstrumented)':<48} {total:9.3f}")
    return "\n".join(lines)
