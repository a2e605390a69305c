"""Write ``tests/golden/graph_ops.npz``: gradients that a later change must not alter.

Run from the repository root, only when a gradient is *meant* to change:

    uv run python tests/golden/make_golden.py

Every case is gradient-checked first (centred differences), so the file never freezes a
wrong gradient. The test ``tests/test_golden.py`` recomputes each case and compares.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from cases import CASES  # noqa: E402

import fastnn as fnn  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "graph_ops.npz")


def compute(name, inputs):
    fn, _ = CASES[name]
    xs = [fnn.Tensor(x, requires_grad=True) for x in inputs]
    fn(*xs).backward()
    return [x.grad for x in xs]


def main():
    arrays = {}
    for seed, (name, (fn, shapes)) in enumerate(sorted(CASES.items())):
        rng = np.random.default_rng(seed)
        inputs = [rng.uniform(0.2, 1.5, s) * rng.choice([-1.0, 1.0], s) for s in shapes]
        fnn.gradcheck(fn, inputs)
        for i, (x, g) in enumerate(zip(inputs, compute(name, inputs), strict=True)):
            arrays[f"{name}/input{i}"] = x
            arrays[f"{name}/grad{i}"] = g
    np.savez(OUT, **arrays)
    print(f"wrote {len(CASES)} cases to {OUT}")


if __name__ == "__main__":
    main()
