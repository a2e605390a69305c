"""Data-parallel training over MPI (mpi4py), equal to one process on the same global batch.

Each process (rank) holds the whole model. Every global batch is split into contiguous
shards, one per rank (the first rows to rank 0); each rank runs forward and backward on its
shard with its loss weighted by ``n_rank / n_global``, so that after ONE in-place
``Allreduce`` (sum) over each flat gradient buffer every rank holds the gradient of the
mean loss over the global batch, and all ranks take the same optimizer step.

BatchNorm uses per-rank statistics by default (as PyTorch DDP does). With
``sync_batchnorm=True`` the batch sums are added up over the ranks (shifted by rank 0's first
row), so the statistics, the outputs and the gradients are those of one process on the whole
batch.

Dropout masks are those of one process too: each rank's forward runs under
``fastnn.nn.layers.dropout_row_offset(lo)``, its shard being rows [lo, hi) of the global
batch, and a mask element is a function of the layer's per-step key, the global row and the
unit (``fastnn.kernels.dropout``), with every rank's Dropout generators set to rank 0's.

Install with ``pip install 'fastnn[mpi]'`` (mpi4py and MPICH from PyPI) and run
``mpiexec -n 4 fastnn train --distributed ...``. Plain fastnn never imports mpi4py.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from .data import DataLoader


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError(
            "fastnn.distributed needs mpi4py and an MPI library: pip install 'fastnn[mpi]' "
            "(mpi4py and mpich)"
        ) from None
    return MPI


class Communicator:
    """The processes of one job (MPI_COMM_WORLD, or a given communicator)."""

    def __init__(self, comm=None):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def allreduce_(self, a: np.ndarray) -> np.ndarray:
        """Sum ``a`` over all ranks, in place (a contiguous array)."""
        if self.size > 1:
            self.comm.Allreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM)
        return a

    def broadcast_(self, a: np.ndarray, root: int = 0) -> np.ndarray:
        """Overwrite ``a`` with rank ``root``'s ``a``, in place."""
        if self.size > 1:
            self.comm.Bcast(a, root=root)
        return a

    def allreduce_scalar(self, value: float) -> float:
        return float(self.comm.allreduce(value, op=self.MPI.SUM)) if self.size > 1 else value

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (no rank is left waiting in a collective)."""
        abort_job(self.comm, code)


def abort_job(comm, code: int) -> None:
    """MPI_Abort, after giving mpiexec a moment to forward what this rank printed (an
    immediate abort can kill the forwarding before the message that explains it)."""
    import time

    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(0.5)
    comm.Abort(code)


def init(threads: int | None = None, warmup: bool = True, comm=None) -> Communicator:
    """Join the MPI job: set each rank's thread budget and warm the kernel cache.

    Threads per rank default to cores // ranks (at least 1), so that ranks on one machine do
    not oversubscribe it. Rank 0 compiles the kernels into the on-disk cache first while the
    others wait (concurrent compilation into one cache is a known Numba crash); then the
    others load them.
    """
    from . import _threads, _warmup

    c = Communicator(comm)
    per_rank = threads or max(1, (os.cpu_count() or 1) // max(1, _ranks_on_this_node(c)))
    _threads.set_num_threads(per_rank)
    if warmup:
        if c.rank == 0:
            _warmup.warmup(dtypes=("float32", "float64"), verbose=False)
        c.barrier()
        if c.rank != 0:
            _warmup.warmup(dtypes=("float32", "float64"), verbose=False)
    return c


def _ranks_on_this_node(c: Communicator) -> int:
    try:
        node = c.comm.Split_type(c.MPI.COMM_TYPE_SHARED)
        n = node.Get_size()
        node.Free()
        return n
    except Exception:  # an MPI without shared-memory split: assume one node
        return c.size


def shard_bounds(n_global: int, size: int, rank: int) -> tuple[int, int]:
    """Rows [lo, hi) of a global batch of ``n_global`` that ``rank`` of ``size`` takes
    (contiguous, sizes differing by at most one, the first rows to rank 0)."""
    base, extra = divmod(n_global, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class DistributedSampler:
    """The global batches of a :class:`~fastnn.data.DataLoader`, and this rank's shard of each.

    Every rank's loader draws the same permutation from the same seed, so the global batches
    are those a single process with that loader would see. A last global batch smaller than
    the number of ranks is dropped (a rank would get no sample).
    """

    def __init__(self, loader: DataLoader, comm: Communicator):
        self.loader, self.comm = loader, comm

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for xb, yb in self.loader:
            n = len(yb)
            if n < self.comm.size:
                continue
            lo, hi = shard_bounds(n, self.comm.size, self.comm.rank)
            yield xb[lo:hi], yb[lo:hi], n

    @property
    def dataset(self):
        """The loader's data set (the whole of it; each rank takes its shard per batch)."""
        return self.loader.dataset

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)


