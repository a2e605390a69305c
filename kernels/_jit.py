"""The one JIT policy that every fastnn kernel is compiled with.

- Lazy compilation (no explicit signatures): an eager signature list would move every
  kernel's compilation (seconds) into every cold ``import fastnn``; lazily, a process only
  compiles what it runs, and the on-disk cache makes the second process warm.
- ``nogil``: kernels release the GIL, so a caller may overlap them with Python work.
- ``FASTMATH`` lets LLVM contract into FMAs, use reciprocals and approximate functions,
  but keeps the NaN/Inf semantics (no ``nnan``/``ninf``): ``fastmath=True`` would let LLVM
  delete the very ``isfinite`` checks that stop a diverging run. It does not let LLVM
  reassociate: with ``reassoc``, a loop that both stores and sums (a softmax row, a squared
  error) is vectorized only after a runtime check that the store does not overlap what the
  loop still reads; two small arrays that malloc placed within a few vector widths of each
  other fail the check and run the scalar loop, which sums in another order, so the same
  batch gave other last bits depending on where its arrays lay. Without it every sum runs in
  the order written (``tests/kernels/test_jit.py``); a kernel that wants several sums in
  flight writes its lanes out, or, if its summing loops store nothing (a pure reduction,
  which LLVM vectorizes without an overlap check), asks for ``kernel(reassociate=True)``.
- ``cache=True`` with a fallback: Numba raises ``RuntimeError: cannot cache function ...
  no locator available`` at decoration time when neither the package folder nor the user
  cache directory is writable (a read-only install). Then we warn once and compile
  without a cache rather than fail the import.

Each kernel is compiled twice from the same Python source: ``k.serial`` (``prange`` runs
as ``range``) and ``k.parallel`` (``parallel=True``). Launching Numba's thread pool costs
microseconds, which dominates a small batch, so the Python layer picks one per call
(``k(n)``) by the amount of work. The two variants get distinct qualnames, because Numba's
cache index is keyed by the qualname and signature but not by the ``parallel`` flag.
"""

from __future__ import annotations

import os
import sys
import types
import warnings

import numba
from numba.core import types as nb_types

#: Rows per chunk of every column reduction over a batch (bias, BatchNorm, LayerNorm, PReLU
#: and loss partial sums). Fixed, so the partial sums and the order in which they are added
#: depend on the batch size alone: the same bits on any number of threads.
ROWS_PER_CHUNK = 64


