"""Reusable work arrays, so that a training step in steady state allocates nothing large."""

from __future__ import annotations

import sys

import numpy as np

#: Buffers kept per (role, shape, dtype). Two suffice for a training loop (the previous
#: step's graph is still alive while the next forward runs); a few more cover evaluation
#: interleaved with training.
MAX_PER_KEY = 4

# References to a pooled array that ``get`` itself holds while it checks it: the pool's
# list, the loop variable, and getrefcount's own argument.
_POOL_ONLY = 3


class BufferPool:
    """Hands out arrays by (role, shape, dtype), reusing one only when nobody else holds it.

    A buffer is free when its reference count shows that only the pool refers to it: no
    Tensor, no graph closure, no view (a view keeps its base alive) and no user variable.
    So reuse can never overwrite an array that anything can still read.
    """

    __slots__ = ("_bufs",)

    def __init__(self):
        self._bufs: dict[tuple, list[np.ndarray]] = {}

    def get(self, role: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` that nobody holds."""
        key = (role, shape, np.dtype(dtype))
        bufs = self._bufs.get(key)
        if bufs is None:
            bufs = self._bufs[key] = []
        for buf in bufs:
            if sys.getrefcount(buf) <= _POOL_ONLY:
                return buf
        buf = np.empty(shape, dtype)
        if len(bufs) < MAX_PER_KEY:
            bufs.append(buf)
        return buf

    def clear(self) -> None:
        self._bufs.clear()

    def nbytes(self) -> int:
        """Bytes held by the pool."""
        return sum(b.nbytes for bufs in self._bufs.values() for b in bufs)
