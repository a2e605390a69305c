"""Matrix products on fastnn's one thread pool: each Numba thread calls single-threaded BLAS.

    C = op(A) @ op(B) + beta * C,   op(X) = X or X^T,
    C (M, N), op(A) (M, K), op(B) (K, N); A, B, C C-contiguous (a transpose is a flag).

Why not ``np.matmul``: a training step alternates GEMMs with elementwise kernels. With
``np.matmul``, OpenBLAS runs each GEMM on its own pthreads and Numba runs the kernels on its
OpenMP threads: two pools hand two cores back and forth. OpenBLAS's idle workers spin (with
``sched_yield``) for up to 2^28 cycles after each GEMM, so Numba's workers must sleep
(``OMP_WAIT_POLICY=PASSIVE``) and every parallel kernel pays a wake-up, or the pools fight
(measured: 36 ms instead of 4.6 ms per 784-512-512-10 step). Worse for small steps, the
halves of a gradient that OpenBLAS's worker wrote sit in the other core's cache when the
optimizer, running on the main thread, reads them (784-128-10, batch 32: Adam 32 µs after
single-threaded GEMMs, 87 µs after two-threaded ones).

Here the GEMM is cut into one block of rows (or of columns) of C per Numba thread, and each
thread calls BLAS on its block with BLAS held to one thread. Numba's pool is then the only
pool: its workers may spin between kernels, and, for a product large enough to be split, the
thread that wrote a block of rows of a weight's gradient is the one that updates those rows
(the optimizers deal their work by the same ``block_bounds``).

The BLAS is NumPy's own OpenBLAS (the one ``np.matmul`` uses; SciPy's is a second copy),
reached through its CBLAS symbols. Where NumPy is built on another BLAS, ``AVAILABLE`` is
False and :func:`gemm` falls back to ``np.matmul`` (correct, with the two-pool cost).
"""

from __future__ import annotations

import ctypes
import os

import llvmlite.binding as ll
import numba
import numpy as np
from numba import prange, types

from ._jit import jit, kernel

#: Multiply-adds (M * N * K) from which a product is split over the thread pool. Below it,
#: one thread does it all: a 32x128x10 product takes ~1 µs on one core, about what starting
#: a parallel region costs.
PARALLEL_MIN_WORK = 1 << 18

#: A product whose C is cut into row blocks (M >= N) is split from this much work already.
#: Measured, one thread against two blocks (float32, medians of 2,000 calls): 200x5 with
#: K = 256 (an output layer's forward) 20.0 against 12.5 µs, 256x64 (K 10) 7.5 / 6.2,
#: 200x5 (K 100) 8.4 / 6.7, 64x64 (K 32) 4.7 / 5.0, 128x10 (K 64, below it) 4.2 / 4.4;
#: float64 gains more. Column blocks (M < N) wait for PARALLEL_MIN_WORK: at these sizes
#: their narrow blocks ran slower on two threads (200x256, K 5, an output layer's input
#: gradient: 12.2 against 20.9 µs; 64x512, K 5: 8.8 / 12.2).
PARALLEL_MIN_WORK_ROWS = 100_000

#: Blocks per product (above PARALLEL_MIN_WORK): the size of Numba's pool, fixed for the
#: process. Not the thread count in force: BLAS may round a block differently from the
#: whole product (measured, a 257x33 block of K = 129 differs from the unsplit product in
#: the 5th digit), so the blocks, and hence the bits, must not change with
#: ``set_num_threads``; with fewer threads, a thread computes several blocks.
BLOCKS = max(1, numba.config.NUMBA_NUM_THREADS)

#: Column blocks start at multiples of this many elements (a 64-byte cache line of float32),
#: so that two threads never write the same line of C.
_COL_ALIGN = 16

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _numpy_openblas() -> str | None:
    """Path of the OpenBLAS library that NumPy's ``matmul`` calls, if that is its BLAS."""
    from threadpoolctl import threadpool_info

    numpy_root = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    for lib in threadpool_info():
        path = os.path.abspath(lib.get("filepath") or "")
        if lib.get("internal_api") != "openblas" or not path.startswith(numpy_root):
            continue
        # numpy's wheels put it in site-packages/numpy.libs (Linux) or numpy/.dylibs (macOS)
        if os.path.basename(os.path.dirname(path)) in ("numpy.libs", ".dylibs", "numpy"):
            return path
    return None


