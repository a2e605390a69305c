"""The PyTorch-style hand-written loop against the compiled step of the same network.

One epoch of ``for xb, yb in loader: opt.zero_grad(); loss = loss_fn(model(xb), yb);
loss.backward(); opt.step()`` over a ``fastnn.utils.data.DataLoader`` of a ``TensorDataset``
(``HandWrittenLoop``), and the same epoch through ``fnn.compile_step`` on the same batches
(``CompiledLoop``): the MLPs of ``fastnn bench`` (``fastnn.bench.MODELS``: S 784-128-10 batch
32, T 100-256-256-5 batch 200, W64 256-64-64-10 batch 256 with BatchNorm, M 784-512-512-10
batch 128 with BatchNorm; ReLU after each hidden layer), Adam, cross-entropy, 20 batches.
``model``: ``"sequential"`` (the Sequential itself), ``"wrapped"`` (a custom Module whose
forward calls a Sequential) or ``"layers"`` (a custom Module calling its layers one by one).

Run as a script, it prints the tables of ``docs/pytorch.md`` ("Speed of a hand-written
loop"): every loop side by side in this process (medians per step, each loop's epochs in a
shuffled order every round, the thread governors off); then, one process each and taking
turns, the hand-written loop with its thread governor, the compiled step with fit's
governor and PyTorch running the same script; with ``--busy`` (also the loop without its
governor) while another process keeps one core busy (``B=asv_bench/benchmarks/bench_loop.py``)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE uv run python $B --threads 1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE uv run python $B --governed
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE uv run python $B --busy --no-compare
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time

import numpy as np

import fastnn as fnn
from fastnn.bench import MODELS
from fastnn.utils.data import DataLoader, TensorDataset

BATCHES = 20
SIZES = ["S", "T", "W64", "M"]


def _layers(name):
    dims, _, bn = MODELS[name]
    layers = []
    for a, b in zip(dims[:-2], dims[1:-1], strict=True):
        layers += [fnn.nn.Linear(a, b)] + ([fnn.nn.BatchNorm1d(b)] if bn else []) \
            + [fnn.nn.ReLU()]
    return layers + [fnn.nn.Linear(dims[-2], dims[-1])]


class _Wrapped(fnn.nn.Module):
    """A custom Module whose forward calls a Sequential."""

    def __init__(self, name):
        super().__init__()
        self.net = fnn.nn.Sequential(*_layers(name))

    def forward(self, x):
        return self.net(x)


class _ByLayers(fnn.nn.Module):
    """A custom Module calling its layers one by one (ReLU as ``fnn.relu``)."""

    def __init__(self, name):
        super().__init__()
        self.steps = fnn.nn.ModuleList([m for m in _layers(name)
                                        if not isinstance(m, fnn.nn.ReLU)])
        self.bn = MODELS[name][2]

    def forward(self, x):
        last = len(self.steps) - 1
        for i, m in enumerate(self.steps):
            x = m(x)
            if i < last and (not self.bn or isinstance(m, fnn.nn.BatchNorm1d)):
                x = fnn.relu(x)
        return x


_MODELS = {"sequential": lambda name: fnn.nn.Sequential(*_layers(name)),
           "wrapped": _Wrapped, "layers": _ByLayers}


def _data(name):
    dims, batch, _ = MODELS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch * BATCHES, dims[0])).astype(np.float32)
    return x, rng.integers(0, dims[-1], batch * BATCHES)


class HandWrittenLoop:
    """An epoch of the hand-written loop (DataLoader included)."""

    params = (SIZES, list(_MODELS))
    param_names = ["size", "model"]
    timeout = 600

    def setup(self, size, model="sequential", loader="tensor"):
        x, y = _data(size)
        batch = MODELS[size][1]
        fnn.manual_seed(0)
        self.model = _MODELS[model](size)
        self.opt = fnn.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss_fn = fnn.nn.CrossEntropyLoss()
        if loader == "tensor":
            self.loader = DataLoader(TensorDataset(fnn.tensor(x), fnn.tensor(y)),
                                     batch_size=batch, shuffle=True)
        else:  # fastnn.data's ArrayDataset loader (NumPy batches), the way before
            from fastnn.data import ArrayDataset
            from fastnn.data import DataLoader as ArrayLoader

            self.loader = ArrayLoader(ArrayDataset(x, y), batch_size=batch, shuffle=True)
        self.epoch()  # compiles or loads the kernels

    def epoch(self):
        model, opt, loss_fn = self.model, self.opt, self.loss_fn
        for xb, yb in self.loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()

    def time_epoch(self, size, model):
        self.epoch()


class CompiledLoop(HandWrittenLoop):
    """The same epoch through ``fnn.compile_step`` (only a Sequential compiles), which takes
    the DataLoader's Tensors as they are."""

    params = (SIZES, ["sequential"])

    def setup(self, size, model="sequential", loader="tensor"):
        super().setup(size, model, loader)
        self.step = fnn.compile_step(self.model, self.loss_fn, self.opt)
        self.epoch()

    def epoch(self):
        step = getattr(self, "step", None)
        if step is None:
            return super().epoch()
        for xb, yb in self.loader:
            step(xb, yb)


