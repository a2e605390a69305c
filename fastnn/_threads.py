"""fastnn's one thread budget.

Everything runs on Numba's pool: the kernels, and the matrix products, whose blocks each
thread hands to single-threaded BLAS (``kernels/blas.py``). ``set_num_threads`` limits that
pool, and BLAS's own threads too (used by NumPy code outside fastnn, and by fastnn's products
only where NumPy's BLAS cannot be called from the pool).
"""

from __future__ import annotations

from collections import deque
from time import perf_counter

import numba
from threadpoolctl import threadpool_limits

_limits = None
#: The thread budget: what ``set_num_threads`` set (None: Numba's default, all cores). A
#: governor that lowered Numba's count for a while reads its budget here, not from Numba.
_budget: int | None = None


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads, in BLAS and in Numba's kernels (default: all cores)."""
    global _limits, _budget
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer, got {n!r}")
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    LOOP_CLOCK.reset()  # (first: its governor gives back the old budget)
    numba.set_num_threads(n)
    _limits = threadpool_limits(limits=n)
    _budget = n


def thread_budget() -> int:
    """The budget ``set_num_threads`` set (default: Numba's thread count), whatever count a
    governor runs on at the moment."""
    if _budget is not None:
        return _budget
    # Numba's count, unless the hand-written loops' governor lowered it for a while
    governor = LOOP_CLOCK.governor
    return governor.budget if governor is not None else numba.get_num_threads()


def get_num_threads() -> int:
    """The thread budget in force (Numba's, which ``set_num_threads`` keeps equal to BLAS's)."""
    return numba.get_num_threads()



class ThreadGovernor:
    """Chooses, while a training loop runs, between the thread budget and one thread, by
    timing the steps themselves.

    Why: every kernel and matrix product runs on Numba's OpenMP pool, and a parallel region
    ends only when its slowest worker does. On a machine where other processes keep the
    cores busy, the OS deschedules a worker and the whole region waits for it: measured on
    this project's 2-core machine while other jobs ran, a small BatchNorm MLP step took
    about 200 ms on 2 threads and 2.5 ms on 1, and a scikit-learn-sized fit 4.8 s against
    0.22 s. Results do not depend on the thread count (work is split by the pool's size,
    never by the threads in use), so switching changes nothing but the time.

    Protocol: call :meth:`record` with each step's duration; it sets the thread count for
    the next steps. Now and then (after ``interval`` steps, or at once when two of the last
    ``SLOW_SPAN`` steps took three times the recent median) it times ``probe`` steps with the
    other count, then as many with the current one, and keeps the faster (by 10%). A probe
    that confirms the current choice quadruples the interval (up to 4096 steps): on a quiet
    machine each probe is pure cost (a 4,000-step scikit-learn fit: 6 steps on one thread,
    about 4.5 ms a probe; 6 probes when the interval doubled, 4 now), and a machine that gets
    busy shows it in slow steps, which start a probe at once. A probe set off by slow steps
    keeps the interval (only a switch starts it over). One slow step alone is not enough: on
    a quiet machine a step now and then waits for the hypervisor or a page fault (measured,
    the same fit: 12 probes when a lone slow step set one off, 2 of them set off so, each of
    which also restarted the interval and so brought 3 more). A probe that the interval
    brought ends early when its first ``ABANDON_AFTER`` steps at the other count each took
    over 1.2x the recent median, far from the 0.9x a switch needs (on this machine one
    thread runs a scikit-learn step in 1.4x to 1.9x the time: 2 such steps instead of 6,
    2 to 3 ms less a probe); a probe set off by slow steps always runs in full, since then
    the recent median is no guide.
    """

    WINDOW = 16
    #: A probe the interval brought ends after this many steps at the other count when each
    #: took over 1.2x the recent median (see ``record``).
    ABANDON_AFTER = 2
    #: A probe starts early when two steps this close together were slow.
    SLOW_SPAN = 8
    #: A probe ends early when its steps at the other count have taken this many times the
    #: recent median per step of the whole probe (see ``record``).
    CAP = 3.0

    def __init__(self, budget: int | None = None, interval: int = 64, probe: int = 6):
        self.budget = budget if budget is not None else thread_budget()
        self.enabled = self.budget > 1
        # The first probe comes early (a loaded machine shows from the first steps), then
        # every ``interval`` steps, growing fourfold while the choice holds.
        self.current, self.interval, self.probe = self.budget, 8, probe
        self._next_interval = interval
        self._recent: deque[float] = deque(maxlen=self.WINDOW)
        self._median: float | None = None  # of _recent, refreshed now and then (record)
        self._trial: list[float] = []
        self._since, self._skip = 0, 3  # the first steps compile or load kernels
        self._phase = False  # True while a probe times both counts
        self._probe_by_slow_steps = False  # whether slow steps started the probe
        self._last_slow = None  # the step count (of _since) of the last slow step
        self.switches = 0

    def _set(self, n: int) -> None:
        numba.set_num_threads(n)

    def record(self, seconds: float) -> None:
        """The duration of the step that just ran (at the thread count this set)."""
        # A loop that times its own steps (fit's, a compiled step's): the hand-written
        # loop's clock (LOOP_CLOCK) leaves the thread count to it.
        LOOP_CLOCK.governed = True
        self._record(seconds)

    def _record(self, seconds: float) -> None:
        if not self.enabled:
            return
        if self._skip:
            self._skip -= 1
            return
        if self._phase:  # a probe: `probe` steps at the other count, then as many at this
            trial = self._trial
            trial.append(seconds)
            if len(trial) == self.ABANDON_AFTER and not self._probe_by_slow_steps \
                    and self._median is not None and min(trial) > 1.2 * self._median:
                # A probe that came with the interval on a machine as quiet as before: the
                # other count is clearly slower from its first steps (one thread: 1.4x to
                # 1.9x a scikit-learn step here; a switch needs under 0.9x), so the rest of
                # the probe would only cost time.
                self._set(self.current)
                self._confirmed()
            elif len(trial) < self.probe and self._median is not None \
                    and sum(trial) > self.CAP * self.probe * self._median:
                # The other count has already cost more than its whole probe could win back
                # (measured: a starved pool's step 50 to 200 times the one-thread step, so
                # that six of them every 64 steps cost more than the 64 steps themselves):
                # keep the current count.
                self._set(self.current)
                self._confirmed()
            elif len(trial) == self.probe:
                self._set(self.current)
            elif len(trial) == 2 * self.probe:
                self._decide()
            return
        recent = self._recent
        recent.append(seconds)
        self._since += 1
        # The median of the window, refreshed every 8 steps (sorting the window at every
        # step cost a few µs of Python a step, about 0.5% of a scikit-learn step).
        if self._since % 8 == 0 or self._median is None:
            self._median = _median(recent) if len(recent) >= 8 else None
        slow = False
        if self._median is not None and seconds > 3 * self._median:
            slow = self._last_slow is not None and \
                self._since - self._last_slow < self.SLOW_SPAN
            self._last_slow = self._since
        if self._since >= self.interval or slow:
            self._phase, self._probe_by_slow_steps = True, slow
            self._set(self._other())

    def _other(self) -> int:
        return 1 if self.current == self.budget else self.budget

    def _decide(self) -> None:
        # Both counts timed just now, side by side: the machine's state is the same. Means,
        # not medians: a starved pool is slow in bursts (most steps fine, some stalled for a
        # scheduler slice), and the stalls are what the run pays.
        other = sum(self._trial[:self.probe]) / self.probe
        mine = sum(self._trial[self.probe:]) / self.probe
        # From one thread to the budget, the typical step too must be faster: one stall of
        # the one-thread steps (a descheduled process) made the budget's mean look better,
        # and each such switch back to a starved pool cost about a second (measured on a
        # loaded 2-core machine: 13 switches in 1,300 steps).
        typical = self.current == self.budget or \
            _median(self._trial[:self.probe]) < _median(self._trial[self.probe:])
        if other < 0.9 * mine and typical:  # clearly faster: switch, and look again soon
            self.current = self._other()
            self._recent = deque(self._trial[:self.probe], maxlen=self.WINDOW)
            self._median = None
            self.interval = self._next_interval
            self.switches += 1
            self._set(self.current)
            self._trial, self._phase, self._since, self._last_slow = [], False, 0, None
        else:
            self._confirmed()

    def _confirmed(self) -> None:
        """The probe kept the current count: look again after a longer interval."""
        self.interval = min(max(4 * self.interval, self._next_interval), 4096)
        self._trial, self._phase, self._since, self._last_slow = [], False, 0, None

    def restore(self) -> None:
        """Give the budget back (the loop is over)."""
        if self.enabled:
            self._set(self.budget)


