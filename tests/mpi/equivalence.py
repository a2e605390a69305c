"""Run under mpiexec: N data-parallel steps equal one process on the same global batches.

Usage: mpiexec -n 2 python tests/mpi/equivalence.py STEPS {sync|nobn}:BATCH ...
For each configuration in turn (a new model, optimizer and sampler each: one MPI job, not
one per configuration, whose two cold starts cost more than the training), rank 0 prints
"OK <mode> <batch> <max relative difference>" (or MISMATCH); exits 0 when every one is
within 1e-10 and every rank holds the same parameters.
"""

import sys

import numpy as np

import fastnn as fnn
from fastnn import distributed
from fastnn.data import ArrayDataset, DataLoader


def model(bn):
    fnn.manual_seed(0)
    layers = [fnn.Linear(6, 16, dtype=np.float64)]
    if bn:
        layers.append(fnn.BatchNorm1d(16, dtype=np.float64))
    layers += [fnn.Tanh(), fnn.Linear(16, 3, dtype=np.float64)]
    return fnn.Sequential(*layers)


def run(comm, mode, steps, batch):
    """Train one configuration on every rank and check it; 0 when it passes."""
    bn = mode == "sync"
    rng = np.random.default_rng(42)
    X, y = rng.standard_normal((batch * steps, 6)), rng.integers(0, 3, batch * steps)
    data = ArrayDataset(X, y)

    net = model(bn)
    opt = fnn.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-3)
    ddp = distributed.DistributedDataParallel(net, opt, comm, sync_batchnorm=True)
    sampler = distributed.DistributedSampler(
        DataLoader(data, batch_size=batch, shuffle=True, seed=3, dtype=np.float64), comm)
    for xb, yb, n in sampler:
        ddp.step(xb, yb, n, fnn.losses.cross_entropy)

    if comm.rank == 0:
        ref = model(bn)
        ref_opt = fnn.optim.Adam(ref.parameters(), lr=1e-2, weight_decay=1e-3)
        for xb, yb in DataLoader(data, batch_size=batch, shuffle=True, seed=3, dtype=np.float64):
            ref_opt.zero_grad()
            fnn.losses.cross_entropy(ref(xb), yb).backward()
            ref_opt.step()
        worst = 0.0
        for a, b in zip(net.state_dict().values(), ref.state_dict().values(), strict=True):
            if a.dtype.kind == "f":
                worst = max(worst, float(np.max(np.abs(a - b) / (np.abs(b) + 1e-12))))
        print(f"{'OK' if worst <= 1e-10 else 'MISMATCH'} {mode} {batch} {worst:.3e}",
              flush=True)
        code = 0 if worst <= 1e-10 else 1
    else:
        code = 0
    # every rank holds the same parameters
    w = net[0].weight.data.copy()
    comm.allreduce_(w)
    if not np.allclose(w, comm.size * net[0].weight.data, rtol=0, atol=0):
        print(f"rank {comm.rank}: parameters differ between ranks ({mode} {batch})",
              flush=True)
        code = 1
    return code


def main():
    steps = int(sys.argv[1])
    comm = distributed.init(warmup=False)
    code = 0
    for config in sys.argv[2:]:
        mode, batch = config.split(":")
        code |= run(comm, mode, steps, int(batch))
    sys.exit(code)


if __name__ == "__main__":
    main()
