"""Steady state allocates nothing large: activations and gradients come from reused buffers."""

import tracemalloc

import numpy as np

from fastnn.bench import MODELS, _fastnn_step


def test_steady_state_step_allocates_under_one_percent_of_activation_memory():
    dims, batch, bn = MODELS["M"]  # 784-512-512-10 BN+ReLU, batch 128, Adam
    step = _fastnn_step(dims, batch, bn)
    for _ in range(5):
        step()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(3):
            step()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # Per hidden layer: the output, BatchNorm's x-hat and the local gradient; and the logits.
    activations = sum(batch * d * 4 for d in dims[1:-1]) * 3 + batch * dims[-1] * 4
    # What remains is Python's own objects (graph nodes, closures, small tuples): measured
    # 4-6 KB a step on Python 3.11, 18.6 KB for 3 steps on 3.10. One hidden layer's output
    # alone is 256 KB, so any activation-sized allocation breaks this bound.
    assert peak < 0.02 * activations, (peak, activations)


RUN = """
import resource, sys
from fastnn.cli import main
code = main(["train", "--data", "npz:" + sys.argv[1], "--hidden", "64,64", "--epochs", "1",
             "--batch-size", "512", "--quiet", "--out", sys.argv[2]])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, code)
"""


def _peak_rss(tmp_path, name, X, y):
    import subprocess
    import sys

    path = tmp_path / f"{name}.npz"
    np.savez(path, X=X, y=y)
    out = subprocess.run([sys.executable, "-c", RUN, str(path), str(tmp_path / name)],
                         capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "FASTNN_NO_BYTECODE": "1"})
    peak, code = out.stdout.split()[-2:]
    assert code == "0", out.stderr
    return int(peak)


def test_a_training_run_holds_the_data_about_once(tmp_path):
    """Peak resident memory of `fastnn train` on a table 120 MB in size, less the same run on
    a tiny table (the interpreter, Numba and the model), stays within 1.5x the table: the
    splits are index arrays and standardization is per batch (it was 5x the data before)."""
    rng = np.random.default_rng(0)
    n, d = 300_000, 100
    X = rng.standard_normal((n, d), dtype=np.float32)
    y = rng.integers(0, 5, n)
    big = _peak_rss(tmp_path, "big", X, y)
    small = _peak_rss(tmp_path, "small", X[:3000], y[:3000])
    del X
    print("extra memory over the data:", (big - small) / (n * d * 4))
    assert big - small <= 1.5 * n * d * 4, (big - small) / (n * d * 4)
