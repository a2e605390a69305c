"""The PyTorch-style hand-written loop against the compiled step of the same network.

One epoch of ``for xb, yb in loader: opt.zero_grad(); loss = loss_fn(model(xb), yb);
loss.backward(); opt.step()`` over a ``fastnn.utils.data.DataLoader`` (``HandWrittenLoop``),
and the same epoch through ``fnn.compile_step`` on the same batches (``CompiledLoop``):
64-128-10 MLP, Adam, batch 128, 40 batches. ``model``: ``"sequential"`` (the Sequential
itself), ``"wrapped"`` (a custom Module whose forward calls a Sequential) or ``"layers"``
(a custom Module calling its Linear layers and ``fnn.relu`` one by one).
"""

import numpy as np

import fastnn as fnn
from fastnn.utils.data import DataLoader, TensorDataset

D, H, C, BATCH, BATCHES = 64, 128, 10, 128, 40


def _sequential():
    return fnn.nn.Sequential(fnn.nn.Linear(D, H), fnn.nn.ReLU(), fnn.nn.Linear(H, C))


class _Wrapped(fnn.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _sequential()

    def forward(self, x):
        return self.net(x)


class _Layers(fnn.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = fnn.nn.Linear(D, H), fnn.nn.Linear(H, C)

    def forward(self, x):
        return self.fc2(fnn.relu(self.fc1(x)))


_MODELS = {"sequential": _sequential, "wrapped": _Wrapped, "layers": _Layers}


class HandWrittenLoop:
    """An epoch of the hand-written loop (DataLoader included)."""

    params = list(_MODELS)
    param_names = ["model"]
    timeout = 300

    def setup(self, name):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((BATCH * BATCHES, D)).astype(np.float32)
        y = rng.integers(0, C, BATCH * BATCHES)
        fnn.manual_seed(0)
        self.model = _MODELS[name]()
        self.opt = fnn.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss_fn = fnn.nn.CrossEntropyLoss()
        self.loader = DataLoader(TensorDataset(fnn.tensor(x), fnn.tensor(y)),
                                 batch_size=BATCH, shuffle=True)
        self.epoch()  # compiles or loads the kernels

    def epoch(self):
        model, opt, loss_fn = self.model, self.opt, self.loss_fn
        for xb, yb in self.loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()

    def time_epoch(self, name):
        self.epoch()


class CompiledLoop(HandWrittenLoop):
    """The same epoch through ``fnn.compile_step`` (only a Sequential compiles)."""

    params = ["sequential"]

    def setup(self, name):
        super().setup(name)
        self.step = fnn.compile_step(self.model, self.loss_fn, self.opt)
        self.epoch()

    def epoch(self):
        step = getattr(self, "step", None)
        if step is None:
            return super().epoch()
        for xb, yb in self.loader:
            step(xb.data, yb.data)


def compare(rounds: int = 100, threads: int = 1) -> dict[str, float]:
    """Every loop above and the compiled step side by side in this process: ``rounds``
    epochs each, in a shuffled order every round; returns each one's median time per step
    over the compiled step's. ``"sequential (layers)"`` is the Sequential with its chain
    switched off (its layers one by one, the graph path before ``nn/_chain.py``). One
    thread by default: the compiled step keeps a thread governor that the hand-written loop
    has not, and on a loaded machine that alone decides the two-thread numbers."""
    import random
    import statistics
    import time

    fnn.set_num_threads(threads)
    cases = {}
    for name in _MODELS:
        bench = HandWrittenLoop()
        bench.setup(name)
        cases[name] = bench
    before = HandWrittenLoop()
    before.setup("sequential")
    object.__setattr__(before.model, "_chain", None)
    cases["sequential (layers)"] = before
    compiled = CompiledLoop()
    compiled.setup("sequential")
    compiled.step.close()  # no governor: the thread count stays as set
    compiled.step.governor = None
    cases["compiled"] = compiled
    times: dict[str, list[float]] = {k: [] for k in cases}
    order = list(cases.items())
    for _ in range(rounds):
        random.shuffle(order)
        for name, bench in order:
            t0 = time.perf_counter()
            bench.epoch()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["compiled"])
    return {k: statistics.median(v) / base for k, v in times.items()}


if __name__ == "__main__":
    for name, ratio in compare().items():
        print(f"{name:22s} {ratio:.3f} x the compiled step")
