"""fastnn.distributed under a real MPI job of 2 ranks (mpi4py + MPICH from PyPI)."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from fastnn.distributed import shard_bounds

pytest.importorskip("mpi4py")
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
HERE = os.path.dirname(__file__)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec in the venv")]


def mpirun(*args, n=2, timeout=300):
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *args], capture_output=True,
                          text=True, timeout=timeout)


def test_shard_bounds_cover_a_batch_contiguously():
    for n in (2, 7, 16, 17):
        for size in (1, 2, 3):
            parts = [shard_bounds(n, size, r) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
            assert max(h - lo for lo, h in parts) - min(h - lo for lo, h in parts) <= 1


#: (mode, global batch) of the run without dropout: BatchNorm synchronized over the ranks
#: ("sync") or no BatchNorm ("nobn"); batches of odd and even size (unequal shards).
EQUIVALENCE = [("sync", 17), ("sync", 16), ("nobn", 16), ("nobn", 15)]


def _configs_all_ok(proc, configs):
    """Rank 0 printed one OK line for each configuration, in order, and the job passed."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("OK", "MISMATCH"))]
    assert [line.split()[:3] for line in lines] == [["OK", a, str(b)] for a, b in configs], \
        proc.stdout + proc.stderr


def test_two_ranks_equal_one_process():
    # one MPI job runs every configuration in turn (a new model each): two cold starts
    # instead of eight
    proc = mpirun(os.path.join(HERE, "mpi", "equivalence.py"), "6",
                  *(f"{mode}:{batch}" for mode, batch in EQUIVALENCE))
    _configs_all_ok(proc, EQUIVALENCE)


def test_a_failing_rank_ends_the_job_with_a_message():
    t0 = time.perf_counter()
    proc = mpirun(os.path.join(HERE, "mpi", "failing_rank.py"), timeout=120)
    assert proc.returncode != 0
    assert "rank 1 of 2 failed" in proc.stderr and "only-on-rank-1" in proc.stderr
    assert time.perf_counter() - t0 < 60


#: (dtype, global batch) of the runs with dropout.
DROPOUT = [("float64", 17), ("float64", 16), ("float32", 15)]


def test_two_ranks_with_dropout_equal_one_process():
    # Dropout numbers rows globally: every step's loss is one process's (the script also
    # gives rank 1 other generators to start with, which DDP replaces by rank 0's). One MPI
    # job for every configuration.
    proc = mpirun(os.path.join(HERE, "mpi", "dropout_equivalence.py"), "8",
                  *(f"{dtype}:{batch}" for dtype, batch in DROPOUT))
    _configs_all_ok(proc, DROPOUT)


def test_cli_distributed_training_writes_one_set_of_outputs_with_the_losses_of_one_process(
        tmp_path):
    """``fastnn train --distributed`` (with dropout, whose masks are numbered over the global
    batch): one set of outputs from rank 0, and every epoch's loss that of one process. One
    MPI run for both checks (each run of 2 ranks costs two cold imports and kernel loads)."""
    from conftest import cli_train, run_metrics

    args = ["--hidden", "32", "--epochs", "3", "--dropout", "0.3", "--quiet"]
    proc = mpirun("-m", "fastnn.cli", "train", "--distributed", "--sync-batchnorm",
                  "--out", str(tmp_path / "ranks"), *args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = run_metrics(tmp_path / "ranks")
    assert metrics["epochs"] == 3 and metrics["test_accuracy"] > 0.8
    assert proc.stdout.count("test accuracy") == 1  # only rank 0 reports
    with np.load(tmp_path / "ranks" / "model.npz") as f:
        assert "model/0.weight" in f.files
    code, out = cli_train(tmp_path, "one", *args)
    assert code == 0
    ranks, one = run_metrics(tmp_path / "ranks")["history"], run_metrics(out)["history"]
    assert len(ranks) == len(one) == 3
    for a, b in zip(ranks, one, strict=True):  # float32 training: sums in another order
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=0)


@pytest.mark.slow
def test_cli_distributed_cnn_has_the_losses_of_one_process(tmp_path):
    # a small CNN (conv 32-32, BatchNorm2d synchronized over the ranks, pool, head 16) on
    # digits: 2 ranks take the loss path of one process
    from conftest import cli_train, run_metrics

    args = ["--arch", "cnn", "--hidden", "16", "--epochs", "2", "--quiet"]
    proc = mpirun("-m", "fastnn.cli", "train", "--distributed", "--sync-batchnorm",
                  "--out", str(tmp_path / "ranks"), *args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, out = cli_train(tmp_path, "one", *args)
    assert code == 0
    ranks, one = run_metrics(tmp_path / "ranks")["history"], run_metrics(out)["history"]
    assert len(ranks) == len(one) == 2
    for a, b in zip(ranks, one, strict=True):  # float32 training: sums in another order
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=0)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=0)
