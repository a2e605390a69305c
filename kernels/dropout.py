"""Inverted dropout: y = x * mask, mask = (u >= p) / (1 - p) with u ~ U[0, 1).

The uniform numbers ``u`` come from the caller (a seeded NumPy Generator owned by the layer),
so a seed reproduces the masks whatever the thread count. Dividing by 1 - p at training time
keeps E[y] = x, so evaluation is the identity. The mask is the layer's local gradient:
backward is dx = dy * mask (``activations.activation_backward``).

Shapes: flat (n,) arrays.
"""

from __future__ import annotations

from numba import prange

from ._jit import kernel
from ._typed import typed

CHUNK = 4096


@kernel
def dropout_forward(x, u, p, y, mask):
    """mask = (u >= p) / (1 - p) (overwriting ``u`` is allowed: pass it as ``mask``); y = x * mask.

    Parallel over fixed chunks of CHUNK elements (elementwise: any split is exact).
    """
    n = x.shape[0]
    scale = typed(x[0], 1.0 / (1.0 - p))
    zero = typed(x[0], 0.0)
    for c in prange((n + CHUNK - 1) // CHUNK):
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            m = scale if u[i] >= p else zero
            mask[i] = m
            y[i] = x[i] * m
