"""Run under mpiexec -n 2: rank 1 fails (a bad file) while rank 0 waits in an all-reduce.
The job must end promptly with a message naming rank 1, not hang."""

import numpy as np

from fastnn import distributed
from fastnn.datasets import load_npz


def work(comm):
    if comm.rank == 1:
        load_npz("/nonexistent/only-on-rank-1.npz")
    comm.allreduce_(np.ones(3))  # rank 0 would wait here forever without the abort


comm = distributed.init(warmup=False)
distributed.run(work, comm, comm=comm)
