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
    assert peak < 0.01 * activations, (peak, activations)
    assert np.isfinite(peak)
