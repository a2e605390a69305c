"""Reusable work arrays, so that a training step in steady state allocates nothing large."""

from __future__ import annotations

import sys

import numpy as np

#: Buffers kept per (role, shape, dtype). Two suffice for a training loop (the previous
#: step's graph is still alive while the next forward runs); a few more cover evaluation
#: interleaved with training.
MAX_PER_KEY = 4

#: Shapes (with their dtype) kept per role; beyond it the least recently used shape's
#: buffers are dropped. A training loop's own shapes fit in four (its batch size, the last,
#: smaller batch, evaluation's batch size and its last batch); eight leave room for the
#: module-wide pools of ``fastnn.nn.functional`` and ``fastnn.losses``, whose roles serve
#: every layer of a model (``F.relu`` after five layers of different widths is five shapes
#: of one role in every step: a bound below what one step uses would allocate on every
#: call). Without a bound, a loop whose batch sizes keep changing (evaluation at other
#: batch sizes, a last partial batch of another size each epoch) kept every size's buffers
#: for good.
MAX_SHAPES_PER_ROLE = 8

# References to a pooled array that ``get`` itself holds while it checks it: the pool's
# list, the loop variable, and getrefcount's own argument.
_POOL_ONLY = 3


def _reuse_is_safe() -> bool:
    """Check, with the interpreter running this process, that :meth:`BufferPool.get` reuses
    a buffer that nobody holds and never one that somebody holds (a variable, a view, a
    container). The rule counts references (``_POOL_ONLY``), and CPython documents that
    counts may change between versions (3.14 borrows references in more places): if this
    interpreter counts differently, pooling is switched off and every ``get`` allocates,
    which is slower but never wrong."""
    pool = BufferPool(_checked=False)
    dtype = np.dtype(np.float64)
    first = pool.get("probe", (2,), dtype)
    first_id = id(first)
    del first
    again = pool.get("probe", (2,), dtype)
    if id(again) != first_id:  # a free buffer was not reused: the count is higher here
        return False
    del again
    for hold in (lambda b: b[:1], lambda b: [b], lambda b: {"k": b}):
        buf = pool.get("probe", (2,), dtype)
        if id(buf) != first_id:  # free again, so it must come back
            return False
        holder = hold(buf)  # the only reference left outside the pool: a view or container
        del buf
        other = pool.get("probe", (2,), dtype)
        if id(other) == first_id:  # handed out while still held: unsafe
            return False
        del holder, other
    return True


class BufferPool:
    """Hands out arrays by (role, shape, dtype), reusing one only when nobody else holds it.

    A buffer is free when its reference count shows that only the pool refers to it: no
    Tensor, no graph closure, no view (a view keeps its base alive) and no user variable.
    So reuse can never overwrite an array that anything can still read.

    Per role, the buffers of at most :data:`MAX_SHAPES_PER_ROLE` shapes are kept, the least
    recently asked for dropped first; per shape at most :data:`MAX_PER_KEY` buffers. Dropping
    a shape drops only the pool's own references: an array that something still holds (a
    graph node, a compiled step's cache between its forward and backward, a user's variable)
    stays alive and valid for its holder, is never handed out again, and is freed when its
    last holder lets go. So the bound lives here rather than in the plans that use a pool
    (``fastnn.compiled``, ``fastnn.nn._chain``): no plan holds a pooled array past the step
    that asked for it, and reference counting, not the plan, keeps a held array alive.
    """

    __slots__ = ("_bufs", "_shapes")

    def __init__(self, _checked: bool = True):
        # (role, shape, dtype) -> buffers, least recently used first (a dict keeps the order
        # of insertion, and ``get`` puts the key it serves back at the end)
        self._bufs: dict[tuple, list[np.ndarray]] | None = {} if (
            not _checked or REUSE_IS_SAFE) else None
        self._shapes: dict[str, int] = {}  # role -> how many of its shapes are kept

    def get(self, role: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` that nobody holds."""
        if self._bufs is None:  # this interpreter failed the reuse check at import
            return np.empty(shape, dtype)
        key = (role, shape, np.dtype(dtype))
        bufs = self._bufs.pop(key, None)  # put back last: the most recently used
        if bufs is None:
            bufs = []
            kept = self._shapes.get(role, 0)
            if kept >= MAX_SHAPES_PER_ROLE:  # drop the role's least recently used shape
                del self._bufs[next(k for k in self._bufs if k[0] == role)]
            else:
                self._shapes[role] = kept + 1
        self._bufs[key] = bufs
        for buf in bufs:
            if sys.getrefcount(buf) <= _POOL_ONLY:
                return buf
        buf = np.empty(shape, dtype)
        if len(bufs) < MAX_PER_KEY:
            bufs.append(buf)
        return buf

    def clear(self) -> None:
        if self._bufs is not None:
            self._bufs.clear()
        self._shapes.clear()

    def nbytes(self) -> int:
        """Bytes held by the pool."""
        return sum(b.nbytes for bufs in (self._bufs or {}).values() for b in bufs)


#: Whether this interpreter passed the reuse check (measured once, at import).
REUSE_IS_SAFE = _reuse_is_safe()
