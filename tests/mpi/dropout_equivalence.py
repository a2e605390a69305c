"""Run under mpiexec: data-parallel training WITH dropout equals one process, step by step.

Usage: mpiexec -n 2 python tests/mpi/dropout_equivalence.py STEPS DTYPE:BATCH ...
For each configuration in turn (one MPI job for all: each job's two cold starts cost more
than the training), rank 0 prints "OK <dtype> <batch> <largest loss difference> <largest
relative parameter difference>" (or MISMATCH); exits 0 when, for every configuration, every
step's global training loss agrees with one process's to 1e-9 (float64) or 1e-5 (float32)
and the parameters to 1e-10 (float64) or 1e-4 (float32); also checks that dropout was on
(the losses differ from those of the same run without dropout).
"""

import sys

import numpy as np

import fastnn as fnn
from fastnn import distributed
from fastnn.data import ArrayDataset, DataLoader

TOLERANCES = {"float64": (1e-9, 1e-10), "float32": (1e-5, 1e-4)}


def model(dtype, p):
    fnn.manual_seed(0)
    return fnn.Sequential(
        fnn.Linear(6, 16, dtype=dtype), fnn.Tanh(), fnn.Dropout(p),
        fnn.Linear(16, 16, activation="relu", dtype=dtype), fnn.Dropout(p / 2),
        fnn.Linear(16, 3, dtype=dtype))


def one_process(data, dtype, batch, p):
    """The global training loss of every step in one process, and the final parameters."""
    net = model(dtype, p)
    opt = fnn.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for xb, yb in DataLoader(data, batch_size=batch, shuffle=True, seed=3, dtype=dtype):
        opt.zero_grad()
        loss = fnn.losses.cross_entropy(net(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses), net


def run(comm, dtype, steps, batch):
    """Train one configuration on every rank and check it on rank 0; 0 when it passes."""
    loss_tol, param_tol = TOLERANCES[dtype]
    rng = np.random.default_rng(42)
    X, y = rng.standard_normal((batch * steps, 6)), rng.integers(0, 3, batch * steps)
    data = ArrayDataset(X, y)

    if comm.rank == 1:
        fnn.manual_seed(1)  # rank 1's generators differ until DDP hands it rank 0's
    net = model(dtype, 0.4) if comm.rank == 0 else fnn.Sequential(
        fnn.Linear(6, 16, dtype=dtype), fnn.Tanh(), fnn.Dropout(0.4),
        fnn.Linear(16, 16, activation="relu", dtype=dtype), fnn.Dropout(0.2),
        fnn.Linear(16, 3, dtype=dtype))
    opt = fnn.optim.Adam(net.parameters(), lr=1e-2)
    ddp = distributed.DistributedDataParallel(net, opt, comm)
    sampler = distributed.DistributedSampler(
        DataLoader(data, batch_size=batch, shuffle=True, seed=3, dtype=dtype), comm)
    losses = np.array([ddp.step(xb, yb, n, fnn.losses.cross_entropy)[0]
                       for xb, yb, n in sampler])

    code = 0
    if comm.rank == 0:
        ref_losses, ref = one_process(data, dtype, batch, 0.4)
        no_dropout, _ = one_process(data, dtype, batch, 0.0)
        loss_diff = float(np.max(np.abs(losses - ref_losses)))
        worst = 0.0
        for a, b in zip(net.state_dict().values(), ref.state_dict().values(), strict=True):
            worst = max(worst, float(np.max(np.abs(a - b) / (np.abs(b) + 1e-6))))
        dropout_on = float(np.max(np.abs(ref_losses - no_dropout))) > 1e-3
        ok = loss_diff <= loss_tol and worst <= param_tol and dropout_on
        print(f"{'OK' if ok else 'MISMATCH'} {dtype} {batch} {loss_diff:.3e} {worst:.3e}"
              f"{'' if dropout_on else ' (dropout had no effect)'}", flush=True)
        code = 0 if ok else 1
    return code


def main():
    steps = int(sys.argv[1])
    comm = distributed.init(warmup=False)
    code = 0
    for config in sys.argv[2:]:
        dtype, batch = config.split(":")
        code |= run(comm, dtype, steps, int(batch))
    sys.exit(code)


if __name__ == "__main__":
    main()