def row_chunks(n_rows: int) -> int:
    """How many chunks of ROWS_PER_CHUNK rows cover ``n_rows`` (at least 1)."""
    return max(1, (n_rows + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK)


FASTMATH = frozenset({"nsz", "arcp", "contract", "afn"})

#: Element count from which the ``parallel`` variant of a kernel is used. Numba's pool is
#: fastnn's only pool (GEMMs run on it too, ``blas.py``), so its threads are awake between
#: kernels and starting a parallel region costs about 2 µs; below this size a light pass
#: (a bias add: 4.5 µs serial over 128x512 float32) gains nothing from a second thread.
#: Measured on the 784-512-512-10 BN MLP (batch 128): 3.29 ms a step with the threshold at
#: 1M elements, 3.16 ms at 64K (medians of 8 alternated runs). Kernel by kernel (bias +
#: relu, dz and bias sums, BatchNorm's normalization; float32, medians): serial wins at 8K
#: elements (3.1 against 4.0 µs), the two tie at 16K, the pool wins at 51K (200x256:
#: 11.8 against 18.7 µs), so the threshold is 16K.
PARALLEL_MIN_ELEMENTS = 1 << 14

_ALL_KERNELS: list[Kernel] = []
_cache_warned = False


def _compile(py_func, parallel: bool, reassociate: bool = False):
    """Return a Numba dispatcher for ``py_func`` under the project's policy."""
    global _cache_warned
    fastmath = set(FASTMATH) | ({"reassoc"} if reassociate else set())
    options = dict(nogil=True, fastmath=fastmath, parallel=parallel, error_model="numpy")
    try:
        return _shared(_unliteral_calls(numba.njit(cache=True, **options)(py_func)))
    except RuntimeError as exc:  # a read-only install: no cache locator is writable
        if "no locator available" not in str(exc):
            raise
        if not _cache_warned:
            warnings.warn(
                "fastnn: no writable directory for Numba's kernel cache "
                f"({exc}); kernels will be compiled in every process. "
                "Set NUMBA_CACHE_DIR to a writable directory to cache them.",
                RuntimeWarning,
                stacklevel=3,
            )
            _cache_warned = True
        return _unliteral_calls(numba.njit(cache=False, **options)(py_func))


def _unliteral_calls(dispatcher):
    """Type calls from other kernels by their arguments' types, never by constant values.

    Numba types a constant argument of a call inside jitted code as a literal
    (``Literal[bool](False)``) and compiles the callee once per distinct constant: measured
    on ``fastnn train``, ``blas.gemm_blocks`` compiled four times in each variant (three
    literal flag pairs from ``dense._product`` and the plain ``bool`` of calls from Python),
    with ``_product`` and ``gemm_block`` three times each: 3.5 s of a 29 s cold start.
    The kernels branch on such flags at run time (a branch per block of a GEMM), so one
    compilation per argument *type* serves every caller, from Python or from a kernel.
    """
    typed = dispatcher.get_call_template

    def get_call_template(args, kws):
        return typed(tuple(nb_types.unliteral(a) for a in args),
                     {k: nb_types.unliteral(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    return dispatcher


#: Whether compilations are shared with other processes (see :func:`share_compilation`).
_sharing = os.environ.get("FASTNN_SHARE_COMPILATION") == "1"


def share_compilation(on: bool = True) -> None:
    """Share this process's kernel compilations with other processes that do the same.

    Numba compiles under one lock per process and mostly holds the GIL, so a second thread
    gains nothing; a second *process* can compile other kernels on another core. With
    sharing on, each kernel (each dispatcher: a variant of a kernel) is compiled under an
    exclusive ``flock`` on a file beside its cache index: a process that needs a kernel
    another process is compiling waits for it and then loads it from the disk cache instead
    of compiling it again. Kernels only call kernels below them (no recursion), so the
    locks a process holds form a chain down the call graph and two processes cannot wait for
    each other. Used by the cold start of ``fastnn train`` and by ``fastnn warmup``
    (``fastnn._warmup``); the environment variable ``FASTNN_SHARE_COMPILATION=1`` turns it on
    in a helper process.
    """
    global _sharing
    _sharing = bool(on)


def _shared(dispatcher):
    """Wrap ``dispatcher.compile`` in the cross-process lock of :func:`share_compilation`."""
    try:
        import fcntl
    except ImportError:  # not POSIX: compile alone
        return dispatcher
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    index = getattr(cache_file, "_index_path", None)
    if index is None:
        return dispatcher
    compile_alone = dispatcher.compile

    def compile(sig):
        if not _sharing or (isinstance(sig, tuple) and sig in dispatcher.overloads):
            return compile_alone(sig)  # alone, or compiled here already: no lock to wait for
        try:
            os.makedirs(os.path.dirname(index), exist_ok=True)
            lock = open(index + ".lock", "a")  # noqa: SIM115  (held across the compile)
        except OSError:
            return compile_alone(sig)
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or we die)
            return compile_alone(sig)  # loads from the cache if the other process wrote it

    dispatcher.compile = compile
    return dispatcher


def _renamed(py_func, suffix: str):
    """A copy of ``py_func`` whose qualname (hence cache file) carries ``suffix``."""
    fn = types.FunctionType(
        py_func.__code__,
        py_func.__globals__,
        py_func.__name__ + suffix,
        py_func.__defaults__,
        py_func.__closure__,
    )
    fn.__qualname__ = py_func.__qualname__ + suffix
    fn.__doc__ = py_func.__doc__
    fn.__module__ = py_func.__module__
    return fn


class Kernel:
    """A kernel compiled both serially and in parallel from one Python function.

    Calling ``kernel(work)`` returns the variant to use for ``work`` elements.
    ``kernel.serial`` and ``kernel.parallel`` are the two Numba dispatchers.
    """

    __slots__ = ("py_func", "serial", "parallel", "min_parallel", "__name__")

    def __init__(self, py_func, min_parallel: int = PARALLEL_MIN_ELEMENTS,
                 reassociate: bool = False):
        self.py_func = py_func
        self.__name__ = py_func.__name__
        self.serial = _compile(_renamed(py_func, "__serial"), False, reassociate)
        self.parallel = _compile(py_func, True, reassociate)
        self.min_parallel = min_parallel
        _ALL_KERNELS.append(self)

    def __call__(self, work: int):
        return self.parallel if work >= self.min_parallel else self.serial

    def __repr__(self) -> str:
        return f"<fastnn kernel {self.py_func.__module__}.{self.__name__}>"


def kernel(py_func=None, *, min_parallel: int = PARALLEL_MIN_ELEMENTS,
           reassociate: bool = False):
    """Decorator: compile ``py_func`` under the policy as a :class:`Kernel` (serial + parallel).

    ``reassociate=True`` adds LLVM's ``reassoc`` for a pure reduction, a kernel whose summing
    loops store nothing: LLVM then vectorizes them without a runtime overlap check, so their
    order depends on the trip count alone (never on where the arrays lie, see ``FASTMATH``).
    """
    if py_func is None:
        return lambda f: Kernel(f, min_parallel=min_parallel, reassociate=reassociate)
    return Kernel(py_func, min_parallel=min_parallel, reassociate=reassociate)


def jit(py_func=None, *, reassociate: bool = False):
    """Decorator: compile ``py_func`` under the policy as one serial dispatcher.

    For helpers called from other kernels, and for kernels whose work is never large
    enough to pay for threads. ``reassociate=True``: as for :func:`kernel`, only for a pure
    reduction (its summing loop stores nothing).
    """
    if py_func is None:
        return lambda f: _compile(f, parallel=False, reassociate=reassociate)
    return _compile(py_func, parallel=False, reassociate=reassociate)


def all_kernels() -> list[Kernel]:
    """Every :class:`Kernel` defined so far (for diagnostics)."""
    return list(_ALL_KERNELS)


def _serial_in_forked_child() -> None:
    """In a child forked after Numba's OpenMP pool ran, run every kernel serially.

    libgomp cannot start its pool again in such a child, and Numba terminates the child if
    it tries ("fork() called from a process already using GNU OpenMP"). The serial variants
    compute the same blocks in the same order, so the child gets the same bits, on one core.
    """
    from numba.np.ufunc import parallel

    if not getattr(parallel, "_is_initialized", True):
        return  # the parent never started the pool: the child may start its own
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "unknown"
    if layer in ("omp", "unknown"):
        for k in _ALL_KERNELS:
            k.min_parallel = sys.maxsize


os.register_at_fork(after_in_child=_serial_in_forked_child)
