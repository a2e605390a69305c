"""Weak and strong scaling of data-parallel training (fastnn.distributed), compute vs allreduce.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE uv run mpiexec -n 1 python asv_bench/mpi_scaling.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE uv run mpiexec -n 2 python asv_bench/mpi_scaling.py

Threads per rank: cores // ranks. Model: the M MLP (784-512-512-10, BatchNorm+ReLU), Adam.
Strong scaling: global batch 128 split over the ranks; weak: 128 per rank.
"""

import time

import numpy as np

import fastnn as fnn
from fastnn import distributed

comm = distributed.init()


def measure(global_batch, steps=60):
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(784, 512), fnn.BatchNorm1d(512), fnn.ReLU(),
                           fnn.Linear(512, 512), fnn.BatchNorm1d(512), fnn.ReLU(),
                           fnn.Linear(512, 10))
    opt = fnn.optim.Adam(model.parameters(), lr=1e-3)
    ddp = distributed.DistributedDataParallel(model, opt, comm)
    rng = np.random.default_rng(comm.rank)
    lo, hi = distributed.shard_bounds(global_batch, comm.size, comm.rank)
    x = rng.standard_normal((hi - lo, 784)).astype(np.float32)
    y = rng.integers(0, 10, hi - lo)
    reduce_time = [0.0]
    allreduce = comm.allreduce_

    def timed(a):
        t = time.perf_counter()
        allreduce(a)
        reduce_time[0] += time.perf_counter() - t
        return a

    comm.allreduce_ = timed
    for _ in range(5):
        ddp.step(x, y, global_batch, fnn.losses.cross_entropy)
    comm.barrier()
    reduce_time[0] = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        ddp.step(x, y, global_batch, fnn.losses.cross_entropy)
    total = (time.perf_counter() - t0) / steps
    comm.allreduce_ = allreduce
    return total, reduce_time[0] / steps, sum(p.numel() for p in model.parameters())


for label, gb in (("strong (global batch 128)", 128), ("weak (128 per rank)", 128 * comm.size)):
    total, red, nparams = measure(gb)
    if comm.rank == 0:
        print(f"{comm.size} rank(s), {fnn.get_num_threads()} thread(s) each, {label}: "
              f"step {total * 1e3:.2f} ms = compute {1e3 * (total - red):.2f} ms + allreduce "
              f"{1e3 * red:.2f} ms; {gb / total:,.0f} samples/s; {nparams:,} parameters")