def _median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2]


class LoopClock:
    """The steps of a hand-written training loop, timed for ONE process-wide
    :class:`ThreadGovernor`, so that such a loop gets the protection that ``fit``'s steps have.

    Why: a PyTorch-style loop (``for xb, yb in loader: opt.zero_grad(); loss_fn(model(xb),
    yb).backward(); opt.step()``) has no step object that could time itself; measured with
    another process keeping one of this machine's two cores busy, its steps on two threads
    took several times those on one (see ``docs/pytorch.md``). The loop's own calls mark the
    step instead: :meth:`mark` when a batch is handed out (``DataLoader``) and at
    ``optimizer.zero_grad()``, :meth:`step_done` at the end of ``optimizer.step()``. A step
    is the time from the last mark (or the last step's end) to the step's end: the forward,
    backward and update, without the gaps a loop leaves between its epochs (an evaluation
    loop draws its own batches, which mark). Every optimizer of the process feeds the same
    governor: one thread count, one judge of it.

    A loop whose steps a governor already times (``fit``, a compiled step with
    ``adaptive_threads``) records into that governor (``ThreadGovernor.record``), which
    says so here: the clock then records nothing for those steps, so that two governors
    never set the thread count in turn. Off (``enabled`` False) when the budget is one
    thread or the products cannot run on Numba's pool (``kernels.blas.AVAILABLE``): then the
    thread count is not the governor's to choose.
    """

    __slots__ = ("start", "governor", "governed", "enabled")

    def __init__(self):
        self.start: float | None = None
        self.governor: ThreadGovernor | None = None
        self.governed = False
        self.enabled = True

    def reset(self) -> None:
        """Forget the governor (a new thread budget: the next step makes a new one)."""
        if self.governor is not None:
            self.governor.restore()
        self.governor, self.start, self.enabled = None, None, True

    def mark(self) -> None:
        """A step may start now (a batch was handed out; the gradients were zeroed)."""
        self.start = perf_counter()

    def step_done(self) -> None:
        """An optimizer's step just ended: record the step's time."""
        now = perf_counter()
        start, self.start = self.start, now
        if self.governed:  # a governed loop timed this step itself
            self.governed = False
            return
        if start is None or not self.enabled:
            return
        governor = self.governor
        if governor is None:
            governor = self._make()
            if governor is None:
                return
        governor._record(now - start)

    def _make(self) -> ThreadGovernor | None:
        from .kernels import blas

        budget = thread_budget()
        if budget < 2 or not blas.AVAILABLE:
            self.enabled = False
            return None
        self.governor = ThreadGovernor(budget)
        return self.governor


#: The process's one clock of hand-written loops (and through it, their one governor).
LOOP_CLOCK = LoopClock()