class LoaderOnly(HandWrittenLoop):
    """An epoch of the loader alone: ``"tensor"`` (``fastnn.utils.data.DataLoader`` over a
    ``TensorDataset``, Tensors) or ``"array"`` (``fastnn.data.DataLoader`` over an
    ``ArrayDataset``, arrays)."""

    params = (SIZES, ["tensor", "array"])
    param_names = ["size", "loader"]

    def setup(self, size, loader="tensor"):
        super().setup(size, "sequential", loader)

    def epoch(self):
        for _ in self.loader:
            pass

    def time_epoch(self, size, loader):
        self.epoch()


def compare(sizes=SIZES, rounds: int = 30, threads: int = 1,
            only: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Every loop above side by side in this process: ``rounds`` epochs each, in a shuffled
    order every round; returns, per size, each loop's median time per step in seconds.

    The threads' governors are off (the hand-written loops' ``LoopClock`` and the compiled
    step's): both would set the one process-wide thread count, each for the other's steps
    too. With ``threads=1`` there is nothing for them to choose anyway."""
    from fastnn import _threads

    fnn.set_num_threads(threads)
    _threads.LOOP_CLOCK.enabled = False
    cases = {}
    for size in sizes:
        for model in _MODELS:
            cases[(size, model)] = HandWrittenLoop()
            cases[(size, model)].setup(size, model)
        cases[(size, "sequential, ArrayDataset loader")] = HandWrittenLoop()
        cases[(size, "sequential, ArrayDataset loader")].setup(size, "sequential", "array")
        compiled = CompiledLoop()
        compiled.setup(size)
        compiled.step.close()  # no governor: the thread count stays as set
        compiled.step.governor = None
        cases[(size, "compiled step")] = compiled
        for loader in ("tensor", "array"):
            alone = LoaderOnly()
            alone.setup(size, loader)
            cases[(size, f"loader alone ({loader})")] = alone
    if only:  # some of the loops (by the names the table prints)
        cases = {k: v for k, v in cases.items() if k[1] in only}
    times: dict[tuple, list[float]] = {k: [] for k in cases}
    order = list(cases.items())
    for _ in range(rounds):
        random.shuffle(order)
        for key, bench in order:
            t0 = time.perf_counter()
            bench.epoch()
            times[key].append(time.perf_counter() - t0)
    out: dict[str, dict[str, float]] = {}
    for (size, case), ts in times.items():
        out.setdefault(size, {})[case] = statistics.median(ts) / BATCHES
    return out


# ------------------------------------------------------------------ PyTorch, same script
def _torch_worker(sizes, threads: int) -> None:
    """The same hand-written loop in PyTorch (``torch.utils.data``, Adam, CrossEntropyLoss;
    PyTorch's (out, in) weights): reads a line per round from stdin, runs one epoch per
    size, writes the seconds per step as a JSON line."""
    import torch

    torch.set_num_threads(threads)
    loops = {}
    for size in sizes:
        dims, batch, bn = MODELS[size]
        torch.manual_seed(0)
        layers = []
        for a, b in zip(dims[:-2], dims[1:-1], strict=True):
            layers += [torch.nn.Linear(a, b)] + ([torch.nn.BatchNorm1d(b)] if bn else []) \
                + [torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers, torch.nn.Linear(dims[-2], dims[-1]))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = _data(size)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
            batch_size=batch, shuffle=True)
        loss_fn = torch.nn.CrossEntropyLoss()

        def epoch(model=model, opt=opt, loader=loader, loss_fn=loss_fn):
            for xb, yb in loader:
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()

        epoch()
        loops[size] = epoch
    print(json.dumps("ready"), flush=True)
    for _ in sys.stdin:
        out = {}
        for size, epoch in loops.items():
            t0 = time.perf_counter()
            epoch()
            out[size] = (time.perf_counter() - t0) / BATCHES
        print(json.dumps(out), flush=True)


def _governed_worker(size: str, how: str, threads: int) -> None:
    """One loop in a process of its own, for the busy-machine runs, where the thread
    governors matter and must not share a process: ``how`` is ``"loop"`` (the hand-written
    loop with its governor, ``fastnn._threads.LoopClock``), ``"loop-ungoverned"`` (the same
    without it) or ``"fit"`` (the compiled step with fit's governor). Same protocol as
    :func:`_torch_worker`."""
    from fastnn import _threads

    fnn.set_num_threads(threads)
    if how == "loop-ungoverned":
        _threads.LOOP_CLOCK.enabled = False
    if how == "fit":
        bench = CompiledLoop()
        bench.setup(size)
    else:
        bench = HandWrittenLoop()
        bench.setup(size)
    print(json.dumps("ready"), flush=True)
    for _ in sys.stdin:
        steps = []
        for _ in range(3):  # three epochs a round: the governor's probes come and go
            t0 = time.perf_counter()
            bench.epoch()
            steps.append(time.perf_counter() - t0)
        print(json.dumps({size: sum(steps) / (3 * BATCHES)}), flush=True)


def _workers_compare(workers: dict[str, list[str]], rounds: int) -> dict[str, dict]:
    """Start every worker, then ask each for a round in a shuffled order, ``rounds`` times;
    returns each worker's median per size."""
    procs = {}
    for key, args in workers.items():
        p = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        procs[key] = p
    for p in procs.values():
        json.loads(p.stdout.readline())  # "ready"
    times: dict[str, dict[str, list[float]]] = {k: {} for k in procs}
    order = list(procs)
    try:
        for _ in range(rounds):
            random.shuffle(order)
            for key in order:
                p = procs[key]
                p.stdin.write("round\n")
                p.stdin.flush()
                for size, t in json.loads(p.stdout.readline()).items():
                    times[key].setdefault(size, []).append(t)
    finally:
        for p in procs.values():
            p.stdin.close()
            p.wait(timeout=60)
    return {k: {s: statistics.median(v) for s, v in d.items()} for k, d in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every loop (default: the cores)")
    parser.add_argument("--busy", action="store_true",
                        help="keep one core busy with another process meanwhile")
    parser.add_argument("--governed", action="store_true",
                        help="also time the hand-written loop without its thread governor, "
                             "in a process of its own (always with --busy)")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the in-process comparison")
    parser.add_argument("--only", default=None,
                        help="the in-process comparison of only these loops, comma-separated "
                             "(e.g. 'sequential,compiled step')")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = args.sizes.split(",")
    import os

    threads = args.threads or os.cpu_count() or 1
    if args.torch_worker:
        return _torch_worker(sizes, threads)
    if args.worker:
        return _governed_worker(sizes[0], args.worker, threads)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        if not args.no_compare:
            print(f"in one process, {threads} thread(s), governors off, medians of "
                  f"{args.rounds} rounds (ms per step):")
            res = compare(sizes, args.rounds, threads,
                          args.only.split(",") if args.only else None)
            for size, row in res.items():
                base = row["compiled step"]
                for case, t in row.items():
                    print(f"  {size:4s} {case:34s} {t * 1e3:8.3f} ms  {t / base:6.3f} x compiled")
        workers: dict[str, list[str]] = {}
        # The loops one process each, alternating with PyTorch's: the hand-written loop
        # (with its governor) and the compiled step (with fit's); without them too with
        # --busy or --governed.
        hows = ("loop", "loop-ungoverned", "fit") if args.busy or args.governed \
            else ("loop", "fit")
        if not args.no_torch or args.governed or args.busy:
            for size in sizes:
                for how in hows:
                    workers[f"{how} {size}"] = ["--worker", how, "--sizes", size,
                                                "--threads", str(threads)]
        if not args.no_torch:
            workers["torch"] = ["--torch-worker", "--sizes", args.sizes,
                                "--threads", str(threads)]
        if workers:
            print(f"one process each, alternating, {threads} thread(s)"
                  f"{', one core busy' if args.busy else ''} (ms per step):")
            for key, row in _workers_compare(workers, args.rounds).items():
                for size, t in row.items():
                    print(f"  {size:4s} {key:34s} {t * 1e3:8.3f} ms")
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


if __name__ == "__main__":
    main()
