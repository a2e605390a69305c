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
