"""fastnn/_buffers.py: reuse only what nobody holds, and a check at import that switches
pooling off on an interpreter that counts references differently."""

import numpy as np

from fastnn import _buffers
from fastnn._buffers import BufferPool


def test_reuse_only_when_free():
    pool = BufferPool()
    a = pool.get("x", (3,), np.float32)
    a_id = id(a)
    b = pool.get("x", (3,), np.float32)
    assert b is not a  # a is held
    del a
    assert id(pool.get("x", (3,), np.float32)) == a_id
    view = b[1:]
    del b
    c = pool.get("x", (3,), np.float32)
    assert c.base is None and not np.shares_memory(c, view)


def test_this_interpreter_passes_the_check():
    assert _buffers.REUSE_IS_SAFE and _buffers._reuse_is_safe()


def test_an_interpreter_that_counts_differently_fails_the_check(monkeypatch):
    # Counting one reference fewer than this interpreter does: a held buffer would be
    # handed out again. Counting one more: a free one would never come back. Both fail.
    for wrong in (_buffers._POOL_ONLY + 1, _buffers._POOL_ONLY - 1):
        monkeypatch.setattr(_buffers, "_POOL_ONLY", wrong)
        assert not _buffers._reuse_is_safe()


def test_without_reuse_every_get_allocates(monkeypatch):
    monkeypatch.setattr(_buffers, "REUSE_IS_SAFE", False)
    pool = BufferPool()
    a = pool.get("x", (2,), np.float64)
    a_id = id(a)
    del a
    b = pool.get("x", (2,), np.float64)
    assert b.shape == (2,) and pool.nbytes() == 0
    del b
    assert isinstance(pool.get("x", (2,), np.float64), np.ndarray) and a_id is not None
