"""fastnn/_threads.py: the governor that falls back to one thread when the pool starves."""

import numpy as np

import fastnn as fnn
from fastnn._threads import ThreadGovernor


class Clocked(ThreadGovernor):
    """A governor whose thread changes are recorded instead of applied."""

    def __init__(self, **kw):
        self.log = []
        super().__init__(budget=2, **kw)

    def _set(self, n):
        self.log.append(n)


def drive(gov, cost, steps):
    """Feed the governor `steps` steps whose duration depends on its current choice."""
    threads = gov.budget
    for _ in range(steps):
        gov.record(cost(threads))
        threads = gov.log[-1] if gov.log else threads


def test_a_starved_pool_is_left_for_one_thread_and_taken_back_when_it_recovers():
    gov = Clocked(interval=16)
    busy = {"on": True}
    drive(gov, lambda t: (0.2 if t == 2 else 0.0025) if busy["on"] else
          (0.001 if t == 2 else 0.0018), 40)
    assert gov.current == 1 and gov.switches == 1
    busy["on"] = False  # the other process ended: two threads are faster again
    drive(gov, lambda t: 0.001 if t == 2 else 0.0018, 200)
    assert gov.current == 2 and gov.switches == 2


def test_on_a_quiet_machine_the_probes_thin_out():
    gov = Clocked(interval=16)
    drive(gov, lambda t: 0.001 if t == 2 else 0.0018, 5000)
    assert gov.current == 2 and gov.switches == 0
    probes = gov.log.count(1)
    assert probes <= 10  # 16, 32, ... 4096 steps apart: a few percent of steps at most
    assert gov.interval == 4096


def one_thread_runs(gov, one_thread_cost, steps):
    """The lengths of the runs of consecutive steps the governor had on one thread."""
    threads, marks = gov.budget, []
    for _ in range(steps):
        gov.record(0.001 if threads == 2 else one_thread_cost)
        threads = gov.log[-1] if gov.log else threads
        marks.append("1" if threads == 1 else ".")
    return [len(r) for r in "".join(marks).split(".") if r]


def test_on_a_quiet_machine_a_probe_stops_after_two_clearly_slower_steps():
    gov = Clocked(interval=16)
    runs = one_thread_runs(gov, 0.0019, 3000)
    assert len(runs) >= 3 and set(runs) == {gov.ABANDON_AFTER}
    assert gov.current == 2 and gov.switches == 0
    # ...but not when one thread is not clearly slower: the probe then runs in full
    gov = Clocked(interval=16)
    assert set(one_thread_runs(gov, 0.00115, 300)) == {gov.probe}
    assert gov.current == 2


def test_a_sudden_slow_step_triggers_a_probe_at_once():
    gov = Clocked(interval=4096)
    drive(gov, lambda t: 0.001, 40)  # one early probe, which keeps two threads
    assert gov.log == [1, 2] and gov.switches == 0 and gov.interval == 4096
    drive(gov, lambda t: 0.05 if t == 2 else 0.002, 14)  # long before the next interval
    assert gov.current == 1


def test_training_gives_the_same_bits_whatever_the_governor_does():
    from fastnn.train import LocalStep, fit

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, 6)), rng.integers(0, 3, 300)

    def run(force_switch):
        fnn.manual_seed(0)
        model = fnn.Sequential(fnn.Linear(6, 300), fnn.BatchNorm1d(300), fnn.ReLU(),
                               fnn.Dropout(0.2), fnn.Linear(300, 3))
        opt = fnn.optim.Adam(model.parameters(), lr=1e-2)
        step = LocalStep(model, opt)
        if force_switch and step.governor is not None:
            step.governor.interval, step.governor.probe = 2, 1  # switch back and forth
        fit(model, fnn.losses.cross_entropy, opt, (X, y), epochs=2, batch_size=32,
            quiet=True, step=step)
        return [p.data.copy() for p in model.parameters()]

    for a, b in zip(run(False), run(True), strict=True):
        np.testing.assert_array_equal(a, b)
    assert fnn.get_num_threads() == ThreadGovernor().budget  # the budget is given back


def test_lone_slow_steps_on_a_quiet_machine_set_off_no_probe():
    """A step now and then four times slower (a page fault, the hypervisor): no probe."""
    quiet = Clocked(interval=16)
    drive(quiet, lambda t: 0.001 if t == 2 else 0.0018, 5000)
    hiccups = Clocked(interval=16)
    step = {"n": 0}

    def cost(t):
        step["n"] += 1
        return (0.001 if t == 2 else 0.0018) * (4 if step["n"] % 97 == 0 else 1)

    drive(hiccups, cost, 5000)
    assert hiccups.current == 2 and hiccups.switches == 0
    assert hiccups.log.count(1) == quiet.log.count(1)


def test_a_probe_of_a_starved_pool_ends_at_its_first_step():
    gov = Clocked(interval=16)
    # two threads starved (100x), one thread fine: the governor settles on one thread
    drive(gov, lambda t: 0.1 if t == 2 else 0.001, 40)
    assert gov.current == 1
    at_two = []
    threads = 1
    for _ in range(3000):
        gov.record(0.1 if threads == 2 else 0.001)
        at_two.append(threads == 2)
        threads = gov.log[-1] if gov.log else threads
    runs = [len(r) for r in "".join("2" if a else "." for a in at_two).split(".") if r]
    assert runs and max(runs) == 1  # each probe: one step at two threads, not six
    assert gov.current == 1 and gov.switches == 1


def test_one_stalled_step_at_one_thread_does_not_send_the_loop_back_to_a_starved_pool():
    gov = Clocked(interval=16)
    drive(gov, lambda t: 0.1 if t == 2 else 0.001, 40)
    assert gov.current == 1
    # a probe where two threads happen to run unstarved (the other process descheduled)
    # but one thread's steps include one stall: the mean says two threads, the typical
    # step not
    gov._median = 0.001
    gov._phase, gov._probe_by_slow_steps, gov._trial = True, True, []
    for t in [0.0011] * 6:  # at two threads
        gov._record(t)
    assert gov._phase  # (not cut short)
    for t in [0.001, 0.001, 0.05, 0.001, 0.001, 0.001]:  # at one thread, one stall
        gov._record(t)
    assert gov.current == 1 and gov.switches == 1
