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


class Generator:
    """A random generator of its own, PyTorch's ``torch.Generator``: ``manual_seed(s)``
    (returns the generator, so ``fnn.Generator().manual_seed(42)`` reads as in PyTorch),
    ``seed()``, ``initial_seed()``, ``get_state()`` / ``set_state()``.

    Pass it as ``generator=`` to ``fnn.utils.data.random_split``, ``DataLoader``, the
    samplers, ``fnn.randn`` / ``randperm`` and ``fnn.init``. It draws with NumPy's PCG64, so
    a seed gives the same numbers on every run and thread count, but not PyTorch's numbers
    (PyTorch draws with Mersenne Twister): a split is reproducible within fastnn, not equal to
    PyTorch's split for the same seed.

    Parameters
    ----------
    device : only ``"cpu"`` (fastnn computes on the CPU).
    """

    def __init__(self, device: str = "cpu"):
        name = str(device)
        if name != "cpu" and not name.startswith("cpu:"):
            raise ValueError(f"Generator(device={name!r}): fastnn computes on the CPU only "
                             "('cpu')")
        self.device = "cpu"
        self._initial = int(np.random.SeedSequence().entropy % (2**63))
        self._rng = np.random.default_rng(self._initial)

    def manual_seed(self, seed: int) -> Generator:
        """Seed the generator (a non-negative integer); returns the generator."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"Generator.manual_seed: seed must be a non-negative integer, "
                             f"got {seed!r}")
        self._initial = int(seed)
        self._rng = np.random.default_rng(self._initial)
        return self

    def seed(self) -> int:
        """Seed from fresh entropy (not reproducible); returns the seed used."""
        self._initial = int(np.random.SeedSequence().entropy % (2**63))
        self._rng = np.random.default_rng(self._initial)
        return self._initial

    def initial_seed(self) -> int:
        """The seed the generator was last seeded with."""
        return self._initial

    def get_state(self) -> dict:
        """The generator's state (NumPy's bit-generator state, a dict)."""
        return self._rng.bit_generator.state

    def set_state(self, state: dict) -> Generator:
        """Restore a state from :meth:`get_state`; returns the generator."""
        self._rng.bit_generator.state = state
        return self

    @property
    def numpy(self) -> np.random.Generator:
        """The NumPy Generator that draws the numbers."""
        return self._rng

    def __repr__(self) -> str:
        return f"fastnn.Generator(initial_seed={self._initial})"


def numpy_generator(generator=None) -> np.random.Generator:
    """The NumPy Generator behind ``generator``: a :class:`Generator`, a NumPy Generator,
    or None for the global one (``fnn.manual_seed``)."""
    if generator is None:
        return _rng
    if isinstance(generator, Generator):
        return generator._rng
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator must be a fastnn.Generator, a numpy.random.Generator or None, "
                    f"got {type(generator).__name__}")
