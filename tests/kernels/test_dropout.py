"""kernels/dropout.py against tests/naive.py."""

import numpy as np

import naive
from fastnn.kernels import dropout


def test_forward_matches_naive_and_mask_may_overwrite_u(dtype, tol):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10007).astype(dtype)
    u = rng.random(10007, dtype=dtype)
    y_ref, mask_ref = naive.dropout_forward(x, u, 0.3)
    y = np.empty_like(x)
    dropout.dropout_forward(x.size)(x, u, 0.3, y, u)  # mask written over the uniforms
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(u, mask_ref, **tol)
    assert abs((u == 0).mean() - 0.3) < 0.02
