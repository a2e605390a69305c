"""A reader run on one file in a worker process, under an address-space limit and a timeout.

The worker is spawned once and reused from case to case (importing fastnn and loading its
kernels takes seconds, a case milliseconds); it is replaced after a case that killed it or
ran out of time. Its answer is one of:

``ok``        the reader returned a result
``refused``   the reader raised fastnn's own error (a ``fastnn.data.DataError``: the readers'
              ``FileFormatError``, ``CheckpointError``, ``SafetensorsFileError``) naming the file;
              for an estimator's unpickled state, ``fastnn.sklearn.EstimatorStateError``
``unclear``   anything else: another exception (MemoryError included), with its traceback
``crash``     the worker died (a signal, an abort)
``timeout``   no answer within the time limit
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass

#: The reader may use at most this much address space above the worker's size after its
#: imports (fastnn, NumPy, Numba and the kernels; ~1 GiB of mostly reserved mappings).
MEMORY_LIMIT = 2 << 30
TIMEOUT = 30.0


@dataclass
class Outcome:
    kind: str  # ok | refused | unclear | crash | timeout
    detail: str = ""

    @property
    def acceptable(self) -> bool:
        return self.kind in ("ok", "refused")


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _serve(conn, memory_limit: int) -> None:  # runs in the worker
    # One thread each: the machine is shared, and a case is small.
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import resource
    import traceback

    from fuzzkit import targets

    targets.warm_up()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limit = _vm_size() + memory_limit
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send(("ready", limit))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        target, path = job
        try:
            summary = targets.run(target, path)
        except Exception as exc:  # noqa: BLE001 - classifying every answer is the point
            from fastnn.data import DataError

            msg = f"{type(exc).__name__}: {exc}"
            if targets.is_clear_refusal(target, exc, path):
                conn.send(("refused", msg[:2000]))
            elif isinstance(exc, DataError):
                conn.send(("unclear", f"fastnn's error without the file's name: {msg[:2000]}"))
            else:
                conn.send(("unclear", msg[:2000] + "\n" + traceback.format_exc()[-4000:]))
            continue
        conn.send(("ok", summary))


class Sandbox:
    """A worker that runs readers on files; see the module's docstring."""

    def __init__(self, memory_limit: int = MEMORY_LIMIT, timeout: float = TIMEOUT):
        self.memory_limit, self.timeout = memory_limit, timeout
        self.process = self.conn = None
        self.restarts = 0

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, self.memory_limit), daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(300):
            self.close()
            raise RuntimeError("the fuzzing worker did not start within 300 s")
        tag, _ = self.conn.recv()
        assert tag == "ready"

    def run(self, target: str, path: str) -> Outcome:
        if self.process is None or not self.process.is_alive():
            self._start()
        self.conn.send((target, path))
        start = time.monotonic()
        if not self.conn.poll(self.timeout):
            self.close()
            return Outcome("timeout", f"no answer within {self.timeout:.0f} s")
        try:
            kind, detail = self.conn.recv()
        except (EOFError, ConnectionResetError):
            self.process.join(5)
            code = self.process.exitcode
            self.close()
            return Outcome("crash", f"the worker died (exit code {code}) after "
                                    f"{time.monotonic() - start:.1f} s")
        return Outcome(kind, detail)

    def close(self) -> None:
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(5)
            self.restarts += 1
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None
