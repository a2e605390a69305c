"""Whole training steps of the MLPs of fastnn.bench.MODELS (S, T, M, W64, L), memory and
compile time.

``TrainingStep`` is the graph path (zero_grad, loss.backward(), step); ``CompiledTrainingStep``
is ``fnn.compile_step`` and is skipped where fastnn has none.
"""

import os
import subprocess
import sys

import fastnn as fnn
from fastnn.bench import MODELS, _fastnn_compiled_step, _fastnn_step


class TrainingStep:
    """The graph step (``loss.backward(); opt.step()``) of each bench model."""

    params = list(MODELS)
    param_names = ["model"]
    timeout = 600
    make_step = staticmethod(_fastnn_step)

    def setup(self, name):
        fnn.warmup(dtypes=("float32",), verbose=False)
        self.step = self.make_step(*MODELS[name])
        for _ in range(3):
            self.step()

    def time_step(self, name):
        self.step()

    def peakmem_step(self, name):
        self.step()


class CompiledTrainingStep(TrainingStep):
    """The compiled step (``fnn.compile_step``) of each bench model."""

    make_step = staticmethod(_fastnn_compiled_step)


def track_compile_seconds_cold():
    """Compiling every kernel (both variants, float32) in a fresh process with an empty cache."""
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        code = ("import time, fastnn; t = time.perf_counter(); "
                "fastnn.warmup(dtypes=('float32',), verbose=False); "
                "print(time.perf_counter() - t)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "NUMBA_CACHE_DIR": cache}, check=True)
        return float(out.stdout.strip().splitlines()[-1])


track_compile_seconds_cold.unit = "seconds"
track_compile_seconds_cold.timeout = 600


def track_import_and_first_step_seconds_warm():
    """``import fastnn`` plus the first training step of M, with a warm kernel cache."""
    code = ("import time; t = time.perf_counter(); import fastnn; "
            "from fastnn.bench import MODELS, _fastnn_step; s = _fastnn_step(*MODELS['M']); s(); "
            "print(time.perf_counter() - t)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)  # warm
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


track_import_and_first_step_seconds_warm.unit = "seconds"
