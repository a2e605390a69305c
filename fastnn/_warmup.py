"""Ahead-of-use compilation of the kernels that training uses (``fnn.warmup()``)."""

from __future__ import annotations

import sys
import threading
import time

import numba.core.event
import numpy as np

from .kernels import _jit, all_kernels


def _tiny_training_step(dtype) -> None:
    """One forward/backward through every layer kind and loss, on tiny arrays."""
    from . import losses, nn
    from .graph import Tensor

    model = nn.Sequential(
        nn.Linear(4, 6, dtype=dtype), nn.BatchNorm1d(6, dtype=dtype), nn.ReLU(),
        nn.Dropout(0.1, seed=0), nn.Linear(6, 6, activation="gelu", dtype=dtype),
        nn.LayerNorm(6, dtype=dtype), nn.ReLU(),
        nn.PReLU(6, dtype=dtype), nn.Maxout(6, 3, pieces=2, dtype=dtype),
    )
    x = Tensor(np.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4), requires_grad=True)
    out = model(x) + nn.Embedding(4, 3, dtype=dtype)(np.array([0, 3, 1]))
    labels = np.array([0, 1, 2])
    zeros = np.zeros_like(out.data)
    loss = (losses.cross_entropy(out, labels) + losses.multiclass_hinge(out, labels)
            + losses.mse_loss(out, zeros) + losses.l1_loss(out, zeros)
            + losses.huber_loss(out, zeros)
            + losses.binary_cross_entropy_with_logits(out, zeros))
    loss = loss + nn.Sigmoid()(out).sum()
    loss.backward()
    model.eval()
    model(x)
    _tiny_compiled_steps(dtype)


def _tiny_compiled_steps(dtype) -> None:
    """The compiled step (what ``fastnn train`` and ``fit`` run): BatchNorm + dropout MLPs
    with cross-entropy and the mean squared error, and a plain MLP (one chain kernel)."""
    from . import losses, nn, optim
    from .compiled import compile_step

    x = np.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4)
    labels = np.array([0, 1, 2])
    for loss_fn, y in ((losses.cross_entropy, labels),
                       (losses.mse_loss, np.zeros((3, 3), dtype))):
        for model in (nn.Sequential(nn.Linear(4, 6, dtype=dtype), nn.BatchNorm1d(6, dtype=dtype),
                                    nn.ReLU(), nn.Dropout(0.1, seed=0),
                                    nn.Linear(6, 3, dtype=dtype)),
                      nn.Sequential(nn.Linear(4, 6, activation="relu", dtype=dtype),
                                    nn.Linear(6, 3, dtype=dtype))):
            compile_step(model, loss_fn, optim.Adam(model.parameters()))(x, y)


#: Whether this process has said that it compiles (it says so once).
_announced = False
#: Seconds of compiling after which the notice is printed: a shorter pause is not worth a line.
NOTICE_AFTER = 1.0


class _CompileNotice(numba.core.event.Listener):
    """Says once per process, on stderr, that fastnn's kernels are compiling, when they have
    been compiling for :data:`NOTICE_AFTER` seconds (``fit``, the scikit-learn estimators,
    any first call of a layer). Numba reports a compilation only on a cache miss, so a warm
    cache says nothing. A timer thread prints while the compiling thread is busy (the
    compiler releases the GIL in LLVM's passes, so the line appears during the pause)."""

    def __init__(self):
        self.depth = 0  # nested compilations in progress (a kernel compiles its callees)
        self.since = 0.0  # when the outermost one started
        self.seconds = 0.0  # compiling time of finished outermost compilations
        self.timer = None

    def on_start(self, event):
        if _announced or not _is_fastnn_kernel(event.data.get("dispatcher")):
            return
        if self.depth == 0:
            self.since = time.perf_counter()
        self.depth += 1
        if self.timer is None:
            self.timer = threading.Timer(NOTICE_AFTER, self._say)
            self.timer.daemon = True
            self.timer.start()

    def on_end(self, event):
        if _announced or not _is_fastnn_kernel(event.data.get("dispatcher")) or not self.depth:
            return
        self.depth -= 1
        if self.depth == 0:
            self.seconds += time.perf_counter() - self.since

    def _say(self):
        global _announced
        if _announced:
            return
        if self.depth == 0 and self.seconds < NOTICE_AFTER:  # short compilations so far:
            self.timer = None  # look again at the next one
            return
        _announced = True
        print("fastnn: compiling kernels (once: they are cached on disk; `fastnn warmup` or "
              "fastnn.warmup() compiles them ahead)", file=sys.stderr, flush=True)


def _is_fastnn_kernel(dispatcher) -> bool:
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    return module.startswith("fastnn.kernels")


numba.core.event.register("numba:compile", _CompileNotice())


def cache_is_warm() -> bool:
    """Whether the on-disk kernel cache holds the training kernels (a cheap file check)."""
    import os

    from .kernels import dense, optim

    def cached(dispatcher) -> bool:
        cache = getattr(dispatcher, "_cache", None)
        index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
        return index is not None and os.path.exists(index)

    # A run uses the serial or the parallel variant of a kernel by the size of its work:
    # either one cached counts (checking only one said "compiling" on every warm run). Any of
    # the three counts: a table's runs, say, never compile all three, and asking for all said
    # "for the first time" on each of them (a later cold kernel still gets the compile notice).
    return any(cached(k.serial) or cached(k.parallel)
               for k in (dense.bias_activation_forward, dense.dz_and_bias_grad,
                         optim.adam_step))


