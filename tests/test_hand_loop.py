"""The PyTorch-style hand-written loop: its one process-wide thread governor
(``fastnn._threads.LoopClock``), ``compile_step`` on a DataLoader's Tensors, and the
shortcuts of its hot path (the backward walk of a path, the plain cross-entropy, the
optimizer's sync) giving what the general code gives."""

import numba
import numpy as np
import pytest

import fastnn as fnn
from fastnn import _threads
from fastnn import graph as G
from fastnn.kernels import blas
from fastnn.utils.data import DataLoader, TensorDataset


def _net(seed=0):
    fnn.manual_seed(seed)
    return fnn.nn.Sequential(fnn.nn.Linear(6, 8), fnn.nn.BatchNorm1d(8), fnn.nn.ReLU(),
                             fnn.nn.Linear(8, 3))


def _loader(n=40, batch=8):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = rng.integers(0, 3, n)
    return DataLoader(TensorDataset(fnn.tensor(x), fnn.tensor(y)), batch_size=batch)


def _epoch(model, opt, loader):
    loss_fn = fnn.nn.CrossEntropyLoss()
    losses = []
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def two_threads():
    """A thread budget of two (the clock's governor has a choice); the budget as it was
    after."""
    if numba.config.NUMBA_NUM_THREADS < 2 or not blas.AVAILABLE:
        pytest.skip("needs two threads and the pool's products")
    before = _threads.thread_budget()
    fnn.set_num_threads(2)
    yield
    fnn.set_num_threads(before)


def test_every_hand_written_loop_feeds_one_governor(two_threads):
    clock = _threads.LOOP_CLOCK
    assert clock.governor is None  # set_num_threads starts over
    a, b = _net(0), _net(1)
    opt_a = fnn.optim.Adam(a.parameters())
    opt_b = fnn.optim.SGD(b.parameters(), lr=0.1)
    _epoch(a, opt_a, _loader())
    governor = clock.governor
    assert governor is not None and governor.budget == 2
    seen = governor._since + len(governor._trial) + (3 - governor._skip)
    _epoch(b, opt_b, _loader())
    assert clock.governor is governor  # shared, not one per optimizer
    assert governor._since + len(governor._trial) + (3 - governor._skip) > seen


def test_a_loop_that_times_itself_keeps_its_steps(two_threads):
    clock = _threads.LOOP_CLOCK
    model = _net()
    opt = fnn.optim.Adam(model.parameters())
    _epoch(model, opt, _loader(n=8))  # one step: the clock's governor exists
    governor = clock.governor
    fit_like = _threads.ThreadGovernor(budget=2)
    fit_like.enabled = False  # (records nothing itself, but says it times the steps)
    fit_like.record(0.001)  # (a loop's first step reaches the clock before the first record)
    before = (governor._skip, governor._since, list(governor._trial))
    for _ in range(3):  # fit's order: the step (optimizer.step inside), then its record
        _epoch(model, opt, _loader(n=8))
        fit_like.record(0.001)
    assert (governor._skip, governor._since, list(governor._trial)) == before


def test_the_clock_is_off_on_one_thread():
    before = _threads.thread_budget()
    fnn.set_num_threads(1)
    try:
        model = _net()
        _epoch(model, fnn.optim.Adam(model.parameters()), _loader(n=16))
        assert _threads.LOOP_CLOCK.governor is None and not _threads.LOOP_CLOCK.enabled
    finally:
        fnn.set_num_threads(before)


def test_the_budget_survives_a_governor_that_lowered_the_count(two_threads):
    _threads.LOOP_CLOCK.mark()
    _threads.LOOP_CLOCK.step_done()  # makes the governor
    _threads.LOOP_CLOCK.governor._set(1)  # as a probe or a switch does
    assert numba.get_num_threads() == 1
    assert _threads.thread_budget() == 2
    assert _threads.ThreadGovernor().budget == 2  # what fit's own governor starts from


def test_compile_step_takes_a_dataloaders_tensors_with_the_bits_of_the_graph():
    a, b = _net(), _net()
    opt_a, opt_b = fnn.optim.Adam(a.parameters()), fnn.optim.Adam(b.parameters())
    step = fnn.compile_step(a, fnn.nn.CrossEntropyLoss(), opt_a, adaptive_threads=False)
    losses = []
    for xb, yb in _loader():
        assert isinstance(xb, fnn.Tensor) and step.accepts(xb, yb)
        losses.append(step(xb, yb))
    assert losses == _epoch(b, opt_b, _loader())
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)


def test_the_path_walk_orders_as_the_general_walk():
    x = fnn.tensor(np.ones((3, 2)), requires_grad=True)
    path = ((x * 2.0).relu() + 1.0).sum()
    order = G._path_order(path)
    general = G._topological_order((path, path))  # two roots: the general walk
    assert [id(t) for t in order] == [id(t) for t in general]
    assert [t._op for t in order] == ["mul", "relu", "add", "sum"]
    branched = (x * x).sum()  # a node computed from the same op twice: the general walk
    assert G._path_order(((x * 2.0) * (x * 3.0)).sum()) is None
    branched.backward()
    np.testing.assert_array_equal(x.grad, 2 * np.ones((3, 2)))


def test_the_plain_cross_entropy_path_gives_the_general_paths_numbers():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((5, 4)).astype(np.float32)
    y = rng.integers(0, 4, 5)
    fast = fnn.tensor(z, requires_grad=True)
    loss = fnn.nn.functional.cross_entropy(fast, fnn.tensor(y))
    loss.backward()
    general = fnn.tensor(z, requires_grad=True)  # int32 labels: the checked path
    loss2 = fnn.nn.functional.cross_entropy(general, y.astype(np.int32))
    loss2.backward()
    assert loss.item() == loss2.item() and loss.dtype == np.float32
    np.testing.assert_array_equal(fast.grad, general.grad)
    with pytest.raises(ValueError, match="not a class index"):
        fnn.nn.functional.cross_entropy(fast, np.array([0, 1, 2, 3, 4]))


def test_step_counts_a_parameter_without_gradient_as_zero_and_keeps_it():
    model = fnn.nn.Linear(3, 2)
    opt = fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    w0, b0 = model.weight.data.copy(), model.bias.data.copy()
    opt.zero_grad()
    (model.weight * 1.0).sum().backward()  # the bias gets no gradient
    opt.step()
    np.testing.assert_array_equal(model.bias.data, b0)  # skipped, as PyTorch skips it
    assert not np.array_equal(model.weight.data, w0)
    assert model.bias._zeroed_grad is model.bias.grad  # zeros, known to be
    assert not model.bias.grad.any()


def test_a_batchnorm_chain_respects_backward_inputs():
    model = _net()
    x = np.random.default_rng(2).standard_normal((6, 6)).astype(np.float32)
    out = model(x)
    assert out._op.startswith("sequential(")
    out.sum().backward(inputs=[model[3].weight])
    assert model[3].weight.grad is not None
    assert model[0].weight.grad is None and model[1].weight.grad is None


def test_set_num_threads_wins_over_the_governor_it_replaces(two_threads):
    _threads.LOOP_CLOCK.mark()
    _threads.LOOP_CLOCK.step_done()
    _threads.LOOP_CLOCK.governor._set(1)
    fnn.set_num_threads(2)
    assert numba.get_num_threads() == 2 and _threads.LOOP_CLOCK.governor is None
    fnn.set_num_threads(1)
    assert numba.get_num_threads() == 1