def _bind() -> bool:
    """Find NumPy's OpenBLAS and register its CBLAS GEMMs and thread setters for Numba."""
    path = _numpy_openblas()
    if path is None:
        return False
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return False
    # OpenBLAS's symbol names depend on how it was built: NumPy >= 2 wheels ship
    # scipy-openblas with 64-bit integers ("scipy_" prefix, "64_" suffix).
    for prefix, suffix in (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", "")):
        names = {
            "fastnn_cblas_sgemm": f"{prefix}cblas_sgemm{suffix}",
            "fastnn_cblas_dgemm": f"{prefix}cblas_dgemm{suffix}",
            "fastnn_blas_set_threads": f"{prefix}openblas_set_num_threads{suffix}",
            "fastnn_blas_get_threads": f"{prefix}openblas_get_num_threads{suffix}",
        }
        addresses = {}
        for ours, theirs in names.items():
            fn = getattr(lib, theirs, None)
            if fn is None:
                break
            addresses[ours] = ctypes.cast(fn, ctypes.c_void_p).value
        else:
            if suffix != "64_":
                return False  # 32-bit BLAS integers: not the ABI the kernels are compiled for
            for ours, address in addresses.items():
                ll.add_symbol(ours, address)
            return True
    return False


AVAILABLE = _bind()

_gemm_signature = [types.intc, types.intc, types.intc, types.int64, types.int64, types.int64]
_cblas_sgemm = types.ExternalFunction("fastnn_cblas_sgemm", types.void(
    *_gemm_signature, types.float32, types.voidptr, types.int64, types.voidptr, types.int64,
    types.float32, types.voidptr, types.int64))
_cblas_dgemm = types.ExternalFunction("fastnn_cblas_dgemm", types.void(
    *_gemm_signature, types.float64, types.voidptr, types.int64, types.voidptr, types.int64,
    types.float64, types.voidptr, types.int64))
_blas_set_threads = types.ExternalFunction("fastnn_blas_set_threads", types.void(types.intc))
_blas_get_threads = types.ExternalFunction("fastnn_blas_get_threads", types.intc())


@jit
def hold_blas_to_one_thread() -> int:
    """Set BLAS to one thread (the pool's threads call it concurrently); return the old
    count, for :func:`restore_blas_threads`."""
    blas_threads = _blas_get_threads()
    if blas_threads != 1:
        _blas_set_threads(1)
    return blas_threads


@jit
def restore_blas_threads(blas_threads):
    if blas_threads != 1:
        _blas_set_threads(blas_threads)


@jit
def block_bounds(M, N, t, parts):
    """(row_lo, row_hi, col_lo, col_hi) of block ``t`` of ``parts`` of an (M, N) product:
    rows when M >= N, else columns starting at multiples of 16."""
    if M >= N:
        return M * t // parts, M * (t + 1) // parts, 0, N
    lo = min(N, (N * t // parts + _COL_ALIGN - 1) // _COL_ALIGN * _COL_ALIGN)
    hi = N if t == parts - 1 else min(
        N, (N * (t + 1) // parts + _COL_ALIGN - 1) // _COL_ALIGN * _COL_ALIGN)
    return 0, M, lo, hi


@jit
def _cblas(ta, tb, m, n, k, A, a_off, lda, B, b_off, ldb, beta, C, c_off, ldc):
    """One row-major CBLAS ?gemm call on element offsets into A, B and C (float32: sgemm,
    float64: dgemm); C[off:] = op(A[off:]) op(B[off:]) + beta C[off:], m x n, inner k."""
    size = A.itemsize
    if size == 4:
        _cblas_sgemm(_ROW_MAJOR, ta, tb, m, n, k, np.float32(1.0),
                     A.ctypes.data + a_off * size, lda, B.ctypes.data + b_off * size, ldb,
                     np.float32(beta), C.ctypes.data + c_off * size, ldc)
    else:
        _cblas_dgemm(_ROW_MAJOR, ta, tb, m, n, k, 1.0,
                     A.ctypes.data + a_off * size, lda, B.ctypes.data + b_off * size, ldb,
                     np.float64(beta), C.ctypes.data + c_off * size, ldc)


@jit
def gemm_block(A, trans_a, B, trans_b, C, beta, r0, r1, c0, c1):
    """C[r0:r1, c0:c1] = (op(A) @ op(B))[r0:r1, c0:c1] + beta * C[r0:r1, c0:c1]: one BLAS
    call, reading only rows r0:r1 of op(A) and columns c0:c1 of op(B)."""
    N = C.shape[1]
    K = A.shape[0] if trans_a else A.shape[1]
    lda, ldb, ldc = max(1, A.shape[1]), max(1, B.shape[1]), max(1, N)
    m, n = r1 - r0, c1 - c0
    if m <= 0 or n <= 0:
        return
    _cblas(_TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS, m, n, K,
           A, r0 if trans_a else r0 * lda, lda, B, c0 * ldb if trans_b else c0, ldb,
           beta, C, r0 * ldc + c0, ldc)


@kernel(min_parallel=PARALLEL_MIN_WORK)
def gemm_blocks(A, trans_a, B, trans_b, C, beta, parts):
    """C = op(A) @ op(B) + beta * C, cut into ``parts`` blocks, one BLAS call per block.

    A, B, C C-contiguous, same float dtype; C (M, N); op(A) (M, K); op(B) (K, N).
    The blocks are rows of C when M >= N, else columns (starting at multiples of 16).
    Parallel over blocks: each block of C is written by one thread, whose BLAS call reads
    only the rows (columns) of op(A) (op(B)) that it needs; BLAS is held to one thread
    meanwhile, so the pool's threads are the only workers.
    """
    M, N = C.shape
    blas_threads = hold_blas_to_one_thread()
    for t in prange(parts):
        r0, r1, c0, c1 = block_bounds(M, N, t, parts)
        gemm_block(A, trans_a, B, trans_b, C, beta, r0, r1, c0, c1)
    restore_blas_threads(blas_threads)


@jit
def _gemm_k_slice(A, B, C, k0, k1):
    """C = A[:, k0:k1] @ B[k0:k1, :] (A (M, K), B (K, N), C (M, N), C-contiguous)."""
    M, N = C.shape
    if M == 0 or N == 0:
        return
    lda, ld = max(1, A.shape[1]), max(1, N)  # B and C both have N columns
    _cblas(_NO_TRANS, _NO_TRANS, M, N, k1 - k0, A, k0, lda, B, k0 * ld, ld, 0.0, C, 0, ld)


@kernel(min_parallel=PARALLEL_MIN_WORK)
def gemm_split_k(A, B, C, partial, parts):
    """C = A @ B with the inner dimension cut into ``parts`` blocks: block t's product goes to
    C (t = 0) or partial[t - 1], then the partial products are added into C in block order.

    A (M, K), B (K, N), C (M, N), partial (parts - 1, M, N) scratch, all C-contiguous.
    Why: thread t reads only rows K * t // parts onward of B, the rows of a weight whose
    gradient it computes and which it updates (see ``gemm_blocks`` and the optimizers), so
    the weight never moves between cores' caches; the partial products are smaller than the
    weight when the batch M is smaller than K. Parallel over K blocks, then over row blocks
    of C for the sum (in a fixed order: the bits do not depend on the thread count).
    """
    M, N = C.shape
    K = A.shape[1]
    blas_threads = hold_blas_to_one_thread()
    for t in prange(parts):
        k0, k1 = K * t // parts, K * (t + 1) // parts
        if t == 0:
            _gemm_k_slice(A, B, C, k0, k1)
        else:
            _gemm_k_slice(A, B, partial[t - 1], k0, k1)
    restore_blas_threads(blas_threads)
    for t in prange(parts):
        for i in range(M * t // parts, M * (t + 1) // parts):
            row = C[i]
            for p in range(parts - 1):
                other = partial[p, i]
                for j in range(N):
                    row[j] += other[j]


def gemm_kernel(M: int, N: int, K: int):
    """The ``gemm_blocks`` variant and the block count :func:`gemm` uses for a C (M, N) =
    op(A) (M, K) @ op(B) (K, N) product of C-contiguous operands, when ``AVAILABLE``:
    ``product(A, trans_a, B, trans_b, C, beta, parts)``. (A compiled step decides once.)"""
    work = M * N * K
    if M >= N:  # row blocks go parallel from PARALLEL_MIN_WORK_ROWS: scaled to the kernel's
        # threshold, so that the kernel's own switch still decides (always serial in a
        # child forked after the pool ran, either variant during fnn.warmup)
        work = work * PARALLEL_MIN_WORK // PARALLEL_MIN_WORK_ROWS
    # The blocks follow the size alone (the bits depend on them), the variant may not.
    return gemm_blocks(work), (BLOCKS if work >= PARALLEL_MIN_WORK else 1)


def gemm(A: np.ndarray, B: np.ndarray, C: np.ndarray, trans_a: bool = False,
         trans_b: bool = False, beta: float = 0.0) -> None:
    """C = op(A) @ op(B) + beta * C in place, on fastnn's thread pool.

    Parameters
    ----------
    A : (M, K), or (K, M) with ``trans_a``; C-contiguous.
    B : (K, N), or (N, K) with ``trans_b``; C-contiguous.
    C : (M, N) C-contiguous output, same dtype (float32 or float64) as A and B; with
        ``beta == 0`` its old contents are ignored (NaN included).

    Operands that are not C-contiguous go to ``np.matmul`` (NumPy's own threads) instead.

    Raises
    ------
    ValueError
        If the shapes do not chain or the dtypes differ or are not float32/float64.
    """
    M, N = C.shape
    Ma, K = A.shape[::-1] if trans_a else A.shape
    Kb, Nb = B.shape[::-1] if trans_b else B.shape
    if Ma != M or Kb != K or Nb != N:
        raise ValueError(f"gemm: shapes do not chain: op(A) {A.shape}{'^T' * trans_a}, "
                         f"op(B) {B.shape}{'^T' * trans_b}, C {C.shape}")
    dt = C.dtype
    if A.dtype != dt or B.dtype != dt or dt not in _FLOATS:
        raise ValueError(f"gemm: A, B and C must share one dtype, float32 or float64; got "
                         f"{A.dtype}, {B.dtype}, {dt}")
    if AVAILABLE and A.flags.c_contiguous and B.flags.c_contiguous and C.flags.c_contiguous:
        product, parts = gemm_kernel(M, N, K)
        product(A, trans_a, B, trans_b, C, beta, parts)
    else:
        _matmul_fallback(A, B, C, trans_a, trans_b, beta)


def _matmul_fallback(A, B, C, trans_a, trans_b, beta):
    a = A.T if trans_a else A
    b = B.T if trans_b else B
    if beta == 0.0:
        np.matmul(a, b, out=C)
    else:
        C *= beta
        C += a @ b