def announce_compilation(stream=None) -> bool:
    """Say so before a cold kernel cache makes the first step slow; True when it is cold.

    Once said, the process's compile notice (:func:`_notice`) stays quiet."""
    global _announced
    if cache_is_warm():
        return False
    print("fastnn: compiling the kernels for the first time (about 20 s on two cores; "
          "they are cached on disk for later runs)", file=stream or sys.stderr, flush=True)
    _announced = True
    return True


def _second_process(dtypes) -> int | None:
    """Start a process that warms up ``dtypes`` too (in that order) under shared compilation
    (``fastnn.kernels._jit.share_compilation``): each kernel is compiled once, by whichever
    process reaches it first, so two cores compile at once. None where it cannot start."""
    import os

    try:
        import fcntl  # noqa: F401  (the shared locks need it)
    except ImportError:
        return None
    code = ("import fastnn._warmup as w\n"
            f"w.warmup(dtypes={[np.dtype(d).name for d in dtypes]!r}, verbose=False, "
            "parallel=False)\n")
    env = {**os.environ, "FASTNN_SHARE_COMPILATION": "1", "FASTNN_NO_BYTECODE": "1"}
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        pid = os.posix_spawn(sys.executable, [sys.executable, "-c", code], env,
                             file_actions=[(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1)])
    except (OSError, AttributeError):
        return None
    finally:
        os.close(devnull)
    return pid


def _wait(pid: int) -> None:
    import os

    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _tiny_cnn_step(dtype) -> None:
    """One forward/backward through every convolutional layer kind on tiny images: Conv2d by
    the shifted products (stride 1: the 3x3 and the 1x1 layers, all of ``fastnn train
    --arch cnn``'s), the direct depthwise loops and the batch-wide im2col product (the
    stride-2 layer: strided and grouped convolutions of a small layer); BatchNorm2d, the
    poolings, Dropout2d; and ``--augment``'s crop-and-flip kernel.

    Not the chunked im2col (a strided layer with 8 MB of columns or more,
    ``kernels.conv.chunk_plan``): it compiles at its first use. Measured with a cold kernel
    cache on the shared 2-core machine (``warmup(cnn=True)`` on a cache holding the MLP
    kernels, one run each): 96.9 s without the stride-2 layer, 121.3 s with it, 147.5 s
    with it run in chunks too; the MLP kernels alone 88.7 s.
    """
    from . import losses, nn
    from .graph import Tensor
    from .kernels import augment

    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, dtype=dtype), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=4, activation="relu", dtype=dtype),
        nn.MaxPool2d(2), nn.Dropout2d(0.1, seed=0), nn.Conv2d(4, 4, 1, dtype=dtype),
        nn.Conv2d(4, 4, 2, stride=2, dtype=dtype),  # (3, 3) -> (1, 1) by im2col
        nn.AvgPool2d(1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3, dtype=dtype))
    x = Tensor(np.linspace(-1.0, 1.0, 144, dtype=dtype).reshape(2, 2, 6, 6),
               requires_grad=True)
    losses.cross_entropy(model(x), np.array([0, 2])).backward()
    model.eval()
    model(x)
    rows = x.data.reshape(2, 72).copy()
    augment.flip_crop(rows.size)(rows, 2, 6, 6, 4, np.array([[0, 8], [4, 4]]),
                                 np.array([1, 0], np.uint8), np.empty_like(rows))


def warmup(dtypes=("float32", "float64"), verbose: bool = True, parallel: bool = True,
           cnn: bool = False) -> float:
    """Compile (or load from the on-disk cache) the kernels that training uses.

    Kernels compile lazily on first use; calling this first moves that cost to a moment of
    the caller's choosing. Both the serial and the parallel variant of every kernel are
    compiled. With a warm cache it takes a fraction of a second.

    Parameters
    ----------
    dtypes : the dtypes to compile for.
    verbose : print how long it took to stderr.
    cnn : also the kernels of convolutional networks (convolutions, pooling, BatchNorm2d,
        Dropout2d, ``--augment``), in this process.
    parallel : with two or more dtypes, a second process warms them up in the opposite
        order, compiling on another core; each kernel is compiled once, by whichever
        process reaches it first (the other loads it from the disk cache).

    Returns
    -------
    float
        Seconds taken.
    """
    global _announced
    _announced = True  # compiling is what was asked for: no notice
    start = time.perf_counter()
    kernels = all_kernels()
    thresholds = [k.min_parallel for k in kernels]
    helper = _second_process(list(dtypes)[::-1]) if parallel and len(dtypes) > 1 else None
    sharing = _jit._sharing
    _jit.share_compilation(True)  # another process warming up at once splits the work
    try:
        for dtype in dtypes:
            for min_parallel in (1 << 62, 0):  # serial variants, then parallel ones
                for k in kernels:
                    k.min_parallel = min_parallel
                _tiny_training_step(np.dtype(dtype))
                if cnn:
                    _tiny_cnn_step(np.dtype(dtype))
    finally:
        for k, t in zip(kernels, thresholds, strict=True):
            k.min_parallel = t
        if helper is not None:
            _wait(helper)
        _jit.share_compilation(sharing)
    seconds = time.perf_counter() - start
    if verbose:
        print(f"fastnn: kernels ready in {seconds:.2f} s", file=sys.stderr)
    return seconds
