"""The global random state: weight initialization and the generators of stochastic layers.

``fnn.manual_seed(s)`` makes everything that follows reproducible: initial weights drawn by
``fnn.init`` and the seeds of the generators that each Dropout / GaussianNoise layer takes
at construction (each layer then owns its generator, so its masks depend only on its seed
and the sequence of its own calls, never on threads or on other layers).
"""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the global generator (weight initialization, new layers' generators)."""
    global _rng
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    _rng = np.random.default_rng(int(seed))


def default_generator() -> np.random.Generator:
    """The global generator (used by ``fnn.init`` when no generator is passed)."""
    return _rng


def new_generator(seed: int | None = None) -> np.random.Generator:
    """A generator of its own for a layer: from ``seed``, or drawn from the global one."""
    if seed is None:
        seed = int(_rng.integers(0, 2**63 - 1))
    return np.random.default_rng(seed)
