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


def test_many_shapes_keep_at_most_a_few_per_role():
    pool = BufferPool()
    bound = _buffers.MAX_SHAPES_PER_ROLE
    hot = pool.get("x", (100, 4), np.float32)
    hot_id = id(hot)
    del hot
    for n in range(1, 3 * bound):  # the batch size keeps changing
        assert id(pool.get("x", (100, 4), np.float32)) == hot_id  # used every time: kept
        pool.get("x", (n, 4), np.float32)
        pool.get("y", (n,), np.float64)
        roles = [key[0] for key in pool._bufs]
        assert roles.count("x") <= bound and roles.count("y") <= bound
    newest = range(3 * bound - bound, 3 * bound)  # the last shapes of y are the ones kept
    assert {key[1] for key in pool._bufs if key[0] == "y"} == {(n,) for n in newest}
    assert pool.nbytes() == 100 * 4 * 4 + sum(16 * n for n in range(2 * bound + 1, 3 * bound)) \
        + sum(8 * n for n in newest)


def test_a_dropped_shape_stays_with_whoever_holds_it():
    pool = BufferPool()
    held = pool.get("x", (3,), np.float64)
    held[:] = 7.0
    for n in range(4, 4 + 2 * _buffers.MAX_SHAPES_PER_ROLE):  # (3,) is dropped from the pool
        pool.get("x", (n,), np.float64)[:] = -1.0
    again = pool.get("x", (3,), np.float64)
    again[:] = -1.0
    assert not np.shares_memory(again, held) and (held == 7.0).all()


def test_a_bounded_pool_gives_the_same_bits(monkeypatch):
    # A small CNN (the shifted and the im2col convolutions, BatchNorm2d, pooling) trained on
    # batch sizes that keep changing: the compiled step with two shapes per role kept, the
    # graph with every shape kept, the same weights to the bit; and the pools stay bounded.
    import fastnn as fnn

    def net():
        fnn.manual_seed(0)
        return fnn.Sequential(fnn.nn.Conv2d(1, 3, 3, padding=1), fnn.nn.BatchNorm2d(3),
                              fnn.ReLU(), fnn.nn.Conv2d(3, 4, 3, stride=2), fnn.ReLU(),
                              fnn.nn.MaxPool2d(2), fnn.Flatten(), fnn.Linear(4, 3))

    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    sizes = [2, 3, 4, 5, 6, 7, 3, 2, 8, 4]
    weights = []
    for bound in (2, 10**6):
        monkeypatch.setattr(_buffers, "MAX_SHAPES_PER_ROLE", bound)
        model = net()
        opt = fnn.optim.SGD(model.parameters(), lr=0.1)
        step = fnn.compile_step(model, fnn.losses.cross_entropy, opt, adaptive_threads=False)
        for n in sizes:
            if bound == 2:
                assert step.accepts(X[:n], y[:n])
                step(X[:n], y[:n])
            else:  # the graph path
                opt.zero_grad()
                fnn.losses.cross_entropy(model(X[:n]), y[:n]).backward()
                opt.step()
        if bound == 2:
            for m in model.modules():
                pool = getattr(m, "_pool", None)
                if pool is not None:
                    roles = [key[0] for key in pool._bufs]
                    assert all(roles.count(r) <= 2 for r in roles)
        weights.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
