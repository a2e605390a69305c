"""Gradients frozen in tests/golden/graph_ops.npz must not change (see make_golden.py)."""

import os
import sys

import numpy as np
import pytest

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")
sys.path.insert(0, GOLDEN_DIR)

from cases import CASES  # noqa: E402
from make_golden import compute  # noqa: E402

GOLDEN = np.load(os.path.join(GOLDEN_DIR, "graph_ops.npz"), allow_pickle=False)


def test_every_case_is_in_the_file():
    stored = {k.split("/")[0] for k in GOLDEN.files}
    assert stored == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_golden(name):
    n = len(CASES[name][1])
    inputs = [GOLDEN[f"{name}/input{i}"] for i in range(n)]
    for i, g in enumerate(compute(name, inputs)):
        np.testing.assert_allclose(g, GOLDEN[f"{name}/grad{i}"], rtol=1e-12, atol=1e-14,
                                   err_msg=f"{name}: gradient of input {i} changed")