class DistributedDataParallel:
    """Wraps a model and its optimizer for data-parallel training.

    On creation, rank 0's parameters, buffers (BatchNorm statistics) and optimizer state are
    broadcast to every rank. ``step(x_shard, y_shard, n_global, loss_fn)`` runs one training
    step and returns the global mean loss and the number of correct predictions.
    """

    def __init__(self, model, optimizer, comm: Communicator, sync_batchnorm: bool = False):
        from .nn.layers import BatchNorm1d

        self.model, self.optimizer, self.comm = model, optimizer, comm
        self.sync_batchnorm = sync_batchnorm
        for m in model.modules():
            if isinstance(m, BatchNorm1d):
                m.sync_statistics(comm if sync_batchnorm else None)
        self.broadcast_state()

    def broadcast_state(self) -> None:
        """Make every rank's model and optimizer equal to rank 0's."""
        from .nn.layers import Dropout

        for flat in self.optimizer.flat_buffers:
            flat.sync()
            self.comm.broadcast_(flat.data)
        for bufs in self.optimizer.state.values():
            for b in bufs:
                self.comm.broadcast_(b)
        for b in self.model.buffers():
            if b.dtype.kind == "f":
                self.comm.broadcast_(b)
        # Dropout draws one key per step from its layer's generator: rank 0's generators on
        # every rank, so that all ranks draw the masks one process would.
        for m in self.model.modules():
            if isinstance(m, Dropout) and self.comm.size > 1:
                g = m.generator.bit_generator
                g.state = self.comm.comm.bcast(g.state, root=0)

    def step(self, x, y, n_global: int, loss_fn) -> tuple[float, int]:
        """Forward and backward on this rank's shard, ONE all-reduce of the gradients per
        flat buffer, and the optimizer step. Returns (global mean loss, global correct).

        ``x`` must be this rank's rows of the global batch as :func:`shard_bounds` splits it
        (what :class:`DistributedSampler` yields): Dropout numbers its rows from there.

        The global loss is known (all-reduced with the correct count) before the optimizer
        step: a NaN or Inf raises :class:`fastnn.train.NonFiniteLoss` on every rank alike,
        with nothing updated."""
        from .nn.layers import dropout_row_offset
        from .train import NonFiniteLoss, count_correct

        opt = self.optimizer
        opt.zero_grad()
        # this shard is rows [lo, hi) of the global batch (DistributedSampler's split):
        # dropout numbers them so, and masks the rows as one process would
        lo, _ = shard_bounds(n_global, self.comm.size, self.comm.rank)
        with dropout_row_offset(lo):
            out = self.model(x)
        loss = loss_fn(out, y)
        weight = len(y) / n_global
        correct = count_correct(out, y)
        stats = np.array([loss.item() * weight, float(correct)])
        self.comm.allreduce_(stats)
        if not np.isfinite(stats[0]):
            raise NonFiniteLoss(float(stats[0]))
        loss.backward(np.asarray(weight, dtype=loss.dtype))
        for flat in opt.flat_buffers:
            flat.sync()  # gradients the backward did not write count as zero
            self.comm.allreduce_(flat.grad)
        opt.step()
        return float(stats[0]), int(round(stats[1]))

    __call__ = step  # the step interface of fastnn.train.fit

    @property
    def is_main(self) -> bool:
        """Rank 0 prints and runs the callbacks (checkpoints)."""
        return self.comm.rank == 0

    @property
    def suffix(self) -> str:
        return f" ({self.comm.size} ranks)"

    def validate(self, model, loss_fn, val, target_scaler=None) -> dict[str, float]:
        """Loss and accuracy over ``val`` (an ArrayDataset), each rank scoring its shard of
        the rows; equal on all ranks."""
        return evaluate(model, loss_fn, val, self.comm)

    def agree(self, stop: bool) -> bool:
        """Rank 0's decision to stop, on every rank."""
        return bool(self.comm.comm.bcast(stop, root=0)) if self.comm.size > 1 else stop


def evaluate(model, loss_fn, data, comm: Communicator, batch_size: int = 1024
             ) -> dict[str, float]:
    """Loss and accuracy over ``data`` (an ArrayDataset of class labels), each rank scoring
    a contiguous shard of its rows; the sums are all-reduced, so all ranks get the same."""
    from .data import ArrayDataset
    from .train import evaluate_metrics

    rows = data.rows if data.rows is not None else np.arange(len(data))
    lo, hi = shard_bounds(len(rows), comm.size, comm.rank)
    stats = np.zeros(2)
    if hi > lo:
        shard = ArrayDataset(data.X, data.y, rows=rows[lo:hi], transform=data.transform,
                             check=False)
        m = evaluate_metrics(model, loss_fn, shard, batch_size)
        stats[:] = m["loss"] * (hi - lo), m["accuracy"] * (hi - lo)
    comm.allreduce_(stats)
    return {"loss": stats[0] / len(rows), "accuracy": stats[1] / len(rows)}


def fit_distributed(ddp: DistributedDataParallel, loss_fn, sampler: DistributedSampler,
                    val=None, **kwargs) -> list[dict]:
    """:func:`fastnn.train.fit` with ``ddp`` as its step: same loop, same records, same
    callbacks (run on rank 0 only)."""
    from .train import fit

    return fit(ddp.model, loss_fn, ddp.optimizer, sampler, val=val, step=ddp, **kwargs)


def run(fn, *args, comm: Communicator | None = None, **kwargs):
    """Call ``fn(*args, **kwargs)``; if it raises on any rank, print the error (naming the
    rank) and end the whole job, so that no rank hangs in a collective waiting for it."""
    try:
        return fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001  (anything left unhandled ends the job)
        MPI = _mpi()
        world = comm.comm if comm is not None else MPI.COMM_WORLD
        print(f"fastnn: rank {world.Get_rank()} of {world.Get_size()} failed: "
              f"{type(exc).__name__}: {exc}; ending the whole job", file=sys.stderr, flush=True)
        if world.Get_size() > 1:
            abort_job(world, 1)
        raise
